//! The punch, as a poll API: one [`Connector`] drives registration, the TCP simultaneous open and the peer
//! handshake over *your* smoltcp [`Interface`] and [`SocketSet`], advanced by [`Connector::poll`].
//!
//! This is for firmware that runs smoltcp itself (RTIC, a super-loop). With an executor, use
//! [`net::connect`](crate::net::connect), a thin async layer over this same type.
//!
//! What it does, in order:
//! 1. Opens the mediator connection from a random (or configured) local port *P*, and registers
//!    ([`proto::register`](crate::proto::register)).
//! 2. On Match, keeps the mediator connection open (its NAT mapping is the one the peer aims at) and
//!    *holds* port *P* with a listening socket until the start time, so a peer SYN that arrives early is
//!    answered with SYN-ACK instead of a reset.
//! 3. At the start time the mediator asked for, connects from *P* to the peer's observed endpoint — and,
//!    when both peers share one public address, also to its LAN endpoint — so each NAT sees outbound
//!    traffic and lets the other's SYN in (TCP simultaneous open, RFC 9293 §3.5).
//! 4. After a reset or an attempt timeout, holds the port again and retries after a *random* delay (fixed
//!    periods keep two stacks in lock-step), until the punch deadline.
//! 5. Runs the peer handshake ([`proto::auth`](crate::proto::auth)) on each established candidate; the
//!    first that authenticates wins (the leader confirms it when candidates race), the others and the
//!    mediator connection are aborted.
//!
//! You add the sockets to your set (with your buffers) and pass their handles: the mediator socket
//! needs at least [`wire::MAX_FRAME_LEN`] bytes each way; each candidate socket becomes the application's
//! socket if it wins, so size its buffers for the application. One candidate socket is enough; a second
//! lets the LAN and public paths be tried at once. On every outcome, every socket is left closed except
//! the winner; [`Connector::poll`] returns which one that is.

use core::net::SocketAddr;
use core::task::Poll;

use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State as TcpState};
use smoltcp::wire::IpEndpoint;

use crate::identity::{PublicKey, Signer, Verifier};
use crate::proto::register::{Phase as RegPhase, PunchInfo, RegisterEvent};
use crate::proto::{AuthError, AuthEvent, Handshake, HandshakeParams, SessionKey};
use crate::proto::{RegisterConfig, RegisterError, Registration};
use crate::rng::Drbg;
use crate::time::{Duration, Instant};
use crate::wire::{AbortReason, Role, MAX_FRAME_LEN};

/// Deadlines and retry policy of one connection attempt. The defaults suit links up to a few hundred
/// milliseconds of round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectConfig {
    /// Registration deadlines (each mediator answer; the wait for the peer).
    pub register: RegisterConfig,
    /// Longest wait for the TCP connection to the mediator.
    pub mediator_timeout: Duration,
    /// Longest time from the start of the punch to an authenticated connection.
    pub punch_timeout: Duration,
    /// Longest single connection attempt before it is aborted and retried.
    pub attempt_timeout: Duration,
    /// Shortest random delay before a retry.
    pub retry_min: Duration,
    /// Longest random delay before a retry.
    pub retry_max: Duration,
    /// Longest time from an established connection to the end of the peer handshake.
    pub auth_timeout: Duration,
    /// Overall deadline, from [`Connector::new`] to the authenticated socket.
    pub timeout: Duration,
    /// Local port for the mediator connection and the punch; random in 49152..=65535 if `None`.
    pub local_port: Option<u16>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            register: RegisterConfig::default(),
            mediator_timeout: Duration::from_secs(10),
            punch_timeout: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(3),
            retry_min: Duration::from_millis(20),
            retry_max: Duration::from_millis(300),
            auth_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(120),
            local_port: None,
        }
    }
}

