//! The punch (protocol §8) as a sans-IO machine: which targets to dial and when, each candidate
//! connection's attempt life cycle, the peer handshake on it, and the choice of the winner.
//!
//! Like the other machines in [`proto`](crate::proto) it never touches a socket, a clock or a random
//! number generator. An I/O shell (the smoltcp [`Connector`](crate::connector::Connector), a host peer on
//! OS sockets) owns up to [`MAX_CANDIDATES`] candidate sockets, all on the punch port *P*, and drives it:
//!
//! 1. [`observe`](Punch::observe) what each candidate's socket is doing ([`Link`]);
//! 2. hand it the bytes each socket received ([`receive`](Punch::receive));
//! 3. carry out the [`Action`]s that [`poll`](Punch::poll) returns until it returns `None` (dial,
//!    listen, close quietly, abort);
//! 4. send what [`transmit`](Punch::transmit) hands out on each socket;
//! 5. stop once [`result`](Punch::result) is `Some`: every socket but the winner's must then be closed;
//! 6. call again at [`poll_at`](Punch::poll_at) or when a socket changes.
//!
//! # Attempt life cycle of one candidate
//!
//! ```text
//!            ┌──────────── slot time: Dial ────────────┐
//!  Waiting ──┤ (holding P: Listen, if no other holds)  ├──▶ Opening ──established──▶ Authenticating ──▶ won
//!     ▲      └── the held port took the peer's SYN ────┘       │                        │
//!     └──── reset / refused / attempt timeout / listen slot ───┘        bad PeerAuth, peer closed,
//!           (Close: quietly, no RST; next dial at our next slot)        handshake deadline ──▶ Dead (Abort)
//! ```
//!
//! At the punch deadline every candidate not yet authenticating is closed; a handshake under way runs
//! to its own deadline, so a connection that formed just before is not torn down on one side only.

mod schedule;

pub use schedule::{Dialers, Schedule, Slot, SlotConfig, SlotCursor};

use core::fmt;
use core::net::SocketAddr;

use super::auth::{AuthError, Handshake, HandshakeParams, SessionKey};
use super::register::PunchInfo;
use crate::identity::{PublicKey, Signer, Verifier};
use crate::rng::Drbg;
use crate::time::{Duration, Instant};
use crate::wire::Role;

/// Most candidate sockets a punch uses: one per target (§8.2 has at most two).
pub const MAX_CANDIDATES: usize = 2;

/// Deadlines and retry policy of a punch. The defaults suit links up to a few hundred milliseconds of
/// round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PunchConfig {
    /// Longest time from the start time to the last attempt (a handshake under way at this deadline
    /// still runs to its own, [`auth_timeout`](Self::auth_timeout) after establishment).
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
}

impl Default for PunchConfig {
    fn default() -> Self {
        PunchConfig {
            punch_timeout: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(3),
            attempt_min: Duration::from_millis(1500),
            slots: SlotConfig::default(),
            jitter: Duration::from_micros(500),
            auth_timeout: Duration::from_secs(5),
        }
    }
}

/// What an I/O shell sees of one socket (a candidate's, or the mediator connection's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Link {
    /// No connection: never opened, closed, reset or refused.
    Closed,
    /// Listening on the punch port.
    Listening,
    /// Our SYN is out, nothing heard yet (a shell that cannot tell SYN-SENT from SYN-RECEIVED reports
    /// this while its connect is pending).
    SynSent,
    /// The peer's SYN arrived; the connection is not yet established.
    SynReceived,
    /// Established, and the other end has not closed.
    Established {
        /// Our end.
        local: SocketAddr,
        /// The other end.
        remote: SocketAddr,
    },
    /// Was established, but the other end closed it, or it is closing.
    Closing,
}

/// What the shell must do with candidate socket `candidate`, all on the punch port *P*.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Action {
    /// Connect from *P* to `target` (drop whatever the socket held first, without a RST).
    Dial {
        /// Which candidate socket.
        candidate: usize,
        /// Where to.
        target: SocketAddr,
    },
    /// Hold *P*: listen on it, so that an early SYN from the peer is answered with SYN|ACK instead of a
    /// RST (§8.3). The socket is closed when this comes.
    Listen {
        /// Which candidate socket.
        candidate: usize,
    },
    /// End this attempt without sending a RST (§8.3: a RST through our own NAT would end the session it
    /// keeps for the peer). With smoltcp: `abort`, then `listen` and `abort` again, which forgets the
    /// remote.
    Close {
        /// Which candidate socket.
        candidate: usize,
    },
    /// Abort this connection (a RST is fine): the other end did not authenticate (§8.4).
    Abort {
        /// Which candidate socket.
        candidate: usize,
    },
}

