//! The mediator's logic: one [`Session`] per peer connection, and one [`Table`] of waiting peers shared by
//! all sessions.
//!
//! A session runs the registration handshake of one connection (Hello → Challenge → Proof), measures the
//! peer's round-trip time, and keeps a waiting peer alive with Pings. When a proof verifies it reports
//! [`SessionEvent::Verified`]; the caller registers that in the table, which matches the two halves of a
//! pair, replaces older registrations of the same key, bounds its size and expires waits. The table answers
//! with [`Notice`]s addressed to sessions by [`ConnId`]; the caller hands each to its session with
//! [`Session::notify`]. That split lets a server keep the table behind one lock while sessions live in
//! their own tasks, and lets the simulator run everything on one thread.
//!
//! ```text
//!  AwaitHello ──Hello──▶ AwaitProof ──Proof ok──▶ Verified ──Notice::Wait──▶ Waiting ──Notice::Match──▶ Matched
//!                                                          └─Notice::Match───────────────────────────────┘
//!  any state ──bad frame / bad proof / deadline / Notice::Abort──▶ Closing (Abort queued) ──▶ Closed
//! ```
//!
//! Policy (normative text in `doc/mediator.md`): the newest registration of a key wins, and the older one
//! is aborted with [`AbortReason::Replaced`] — a device that rebooted must not be locked out by its own
//! stale registration, and only the key's owner can produce the proof. The peer that registered first is
//! the [`Role::Leader`]. Start delays equalise the one-way delays estimated from the measured round trips.

use core::net::SocketAddr;

use super::transcript;
use crate::identity::{PublicKey, Verifier};
use crate::time::{elapsed, saturating_sub, Duration, Instant};
use crate::wire::{self, AbortReason, Challenge, FrameReader, Hello, Match, Message, Nonce, Role};

/// How the caller names a connection.
pub type ConnId = u64;

/// Mediator policy and deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MediatorConfig {
    /// Longest wait for each registration message (Hello after connect, Proof after Challenge). A client
    /// that dribbles bytes cannot stretch it.
    pub step_timeout: Duration,
    /// Longest time a registered peer waits in the table for its counterpart.
    pub wait_timeout: Duration,
    /// Time between Pings to a waiting peer (keeps NAT mappings warm and the round trip fresh).
    pub ping_interval: Duration,
    /// Longest wait for a Pong.
    pub ping_timeout: Duration,
    /// How long a matched connection is kept open for the peer's punch (the NAT mapping the other peer
    /// aims at belongs to it) before the mediator closes it.
    pub linger: Duration,
    /// Delay announced in RetryAfter when the table is full.
    pub retry_after: Duration,
    /// Maximum number of waiting peers.
    pub capacity: usize,
}

impl Default for MediatorConfig {
    fn default() -> Self {
        MediatorConfig {
            step_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(120),
            ping_interval: Duration::from_secs(15),
            ping_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(30),
            retry_after: Duration::from_secs(5),
            capacity: 1024,
        }
    }
}

/// A verified registration, ready for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Registration {
    /// The peer's key (proven).
    pub key: PublicKey,
    /// The key it wants.
    pub want: PublicKey,
    /// Its nonce, relayed to the other peer.
    pub nonce: Nonce,
    /// Its public endpoint as observed.
    pub observed: SocketAddr,
    /// Its reported LAN endpoint.
    pub local: Option<SocketAddr>,
    /// Measured round-trip time (Challenge → Proof, less the peer's hold time).
    pub rtt: Duration,
}

/// A waiting peer in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Entry {
    /// The connection that registered it.
    pub conn: ConnId,
    /// What it registered.
    pub registration: Registration,
    /// When its wait ends.
    pub expires: Instant,
}

/// What the table tells a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Notice {
    /// Registered; wait at most this long.
    Wait(Duration),
    /// Matched: send this Match.
    Match(Match),
    /// The table is full: tell the peer to come back after this long.
    RetryAfter(Duration),
    /// End the registration with this reason.
    Abort(AbortReason),
}

