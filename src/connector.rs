//! The punch, as a poll API: one [`Connector`] drives registration, the TCP simultaneous open and the peer
//! handshake over *your* smoltcp [`Interface`] and [`SocketSet`], advanced by [`Connector::poll`].
//!
//! This is for firmware that runs smoltcp itself (RTIC, a super-loop). With an executor, use
//! [`net::connect`](fn@crate::net::connect), a thin async layer over this same type.
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
//! 4. After a reset or an attempt timeout, holds the port again and retries at its next slot of the
//!    [`Schedule`] it shares with the peer (below), until the punch deadline (a handshake under way
//!    then still finishes).
//! 5. Runs the peer handshake ([`proto::auth`](crate::proto::auth)) on each established candidate; the
//!    first that authenticates wins (the leader confirms it when candidates race), the others and the
//!    mediator connection are aborted.
//!
//! # Retries: a schedule both peers share
//!
//! Some home routers have no filtering firewall: their own stack answers a SYN they have no session
//! for with a RST, and that RST, passing back through the other router, ends that router's session
//! too. Through two of them, both SYNs must leave within one router-to-router one-way delay of each
//! other (a few milliseconds, or less, between nearby routers). The mediator's start time aligns the
//! first SYNs to within its error; after a miss, independent random retry delays practically never
//! align them again, and a fixed period could keep two stacks in lock-step forever.
//!
//! So both peers retry at the slots of one [`Schedule`], which each computes from the Match alone
//! (both nonces, ordered by role): random gaps, identical on both sides, plus a small independent
//! jitter ([`ConnectConfig::jitter`]). Most slots have both peers dial, one of them later by a shared
//! random skew of a few milliseconds that sweeps over the start times' error, with short gaps after
//! them (many tries per second where the window is narrow; on longer paths an attempt lasts until its
//! reset and both resume at the same slot after it). In the other slots only one peer dials while the
//! other stops an unanswered attempt and listens, with a long gap after them: a SYN from a port the
//! listener never dialled (a NAT with unpredictable ports) can only be taken by a listening socket. A
//! peer that polls late (a slow device) sends its first SYN at once and joins the schedule at its next
//! slot. Attempts end without a RST, which would end our own NAT's session for the peer. Protocol
//! §8.3 specifies the schedule.
//!
//! You add the sockets to your set (with your buffers) and pass their handles: the mediator socket
//! needs at least [`wire::MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN) bytes each way; each candidate
//! socket becomes the application's socket if it wins, so size its buffers for the application. One
//! candidate socket is enough; a second lets the LAN and public paths be tried at once. On every
//! outcome, every socket is left closed except the winner; [`Connector::poll`] returns which one that
//! is.

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
use crate::wire::{AbortReason, Nonce, Role, MAX_FRAME_LEN};

/// Deadlines and retry policy of one connection attempt. The defaults suit links up to a few hundred
/// milliseconds of round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectConfig {
    /// Registration deadlines (each mediator answer; the wait for the peer).
    pub register: RegisterConfig,
    /// Longest wait for the TCP connection to the mediator.
    pub mediator_timeout: Duration,
    /// Longest time from the start of the punch to the last attempt (a handshake under way at this
    /// deadline still runs to its own, [`auth_timeout`](Self::auth_timeout) after establishment).
    pub punch_timeout: Duration,
    /// Longest single connection attempt (SYN-SENT or SYN-RECEIVED) before it is given up and retried
    /// at the next slot. Attempts through a NAT that answers with RST end much sooner, by the reset.
    pub attempt_timeout: Duration,
    /// Shortest run of an attempt before it may be stopped, in a slot where only the other peer dials,
    /// to listen instead. A bound on the peer round trip: SYNs that crossed ours must have arrived
    /// before the socket is replaced, or the two sides disagree about sequence numbers.
    pub attempt_min: Duration,
    /// The retry schedule shared with the peer ([`Schedule`]). Both peers must use the same values to
    /// share it; keep the defaults (protocol §8.3) unless you control both.
    pub slots: SlotConfig,
    /// Independent random delay added to each retry (uniform in `0..=jitter`), on top of the shared
    /// slot time. Small: the shared schedule does the aligning; this only keeps two peers from being
    /// exactly in step by accident.
    pub jitter: Duration,
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
            attempt_min: Duration::from_millis(1500),
            slots: SlotConfig::default(),
            jitter: Duration::from_micros(500),
            auth_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(120),
            local_port: None,
        }
    }
}

