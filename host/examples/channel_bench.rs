//! Host throughput of the secure channel's record layer with each cipher, against a plain copy of the
//! same data.
//!
//!     cargo run --release -p p2psc-tokio --example channel_bench
//!
//! Seals 64 MiB of plaintext in records of the maximum size (the sealer copies each chunk into its
//! record buffer and encrypts it in place), then opens that stream (the opener copies each record into
//! its buffer, verifies and decrypts it in place). The baseline copies the same chunks into a record
//! buffer. It does so with RustCrypto's portable ChaCha20-Poly1305 (p2psc's default, what a device
//! runs) and with AWS-LC's (what the tokio peer's secure stream runs). Each figure is the median of 7
//! runs; MB is 10^6 bytes of plaintext.
//!
//! Times are this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall-clock time: on a machine
//! that other jobs share, a thread waiting for a core would otherwise count as a slow cipher.

use std::hint::black_box;
use std::time::Duration;

use p2psc::proto::channel::{
    ChannelKeys, Opener, RecordCipher, RustCryptoCipher, Sealer, MAX_PLAINTEXT_LEN, MAX_RECORD_LEN,
};
use p2psc::proto::SessionKey;
use p2psc::wire::Role;
use p2psc_tokio::AwsLcCipher;

const TOTAL: usize = 64 << 20;
const RUNS: usize = 7;
const SESSION: SessionKey = SessionKey([0x5a; 32]);

fn main() {
    let plaintext: Vec<u8> = (0..TOTAL).map(|i| (i * 31 + 7) as u8).collect();
    let copy = median(|| {
        let mut record = [0u8; MAX_RECORD_LEN];
        for chunk in plaintext.chunks(MAX_PLAINTEXT_LEN) {
            record[3..3 + chunk.len()].copy_from_slice(black_box(chunk));
            black_box(&mut record);
        }
    });
    println!(
        "record layer, {} MiB in records of {MAX_RECORD_LEN} bytes, median of {RUNS}",
        TOTAL >> 20
    );
    println!("  copy (baseline)            {:8.0} MB/s", rate(copy));
    let rust_crypto = seal_and_open::<RustCryptoCipher>(&plaintext);
    let aws_lc = seal_and_open::<AwsLcCipher>(&plaintext);
    for (cipher, (seal, open)) in [("RustCrypto", rust_crypto), ("AWS-LC", aws_lc)] {
        for (name, d) in [("seal", seal), ("open", open)] {
            let ratio = d.as_secs_f64() / copy.as_secs_f64();
            println!(
                "  {name} {cipher:21} {:8.0} MB/s   {ratio:5.1} × the copy's time",
                rate(d)
            );
        }
    }
}

fn rate(d: Duration) -> f64 {
    TOTAL as f64 / d.as_secs_f64() / 1e6
}

/// The median times of sealing `plaintext` into a stream with cipher `C`, and of opening it again.
fn seal_and_open<C: RecordCipher>(plaintext: &[u8]) -> (Duration, Duration) {
    let mut stream = Vec::with_capacity(TOTAL + TOTAL / MAX_PLAINTEXT_LEN * 19 + 64);
    let seal = median(|| {
        stream.clear();
        let mut sealer = Sealer::<C>::with_cipher(ChannelKeys::derive(&SESSION, Role::Leader).send);
        let mut record = [0u8; MAX_RECORD_LEN];
        for chunk in plaintext.chunks(MAX_PLAINTEXT_LEN) {
            let sealed = sealer.seal(chunk, &mut record).unwrap();
            stream.extend_from_slice(&record[..sealed.len]);
        }
        let end = sealer.seal_end(&mut record).unwrap();
        stream.extend_from_slice(&record[..end]);
    });
    let open = median(|| {
        let mut buf = [0u8; MAX_RECORD_LEN];
        let keys = ChannelKeys::derive(&SESSION, Role::Follower);
        let mut opener = Opener::<_, C>::with_cipher(keys.receive, &mut buf);
        let mut rest = &stream[..];
        let mut opened = 0;
        while !rest.is_empty() {
            let used = opener.feed(rest).unwrap();
            opened += opener.plaintext().len();
            black_box(opener.plaintext());
            opener.consume(usize::MAX);
            rest = &rest[used..];
        }
        opener.finish().unwrap();
        assert_eq!(opened, TOTAL);
    });
    // The stream carries the plaintext: check one record, so the benchmark measures real work.
    assert_ne!(&stream[3..3 + 64], &plaintext[..64]);
    (seal, open)
}

fn median(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = thread_cpu_time();
            f();
            thread_cpu_time() - start
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec to a valid pointer.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(r, 0, "clock_gettime");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
