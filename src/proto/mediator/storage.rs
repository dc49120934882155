//! Where the table keeps its waiting peers: a fixed array on a device or in a simulation, indexed maps
//! on a server.
//!
//! Besides lookup by key, the table asks its storage two questions: which entry expires first (to
//! expire waits), and how many entries each source network holds, which is the heaviest and which of
//! its entries is the oldest (to share the table fairly, `doc/mediator.md` §5.5). The provided methods
//! answer them by scanning [`Storage::iter`], fine for a few hundred entries; [`IndexedStorage`]
//! answers each in logarithmic time for hundreds of thousands.

use super::{Entry, Prefix};
use crate::identity::PublicKey;
use crate::time::Instant;

/// Storage for the table of waiting peers.
pub trait Storage {
    /// The entry of `key`.
    fn get(&self, key: &PublicKey) -> Option<&Entry>;
    /// The entry of `key`, mutably. The caller must not change its key, expiry or observed address.
    fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Entry>;
    /// Insert an entry whose key is not present; false if there is no room.
    fn insert(&mut self, entry: Entry) -> bool;
    /// Remove and return the entry of `key`.
    fn remove(&mut self, key: &PublicKey) -> Option<Entry>;
    /// Number of entries.
    fn len(&self) -> usize;
    /// Every entry, in no particular order.
    fn iter(&self) -> impl Iterator<Item = &Entry>;
    /// Whether there are no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether [`insert`](Self::insert) would fail for want of room (a fixed-size storage).
    fn is_full(&self) -> bool {
        false
    }
    /// The entry that expires first (of equal expiries, any).
    fn earliest(&self) -> Option<&Entry> {
        self.iter().min_by_key(|e| e.expires)
    }
    /// The earliest expiry of any entry.
    fn earliest_expiry(&self) -> Option<Instant> {
        self.earliest().map(|e| e.expires)
    }
    /// Number of entries from the source network `network` ([`Prefix::network`] of their observed
    /// address).
    fn count_in(&self, network: &Prefix) -> usize {
        self.iter().filter(|e| network_of(e) == *network).count()
    }
    /// The network with the most entries, its count, and the key of its entry that expires first
    /// (ties between networks go to the smaller prefix). `None` when empty.
    fn heaviest(&self) -> Option<(usize, PublicKey)> {
        let mut best: Option<(usize, Prefix)> = None;
        for e in self.iter() {
            let network = network_of(e);
            let count = self.count_in(&network);
            let better = match best {
                None => true,
                Some((c, p)) => count > c || (count == c && network < p),
            };
            if better {
                best = Some((count, network));
            }
        }
        let (count, network) = best?;
        let oldest = self
            .iter()
            .filter(|e| network_of(e) == network)
            .min_by_key(|e| (e.expires, e.conn))?;
        Some((count, oldest.registrant.key))
    }
}

/// The source network an entry counts against.
pub(crate) fn network_of(entry: &Entry) -> Prefix {
    Prefix::network(entry.registrant.observed.ip())
}

impl<const N: usize> Storage for heapless::Vec<Entry, N> {
    fn get(&self, key: &PublicKey) -> Option<&Entry> {
        self.as_slice().iter().find(|e| e.registrant.key == *key)
    }
    fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Entry> {
        self.as_mut_slice()
            .iter_mut()
            .find(|e| e.registrant.key == *key)
    }
    fn insert(&mut self, entry: Entry) -> bool {
        self.push(entry).is_ok()
    }
    fn remove(&mut self, key: &PublicKey) -> Option<Entry> {
        let index = self
            .as_slice()
            .iter()
            .position(|e| e.registrant.key == *key)?;
        Some(self.swap_remove(index))
    }
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.as_slice().iter()
    }
    fn is_full(&self) -> bool {
        self.as_slice().len() == N
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
    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.values()
    }
}

#[cfg(feature = "std")]
pub use indexed::IndexedStorage;

#[cfg(feature = "std")]
mod indexed {
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    use super::{network_of, Entry, Prefix, PublicKey, Storage};
    use crate::proto::mediator::ConnId;
    use crate::time::Instant;

    /// Hash-map storage with the indexes a server's table needs: every question of [`Storage`] in
    /// logarithmic time, for tables of hundreds of thousands of entries.
    ///
    /// Costs about 250 bytes per entry beyond the entry itself.
    #[derive(Debug, Clone, Default)]
    pub struct IndexedStorage {
        entries: HashMap<PublicKey, Entry>,
        /// Every entry by (expiry, connection): the first expires first.
        by_expiry: BTreeMap<(Instant, ConnId), PublicKey>,
        /// Every entry by (network, expiry, connection): each network's oldest first.
        by_network: BTreeMap<(Prefix, Instant, ConnId), PublicKey>,
        /// Entries per network, and the networks by their count.
        counts: HashMap<Prefix, usize>,
        by_count: BTreeSet<(usize, core::cmp::Reverse<Prefix>)>,
    }

    impl IndexedStorage {
        /// An empty storage.
        pub fn new() -> Self {
            Self::default()
        }

        /// Move `network`'s count by `delta` (±1), keeping `by_count` in step.
        fn recount(&mut self, network: Prefix, up: bool) {
            let count = self.counts.entry(network).or_insert(0);
            self.by_count.remove(&(*count, core::cmp::Reverse(network)));
            if up {
                *count += 1;
            } else {
                *count -= 1;
            }
            if *count == 0 {
                self.counts.remove(&network);
            } else {
                self.by_count.insert((*count, core::cmp::Reverse(network)));
            }
        }
    }

    impl Storage for IndexedStorage {
        fn get(&self, key: &PublicKey) -> Option<&Entry> {
            self.entries.get(key)
        }
        fn get_mut(&mut self, key: &PublicKey) -> Option<&mut Entry> {
            self.entries.get_mut(key)
        }
        fn insert(&mut self, entry: Entry) -> bool {
            let key = entry.registrant.key;
            if let Some(old) = self.remove(&key) {
                // The trait's contract says the key is absent; keep the indexes right anyway.
                let _ = old;
            }
            let network = network_of(&entry);
            self.by_expiry.insert((entry.expires, entry.conn), key);
            self.by_network
                .insert((network, entry.expires, entry.conn), key);
            self.recount(network, true);
            self.entries.insert(key, entry);
            true
        }
        fn remove(&mut self, key: &PublicKey) -> Option<Entry> {
            let entry = self.entries.remove(key)?;
            let network = network_of(&entry);
            self.by_expiry.remove(&(entry.expires, entry.conn));
            self.by_network
                .remove(&(network, entry.expires, entry.conn));
            self.recount(network, false);
            Some(entry)
        }
        fn len(&self) -> usize {
            self.entries.len()
        }
        fn iter(&self) -> impl Iterator<Item = &Entry> {
            self.entries.values()
        }
        fn earliest(&self) -> Option<&Entry> {
            let (_, key) = self.by_expiry.first_key_value()?;
            self.entries.get(key)
        }
        fn count_in(&self, network: &Prefix) -> usize {
            self.counts.get(network).copied().unwrap_or(0)
        }
        fn heaviest(&self) -> Option<(usize, PublicKey)> {
            let &(count, core::cmp::Reverse(network)) = self.by_count.last()?;
            let lowest = (network, Instant::from_micros(i64::MIN), ConnId::MIN);
            let (_, key) = self.by_network.range(lowest..).next()?;
            Some((count, *key))
        }
    }
}
