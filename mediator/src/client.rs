//! A registration client on tokio: the mediator's load-test and test client.
//!
//! A [`Client`] registers with a mediator over a TCP stream, driven by p2psc's own registration state
//! machine ([`p2psc::proto::Registration`]): it sends Hello, proves its key when challenged, answers
//! Pings while it waits, and hands out the machine's events up to the Match. `mediator-bench` generates
//! its load with it, and the server's tests drive the real server through it.
//!
//! In protocol version 2 ([`Client::register_relay`]) it can also send the mapping probe from its own
//! local port ([`send_probe`], with the connection's socket from [`shared_port_socket`]) and, after the
//! Match, ask for the relay ([`Client::request_relay`], [`Client::relayed`]); the connection is then
//! the relayed stream ([`Client::stream_mut`]).
//!
//! It is not a peer: it stops at the Match (or the relay's join) and never punches, and its Hello nonce comes from its local
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
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use p2psc::identity::{PublicKey, Signer};
use p2psc::proto::{PunchInfo, RegisterConfig, RegisterError, RegisterEvent, Registration};
use p2psc::time::Instant;
use p2psc::wire::{self, Message, Nonce, RelayMode, HEADER_LEN, MAX_FRAME_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

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
        Client::start(stream, claimed, signer, want, config, None).await
    }

    /// [`register`](Self::register) in protocol version 2, saying `relay` about the relayed path.
    pub async fn register_relay(
        stream: TcpStream,
        signer: DalekSigner,
        want: PublicKey,
        config: RegisterConfig,
        relay: RelayMode,
    ) -> io::Result<Client> {
        let own = signer.public_key();
        Client::start(stream, own, signer, want, config, Some(relay)).await
    }

    async fn start(
        stream: TcpStream,
        claimed: PublicKey,
        signer: DalekSigner,
        want: PublicKey,
        config: RegisterConfig,
        relay: Option<RelayMode>,
    ) -> io::Result<Client> {
        let local = stream.local_addr()?;
        let mut nonce = [0u8; 32];
        nonce[..2].copy_from_slice(&local.port().to_be_bytes());
        let registration =
            Registration::new(config, claimed, want, nonce, Some(local), Instant::ZERO);
        let registration = match relay {
            Some(mode) => registration.with_relay(mode),
            None => registration,
        };
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

    /// The nonce of our Hello (what a probe must carry).
    pub fn nonce(&self) -> Nonce {
        let mut nonce = [0u8; 32];
        nonce[..2].copy_from_slice(&self.local.port().to_be_bytes());
        nonce
    }

    /// Version 2, after the Match: send RelayRequest and `payload` right behind it (the first flight
    /// of the relayed stream).
    pub async fn request_relay(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut frame = [0u8; MAX_FRAME_LEN];
        let n = Message::RelayRequest
            .emit_bytes_in(wire::VERSION_2, &mut frame)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let mut out = frame[..n].to_vec();
        out.extend_from_slice(payload);
        self.stream.write_all(&out).await
    }

    /// Version 2, after [`request_relay`](Self::request_relay): wait for the mediator's answer, exactly
    /// one frame. `Ok` on Relayed: every byte after it is the other peer's.
    pub async fn relayed(&mut self) -> Result<(), ClientError> {
        let mut frame = [0u8; MAX_FRAME_LEN];
        let io = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => ClientError::Closed,
            kind => ClientError::Io(kind),
        };
        self.stream
            .read_exact(&mut frame[..HEADER_LEN])
            .await
            .map_err(io)?;
        let len = HEADER_LEN + usize::from(u16::from_be_bytes([frame[2], frame[3]]));
        if len > frame.len() {
            return Err(ClientError::Register(RegisterError::Wire(
                wire::Error::Truncated,
            )));
        }
        self.stream
            .read_exact(&mut frame[HEADER_LEN..len])
            .await
            .map_err(io)?;
        match Message::parse_bytes(&frame[..len]) {
            Ok(Message::Relayed) => Ok(()),
            Ok(Message::Abort(reason)) => {
                Err(ClientError::Register(RegisterError::Aborted(reason)))
            }
            Ok(other) => Err(ClientError::Register(RegisterError::UnexpectedMessage(
                other.msg_type(),
            ))),
            Err(e) => Err(ClientError::Register(RegisterError::Wire(e))),
        }
    }

    /// The connection itself (for a relayed stream, say), ending the client.
    pub fn into_stream(self) -> TcpStream {
        self.stream
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

/// Connect to `server` from the local address `from` (IPv4), the port chosen at connect: per
/// destination, with `IP_BIND_ADDRESS_NO_PORT`, so that a load generator opening thousands of
/// connections from one address never runs out of ports to connections in TIME_WAIT (bind alone would
/// have to avoid every one of them). Many source addresses of 127.0.0.0/8 are many source networks to
/// the server's limits.
pub async fn connect_from_address(server: SocketAddr, from: IpAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads `on` for its size; the descriptor is the socket's own.
    unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    socket.bind(SocketAddr::new(from, 0))?;
    // No TCP_NODELAY: a registration never has two frames in flight, so Nagle never holds one.
    socket.connect(server).await
}

/// A TCP socket bound to `local` with the port-reuse options, so that a second one can share its port
/// (version 2: the mediator connection and its probe leave from one local endpoint).
pub fn shared_port_socket(local: SocketAddr) -> io::Result<TcpSocket> {
    let socket = match local {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(local)?;
    Ok(socket)
}

/// Version 2: send the mapping probe for `nonce` from `local` (a port shared with the mediator
/// connection, or any) to the probe endpoint `probe`, and wait until the mediator has closed it (it
/// has then recorded the probe) or refused it.
pub async fn send_probe(local: SocketAddr, probe: SocketAddr, nonce: Nonce) -> io::Result<()> {
    let mut stream = shared_port_socket(local)?.connect(probe).await?;
    let mut frame = [0u8; MAX_FRAME_LEN];
    let n = Message::Probe { nonce }
        .emit_bytes_in(wire::VERSION_2, &mut frame)
        .ok_or(io::ErrorKind::InvalidInput)?;
    stream.write_all(&frame[..n]).await?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await?;
    match rest.is_empty() {
        true => Ok(()),
        false => Err(io::Error::other("the probe was refused")),
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
