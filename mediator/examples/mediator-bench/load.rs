//! Load generation: client identities and source addresses, pairs that register and get matched over
//! and over, and peers that register and wait. Every client is the crate's registration client
//! ([`p2psc_mediator::client`]), signing with ed25519-dalek.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use p2psc::identity::{PublicKey, Signer};
use p2psc::proto::{RegisterConfig, RegisterEvent};
use p2psc::time::Duration;
use p2psc_mediator::client::{connect_from_address as connect, Client};
use p2psc_mediator::DalekSigner;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The clients' deadlines: far beyond anything a loaded loopback server takes.
const CONFIG: RegisterConfig = RegisterConfig {
    step_timeout: Duration::from_secs(30),
    wait_timeout: Duration::from_secs(600),
};

/// Registrations waiting at once while [`open_waiting`] fills the table.
const WAITING_AT_ONCE: usize = 256;

/// The throughput run's parameters.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Seconds to measure.
    pub seconds: u64,
    /// Pairs registering at once.
    pub pairs: usize,
    /// Loopback source addresses to spread the connections over.
    pub sources: u8,
    /// Pin the server to this CPU.
    pub server_cpu: Option<usize>,
}

/// A runtime for the clients with `threads` workers.
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

/// The signer of client number `n`.
pub fn seeded(n: u32) -> DalekSigner {
    let mut seed = [0xb7; 32];
    seed[..4].copy_from_slice(&n.to_le_bytes());
    DalekSigner::from_seed(&seed)
}

/// The `i`-th connection's loopback source address, one of `sources`.
fn source(i: usize, sources: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (i % sources.max(1) as usize) as u8,
    ))
}

/// Pairs of clients registering with each other, round after round, until stopped.
pub struct Pairs {
    completed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pairs {
    /// Start `load.pairs` pairs against the mediator at `addr`.
    pub fn start(addr: SocketAddr, load: &Load) -> Pairs {
        Pairs::spread(&[addr], load)
    }

    /// Start `load.pairs` pairs, pair `p` on mediator `p % addrs.len()` (each pair meets on one
    /// mediator, as the rendezvous ranking makes real pairs do).
    pub fn spread(addrs: &[SocketAddr], load: &Load) -> Pairs {
        let completed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..load.pairs)
            .map(|p| {
                let (completed, stop) = (completed.clone(), stop.clone());
                let addr = addrs[p % addrs.len()];
                tokio::spawn(pair_rounds(p, addr, load.sources, completed, stop))
            })
            .collect();
        Pairs {
            completed,
            stop,
            tasks,
        }
    }

    /// Registrations completed so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Relaxed)
    }

    /// Stop after the rounds under way.
    pub async fn stop(self) {
        self.stop.store(true, Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

/// Pair number `p`: connect both, register both until matched, hang up, and again, until `stop`.
async fn pair_rounds(
    p: usize,
    addr: SocketAddr,
    sources: u8,
    completed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let (a, b) = (
        seeded(1_000_000 + 2 * p as u32),
        seeded(1_000_001 + 2 * p as u32),
    );
    let (ka, kb) = (a.public_key(), b.public_key());
    let mut round = 0usize;
    while !stop.load(Relaxed) {
        let (from_a, from_b) = (source(p + round, sources), source(p + round + 1, sources));
        round += 1;
        let (sa, sb) = tokio::join!(connect(addr, from_a), connect(addr, from_b));
        let (sa, sb) = (sa.expect("connect"), sb.expect("connect"));
        tokio::join!(
            register_until_matched(sa, &a, kb),
            register_until_matched(sb, &b, ka)
        );
        // Both connections are closed: the peers hang up after their Match, as real ones do.
        completed.fetch_add(2, Relaxed);
    }
}

/// Register over `stream` as `signer`, wanting `want`, until matched; then hang up.
async fn register_until_matched(stream: TcpStream, signer: &DalekSigner, want: PublicKey) {
    let mut client = Client::register(stream, signer.clone(), want, CONFIG)
        .await
        .expect("send Hello");
    client.matched().await.expect("registration");
}

/// Register one connection per signer (all wanting `want`, who never comes), [`WAITING_AT_ONCE`] at a
/// time, and keep the connections open.
pub async fn open_waiting(
    addr: SocketAddr,
    signers: &[DalekSigner],
    want: PublicKey,
    sources: u8,
) -> Vec<Client> {
    let limit = Arc::new(tokio::sync::Semaphore::new(WAITING_AT_ONCE));
    let mut tasks = Vec::with_capacity(signers.len());
    for (i, signer) in signers.iter().enumerate() {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let signer = signer.clone();
        tasks.push(tokio::spawn(async move {
            let stream = connect(addr, source(i, sources)).await.expect("connect");
            let mut client = Client::register(stream, signer, want, CONFIG)
                .await
                .expect("send Hello");
            let registered = |e: &RegisterEvent| matches!(e, RegisterEvent::Registered { .. });
            client.until(registered).await.expect("registration");
            drop(permit);
            client
        }));
    }
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    clients
}
