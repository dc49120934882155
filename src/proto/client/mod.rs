//! The peer's whole side of a connection as one sans-IO machine: the mediator connection, registration
//! (protocol §7, [`register`](super::register)), back-off when the mediator is busy, and the punch with
//! its handshakes (§8–§9, [`punch`]).
//!
//! Every shell drives this same [`Client`] — the smoltcp [`Connector`](crate::connector::Connector) on a
//! device, a host peer on OS sockets — so none of them holds a protocol decision. A shell owns one
//! mediator socket and up to [`MAX_CANDIDATES`] candidate sockets, and in a loop:
//!
//! 1. reports what each socket is doing ([`observe_mediator`](Client::observe_mediator),
//!    [`observe`](Client::observe));
//! 2. feeds it what each socket received ([`receive_mediator`](Client::receive_mediator),
//!    [`receive`](Client::receive));
//! 3. carries out each [`Action`] from [`poll`](Client::poll) until it returns `None`;
//! 4. sends what [`transmit_mediator`](Client::transmit_mediator) and [`transmit`](Client::transmit)
//!    hand out;
//! 5. stops once [`result`](Client::result) is `Some`, closing every socket but the winner's;
//! 6. sleeps until [`poll_at`](Client::poll_at) or a socket changes.
//!
//! ```text
//!  Start ─DialMediator─▶ DialingMediator ─established─▶ Registering ─Match─▶ Punching ─▶ winner
//!                              ▲                            │ RetryAfter (within the deadline)
//!                              └──DialMediator── Backoff ◀──┘ (from a fresh port)
//!  any phase ── error or overall deadline ──▶ Failed(Error)
//! ```

use core::fmt;
use core::net::SocketAddr;

use super::punch::{self, Link, Punch, PunchConfig, PunchError, PunchEvent, Winner};
use super::register::{Awaiting, PunchInfo, RegisterConfig, RegisterError};
use super::register::{RegisterEvent, Registration};
use super::AuthError;
use crate::identity::{PublicKey, Signer, Verifier};
use crate::rng::Drbg;
use crate::time::{Duration, Instant};
use crate::wire::{AbortReason, Role};

pub use super::punch::MAX_CANDIDATES;

/// Deadlines and retry policy of one connection. The defaults suit links up to a few hundred
/// milliseconds of round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectConfig {
    /// Registration deadlines (each mediator answer; the wait for the peer).
    pub register: RegisterConfig,
    /// Longest wait for the TCP connection to the mediator.
    pub mediator_timeout: Duration,
    /// The punch: its deadline, attempts, retry schedule and handshake deadline.
    pub punch: PunchConfig,
    /// Overall deadline, from the start to the authenticated connection.
    pub timeout: Duration,
    /// Shortest back-off after a RetryAfter; it doubles with each RetryAfter in a row (protocol §7.3).
    pub busy_backoff: Duration,
    /// Local port for the mediator connection and the punch; random in 49152..=65535 if `None`.
    pub local_port: Option<u16>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            register: RegisterConfig::default(),
            mediator_timeout: Duration::from_secs(10),
            punch: PunchConfig::default(),
            timeout: Duration::from_secs(120),
            busy_backoff: Duration::from_secs(1),
            local_port: None,
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// No address to reach the mediator or the peer from (no route, no address of that family).
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
    /// The shell's sockets cannot carry the connection: a handle that is not a TCP socket of the set,
    /// buffers smaller than a frame ([`wire::MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN)), or no
    /// candidate socket.
    BadSocket,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoRoute => f.write_str("no address to connect from"),
            Error::MediatorUnreachable => f.write_str("mediator unreachable"),
            Error::MediatorClosed => f.write_str("mediator closed the connection"),
            Error::Aborted(r) => write!(f, "mediator aborted: {}", r),
            Error::UnsupportedVersion(v) => {
                fmt::Display::fmt(&RegisterError::UnsupportedVersion(*v), f)
            }
            Error::Mediator(e) => write!(f, "mediator: {}", e),
            Error::MediatorBusy => f.write_str("mediator busy"),
            Error::PeerNeverCame => f.write_str("peer did not come"),
            Error::PunchFailed => f.write_str("could not reach the peer"),
            Error::AuthFailed(e) => write!(f, "authentication failed: {}", e),
            Error::PeerClosed => f.write_str("peer closed the connection"),
            Error::Timeout => f.write_str("timed out"),
            Error::BadSocket => f.write_str("unusable socket"),
        }
    }
}