/// Parameters of the shared retry [`Schedule`] (protocol §8.3). Both peers must use the same values,
/// or their slots differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SlotConfig {
    /// Shortest gap after a slot where both peers dial. Such a slot only needs the attempt to be
    /// reset (one round trip) before the next, so the gap is short: many aligned tries per second
    /// when the window for them is narrow (routers that reset early SYNs, close together). On longer
    /// paths an attempt spans several slots, and both peers resume at the first slot after it.
    pub dial_gap_min: Duration,
    /// Longest gap after a slot where both peers dial.
    pub dial_gap_max: Duration,
    /// Shortest gap after a slot where only one peer dials: the other listens until its next slot, so
    /// this must exceed the one-way delay between the peers.
    pub listen_gap_min: Duration,
    /// Longest gap after a slot where only one peer dials.
    pub listen_gap_max: Duration,
    /// Largest skew between the two peers' SYNs in a slot where both dial: each such slot delays one
    /// side by a shared random amount up to this, so that a constant error in the mediator's
    /// synchronisation (start delays are whole milliseconds, one-way delays are estimates) is swept
    /// over. In a slot where only one side dials, it dials this long after the slot time, when the
    /// other is surely listening.
    pub skew: Duration,
}

impl Default for SlotConfig {
    fn default() -> Self {
        SlotConfig {
            dial_gap_min: Duration::from_millis(10),
            dial_gap_max: Duration::from_millis(30),
            listen_gap_min: Duration::from_millis(100),
            listen_gap_max: Duration::from_millis(300),
            skew: Duration::from_millis(3),
        }
    }
}

/// Who dials in a slot of the [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Dialers {
    /// Both peers; the leader this long after the slot time if positive, the follower if negative
    /// (µs).
    Both {
        /// Leader's dial time minus the follower's, µs.
        skew_us: i32,
    },
    /// Only the leader; the follower listens.
    Leader,
    /// Only the follower; the leader listens.
    Follower,
}

/// One slot of the shared retry [`Schedule`]: when it comes, and who dials in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Slot {
    /// Its number; slot 0 is the start time.
    pub index: u32,
    /// Its time, from the start time.
    pub at: Duration,
    /// Who dials.
    pub dialers: Dialers,
    /// The skew bound, for [`dial`](Self::dial).
    skew: Duration,
}

impl Slot {
    /// When `role` dials in this slot, after [`at`](Self::at); `None`: it listens.
    pub fn dial(&self, role: Role) -> Option<Duration> {
        let late = |us: i32| Duration::from_micros(u64::from(us.unsigned_abs()));
        match (self.dialers, role) {
            (Dialers::Both { skew_us }, Role::Leader) => Some(late(skew_us.max(0))),
            (Dialers::Both { skew_us }, Role::Follower) => Some(late(skew_us.min(0))),
            (Dialers::Leader, Role::Leader) | (Dialers::Follower, Role::Follower) => {
                Some(self.skew)
            }
            _ => None,
        }
    }
}

/// The retry schedule of a punch, computed alike by both peers from both nonces (protocol §8.3): an
/// endless sequence of [`Slot`]s, from slot 0 at the start time.
///
/// After a failed attempt each peer waits for its next slot, so the two peers retry *together*
/// instead of drifting apart; and since the gaps are random, not a fixed period, two stacks cannot
/// stay in lock-step either.
///
/// - Slot 0: both dial at once. Every later slot is, at random (shared): both dial (3/4 of slots),
///   one of them later by a shared random skew up to [`SlotConfig::skew`]; or one-sided (1/4): only
///   one peer dials while the other listens, the sides taking turns.
/// - Both-dial slots align the two SYNs, which routers that reset early SYNs need (each router then
///   holds a usable session for one round trip only); the gap after them is short
///   ([`SlotConfig::dial_gap_min`]..). One-sided slots let a SYN reach a peer that is *listening*,
///   which is the only way through some NAT pairs (one with unpredictable ports); the gap after them
///   is long ([`SlotConfig::listen_gap_min`]..), a window for that SYN to arrive.
///
/// Slot *k* ≥ 1 derives from `h = SHA-512("p2psc/1 punch slot" || 0x00 || leader_nonce ||
/// follower_nonce || u32be(k))`: both dial if `h[0]` < 192, with skew = `u32be(h[1..5]) mod
/// (2·skew + 1) − skew` µs; otherwise the slot is one-sided: for the side that did not dial in the
/// previous one-sided slot, or for the first, the leader if `h[0]` is even, else the follower. The
/// gap from slot *k* − 1 = `min + u32be(h[5..9]) mod (max − min + 1)` µs, in the listen range if slot
/// *k* − 1 was one-sided, else in the dial range.
#[derive(Clone)]
pub struct Schedule {
    key: [u8; 64],
    config: SlotConfig,
    /// The last slot yielded.
    last: Option<Slot>,
    /// Who dialled in the last one-sided slot.
    last_one_sided: Option<Dialers>,
}

