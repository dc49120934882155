//! The table of waiting peers, shared by all sessions: registers, matches, replaces, expires.

use super::{
    ConnId, Entry, MediatorConfig, Notice, Outcome, Registrant, Session, SessionEvent, Stats,
};
use crate::identity::PublicKey;
use crate::time::{Duration, Instant};
use crate::wire::{AbortReason, Match, Role};

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
        self.iter().find(|e| e.registrant.key == *key)
    }
    fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Entry> {
        self.iter_mut().find(|e| e.registrant.key == *key)
    }
    fn insert(&mut self, entry: Entry) -> bool {
        self.push(entry).is_ok()
    }
    fn remove(&mut self, key: &PublicKey) -> Option<Entry> {
        let index = self.iter().position(|e| e.registrant.key == *key)?;
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
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
impl Storage for std::collections::HashMap<PublicKey, Entry> {
    fn get(&self, key: &PublicKey) -> Option<&Entry> {
        std::collections::HashMap::get(self, key)
    }
    fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Entry> {
        std::collections::HashMap::get_mut(self, key)
    }
    fn insert(&mut self, entry: Entry) -> bool {
        std::collections::HashMap::insert(self, entry.registrant.key, entry);
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
    pub fn register(&mut self, now: Instant, conn: ConnId, reg: Registrant) -> Outcome {
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
            .map(|e| e.registrant.want == reg.key);
        if counterpart == Some(true) {
            if let Some(waiting) = self.storage.remove(&reg.want) {
                self.stats.matches += 1;
                let (for_waiting, for_new) = matches(&waiting.registrant, &reg);
                let _ = others.push((waiting.conn, Notice::Match(for_waiting)));
                return Outcome {
                    own: Notice::Match(for_new),
                    others,
                };
            }
        }
        let entry = Entry {
            conn,
            registrant: reg,
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
                e.registrant.rtt = e.registrant.rtt.min(rtt);
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
fn matches(waiting: &Registrant, new: &Registrant) -> (Match, Match) {
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
