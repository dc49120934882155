//! Test clients for the mediator over real TCP: the crate's registration client
//! ([`p2psc_mediator::client`]), and raw-byte helpers for misbehaving ones. Every wait is bounded by
//! [`within`].
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use p2psc::identity::{PublicKey, Signer};
use p2psc::proto::{RegisterConfig, RegisterEvent};
use p2psc::wire::{FrameReader, Message, MAX_FRAME_LEN};
pub use p2psc_mediator::client::{Client, ClientError};
use p2psc_mediator::{run, DalekSigner, PrefixLimit, ProbePort, Running, ServerConfig};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// Await `f`, failing the test after `limit`.
pub async fn within<T>(limit: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("not done within {limit:?}"))
}

pub const LONG: Duration = Duration::from_secs(10);

pub fn ms(v: u64) -> p2psc::time::Duration {
    p2psc::time::Duration::from_millis(v)
}

/// A configuration for tests: loopback, port 0, no stats log, protocol deadlines short enough to test.
pub fn config() -> ServerConfig {
    let mut config = ServerConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        max_connections: 2_000,
        // Every test client comes from 127.0.0.1: no per-source limits unless a test sets them.
        per_ip: PrefixLimit {
            concurrent: 2_000,
            rate: 0,
        },
        per_net: PrefixLimit {
            concurrent: 2_000,
            rate: 0,
        },
        // Shutdown ends as soon as connections close; generous so a loaded machine passes too.
        shutdown_grace: Duration::from_secs(10),
        stats_interval: None,
        metrics: None,
        // Beside a port-0 listener, port + 1 may be taken: let the system choose.
        probe: ProbePort::Port(0),
        ..ServerConfig::default()
    };
    config.mediator.step_timeout = ms(2_000);
    config.mediator.wait_timeout = ms(20_000);
    config.mediator.linger = ms(200);
    config
}

/// A running server and the switch that shuts it down.
pub struct Mediator {
    pub running: Running,
    stop: Option<oneshot::Sender<()>>,
}

impl Mediator {
    pub async fn start(config: ServerConfig) -> Mediator {
        let (stop, stopped) = oneshot::channel::<()>();
        let running = run(config, async move {
            let _ = stopped.await;
        })
        .await
        .expect("bind");
        Mediator {
            running,
            stop: Some(stop),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.local_addrs()[0]
    }

    pub fn stats(&self) -> p2psc_mediator::Snapshot {
        self.running.stats().snapshot()
    }

    /// Wait (bounded) until the server's counters satisfy `pred`.
    pub async fn wait_for(
        &self,
        pred: impl FnMut(&p2psc_mediator::Snapshot) -> bool,
    ) -> p2psc_mediator::Snapshot {
        within(LONG, self.running.stats().wait_for(pred)).await
    }

    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn signer(n: u32) -> DalekSigner {
    let mut seed = [0x5a; 32];
    seed[..4].copy_from_slice(&n.to_le_bytes());
    DalekSigner::from_seed(&seed)
}

pub fn key(n: u32) -> PublicKey {
    signer(n).public_key()
}

/// A client of `signer`'s key wanting `want`, connected to `addr`, its Hello sent.
pub async fn connect(addr: SocketAddr, signer: DalekSigner, want: PublicKey) -> Client {
    let own = signer.public_key();
    connect_claiming(addr, own, signer, want).await
}

/// Claim `own` in Hello but sign with `signer` (a wrong proof when they differ).
pub async fn connect_claiming(
    addr: SocketAddr,
    own: PublicKey,
    signer: DalekSigner,
    want: PublicKey,
) -> Client {
    let stream = within(LONG, TcpStream::connect(addr))
        .await
        .expect("connect");
    Client::register_claiming(stream, own, signer, want, RegisterConfig::default())
        .await
        .expect("send Hello")
}

/// Connect from a chosen loopback source address.
pub async fn connect_from(
    source: SocketAddr,
    addr: SocketAddr,
    signer: DalekSigner,
    want: PublicKey,
) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(source).unwrap();
    let stream = within(LONG, socket.connect(addr)).await.expect("connect");
    Client::register(stream, signer, want, RegisterConfig::default())
        .await
        .expect("send Hello")
}

/// What the tests expect of a client on its way, as assertions.
#[allow(async_fn_in_trait)]
pub trait Expect {
    /// Until registered (waiting); returns the announced wait. Panics if matched instead.
    async fn registered(&mut self) -> Result<p2psc::time::Duration, ClientError>;

