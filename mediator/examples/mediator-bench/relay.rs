//! The relay's figures (protocol version 2): (e) throughput of relayed pairs on loopback, with the
//! server's CPU time, so bytes per second per core; (f) the server's resident memory per idle relayed
//! pair.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2psc::identity::Signer;
use p2psc::proto::RegisterConfig;
use p2psc::wire::RelayMode;
use p2psc_mediator::client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::load;
use crate::server::ServerProcess;

/// The relay without rate or byte limits, room for every pair, and no idle end during a run.
const RELAY_ARGS: [&str; 12] = [
    "--relay-max-bytes",
    "1000000GiB",
    "--relay-pair-rate",
    "0",
    "--relay-total-rate",
    "0",
    "--max-relays",
    "19000",
    "--relay-idle-timeout",
    "1h",
    "--linger",
    "5m",
];

/// (e).
pub struct RelayThroughput {
    /// Pairs relaying at once, each in both directions.
    pub pairs: usize,
    /// Bytes delivered through the relay (all pairs, both directions) per second.
    pub bytes_per_s: f64,
    /// The server's CPU time over the run's wall time.
    pub server_cores: f64,
}

/// (f).
pub struct RelayMemory {
    /// Idle relayed pairs held.
    pub pairs: usize,
    /// VmRSS before and with them, KiB.
    pub before_kib: u64,
    /// VmRSS with them.
    pub after_kib: u64,
}

impl RelayMemory {
    /// The server's resident memory per relayed pair (two connections and the splice).
    pub fn per_pair_bytes(&self) -> f64 {
        (self.after_kib.saturating_sub(self.before_kib) * 1024) as f64 / self.pairs as f64
    }
}

/// Register pair `n` (version 2, relay at once), request the relay on both sides, wait for Relayed:
/// the two relayed streams.
async fn relayed_pair(addr: SocketAddr, n: u32) -> (TcpStream, TcpStream) {
    let (a, b) = (
        load::seeded(3_000_000 + 2 * n),
        load::seeded(3_000_001 + 2 * n),
    );
    let (want_b, want_a) = (b.public_key(), a.public_key());
    let client = |signer, want| async move {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let config = RegisterConfig::default();
        Client::register_relay(stream, signer, want, config, RelayMode::Only)
            .await
            .expect("Hello")
    };
    let (mut a, mut b) = tokio::join!(client(a, want_b), client(b, want_a));
    let (ma, mb) = tokio::join!(a.matched(), b.matched());
    ma.expect("matched");
    mb.expect("matched");
    let (ra, rb) = tokio::join!(a.request_relay(b""), b.request_relay(b""));
    ra.expect("RelayRequest");
    rb.expect("RelayRequest");
    let (ja, jb) = tokio::join!(a.relayed(), b.relayed());
    ja.expect("relayed");
    jb.expect("relayed");
    (a.into_stream(), b.into_stream())
}

/// `count` relayed pairs, `at_once` being set up concurrently.
async fn relayed_pairs(
    addr: SocketAddr,
    first: u32,
    count: usize,
    at_once: usize,
) -> Vec<(TcpStream, TcpStream)> {
    let mut pairs = Vec::with_capacity(count);
    let mut next = first;
    while pairs.len() < count {
        let batch = at_once.min(count - pairs.len()) as u32;
        let tasks: Vec<_> = (next..next + batch)
            .map(|n| tokio::spawn(relayed_pair(addr, n)))
            .collect();
        for task in tasks {
            pairs.push(task.await.expect("pair"));
        }
        next += batch;
    }
    pairs
}

/// Write as fast as the stream takes it until `until`; then half-close.
async fn blast(mut to: tokio::net::tcp::OwnedWriteHalf, until: Instant) {
    let chunk = vec![0x5a_u8; 64 * 1024];
    while Instant::now() < until {
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

/// Count bytes until the end of the stream or `until`.
async fn count(mut from: tokio::net::tcp::OwnedReadHalf, until: Instant) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    while let Ok(Ok(n)) = tokio::time::timeout_at(until.into(), from.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

/// (e): `pairs` relayed pairs, each sending in both directions as fast as it can for `seconds`.
pub async fn throughput(pairs: usize, seconds: u64) -> RelayThroughput {
    let server = ServerProcess::start(None, &RELAY_ARGS);
    let streams = relayed_pairs(server.addr, 0, pairs, pairs).await;
    let (cpu_before, start) = (server.cpu(), Instant::now());
    let until = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (a, b) in streams {
        let ((ra, wa), (rb, wb)) = (a.into_split(), b.into_split());
        tokio::spawn(blast(wa, until));
        tokio::spawn(blast(wb, until));
        tasks.push(tokio::spawn(count(ra, until)));
        tasks.push(tokio::spawn(count(rb, until)));
    }
    let mut bytes = 0u64;
    for task in tasks {
        bytes += task.await.expect("counter");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = server.cpu().saturating_sub(cpu_before).as_secs_f64();
    RelayThroughput {
        pairs,
        bytes_per_s: bytes as f64 / elapsed,
        server_cores: cpu / elapsed,
    }
}

/// (f): a fresh server, warmed up with relays that come and go, then `pairs` idle relayed pairs.
pub async fn memory(pairs: usize) -> RelayMemory {
    let server = ServerProcess::start(None, &RELAY_ARGS);
    let warm = relayed_pairs(server.addr, 0, pairs.min(200), 32).await;
    server
        .wait_metric("relays_open", |n| n == warm.len() as u64)
        .await;
    drop(warm);
    server.wait_metric("relays_open", |n| n == 0).await;
    server.wait_metric("connections", |n| n == 0).await;
    let before_kib = server.rss_kib();
    let held = relayed_pairs(server.addr, 100_000, pairs, 32).await;
    server
        .wait_metric("relays_open", |n| n == pairs as u64)
        .await;
    let after_kib = server.rss_kib();
    drop(held);
    RelayMemory {
        pairs,
        before_kib,
        after_kib,
    }
}
