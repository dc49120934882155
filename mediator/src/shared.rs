//! State shared by all connection tasks: the table of waiting peers, the mailboxes that carry the
//! table's notices to other connections, admission limits and counters; in version 2 also the recorded
//! probes, the relay's shared rate, and the meeting point where the two connections of a joined relay
//! come together.
//!
//! The table and the mailboxes sit behind one `std::sync::Mutex`. Every critical section is a few
//! hash-map operations (never an `.await`, never a signature check), so the lock is not worth splitting:
//! keeping both together makes "register, then route the notices it produced" atomic, so a notice can
//! never be produced for a connection whose mailbox is not in place yet.
//!
//! A connection has a mailbox while its session wants notices ([`Session::wants_notices`]): while it
//! waits in the table, and in version 2 while its pair may still join a relay. A mailbox is one
//! `oneshot` at a time (small: an idle waiting peer costs little); a notice that arrives while the
//! task has not yet taken a new one is queued in the slot, so none is lost between two.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use p2psc::proto::mediator::probe::{classify, Probed};
use p2psc::proto::mediator::relay::TokenBucket;
use p2psc::proto::mediator::{IndexedStorage, Stats};
use p2psc::proto::{ConnId, Notice, Session, SessionEvent, Table};
use p2psc::wire::{AbortReason, Mapping};
use tokio::sync::{oneshot, Notify};

use crate::clock::Clock;
use crate::limits::{Limits, Refusal};
use crate::probe::ProbeStore;
use crate::relay::{Ended, Half, Join, RelayTicket};
use crate::ServerConfig;

pub(crate) type Mailbox = oneshot::Receiver<Notice>;

/// A connection's mailbox in the shared state.
enum Slot {
    /// The task waits on this `oneshot`.
    Ready(oneshot::Sender<Notice>),
    /// The task has not taken a new `oneshot` since the last notice: these wait for it, in order.
    Queued(VecDeque<Notice>),
}

struct Inner {
    table: Table<IndexedStorage>,
    mailboxes: HashMap<ConnId, Slot>,
    /// Joined relays whose follower has not handed its connection over yet, by leader connection.
    meeting: HashMap<ConnId, oneshot::Sender<Half>>,
}

/// Put `notice` into `conn`'s mailbox, if it has one.
fn deliver(mailboxes: &mut HashMap<ConnId, Slot>, conn: ConnId, notice: Notice) {
    let Some(slot) = mailboxes.get_mut(&conn) else {
        // The connection wants no notices (any more): nothing to tell.
        return;
    };
    match std::mem::replace(slot, Slot::Queued(VecDeque::new())) {
        Slot::Ready(tx) => {
            // The receiver is gone only if its task already ended; nothing to tell then.
            let _ = tx.send(notice);
        }
        Slot::Queued(mut queue) => {
            queue.push_back(notice);
            *slot = Slot::Queued(queue);
        }
    }
}

impl Inner {
    fn deliver(&mut self, conn: ConnId, notice: Notice) {
        deliver(&mut self.mailboxes, conn, notice);
    }

    /// Keep `conn`'s mailbox in step with its session: a receiver (with a queued notice in it, if
    /// any) while the session wants notices, none otherwise.
    fn rearm(&mut self, conn: ConnId, session: &Session, mailbox: &mut Option<Mailbox>) {
        if !session.wants_notices() {
            self.mailboxes.remove(&conn);
            *mailbox = None;
            return;
        }
        if mailbox.is_some() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        *mailbox = Some(rx);
        match self.mailboxes.get_mut(&conn) {
            Some(Slot::Queued(queue)) if !queue.is_empty() => {
                if let Some(notice) = queue.pop_front() {
                    let _ = tx.send(notice);
                }
            }
            _ => {
                self.mailboxes.insert(conn, Slot::Ready(tx));
            }
        }
    }
}

