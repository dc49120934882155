//! The measurements: (a) the verification ceiling, (b) registration throughput through the server,
//! (c) the server's memory per waiting peer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2psc::identity::{PublicKey, Signature, Signer, Verifier};
use p2psc::wire::{Challenge, Hello};
use p2psc_mediator::{DalekSigner, DalekVerifier};

use crate::host;
use crate::load::{self, Load, Pairs};
use crate::server::ServerProcess;

/// (a) ed25519-dalek verifications per second.
pub struct Ceiling {
    /// On one thread.
    pub one: f64,
    /// On two threads.
    pub two: f64,
}

/// One registration proof as the server checks it: key, signed transcript, signature.
type Case = (PublicKey, Vec<u8>, Signature);

/// (a): the best of three runs of `each` on one thread, and on two.
pub fn verify_ceiling(each: Duration) -> Ceiling {
    let cases = proofs();
    // Best of three: other work on the machine only ever slows a run down.
    let best = |threads| {
        (0..3)
            .map(|_| verify_rate(&cases, threads, each))
            .fold(0.0, f64::max)
    };
    Ceiling {
        one: best(1),
        two: best(2),
    }
}

/// Real registration transcripts, each under its own key, as the server sees them.
fn proofs() -> Vec<Case> {
    (0..256u32)
        .map(|i| {
            let signer = load::seeded(i);
            let hello = Hello {
                key: signer.public_key(),
                want: load::seeded(i + 1).public_key(),
                nonce: [i as u8; 32],
                local: Some(SocketAddr::from(([192, 168, 1, 2], 40_000))),
                relay: None,
            };
            let challenge = Challenge {
                nonce: [!(i as u8); 32],
                observed: SocketAddr::from(([203, 0, 113, 9], 50_000)),
            };
            let transcript = p2psc::proto::transcript::registration(&hello, &challenge);
            let msg = transcript.as_bytes().to_vec();
            let sig = signer.sign(&msg);
            (hello.key, msg, sig)
        })
        .collect()
}