/// Why a connection could not be made. Every path that returns one has closed every socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectError {
    /// The interface has no address to reach the mediator (or the peer) from.
    NoRoute,
    /// The TCP connection to the mediator failed or timed out.
    MediatorUnreachable,
    /// The mediator closed the connection before the Match.
    MediatorClosed,
    /// The mediator ended the registration with this reason.
    Aborted(AbortReason),
    /// The mediator does not speak our protocol version (its own, when known).
    UnsupportedVersion(Option<u8>),
    /// The mediator stopped answering, or broke the protocol.
    Mediator(RegisterError),
    /// The mediator asked us to come back later than the deadline allows.
    MediatorBusy,
    /// The peer did not register with the mediator in time.
    PeerNeverCame,
    /// No connection to the peer could be established before the punch deadline (e.g. a symmetric NAT).
    PunchFailed,
    /// A connection formed but the peer did not authenticate.
    AuthFailed(AuthError),
    /// A connection formed but the peer closed it before authenticating (it rejected us).
    PeerClosed,
    /// The overall deadline passed.
    Timeout,
    /// A socket handle given to the connector is not a TCP socket, or its buffers are too small.
    BadSocket,
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnectError::NoRoute => f.write_str("no address to connect from"),
            ConnectError::MediatorUnreachable => f.write_str("mediator unreachable"),
            ConnectError::MediatorClosed => f.write_str("mediator closed the connection"),
            ConnectError::Aborted(r) => write!(f, "mediator aborted: {}", r),
            ConnectError::UnsupportedVersion(v) => {
                core::fmt::Display::fmt(&RegisterError::UnsupportedVersion(*v), f)
            }
            ConnectError::Mediator(e) => write!(f, "mediator: {}", e),
            ConnectError::MediatorBusy => f.write_str("mediator busy"),
            ConnectError::PeerNeverCame => f.write_str("peer did not come"),
            ConnectError::PunchFailed => f.write_str("could not reach the peer"),
            ConnectError::AuthFailed(e) => write!(f, "authentication failed: {}", e),
            ConnectError::PeerClosed => f.write_str("peer closed the connection"),
            ConnectError::Timeout => f.write_str("timed out"),
            ConnectError::BadSocket => f.write_str("unusable socket"),
        }
    }
}

impl core::error::Error for ConnectError {}

impl From<RegisterError> for ConnectError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Aborted(AbortReason::PeerTimeout)
            | RegisterError::Timeout(RegPhase::Match) => ConnectError::PeerNeverCame,
            RegisterError::Aborted(AbortReason::UnsupportedVersion) => {
                ConnectError::UnsupportedVersion(None)
            }
            RegisterError::Aborted(r) => ConnectError::Aborted(r),
            RegisterError::UnsupportedVersion(v) => ConnectError::UnsupportedVersion(v),
            e => ConnectError::Mediator(e),
        }
    }
}

/// The result: an established, authenticated TCP connection to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Connected {
    /// The winning socket, now the application's (Nagle is off; turn it back on if you like).
    pub socket: SocketHandle,
    /// The peer's endpoint as seen from here.
    pub remote: IpEndpoint,
    /// Our role.
    pub role: Role,
    /// The key both sides derived in the handshake.
    pub session_key: SessionKey,
}

/// Progress, for logs and timelines. Read with [`Connector::next_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectEvent {
    /// The TCP connection to the mediator is up, from this local endpoint.
    MediatorConnected(IpEndpoint),
    /// The mediator sees us at this public endpoint.
    Challenged(SocketAddr),
    /// The mediator accepted our proof; waiting for the peer.
    Registered,
    /// The mediator paired us.
    Matched {
        /// Our role.
        role: Role,
        /// The peer's public endpoint.
        peer: SocketAddr,
        /// When the punch starts.
        start_at: Instant,
        /// Whether several candidates race (peers share a public address).
        racing: bool,
    },
    /// A SYN went out to this endpoint (attempt number, from 1).
    Dialing(IpEndpoint, u16),
    /// An attempt was reset or timed out; retrying after a random delay.
    Retrying(IpEndpoint),
    /// A TCP connection to the peer is established.
    Established(IpEndpoint),
    /// The peer authenticated on this connection.
    Authenticated(IpEndpoint),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Port held (listening) or idle until `until`, then dial.
    Waiting { until: Instant },
    /// SYN sent (or received) at `since`.
    Connecting { since: Instant },
    /// Established; the handshake runs.
    Authenticating,
    /// Leader with racing candidates: authenticated, may be selected.
    Verified,
    /// Given up (its error is in `last_error`).
    Dead,
}