impl core::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Schedule")
            .field("last", &self.last)
            .finish()
    }
}

impl Schedule {
    /// The schedule of a pair, from the leader's and the follower's nonces (in that order).
    pub fn new(leader_nonce: &Nonce, follower_nonce: &Nonce, config: SlotConfig) -> Schedule {
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(leader_nonce);
        key[32..].copy_from_slice(follower_nonce);
        Schedule {
            key,
            config,
            last: None,
            last_one_sided: None,
        }
    }

    /// The schedule of a punch, ordering the nonces by role so that both peers get the same one.
    pub fn for_punch(info: &PunchInfo, config: SlotConfig) -> Schedule {
        match info.role {
            Role::Leader => Schedule::new(&info.own_nonce, &info.peer_nonce, config),
            Role::Follower => Schedule::new(&info.peer_nonce, &info.own_nonce, config),
        }
    }

    /// Slot `index` ≥ 1, following `prev` (and the one-sided slots so far).
    fn draw(&self, index: u32, prev: &Slot) -> Slot {
        let mut h = salty::Sha512::new();
        h.update(b"p2psc/1 punch slot\0");
        h.update(&self.key);
        h.update(&index.to_be_bytes());
        let h = h.finalize();
        let word =
            |at: usize| u64::from(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
        let c = &self.config;
        let skew = c.skew.total_micros().min(i32::MAX as u64 / 2);
        // One-sided slots alternate between the sides, so that neither waits long for its turn.
        let dialers = match (h[0], self.last_one_sided) {
            (0..=191, _) => Dialers::Both {
                skew_us: (word(1) % (2 * skew + 1)) as i32 - skew as i32,
            },
            (_, Some(Dialers::Leader)) => Dialers::Follower,
            (_, Some(_)) => Dialers::Leader,
            (n, None) if n % 2 == 0 => Dialers::Leader,
            (_, None) => Dialers::Follower,
        };
        let (lo, hi) = match prev.dialers {
            Dialers::Both { .. } => (c.dial_gap_min, c.dial_gap_max),
            Dialers::Leader | Dialers::Follower => (c.listen_gap_min, c.listen_gap_max),
        };
        let (lo, hi) = (lo.total_micros(), hi.total_micros());
        let gap = lo + word(5) % (hi.saturating_sub(lo) + 1);
        Slot {
            index,
            at: prev.at + Duration::from_micros(gap),
            dialers,
            skew: c.skew,
        }
    }
}

impl Iterator for Schedule {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        let slot = match &self.last {
            None => Slot {
                index: 0,
                at: Duration::ZERO,
                dialers: Dialers::Both { skew_us: 0 },
                skew: self.config.skew,
            },
            Some(prev) => self.draw(prev.index.checked_add(1)?, prev),
        };
        if !matches!(slot.dialers, Dialers::Both { .. }) {
            self.last_one_sided = Some(slot.dialers);
        }
        self.last = Some(slot);
        Some(slot)
    }
}

/// A punch's position in its schedule.
#[derive(Debug, Clone)]
struct Slots {
    start: Instant,
    role: Role,
    /// The latest slot whose time has come (slot 0 before the start).
    current: Slot,
    /// The slot after it.
    upcoming: Slot,
    /// Yields the slots after `upcoming`.
    rest: Schedule,
}

impl Slots {
    fn new(info: &PunchInfo, config: SlotConfig) -> Slots {
        let mut rest = Schedule::for_punch(info, config);
        let current = rest.next().expect("slot 0");
        let upcoming = rest.next().expect("slot 1");
        Slots {
            start: info.start_at,
            role: info.role,
            current,
            upcoming,
            rest,
        }
    }

    fn time(&self, slot: &Slot) -> Instant {
        self.start + slot.at
    }

    /// Move to the slot whose time has come.
    fn advance(&mut self, now: Instant) {
        while now >= self.time(&self.upcoming) {
            let Some(next) = self.rest.next() else { break };
            self.current = core::mem::replace(&mut self.upcoming, next);
        }
    }

    /// When the next slot begins.
    fn next_at(&self) -> Instant {
        self.time(&self.upcoming)
    }