/// Progress of a punch, for logs and timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PunchEvent {
    /// A SYN went out to this endpoint (attempt number, from 1).
    Dialing(SocketAddr, u16),
    /// An attempt ended (reset, timed out, or stopped to listen in a slot where only the peer dials);
    /// the next goes out at our next slot of the shared schedule.
    Retrying(SocketAddr),
    /// A connection to the peer is established.
    Established(SocketAddr),
    /// The peer authenticated on this connection, which won.
    Authenticated(SocketAddr),
}

/// Why a punch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PunchError {
    /// No target can be dialled from the punch port (the peer's addresses are of another family).
    NoTarget,
    /// No connection could be established before the punch deadline.
    Unreachable,
    /// A connection formed but the peer did not authenticate.
    AuthFailed(AuthError),
    /// A connection formed but the peer closed it before authenticating (it rejected us).
    PeerClosed,
}

impl fmt::Display for PunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PunchError::NoTarget => f.write_str("no peer address of the punch port's family"),
            PunchError::Unreachable => f.write_str("could not reach the peer"),
            PunchError::AuthFailed(e) => write!(f, "authentication failed: {}", e),
            PunchError::PeerClosed => f.write_str("peer closed the connection"),
        }
    }
}

impl core::error::Error for PunchError {}

/// The connection that won: the application's from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Winner {
    /// Which candidate socket.
    pub candidate: usize,
    /// The peer's endpoint as seen from here.
    pub remote: SocketAddr,
    /// Our role.
    pub role: Role,
    /// The key both sides derived in the handshake.
    pub session_key: SessionKey,
}

/// Where one candidate is in its attempt life cycle (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Attempt {
    /// Idle, or holding the port, until `until`; then dial.
    Waiting { until: Instant },
    /// A SYN sent (`target`), or received on the held port (`None`), at `since`.
    Opening {
        since: Instant,
        target: Option<SocketAddr>,
    },
    /// Established with `remote`; the handshake runs.
    Authenticating { remote: SocketAddr },
    /// Given up (the punch's `last_error` says why).
    Dead,
}

#[derive(Debug, Clone)]
struct Candidate {
    /// SYNs sent so far.
    attempts: u16,
    attempt: Attempt,
    /// What the shell last reported of its socket (or what our last action made of it).
    link: Link,
    handshake: Handshake,
}

/// The targets of a punch (§8.2): the peer's observed endpoint, after its LAN endpoint when both peers
/// share a public address; only those of the punch port's address family (when it is known).
pub fn targets(info: &PunchInfo, from: Option<SocketAddr>) -> heapless::Vec<SocketAddr, 2> {
    let lan = info.peer_local.filter(|_| info.same_public_address());
    let same_family = |t: &SocketAddr| from.is_none_or(|p| p.is_ipv4() == t.is_ipv4());
    lan.into_iter()
        .chain([info.peer_observed])
        .filter(same_family)
        .collect()
}

/// Which target candidate `k` dials in its attempt `attempt` (from 0), of `candidates` for `targets`:
/// its own when there is a candidate per target, else (one candidate) each in turn.
fn target_index(k: usize, attempt: u16, candidates: usize, targets: usize) -> usize {
    (k + usize::from(attempt) * candidates) % targets
}

/// One punch, from the Match to the winning connection (module docs).
pub struct Punch {
    config: PunchConfig,
    role: Role,
    /// What the candidates dial (§8.2).
    targets: heapless::Vec<SocketAddr, 2>,
    deadline: Instant,
    cursor: SlotCursor,
    candidates: heapless::Vec<Candidate, MAX_CANDIDATES>,
    /// Draws the retry jitter.
    rng: Drbg,
    winner: Option<usize>,
    outcome: Option<Result<Winner, PunchError>>,
    last_error: Option<PunchError>,
    events: heapless::Deque<PunchEvent, 4>,
}