/// The notices one registration produces: one for the registering session, and up to two for others
/// (the matched waiting peer; an older registration of the same key that this one replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// For the session that registered.
    pub own: Notice,
    /// For other sessions.
    pub others: heapless::Vec<(ConnId, Notice), 2>,
}

/// Counters, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Verified registrations offered to the table.
    pub registrations: u64,
    /// Pairs matched.
    pub matches: u64,
    /// Registrations replaced by a newer one of the same key.
    pub replaced: u64,
    /// Waits that ran out.
    pub expired: u64,
    /// Registrations refused because the table was full.
    pub full: u64,
    /// Aborts by reason code (index = wire code; index 0 counts unknown codes). Counted by the caller with
    /// [`Stats::record_abort`], since aborts happen in sessions.
    pub aborts: [u64; 16],
}

impl Stats {
    /// Count one abort.
    pub fn record_abort(&mut self, reason: AbortReason) {
        let code = reason.to_u8() as usize;
        let index = if code < self.aborts.len() { code } else { 0 };
        self.aborts[index] += 1;
    }
}

/// Where the table keeps waiting peers: a fixed array on a device, a hash map on a server.
pub trait Storage {
    /// The entry of `key`.
    fn get(&self, key: &PublicKey) -> Option<&Entry>;
    /// The entry of `key`, mutably.
    fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Entry>;
    /// Insert an entry whose key is not present; false if there is no room.
    fn insert(&mut self, entry: Entry) -> bool;
    /// Remove and return the entry of `key`.
    fn remove(&mut self, key: &PublicKey) -> Option<Entry>;
    /// Number of entries.
    fn len(&self) -> usize;
    /// Whether there are no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Keep only the entries for which `keep` returns true.
    fn retain<F: FnMut(&Entry) -> bool>(&mut self, keep: F);
    /// The earliest expiry of any entry.
    fn earliest_expiry(&self) -> Option<Instant>;
}

impl<const N: usize> Storage for heapless::Vec<Entry, N> {
    fn get(&self, key: &PublicKey) -> Option<&Entry> {
        self.iter().find(|e| e.registration.key == *key)
    }
    fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Entry> {
        self.iter_mut().find(|e| e.registration.key == *key)
    }
    fn insert(&mut self, entry: Entry) -> bool {
        self.push(entry).is_ok()
    }
    fn remove(&mut self, key: &PublicKey) -> Option<Entry> {
        let index = self.iter().position(|e| e.registration.key == *key)?;
        Some(self.swap_remove(index))
    }
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn retain<F: FnMut(&Entry) -> bool>(&mut self, mut keep: F) {
        heapless::Vec::retain(self, |e| keep(e))
    }
    fn earliest_expiry(&self) -> Option<Instant> {
        self.iter().map(|e| e.expires).min()
    }
}

#[cfg(feature = "std")]
impl Storage for std::collections::HashMap<PublicKey, Entry> {
    fn get(&self, key: &PublicKey) -> Option<&Entry> {
        std::collections::HashMap::get(self, key)
    }
    fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Entry> {
        std::collections::HashMap::get_mut(self, key)
    }
    fn insert(&mut self, entry: Entry) -> bool {
        std::collections::HashMap::insert(self, entry.registration.key, entry);
        true
    }
    fn remove(&mut self, key: &PublicKey) -> Option<Entry> {
        std::collections::HashMap::remove(self, key)
    }
    fn len(&self) -> usize {
        std::collections::HashMap::len(self)
    }
    fn retain<F: FnMut(&Entry) -> bool>(&mut self, mut keep: F) {
        std::collections::HashMap::retain(self, |_, e| keep(e))
    }
    fn earliest_expiry(&self) -> Option<Instant> {
        self.values().map(|e| e.expires).min()
    }
}