/// What a connection task holds of the shared state besides its session.
#[derive(Default)]
pub(crate) struct Links {
    /// Its mailbox, while its session wants notices.
    pub(crate) mailbox: Option<Mailbox>,
    /// The leader of a joined relay: where the follower's connection will arrive.
    pub(crate) join: Option<Join>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    /// By [`Refusal`], in the order of [`Refusal::ALL`].
    refused: [AtomicU64; Refusal::ALL.len()],
    disconnects: AtomicU64,
    waiting_disconnects: AtomicU64,
    probes_recorded: AtomicU64,
    /// Version-2 registrations by mapping class, indexed by its wire code.
    classified: [AtomicU64; 4],
    /// Relays ended, by [`Ended`] in the order of [`Ended::ALL`].
    relays_ended: [AtomicU64; Ended::ALL.len()],
    relayed_bytes: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) clock: Clock,
    inner: Mutex<Inner>,
    limits: Limits,
    /// Version 2: probes recorded and not yet taken by their registration.
    pub(crate) probes: ProbeStore,
    /// Version 2: the rate of all relays together.
    relay_total: Mutex<TokenBucket>,
    active: AtomicUsize,
    /// Connections being refused right now (each has a short-lived task).
    pub(crate) refusing: AtomicUsize,
    /// Set once shutdown has begun (`/readyz` answers 503).
    pub(crate) shutting_down: AtomicBool,
    next_conn: AtomicU64,
    counters: Counters,
    /// Notified (to all waiters) when the last connection closes.
    all_closed: Notify,
    /// Notified (to all waiters) whenever a counter or the table changes: lets tests wait for a state
    /// instead of sleeping.
    changed: Notify,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another connection's critical section leaves consistent hash maps behind: carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(config: ServerConfig) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                table: Table::new(IndexedStorage::new(), config.mediator),
                mailboxes: HashMap::new(),
                meeting: HashMap::new(),
            }),
            limits: Limits::new(config.per_ip, config.per_net),
            probes: ProbeStore::new(config.mediator.capacity, config.mediator.step_timeout),
            relay_total: Mutex::new(TokenBucket::new(
                config.mediator.relay.total_rate,
                config.mediator.relay.buffer as u64,
                p2psc::time::Instant::ZERO,
            )),
            config,
            clock: Clock::new(),
            active: AtomicUsize::new(0),
            refusing: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            counters: Counters::default(),
            all_closed: Notify::new(),
            changed: Notify::new(),
        }
    }

    /// Admit a connection from `ip` within the limits, or say why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refusal> {
        let admitted = if self.active.fetch_add(1, Relaxed) >= self.config.max_connections {
            Err(Refusal::MaxConnections)
        } else {
            self.limits.admit(ip)
        };
        if let Err(why) = admitted {
            self.release_active();
            self.counters.refused[why as usize].fetch_add(1, Relaxed);
            self.changed.notify_waiters();
            return Err(why);
        }
        self.counters.accepted.fetch_add(1, Relaxed);
        self.changed.notify_waiters();
        Ok(ConnGuard {
            shared: self.clone(),
            ip,
            conn: self.next_conn.fetch_add(1, Relaxed),
        })
    }

    /// Forget the rate-limit state of sources that have been quiet for a while.
    pub(crate) fn forget_quiet_sources(&self) {
        self.limits.forget_quiet();
    }

    fn release_active(&self) {
        if self.active.fetch_sub(1, Relaxed) == 1 {
            self.all_closed.notify_waiters();
        }
    }

    /// Act on a session's event with the core's [`Table::settle`](p2psc::proto::Table::settle), under the
    /// lock, and keep this connection's mailbox in step. A version-2 registration gets its mapping class
    /// from its probe first; a leader whose relay was admitted gets the meeting point of the pair.
    pub(crate) fn settle(
        self: &Arc<Self>,
        conn: ConnId,
        session: &mut Session,
        links: &mut Links,
        mut event: SessionEvent,
    ) {
        let now = self.clock.now();
        match &mut event {
            SessionEvent::Verified(registration) => {
                if registration.relay.is_some() {
                    let probe = self.probes.take(now, &registration.nonce);
                    registration.mapping =
                        classify(registration.relay, registration.observed, probe);
                    self.counters.classified[registration.mapping as usize & 3]
                        .fetch_add(1, Relaxed);
                }
                tracing::debug!(conn, key = %registration.key, want = %registration.want, mapping = ?registration.mapping, "verified")
            }
            SessionEvent::Aborted { reason, .. } => tracing::debug!(conn, %reason, "aborted"),
            _ => {}
        }
        let joining = matches!(event, SessionEvent::RelayJoin { .. });
        {
            let mut inner = lock(&self.inner);
            for (other, notice) in inner.table.settle(now, conn, session, event) {
                inner.deliver(other, notice);
            }
            if joining && session.is_relaying() {
                let (tx, rx) = oneshot::channel();
                inner.meeting.insert(conn, tx);
                links.join = Some(Join {
                    half: rx,
                    ticket: RelayTicket::new(self.clone()),
                });
                tracing::debug!(conn, "relay joined");
            }
            inner.rearm(conn, session, &mut links.mailbox);
        }
        self.changed.notify_waiters();
    }

    /// After a notice that produced no event: keep the mailbox in step.
    pub(crate) fn rearm(&self, conn: ConnId, session: &Session, links: &mut Links) {
        lock(&self.inner).rearm(conn, session, &mut links.mailbox);
    }

    /// A connection's task ends (however): drop its mailbox and meeting point, and tell the partner
    /// of a pair offered a relay that it is gone ([`Session::departure`]).
    pub(crate) fn closed(&self, conn: ConnId, session: &Session) {
        {
            let mut inner = lock(&self.inner);
            inner.mailboxes.remove(&conn);
            inner.meeting.remove(&conn);
            if let Some((partner, notice)) = session.departure() {
                inner.deliver(partner, notice);
                // A leader that admitted the relay while we were leaving waits for us in vain.
                inner.meeting.remove(&partner);
            }
        }
        self.changed.notify_waiters();
    }

    /// The follower of a joined relay hands its connection to the leader's task; back if the leader
    /// is gone.
    pub(crate) fn hand_over(&self, leader: ConnId, half: Half) -> Result<(), Half> {
        let tx = lock(&self.inner).meeting.remove(&leader);
        match tx {
            Some(tx) => tx.send(half),
            None => Err(half),
        }
    }

    /// A connection ended without its session ending (EOF, reset, write failure): drop its waiting entry.
    /// Returns whether it was waiting.
    pub(crate) fn disconnected(&self, conn: ConnId, session: &Session) -> bool {
        let removed = lock(&self.inner).table.connection_ended(conn, session);
        self.counters.disconnects.fetch_add(1, Relaxed);
        if removed {
            self.counters.waiting_disconnects.fetch_add(1, Relaxed);
        }
        self.changed.notify_waiters();
        removed
    }

    /// A probe arrived: record it (unless its nonce is already recorded or the store is full).
    pub(crate) fn probed(&self, probed: Probed) {
        if self
            .probes
            .record(self.clock.now(), probed.nonce, probed.observed)
        {
            self.counters.probes_recorded.fetch_add(1, Relaxed);
            self.changed.notify_waiters();
        }
    }

    /// Permission from the rate of all relays together for up to `want` bytes, or when to ask again.
    pub(crate) fn take_total(
        &self,
        now: p2psc::time::Instant,
        want: usize,
    ) -> Result<usize, p2psc::time::Instant> {
        lock(&self.relay_total).take(now, want)
    }

    /// Give back what [`take_total`](Self::take_total) granted and was not used.
    pub(crate) fn give_back_total(&self, unused: usize) {
        if unused > 0 {
            lock(&self.relay_total).give_back(unused);
        }
    }

    /// Bytes relayed (counted as they are read).
    pub(crate) fn relayed(&self, bytes: usize) {
        self.counters.relayed_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// A relay ended: count why, and give its place back to the table.
    pub(crate) fn relay_ended(&self, why: Option<Ended>) {
        lock(&self.inner).table.relay_ended();
        if let Some(why) = why {
            self.counters.relays_ended[why as usize].fetch_add(1, Relaxed);
        }
        self.changed.notify_waiters();
    }

    /// Expire waits that ran out, and say when to call again.
    pub(crate) fn expire(&self) -> p2psc::time::Instant {
        let now = self.clock.now();
        let next = {
            let mut guard = lock(&self.inner);
            let Inner {
                table, mailboxes, ..
            } = &mut *guard;
            table.poll(now, |conn, notice| deliver(mailboxes, conn, notice));
            // Every entry expires `wait_timeout` after it is inserted, so one inserted after this point
            // expires after `now + wait_timeout`: sleeping that long when the table is empty misses nothing.
            table
                .poll_at()
                .unwrap_or(now + self.config.mediator.wait_timeout)
        };
        self.changed.notify_waiters();
        next
    }

    /// Counters and gauges now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let (table, waiting) = {
            let inner = lock(&self.inner);
            (*inner.table.stats(), inner.table.len())
        };
        let c = &self.counters;
        Snapshot {
            table,
            waiting,
            connections: self.active.load(Relaxed),
            accepted: c.accepted.load(Relaxed),
            refused: c.refused.each_ref().map(|n| n.load(Relaxed)),
            disconnects: c.disconnects.load(Relaxed),
            waiting_disconnects: c.waiting_disconnects.load(Relaxed),
            probes_recorded: c.probes_recorded.load(Relaxed),
            classified: c.classified.each_ref().map(|n| n.load(Relaxed)),
            relays_ended: c.relays_ended.each_ref().map(|n| n.load(Relaxed)),
            relayed_bytes: c.relayed_bytes.load(Relaxed),
            uptime: self.clock.uptime(),
        }
    }

    /// Wait until `pred` holds for a snapshot, re-checking whenever something changes.
    pub(crate) async fn wait_for(&self, mut pred: impl FnMut(&Snapshot) -> bool) -> Snapshot {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let snapshot = self.snapshot();
            if pred(&snapshot) {
                return snapshot;
            }
            changed.await;
        }
    }

    /// Wait until no connection is open.
    pub(crate) async fn all_closed(&self) {
        loop {
            let closed = self.all_closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.active.load(Relaxed) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// An admitted connection: its id, and its place in the connection and per-address counts, given back
/// on drop.
pub(crate) struct ConnGuard {
    shared: Arc<Shared>,
    ip: IpAddr,
    pub(crate) conn: ConnId,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.limits.release(self.ip);
        self.shared.release_active();
        self.shared.changed.notify_waiters();
    }
}

/// The server's counters and gauges at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The table's counters: registrations, matches, replaced, expired, full, aborts by reason.
    pub table: Stats,
    /// Peers waiting in the table now.
    pub waiting: usize,
    /// Connections open now.
    pub connections: usize,
    /// Connections admitted since start.
    pub accepted: u64,
    /// Connections refused, by limit: `max_connections`, `per_ip`, `per_net` (open at once), `rate_per_ip`,
    /// `rate_per_net` (opened too fast), in this order ([`Snapshot::refused_by`] names them).
    pub refused: [u64; 5],
    /// Connections the peer closed or reset before the mediator was done with them.
    pub disconnects: u64,
    /// Of those, the ones whose peer was waiting (its entry was removed from the table).
    pub waiting_disconnects: u64,
    /// Version 2: probes recorded (a first probe for its nonce, with room in the store).
    pub probes_recorded: u64,
    /// Version 2: registrations classified, by mapping class (index = wire code: Unknown,
    /// Independent, Dependent, RelayOnly); [`Snapshot::classified_as`] reads it.
    pub classified: [u64; 4],
    /// Version 2: relays ended, by cause (`closed`, `reset`, `bytes`, `duration`, `idle`,
    /// `shutdown`, in this order; [`Snapshot::relays_ended_by`] names them).
    pub relays_ended: [u64; 6],
    /// Version 2: bytes relayed, both directions of every relay.
    pub relayed_bytes: u64,
    /// Time since the server started.
    pub uptime: std::time::Duration,
}