impl core::error::Error for Error {}

impl From<RegisterError> for Error {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Aborted(AbortReason::PeerTimeout)
            | RegisterError::Timeout(Awaiting::Match) => Error::PeerNeverCame,
            RegisterError::Aborted(AbortReason::UnsupportedVersion) => {
                Error::UnsupportedVersion(None)
            }
            RegisterError::Aborted(r) => Error::Aborted(r),
            RegisterError::UnsupportedVersion(v) => Error::UnsupportedVersion(v),
            e => Error::Mediator(e),
        }
    }
}

impl From<PunchError> for Error {
    fn from(e: PunchError) -> Self {
        match e {
            PunchError::NoTarget => Error::NoRoute,
            PunchError::Unreachable => Error::PunchFailed,
            PunchError::AuthFailed(e) => Error::AuthFailed(e),
            PunchError::PeerClosed => Error::PeerClosed,
        }
    }
}

/// Progress, for logs and timelines. Read with [`Client::next_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConnectEvent {
    /// The TCP connection to the mediator is up, from this local endpoint.
    MediatorConnected(SocketAddr),
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
    Dialing(SocketAddr, u16),
    /// An attempt ended (reset, timed out, or stopped to listen in a slot where only the peer dials);
    /// the next goes out at our next slot of the shared schedule.
    Retrying(SocketAddr),
    /// A TCP connection to the peer is established.
    Established(SocketAddr),
    /// The peer authenticated on this connection.
    Authenticated(SocketAddr),
}

impl From<PunchEvent> for ConnectEvent {
    fn from(e: PunchEvent) -> Self {
        match e {
            PunchEvent::Dialing(to, n) => ConnectEvent::Dialing(to, n),
            PunchEvent::Retrying(to) => ConnectEvent::Retrying(to),
            PunchEvent::Established(to) => ConnectEvent::Established(to),
            PunchEvent::Authenticated(to) => ConnectEvent::Authenticated(to),
        }
    }
}

/// One line per event, the same in every shell's log.
impl fmt::Display for ConnectEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectEvent::MediatorConnected(l) => write!(f, "TCP to mediator up (local {})", l),
            ConnectEvent::Challenged(o) => write!(f, "mediator sees us at {}; proving key", o),
            ConnectEvent::Registered => f.write_str("registered with the mediator"),
            ConnectEvent::Matched {
                role,
                peer,
                start_at,
                racing,
            } => {
                let tenths = (start_at.total_micros() + 50) / 100;
                let (ms, tenth) = (tenths / 10, tenths % 10);
                write!(
                    f,
                    "matched as {:?}: peer at {}, punch at {}.{} ms",
                    role, peer, ms, tenth
                )?;
                if *racing {
                    f.write_str(" (same public address: racing LAN and public paths)")?;
                }
                Ok(())
            }
            ConnectEvent::Dialing(to, n) => write!(f, "SYN to {} (attempt {})", to, n),
            ConnectEvent::Retrying(to) => {
                write!(
                    f,
                    "attempt to {} ended; next SYN at our next shared slot",
                    to
                )
            }
            ConnectEvent::Established(to) => write!(f, "TCP established with {}", to),
            ConnectEvent::Authenticated(to) => write!(f, "peer authenticated on {}", to),
        }
    }
}

/// What the shell must do with its sockets. Candidate actions are the punch's ([`punch::Action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Connect the mediator socket from local port `from_port` to the mediator (dropping whatever it
    /// held). Report a failure to start it with [`Client::fail`].
    DialMediator {
        /// The local port; the punch will use it too (§8.1).
        from_port: u16,
    },
    /// Something to do with a candidate socket.
    Candidate(punch::Action),
}

// One Client lives per connection attempt and there is no heap to box into: the size is the
// registration's or the punch's, and the phases are exclusive, so an enum is the smallest layout.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Phase {
    Start,
    DialingMediator {
        since: Instant,
    },
    Registering(Registration),
    Backoff {
        until: Instant,
    },
    /// `yielded`: whether the first poll after the Match (which only holds the port) has yielded.
    Punching {
        punch: Punch,
        yielded: bool,
    },
    Failed(Error),
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::DialingMediator { .. } => "dialing mediator",
            Phase::Registering(_) => "registering",
            Phase::Backoff { .. } => "backoff",
            Phase::Punching { .. } => "punching",
            Phase::Failed(_) => "failed",
        }
    }
}

