//! The peer's whole side of a connection as one sans-IO machine: the mediator connection, registration
//! (protocol §7, [`register`](super::register)), back-off when the mediator is busy, and the punch with
//! its handshakes (§8–§9, [`punch`](super::punch)).
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
//!
//! With several mediators ([`set_mediators`](Client::set_mediators)), a mediator that fails before the
//! Match in a way that says it cannot serve the pair ([`Error::moves_on`]) sends the client back to
//! `Start` for the next one of the pair's ranking (protocol §13, [`rendezvous`](super::rendezvous)); the
//! shell maps the rank in [`Action::DialMediator`] to an address with
//! [`rendezvous::nth`](super::rendezvous::nth).
//!
//! With the feature `relay` the client speaks protocol version 2 (§14): its registration is probed
//! (`Action::DialProbe`: a second, short connection from the punch port to the mediator's probe
//! endpoint, `probe_endpoint`), and the Match decides the path (`proto::relay::decide`):
//! the punch, the punch and then the relay when it fails, or the relay at once. The relayed stream is
//! the mediator connection itself ([`Via::Mediator`]).
//!
//! ```text
//!  Match ─┬─ punch ──────────────────────────▶ Punching ─▶ winner (Via::Candidate)
//!         ├─ punch, then relay ─▶ Punching ── punch failed ─▶ Relaying ─▶ winner (Via::Mediator)
//!         └─ relay at once ─────────────────────────────────▶ Relaying
//! ```

#[cfg(feature = "relay")]
mod relay;

use core::fmt;

use super::punch::{Link, Punch};
use super::register::{PunchInfo, RegisterError};
use super::register::{RegisterEvent, Registration};
use crate::identity::{PublicKey, Signer, Verifier};
use crate::rng::Drbg;
use crate::time::{Duration, Instant};
use crate::wire::Nonce;

pub use super::punch::MAX_CANDIDATES;
#[cfg(feature = "relay")]
pub use relay::probe_endpoint;
#[cfg(feature = "relay")]
pub use types::RelayMode;
pub use types::{Action, ConnectConfig, ConnectEvent, Error, Path, Via, Won};

