//! Test clients for the mediator over real TCP: a peer driven by p2psc's own registration state machine,
//! and raw-byte helpers for misbehaving ones. Every wait is bounded by [`within`].
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use p2psc::identity::{PublicKey, Signer};
use p2psc::proto::{PunchInfo, RegisterConfig, RegisterError, RegisterEvent, Registration};
use p2psc::time::Instant;
use p2psc::wire::{FrameReader, Message, MAX_FRAME_LEN};
use p2psc_mediator::{run, DalekSigner, Running, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
        max_per_ip: 2_000,
        // Shutdown ends as soon as connections close; generous so a loaded machine passes too.
        shutdown_grace: Duration::from_secs(10),
        stats_interval: None,
        metrics: None,
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

/// Why a client stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The registration machine failed (Abort, RetryAfter, bad frame, deadline).
    Register(RegisterError),
    /// The mediator closed the connection without a word.
    Closed,
    /// Reading or writing failed.
    Io(std::io::ErrorKind),
}

/// A peer registering with the mediator through `p2psc::proto::Registration`.
pub struct Client {
    pub stream: TcpStream,
    pub local: SocketAddr,
    registration: Registration,
    signer: DalekSigner,
    start: tokio::time::Instant,
    events: Vec<RegisterEvent>,
    seen: usize,
    failure: Option<Failure>,
}

impl Client {
    /// Connect and send Hello as `signer`'s key, wanting `want`.
    pub async fn connect(addr: SocketAddr, signer: DalekSigner, want: PublicKey) -> Client {
        let own = signer.public_key();
        Self::connect_claiming(addr, own, signer, want).await
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
        Self::over(stream, own, signer, want).await
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
        let own = signer.public_key();
        Self::over(stream, own, signer, want).await
    }

    async fn over(
        stream: TcpStream,
        own: PublicKey,
        signer: DalekSigner,
        want: PublicKey,
    ) -> Client {
        let local = stream.local_addr().unwrap();
        let start = tokio::time::Instant::now();
        let config = RegisterConfig {
            step_timeout: p2psc::time::Duration::from_secs(10),
            wait_timeout: p2psc::time::Duration::from_secs(60),
        };
        let mut nonce = [0u8; 32];
        nonce[..2].copy_from_slice(&local.port().to_be_bytes());
        let registration = Registration::new(config, own, want, nonce, Some(local), Instant::ZERO);
        let mut client = Client {
            stream,
            local,
            registration,
            signer,
            start,
            events: Vec::new(),
            seen: 0,
            failure: None,
        };
        client.flush().await.expect("send Hello");
        client
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        while let Some(n) = self.registration.transmit(self.now(), &mut buf) {
            self.stream.write_all(&buf[..n]).await?;
        }
        Ok(())
    }

    /// Drive the registration (answering Pings) until an event satisfies `done`, or it fails.
    pub async fn until(
        &mut self,
        mut done: impl FnMut(&RegisterEvent) -> bool,
    ) -> Result<RegisterEvent, Failure> {
        loop {
            while self.seen < self.events.len() {
                let event = self.events[self.seen];
                self.seen += 1;
                if done(&event) {
                    return Ok(event);
                }
            }
            if let Some(failure) = self.failure {
                return Err(failure);
            }
            if let Err(e) = self.flush().await {
                self.failure = Some(Failure::Io(e.kind()));
                continue;
            }
            let deadline = self.registration.poll_at();
            let mut buf = [0u8; 1024];
            tokio::select! {
                read = self.stream.read(&mut buf) => match read {
                    Ok(0) => self.failure = Some(Failure::Closed),
                    Ok(n) => self.feed(&buf[..n]),
                    Err(e) => self.failure = Some(Failure::Io(e.kind())),
                },
                _ = sleep_until(deadline, self.start) => {
                    if let Err(e) = self.registration.poll(self.now()) {
                        self.failure = Some(Failure::Register(e));
                    }
                }
            }
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        let now = self.now();
        while !data.is_empty() {
            match self.registration.receive(now, &self.signer, data) {
                Ok((used, event)) => {
                    self.events.extend(event);
                    if used == 0 {
                        break;
                    }
                    data = &data[used..];
                }
                Err(e) => {
                    self.failure = Some(Failure::Register(e));
                    break;
                }
            }
        }
    }

    /// Until registered (waiting); returns the announced wait.
    pub async fn registered(&mut self) -> Result<p2psc::time::Duration, Failure> {
        match self
            .until(|e| {
                matches!(
                    e,
                    RegisterEvent::Registered { .. } | RegisterEvent::Matched(_)
                )
            })
            .await?
        {
            RegisterEvent::Registered { wait } => Ok(wait),
            other => panic!("matched before registered: {other:?}"),
        }
    }

    /// Until matched.
    pub async fn matched(&mut self) -> Result<PunchInfo, Failure> {
        match self
            .until(|e| matches!(e, RegisterEvent::Matched(_)))
            .await?
        {
            RegisterEvent::Matched(info) => Ok(info),
            _ => unreachable!(),
        }
    }

    /// The error the registration ends with (it must not match).
    pub async fn failure(&mut self) -> Failure {
        match self.matched().await {
            Ok(info) => panic!("matched unexpectedly: {info:?}"),
            Err(failure) => failure,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>, start: tokio::time::Instant) {
    match deadline {
        Some(at) => {
            tokio::time::sleep_until(start + Duration::from_micros(at.total_micros() as u64)).await
        }
        None => std::future::pending().await,
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
    });
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = message.emit_bytes(&mut buf).unwrap();
    buf[..n].to_vec()
}
