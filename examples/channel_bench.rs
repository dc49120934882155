//! Host throughput of the secure channel's record layer, against a plain copy of the same data.
//!
//!     cargo run --release --example channel_bench
//!
//! Seals 64 MiB of plaintext in records of the maximum size (the sealer copies each chunk into its
//! record buffer and encrypts it in place), then opens that stream (the opener copies each record into
//! its buffer, verifies and decrypts it in place). The baseline copies the same chunks into a record
//! buffer. Each figure is the median of 7 runs; MB is 10^6 bytes of plaintext.

use std::hint::black_box;
use std::time::{Duration, Instant};

use p2psc::proto::channel::{ChannelKeys, Opener, Sealer, MAX_PLAINTEXT_LEN, MAX_RECORD_LEN};
use p2psc::proto::SessionKey;
use p2psc::wire::Role;

const TOTAL: usize = 64 << 20;
const RUNS: usize = 7;

fn main() {
    let session = SessionKey([0x5a; 32]);
    let plaintext: Vec<u8> = (0..TOTAL).map(|i| (i * 31 + 7) as u8).collect();
    let mut stream = Vec::with_capacity(TOTAL + TOTAL / MAX_PLAINTEXT_LEN * 19 + 64);

    let copy = median(|| {
        let mut record = [0u8; MAX_RECORD_LEN];
        for chunk in plaintext.chunks(MAX_PLAINTEXT_LEN) {
            record[3..3 + chunk.len()].copy_from_slice(black_box(chunk));
            black_box(&mut record);
        }
    });
    let seal = median(|| {
        stream.clear();
        let mut sealer = Sealer::new(ChannelKeys::derive(&session, Role::Leader).send);
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
        let keys = ChannelKeys::derive(&session, Role::Follower);
        let mut opener = Opener::new(keys.receive, &mut buf);
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

    println!(
        "record layer, {} MiB in records of {MAX_RECORD_LEN} bytes, median of {RUNS}",
        TOTAL >> 20
    );
    let rate = |d: Duration| TOTAL as f64 / d.as_secs_f64() / 1e6;
    println!("  copy (baseline) {:8.0} MB/s", rate(copy));
    for (name, d) in [("seal", seal), ("open", open)] {
        let ratio = d.as_secs_f64() / copy.as_secs_f64();
        println!(
            "  {name:15} {:8.0} MB/s   {ratio:5.1} × the copy's time",
            rate(d)
        );
    }
}

fn median(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}
