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
//! # What each candidate does
//!
//! [`plan`] gives each candidate socket its *turns* — dial the peer's public endpoint, dial its LAN
//! endpoint, or listen — and explains the two real-world behaviours behind them: a router that tracks
//! TCP keeps the first SYN's sequence number for a 5-tuple, so an attempt through our NAT is kept, never
//! replaced by a new SYN, until it is reset; and on a LAN the peer's SYN can arrive before ours has
//! left, so only the leader dials the LAN endpoint.
//!
//! # Attempt life cycle of one candidate
//!
//! ```text
//!            ┌── its next turn at the slot time: Dial, or Listen ──┐
//!  Waiting ──┤ (holding P: Listen, if no other socket listens)     ├──▶ Opening ──established──▶ Authenticating ──▶ won
//!     ▲      └── the held port takes the peer's SYN ───────────────┘      │                          │
//!     └──── reset / refused; a LAN attempt's timeout ─────────────────────┘      bad PeerAuth, peer closed,
//!           (Close: quietly, no RST; the next turn at our next slot)             handshake deadline ──▶ Dead (Abort)
//! ```
//!
//! A listening turn (`Listening`) takes the peer's SYN like the held port does. At the punch deadline
//! every candidate not yet authenticating is closed; a handshake under way runs to its own deadline,
//! so a connection that formed just before is not torn down on one side only.

mod plan;
mod schedule;
mod types;

pub use plan::{plan, Plan, Turn, Turns};
pub use schedule::{Dialers, Schedule, Slot, SlotConfig, SlotCursor};
pub use types::{Action, Link, PunchConfig, PunchError, PunchEvent, Winner};

use core::fmt;
use core::net::SocketAddr;

use super::auth::{Handshake, HandshakeParams};
use super::register::PunchInfo;
use crate::identity::{PublicKey, Signer, Verifier};
use crate::rng::Drbg;
use crate::time::{Duration, Instant};
use crate::wire::Role;

/// Most candidate sockets a punch uses: one per target (§8.2 has at most two).
pub const MAX_CANDIDATES: usize = 2;

/// Where one candidate is in its attempt life cycle (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Attempt {
    /// Idle, or holding the port, until `until`; then its next turn.
    Waiting { until: Instant },
    /// A listening turn, until `until` (`None`: the whole punch).
    Listening { until: Option<Instant> },
    /// A SYN sent (`target`), or received on a listening socket (`None`), at `since`. A `kept` attempt
    /// (through our NAT) ends only when reset.
    Opening {
        since: Instant,
        target: Option<SocketAddr>,
        kept: bool,
    },
    /// Established with `remote`; the handshake runs.
    Authenticating { remote: SocketAddr },
    /// Given up (the punch's `last_error` says why).
    Dead,
}

#[derive(Debug, Clone)]
struct Candidate {
    /// What it does, in turn ([`plan`]).
    turns: Turns,
    /// Turns taken so far.
    taken: u16,
    /// SYNs sent so far.
    attempts: u16,
    /// Where the latest SYN went.
    dialled: Option<SocketAddr>,
    attempt: Attempt,
    /// What the shell last reported of its socket (or what our last action made of it).
    link: Link,
    handshake: Handshake,
}

/// The deadline of the handshake on a connection established at `now`, after the Match at `matched_at`.
///
/// The peer sent its PeerAuth when its side was established, and TCP delivers it, but a lost segment
/// waits for the *sender's* retransmission timer. After the SYN exchange that timer is SRTT + 4·RTTVAR
/// of a single round-trip sample, that is 3 samples (RFC 6298 §2.2), at least 1 s, doubling on each
/// loss. Our own sample r (from the Match to now) bounds the peer's within 2r: its SYN may have left
/// before ours and its side been established up to a round trip after ours. The deadline lets the
/// peer's PeerAuth be lost twice (it arrives within 1 + 2 of its timers, plus slack): 4 × max(1 s, 6r).
/// Under loss a fixed 5 s failed one side while the other had authenticated. It is never shorter than
/// [`PunchConfig::auth_timeout`] nor longer than the punch plus that.
pub fn handshake_deadline(now: Instant, matched_at: Instant, config: &PunchConfig) -> Instant {
    let r = crate::time::elapsed(now, matched_at).total_micros();
    let peer_rto = (6 * r).max(1_000_000);
    let budget = Duration::from_micros(4 * peer_rto)
        .max(config.auth_timeout)
        .min(config.punch_timeout + config.auth_timeout);
    now + budget
}