#[derive(Debug, Clone)]
struct Candidate {
    handle: SocketHandle,
    targets: heapless::Vec<IpEndpoint, 2>,
    attempts: u16,
    state: Attempt,
    handshake: Handshake,
}

// One Connector lives per connection attempt and there is no heap to box into: the size is the
// registration's, and the phases are exclusive, so an enum is the smallest layout.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Phase {
    Start,
    Dialing { since: Instant },
    Registering(Registration),
    Backoff { until: Instant },
    Punching { info: PunchInfo, deadline: Instant },
    Done,
    Failed(ConnectError),
}

/// The sockets a [`Connector`] may use, all TCP sockets in your set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sockets {
    /// For the mediator connection.
    pub mediator: SocketHandle,
    /// For the peer: the first is always used; the second, if any, lets two candidate paths race.
    pub candidates: [Option<SocketHandle>; 2],
}

/// One connection to a peer through a mediator, advanced by [`poll`](Connector::poll).
pub struct Connector<S: Signer, V: Verifier> {
    config: ConnectConfig,
    signer: S,
    verifier: V,
    peer: PublicKey,
    mediator: IpEndpoint,
    sockets: Sockets,
    rng: Drbg,
    local_port: u16,
    deadline: Instant,
    phase: Phase,
    candidates: heapless::Vec<Candidate, 2>,
    last_error: Option<ConnectError>,
    events: heapless::Deque<ConnectEvent, 8>,
}

impl<S: Signer, V: Verifier> core::fmt::Debug for Connector<S, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Connector")
            .field("peer", &self.peer)
            .field("mediator", &self.mediator)
            .field("phase", &self.phase)
            .finish()
    }
}

fn socket<'a, 'b>(sockets: &'a mut SocketSet<'b>, handle: SocketHandle) -> &'a mut tcp::Socket<'b> {
    sockets.get_mut::<tcp::Socket>(handle)
}

/// A port from the IANA dynamic range, 49152..=65535.
fn ephemeral_port(rng: &mut Drbg) -> u16 {
    rng.range(49152, 65535) as u16
}

/// Room for one more whole frame in a socket's transmit buffer.
fn has_room(s: &tcp::Socket) -> bool {
    s.send_capacity() - s.send_queue() >= MAX_FRAME_LEN
}