/// The table of waiting peers.
#[derive(Debug, Clone)]
pub struct Table<S: Storage> {
    storage: S,
    config: MediatorConfig,
    stats: Stats,
}

impl<S: Storage> Table<S> {
    /// A table over `storage` (empty), with `config`'s capacity, wait timeout and retry delay.
    pub fn new(storage: S, config: MediatorConfig) -> Self {
        Table {
            storage,
            config,
            stats: Stats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counters, mutably (to record session aborts).
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Number of waiting peers.
    pub fn len(&self) -> usize {
        self.storage.len()
    }

    /// Whether no peer is waiting.
    pub fn is_empty(&self) -> bool {
        self.storage.is_empty()
    }

    /// The waiting entry of `key`.
    pub fn get(&self, key: &PublicKey) -> Option<&Entry> {
        self.storage.get(key)
    }

    /// Register a verified peer from connection `conn`: match it with a waiting counterpart, or make it wait.
    pub fn register(&mut self, now: Instant, conn: ConnId, reg: Registration) -> Outcome {
        self.stats.registrations += 1;
        let mut others = heapless::Vec::new();
        // Newest wins: an older registration of the same key is aborted.
        if let Some(old) = self.storage.remove(&reg.key) {
            self.stats.replaced += 1;
            let _ = others.push((old.conn, Notice::Abort(AbortReason::Replaced)));
        }
        let counterpart = self
            .storage
            .get(&reg.want)
            .map(|e| e.registration.want == reg.key);
        if counterpart == Some(true) {
            if let Some(waiting) = self.storage.remove(&reg.want) {
                self.stats.matches += 1;
                let (for_waiting, for_new) = matches(&waiting.registration, &reg);
                let _ = others.push((waiting.conn, Notice::Match(for_waiting)));
                return Outcome {
                    own: Notice::Match(for_new),
                    others,
                };
            }
        }
        let entry = Entry {
            conn,
            registration: reg,
            expires: now + self.config.wait_timeout,
        };
        let own = if self.storage.len() >= self.config.capacity || !self.storage.insert(entry) {
            self.stats.full += 1;
            Notice::RetryAfter(self.config.retry_after)
        } else {
            Notice::Wait(self.config.wait_timeout)
        };
        Outcome { own, others }
    }

    /// Act on an event of `session` (connection `conn`): register a verified peer and apply its own
    /// notice, record a round trip, or count an abort and drop the peer's waiting entry. Returns the
    /// notices for *other* sessions, which the caller delivers with [`Session::notify`].
    pub fn settle(
        &mut self,
        now: Instant,
        conn: ConnId,
        session: &mut Session,
        event: SessionEvent,
    ) -> heapless::Vec<(ConnId, Notice), 2> {
        match event {
            SessionEvent::Verified(registration) => {
                let outcome = self.register(now, conn, registration);
                // A session's own notice is Wait, Match or RetryAfter: none of them yields an event.
                let _ = session.notify(now, outcome.own);
                outcome.others
            }
            SessionEvent::Rtt(key, rtt) => {
                self.update_rtt(&key, conn, rtt);
                heapless::Vec::new()
            }
            SessionEvent::Aborted { reason, waiting } => {
                self.stats.record_abort(reason);
                if let Some(key) = waiting {
                    self.remove(&key, conn);
                }
                heapless::Vec::new()
            }
        }
    }

    /// Remove `key`'s entry if it still belongs to `conn` (a connection that closed or was aborted).
    /// Returns whether an entry was removed.
    pub fn remove(&mut self, key: &PublicKey, conn: ConnId) -> bool {
        match self.storage.get(key) {
            Some(e) if e.conn == conn => self.storage.remove(key).is_some(),
            _ => false,
        }
    }

    /// The connection `conn` of `session` ended without the session ending (the peer closed it, or reading
    /// or writing failed): remove the entry it holds in the table, if it still holds one. Returns whether
    /// an entry was removed, that is whether the peer was waiting.
    pub fn connection_ended(&mut self, conn: ConnId, session: &Session) -> bool {
        session
            .waiting_key()
            .is_some_and(|key| self.remove(&key, conn))
    }

    /// Record a fresh round-trip measurement of a waiting peer. The table keeps the smallest sample: a
    /// lost and retransmitted segment only ever inflates a sample, and the start delays want the
    /// path's propagation delay.
    pub fn update_rtt(&mut self, key: &PublicKey, conn: ConnId, rtt: Duration) {
        if let Some(e) = self.storage.get_mut(key) {
            if e.conn == conn {
                e.registration.rtt = e.registration.rtt.min(rtt);
            }
        }
    }

    /// Expire waits that ran out; `notify` receives [`Notice::Abort`]`(`[`AbortReason::PeerTimeout`]`)` for
    /// each expired connection.
    pub fn poll(&mut self, now: Instant, mut notify: impl FnMut(ConnId, Notice)) {
        let stats = &mut self.stats;
        self.storage.retain(|e| {
            let keep = e.expires > now;
            if !keep {
                stats.expired += 1;
                notify(e.conn, Notice::Abort(AbortReason::PeerTimeout));
            }
            keep
        });
    }

    /// When [`poll`](Self::poll) must next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        self.storage.earliest_expiry()
    }
}

/// The two Match messages of a pair: the waiting peer leads. Each start delay makes up the difference
/// between its one-way delay (half its round trip) and the longer one, so both SYNs leave together.
fn matches(waiting: &Registration, new: &Registration) -> (Match, Match) {
    let owd_waiting = waiting.rtt.total_millis() / 2;
    let owd_new = new.rtt.total_millis() / 2;
    let latest = owd_waiting.max(owd_new);
    let delay = |owd: u64| (latest - owd).min(u16::MAX as u64) as u16;
    let for_waiting = Match {
        role: Role::Leader,
        start_delay_ms: delay(owd_waiting),
        peer_nonce: new.nonce,
        peer_observed: new.observed,
        peer_local: new.local,
    };
    let for_new = Match {
        role: Role::Follower,
        start_delay_ms: delay(owd_new),
        peer_nonce: waiting.nonce,
        peer_observed: waiting.observed,
        peer_local: waiting.local,
    };
    (for_waiting, for_new)
}

/// What a session asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SessionEvent {
    /// The proof verified: call [`Table::register`] and hand the outcome's notices out.
    Verified(Registration),
    /// A waiting peer's round trip was measured again: call [`Table::update_rtt`].
    Rtt(PublicKey, Duration),
    /// The session aborted (an Abort is queued; transmit it, then close). If `waiting` holds a key, the peer
    /// was in the table: call [`Table::remove`].
    Aborted {
        /// Why.
        reason: AbortReason,
        /// The key to remove from the table, if the peer was waiting.
        waiting: Option<PublicKey>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    AwaitProof {
        hello: Hello,
        sent_at: Option<Instant>,
    },
    Verified(PublicKey),
    Waiting {
        key: PublicKey,
        ping: Option<Ping>,
        next_ping: Instant,
    },
    Matched,
    /// Waiting to flush the queue, then closed.
    Closing,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ping {
    token: u32,
    sent_at: Option<Instant>,
}

/// The mediator's side of one peer connection, as a sans-IO state machine.
#[derive(Debug, Clone)]
pub struct Session {
    config: MediatorConfig,
    observed: SocketAddr,
    nonce: Nonce,
    state: State,
    deadline: Instant,
    queue: heapless::Deque<Message, 4>,
    reader: FrameReader,
    next_token: u32,
}

impl Session {
    /// A new connection from `observed` (the peer's address as this mediator sees it), with a fresh random
    /// `nonce` for its challenge.
    pub fn new(
        config: MediatorConfig,
        observed: SocketAddr,
        nonce: Nonce,
        now: Instant,
    ) -> Session {
        Session {
            config,
            observed,
            nonce,
            state: State::AwaitHello,
            deadline: now + config.step_timeout,
            queue: heapless::Deque::new(),
            reader: FrameReader::new(),
            next_token: 1,
        }
    }

    /// The key of the peer, once its proof verified.
    pub fn key(&self) -> Option<PublicKey> {
        match self.state {
            State::Verified(key) | State::Waiting { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The key this session holds in the table, if any: [`Table::connection_ended`] removes it when the
    /// connection closes.
    pub fn waiting_key(&self) -> Option<PublicKey> {
        match self.state {
            State::Waiting { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Whether the connection should now be closed (everything queued has been transmitted).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the peer was matched (the connection lingers for the punch).
    pub fn is_matched(&self) -> bool {
        self.state == State::Matched
    }

    /// Abort the session (e.g. on shutdown). Returns the event to act on, unless already ending.
    pub fn abort(&mut self, reason: AbortReason) -> Option<SessionEvent> {
        if matches!(self.state, State::Closing | State::Closed) {
            return None;
        }
        let waiting = self.waiting_key();
        self.queue.clear();
        let _ = self.queue.push_back(Message::Abort(reason));
        self.state = State::Closing;
        Some(SessionEvent::Aborted { reason, waiting })
    }

    /// Apply a notice from the table.
    pub fn notify(&mut self, now: Instant, notice: Notice) -> Option<SessionEvent> {
        if matches!(self.state, State::Closing | State::Closed | State::Matched) {
            return None;
        }
        match notice {
            Notice::Wait(wait) => {
                let State::Verified(key) = self.state else {
                    return None;
                };
                let wait_ms = wait.total_millis().min(u32::MAX as u64) as u32;
                let _ = self.queue.push_back(Message::Registered { wait_ms });
                self.state = State::Waiting {
                    key,
                    ping: None,
                    next_ping: now + self.config.ping_interval,
                };
                None
            }
            Notice::Match(m) => {
                let _ = self.queue.push_back(Message::Match(m));
                self.state = State::Matched;
                self.deadline = now + self.config.linger;
                None
            }
            Notice::RetryAfter(d) => {
                let millis = d.total_millis().min(u32::MAX as u64) as u32;
                self.queue.clear();
                let _ = self.queue.push_back(Message::RetryAfter { millis });
                self.state = State::Closing;
                None
            }
            Notice::Abort(reason) => self.abort(reason),
        }
    }

    /// Write the next frame to send into `buf` (at least [`wire::MAX_FRAME_LEN`] bytes).
    pub fn transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let Some(message) = self.queue.pop_front() else {
            if self.state == State::Closing {
                self.state = State::Closed;
            }
            return None;
        };
        // Round trips are timed from the moment a probe leaves.
        match (&mut self.state, message) {
            (State::AwaitProof { sent_at, .. }, Message::Challenge(_)) => *sent_at = Some(now),
            (State::Waiting { ping: Some(p), .. }, Message::Ping { token }) if p.token == token => {
                p.sent_at = Some(now)
            }
            _ => {}
        }
        let len = message.emit_bytes(buf);
        if self.queue.is_empty() && self.state == State::Closing {
            self.state = State::Closed;
        }
        len
    }

    /// When [`poll`](Self::poll) must next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            State::AwaitHello | State::AwaitProof { .. } | State::Matched => Some(self.deadline),
            State::Waiting {
                ping, next_ping, ..
            } => match ping {
                Some(Ping {
                    sent_at: Some(at), ..
                }) => Some(at + self.config.ping_timeout),
                Some(_) => None, // queued, not yet sent
                None => Some(next_ping),
            },
            State::Verified(_) | State::Closing | State::Closed => None,
        }
    }

    /// Check deadlines and send Pings.
    pub fn poll(&mut self, now: Instant) -> Option<SessionEvent> {
        match self.state {
            State::AwaitHello | State::AwaitProof { .. } if now >= self.deadline => {
                self.abort(AbortReason::Timeout)
            }
            State::Matched if now >= self.deadline => {
                self.state = State::Closed;
                None
            }
            State::Waiting {
                key,
                ping: None,
                next_ping,
            } if now >= next_ping => {
                let token = self.next_token;
                self.next_token = self.next_token.wrapping_add(1);
                let _ = self.queue.push_back(Message::Ping { token });
                self.state = State::Waiting {
                    key,
                    ping: Some(Ping {
                        token,
                        sent_at: None,
                    }),
                    next_ping,
                };
                None
            }
            State::Waiting {
                ping: Some(Ping {
                    sent_at: Some(at), ..
                }),
                ..
            } if now >= at + self.config.ping_timeout => self.abort(AbortReason::Unresponsive),
            _ => None,
        }
    }

    /// Feed bytes received from the peer. Returns how many were consumed and any event. Protocol errors
    /// abort the session (an Abort is queued and [`SessionEvent::Aborted`] returned).
    pub fn receive<V: Verifier>(
        &mut self,
        now: Instant,
        verifier: &V,
        data: &[u8],
    ) -> (usize, Option<SessionEvent>) {
        if matches!(self.state, State::Matched | State::Closing | State::Closed) {
            // Nothing more is expected; discard.
            return (data.len(), None);
        }
        let (used, message) = self.reader.read(data);
        let event = match message {
            None => None,
            Some(Err(wire::Error::UnsupportedVersion(_))) => {
                self.abort(AbortReason::UnsupportedVersion)
            }
            Some(Err(_)) => self.abort(AbortReason::Malformed),
            Some(Ok(message)) => self.process(now, verifier, message),
        };
        (used, event)
    }

    fn process<V: Verifier>(
        &mut self,
        now: Instant,
        verifier: &V,
        message: Message,
    ) -> Option<SessionEvent> {
        match (self.state, message) {
            (State::AwaitHello, Message::Hello(hello)) => {
                if hello.key == hello.want {
                    return self.abort(AbortReason::SelfMatch);
                }
                let _ = self.queue.push_back(Message::Challenge(Challenge {
                    nonce: self.nonce,
                    observed: self.observed,
                }));
                self.state = State::AwaitProof {
                    hello,
                    sent_at: None,
                };
                self.deadline = now + self.config.step_timeout;
                None
            }
            (State::AwaitProof { hello, sent_at }, Message::Proof(proof)) => {
                let challenge = Challenge {
                    nonce: self.nonce,
                    observed: self.observed,
                };
                let t = transcript::registration(&hello, &challenge);
                if verifier
                    .verify(&hello.key, t.as_bytes(), &proof.signature)
                    .is_err()
                {
                    return self.abort(AbortReason::BadProof);
                }
                let rtt = saturating_sub(
                    sent_at.map_or(Duration::ZERO, |at| elapsed(now, at)),
                    Duration::from_millis(proof.hold_ms.into()),
                );
                self.state = State::Verified(hello.key);
                Some(SessionEvent::Verified(Registration {
                    key: hello.key,
                    want: hello.want,
                    nonce: hello.nonce,
                    observed: self.observed,
                    local: hello.local,
                    rtt,
                }))
            }
            (
                State::Waiting {
                    key,
                    ping:
                        Some(Ping {
                            token,
                            sent_at: Some(at),
                        }),
                    next_ping: _,
                },
                Message::Pong(pong),
            ) if pong.token == token => {
                let rtt =
                    saturating_sub(elapsed(now, at), Duration::from_millis(pong.hold_ms.into()));
                self.state = State::Waiting {
                    key,
                    ping: None,
                    next_ping: now + self.config.ping_interval,
                };
                Some(SessionEvent::Rtt(key, rtt))
            }
            // A late Pong for an older token is harmless.
            (State::Waiting { .. }, Message::Pong(_)) => None,
            _ => self.abort(AbortReason::UnexpectedMessage),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Keypair, SaltyVerifier};
    use crate::proto::{RegisterConfig, Registration as Client};
    use crate::wire::MAX_FRAME_LEN;
    use std::vec::Vec;

    type TestTable = Table<heapless::Vec<Entry, 4>>;

    fn table() -> TestTable {
        Table::new(heapless::Vec::new(), MediatorConfig::default())
    }

    fn key(seed: u8) -> PublicKey {
        Keypair::from_seed(&[seed; 32]).public_key()
    }

    /// Bytes from one side to the other until neither has anything more to say, at time zero: the
    /// session's events.
    fn exchange(
        client: &mut Client,
        keypair: &Keypair,
        session: &mut Session,
    ) -> Vec<SessionEvent> {
        let (now, mut events, mut buf) = (Instant::ZERO, Vec::new(), [0u8; MAX_FRAME_LEN]);
        loop {
            let mut quiet = true;
            while let Some(n) = client.transmit(now, &mut buf) {
                let (used, event) = session.receive(now, &SaltyVerifier, &buf[..n]);
                assert_eq!(used, n);
                events.extend(event);
                quiet = false;
            }
            while let Some(n) = session.transmit(now, &mut buf) {
                let (used, _) = client.receive(now, keypair, &buf[..n]).unwrap();
                assert_eq!(used, n);
                quiet = false;
            }
            if quiet {
                return events;
            }
        }
    }

    /// The session of the peer with key seed `seed`, wanting `want`, registered in `table` on `conn`.
    fn registered(table: &mut TestTable, conn: ConnId, seed: u8, want: u8) -> Session {
        let keypair = Keypair::from_seed(&[seed; 32]);
        let (now, observed) = (Instant::ZERO, "203.0.113.7:40000".parse().unwrap());
        let mut client = Client::new(
            RegisterConfig::default(),
            keypair.public_key(),
            key(want),
            [seed; 32],
            None,
            now,
        );
        let mut session = Session::new(MediatorConfig::default(), observed, [0xA0; 32], now);
        for event in exchange(&mut client, &keypair, &mut session) {
            // Another session's notice (Replaced) is not delivered: its connection may end first.
            let _ = table.settle(now, conn, &mut session, event);
        }
        session
    }

    #[test]
    fn connection_ended_removes_the_waiting_entry_of_its_own_connection_only() {
        let mut table = table();
        let first = registered(&mut table, 1, 1, 2);
        assert_eq!(first.waiting_key(), Some(key(1)));
        // The same key again from connection 2 replaces the entry.
        let second = registered(&mut table, 2, 1, 2);
        assert!(!table.connection_ended(1, &first));
        assert_eq!(table.get(&key(1)).map(|e| e.conn), Some(2));
        assert!(table.connection_ended(2, &second));
        assert!(table.is_empty());
        assert!(!table.connection_ended(2, &second));
    }

    #[test]
    fn connection_ended_before_waiting_or_after_the_match_removes_nothing() {
        let mut table = table();
        let waiting = registered(&mut table, 1, 1, 2);
        let fresh = Session::new(
            MediatorConfig::default(),
            "203.0.113.8:40000".parse().unwrap(),
            [0xA1; 32],
            Instant::ZERO,
        );
        assert!(!table.connection_ended(3, &fresh));
        assert_eq!(table.len(), 1);
        // Its counterpart comes: both leave the table matched.
        let matched = registered(&mut table, 2, 2, 1);
        assert!(matched.is_matched());
        assert!(table.is_empty());
        assert!(!table.connection_ended(2, &matched));
        assert!(!table.connection_ended(1, &waiting));
    }
}
