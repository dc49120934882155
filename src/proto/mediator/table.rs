//! The table of waiting peers, shared by all sessions: registers, matches, replaces, expires, and shares
//! its room fairly among source networks.
//!
//! Keys cost nothing, so a full table must not simply refuse newcomers: whoever filled it first would
//! keep it. Room is shared by source network ([`Prefix::network`](super::Prefix::network): an IPv4 /24, an IPv6 /48), in
//! two rules (`doc/mediator.md` §5.5):
//!
//! - **share**: one network holds at most `prefix_share` entries; beyond, its registrations get
//!   RetryAfter even when the table has room;
//! - **eviction**: when the table is full, a registration from a network with `n` entries takes the
//!   place of the oldest entry of the heaviest network if that one holds at least `n + 2` (so the
//!   sharing only ever becomes more even); that entry's peer gets RetryAfter. A peer alone in its
//!   network is never evicted (it would need a heaviest network of at least 2 to be chosen, and then
//!   it is not the heaviest). Otherwise the newcomer gets RetryAfter.
//!
//! In version 2 it also offers matched pairs a relay and admits the relays they join.

use super::relay::relay_after;

use super::storage::network_of;
use super::{
    ConnId, Entry, MediatorConfig, Notice, Outcome, Registrant, Session, SessionEvent, Stats,
    Storage,
};
use crate::identity::PublicKey;
use crate::time::{Duration, Instant};
use crate::wire::{AbortReason, Mapping, Match, Paths, RelayMode, Role};

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
                let relay = self.config.relay.enabled;
                let (for_waiting, for_new) = matches(&waiting.registrant, &reg, relay);
                let notice = |message, partner| Notice::Match { message, partner };
                let _ = others.push((waiting.conn, notice(for_waiting, conn)));
                return Outcome {
                    own: notice(for_new, waiting.conn),
                    others,
                };
            }
        }
        let entry = Entry {
            conn,
            registrant: reg,
            expires: now + self.config.wait_timeout,
        };
        let own = match self.make_room(&entry) {
            Some(evicted) => {
                if let Some(evicted) = evicted {
                    let notice = Notice::RetryAfter(self.config.retry_after);
                    let _ = others.push((evicted.conn, notice));
                }
                // Room was made (or there was room): a storage that still refuses is full anyway.
                if self.storage.insert(entry) {
                    Notice::Wait(self.config.wait_timeout)
                } else {
                    self.stats.full += 1;
                    Notice::RetryAfter(self.config.retry_after)
                }
            }
            None => {
                self.stats.full += 1;
                Notice::RetryAfter(self.config.retry_after)
            }
        };
        Outcome { own, others }
    }

    /// Whether `entry` may wait, by the share and eviction rules of the module docs: `None` if not,
    /// `Some(None)` if there is room, `Some(Some(evicted))` if it takes the place of `evicted` (already
    /// removed).
    fn make_room(&mut self, entry: &Entry) -> Option<Option<Entry>> {
        let network = network_of(entry);
        let mine = self.storage.count_in(&network);
        if mine >= self.config.prefix_share {
            return None;
        }
        if self.storage.len() < self.config.capacity && !self.storage.is_full() {
            return Some(None);
        }
        let (heaviest, oldest) = self.storage.heaviest()?;
        if heaviest < mine + 2 {
            return None;
        }
        let evicted = self.storage.remove(&oldest)?;
        self.stats.evicted += 1;
        Some(Some(evicted))
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
            SessionEvent::RelayRequested { leader } => {
                heapless::Vec::from_iter([(leader, Notice::PartnerRequested)])
            }
            SessionEvent::RelayJoin { follower } => {
                let notice = self.admit_relay();
                // Our own RelayGo yields nothing; a refusal aborts us too: count it.
                if let Some(event) = session.notify(now, notice) {
                    let _ = self.settle(now, conn, session, event);
                }
                heapless::Vec::from_iter([(follower, notice)])
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

    /// A pair's second RelayRequest: admit its relay (counted open until [`relay_ended`](Self::relay_ended)),
    /// or refuse it. The notice is for both sessions of the pair.
    fn admit_relay(&mut self) -> Notice {
        let relay = &self.config.relay;
        if !relay.enabled {
            Notice::Abort(AbortReason::RelayRefused)
        } else if self.stats.relays_open >= relay.max_pairs as u64 {
            Notice::Abort(AbortReason::RelayFull)
        } else {
            self.stats.relays += 1;
            self.stats.relays_open += 1;
            Notice::RelayGo
        }
    }

    /// A relay admitted by [`settle`](Self::settle) has ended (its connections are closed).
    pub fn relay_ended(&mut self) {
        self.stats.relays_open = self.stats.relays_open.saturating_sub(1);
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
    /// each expired connection. Costs one removal per expired entry (earliest first), not a scan.
    pub fn poll(&mut self, now: Instant, mut notify: impl FnMut(ConnId, Notice)) {
        while let Some(entry) = self.storage.earliest().filter(|e| e.expires <= now) {
            let key = entry.registrant.key;
            if let Some(expired) = self.storage.remove(&key) {
                self.stats.expired += 1;
                notify(expired.conn, Notice::Abort(AbortReason::PeerTimeout));
            }
        }
    }

    /// When [`poll`](Self::poll) must next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        self.storage.earliest_expiry()
    }
}

/// The two Match messages of a pair: the waiting peer leads. Each start delay makes up the difference
/// between its one-way delay (half its round trip) and the longer one, so both SYNs leave together. A
/// version-2 registration's Match carries the paths: the mapping classes and, when `relay` is on and
/// both may take a relayed path, the fallback deadline (`doc/mediator.md` §6.1).
fn matches(waiting: &Registrant, new: &Registrant, relay: bool) -> (Match, Match) {
    let owd_waiting = waiting.rtt.total_millis() / 2;
    let owd_new = new.rtt.total_millis() / 2;
    let latest = owd_waiting.max(owd_new);
    let delay = |owd: u64| (latest - owd).min(u16::MAX as u64) as u16;
    let relays = |r: &Registrant| matches!(r.relay, Some(RelayMode::Fallback | RelayMode::Only));
    let relay_after_ms = match relay && relays(waiting) && relays(new) {
        true => relay_after(waiting.rtt, new.rtt),
        false => 0,
    };
    // A version-1 counterpart was not probed: its class is unknown.
    let mapping = |r: &Registrant| r.relay.map_or(Mapping::Unknown, |_| r.mapping);
    let paths = |own: &Registrant, peer: &Registrant| {
        own.relay.map(|_| Paths {
            own: mapping(own),
            peer: mapping(peer),
            relay_after_ms,
        })
    };
    let for_waiting = Match {
        role: Role::Leader,
        start_delay_ms: delay(owd_waiting),
        peer_nonce: new.nonce,
        peer_observed: new.observed,
        peer_local: new.local,
        paths: paths(waiting, new),
    };
    let for_new = Match {
        role: Role::Follower,
        start_delay_ms: delay(owd_new),
        peer_nonce: waiting.nonce,
        peer_observed: waiting.observed,
        peer_local: waiting.local,
        paths: paths(new, waiting),
    };
    (for_waiting, for_new)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "std")]
    use crate::proto::mediator::IndexedStorage;
    use std::vec::Vec;

    type Small = heapless::Vec<Entry, 32>;

    fn config(capacity: usize, prefix_share: usize) -> MediatorConfig {
        MediatorConfig {
            capacity,
            prefix_share,
            ..MediatorConfig::default()
        }
    }

    fn key(n: u32) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        PublicKey::from_bytes(bytes)
    }

    /// Key `n` from `ip`, wanting nobody who comes.
    fn reg(n: u32, ip: &str) -> Registrant {
        Registrant {
            key: key(n),
            want: key(u32::MAX),
            nonce: [0; 32],
            observed: core::net::SocketAddr::new(ip.parse().unwrap(), 4000),
            local: None,
            rtt: Duration::ZERO,
            relay: None,
            mapping: Mapping::Unknown,
        }
    }

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms as i64)
    }

    fn retry() -> Notice {
        Notice::RetryAfter(MediatorConfig::default().retry_after)
    }

    fn wait() -> Notice {
        Notice::Wait(MediatorConfig::default().wait_timeout)
    }

    #[test]
    fn a_network_gets_its_share_and_no_more_even_with_room() {
        let mut table = Table::new(Small::new(), config(100, 2));
        assert_eq!(table.register(at(0), 1, reg(1, "198.51.100.1")).own, wait());
        assert_eq!(table.register(at(1), 2, reg(2, "198.51.100.2")).own, wait());
        // Same /24, another address: over the share.
        assert_eq!(
            table.register(at(2), 3, reg(3, "198.51.100.3")).own,
            retry()
        );
        assert_eq!(table.register(at(3), 4, reg(4, "198.51.101.1")).own, wait());
        assert_eq!(table.stats().full, 1);
        // A registration that completes a pair is served whatever its network holds.
        let mut partner = reg(5, "198.51.100.4");
        partner.want = key(1);
        let mut first = reg(1, "198.51.100.1");
        first.want = key(5);
        assert_eq!(table.register(at(4), 1, first).own, wait());
        assert!(matches!(
            table.register(at(5), 5, partner).own,
            Notice::Match { .. }
        ));
    }

    /// The heaviest network's oldest entry makes room for a lighter network, down to one entry each:
    /// a peer alone in its network is never evicted.
    fn evicts_from_the_heaviest_network<S: Storage>(storage: S) {
        let mut table = Table::new(storage, config(4, 100));
        for n in 0..4 {
            let outcome = table.register(at(n as u64), n.into(), reg(n, "203.0.113.9"));
            assert_eq!(outcome.own, wait());
        }
        // Full. The attacking network itself cannot push its own entries around.
        assert_eq!(
            table.register(at(10), 10, reg(10, "203.0.113.7")).own,
            retry()
        );
        // A newcomer from elsewhere takes the oldest attacking entry's place; that peer is told to
        // come back later.
        let outcome = table.register(at(11), 11, reg(11, "198.51.100.1"));
        assert_eq!(outcome.own, wait());
        assert_eq!(outcome.others.as_slice(), &[(0, retry())]);
        assert!(table.get(&key(0)).is_none());
        // 3 attacking, 1 honest: a second honest network still gets in, a second peer of the first
        // honest network does not (it would leave 2 against 2).
        let outcome = table.register(at(12), 12, reg(12, "192.0.2.1"));
        assert_eq!(outcome.others.as_slice(), &[(1, retry())]);
        assert_eq!(
            table.register(at(13), 13, reg(13, "198.51.100.2")).own,
            retry()
        );
        let outcome = table.register(at(14), 14, reg(14, "2001:db8:1::1"));
        assert_eq!(outcome.others.as_slice(), &[(2, retry())]);
        // One entry per network: nobody is evicted any more.
        assert_eq!(
            table.register(at(15), 15, reg(15, "2001:db8:2::1")).own,
            retry()
        );
        assert_eq!(table.len(), 4);
        for n in [3, 11, 12, 14] {
            assert!(table.get(&key(n)).is_some(), "{n}");
        }
        assert_eq!((table.stats().evicted, table.stats().full), (3, 3));
    }

    #[test]
    fn evicts_from_the_heaviest_network_in_every_storage() {
        evicts_from_the_heaviest_network(heapless::Vec::<Entry, 8>::new());
        #[cfg(feature = "std")]
        evicts_from_the_heaviest_network(std::collections::HashMap::new());
        #[cfg(feature = "std")]
        evicts_from_the_heaviest_network(IndexedStorage::new());
    }

    #[test]
    fn a_fixed_storage_that_is_full_shares_too() {
        // Capacity allows more than the storage holds: its own room decides.
        let mut table = Table::new(heapless::Vec::<Entry, 2>::new(), config(100, 100));
        table.register(at(0), 1, reg(1, "203.0.113.1"));
        table.register(at(1), 2, reg(2, "203.0.113.2"));
        let outcome = table.register(at(2), 3, reg(3, "198.51.100.1"));
        assert_eq!(
            (outcome.own, outcome.others.as_slice()),
            (wait(), &[(1, retry())][..])
        );
    }

    #[test]
    fn poll_expires_the_earliest_first_and_only_what_ran_out() {
        let mut table = Table::new(Small::new(), config(100, 100));
        let wait_ms = MediatorConfig::default().wait_timeout.total_millis();
        for n in 0..5u32 {
            table.register(at(10 * n as u64), n.into(), reg(n, "203.0.113.1"));
        }
        assert_eq!(table.poll_at(), Some(at(wait_ms)));
        let mut expired = Vec::new();
        table.poll(at(wait_ms + 20), |conn, notice| {
            assert_eq!(notice, Notice::Abort(AbortReason::PeerTimeout));
            expired.push(conn);
        });
        expired.sort();
        assert_eq!(expired, [0, 1, 2]);
        assert_eq!(table.poll_at(), Some(at(wait_ms + 30)));
        assert_eq!(table.stats().expired, 3);
    }

    /// The same registrations, removals and expiries on every storage give the same answers: the
    /// indexes agree with the scans.
    #[cfg(feature = "std")]
    #[test]
    fn indexed_storage_agrees_with_the_scanning_one() {
        let mut indexed = Table::new(IndexedStorage::new(), config(24, 6));
        let mut scanned = Table::new(Small::new(), config(24, 6));
        let mut seed = 0x2545_f491_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for step in 0..3_000u32 {
            let now = at(step as u64 * 97);
            let n = next() % 64;
            let ip = std::format!("10.{}.{}.1", next() % 5, next() % 3);
            let conn = ConnId::from(step);
            match next() % 4 {
                0 => {
                    let (a, b) = (indexed.remove(&key(n), conn), scanned.remove(&key(n), conn));
                    assert_eq!(a, b);
                }
                1 => {
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    indexed.poll(now, |c, _| a.push(c));
                    scanned.poll(now, |c, _| b.push(c));
                    a.sort();
                    b.sort();
                    assert_eq!(a, b);
                }
                _ => {
                    let r = reg(n, &ip);
                    let (a, b) = (
                        indexed.register(now, conn, r),
                        scanned.register(now, conn, r),
                    );
                    assert_eq!(a, b, "step {step}");
                }
            }
            assert_eq!(indexed.len(), scanned.len());
            assert_eq!(indexed.poll_at(), scanned.poll_at());
        }
        assert!(indexed.stats().evicted > 0 && indexed.stats().full > 0);
        assert_eq!(indexed.stats(), scanned.stats());
    }
}