    /// The first time at or after `after` at which we dial in a slot.
    fn next_dial(&self, after: Instant) -> Instant {
        let mut slots = [self.current, self.upcoming]
            .into_iter()
            .chain(self.rest.clone());
        slots
            .find_map(|slot| {
                let at = self.time(&slot) + slot.dial(self.role)?;
                (at >= after).then_some(at)
            })
            .unwrap_or(Instant::from_micros(i64::MAX))
    }

    /// Whether the current slot is one where only the peer dials, and began after `since`.
    fn listen_slot_since(&self, since: Instant) -> bool {
        self.current.index > 0
            && self.current.dial(self.role).is_none()
            && self.time(&self.current) > since
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
    /// An attempt ended (reset, timed out, or stopped to listen in a slot where only the peer dials);
    /// the next goes out at our next slot of the shared schedule.
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
    Dialing {
        since: Instant,
    },
    Registering(Registration),
    Backoff {
        until: Instant,
    },
    Punching {
        info: PunchInfo,
        deadline: Instant,
        slots: Slots,
    },
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
    /// Whether [`ConnectEvent::Registered`] was reported.
    registered: bool,
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

/// `addr` as a smoltcp endpoint; `None` for an IPv6 address when p2psc is built without `ipv6`.
fn endpoint(addr: SocketAddr) -> Option<IpEndpoint> {
    match addr {
        SocketAddr::V4(a) => Some(a.into()),
        #[cfg(feature = "ipv6")]
        SocketAddr::V6(a) => Some(a.into()),
        #[cfg(not(feature = "ipv6"))]
        SocketAddr::V6(_) => None,
    }
}

/// A port from the IANA dynamic range, 49152..=65535.
fn ephemeral_port(rng: &mut Drbg) -> u16 {
    rng.range(49152, 65535) as u16
}

/// Close a socket without a RST: `abort` alone would send one to the remote, and a RST through our own
/// NAT ends the session it keeps for the peer (Linux conntrack), closing the hole we punched. `listen`
/// forgets the remote, and aborting a listening socket sends nothing.
fn quiet_close(s: &mut tcp::Socket, port: u16) {
    s.abort();
    let _ = s.listen(port);
    s.abort();
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
            registered: false,
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
            Phase::Punching {
                deadline, slots, ..
            } => {
                // The punch deadline ends the punch, unless a handshake is under way: that one
                // runs to its own deadline.
                let authenticating = self
                    .candidates
                    .iter()
                    .any(|c| matches!(c.state, Attempt::Authenticating | Attempt::Verified));
                let mut at = if authenticating {
                    self.deadline
                } else {
                    *deadline
                };
                for c in &self.candidates {
                    let t = match c.state {
                        Attempt::Waiting { until } => Some(until),
                        // Also at the next slot: it may be one to listen in.
                        Attempt::Connecting { since } => {
                            Some((since + self.config.attempt_timeout).min(slots.next_at()))
                        }
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
                RegisterEvent::Registered { .. } => {
                    self.registered = true;
                    ConnectEvent::Registered
                }
                // The second peer of a pair is matched at once, without a Registered of its own; report
                // the registration anyway, so progress reads the same for both peers.
                RegisterEvent::Matched(info) => {
                    if !core::mem::replace(&mut self.registered, true) {
                        self.event(ConnectEvent::Registered);
                    }
                    ConnectEvent::Matched {
                        role: info.role,
                        peer: info.peer_observed,
                        start_at: info.start_at,
                        racing: info.same_public_address(),
                    }
                }
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
            if let Some(local) = info.peer_local.and_then(endpoint) {
                let _ = targets.push(local);
            }
        }
        if let Some(observed) = endpoint(info.peer_observed) {
            let _ = targets.push(observed);
        }
        if targets.is_empty() {
            // An IPv6 peer, and this build has no IPv6 (feature `ipv6`).
            return Err(ConnectError::NoRoute);
        }
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
            slots: Slots::new(&info, self.config.slots),
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
        let (info, deadline) = match &mut self.phase {
            Phase::Punching {
                info,
                deadline,
                slots,
            } => {
                slots.advance(now);
                (*info, *deadline)
            }
            _ => return Ok(None),
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
            // No new attempts; a handshake under way may still finish (its own deadline bounds it),
            // so that a connection formed just before the deadline is not cut off on one side only.
            let mut authenticating = false;
            for c in self.candidates.iter_mut() {
                match c.state {
                    Attempt::Authenticating | Attempt::Verified => authenticating = true,
                    Attempt::Dead => {}
                    Attempt::Waiting { .. } | Attempt::Connecting { .. } => {
                        quiet_close(socket(sockets, c.handle), self.local_port);
                        c.state = Attempt::Dead;
                    }
                }
            }
            if !authenticating {
                return Err(self.last_error.unwrap_or(ConnectError::PunchFailed));
            }
            return Ok(None);
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
        let Phase::Punching { slots, .. } = &self.phase else {
            return Ok(None);
        };
        let c = &mut self.candidates[i];
        let s = socket(sockets, c.handle);
        let mut event = None;
        // The socket dialled by the attempt that ended, named in the event (a reset socket has
        // forgotten its remote).
        let dialled = |c: &Candidate, s: &tcp::Socket| {
            s.remote_endpoint().or_else(|| {
                let n = usize::from(c.attempts).checked_sub(1)?;
                c.targets.get(n % c.targets.len()).copied()
            })
        };
        match c.state {
            Attempt::Waiting { until } => {
                if matches!(s.state(), TcpState::SynReceived | TcpState::Established) {
                    // The held port accepted the peer's SYN.
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
                // A slot where only the peer dials, and nobody answered our SYN: stop it and listen,
                // so that the peer's SYN finds the port held even if it comes from a port we did
                // not dial (a NAT with unpredictable ports). Not before `attempt_min`: a SYN that
                // crossed ours may still be on its way to this socket.
                TcpState::SynSent
                    if now >= since + self.config.attempt_min && slots.listen_slot_since(since) =>
                {
                    let target = dialled(c, s);
                    quiet_close(s, self.local_port);
                    c.state = Attempt::Waiting {
                        until: slots.next_dial(now) + jitter,
                    };
                    event = target.map(ConnectEvent::Retrying);
                }
                TcpState::SynSent | TcpState::SynReceived
                    if now < since + self.config.attempt_timeout => {}
                _ => {
                    // Reset, refused or timed out: hold the port and wait for our next slot.
                    let target = dialled(c, s);
                    quiet_close(s, self.local_port);
                    c.state = Attempt::Waiting {
                        until: slots.next_dial(now) + jitter,
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

    /// Our own random delay on top of a slot time.
    fn jitter(&mut self) -> Duration {
        Duration::from_micros(self.rng.range(0, self.config.jitter.total_micros()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};
    use std::vec::Vec;

    fn info(role: Role, own: u8, peer: u8) -> PunchInfo {
        let ep = |n: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), 5000);
        PunchInfo {
            role,
            start_at: Instant::from_millis(1000),
            own_observed: ep(own),
            own_nonce: [own; 32],
            peer_observed: ep(peer),
            peer_local: None,
            peer_nonce: [peer; 32],
        }
    }

    fn slots(n: usize) -> Vec<Slot> {
        Schedule::for_punch(&info(Role::Leader, 1, 2), SlotConfig::default())
            .take(n)
            .collect()
    }

    #[test]
    fn both_roles_compute_the_same_schedule() {
        let config = SlotConfig::default();
        let leader: Vec<Slot> = Schedule::for_punch(&info(Role::Leader, 1, 2), config)
            .take(500)
            .collect();
        let follower: Vec<Slot> = Schedule::for_punch(&info(Role::Follower, 2, 1), config)
            .take(500)
            .collect();
        assert_eq!(leader, follower);
        // The order of the nonces matters (that is why they are ordered by role), and so do they.
        let swapped: Vec<Slot> = Schedule::new(&[2; 32], &[1; 32], config)
            .take(500)
            .collect();
        assert_ne!(leader, swapped);
        let other: Vec<Slot> = Schedule::new(&[1; 32], &[3; 32], config)
            .take(500)
            .collect();
        assert_ne!(leader, other);
    }

    #[test]
    fn known_answer() {
        // The vector of protocol §8.3: leader nonce 01×32, follower nonce 02×32, default parameters.
        let got: Vec<(u32, u64, Dialers)> = slots(6)
            .iter()
            .map(|s| (s.index, s.at.total_micros(), s.dialers))
            .collect();
        let both = |skew_us| Dialers::Both { skew_us };
        assert_eq!(
            got,
            std::vec![
                (0, 0, both(0)),
                (1, 14_623, both(-797)),
                (2, 28_624, Dialers::Leader),
                (3, 210_367, both(742)),
                (4, 224_466, both(2063)),
                (5, 244_974, Dialers::Follower),
            ]
        );
    }

    #[test]
    fn gaps_and_skews_stay_within_bounds() {
        let c = SlotConfig::default();
        let all = slots(2000);
        assert_eq!(all[0].at, Duration::ZERO);
        assert_eq!(all[0].dial(Role::Leader), Some(Duration::ZERO));
        assert_eq!(all[0].dial(Role::Follower), Some(Duration::ZERO));
        for pair in all.windows(2) {
            let (prev, slot) = (&pair[0], &pair[1]);
            assert_eq!(slot.index, prev.index + 1);
            let gap = slot.at - prev.at;
            let (lo, hi) = match prev.dialers {
                Dialers::Both { .. } => (c.dial_gap_min, c.dial_gap_max),
                _ => (c.listen_gap_min, c.listen_gap_max),
            };
            assert!(lo <= gap && gap <= hi, "gap {gap} after {prev:?}");
            match slot.dialers {
                Dialers::Both { skew_us } => {
                    assert!(u64::from(skew_us.unsigned_abs()) <= c.skew.total_micros());
                    // One side dials at the slot time, the other `skew_us` later.
                    let (l, f) = (slot.dial(Role::Leader), slot.dial(Role::Follower));
                    assert!(l == Some(Duration::ZERO) || f == Some(Duration::ZERO));
                }
                Dialers::Leader => {
                    assert_eq!(slot.dial(Role::Leader), Some(c.skew));
                    assert_eq!(slot.dial(Role::Follower), None);
                }
                Dialers::Follower => {
                    assert_eq!(slot.dial(Role::Leader), None);
                    assert_eq!(slot.dial(Role::Follower), Some(c.skew));
                }
            }
        }
    }

    #[test]
    fn kinds_come_in_their_proportions_and_skews_spread() {
        let all = slots(8000);
        let count = |f: &dyn Fn(&Dialers) -> bool| all.iter().filter(|s| f(&s.dialers)).count();
        let both = count(&|d| matches!(d, Dialers::Both { .. }));
        let leader = count(&|d| *d == Dialers::Leader);
        let follower = count(&|d| *d == Dialers::Follower);
        assert!((5700..6300).contains(&both), "{both}");
        assert!(leader.abs_diff(follower) <= 1, "{leader} {follower}");
        // One-sided slots take turns.
        let one_sided: Vec<Dialers> = all
            .iter()
            .map(|s| s.dialers)
            .filter(|d| !matches!(d, Dialers::Both { .. }))
            .collect();
        assert!(one_sided.windows(2).all(|w| w[0] != w[1]));
        // Skews cover both signs and most of the range.
        let skews: Vec<i32> = all
            .iter()
            .filter_map(|s| match s.dialers {
                Dialers::Both { skew_us } => Some(skew_us),
                _ => None,
            })
            .collect();
        assert!(skews.iter().any(|s| *s < -2500) && skews.iter().any(|s| *s > 2500));
    }

    #[test]
    fn not_periodic() {
        let all = slots(200);
        let gaps: Vec<u64> = all
            .windows(2)
            .map(|p| (p[1].at - p[0].at).total_micros())
            .collect();
        let mut distinct = gaps.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 190, "{} distinct gaps", distinct.len());
        for period in 1..=64 {
            assert!(
                (0..100).any(|i| gaps[i] != gaps[i + period]),
                "gaps repeat with period {period}"
            );
        }
    }

    #[test]
    fn each_side_dials_at_its_next_slot() {
        let leader = Slots::new(&info(Role::Leader, 1, 2), SlotConfig::default());
        let follower = Slots::new(&info(Role::Follower, 2, 1), SlotConfig::default());
        let all = slots(100);
        let start = Instant::from_millis(1000);
        for slot in &all[1..] {
            let at = start + slot.at;
            // Just after the previous slot: each side's next dial is its first slot from here on.
            for (slots, role) in [(&leader, Role::Leader), (&follower, Role::Follower)] {
                let expected = all
                    .iter()
                    .filter(|s| s.index >= slot.index)
                    .find_map(|s| Some(start + s.at + s.dial(role)?))
                    .unwrap();
                assert_eq!(
                    slots.next_dial(at),
                    expected,
                    "{role:?} from slot {}",
                    slot.index
                );
            }
        }
        // After a stall: we advance to the slot whose time has come; the next dial is not in the past.
        let mut late = leader.clone();
        let now = start + Duration::from_millis(800);
        late.advance(now);
        assert!(late.time(&late.current) <= now && now < late.next_at());
        assert!(late.next_dial(now) >= now);
    }
}
