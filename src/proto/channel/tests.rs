use std::vec::Vec;

use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit};
use hex_literal::hex;
use proptest::prelude::*;

use super::*;

/// The session key of the handshake vector (`doc/protocol.md` Appendix A).
const SESSION: SessionKey = SessionKey(hex!(
    "8e52c0c88795069e0061e3fa9308e28b5563731d8ea8f399dd2cfce644205982"
));

fn leader() -> ChannelKeys {
    ChannelKeys::derive(&SESSION, Role::Leader)
}

fn follower() -> ChannelKeys {
    ChannelKeys::derive(&SESSION, Role::Follower)
}

/// A sealer of the leader → follower direction.
fn sealer() -> Sealer {
    Sealer::new(leader().send)
}

/// An opener of the leader → follower direction over `buf`.
fn opener(buf: &mut [u8]) -> Opener<&mut [u8]> {
    Opener::new(follower().receive, buf)
}

fn seal(sealer: &mut Sealer, plaintext: &[u8]) -> Vec<u8> {
    let mut out = [0u8; MAX_RECORD_LEN];
    let sealed = sealer.seal(plaintext, &mut out).unwrap();
    assert_eq!(sealed.consumed, plaintext.len());
    out[..sealed.len].to_vec()
}

fn seal_end(sealer: &mut Sealer) -> Vec<u8> {
    let mut out = [0u8; OVERHEAD];
    let len = sealer.seal_end(&mut out).unwrap();
    out[..len].to_vec()
}

/// Records 0, 1, 2 of the leader → follower direction: data `a`, data `b`, end.
fn three_records(a: &[u8], b: &[u8]) -> [Vec<u8>; 3] {
    let mut s = sealer();
    [seal(&mut s, a), seal(&mut s, b), seal_end(&mut s)]
}

/// Feed `stream` in chunks of `chunk` bytes, draining plaintext as it comes.
fn feed_all<B: AsRef<[u8]> + AsMut<[u8]>>(
    o: &mut Opener<B>,
    stream: &[u8],
    chunk: usize,
) -> Result<Vec<u8>, ChannelError> {
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        let mut piece = piece;
        while !piece.is_empty() {
            let used = o.feed(piece)?;
            out.extend_from_slice(o.plaintext());
            o.consume(usize::MAX);
            piece = &piece[used..];
        }
    }
    Ok(out)
}

/// A record with any type byte, sealed with the AEAD directly (as an independent sender would).
fn raw_record(key: &DirectionKey, number: u64, record_type: u8, plaintext: &[u8]) -> Vec<u8> {
    let len = (plaintext.len() as u16).to_be_bytes();
    let aad = [record_type, len[0], len[1]];
    let mut body = plaintext.to_vec();
    let tag = ChaCha20Poly1305::new(&key.0.into())
        .encrypt_in_place_detached(&nonce(number).into(), &aad, &mut body)
        .unwrap();
    [&aad[..], &body, &tag].concat()
}