/// One punch, from the Match to the winning connection (module docs).
pub struct Punch {
    config: PunchConfig,
    role: Role,
    matched_at: Instant,
    /// Where the public and the LAN turns dial.
    public: Option<SocketAddr>,
    lan: Option<SocketAddr>,
    deadline: Instant,
    cursor: SlotCursor,
    candidates: heapless::Vec<Candidate, MAX_CANDIDATES>,
    /// Draws the retry jitter.
    rng: Drbg,
    winner: Option<usize>,
    outcome: Option<Result<Winner, PunchError>>,
    last_error: Option<PunchError>,
    events: heapless::Deque<PunchEvent, 4>,
    /// The handshake as prepared (signed, not started), for another candidate of this punch outside
    /// it: the relay (protocol §6.2 allows one PeerAuth for every candidate of a punch).
    #[cfg(feature = "relay")]
    prepared: Handshake,
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
    /// punch port `from` (when known), on `sockets` candidate sockets, in the shell's socket order (1 or
    /// 2; [`plan`] says what each does). Signs our PeerAuth now. `seed`: 32 fresh random bytes
    /// (ephemeral key, jitter).
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
        let plan = plan(info, from, sockets);
        if plan.turns.is_empty() {
            return Err(PunchError::NoTarget);
        }
        let mut rng = Drbg::new(seed);
        let params = HandshakeParams {
            role: info.role,
            peer,
            own_nonce: info.own_nonce,
            peer_nonce: info.peer_nonce,
        };
        // Sign once; every candidate sends the same PeerAuth (same punch, same ephemeral key).
        let handshake = Handshake::new(signer, params, rng.bytes32());
        let mut candidates = heapless::Vec::new();
        for turns in plan.turns {
            let _ = candidates.push(Candidate {
                turns,
                taken: 0,
                attempts: 0,
                dialled: None,
                attempt: Attempt::Waiting {
                    until: info.start_at,
                },
                link: Link::Closed,
                handshake: handshake.clone(),
            });
        }
        #[cfg(feature = "relay")]
        let prepared = handshake;
        Ok(Punch {
            config,
            role: info.role,
            matched_at: info.matched_at,
            public: plan.public,
            lan: plan.lan,
            deadline: info.start_at + config.punch_timeout,
            cursor: SlotCursor::new(info, config.slots),
            candidates,
            rng,
            winner: None,
            outcome: None,
            last_error: None,
            events: heapless::Deque::new(),
            #[cfg(feature = "relay")]
            prepared,
        })
    }

    /// Our handshake as prepared for this punch (PeerAuth signed, nothing received), for a candidate
    /// outside it: the relay.
    #[cfg(feature = "relay")]
    pub fn prepared_handshake(&self) -> Handshake {
        self.prepared.clone()
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
        // Decided, or the winner waits only for `transmit` to hand out its last frame.
        if self.outcome.is_some() || self.winner.is_some() {
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
                Attempt::Listening { until } => until,
                Attempt::Opening { kept: true, .. } => None,
                Attempt::Opening { since, .. } => Some(since + self.config.attempt_timeout),
                Attempt::Authenticating { .. } => c.handshake.poll_at(),
                Attempt::Dead => None,
            })
            .chain(end)
            .min()
    }

    /// Advance to `now`: returns the next action for the shell to carry out, or `None` when there is
    /// nothing to do until a socket changes or [`poll_at`](Self::poll_at). Call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<Action> {
        if self.outcome.is_some() {
            return None;
        }
        if let Some(k) = self.winner {
            return self.winner_lost(k);
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
        if self.role == Role::Leader {
            self.choose();
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
        if let Attempt::Listening { until } = self.candidates[k].attempt {
            if let Some(action) = self.listen(k, now, until) {
                return Some(action);
            }
        }
        if let Attempt::Opening {
            since,
            target,
            kept,
        } = self.candidates[k].attempt
        {
            if let Some(action) = self.open(k, now, since, target, kept) {
                return Some(action);
            }
        }
        match self.candidates[k].attempt {
            Attempt::Authenticating { remote } => self.authenticate(k, now, remote),
            _ => None,
        }
    }

    /// Waiting: the held port took the peer's SYN, or the time for the next turn has come.
    fn wait(&mut self, k: usize, now: Instant, until: Instant) -> Option<Action> {
        if self.accepted(k, now) || now < until {
            return None;
        }
        let c = &self.candidates[k];
        let turn = c.turns[usize::from(c.taken) % c.turns.len()];
        let (target, kept) = match turn {
            Turn::Public => (self.public, true),
            Turn::Lan => (self.lan, false),
            Turn::Listen { all_along } => {
                self.candidates[k].taken = c.taken.wrapping_add(1);
                let until = (!all_along).then(|| now + self.config.attempt_timeout);
                self.set(k, Attempt::Listening { until });
                return self.listen(k, now, until);
            }
        };
        // The plan gives a dialling turn only with its target; without one the candidate has no use.
        let Some(target) = target else {
            self.set(k, Attempt::Dead);
            return None;
        };
        if self.connecting_with(k, target) {
            let until = self.cursor.next_dial(now) + self.jitter();
            self.set(k, Attempt::Waiting { until });
            return None;
        }
        let c = &mut self.candidates[k];
        c.taken = c.taken.wrapping_add(1);
        c.attempts = c.attempts.saturating_add(1);
        c.dialled = Some(target);
        c.link = Link::SynSent;
        let attempt = c.attempts;
        let opening = Attempt::Opening {
            since: now,
            target: Some(target),
            kept,
        };
        self.set(k, opening);
        self.event(PunchEvent::Dialing(target, attempt));
        Some(Action::Dial {
            candidate: k,
            target,
        })
    }

    /// Whether a candidate other than `k` has a connection that may be with `target`: one being
    /// authenticated with it, or one a listening socket took (its far end is not known before it is
    /// established). A dial to the same 4-tuple would take that connection's segments (smoltcp gives
    /// a segment to the first socket in order that accepts it, and a SYN-SENT socket answers the
    /// peer's ACK with a RST) and our router tracks the second SYN as invalid: one 4-tuple carries one
    /// connection. The turn waits for the next slot instead (the simulator's after-rst class).
    fn connecting_with(&self, k: usize, target: SocketAddr) -> bool {
        self.candidates.iter().enumerate().any(|(j, c)| {
            j != k
                && match c.attempt {
                    Attempt::Opening { target: None, .. } => true,
                    Attempt::Authenticating { remote } => remote == target,
                    _ => false,
                }
        })
    }

    /// Listening: keep the socket listening until the turn ends or it takes the peer's SYN.
    fn listen(&mut self, k: usize, now: Instant, until: Option<Instant>) -> Option<Action> {
        if self.accepted(k, now) {
            return None;
        }
        if until.is_some_and(|at| now >= at) {
            // The turn is over; the socket keeps listening (holding the port) until our next slot.
            let until = self.cursor.next_dial(now) + self.jitter();
            self.set(k, Attempt::Waiting { until });
            return None;
        }
        let c = &mut self.candidates[k];
        if matches!(c.link, Link::Listening) {
            return None;
        }
        c.link = Link::Listening;
        Some(Action::Listen { candidate: k })
    }

    /// Whether the listening socket of candidate `k` took the peer's SYN (it is then an attempt).
    fn accepted(&mut self, k: usize, now: Instant) -> bool {
        let taken = matches!(
            self.candidates[k].link,
            Link::SynReceived | Link::Established { .. }
        );
        if taken {
            let opening = Attempt::Opening {
                since: now,
                target: None,
                kept: false,
            };
            self.set(k, opening);
        }
        taken
    }

    /// Opening: established, or the attempt ends (reset or refused; a LAN attempt's timeout).
    fn open(
        &mut self,
        k: usize,
        now: Instant,
        since: Instant,
        target: Option<SocketAddr>,
        kept: bool,
    ) -> Option<Action> {
        let config = self.config;
        let still = match self.candidates[k].link {
            Link::Established { remote, .. } => {
                let deadline = handshake_deadline(now, self.matched_at, &config);
                self.candidates[k].handshake.start(deadline);
                self.set(k, Attempt::Authenticating { remote });
                self.event(PunchEvent::Established(remote));
                return None;
            }
            // Unanswered, or half open: an attempt through our NAT is kept (its retransmissions carry
            // the ISN our router tracks for this 5-tuple); others end at the attempt timeout.
            Link::SynSent | Link::SynReceived => kept || now < since + config.attempt_timeout,
            _ => false,
        };
        if still {
            return None;
        }
        // Reset, refused or timed out: the next turn at our next slot; the port is held meanwhile.
        let until = self.cursor.next_dial(now) + self.jitter();
        self.candidates[k].link = Link::Closed;
        self.set(k, Attempt::Waiting { until });
        if let Some(t) = target.or(self.candidates[k].dialled) {
            self.event(PunchEvent::Retrying(t));
        }
        Some(Action::Close { candidate: k })
    }

    /// Authenticating: the handshake decides, or the peer closes, or its deadline passes.
    fn authenticate(&mut self, k: usize, now: Instant, remote: SocketAddr) -> Option<Action> {
        let c = &mut self.candidates[k];
        // A reset connection never wins, however far its handshake got (one the peer closed after
        // its last frame still can: what it sent before its FIN is there to read).
        if c.handshake.session_key().is_some() && c.link != Link::Closed {
            // Done: the leader's confirmed connection, verified; or the follower's, confirmed.
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

    /// The winner still waiting for its last frame to go out: its connection was reset meanwhile, so
    /// it is given up and the other candidates go on.
    fn winner_lost(&mut self, k: usize) -> Option<Action> {
        if self.candidates[k].link != Link::Closed {
            return None;
        }
        self.winner = None;
        self.last_error = Some(PunchError::PeerClosed);
        self.set(k, Attempt::Dead);
        Some(Action::Abort { candidate: k })
    }

    /// Leader: unless a live connection is confirmed, confirm the first established one — eagerly, so
    /// that Confirm follows our PeerAuth and the choice costs no round trip (auth module docs).
    fn choose(&mut self) {
        let authenticating = |c: &Candidate| matches!(c.attempt, Attempt::Authenticating { .. });
        if self
            .candidates
            .iter()
            .any(|c| authenticating(c) && c.handshake.is_confirmed())
        {
            return;
        }
        if let Some(c) = self.candidates.iter_mut().find(|c| authenticating(c)) {
            c.handshake.confirm();
        }
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
        let open = self.candidates.iter().position(|c| {
            matches!(
                c.attempt,
                Attempt::Waiting { .. } | Attempt::Listening { .. } | Attempt::Opening { .. }
            )
        });
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
    ///
    /// Never ahead of a connection in progress: a listener takes any bare SYN to the port, and smoltcp
    /// hands a segment to the first socket in order that accepts it, so a listener earlier than a
    /// socket in SYN-SENT or SYN-RECEIVED steals the peer's retransmitted SYN and answers it with a
    /// second SYN|ACK of another ISN, which the peer and its router refuse (found in the TAP lab's
    /// same-LAN race). A holder that finds itself there is closed.
    pub fn hold(&mut self) -> Option<Action> {
        let opening_after = |candidates: &[Candidate], k: usize| {
            candidates[k + 1..]
                .iter()
                .any(|c| matches!(c.attempt, Attempt::Opening { .. }))
        };
        let listening = |c: &Candidate| matches!(c.link, Link::Listening);
        let holder = self
            .candidates
            .iter()
            .position(|c| matches!(c.attempt, Attempt::Waiting { .. }) && listening(c));
        if let Some(j) = holder {
            if !opening_after(&self.candidates, j) {
                return None;
            }
            self.candidates[j].link = Link::Closed;
            return Some(Action::Close { candidate: j });
        }
        if self.candidates.iter().any(listening) {
            return None;
        }
        let k = (0..self.candidates.len()).find(|&k| {
            let c = &self.candidates[k];
            matches!(c.attempt, Attempt::Waiting { .. })
                && c.link == Link::Closed
                && !opening_after(&self.candidates, k)
        })?;
        self.candidates[k].link = Link::Listening;
        Some(Action::Listen { candidate: k })
    }

    /// Our own random delay on top of a slot time.
    fn jitter(&mut self) -> Duration {
        Duration::from_micros(self.rng.range(0, self.config.jitter.total_micros()))
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