impl fmt::Debug for Punch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Punch")
            .field("role", &self.role)
            .field("candidates", &self.candidates)
            .field("outcome", &self.outcome)
            .finish()
    }
}

impl Punch {
    /// Start the punch the Match in `info` describes, towards `peer` (the configured key), from the
    /// punch port `from` (when known), on `sockets` candidate sockets (1 or 2: with one, the targets are
    /// tried in turn). Signs our PeerAuth now. `seed`: 32 fresh random bytes (ephemeral key, jitter).
    // Out of line: inlined, it was copied into several callers (firmware size, size-report.sh).
    #[inline(never)]
    pub fn new<S: Signer>(
        signer: &S,
        peer: PublicKey,
        info: &PunchInfo,
        from: Option<SocketAddr>,
        sockets: usize,
        config: PunchConfig,
        seed: [u8; 32],
    ) -> Result<Punch, PunchError> {
        let targets = targets(info, from);
        if targets.is_empty() {
            return Err(PunchError::NoTarget);
        }
        let mut rng = Drbg::new(seed);
        let params = HandshakeParams {
            role: info.role,
            peer,
            own_nonce: info.own_nonce,
            peer_nonce: info.peer_nonce,
            racing: info.same_public_address(),
        };
        // Sign once; every candidate sends the same PeerAuth (same punch, same ephemeral key).
        let handshake = Handshake::new(signer, params, rng.bytes32());
        // A socket per target when there are enough of them; otherwise one takes turns.
        let mut candidates = heapless::Vec::new();
        for _ in 0..sockets.min(targets.len()).min(MAX_CANDIDATES) {
            let _ = candidates.push(Candidate {
                attempts: 0,
                attempt: Attempt::Waiting {
                    until: info.start_at,
                },
                link: Link::Closed,
                handshake: handshake.clone(),
            });
        }
        Ok(Punch {
            config,
            role: info.role,
            targets,
            deadline: info.start_at + config.punch_timeout,
            cursor: SlotCursor::new(info, config.slots),
            candidates,
            rng,
            winner: None,
            outcome: None,
            last_error: None,
            events: heapless::Deque::new(),
        })
    }

    /// How many candidate sockets this punch uses (those past it stay unused).
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// The outcome, once decided: the winner (whose handshake frames have all been handed out), or why
    /// the punch failed.
    pub fn result(&self) -> Option<Result<Winner, PunchError>> {
        self.outcome
    }

    /// The latest candidate failure, if any (to report when an outer deadline ends the punch).
    pub fn last_error(&self) -> Option<PunchError> {
        self.last_error
    }

    /// The next progress event, oldest first (the queue keeps the latest few).
    pub fn next_event(&mut self) -> Option<PunchEvent> {
        self.events.pop_front()
    }

    /// Report what candidate socket `k` is doing now.
    pub fn observe(&mut self, k: usize, link: Link) {
        if let Some(c) = self.candidates.get_mut(k) {
            c.link = link;
        }
    }

    /// Feed bytes received on candidate socket `k`. Returns how many were consumed (call again with the
    /// rest): only handshake frames are, so bytes after the handshake's last frame stay for the
    /// application. A bad frame fails that candidate at the next [`poll`](Self::poll).
    // Out of line: inlined, it was copied into several callers (firmware size, size-report.sh).
    #[inline(never)]
    pub fn receive<V: Verifier>(&mut self, k: usize, verifier: &V, data: &[u8]) -> usize {
        match self.candidates.get_mut(k) {
            Some(c) if matches!(c.attempt, Attempt::Authenticating { .. }) => c
                .handshake
                .receive(verifier, data)
                .map_or(0, |(used, _)| used),
            _ => 0,
        }
    }

    /// The next frame to send on candidate socket `k`, written into `buf` (at least
    /// [`wire::MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN) bytes); returns its length.
    pub fn transmit(&mut self, k: usize, buf: &mut [u8]) -> Option<usize> {
        let c = self.candidates.get_mut(k)?;
        if !matches!(c.attempt, Attempt::Authenticating { .. }) {
            return None;
        }
        let sent = c.handshake.transmit(buf);
        if self.winner == Some(k) && self.outcome.is_none() {
            self.outcome = self.won(k).map(Ok);
        }
        sent
    }