#[test]
fn spec_vectors() {
    let l = leader();
    assert_eq!(
        l.send.0,
        hex!("10f9ec9ff08f94681a03b107848fa9e4fbf965d3523a31738bc2380a05240ca3")
    );
    assert_eq!(
        l.receive.0,
        hex!("878be518dc1cf15115d33f5e629a4121fd52834e0eed393dfa5e117b5ac23c3e")
    );
    let [l0, l1, l2] = three_records(b"Hello, follower!", b"");
    assert_eq!(
        l0,
        hex!("01001078d70b3e31c406c59911a67a25a470a94df1e526e516e66a6b083d5bd4 b70ac6")
    );
    assert_eq!(l1, hex!("01000044282b570dacb6b75dab73eb789e0a2c"));
    assert_eq!(l2, hex!("0200002cdf87d49c55b38ebf19321ecbb5b91f"));

    let mut s = Sealer::new(follower().send);
    let f1_plaintext: Vec<u8> = (0u8..64).collect();
    assert_eq!(
        seal(&mut s, b"Hello, leader!"),
        hex!("01000e3aa6dc00a441d35b47c00ad01427153621fac0a21c49fdd715856f8828 93")
    );
    assert_eq!(
        seal(&mut s, &f1_plaintext),
        hex!(
            "0100400a132aa2e60971f43aebd471614f10b5f0cc751a00f4420aa46e1c30d9"
            "1160c55f7ae1e33a2c78acc45139186620fc5bb78b521e430309baff4c70d123"
            "e139931af4e1ba361ded580d53077dbf910a58"
        )
    );
    assert_eq!(
        seal_end(&mut s),
        hex!("020000c40352f765e7c2317ea053fee50e2f3e")
    );

    // And the follower opens the leader's records.
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    let stream = [l0, l1, l2].concat();
    assert_eq!(feed_all(&mut o, &stream, 1).unwrap(), b"Hello, follower!");
    assert_eq!(o.finish(), Ok(()));
}

#[test]
fn keys_mirror_between_roles() {
    let (l, f) = (leader(), follower());
    assert_eq!(l.send.0, f.receive.0);
    assert_eq!(l.receive.0, f.send.0);
    assert_ne!(l.send.0, l.receive.0);
    let other = ChannelKeys::derive(&SessionKey([1; 32]), Role::Leader);
    assert_ne!(other.send.0, l.send.0);
}

#[test]
fn round_trip_many_sizes() {
    let sizes = [
        0,
        1,
        2,
        15,
        16,
        17,
        63,
        64,
        65,
        255,
        1024,
        MAX_PLAINTEXT_LEN,
    ];
    let mut s = sealer();
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    for (i, &size) in sizes.iter().enumerate() {
        let plaintext: Vec<u8> = (0..size).map(|j| (i * 7 + j) as u8).collect();
        let record = seal(&mut s, &plaintext);
        assert_eq!(record.len(), size + OVERHEAD);
        assert_eq!(record[0], RecordType::Data as u8);
        assert_eq!(
            usize::from(u16::from_be_bytes([record[1], record[2]])),
            size
        );
        if size > 0 {
            assert_ne!(&record[HEADER_LEN..HEADER_LEN + size], &plaintext[..]);
        }
        assert_eq!(o.feed(&record), Ok(record.len()));
        assert_eq!(o.plaintext(), &plaintext[..]);
        let mut copy = std::vec![0u8; size + 1];
        assert_eq!(o.read(&mut copy), size);
        assert_eq!(&copy[..size], &plaintext[..]);
        assert!(o.plaintext().is_empty());
    }
    assert_eq!(o.records_opened(), sizes.len() as u64);
    assert_eq!(s.records_sealed(), sizes.len() as u64);
}