    /// The error the registration ends with. Panics if it matches.
    async fn failure(&mut self) -> ClientError;
}

impl Expect for Client {
    async fn registered(&mut self) -> Result<p2psc::time::Duration, ClientError> {
        let waiting_or_matched = |e: &RegisterEvent| {
            matches!(
                e,
                RegisterEvent::Registered { .. } | RegisterEvent::Matched(_)
            )
        };
        match self.until(waiting_or_matched).await? {
            RegisterEvent::Registered { wait } => Ok(wait),
            other => panic!("matched before registered: {other:?}"),
        }
    }

    async fn failure(&mut self) -> ClientError {
        match self.matched().await {
            Ok(info) => panic!("matched unexpectedly: {info:?}"),
            Err(failure) => failure,
        }
    }
}

/// Read whatever the mediator sends until it closes: the messages, and how the stream ended.
pub async fn read_until_closed(stream: &mut TcpStream) -> Vec<Message> {
    let mut reader = FrameReader::new();
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return messages,
            Ok(n) => {
                let mut data = &buf[..n];
                while !data.is_empty() {
                    let (used, message) = reader.read(data);
                    if let Some(message) = message {
                        messages.push(message.expect("mediator sent a bad frame"));
                    }
                    data = &data[used..];
                }
            }
        }
    }
}

/// A valid Hello frame of `signer` wanting `want`.
pub fn hello_frame(own: PublicKey, want: PublicKey) -> Vec<u8> {
    let message = Message::Hello(p2psc::wire::Hello {
        key: own,
        want,
        nonce: [7; 32],
        local: None,
        relay: None,
    });
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = message.emit_bytes(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// Version 2: where a client's mapping probe comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// From the local port of its mediator connection (as a peer sends it).
    SamePort,
    /// From another local port (as a NAT that maps per destination makes it look).
    OtherPort,
    /// No probe.
    None,
}

impl Mediator {
    /// The probe endpoint.
    pub fn probe_addr(&self) -> SocketAddr {
        self.running.probe_addrs()[0]
    }
}

/// A version-2 client of key `n` wanting `want`, saying `relay`, its Hello sent and its probe (if any)
/// recorded by the mediator.
pub async fn connect_v2(
    mediator: &Mediator,
    n: u32,
    want: u32,
    relay: p2psc::wire::RelayMode,
    probe: Probe,
) -> Client {
    use p2psc_mediator::client::{send_probe, shared_port_socket};
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let socket = shared_port_socket(any).unwrap();
    let local = socket.local_addr().unwrap();
    let stream = within(LONG, socket.connect(mediator.addr()))
        .await
        .expect("connect");
    let client = Client::register_relay(
        stream,
        signer(n),
        key(want),
        RegisterConfig::default(),
        relay,
    )
    .await
    .expect("send Hello");
    let from = match probe {
        Probe::SamePort => local,
        Probe::OtherPort => any,
        Probe::None => return client,
    };
    within(
        LONG,
        send_probe(from, mediator.probe_addr(), client.nonce()),
    )
    .await
    .expect("probe recorded");
    client
}

/// A version-2 pair of keys `a` (registered first: the leader) and `a + 1`, matched; their Matches.
pub async fn matched_v2(
    mediator: &Mediator,
    a: u32,
    relay: p2psc::wire::RelayMode,
    probes: [Probe; 2],
) -> ([Client; 2], [p2psc::proto::PunchInfo; 2]) {
    let mut leader = connect_v2(mediator, a, a + 1, relay, probes[0]).await;
    within(LONG, leader.registered()).await.expect("registered");
    let mut follower = connect_v2(mediator, a + 1, a, relay, probes[1]).await;
    let (l, f) = within(LONG, async {
        tokio::join!(leader.matched(), follower.matched())
    })
    .await;
    (
        [leader, follower],
        [l.expect("matched"), f.expect("matched")],
    )
}