impl<S: Signer, V: Verifier> Connector<S, V> {
    /// Start connecting to `peer` through `mediator`. `seed` is 32 bytes from a cryptographically secure
    /// random source, fresh for each connection: the nonce, ephemeral key, port and jitter derive from it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ConnectConfig,
        signer: S,
        verifier: V,
        peer: PublicKey,
        mediator: impl Into<IpEndpoint>,
        sockets: Sockets,
        seed: [u8; 32],
        now: Instant,
    ) -> Self {
        let mut rng = Drbg::new(seed);
        let local_port = config
            .local_port
            .unwrap_or_else(|| ephemeral_port(&mut rng));
        Connector {
            config,
            signer,
            verifier,
            peer,
            mediator: mediator.into(),
            sockets,
            rng,
            local_port,
            deadline: now + config.timeout,
            phase: Phase::Start,
            candidates: heapless::Vec::new(),
            last_error: None,
            events: heapless::Deque::new(),
        }
    }

    /// The error, once failed.
    pub fn error(&self) -> Option<ConnectError> {
        match self.phase {
            Phase::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The local port of the mediator connection and the punch.
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// The next progress event, oldest first (the queue keeps the latest 8).
    pub fn next_event(&mut self) -> Option<ConnectEvent> {
        self.events.pop_front()
    }

    fn event(&mut self, event: ConnectEvent) {
        debug!("p2psc: {:?}", event);
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }

    /// When [`poll`](Self::poll) must run next at the latest (besides after any interface activity).
    pub fn poll_at(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Done | Phase::Failed(_) => return None,
            Phase::Start => return Some(Instant::ZERO),
            Phase::Dialing { since } => Some(*since + self.config.mediator_timeout),
            Phase::Registering(reg) => reg.poll_at(),
            Phase::Backoff { until } => Some(*until),
            Phase::Punching { deadline, .. } => {
                let mut at = *deadline;
                for c in &self.candidates {
                    let t = match c.state {
                        Attempt::Waiting { until } => Some(until),
                        Attempt::Connecting { since } => Some(since + self.config.attempt_timeout),
                        Attempt::Authenticating | Attempt::Verified => c.handshake.poll_at(),
                        Attempt::Dead => None,
                    };
                    at = t.map_or(at, |t| t.min(at));
                }
                Some(at)
            }
        };
        Some(phase.map_or(self.deadline, |p| p.min(self.deadline)))
    }

    /// Advance: call after every `Interface::poll` and at [`poll_at`](Self::poll_at). Returns
    /// `Poll::Ready` once, with the authenticated connection or the error.
    pub fn poll(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
    ) -> Poll<Result<Connected, ConnectError>> {
        if matches!(self.phase, Phase::Done | Phase::Failed(_)) {
            return Poll::Pending;
        }
        let result = match self.step(now, iface, sockets) {
            Ok(None) if now >= self.deadline => {
                Err(self.last_error.unwrap_or(ConnectError::Timeout))
            }
            Ok(None) => return Poll::Pending,
            Ok(Some(connected)) => Ok(connected),
            Err(e) => Err(e),
        };
        match result {
            Ok(connected) => {
                self.close_all(sockets, Some(connected.socket));
                self.phase = Phase::Done;
                info!(
                    "p2psc: connected to {:?} as {:?}",
                    connected.remote, connected.role
                );
            }
            Err(e) => {
                self.close_all(sockets, None);
                self.phase = Phase::Failed(e);
                warn!("p2psc: connect failed: {:?}", e);
            }
        }
        Poll::Ready(result)
    }

    /// Abort every socket but `keep`.
    fn close_all(&mut self, sockets: &mut SocketSet<'_>, keep: Option<SocketHandle>) {
        let handles = [self.sockets.mediator]
            .into_iter()
            .chain(self.sockets.candidates.into_iter().flatten());
        for handle in handles {
            if Some(handle) != keep {
                socket(sockets, handle).abort();
            }
        }
    }

    fn step(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
    ) -> Result<Option<Connected>, ConnectError> {
        match &mut self.phase {
            Phase::Start => {
                self.dial_mediator(now, iface, sockets)?;
                Ok(None)
            }
            Phase::Dialing { since } => {
                let since = *since;
                let s = socket(sockets, self.sockets.mediator);
                match s.state() {
                    TcpState::Established => {
                        let local = s.local_endpoint().map(SocketAddr::from);
                        let nonce = self.rng.bytes32();
                        let reg = Registration::new(
                            self.config.register,
                            self.signer.public_key(),
                            self.peer,
                            nonce,
                            local,
                            now,
                        );
                        if let Some(l) = s.local_endpoint() {
                            self.event(ConnectEvent::MediatorConnected(l));
                        }
                        self.phase = Phase::Registering(reg);
                        self.step(now, iface, sockets)
                    }
                    TcpState::SynSent | TcpState::SynReceived
                        if now < since + self.config.mediator_timeout =>
                    {
                        Ok(None)
                    }
                    _ => Err(ConnectError::MediatorUnreachable),
                }
            }
            Phase::Registering(_) => self.register(now, sockets),
            Phase::Backoff { until } => {
                if now >= *until {
                    self.dial_mediator(now, iface, sockets)?;
                }
                Ok(None)
            }
            Phase::Punching { .. } => self.punch(now, iface, sockets),
            Phase::Done | Phase::Failed(_) => Ok(None),
        }
    }

    fn dial_mediator(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
    ) -> Result<(), ConnectError> {
        let s = socket(sockets, self.sockets.mediator);
        if s.send_capacity() < MAX_FRAME_LEN || s.recv_capacity() < MAX_FRAME_LEN {
            return Err(ConnectError::BadSocket);
        }
        s.abort();
        s.connect(iface.context(), self.mediator, self.local_port)
            .map_err(|_| ConnectError::NoRoute)?;
        self.phase = Phase::Dialing { since: now };
        Ok(())
    }

    fn register(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'_>,
    ) -> Result<Option<Connected>, ConnectError> {
        let Phase::Registering(reg) = &mut self.phase else {
            return Ok(None);
        };
        let s = socket(sockets, self.sockets.mediator);
        let mut events: heapless::Vec<RegisterEvent, 4> = heapless::Vec::new();
        while s.can_recv() && reg.punch_info().is_none() {
            let signer = &self.signer;
            let step = s.recv(|data| match reg.receive(now, signer, data) {
                Ok((used, event)) => (used, Ok(event)),
                Err(e) => (0, Err(e)),
            });
            match step {
                Ok(Ok(event)) => {
                    if let Some(e) = event {
                        let _ = events.push(e);
                    }
                }
                Ok(Err(e)) => return self.register_failed(now, e),
                Err(_) => break,
            }
        }
        if let Err(e) = reg.poll(now) {
            return self.register_failed(now, e);
        }
        let mut buf = [0u8; MAX_FRAME_LEN];
        while has_room(s) {
            let Some(n) = reg.transmit(now, &mut buf) else {
                break;
            };
            let _ = s.send_slice(&buf[..n]);
        }
        let matched = reg.punch_info();
        let closed = !s.may_recv() && matched.is_none();
        for e in events {
            let event = match e {
                RegisterEvent::Challenged { observed } => ConnectEvent::Challenged(observed),
                RegisterEvent::Registered { .. } => ConnectEvent::Registered,
                RegisterEvent::Matched(info) => ConnectEvent::Matched {
                    role: info.role,
                    peer: info.peer_observed,
                    start_at: info.start_at,
                    racing: info.same_public_address(),
                },
            };
            self.event(event);
        }
        if let Some(info) = matched {
            self.start_punch(now, info, sockets)?;
            return Ok(None);
        }
        if closed {
            return Err(ConnectError::MediatorClosed);
        }
        Ok(None)
    }

    /// A registration error: a RetryAfter within the deadline becomes a back-off, the rest are final.
    fn register_failed(
        &mut self,
        now: Instant,
        e: RegisterError,
    ) -> Result<Option<Connected>, ConnectError> {
        match e {
            RegisterError::RetryAfter(after) if now + after < self.deadline => {
                self.phase = Phase::Backoff { until: now + after };
                // The old connection may linger at the mediator (FIN-WAIT); a new one from the same
                // port would share its 4-tuple and be swallowed. Punching uses whatever port the next
                // registration goes out from, so any fresh port will do.
                if self.config.local_port.is_none() {
                    self.local_port = ephemeral_port(&mut self.rng);
                }
                Ok(None)
            }
            RegisterError::RetryAfter(_) => Err(ConnectError::MediatorBusy),
            e => Err(e.into()),
        }
    }

    fn start_punch(
        &mut self,
        now: Instant,
        info: PunchInfo,
        sockets: &mut SocketSet<'_>,
    ) -> Result<(), ConnectError> {
        let racing = info.same_public_address();
        let mut targets: heapless::Vec<IpEndpoint, 2> = heapless::Vec::new();
        // On a shared public address the LAN path is the likelier one: try it first.
        if racing {
            if let Some(local) = info.peer_local {
                let _ = targets.push(local.into());
            }
        }
        let _ = targets.push(info.peer_observed.into());
        let params = HandshakeParams {
            role: info.role,
            peer: self.peer,
            own_nonce: info.own_nonce,
            peer_nonce: info.peer_nonce,
            racing,
        };
        // Sign once; every candidate sends the same PeerAuth (same session, same ephemeral key).
        let handshake = Handshake::new(
            &self.signer,
            params,
            self.rng.bytes32(),
            now + self.config.punch_timeout,
        );
        let handles: heapless::Vec<SocketHandle, 2> =
            self.sockets.candidates.into_iter().flatten().collect();
        if handles.is_empty() {
            return Err(ConnectError::BadSocket);
        }
        for (i, handle) in handles.iter().enumerate() {
            let mine: heapless::Vec<IpEndpoint, 2> = if handles.len() >= targets.len() {
                targets.iter().skip(i).take(1).copied().collect()
            } else {
                targets.clone()
            };
            if mine.is_empty() {
                socket(sockets, *handle).abort();
                continue;
            }
            let s = socket(sockets, *handle);
            s.abort();
            s.set_nagle_enabled(false);
            let _ = self.candidates.push(Candidate {
                handle: *handle,
                targets: mine,
                attempts: 0,
                state: Attempt::Waiting {
                    until: info.start_at,
                },
                handshake: handshake.clone(),
            });
        }
        self.phase = Phase::Punching {
            info,
            deadline: info.start_at + self.config.punch_timeout,
        };
        self.hold(sockets);
        Ok(())
    }

    /// Hold the punch port with the first waiting candidate's socket, so an early SYN gets a SYN-ACK.
    fn hold(&mut self, sockets: &mut SocketSet<'_>) {
        let holding = self.candidates.iter().any(|c| {
            matches!(c.state, Attempt::Waiting { .. })
                && socket(sockets, c.handle).state() == TcpState::Listen
        });
        if holding {
            return;
        }
        for c in self.candidates.iter() {
            if let Attempt::Waiting { .. } = c.state {
                let s = socket(sockets, c.handle);
                if s.state() == TcpState::Closed && s.listen(self.local_port).is_ok() {
                    return;
                }
            }
        }
    }

    fn punch(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
    ) -> Result<Option<Connected>, ConnectError> {
        let Phase::Punching { info, deadline } = self.phase else {
            return Ok(None);
        };
        // The mediator has nothing more to say; keep its connection open, discard what it sends.
        let m = socket(sockets, self.sockets.mediator);
        while m.can_recv() {
            if m.recv(|d| (d.len(), ())).is_err() {
                break;
            }
        }
        let mut winner = None;
        // Run each candidate until it settles, so one poll carries it as far as the sockets allow
        // (accepted → established → handshake sent) instead of waiting for the next wake-up.
        'settle: for _ in 0..4 {
            let before: heapless::Vec<Attempt, 2> =
                self.candidates.iter().map(|c| c.state).collect();
            for i in 0..self.candidates.len() {
                if let Some(found) = self.advance(i, now, iface, sockets, info.role)? {
                    winner = Some(found);
                    break 'settle;
                }
            }
            if self
                .candidates
                .iter()
                .map(|c| c.state)
                .eq(before.iter().copied())
            {
                break;
            }
        }
        if winner.is_none() && info.role == Role::Leader {
            // Racing leader: select the first verified candidate and confirm it.
            if let Some(i) = self
                .candidates
                .iter()
                .position(|c| c.state == Attempt::Verified)
            {
                let c = &mut self.candidates[i];
                c.handshake.select();
                let s = socket(sockets, c.handle);
                let mut buf = [0u8; MAX_FRAME_LEN];
                while has_room(s) {
                    let Some(n) = c.handshake.transmit(&mut buf) else {
                        break;
                    };
                    let _ = s.send_slice(&buf[..n]);
                }
                winner = Some(i);
            }
        }
        if let Some(i) = winner {
            let (handle, key) = (
                self.candidates[i].handle,
                self.candidates[i].handshake.session_key(),
            );
            let (Some(remote), Some(session_key)) =
                (socket(sockets, handle).remote_endpoint(), key)
            else {
                return Err(ConnectError::PunchFailed);
            };
            self.event(ConnectEvent::Authenticated(remote));
            return Ok(Some(Connected {
                socket: handle,
                remote,
                role: info.role,
                session_key,
            }));
        }
        if self.candidates.iter().all(|c| c.state == Attempt::Dead) {
            return Err(self.last_error.unwrap_or(ConnectError::PunchFailed));
        }
        if now >= deadline {
            return Err(self.last_error.unwrap_or(ConnectError::PunchFailed));
        }
        self.hold(sockets);
        Ok(None)
    }

    /// Advance candidate `i`; returns `Some(i)` when its handshake is complete.
    fn advance(
        &mut self,
        i: usize,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        role: Role,
    ) -> Result<Option<usize>, ConnectError> {
        let jitter = self.jitter();
        let c = &mut self.candidates[i];
        let s = socket(sockets, c.handle);
        let mut event = None;
        match c.state {
            Attempt::Waiting { until } => {
                if matches!(s.state(), TcpState::SynReceived | TcpState::Established) {
                    // The held port accepted the peer's early SYN.
                    c.state = Attempt::Connecting { since: now };
                } else if now >= until {
                    s.abort();
                    let target = c.targets[c.attempts as usize % c.targets.len()];
                    s.connect(iface.context(), target, self.local_port)
                        .map_err(|_| ConnectError::NoRoute)?;
                    c.attempts += 1;
                    c.state = Attempt::Connecting { since: now };
                    event = Some(ConnectEvent::Dialing(target, c.attempts));
                }
            }
            Attempt::Connecting { since } => match s.state() {
                TcpState::Established => {
                    c.handshake.restart(now + self.config.auth_timeout);
                    c.state = Attempt::Authenticating;
                    event = s.remote_endpoint().map(ConnectEvent::Established);
                }
                TcpState::SynSent | TcpState::SynReceived
                    if now < since + self.config.attempt_timeout => {}
                _ => {
                    // Reset, refused or timed out: retry after a random delay, holding the port meanwhile.
                    // A reset socket has forgotten its remote: name the endpoint we dialled.
                    let target = s.remote_endpoint().or_else(|| {
                        let dialled = usize::from(c.attempts).checked_sub(1)?;
                        c.targets.get(dialled % c.targets.len()).copied()
                    });
                    s.abort();
                    c.state = Attempt::Waiting {
                        until: now + jitter,
                    };
                    event = target.map(ConnectEvent::Retrying);
                }
            },
            Attempt::Authenticating => {
                let result = Self::authenticate(c, s, now, &self.verifier);
                match result {
                    Ok(Some(AuthEvent::Authenticated(_))) => {
                        // Only a racing leader's handshake stops short of Done: it waits for select().
                        let racing_leader =
                            role == Role::Leader && c.handshake.session_key().is_none();
                        if racing_leader {
                            c.state = Attempt::Verified;
                        } else {
                            return Ok(Some(i));
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        s.abort();
                        c.state = Attempt::Dead;
                        self.last_error = Some(e);
                    }
                }
            }
            Attempt::Verified | Attempt::Dead => {}
        }
        if let Some(e) = event {
            self.event(e);
        }
        Ok(None)
    }

    /// Run the handshake on an established candidate socket.
    fn authenticate(
        c: &mut Candidate,
        s: &mut tcp::Socket,
        now: Instant,
        verifier: &V,
    ) -> Result<Option<AuthEvent>, ConnectError> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        while has_room(s) {
            let Some(n) = c.handshake.transmit(&mut buf) else {
                break;
            };
            let _ = s.send_slice(&buf[..n]);
        }
        let mut result = None;
        while s.can_recv() && result.is_none() {
            let step = s.recv(|data| match c.handshake.receive(verifier, data) {
                Ok((used, event)) => (used, Ok((used, event))),
                Err(e) => (0, Err(e)),
            });
            match step {
                Ok(Ok((_, Some(event)))) => result = Some(event),
                Ok(Ok((0, None))) | Err(_) => break,
                Ok(Ok((_, None))) => {}
                Ok(Err(e)) => return Err(ConnectError::AuthFailed(e)),
            }
        }
        if result.is_some() {
            // A follower's Confirm-less success, or our own PeerAuth still to queue.
            while has_room(s) {
                let Some(n) = c.handshake.transmit(&mut buf) else {
                    break;
                };
                let _ = s.send_slice(&buf[..n]);
            }
            return Ok(result);
        }
        if !matches!(s.state(), TcpState::Established) || !s.may_recv() {
            return Err(ConnectError::PeerClosed);
        }
        c.handshake.poll(now).map_err(ConnectError::AuthFailed)?;
        Ok(None)
    }

    fn jitter(&mut self) -> Duration {
        let (lo, hi) = (
            self.config.retry_min.total_millis(),
            self.config.retry_max.total_millis(),
        );
        Duration::from_millis(self.rng.range(lo, hi.max(lo)))
    }
}