#[test]
fn seal_in_place_matches_seal() {
    let plaintext = b"in place, straight from a sensor";
    let mut copy_sealer = sealer();
    let expected = seal(&mut copy_sealer, plaintext);
    let mut s = sealer();
    let mut record = [0u8; 64];
    record[HEADER_LEN..HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
    let len = s.seal_in_place(&mut record, plaintext.len()).unwrap();
    assert_eq!(&record[..len], &expected[..]);
    assert_eq!(
        s.seal_in_place(&mut record, 64 - OVERHEAD + 1),
        Err(ChannelError::BufferTooSmall)
    );
    let mut big = [0u8; MAX_RECORD_LEN + 1];
    assert_eq!(
        s.seal_in_place(&mut big, MAX_PLAINTEXT_LEN + 1),
        Err(ChannelError::Oversized)
    );
    assert_eq!(s.records_sealed(), 1, "failed calls use no record number");
}

#[test]
fn seal_takes_what_fits() {
    let plaintext = [0x42u8; 3 * MAX_PLAINTEXT_LEN];
    let mut s = sealer();
    let mut out = [0u8; MAX_RECORD_LEN + 100];
    let sealed = s.seal(&plaintext, &mut out).unwrap();
    assert_eq!(
        sealed,
        Sealed {
            consumed: MAX_PLAINTEXT_LEN,
            len: MAX_RECORD_LEN
        }
    );
    let sealed = s.seal(&plaintext, &mut out[..OVERHEAD + 10]).unwrap();
    assert_eq!(
        sealed,
        Sealed {
            consumed: 10,
            len: OVERHEAD + 10
        }
    );
    // No room for a byte of a non-empty plaintext; no room for a record at all.
    assert_eq!(
        s.seal(&plaintext, &mut out[..OVERHEAD]),
        Err(ChannelError::BufferTooSmall)
    );
    assert_eq!(
        s.seal(&[], &mut out[..OVERHEAD - 1]),
        Err(ChannelError::BufferTooSmall)
    );
    assert_eq!(
        s.seal_end(&mut out[..OVERHEAD - 1]),
        Err(ChannelError::BufferTooSmall)
    );
    assert_eq!(
        s.seal(&[], &mut out[..OVERHEAD]).map(|s| s.len),
        Ok(OVERHEAD)
    );
    assert_eq!(s.records_sealed(), 3);
}

#[test]
fn byte_by_byte_and_zero_copy_feeding() {
    let [a, b, end] = three_records(&[1u8; 300], &[2u8; 5]);
    let stream = [a, b, end].concat();
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    let got = feed_all(&mut o, &stream, 1).unwrap();
    assert_eq!(got, [[1u8; 300].as_slice(), &[2u8; 5]].concat());
    assert!(o.is_ended());

    // The same through receive_buffer/commit, 7 bytes at a time as a socket would deliver them.
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    let mut rest = &stream[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        let space = o.receive_buffer();
        assert!(!space.is_empty());
        let n = space.len().min(7).min(rest.len());
        space[..n].copy_from_slice(&rest[..n]);
        o.commit(n).unwrap();
        rest = &rest[n..];
        got.extend_from_slice(o.plaintext());
        o.consume(usize::MAX);
    }
    assert_eq!(got.len(), 305);
    assert!(o.receive_buffer().is_empty(), "nothing more after the end");
    assert_eq!(o.finish(), Ok(()));
}

#[test]
fn plaintext_is_held_until_consumed() {
    let [a, b, _] = three_records(b"first", b"second");
    let stream = [a.clone(), b].concat();
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    assert_eq!(o.feed(&stream), Ok(a.len()));
    assert_eq!(
        o.feed(&stream[a.len()..]),
        Ok(0),
        "takes nothing while plaintext is pending"
    );
    assert!(o.receive_buffer().is_empty());
    assert_eq!(
        o.commit(5),
        Ok(()),
        "commits beyond receive_buffer() are ignored"
    );
    assert_eq!(o.plaintext(), b"first");
    o.consume(2);
    assert_eq!(o.plaintext(), b"rst");
    o.consume(3);
    assert_eq!(o.feed(&stream[a.len()..]), Ok(stream.len() - a.len()));
    assert_eq!(o.plaintext(), b"second");
}

#[test]
fn every_flipped_bit_is_refused() {
    let [record, _, end] = three_records(&[0x33u8; 40], b"");
    for bit in 0..record.len() * 8 {
        let mut forged = record.clone();
        forged[bit / 8] ^= 1 << (bit % 8);
        let mut buf = [0u8; MAX_RECORD_LEN];
        let mut o = opener(&mut buf);
        let result = feed_all(&mut o, &forged, 5);
        assert!(o.plaintext().is_empty(), "bit {bit}");
        match result {
            Err(ChannelError::BadTag | ChannelError::Oversized) => {}
            // A length flipped upwards (within the maximum): the record now waits for bytes that
            // never come, and the end of the stream says so.
            Ok(got) => {
                assert!(got.is_empty() && (8..24).contains(&bit), "bit {bit}");
                assert_eq!(o.finish(), Err(ChannelError::Truncated));
            }
            Err(e) => panic!("bit {bit}: {e:?}"),
        }
        // An altered end-of-stream record does not end the stream either.
        let mut forged_end = end.clone();
        forged_end[(bit / 8) % end.len()] ^= 1 << (bit % 8);
        let mut buf = [0u8; MAX_RECORD_LEN];
        let mut o = Opener::<_>::starting_at(follower().receive, &mut buf, 2);
        let _ = feed_all(&mut o, &forged_end, 64);
        assert!(!o.is_ended(), "bit {bit}");
        assert!(o.finish().is_err(), "bit {bit}");
    }
}

#[test]
fn truncated_stream_is_an_error() {
    let [a, _, end] = three_records(b"some data", b"");
    for cut in 0..a.len() {
        let mut buf = [0u8; MAX_RECORD_LEN];
        let mut o = opener(&mut buf);
        assert_eq!(feed_all(&mut o, &a[..cut], 3), Ok(Vec::new()), "cut {cut}");
        assert_eq!(o.finish(), Err(ChannelError::Truncated), "cut {cut}");
        assert_eq!(o.finish(), Err(ChannelError::Truncated), "the error sticks");
    }
    // A whole data record, then the stream ends without the end-of-stream record: the data was
    // authentic, but the stream was cut.
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    assert_eq!(feed_all(&mut o, &a, 100), Ok(b"some data".to_vec()));
    assert_eq!(o.finish(), Err(ChannelError::Truncated));
    // A cut end-of-stream record.
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = Opener::<_>::starting_at(follower().receive, &mut buf, 2);
    assert_eq!(feed_all(&mut o, &end[..OVERHEAD - 1], 100), Ok(Vec::new()));
    assert_eq!(o.finish(), Err(ChannelError::Truncated));
}

#[test]
fn replayed_dropped_and_reordered_records_fail() {
    use ChannelError::{BadTag, DataAfterEnd};
    let [a, b, end] = three_records(b"zero", b"one");
    let cases = [
        ("replayed", [&a, &a].map(|r| r.as_slice()).concat(), BadTag),
        ("dropped", b.clone(), BadTag),
        ("reordered", [&b, &a].map(|r| r.as_slice()).concat(), BadTag),
        // The end record is number 2: as record 0 its tag fails.
        (
            "end first",
            [&end, &a].map(|r| r.as_slice()).concat(),
            BadTag,
        ),
        (
            "end replayed",
            [&a, &b, &end, &end].map(|r| r.as_slice()).concat(),
            DataAfterEnd,
        ),
    ];
    for (name, stream, expected) in cases {
        let mut buf = [0u8; MAX_RECORD_LEN];
        let mut o = opener(&mut buf);
        assert_eq!(feed_all(&mut o, &stream, 4), Err(expected), "{name}");
        assert!(o.plaintext().is_empty(), "{name}");
    }
}

#[test]
fn records_of_the_other_direction_or_session_fail() {
    // Reflection: the follower's own records sent back to it.
    let mut s = Sealer::new(follower().send);
    let record = seal(&mut s, b"reflected");
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    assert_eq!(o.feed(&record), Err(ChannelError::BadTag));
    // Another session's key.
    let mut s = Sealer::new(ChannelKeys::derive(&SessionKey([9; 32]), Role::Leader).send);
    let record = seal(&mut s, b"other session");
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    assert_eq!(o.feed(&record), Err(ChannelError::BadTag));
}

#[test]
fn oversized_length_is_refused_from_the_header() {
    for len in [MAX_PLAINTEXT_LEN + 1, 0x1000, 0xffff] {
        let len = (len as u16).to_be_bytes();
        let mut buf = [0u8; MAX_RECORD_LEN];
        let mut o = opener(&mut buf);
        assert_eq!(o.feed(&[1, len[0], len[1]]), Err(ChannelError::Oversized));
        assert_eq!(
            o.feed(&[0; 10]),
            Err(ChannelError::Oversized),
            "the error sticks"
        );
        assert!(o.receive_buffer().is_empty());
    }
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    let max = (MAX_PLAINTEXT_LEN as u16).to_be_bytes();
    assert_eq!(
        o.feed(&[1, max[0], max[1]]),
        Ok(3),
        "the maximum itself is fine"
    );
}

#[test]
fn small_opener_buffer() {
    let [a, _, _] = three_records(&[5u8; 200], b"");
    let mut buf = [0u8; 100];
    let mut o = opener(&mut buf);
    assert_eq!(o.feed(&a), Err(ChannelError::BufferTooSmall));
    let mut buf = [0u8; 200 + OVERHEAD];
    let mut o = opener(&mut buf);
    assert_eq!(o.feed(&a), Ok(a.len()), "an exact fit is enough");
    let mut tiny = [0u8; OVERHEAD - 1];
    let mut o = opener(&mut tiny);
    assert_eq!(o.feed(&a), Err(ChannelError::BufferTooSmall));
    assert_eq!(o.error(), Some(ChannelError::BufferTooSmall));
}

#[test]
fn nothing_after_end_of_stream() {
    let [a, _, _] = three_records(b"x", b"");
    let mut s = sealer();
    let end = seal_end(&mut s);
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    assert_eq!(o.feed(&end), Ok(end.len()));
    assert!(o.is_ended());
    assert_eq!(o.feed(&[]), Ok(0));
    assert_eq!(o.commit(0), Ok(()));
    assert_eq!(o.feed(&a[..1]), Err(ChannelError::DataAfterEnd));
    assert_eq!(o.finish(), Err(ChannelError::DataAfterEnd));
    // In one slice: feed stops at the end record; and through commit.
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    let stream = [end.clone(), std::vec![0]].concat();
    assert_eq!(o.feed(&stream), Ok(end.len()));
    assert_eq!(
        o.feed(&stream[end.len()..]),
        Err(ChannelError::DataAfterEnd)
    );
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    assert_eq!(o.feed(&end), Ok(end.len()));
    assert_eq!(o.commit(1), Err(ChannelError::DataAfterEnd));
    // The sealing side refuses too.
    let mut out = [0u8; 64];
    assert_eq!(s.seal(b"late", &mut out), Err(ChannelError::Ended));
    assert_eq!(s.seal_end(&mut out), Err(ChannelError::Ended));
    assert!(s.is_ended());
}

#[test]
fn authenticated_but_forbidden_records_are_malformed() {
    let key = follower().receive;
    for (record_type, plaintext) in [
        (0u8, &b""[..]),
        (3, b"x"),
        (0xff, b""),
        (2, b"end with data"),
    ] {
        let record = raw_record(&key, 0, record_type, plaintext);
        let mut buf = [0u8; MAX_RECORD_LEN];
        let mut o = opener(&mut buf);
        assert_eq!(
            o.feed(&record),
            Err(ChannelError::Malformed),
            "type {record_type}"
        );
        assert!(o.plaintext().is_empty());
    }
    // The independent encoding agrees with the sealer's for valid records.
    assert_eq!(
        raw_record(&key, 0, 1, b"same"),
        seal(&mut sealer(), b"same")
    );
}

#[test]
fn counter_limit() {
    let mut s = Sealer::<RustCryptoCipher>::starting_at(leader().send, MAX_DATA_RECORD_NUMBER);
    let last_data = seal(&mut s, b"last");
    let mut out = [0u8; 64];
    assert_eq!(
        s.seal(b"one too many", &mut out),
        Err(ChannelError::CounterExhausted)
    );
    assert_eq!(
        s.seal_in_place(&mut out, 1),
        Err(ChannelError::CounterExhausted)
    );
    let end = seal_end(&mut s);
    assert_eq!(s.records_sealed(), u64::MAX);

    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = Opener::<_>::starting_at(follower().receive, &mut buf, MAX_DATA_RECORD_NUMBER);
    let stream = [last_data.clone(), end].concat();
    assert_eq!(feed_all(&mut o, &stream, 3), Ok(b"last".to_vec()));
    assert_eq!(o.finish(), Ok(()));

    // A data record with the number kept for the end (only a faulty peer seals one).
    let key = follower().receive;
    let forbidden = raw_record(&key, MAX_RECORD_NUMBER, 1, b"no");
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = Opener::<_>::starting_at(follower().receive, &mut buf, MAX_RECORD_NUMBER);
    assert_eq!(o.feed(&forbidden), Err(ChannelError::CounterExhausted));
    assert!(o.plaintext().is_empty());
    // Past every number: nothing opens, nothing panics.
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = Opener::<_>::starting_at(follower().receive, &mut buf, u64::MAX);
    let any = raw_record(&key, u64::MAX, 2, b"");
    assert_eq!(o.feed(&any), Err(ChannelError::CounterExhausted));
    let mut s = Sealer::<RustCryptoCipher>::starting_at(leader().send, u64::MAX);
    assert_eq!(s.seal_end(&mut out), Err(ChannelError::CounterExhausted));
}

#[test]
fn errors_stick() {
    let [a, _, _] = three_records(b"good", b"");
    let mut forged = a.clone();
    forged[5] ^= 0x80;
    let mut buf = [0u8; MAX_RECORD_LEN];
    let mut o = opener(&mut buf);
    assert_eq!(o.feed(&forged), Err(ChannelError::BadTag));
    assert_eq!(o.feed(&a), Err(ChannelError::BadTag));
    assert_eq!(o.commit(1), Err(ChannelError::BadTag));
    assert_eq!(o.finish(), Err(ChannelError::BadTag));
    assert!(o.plaintext().is_empty() && o.receive_buffer().is_empty() && !o.is_ended());
}

#[test]
fn display_and_debug_say_no_secrets() {
    let all = [
        ChannelError::BadTag,
        ChannelError::Oversized,
        ChannelError::BufferTooSmall,
        ChannelError::Malformed,
        ChannelError::DataAfterEnd,
        ChannelError::Truncated,
        ChannelError::CounterExhausted,
        ChannelError::Ended,
    ];
    let texts: Vec<_> = all.iter().map(|e| std::format!("{e}")).collect();
    for (i, t) in texts.iter().enumerate() {
        assert!(!t.is_empty());
        assert!(texts[i + 1..].iter().all(|u| u != t), "{t}");
    }
    assert_eq!(std::format!("{:?}", leader().send), "DirectionKey(..)");
    let mut buf = [0u8; MAX_RECORD_LEN];
    assert!(!std::format!("{:?} {:?}", sealer(), opener(&mut buf)).contains("key"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is sealed, in whatever record sizes, fed in whatever chunks, opens to the same bytes
    /// and ends cleanly.
    #[test]
    fn seal_then_open_is_identity(
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2200), 0..6),
        out_len in OVERHEAD + 1..MAX_RECORD_LEN + 64,
        chunk in 1usize..3000,
    ) {
        let mut s = sealer();
        let mut stream = Vec::new();
        let mut out = std::vec![0u8; out_len];
        for message in &messages {
            let mut rest = &message[..];
            loop {
                let sealed = s.seal(rest, &mut out).unwrap();
                prop_assert!(sealed.len <= MAX_RECORD_LEN);
                stream.extend_from_slice(&out[..sealed.len]);
                rest = &rest[sealed.consumed..];
                if rest.is_empty() {
                    break;
                }
            }
        }
        stream.extend_from_slice(&seal_end(&mut s));
        let mut buf = [0u8; MAX_RECORD_LEN];
        let mut o = opener(&mut buf);
        prop_assert_eq!(feed_all(&mut o, &stream, chunk).unwrap(), messages.concat());
        prop_assert!(o.is_ended());
        prop_assert_eq!(o.finish(), Ok(()));
    }
}
