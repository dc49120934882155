//! Which mediator a pair meets on when peers know several (protocol §13): rendezvous
//! (highest-random-weight) hashing of the unordered pair of public keys.
//!
//! Every mediator of the list gets a score, SHA-256 over [`RANK_CONTEXT`], the pair's two public keys
//! in ascending byte order, and the mediator's [`MediatorId`]: its address and port in the 18-byte
//! endpoint encoding of §3.1. The ranking is the list in descending score order (a tie, which only a
//! mediator listed twice can produce, goes to the earlier position). Both peers of a pair compute the
//! same scores, whichever of them computes them, so they walk the same ranking and meet on its first
//! mediator that works. A mediator's score does not depend on the other mediators of the list, so
//! peers whose lists differ still agree on the order of the mediators they share.
//!
//! The identity is the address a peer connects to, not the name it was given: a device knows only
//! addresses, and a name and the address it resolves to must rank as one mediator.
//!
//! No allocation: [`Ranking`] recomputes the scores at each step, keeping only the last one it gave
//! (lists are short, and the next mediator is needed only when one fails).

use core::net::SocketAddr;

use sha2::{Digest, Sha256};

use crate::identity::PublicKey;
use crate::wire::{emit_endpoint, ENDPOINT_LEN};

/// Domain separation of the score: no other hash of p2psc starts with it.
pub const RANK_CONTEXT: &[u8] = b"p2psc/1 mediator-rank\0";

/// A mediator's identity in the ranking: its address and port as an endpoint field (§3.1: IPv4
/// addresses IPv4-mapped, then the port big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MediatorId([u8; ENDPOINT_LEN]);

impl MediatorId {
    /// The identity of the mediator at `addr`.
    pub fn new(addr: SocketAddr) -> MediatorId {
        let mut bytes = [0; ENDPOINT_LEN];
        emit_endpoint(Some(addr), &mut bytes);
        MediatorId(bytes)
    }

    /// The 18 bytes that are hashed.
    pub const fn as_bytes(&self) -> &[u8; ENDPOINT_LEN] {
        &self.0
    }
}

impl From<SocketAddr> for MediatorId {
    fn from(addr: SocketAddr) -> MediatorId {
        MediatorId::new(addr)
    }
}

/// A mediator's score for a pair: the first of a ranking is the highest (compared as big-endian bytes).
pub type Score = [u8; 32];

/// The unordered pair of public keys, in the order the score hashes them (ascending bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pair {
    low: PublicKey,
    high: PublicKey,
}

impl Pair {
    /// The pair of `a` and `b`, whichever is ours.
    pub fn new(a: PublicKey, b: PublicKey) -> Pair {
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        Pair { low, high }
    }

    /// The score of mediator `id` for this pair.
    pub fn score(&self, id: &MediatorId) -> Score {
        Sha256::new()
            .chain_update(RANK_CONTEXT)
            .chain_update(self.low.as_bytes())
            .chain_update(self.high.as_bytes())
            .chain_update(id.as_bytes())
            .finalize()
            .into()
    }

    /// The mediators of `list` in the pair's order: each item's position in `list`, best first.
    /// `id` gives each item's identity.
    pub fn rank<'a, T, F: Fn(&T) -> MediatorId>(&self, list: &'a [T], id: F) -> Ranking<'a, T, F> {
        Ranking {
            pair: *self,
            list,
            id,
            last: None,
        }
    }
}

/// The position in `list` of the mediator at `rank` (0: the first choice) of the pair of `a` and `b`;
/// `None` past the end. A list of one needs no hashing: this checks for it before it ranks, so a
/// firmware that knows one mediator links none of the ranking.
#[inline]
pub fn nth<T>(
    a: PublicKey,
    b: PublicKey,
    list: &[T],
    rank: usize,
    id: impl Fn(&T) -> MediatorId,
) -> Option<usize> {
    match list.len() {
        1 => (rank == 0).then_some(0),
        _ => Pair::new(a, b).rank(list, id).nth(rank),
    }
}

/// A mediator's place in a ranking.
#[derive(Debug, Clone, Copy)]
struct Placed {
    score: Score,
    position: usize,
}

impl Placed {
    /// Whether `self` ranks before `other`: a higher score, or an equal one earlier in the list.
    fn before(&self, other: &Placed) -> bool {
        (self.score, other.position) > (other.score, self.position)
    }
}

/// The positions of a list's mediators, best first ([`Pair::rank`]).
#[derive(Debug, Clone)]
pub struct Ranking<'a, T, F> {
    pair: Pair,
    list: &'a [T],
    id: F,
    /// The last one given: the next is the best of those after it.
    last: Option<Placed>,
}