impl Snapshot {
    /// Connections refused so far by the limit with this metrics label (`"max_connections"`,
    /// `"per_ip"`, `"per_net"`, `"rate_per_ip"`, `"rate_per_net"`).
    pub fn refused_by(&self, label: &str) -> u64 {
        Refusal::ALL
            .iter()
            .position(|r| r.label() == label)
            .map_or(0, |i| self.refused[i])
    }

    /// Version-2 registrations classified so far as `mapping`.
    pub fn classified_as(&self, mapping: Mapping) -> u64 {
        self.classified[mapping as usize & 3]
    }

    /// Relays ended so far for the cause with this metrics label (`"closed"`, `"reset"`, `"bytes"`,
    /// `"duration"`, `"idle"`, `"shutdown"`).
    pub fn relays_ended_by(&self, label: &str) -> u64 {
        Ended::ALL
            .iter()
            .position(|e| e.label() == label)
            .map_or(0, |i| self.relays_ended[i])
    }

    /// Connections refused so far, by every limit.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// Aborts counted for `reason` so far.
    pub fn aborts(&self, reason: AbortReason) -> u64 {
        let code = reason.to_u8() as usize;
        self.table
            .aborts
            .get(code)
            .copied()
            .unwrap_or(self.table.aborts[0])
    }
}

