//! A registration client on tokio: the mediator's load-test and test client.
//!
//! A [`Client`] registers with a mediator over a TCP stream, driven by p2psc's own registration state
//! machine ([`p2psc::proto::Registration`]): it sends Hello, proves its key when challenged, answers
//! Pings while it waits, and hands out the machine's events up to the Match. `mediator-bench` generates
//! its load with it, and the server's tests drive the real server through it.
//!
//! It is not a peer: it stops at the Match and never punches, and its Hello nonce comes from its local
//! port instead of a random number generator (distinct per connection, the same in every run). A device
//! connects with `p2psc::net::connect`, which registers the same way and then punches.
//!
//! ```no_run
//! # async fn example(mediator: std::net::SocketAddr, want: p2psc::identity::PublicKey) {
//! use p2psc::proto::RegisterConfig;
//! use p2psc_mediator::client::Client;
//! use p2psc_mediator::DalekSigner;
//!
//! let signer = DalekSigner::from_seed(&[7; 32]);
//! let mut client = Client::connect(mediator, signer, want, RegisterConfig::default()).await.unwrap();
//! match client.matched().await {
//!     Ok(info) => println!("the other peer is at {}", info.peer_observed),
//!     Err(e) => println!("no match: {e}"),
//! }
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use p2psc::identity::{PublicKey, Signer};
use p2psc::proto::{PunchInfo, RegisterConfig, RegisterError, RegisterEvent, Registration};
use p2psc::time::Instant;
use p2psc::wire::MAX_FRAME_LEN;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::DalekSigner;

/// Why a client stopped before the event it waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// The registration failed: Abort, RetryAfter, a bad frame or a deadline.
    Register(RegisterError),
    /// The mediator closed the connection without a word.
    Closed,
    /// Reading or writing the stream failed.
    Io(io::ErrorKind),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Register(e) => write!(f, "registration failed: {e}"),
            ClientError::Closed => f.write_str("the mediator closed the connection"),
            ClientError::Io(kind) => write!(f, "connection to the mediator failed: {kind}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// One connection registering with a mediator.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    local: SocketAddr,
    registration: Registration,
    signer: DalekSigner,
    /// The registration's time zero.
    start: tokio::time::Instant,
    /// Events received and not yet handed out.
    events: VecDeque<RegisterEvent>,
    /// How the registration ended, once it did.
    failure: Option<ClientError>,
}

impl Client {
    /// Connect to `mediator` and send Hello as `signer`'s key, wanting `want`.
    pub async fn connect(
        mediator: SocketAddr,
        signer: DalekSigner,
        want: PublicKey,
        config: RegisterConfig,
    ) -> io::Result<Client> {
        let stream = TcpStream::connect(mediator).await?;
        Client::register(stream, signer, want, config).await
    }

    /// Send Hello as `signer`'s key, wanting `want`, over a stream already connected to the mediator
    /// (from a source address of the caller's choosing, say).
    pub async fn register(
        stream: TcpStream,
        signer: DalekSigner,
        want: PublicKey,
        config: RegisterConfig,
    ) -> io::Result<Client> {
        let own = signer.public_key();
        Client::register_claiming(stream, own, signer, want, config).await
    }

    /// [`register`](Self::register), but claim `claimed` in Hello while proving with `signer`: when the
    /// two differ, an impostor whose proof the mediator must refuse.
    pub async fn register_claiming(
        stream: TcpStream,
        claimed: PublicKey,
        signer: DalekSigner,
        want: PublicKey,
        config: RegisterConfig,
    ) -> io::Result<Client> {
        let local = stream.local_addr()?;
        let mut nonce = [0u8; 32];
        nonce[..2].copy_from_slice(&local.port().to_be_bytes());
        let registration =
            Registration::new(config, claimed, want, nonce, Some(local), Instant::ZERO);
        let mut client = Client {
            stream,
            local,
            registration,
            signer,
            start: tokio::time::Instant::now(),
            events: VecDeque::new(),
            failure: None,
        };
        client.flush().await?;
        Ok(client)
    }

    /// The local end of the connection (on loopback, also what the mediator observes).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The connection, to read or write past the registration machine.
    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Drive the registration (answering Pings) until its next event.
    pub async fn next_event(&mut self) -> Result<RegisterEvent, ClientError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            if let Some(failure) = self.failure {
                return Err(failure);
            }
            self.step().await;
        }
    }

    /// Drive the registration until an event satisfies `done`; other events are passed over.
    pub async fn until(
        &mut self,
        mut done: impl FnMut(&RegisterEvent) -> bool,
    ) -> Result<RegisterEvent, ClientError> {
        loop {
            let event = self.next_event().await?;
            if done(&event) {
                return Ok(event);
            }
        }
    }

    /// Drive the registration until the Match.
    pub async fn matched(&mut self) -> Result<PunchInfo, ClientError> {
        loop {
            if let RegisterEvent::Matched(info) = self.next_event().await? {
                return Ok(info);
            }
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.start.elapsed().as_micros() as i64)
    }

    /// Write every frame the registration has queued.
    async fn flush(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 2 * MAX_FRAME_LEN];
        loop {
            let now = self.now();
            let n = p2psc::proto::fill(&mut buf, |out| self.registration.transmit(now, out));
            if n == 0 {
                return Ok(());
            }
            self.stream.write_all(&buf[..n]).await?;
        }
    }

    /// Send what is queued, then wait for the mediator's next bytes or the registration's next
    /// deadline, whichever comes first, and feed it to the machine.
    async fn step(&mut self) {
        if let Err(e) = self.flush().await {
            self.failure = Some(ClientError::Io(e.kind()));
            return;
        }
        let deadline = self.registration.poll_at();
        let mut buf = [0u8; 1024];
        tokio::select! {
            read = self.stream.read(&mut buf) => match read {
                Ok(0) => self.failure = Some(ClientError::Closed),
                Ok(n) => self.receive(&buf[..n]),
                Err(e) => self.failure = Some(ClientError::Io(e.kind())),
            },
            _ = sleep_until(deadline, self.start) => {
                if let Err(e) = self.registration.poll(self.now()) {
                    self.failure = Some(ClientError::Register(e));
                }
            }
        }
    }

    /// Feed stream bytes to the registration, keeping its events.
    fn receive(&mut self, data: &[u8]) {
        let now = self.now();
        let (registration, signer) = (&mut self.registration, &self.signer);
        let (events, failure) = (&mut self.events, &mut self.failure);
        p2psc::proto::feed(data, |rest| match registration.receive(now, signer, rest) {
            Ok((used, event)) => {
                events.extend(event);
                used
            }
            Err(e) => {
                *failure = Some(ClientError::Register(e));
                0
            }
        });
    }
}

/// Sleep until `deadline` on the registration's clock (which started at `start`); for ever if none.
async fn sleep_until(deadline: Option<Instant>, start: tokio::time::Instant) {
    match deadline {
        Some(at) => {
            let at = Duration::from_micros(at.total_micros().max(0) as u64);
            tokio::time::sleep_until(start + at).await
        }
        None => std::future::pending().await,
    }
}
