//! The attackers and the honest pairs. Attackers come from `127.N.0.1` for N = 1..=170 (one address in
//! each of 170 distinct /16s of 127/8); honest peers each from an address of their own, in /24s no
//! attacker uses (`127.200+.x.1`). Every loop stops when its task is aborted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p2psc::identity::{PublicKey, Signature, Signer};
use p2psc::proto::{RegisterConfig, RegisterError};
use p2psc::wire::{AbortReason, FrameReader, Hello, Message, Proof, MAX_FRAME_LEN};
use p2psc_mediator::client::{connect_from_address as connect, Client, ClientError};
use p2psc_mediator::DalekSigner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// Client deadlines far beyond anything the server takes.
const CONFIG: RegisterConfig = RegisterConfig {
    step_timeout: p2psc::time::Duration::from_secs(30),
    wait_timeout: p2psc::time::Duration::from_secs(600),
};

/// Attacker address number `n` (0-based): 127.(n+1).0.1, each in its own /16.
pub fn attacker_ip(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1 + n as u8, 0, 1))
}

/// Honest peer number `n`'s address: its own /24 in 127.200/13 and above, away from the attackers.
pub fn honest_ip(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        200 + (n / 250 % 50) as u8,
        1 + (n % 250) as u8,
        1,
    ))
}

/// The signer with seed number `n` (distinct for every `n`).
pub fn signer(n: u64) -> DalekSigner {
    let mut seed = [0x3c; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    DalekSigner::from_seed(&seed)
}

/// The attackers: a runtime of their own, whose threads run at the lowest priority (nice 19) so that
/// the honest clients in the test's runtime are never slowed by them, only by the server.
pub struct Attack {
    runtime: Runtime,
    tasks: Vec<JoinHandle<()>>,
    /// Attack connections completed (for the verify flood: proofs the server had to check).
    pub done: Arc<AtomicU64>,
}

impl Attack {
    /// An attack whose threads run on `cpu`, if given.
    fn new(cpu: Option<usize>) -> Attack {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                if let Some(cpu) = cpu {
                    crate::server::pin_to(cpu);
                }
                // SAFETY: setpriority on the calling thread (Linux: PRIO_PROCESS 0 is this thread).
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
            })
            .build()
            .unwrap();
        Attack {
            runtime,
            tasks: Vec::new(),
            done: Arc::default(),
        }
    }

    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(self.runtime.spawn(task));
    }

    /// Stop every attacking task.
    pub fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.runtime.shutdown_background();
    }
}