/// The labels of the connection limits, in [`Snapshot::refused`] order.
pub(crate) const REFUSAL_LABELS: [&str; 5] = {
    let mut labels = [""; 5];
    let mut i = 0;
    while i < labels.len() {
        labels[i] = Refusal::ALL[i].label();
        i += 1;
    }
    labels
};

/// Every abort reason the mediator can send, with a metrics/log label.
pub(crate) const ABORT_LABELS: [(AbortReason, &str); 15] = [
    (AbortReason::UnsupportedVersion, "unsupported_version"),
    (AbortReason::Malformed, "malformed"),
    (AbortReason::UnexpectedMessage, "unexpected_message"),
    (AbortReason::BadProof, "bad_proof"),
    (AbortReason::TableFull, "table_full"),
    (AbortReason::Timeout, "timeout"),
    (AbortReason::PeerTimeout, "peer_timeout"),
    (AbortReason::Replaced, "replaced"),
    (AbortReason::SelfMatch, "self_match"),
    (AbortReason::ShuttingDown, "shutting_down"),
    (AbortReason::TooManyConnections, "too_many_connections"),
    (AbortReason::Unresponsive, "unresponsive"),
    (AbortReason::RelayRefused, "relay_refused"),
    (AbortReason::RelayFull, "relay_full"),
    (AbortReason::PeerGone, "peer_gone"),
];