/// The peer's side of one connection, from the first mediator dial to the authenticated connection
/// (module docs).
pub struct Client {
    config: ConnectConfig,
    own: PublicKey,
    peer: PublicKey,
    /// Candidate sockets the shell has.
    sockets: usize,
    rng: Drbg,
    local_port: u16,
    deadline: Instant,
    phase: Phase,
    mediator: Link,
    events: heapless::Deque<ConnectEvent, 8>,
    /// Whether [`ConnectEvent::Registered`] was reported.
    registered: bool,
    /// RetryAfters so far.
    busy: u32,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .field("local_port", &self.local_port)
            .field("phase", &self.phase)
            .finish()
    }
}

/// A port from the IANA dynamic range, 49152..=65535.
fn ephemeral_port(rng: &mut Drbg) -> u16 {
    rng.range(49152, 65535) as u16
}

impl Client {
    /// Start connecting as `own` to `peer` (the configured key), with `sockets` candidate sockets (1 or
    /// 2; a second lets the LAN and public paths race). `seed`: 32 bytes from a cryptographically secure
    /// source, fresh for each connection (the nonce, ephemeral key, port and jitter derive from it).
    pub fn new(
        config: ConnectConfig,
        own: PublicKey,
        peer: PublicKey,
        sockets: usize,
        seed: [u8; 32],
        now: Instant,
    ) -> Client {
        let mut rng = Drbg::new(seed);
        let local_port = config
            .local_port
            .unwrap_or_else(|| ephemeral_port(&mut rng));
        Client {
            config,
            own,
            peer,
            sockets,
            rng,
            local_port,
            deadline: now + config.timeout,
            phase: Phase::Start,
            mediator: Link::Closed,
            events: heapless::Deque::new(),
            registered: false,
            busy: 0,
        }
    }

    /// The local port of the mediator connection and the punch (it changes after a RetryAfter when it
    /// was not configured).
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// The outcome, once decided: the winning candidate, or why the connection failed.
    pub fn result(&self) -> Option<Result<Winner, Error>> {
        match &self.phase {
            Phase::Failed(e) => Some(Err(*e)),
            Phase::Punching { punch, .. } => punch.result().map(|r| r.map_err(Error::from)),
            _ => None,
        }
    }

    /// The next progress event, oldest first (the queue keeps the latest 8).
    pub fn next_event(&mut self) -> Option<ConnectEvent> {
        self.events.pop_front()
    }

    /// The shell could not carry out an action (no route, unusable socket): the connection fails.
    #[cold]
    pub fn fail(&mut self, error: Error) {
        if self.result().is_none() {
            warn!("p2psc: connect failed: {:?}", error);
            self.enter(Phase::Failed(error));
        }
    }

    /// Report what the mediator socket is doing now.
    pub fn observe_mediator(&mut self, link: Link) {
        self.mediator = link;
    }

    /// Report what candidate socket `k` is doing now.
    pub fn observe(&mut self, k: usize, link: Link) {
        if let Phase::Punching { punch, .. } = &mut self.phase {
            punch.observe(k, link);
        }
    }

    /// Feed bytes the mediator sent; returns how many were consumed. `signer` signs the Proof and, on
    /// the Match, our PeerAuth. After the Match everything the mediator sends is read and ignored.
    pub fn receive_mediator<S: Signer>(&mut self, now: Instant, signer: &S, data: &[u8]) -> usize {
        super::feed(data, |rest| self.mediator_frame(now, signer, rest))
    }

    /// Take the next frame from `data` (all of it once punching: it is ignored); returns the bytes taken.
    fn mediator_frame<S: Signer>(&mut self, now: Instant, signer: &S, data: &[u8]) -> usize {
        let reg = match &mut self.phase {
            Phase::Registering(reg) => reg,
            Phase::Punching { .. } => return data.len(),
            _ => return 0,
        };
        match reg.receive(now, signer, data) {
            Ok((used, event)) => {
                if let Some(event) = event {
                    self.registration_event(signer, event);
                }
                used
            }
            Err(e) => {
                self.registration_failed(now, e);
                0
            }
        }
    }