/// `per_address` connections from each of `addresses` attacker addresses, each registering a fresh key
/// (wanting nobody who comes), answering Pings, and registering again as soon as it is turned away.
pub fn table_fill(server: SocketAddr, addresses: usize, per_address: usize) -> Attack {
    let mut attack = Attack::new(None);
    for a in 0..addresses {
        for c in 0..per_address {
            let done = attack.done.clone();
            let first = ((a * per_address + c) as u64) << 24;
            attack.spawn(async move {
                let nobody = signer(u64::MAX).public_key();
                for round in 0.. {
                    let Ok(stream) = connect(server, attacker_ip(a)).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let key = signer(first + round);
                    if let Ok(mut client) = Client::register(stream, key, nobody, CONFIG).await {
                        // Returns only when turned away: RetryAfter, an Abort, a closed connection.
                        let _ = client.matched().await;
                    }
                    done.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    }
    attack
}

/// `per_address` connections from each attacker address that send nothing, and connect again when the
/// server closes them.
pub fn idle_flood(server: SocketAddr, addresses: usize, per_address: usize) -> Attack {
    let mut attack = Attack::new(None);
    for a in 0..addresses {
        for _ in 0..per_address {
            let done = attack.done.clone();
            attack.spawn(async move {
                loop {
                    if let Ok(mut stream) = connect(server, attacker_ip(a)).await {
                        let mut buf = [0u8; 64];
                        while let Ok(n) = stream.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                        }
                        done.fetch_add(1, Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
    }
    attack
}

/// `per_address` loops from each attacker address: connect, Hello with a real key, and a well-formed
/// signature that is wrong for the challenge (made once, so it costs the attacker nothing), then wait
/// for the BadProof and go again. The attackers run on `cpu`, if given.
pub fn verify_flood(
    server: SocketAddr,
    addresses: usize,
    per_address: usize,
    cpu: Option<usize>,
) -> Attack {
    let mut attack = Attack::new(cpu);
    for a in 0..addresses {
        let key = signer(1 << 40 | a as u64);
        let wrong = key.sign(b"not the registration transcript");
        let (own, want) = (key.public_key(), signer(u64::MAX).public_key());
        for _ in 0..per_address {
            let done = attack.done.clone();
            attack.spawn(async move {
                loop {
                    if let Ok(stream) = connect(server, attacker_ip(a)).await {
                        if bad_proof(stream, own, want, wrong).await {
                            done.fetch_add(1, Relaxed);
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
        }
    }
    attack
}

/// One cheap-verify attack over `stream`: whether the server answered it with BadProof.
async fn bad_proof(mut stream: TcpStream, own: PublicKey, want: PublicKey, sig: Signature) -> bool {
    let hello = Message::Hello(Hello {
        key: own,
        want,
        nonce: [9; 32],
        local: None,
        relay: None,
    });
    if send(&mut stream, hello).await.is_err() {
        return false;
    }
    let mut reader = FrameReader::new();
    let mut proved = false;
    let mut buf = [0u8; 512];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        while !data.is_empty() {
            let (used, message) = reader.read(data);
            data = &data[used..];
            match message {
                Some(Ok(Message::Challenge(_))) if !proved => {
                    proved = true;
                    let proof = Message::Proof(Proof {
                        signature: sig,
                        hold_ms: 0,
                    });
                    if send(&mut stream, proof).await.is_err() {
                        return false;
                    }
                }
                Some(Ok(Message::Abort(reason))) => return reason == AbortReason::BadProof,
                Some(_) => return false,
                None => {}
            }
        }
    }
}

async fn send(stream: &mut TcpStream, message: Message) -> std::io::Result<()> {
    let mut frame = [0u8; MAX_FRAME_LEN];
    let n = message.emit_bytes(&mut frame).unwrap();
    stream.write_all(&frame[..n]).await
}

/// How one honest peer's registration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Matched, this long after it started to connect.
    Matched(Duration),
    /// The mediator answered RetryAfter.
    RetryAfter,
    /// The mediator refused the connection (TooManyConnections).
    Refused,
    /// Anything else: another Abort, a closed or failed connection, no connection at all.
    Other,
}

/// Honest peer `n` registers wanting `want` from its own address; how it ended.
pub async fn honest(server: SocketAddr, n: usize, want: PublicKey) -> Outcome {
    let start = Instant::now();
    let Ok(stream) = connect(server, honest_ip(n)).await else {
        return Outcome::Other;
    };
    let Ok(mut client) = Client::register(stream, signer(n as u64 | 1 << 50), want, CONFIG).await
    else {
        return Outcome::Other;
    };
    match tokio::time::timeout(Duration::from_secs(20), client.matched()).await {
        Ok(Ok(_)) => Outcome::Matched(start.elapsed()),
        Ok(Err(ClientError::Register(RegisterError::RetryAfter(_)))) => Outcome::RetryAfter,
        Ok(Err(ClientError::Register(RegisterError::Aborted(AbortReason::TooManyConnections)))) => {
            Outcome::Refused
        }
        _ => Outcome::Other,
    }
}

/// Honest pair `p`: both peers register at once; the outcome of each.
pub async fn honest_pair(server: SocketAddr, p: usize) -> [Outcome; 2] {
    let (a, b) = (2 * p, 2 * p + 1);
    let (ka, kb) = (
        signer(a as u64 | 1 << 50).public_key(),
        signer(b as u64 | 1 << 50).public_key(),
    );
    let (oa, ob) = tokio::join!(honest(server, a, kb), honest(server, b, ka));
    [oa, ob]
}

/// `pairs` honest pairs, one starting every `every`; the outcomes of all.
pub async fn honest_pairs(server: SocketAddr, pairs: usize, every: Duration) -> Vec<[Outcome; 2]> {
    let mut tasks = Vec::with_capacity(pairs);
    let mut tick = tokio::time::interval(every);
    for p in 0..pairs {
        tick.tick().await;
        tasks.push(tokio::spawn(honest_pair(server, p)));
    }
    let mut outcomes = Vec::with_capacity(pairs);
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}