    /// When [`poll`](Self::poll) must run next at the latest (besides whenever a socket changes).
    pub fn poll_at(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let authenticating = self
            .candidates
            .iter()
            .any(|c| matches!(c.attempt, Attempt::Authenticating { .. }));
        // The punch deadline ends the punch unless a handshake is under way: that one runs to its own.
        let end = (!authenticating).then_some(self.deadline);
        self.candidates
            .iter()
            .filter_map(|c| match c.attempt {
                Attempt::Waiting { until } => Some(until),
                // Also at the next slot: it may be one to listen in.
                Attempt::Opening { since, .. } => {
                    Some((since + self.config.attempt_timeout).min(self.cursor.next_at()))
                }
                Attempt::Authenticating { .. } => c.handshake.poll_at(),
                Attempt::Dead => None,
            })
            .chain(end)
            .min()
    }

    /// Advance to `now`: returns the next action for the shell to carry out, or `None` when there is
    /// nothing to do until a socket changes or [`poll_at`](Self::poll_at). Call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<Action> {
        if self.outcome.is_some() || self.winner.is_some() {
            return None;
        }
        self.cursor.advance(now);
        for k in 0..self.candidates.len() {
            if let Some(action) = self.step(k, now) {
                return Some(action);
            }
            if self.winner.is_some() {
                return None;
            }
        }
        if self
            .candidates
            .iter()
            .all(|c| matches!(c.attempt, Attempt::Dead))
        {
            return self.fail();
        }
        if now >= self.deadline {
            return self.end_attempts();
        }
        self.hold()
    }

    /// Move candidate `k` as far as its socket and the time allow; stop at the first action. Within one
    /// step a candidate only moves forward (Waiting → Opening → Authenticating), so each stage is
    /// looked at once, in that order.
    fn step(&mut self, k: usize, now: Instant) -> Option<Action> {
        if let Attempt::Waiting { until } = self.candidates[k].attempt {
            if let Some(action) = self.wait(k, now, until) {
                return Some(action);
            }
        }
        if let Attempt::Opening { since, target } = self.candidates[k].attempt {
            if let Some(action) = self.open(k, now, since, target) {
                return Some(action);
            }
        }
        match self.candidates[k].attempt {
            Attempt::Authenticating { remote } => self.authenticate(k, now, remote),
            _ => None,
        }
    }

    /// Waiting: the held port took the peer's SYN, or our next dial time has come.
    fn wait(&mut self, k: usize, now: Instant, until: Instant) -> Option<Action> {
        if matches!(
            self.candidates[k].link,
            Link::SynReceived | Link::Established { .. }
        ) {
            let accepted = Attempt::Opening {
                since: now,
                target: None,
            };
            self.set(k, accepted);
            return None;
        }
        if now < until {
            return None;
        }
        let (candidates, targets) = (self.candidates.len(), self.targets.len());
        let c = &mut self.candidates[k];
        let target = self.targets[target_index(k, c.attempts, candidates, targets)];
        c.attempts = c.attempts.saturating_add(1);
        c.link = Link::SynSent;
        let attempt = c.attempts;
        let opening = Attempt::Opening {
            since: now,
            target: Some(target),
        };
        self.set(k, opening);
        self.event(PunchEvent::Dialing(target, attempt));
        Some(Action::Dial {
            candidate: k,
            target,
        })
    }

    /// Opening: established, or the attempt ends (reset, refused, timed out, or a slot to listen in).
    fn open(
        &mut self,
        k: usize,
        now: Instant,
        since: Instant,
        target: Option<SocketAddr>,
    ) -> Option<Action> {
        let config = self.config;
        let running = now < since + config.attempt_timeout;
        let still = match self.candidates[k].link {
            Link::Established { remote, .. } => {
                let deadline = now + config.auth_timeout;
                self.candidates[k].handshake.start(deadline);
                self.set(k, Attempt::Authenticating { remote });
                self.event(PunchEvent::Established(remote));
                return None;
            }
            // A slot where only the peer dials, and nobody answered our SYN: stop it and listen, so that
            // the peer's SYN finds the port held even if it comes from a port we did not dial (a NAT with
            // unpredictable ports). Not before `attempt_min`: a SYN that crossed ours may still be on its
            // way to this socket.
            Link::SynSent => {
                running
                    && !(now >= since + config.attempt_min && self.cursor.listen_slot_since(since))
            }
            Link::SynReceived => running,
            _ => false,
        };
        if still {
            return None;
        }
        // Reset, refused, timed out or stopped: hold the port and wait for our next slot.
        let ended = target.or_else(|| self.last_dialled(k));
        let until = self.cursor.next_dial(now) + self.jitter();
        self.candidates[k].link = Link::Closed;
        self.set(k, Attempt::Waiting { until });
        if let Some(t) = ended {
            self.event(PunchEvent::Retrying(t));
        }
        Some(Action::Close { candidate: k })
    }

    /// Authenticating: the handshake decides, or the peer closes, or its deadline passes.
    fn authenticate(&mut self, k: usize, now: Instant, remote: SocketAddr) -> Option<Action> {
        let c = &mut self.candidates[k];
        if c.handshake.select() || c.handshake.session_key().is_some() {
            // Verified as the racing leader (the first such candidate: we confirm it), or done.
            self.winner = Some(k);
            self.event(PunchEvent::Authenticated(remote));
            self.outcome = self.won(k).map(Ok);
            return None;
        }
        let error = match c.handshake.poll(now) {
            Err(e) => PunchError::AuthFailed(e),
            Ok(()) if !matches!(c.link, Link::Established { .. }) => PunchError::PeerClosed,
            Ok(()) => return None,
        };
        self.last_error = Some(error);
        self.set(k, Attempt::Dead);
        Some(Action::Abort { candidate: k })
    }

    /// The winner, once its handshake has handed out every frame.
    fn won(&self, k: usize) -> Option<Winner> {
        let c = &self.candidates[k];
        let (Attempt::Authenticating { remote }, Some(session_key)) =
            (c.attempt, c.handshake.session_key())
        else {
            return None;
        };
        c.handshake.is_done().then_some(Winner {
            candidate: k,
            remote,
            role: self.role,
            session_key,
        })
    }

    /// Every candidate is dead: fail with the latest reason.
    fn fail(&mut self) -> Option<Action> {
        self.outcome = Some(Err(self.last_error.unwrap_or(PunchError::Unreachable)));
        None
    }

    /// The punch deadline: close every candidate not authenticating, then fail unless one is.
    fn end_attempts(&mut self) -> Option<Action> {
        let open = self
            .candidates
            .iter()
            .position(|c| matches!(c.attempt, Attempt::Waiting { .. } | Attempt::Opening { .. }));
        if let Some(k) = open {
            self.candidates[k].link = Link::Closed;
            self.set(k, Attempt::Dead);
            return Some(Action::Close { candidate: k });
        }
        let authenticating = self
            .candidates
            .iter()
            .any(|c| matches!(c.attempt, Attempt::Authenticating { .. }));
        if !authenticating {
            return self.fail();
        }
        None
    }

    /// Hold the punch port with the first waiting candidate whose socket is free, unless one holds it
    /// (part of every [`poll`](Self::poll); on its own, it holds the port without dialling).
    pub fn hold(&mut self) -> Option<Action> {
        let waiting = |c: &Candidate| matches!(c.attempt, Attempt::Waiting { .. });
        if self
            .candidates
            .iter()
            .any(|c| waiting(c) && matches!(c.link, Link::Listening))
        {
            return None;
        }
        let k = self
            .candidates
            .iter()
            .position(|c| waiting(c) && matches!(c.link, Link::Closed))?;
        self.candidates[k].link = Link::Listening;
        Some(Action::Listen { candidate: k })
    }

    /// Our own random delay on top of a slot time.
    fn jitter(&mut self) -> Duration {
        Duration::from_micros(self.rng.range(0, self.config.jitter.total_micros()))
    }

    /// The target of candidate `k`'s latest dial, if any.
    fn last_dialled(&self, k: usize) -> Option<SocketAddr> {
        let attempts = self.candidates[k].attempts.checked_sub(1)?;
        let n = target_index(k, attempts, self.candidates.len(), self.targets.len());
        self.targets.get(n).copied()
    }

    /// The one place where a candidate changes state.
    fn set(&mut self, k: usize, attempt: Attempt) {
        trace!("p2psc: candidate {}: {:?}", k, attempt);
        self.candidates[k].attempt = attempt;
    }

    fn event(&mut self, event: PunchEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests;
