//! The secure channel's receiving side (`proto::channel::Opener`) on hostile streams. Never panics, and:
//! - any bytes, fed in any chunking (by copy or through `receive_buffer`/`commit`): every record it
//!   accepts is one the sealer makes from the plaintext it released, byte for byte (in-process, the
//!   fuzzer can learn a valid tag from the comparison, so it does find valid records);
//! - valid records of fuzzer-chosen plaintexts and sizes, with fuzzer-chosen bit flips: whatever is
//!   released is a prefix of what was sealed, and the stream ends cleanly exactly when nothing was flipped.
//!
//! Input: byte 0 picks the mode (bit 0) and the chunk size (bits 1–7); in the second mode byte 1 is the
//! record size step, byte 2 the number of flips (mod 4), then 3 bytes per flip (u16 offset, xor mask),
//! then the plaintext.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psc::proto::channel::{ChannelError, ChannelKeys, Opener, Sealer, MAX_RECORD_LEN, OVERHEAD};
use p2psc::proto::SessionKey;
use p2psc::wire::Role;

const SESSION: SessionKey = SessionKey([0x11; 32]);

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control >> 1) + 1;
    if control & 1 == 0 {
        let opened = open(rest, chunk, control & 2 != 0);
        let resealed = reseal(&opened);
        assert_eq!(
            &rest[..resealed.len()],
            &resealed[..],
            "accepted a record the sealer would not make"
        );
    } else {
        flipped_records(rest, chunk);
    }
});

/// Seal the plaintext, flip the chosen bits, open: check what comes out.
fn flipped_records(data: &[u8], chunk: usize) {
    let [step, flips, rest @ ..] = data else {
        return;
    };
    let flips = usize::from(flips % 4);
    if rest.len() < 3 * flips {
        return;
    }
    let (flips, plaintext) = rest.split_at(3 * flips);
    let mut sealer = Sealer::new(ChannelKeys::derive(&SESSION, Role::Leader).send);
    let mut stream = Vec::new();
    let mut out = vec![0u8; OVERHEAD + 1 + usize::from(*step) * 8];
    let mut left = plaintext;
    while !left.is_empty() {
        let sealed = sealer.seal(left, &mut out).expect("room for a byte");
        stream.extend_from_slice(&out[..sealed.len]);
        left = &left[sealed.consumed..];
    }
    let end = sealer.seal_end(&mut out).expect("room for the end");
    stream.extend_from_slice(&out[..end]);
    let original = stream.clone();
    for flip in flips.chunks(3) {
        let at = usize::from(u16::from_be_bytes([flip[0], flip[1]])) % stream.len();
        stream[at] ^= flip[2];
    }
    let opened = open(&stream, chunk, flips.first().is_some_and(|b| b & 1 != 0));
    let released = opened.records.concat();
    assert!(
        plaintext.starts_with(&released),
        "released bytes that were not sealed"
    );
    if stream == original {
        assert_eq!(opened.result, Ok(()));
        assert_eq!(released, plaintext);
    } else {
        assert!(opened.result.is_err(), "an altered stream ended cleanly");
    }
}

/// What an opener made of a stream.
struct Opened {
    /// The plaintext of each data record it accepted, in order.
    records: Vec<Vec<u8>>,
    /// Whether it accepted an end-of-stream record.
    ended: bool,
    /// How the stream ended: the first error, or `finish()`.
    result: Result<(), ChannelError>,
}

/// The records a leader's sealer makes from `opened`: what the opener must have been given.
fn reseal(opened: &Opened) -> Vec<u8> {
    let mut sealer = Sealer::new(ChannelKeys::derive(&SESSION, Role::Leader).send);
    let mut out = [0u8; MAX_RECORD_LEN];
    let mut stream = Vec::new();
    for record in &opened.records {
        let sealed = sealer
            .seal(record, &mut out)
            .expect("an accepted record fits");
        assert_eq!(sealed.consumed, record.len());
        stream.extend_from_slice(&out[..sealed.len]);
    }
    if opened.ended {
        let len = sealer.seal_end(&mut out).expect("room for the end");
        stream.extend_from_slice(&out[..len]);
    }
    stream
}

/// Feed `stream` to a follower's opener in chunks (copying, or reading into `receive_buffer`), then
/// end it.
fn open(stream: &[u8], chunk: usize, zero_copy: bool) -> Opened {
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut opener = Opener::new(
        ChannelKeys::derive(&SESSION, Role::Follower).receive,
        &mut buf,
    );
    let mut opened = Opened {
        records: Vec::new(),
        ended: false,
        result: Ok(()),
    };
    let mut rest = stream;
    while !rest.is_empty() {
        let piece = &rest[..chunk.min(rest.len())];
        let before = opener.records_opened();
        let space = opener.receive_buffer();
        let taken = if zero_copy && !space.is_empty() {
            let n = space.len().min(piece.len());
            space[..n].copy_from_slice(&piece[..n]);
            opener.commit(n).map(|()| n)
        } else {
            // Also where nothing may be received (after the end, after an error).
            opener.feed(piece)
        };
        // A feed opens at most one record that has plaintext, but may open empty ones before it.
        let new_records = opener.records_opened() - before;
        let ended_now = opener.is_ended() && !opened.ended;
        for i in 0..new_records - u64::from(ended_now) {
            let last = i + 1 == new_records - u64::from(ended_now);
            opened.records.push(if last {
                opener.plaintext().to_vec()
            } else {
                Vec::new()
            });
        }
        opened.ended |= ended_now;
        opener.consume(usize::MAX);
        match taken {
            Ok(0) => unreachable!("no progress on a non-empty stream"),
            Ok(n) => rest = &rest[n..],
            Err(e) => {
                opened.result = Err(e);
                return opened;
            }
        }
    }
    opened.result = opener.finish();
    opened
}