/// Verifications per second of `cases`, round robin on `threads` threads for `each`.
fn verify_rate(cases: &[Case], threads: usize, each: Duration) -> f64 {
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut n = 0u64;
                    let mut i = t * 17;
                    while start.elapsed() < each {
                        for _ in 0..64 {
                            let (key, msg, sig) = &cases[i % cases.len()];
                            assert!(DalekVerifier.verify(key, msg, sig).is_ok());
                            i += 1;
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// (b): registrations through the server, and where the CPU time went.
pub struct Throughput {
    /// Completed registrations per second.
    pub rate: f64,
    /// Registrations completed while measuring.
    pub completed: u64,
    /// How long the measurement ran.
    pub elapsed: Duration,
    /// The server's CPU time per registration.
    pub server_cpu_per_registration_us: f64,
    /// Cores the server kept busy.
    pub server_cores: f64,
    /// Cores the clients kept busy.
    pub client_cores: f64,
    /// Busy CPU not accounted to the server or the clients: other processes, and kernel work (softirq)
    /// charged to no process.
    pub other_cores: f64,
}

/// Counters at one moment of a throughput run.
struct Sample {
    completed: u64,
    server_cpu: Duration,
    own_cpu: Duration,
    machine_busy: Duration,
    at: Instant,
}

impl Sample {
    fn take(server: &ServerProcess, pairs: &Pairs) -> Sample {
        Sample {
            completed: pairs.completed(),
            server_cpu: server.cpu(),
            own_cpu: host::own_cpu(),
            machine_busy: host::machine_busy(),
            at: Instant::now(),
        }
    }
}

impl Throughput {
    /// The figures between two samples.
    fn between(s0: &Sample, s1: &Sample) -> Throughput {
        let done = s1.completed - s0.completed;
        let elapsed = s1.at - s0.at;
        let secs = elapsed.as_secs_f64();
        let server_cpu = (s1.server_cpu - s0.server_cpu).as_secs_f64();
        let client_cpu = (s1.own_cpu - s0.own_cpu).as_secs_f64();
        let busy = (s1.machine_busy - s0.machine_busy).as_secs_f64();
        Throughput {
            rate: done as f64 / secs,
            completed: done,
            elapsed,
            server_cpu_per_registration_us: server_cpu * 1e6 / done as f64,
            server_cores: server_cpu / secs,
            client_cores: client_cpu / secs,
            other_cores: (busy - server_cpu - client_cpu).max(0.0) / secs,
        }
    }
}

/// (b): run `load` against a fresh server for a warm-up second, then measure `load.seconds`.
pub async fn throughput(load: Load) -> Throughput {
    let server = ServerProcess::start(load.server_cpu, &["--linger", "1s"]);
    let pairs = Pairs::start(server.addr, &load);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s0 = Sample::take(&server, &pairs);
    tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    let s1 = Sample::take(&server, &pairs);
    pairs.stop().await;
    Throughput::between(&s0, &s1)
}

/// (d): completed registrations per second through `servers` mediator processes at once, the pairs
/// spread evenly over them, after a warm-up second.
pub async fn aggregate(load: Load, servers: usize) -> f64 {
    let processes: Vec<ServerProcess> = (0..servers)
        .map(|_| ServerProcess::start(None, &["--linger", "1s"]))
        .collect();
    let addrs: Vec<SocketAddr> = processes.iter().map(|s| s.addr).collect();
    let pairs = Pairs::spread(&addrs, &load);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (c0, t0) = (pairs.completed(), Instant::now());
    tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    let rate = (pairs.completed() - c0) as f64 / t0.elapsed().as_secs_f64();
    pairs.stop().await;
    rate
}

/// (b1): [`throughput`] with the server alone on CPU 0 and the clients on CPU 1 (one worker): the
/// server's own rate, against (a)'s one thread. `None` on a single core.
pub fn throughput_pinned(load: Load) -> Option<Throughput> {
    // (Loopback charges part of each receiver's TCP work to the sender's core.)
    (host::cores() >= 2).then(|| {
        std::thread::spawn(move || {
            host::pin_to(1);
            load::runtime(1).block_on(throughput(Load {
                server_cpu: Some(0),
                ..load
            }))
        })
        .join()
        .unwrap()
    })
}

/// (c): the server's resident memory idle and with `peers` waiting peers.
pub struct Memory {
    /// VmRSS with no peer waiting (after a warm-up round).
    pub before_kib: u64,
    /// VmRSS with `peers` waiting.
    pub after_kib: u64,
    /// Waiting peers.
    pub peers: usize,
    /// The server's resident memory per waiting peer.
    pub per_peer_bytes: f64,
    /// Kernel slab memory per socket (outside VmRSS).
    pub kernel_per_socket_bytes: f64,
}

/// (c): fill a fresh, warmed-up server's table with `peers` idle waiting peers.
pub async fn memory(peers: usize, sources: u8) -> Memory {
    // Pings and wait deadlines far away: the peers stay idle.
    let server = ServerProcess::start(None, &["--wait-timeout", "1h", "--ping-interval", "1h"]);
    let signers: Arc<Vec<DalekSigner>> = Arc::new(
        (0..peers as u32)
            .map(|i| load::seeded(2_000_000 + i))
            .collect(),
    );
    let nobody = load::seeded(u32::MAX).public_key();
    warm_up(&server, &signers[..peers.min(1_000)], nobody, sources).await;
    let (before_kib, slab_before) = (server.rss_kib(), host::slab_kib());
    let held = load::open_waiting(server.addr, &signers, nobody, sources).await;
    server.wait_metric("waiting", |w| w == peers as u64).await;
    let (after_kib, slab_after) = (server.rss_kib(), host::slab_kib());
    drop(held);
    Memory {
        before_kib,
        after_kib,
        peers,
        per_peer_bytes: (after_kib.saturating_sub(before_kib) * 1024) as f64 / peers as f64,
        // Both ends of each connection are sockets of this kernel.
        kernel_per_socket_bytes: (slab_after.saturating_sub(slab_before) * 1024) as f64
            / (2 * peers) as f64,
    }
}

/// Warm up the server (runtime, allocator arenas, tables) with a round of peers that come and go.
async fn warm_up(server: &ServerProcess, signers: &[DalekSigner], want: PublicKey, sources: u8) {
    let warm = load::open_waiting(server.addr, signers, want, sources).await;
    server
        .wait_metric("waiting", |w| w == warm.len() as u64)
        .await;
    drop(warm);
    server.wait_metric("connections", |c| c == 0).await;
}