/// The relay's refusals, as counted among the aborts.
pub(crate) const RELAY_REFUSALS: [AbortReason; 3] = [
    AbortReason::RelayRefused,
    AbortReason::RelayFull,
    AbortReason::PeerGone,
];

/// The metrics labels of the mapping classes, by wire code.
pub(crate) const MAPPING_LABELS: [&str; 4] = ["unknown", "independent", "dependent", "relay_only"];

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_are_given_back() {
        let config = ServerConfig {
            max_connections: 2,
            per_ip: crate::PrefixLimit {
                concurrent: 1,
                rate: 0,
            },
            ..ServerConfig::default()
        };
        let shared = Arc::new(Shared::new(config));
        let here: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::2".parse().unwrap();
        let first = shared.admit(here).unwrap();
        assert_eq!(shared.admit(same_64).err(), Some(Refusal::PerIp));
        let other = shared.admit("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(
            shared.admit("192.0.2.2".parse().unwrap()).err(),
            Some(Refusal::MaxConnections)
        );
        drop(first);
        let again = shared.admit(same_64).unwrap();
        let s = shared.snapshot();
        assert_eq!((s.connections, s.accepted), (2, 3));
        assert_eq!(
            (s.refused_by("per_ip"), s.refused_by("max_connections")),
            (1, 1)
        );
        assert_eq!(s.refused_total(), 2);
        drop((again, other));
        assert_eq!(shared.snapshot().connections, 0);
    }
}