    /// Feed bytes received on candidate socket `k`; returns how many were consumed. Bytes after the
    /// handshake's last frame are not: they are the application's.
    pub fn receive<V: Verifier>(&mut self, k: usize, verifier: &V, data: &[u8]) -> usize {
        let Phase::Punching { punch, .. } = &mut self.phase else {
            return 0;
        };
        super::feed(data, |rest| punch.receive(k, verifier, rest))
    }

    /// The next frame for the mediator, written into `buf` (at least
    /// [`wire::MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN) bytes); returns its length.
    pub fn transmit_mediator(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        match &mut self.phase {
            Phase::Registering(reg) => reg.transmit(now, buf),
            _ => None,
        }
    }

    /// The next frame for candidate socket `k`; returns its length.
    pub fn transmit(&mut self, k: usize, buf: &mut [u8]) -> Option<usize> {
        match &mut self.phase {
            Phase::Punching { punch, .. } => punch.transmit(k, buf),
            _ => None,
        }
    }

    /// When [`poll`](Self::poll) must run next at the latest (besides whenever a socket changes).
    pub fn poll_at(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Failed(_) => return None,
            Phase::Punching { punch, .. } if punch.result().is_some() => return None,
            Phase::Start => return Some(Instant::ZERO),
            Phase::DialingMediator { since } => Some(*since + self.config.mediator_timeout),
            Phase::Registering(reg) => reg.poll_at(),
            Phase::Backoff { until } => Some(*until),
            Phase::Punching { punch, .. } => punch.poll_at(),
        };
        Some(phase.map_or(self.deadline, |p| p.min(self.deadline)))
    }

    /// Advance to `now`: the next action for the shell, or `None` when there is nothing to do until a
    /// socket changes or [`poll_at`](Self::poll_at). Call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<Action> {
        if self.result().is_some() {
            return None;
        }
        if now >= self.deadline {
            let last = match &self.phase {
                Phase::Punching { punch, .. } => punch.last_error().map(Error::from),
                _ => None,
            };
            self.fail(last.unwrap_or(Error::Timeout));
            return None;
        }
        let action = match &mut self.phase {
            Phase::Start => Some(self.dial_mediator(now)),
            Phase::Backoff { until } if now >= *until => Some(self.dial_mediator(now)),
            Phase::DialingMediator { since } => {
                let since = *since;
                self.mediator_dialled(now, since);
                None
            }
            Phase::Registering(reg) => match reg.poll(now) {
                Err(e) => {
                    self.registration_failed(now, e);
                    None
                }
                // After the Match we are punching; a close before it is the mediator's.
                Ok(()) if !self.mediator_up() => {
                    self.fail(Error::MediatorClosed);
                    None
                }
                Ok(()) => None,
            },
            // The first poll after the Match only holds the port, then yields (returns `None` once),
            // so that whoever reads the events sees the Match before the first SYN.
            Phase::Punching {
                punch,
                yielded: false,
            } => match punch.hold() {
                Some(hold) => Some(Action::Candidate(hold)),
                None => {
                    self.phase_yielded();
                    None
                }
            },
            Phase::Punching { punch, .. } => {
                let action = punch.poll(now).map(Action::Candidate);
                self.punch_events();
                action
            }
            Phase::Backoff { .. } | Phase::Failed(_) => None,
        };
        if let Some(Ok(winner)) = self.result() {
            info!(
                "p2psc: connected to {:?} as {:?}",
                winner.remote, winner.role
            );
        }
        action
    }

    /// Whether the Match has come and the punch runs.
    pub fn is_punching(&self) -> bool {
        matches!(self.phase, Phase::Punching { .. })
    }

    fn phase_yielded(&mut self) {
        if let Phase::Punching { yielded, .. } = &mut self.phase {
            *yielded = true;
        }
    }

    fn mediator_up(&self) -> bool {
        matches!(self.mediator, Link::Established { .. })
    }

    fn dial_mediator(&mut self, now: Instant) -> Action {
        self.enter(Phase::DialingMediator { since: now });
        self.mediator = Link::SynSent;
        Action::DialMediator {
            from_port: self.local_port,
        }
    }

    /// The mediator connection is up (register), still opening, or failed.
    fn mediator_dialled(&mut self, now: Instant, since: Instant) {
        match self.mediator {
            Link::Established { local, .. } => {
                let nonce = self.rng.bytes32();
                let reg = Registration::new(
                    self.config.register,
                    self.own,
                    self.peer,
                    nonce,
                    Some(local),
                    now,
                );
                self.event(ConnectEvent::MediatorConnected(local));
                self.enter(Phase::Registering(reg));
            }
            Link::SynSent | Link::SynReceived if now < since + self.config.mediator_timeout => {}
            _ => self.fail(Error::MediatorUnreachable),
        }
    }

    /// Report a registration event; on the Match, start the punch.
    fn registration_event<S: Signer>(&mut self, signer: &S, event: RegisterEvent) {
        let event = match event {
            RegisterEvent::Challenged { observed } => ConnectEvent::Challenged(observed),
            RegisterEvent::Registered { .. } => {
                self.registered = true;
                ConnectEvent::Registered
            }
            RegisterEvent::Matched(info) => {
                // The second peer of a pair is matched at once, without a Registered of its own; report
                // the registration anyway, so progress reads the same for both peers.
                if !core::mem::replace(&mut self.registered, true) {
                    self.event(ConnectEvent::Registered);
                }
                self.event(ConnectEvent::Matched {
                    role: info.role,
                    peer: info.peer_observed,
                    start_at: info.start_at,
                    racing: info.same_public_address(),
                });
                self.start_punch(signer, &info);
                return;
            }
        };
        self.event(event);
    }

    fn start_punch<S: Signer>(&mut self, signer: &S, info: &PunchInfo) {
        let from = match self.mediator {
            Link::Established { local, .. } => Some(local),
            _ => None,
        };
        let seed = self.rng.bytes32();
        let config = self.config.punch;
        match Punch::new(signer, self.peer, info, from, self.sockets, config, seed) {
            Ok(punch) => self.enter(Phase::Punching {
                punch,
                yielded: false,
            }),
            Err(e) => self.fail(e.into()),
        }
    }

    /// A registration error: a RetryAfter within the deadline becomes a back-off, the rest are final.
    #[cold]
    fn registration_failed(&mut self, now: Instant, e: RegisterError) {
        match e {
            RegisterError::RetryAfter(after) => {
                let until = now + self.backoff(after) + self.backoff_jitter(after);
                if until >= self.deadline {
                    return self.fail(Error::MediatorBusy);
                }
                self.busy += 1;
                self.enter(Phase::Backoff { until });
                // The old connection may linger at the mediator (FIN-WAIT); a new one from the same
                // port would share its 4-tuple and be swallowed. Punching uses whatever port the next
                // registration goes out from, so any fresh port will do.
                if self.config.local_port.is_none() {
                    self.local_port = ephemeral_port(&mut self.rng);
                }
            }
            e => self.fail(e.into()),
        }
    }

    /// How long to stay away after the `busy`-th RetryAfter in a row that asked for `after`: at least
    /// that, and at least the floor doubled for each earlier one (a mediator that says "0" must not get
    /// a tight loop of reconnections; §7.3), at most a minute more than it asked for.
    fn backoff(&self, after: Duration) -> Duration {
        let floor = self.config.busy_backoff.total_micros() << self.busy.min(6);
        let asked = after.total_micros();
        Duration::from_micros(floor.max(asked).min(asked + 60_000_000))
    }

    /// Up to a quarter more, at random, so that peers turned away together do not return together.
    fn backoff_jitter(&mut self, after: Duration) -> Duration {
        let quarter = self.backoff(after).total_micros() / 4;
        Duration::from_micros(self.rng.range(0, quarter))
    }

    fn punch_events(&mut self) {
        while let Some(e) = match &mut self.phase {
            Phase::Punching { punch, .. } => punch.next_event(),
            _ => None,
        } {
            self.event(e.into());
        }
    }

    /// The one place where the phase changes.
    fn enter(&mut self, phase: Phase) {
        trace!("p2psc: {} -> {}", self.phase.name(), phase.name());
        self.phase = phase;
    }

    fn event(&mut self, event: ConnectEvent) {
        debug!("p2psc: {:?}", event);
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests;