mod types;

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
    /// `yielded`: whether the first poll after the Match (which only holds the port) has yielded;
    /// `relay`: the relay the Match offered, taken when the punch fails.
    Punching {
        punch: Punch,
        yielded: bool,
        #[cfg(feature = "relay")]
        relay: Option<relay::Fallback>,
    },
    /// The relayed stream, at once or after the punch failed.
    #[cfg(feature = "relay")]
    Relaying(relay::Fallback),
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
            #[cfg(feature = "relay")]
            Phase::Relaying(_) => "relaying",
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
    /// The nonce of the current registration (drawn when its mediator connection is dialled, so that
    /// the probe can carry it too).
    nonce: Nonce,
    #[cfg(feature = "relay")]
    probe: relay::Probe,
    deadline: Instant,
    phase: Phase,
    mediator: Link,
    events: heapless::Deque<ConnectEvent, 8>,
    /// Whether [`ConnectEvent::Registered`] was reported.
    registered: bool,
    /// RetryAfters so far.
    busy: u32,
    /// Mediators in the pair's ranking, and the rank of the one in use (0: the first).
    mediators: usize,
    rank: usize,
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
            nonce: [0; 32],
            #[cfg(feature = "relay")]
            probe: relay::Probe::Off,
            deadline: now + config.timeout,
            phase: Phase::Start,
            mediator: Link::Closed,
            events: heapless::Deque::new(),
            registered: false,
            busy: 0,
            mediators: 1,
            rank: 0,
        }
    }

    /// Tell the client that the shell knows `count` mediators (one unless this is called; call it before
    /// the first [`poll`](Self::poll)): a mediator that fails before the Match in a way that
    /// [`moves on`](Error::moves_on) is followed by the next of the pair's ranking, within the overall
    /// deadline.
    pub fn set_mediators(&mut self, count: usize) {
        self.mediators = count.max(1);
    }

    /// The peer's public key.
    pub fn peer(&self) -> PublicKey {
        self.peer
    }

    /// The rank, in the pair's ranking, of the mediator in use (0: the first choice).
    pub fn mediator_rank(&self) -> usize {
        self.rank
    }

    /// The local port of the mediator connection and the punch (it changes after a RetryAfter when it
    /// was not configured).
    pub fn local_port(&self) -> u16 {
        self.local_port
    }

    /// The outcome, once decided: the winning connection, or why the connection failed.
    pub fn result(&self) -> Option<Result<Won, Error>> {
        match &self.phase {
            Phase::Failed(e) => Some(Err(*e)),
            Phase::Punching { punch, .. } => {
                let result = punch.result()?;
                #[cfg(feature = "relay")]
                if let (Err(e), Phase::Punching { relay: Some(r), .. }) = (result, &self.phase) {
                    // The relay takes over at the next poll, unless it failed already.
                    if relay::falls_back(e) {
                        return r.failed().map(Err);
                    }
                }
                Some(result.map(Won::direct).map_err(Error::from))
            }
            #[cfg(feature = "relay")]
            Phase::Relaying(r) => r.result(),
            _ => None,
        }
    }

    /// The next progress event, oldest first (the queue keeps the latest 8).
    pub fn next_event(&mut self) -> Option<ConnectEvent> {
        self.events.pop_front()
    }

    /// The shell could not carry out an action (no route, unusable socket): the connection fails, or,
    /// before the Match, moves on to the next mediator when the error [`moves on`](Error::moves_on).
    #[cold]
    pub fn fail(&mut self, error: Error) {
        let registering = matches!(
            self.phase,
            Phase::DialingMediator { .. } | Phase::Registering(_)
        );
        if registering && error.moves_on() && self.rank + 1 < self.mediators {
            self.next_mediator(error);
        } else {
            self.end(error);
        }
    }

    /// The connection fails, whatever the phase.
    #[cold]
    fn end(&mut self, error: Error) {
        if self.result().is_none() {
            warn!("p2psc: connect failed: {:?}", error);
            self.enter(Phase::Failed(error));
        }
    }

    /// Leave the mediator in use for the next of the ranking: dial it at the next poll, from the same
    /// port (another remote address, so another 4-tuple), and start its registration afresh.
    #[cold]
    fn next_mediator(&mut self, error: Error) {
        self.rank += 1;
        self.busy = 0;
        self.registered = false;
        self.event(ConnectEvent::NextMediator {
            failed: error,
            rank: self.rank,
        });
        self.enter(Phase::Start);
    }

    /// Report what the mediator socket is doing now.
    pub fn observe_mediator(&mut self, link: Link) {
        self.mediator = link;
        #[cfg(feature = "relay")]
        self.observe_relay(link);
    }

    /// Report what candidate socket `k` is doing now.
    pub fn observe(&mut self, k: usize, link: Link) {
        if let Phase::Punching { punch, .. } = &mut self.phase {
            punch.observe(k, link);
        }
    }

    /// Feed bytes the mediator sent; returns how many were consumed. `signer` signs the Proof and, on
    /// the Match, our PeerAuth. After the Match everything the mediator sends is read and ignored,
    /// except (protocol version 2) on a connection the relay may use: there `verifier` checks the
    /// peer's PeerAuth once relayed, and bytes after the handshake are the application's (not consumed).
    pub fn receive_mediator<S: Signer, V: Verifier>(
        &mut self,
        now: Instant,
        signer: &S,
        verifier: &V,
        data: &[u8],
    ) -> usize {
        #[cfg(feature = "relay")]
        if let Some(used) = self.receive_relay(now, verifier, data) {
            return used;
        }
        let _ = verifier;
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
            #[cfg(feature = "relay")]
            Phase::Relaying(_) => self.transmit_relay(buf),
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
            #[cfg(feature = "relay")]
            Phase::Relaying(r) => r.poll_at(),
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
            self.end(last.unwrap_or(Error::Timeout));
            return None;
        }
        #[cfg(feature = "relay")]
        if let Some(action) = self.probe_action() {
            return Some(action);
        }
        let action = self.poll_phase(now);
        if let Some(Ok(won)) = self.result() {
            info!(
                "p2psc: connected to {:?} as {:?} ({:?})",
                won.remote,
                won.role,
                won.path()
            );
        }
        action
    }

    /// The current phase's step of [`poll`](Self::poll).
    fn poll_phase(&mut self, now: Instant) -> Option<Action> {
        match &mut self.phase {
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
                ..
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
                #[cfg(feature = "relay")]
                if action.is_none() {
                    self.fall_back();
                }
                action
            }
            #[cfg(feature = "relay")]
            Phase::Relaying(_) => {
                self.relay_poll(now);
                None
            }
            Phase::Backoff { .. } | Phase::Failed(_) => None,
        }
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
        self.nonce = self.rng.bytes32();
        #[cfg(feature = "relay")]
        self.probe_due();
        Action::DialMediator {
            rank: self.rank,
            from_port: self.local_port,
        }
    }

    /// The mediator connection is up (register), still opening, or failed.
    fn mediator_dialled(&mut self, now: Instant, since: Instant) {
        match self.mediator {
            Link::Established { local, .. } => {
                let reg = Registration::new(
                    self.config.register,
                    self.own,
                    self.peer,
                    self.nonce,
                    Some(local),
                    now,
                );
                #[cfg(feature = "relay")]
                let reg = match self.config.relay {
                    RelayMode::Off => reg,
                    mode => reg.with_relay(mode),
                };
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
        #[allow(unused_mut)]
        let mut config = self.config.punch;
        #[cfg(feature = "relay")]
        let Some(relay) = self.choose_path(signer, info, &mut config) else {
            return;
        };
        match Punch::new(signer, self.peer, info, from, self.sockets, config, seed) {
            Ok(punch) => self.enter(Phase::Punching {
                punch,
                yielded: false,
                #[cfg(feature = "relay")]
                relay,
            }),
            #[cfg(feature = "relay")]
            Err(_) if relay.is_some() => {
                if let Some(fallback) = relay {
                    self.relay_instead(signer, info, fallback);
                }
            }
            // After the Match nothing moves on: the pair has met.
            Err(e) => self.end(e.into()),
        }
    }

    /// A registration error: a RetryAfter within the deadline becomes a back-off, the rest are final.
    #[cold]
    fn registration_failed(&mut self, now: Instant, e: RegisterError) {
        match e {
            RegisterError::RetryAfter(after) => {
                let until = now + self.backoff(after) + self.backoff_jitter(after);
                if until >= self.deadline {
                    return self.end(Error::MediatorBusy);
                }
                self.busy += 1;
                self.enter(Phase::Backoff { until });
                #[cfg(feature = "relay")]
                self.probe_abandoned();
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