impl<T, F: Fn(&T) -> MediatorId> Iterator for Ranking<'_, T, F> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let mut best: Option<Placed> = None;
        for (position, item) in self.list.iter().enumerate() {
            let placed = Placed {
                score: self.pair.score(&(self.id)(item)),
                position,
            };
            let after_last = self.last.is_none_or(|last| last.before(&placed));
            if after_last && best.is_none_or(|best| placed.before(&best)) {
                best = Some(placed);
            }
        }
        self.last = best;
        best.map(|b| b.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const KA: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
    const KB: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";

    fn key(hex: &str) -> PublicKey {
        PublicKey::from_hex(hex).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The mediators of the test vectors (protocol §13.3).
    const LIST: [&str; 4] = [
        "203.0.113.10:7777",
        "198.51.100.20:7777",
        "[2001:db8::30]:7777",
        "203.0.113.10:7778",
    ];

    fn ids() -> Vec<SocketAddr> {
        LIST.iter().map(|s| addr(s)).collect()
    }

    fn ranking(a: &str, b: &str, list: &[SocketAddr]) -> Vec<usize> {
        Pair::new(key(a), key(b))
            .rank(list, |a| MediatorId::new(*a))
            .collect()
    }

    fn hex(bytes: &[u8]) -> std::string::String {
        bytes.iter().map(|b| std::format!("{:02x}", b)).collect()
    }

    #[test]
    fn the_identity_is_the_endpoint_field() {
        let id = MediatorId::new(addr("203.0.113.10:7777"));
        assert_eq!(hex(id.as_bytes()), "00000000000000000000ffffcb00710a1e61");
    }

    #[test]
    fn scores_match_the_test_vectors() {
        // Computed independently from the text of §13 (Python hashlib); see doc/protocol.md §13.3.
        let pair = Pair::new(key(KA), key(KB));
        let scores: Vec<_> = ids()
            .iter()
            .map(|a| hex(&pair.score(&MediatorId::new(*a))))
            .collect();
        assert_eq!(scores, VECTOR_SCORES);
        assert_eq!(ranking(KA, KB, &ids()), VECTOR_RANKING);
    }

    #[test]
    fn both_key_orders_give_the_same_ranking() {
        assert_eq!(ranking(KA, KB, &ids()), ranking(KB, KA, &ids()));
        assert_eq!(Pair::new(key(KA), key(KB)), Pair::new(key(KB), key(KA)));
    }

    #[test]
    fn the_ranking_is_a_permutation_by_descending_score() {
        let pair = Pair::new(key(KA), key(KB));
        let list = ids();
        let order = ranking(KA, KB, &list);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, [0, 1, 2, 3]);
        let scores: Vec<Score> = order
            .iter()
            .map(|&i| pair.score(&MediatorId::new(list[i])))
            .collect();
        assert!(scores.windows(2).all(|w| w[0] > w[1]));
    }

    #[test]
    fn another_pair_ranks_differently() {
        let other = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
        assert_ne!(ranking(KA, KB, &ids()), ranking(KA, other, &ids()));
    }

    #[test]
    fn list_order_does_not_matter_and_shared_mediators_keep_their_order() {
        let list = ids();
        let named = |order: Vec<usize>, list: &[SocketAddr]| -> Vec<SocketAddr> {
            order.into_iter().map(|i| list[i]).collect()
        };
        let full = named(ranking(KA, KB, &list), &list);
        let reversed: Vec<_> = list.iter().rev().copied().collect();
        assert_eq!(named(ranking(KA, KB, &reversed), &reversed), full);
        // Drop one: the others keep their relative order.
        for gone in 0..list.len() {
            let mut fewer = list.clone();
            let removed = fewer.remove(gone);
            let expect: Vec<_> = full.iter().copied().filter(|a| *a != removed).collect();
            assert_eq!(named(ranking(KA, KB, &fewer), &fewer), expect);
        }
    }

    #[test]
    fn a_mediator_listed_twice_keeps_its_first_place() {
        let list = [addr(LIST[0]), addr(LIST[1]), addr(LIST[0])];
        let order = ranking(KA, KB, &list);
        assert_eq!(order.len(), 3);
        let first_of_0 = order.iter().position(|&i| i == 0).unwrap();
        assert_eq!(order[first_of_0 + 1], 2, "the duplicate comes right after");
    }

    #[test]
    fn nth_walks_the_ranking_and_one_mediator_is_always_first() {
        let list = ids();
        let order = ranking(KA, KB, &list);
        for (rank, &position) in order.iter().enumerate() {
            let got = nth(key(KA), key(KB), &list, rank, |a| MediatorId::new(*a));
            assert_eq!(got, Some(position));
        }
        assert_eq!(
            nth(key(KA), key(KB), &list, 4, |a| MediatorId::new(*a)),
            None
        );
        let one = [list[2]];
        assert_eq!(
            nth(key(KA), key(KB), &one, 0, |a| MediatorId::new(*a)),
            Some(0)
        );
        assert_eq!(
            nth(key(KA), key(KB), &one, 1, |a| MediatorId::new(*a)),
            None
        );
        let none: [SocketAddr; 0] = [];
        assert_eq!(
            nth(key(KA), key(KB), &none, 0, |a| MediatorId::new(*a)),
            None
        );
    }

    const VECTOR_SCORES: [&str; 4] = [
        "a90570df8aa278a8f86f43335ab659621e71d38644e75702aee9a3990fa3a767",
        "8197f3e35ee05da0e033bb56693ce296c37068d6a10d3b453ddbcb43771d6f98",
        "ef56889bdbbf150ac42c9b54888214e2c1993ae6a88de6143638ef9e4492a275",
        "686b90dcc451f589696dce0f43fb05be19e01ecb7f0fa5760f0211538c7e34c7",
    ];
    const VECTOR_RANKING: [usize; 4] = [2, 0, 1, 3];
}
