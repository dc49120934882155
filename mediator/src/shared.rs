//! State shared by all connection tasks: the table of waiting peers, the mailboxes that carry the
//! table's notices to other connections, admission limits and counters.
//!
//! The table and the mailboxes sit behind one `std::sync::Mutex`. Every critical section is a few
//! hash-map operations (never an `.await`, never a signature check), so the lock is not worth splitting:
//! keeping both together makes "register, then route the notices it produced" atomic, so a notice can
//! never be produced for a connection whose mailbox is not in place yet.
//!
//! A connection gets a mailbox (a `oneshot` channel) when its registration is told to wait. It needs no
//! more than one: every notice the table addresses to another connection (Match, Abort(Replaced),
//! Abort(PeerTimeout)) comes with the removal of that connection's entry, so after it the table never
//! names that connection again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use p2psc::proto::mediator::{IndexedStorage, Stats};
use p2psc::proto::{ConnId, Notice, Session, SessionEvent, Table};
use p2psc::wire::AbortReason;
use tokio::sync::{oneshot, Notify};

use crate::clock::Clock;
use crate::limits::{Limits, Refusal};
use crate::ServerConfig;

pub(crate) type Mailbox = oneshot::Receiver<Notice>;

struct Inner {
    table: Table<IndexedStorage>,
    mailboxes: HashMap<ConnId, oneshot::Sender<Notice>>,
}

impl Inner {
    fn deliver(&mut self, conn: ConnId, notice: Notice) {
        if let Some(tx) = self.mailboxes.remove(&conn) {
            // The receiver is gone only if its task already ended; nothing to tell then.
            let _ = tx.send(notice);
        }
    }
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    /// By [`Refusal`], in the order of [`Refusal::ALL`].
    refused: [AtomicU64; Refusal::ALL.len()],
    disconnects: AtomicU64,
    waiting_disconnects: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) clock: Clock,
    inner: Mutex<Inner>,
    limits: Limits,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in another connection's critical section leaves consistent hash maps behind: carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn new(config: ServerConfig) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                table: Table::new(IndexedStorage::new(), config.mediator),
                mailboxes: HashMap::new(),
            }),
            limits: Limits::new(config.per_ip, config.per_net),
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
    /// lock, and keep this connection's mailbox in step: it exists exactly while the peer waits in the
    /// table (the only time another session can address it).
    pub(crate) fn settle(
        &self,
        conn: ConnId,
        session: &mut Session,
        mailbox: &mut Option<Mailbox>,
        event: SessionEvent,
    ) {
        let now = self.clock.now();
        match event {
            SessionEvent::Verified(registration) => {
                tracing::debug!(conn, key = %registration.key, want = %registration.want, "verified")
            }
            SessionEvent::Aborted { reason, .. } => tracing::debug!(conn, %reason, "aborted"),
            _ => {}
        }
        {
            let mut inner = lock(&self.inner);
            for (other, notice) in inner.table.settle(now, conn, session, event) {
                inner.deliver(other, notice);
            }
            match (session.waiting_key(), mailbox.is_some()) {
                (Some(_), false) => {
                    let (tx, rx) = oneshot::channel();
                    inner.mailboxes.insert(conn, tx);
                    *mailbox = Some(rx);
                }
                (None, true) => {
                    inner.mailboxes.remove(&conn);
                    *mailbox = None;
                }
                _ => {}
            }
        }
        self.changed.notify_waiters();
    }

    /// A connection ended without its session ending (EOF, reset, write failure): drop its waiting entry
    /// and mailbox. Returns whether it was waiting.
    pub(crate) fn disconnected(&self, conn: ConnId, session: &Session) -> bool {
        let removed = {
            let mut inner = lock(&self.inner);
            inner.mailboxes.remove(&conn);
            inner.table.connection_ended(conn, session)
        };
        self.counters.disconnects.fetch_add(1, Relaxed);
        if removed {
            self.counters.waiting_disconnects.fetch_add(1, Relaxed);
        }
        self.changed.notify_waiters();
        removed
    }

    /// Expire waits that ran out, and say when to call again.
    pub(crate) fn expire(&self) -> p2psc::time::Instant {
        let now = self.clock.now();
        let next = {
            let mut guard = lock(&self.inner);
            let inner = &mut *guard;
            let (table, mailboxes) = (&mut inner.table, &mut inner.mailboxes);
            table.poll(now, |conn, notice| {
                if let Some(tx) = mailboxes.remove(&conn) {
                    let _ = tx.send(notice);
                }
            });
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
pub(crate) const ABORT_LABELS: [(AbortReason, &str); 12] = [
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
];

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
