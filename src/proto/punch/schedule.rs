//! The shared retry schedule of a punch (protocol §8.3.1): slots both peers compute alike from the
//! Match, and a cursor over them.
//!
//! Some home routers have no filtering firewall: their own stack answers a SYN they have no session
//! for with a RST, and that RST, passing back through the other router, ends that router's session
//! too. Through two of them, both SYNs must leave within one router-to-router one-way delay of each
//! other (a few milliseconds, or less, between nearby routers). The mediator's start time aligns the
//! first SYNs to within its error; after a miss, independent random retry delays practically never
//! align them again, and a fixed period could keep two stacks in lock-step forever.
//!
//! So both peers retry at the slots of one [`Schedule`], which each computes from the Match alone
//! (both nonces, ordered by role): random gaps, identical on both sides. Most slots have both peers
//! dial, one of them later by a shared random skew of a few milliseconds that sweeps over the start
//! times' error, with short gaps after them. In the other slots only one peer dials while the other
//! stops an unanswered attempt and listens, with a long gap after them: a SYN from a port the
//! listener never dialled (a NAT with unpredictable ports) can only be taken by a listening socket.

use super::PunchInfo;
use crate::time::{Duration, Instant};
use crate::wire::{Nonce, Role};

/// Parameters of the shared retry [`Schedule`] (protocol §8.3). Both peers must use the same values,
/// or their slots differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SlotConfig {
    /// Shortest gap after a slot where both peers dial. Such a slot only needs the attempt to be
    /// reset (one round trip) before the next, so the gap is short: many aligned tries per second
    /// when the window for them is narrow (routers that reset early SYNs, close together). On longer
    /// paths an attempt spans several slots, and both peers resume at the first slot after it.
    pub dial_gap_min: Duration,
    /// Longest gap after a slot where both peers dial.
    pub dial_gap_max: Duration,
    /// Shortest gap after a slot where only one peer dials: the other listens until its next slot, so
    /// this must exceed the one-way delay between the peers.
    pub listen_gap_min: Duration,
    /// Longest gap after a slot where only one peer dials.
    pub listen_gap_max: Duration,
    /// Largest skew between the two peers' SYNs in a slot where both dial: each such slot delays one
    /// side by a shared random amount up to this, so that a constant error in the mediator's
    /// synchronisation (start delays are whole milliseconds, one-way delays are estimates) is swept
    /// over. In a slot where only one side dials, it dials this long after the slot time, when the
    /// other is surely listening.
    pub skew: Duration,
}

impl Default for SlotConfig {
    fn default() -> Self {
        SlotConfig {
            dial_gap_min: Duration::from_millis(10),
            dial_gap_max: Duration::from_millis(30),
            listen_gap_min: Duration::from_millis(100),
            listen_gap_max: Duration::from_millis(300),
            skew: Duration::from_millis(3),
        }
    }
}

/// Who dials in a slot of the [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Dialers {
    /// Both peers; the leader this long after the slot time if positive, the follower if negative
    /// (µs).
    Both {
        /// Leader's dial time minus the follower's, µs.
        skew_us: i32,
    },
    /// Only the leader; the follower listens.
    Leader,
    /// Only the follower; the leader listens.
    Follower,
}

/// One slot of the shared retry [`Schedule`]: when it comes, and who dials in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Slot {
    /// Its number; slot 0 is the start time.
    pub index: u32,
    /// Its time, from the start time.
    pub at: Duration,
    /// Who dials.
    pub dialers: Dialers,
    /// The skew bound, for [`dial`](Self::dial).
    skew: Duration,
}

impl Slot {
    /// When `role` dials in this slot, after [`at`](Self::at); `None`: it listens.
    pub fn dial(&self, role: Role) -> Option<Duration> {
        let late = |us: i32| Duration::from_micros(u64::from(us.unsigned_abs()));
        match (self.dialers, role) {
            (Dialers::Both { skew_us }, Role::Leader) => Some(late(skew_us.max(0))),
            (Dialers::Both { skew_us }, Role::Follower) => Some(late(skew_us.min(0))),
            (Dialers::Leader, Role::Leader) | (Dialers::Follower, Role::Follower) => {
                Some(self.skew)
            }
            _ => None,
        }
    }
}

/// The retry schedule of a punch, computed alike by both peers from both nonces (protocol §8.3): an
/// endless sequence of [`Slot`]s, from slot 0 at the start time.
///
/// After a failed attempt each peer waits for its next slot, so the two peers retry *together*
/// instead of drifting apart; and since the gaps are random, not a fixed period, two stacks cannot
/// stay in lock-step either.
///
/// - Slot 0: both dial at once. Every later slot is, at random (shared): both dial (3/4 of slots),
///   one of them later by a shared random skew up to [`SlotConfig::skew`]; or one-sided (1/4): only
///   one peer dials while the other listens, the sides taking turns.
/// - Both-dial slots align the two SYNs, which routers that reset early SYNs need (each router then
///   holds a usable session for one round trip only); the gap after them is short
///   ([`SlotConfig::dial_gap_min`]..). One-sided slots let a SYN reach a peer that is *listening*,
///   which is the only way through some NAT pairs (one with unpredictable ports); the gap after them
///   is long ([`SlotConfig::listen_gap_min`]..), a window for that SYN to arrive.
///
/// Slot *k* ≥ 1 derives from `h = SHA-512("p2psc/1 punch slot" || 0x00 || leader_nonce ||
/// follower_nonce || u32be(k))`: both dial if `h[0]` < 192, with skew = `u32be(h[1..5]) mod
/// (2·skew + 1) − skew` µs; otherwise the slot is one-sided: for the side that did not dial in the
/// previous one-sided slot, or for the first, the leader if `h[0]` is even, else the follower. The
/// gap from slot *k* − 1 = `min + u32be(h[5..9]) mod (max − min + 1)` µs, in the listen range if slot
/// *k* − 1 was one-sided, else in the dial range.
#[derive(Clone)]
pub struct Schedule {
    key: [u8; 64],
    config: SlotConfig,
    /// The last slot yielded.
    last: Option<Slot>,
    /// Who dialled in the last one-sided slot.
    last_one_sided: Option<Dialers>,
}

impl core::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Schedule")
            .field("last", &self.last)
            .finish()
    }
}

impl Schedule {
    /// The schedule of a pair, from the leader's and the follower's nonces (in that order).
    pub fn new(leader_nonce: &Nonce, follower_nonce: &Nonce, config: SlotConfig) -> Schedule {
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(leader_nonce);
        key[32..].copy_from_slice(follower_nonce);
        Schedule {
            key,
            config,
            last: None,
            last_one_sided: None,
        }
    }

    /// The schedule of a punch, ordering the nonces by role so that both peers get the same one.
    pub fn for_punch(info: &PunchInfo, config: SlotConfig) -> Schedule {
        match info.role {
            Role::Leader => Schedule::new(&info.own_nonce, &info.peer_nonce, config),
            Role::Follower => Schedule::new(&info.peer_nonce, &info.own_nonce, config),
        }
    }

    /// Slot `index` ≥ 1, following `prev` (and the one-sided slots so far).
    fn draw(&self, index: u32, prev: &Slot) -> Slot {
        let mut h = salty::Sha512::new();
        h.update(b"p2psc/1 punch slot\0");
        h.update(&self.key);
        h.update(&index.to_be_bytes());
        let h = h.finalize();
        let word =
            |at: usize| u64::from(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
        let c = &self.config;
        let skew = c.skew.total_micros().min(i32::MAX as u64 / 2);
        // One-sided slots alternate between the sides, so that neither waits long for its turn.
        let dialers = match (h[0], self.last_one_sided) {
            (0..=191, _) => Dialers::Both {
                skew_us: (word(1) % (2 * skew + 1)) as i32 - skew as i32,
            },
            (_, Some(Dialers::Leader)) => Dialers::Follower,
            (_, Some(_)) => Dialers::Leader,
            (n, None) if n % 2 == 0 => Dialers::Leader,
            (_, None) => Dialers::Follower,
        };
        let (lo, hi) = match prev.dialers {
            Dialers::Both { .. } => (c.dial_gap_min, c.dial_gap_max),
            Dialers::Leader | Dialers::Follower => (c.listen_gap_min, c.listen_gap_max),
        };
        let (lo, hi) = (lo.total_micros(), hi.total_micros());
        let gap = lo + word(5) % (hi.saturating_sub(lo) + 1);
        Slot {
            index,
            at: prev.at + Duration::from_micros(gap),
            dialers,
            skew: c.skew,
        }
    }
}

impl Schedule {
    /// The next slot. Never ends: past slot index `u32::MAX` (centuries away) it repeats the last.
    fn step(&mut self) -> Slot {
        let slot = match &self.last {
            None => Slot {
                index: 0,
                at: Duration::ZERO,
                dialers: Dialers::Both { skew_us: 0 },
                skew: self.config.skew,
            },
            Some(prev) => match prev.index.checked_add(1) {
                Some(index) => self.draw(index, prev),
                None => *prev,
            },
        };
        if !matches!(slot.dialers, Dialers::Both { .. }) {
            self.last_one_sided = Some(slot.dialers);
        }
        self.last = Some(slot);
        slot
    }
}

impl Iterator for Schedule {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        if self.last.is_some_and(|s| s.index == u32::MAX) {
            return None;
        }
        Some(self.step())
    }
}

/// A punch's position in its [`Schedule`]: which slot's time has come, and when this side dials next.
#[derive(Debug, Clone)]
pub struct SlotCursor {
    start: Instant,
    role: Role,
    /// The latest slot whose time has come (slot 0 before the start).
    current: Slot,
    /// The slot after it.
    upcoming: Slot,
    /// Yields the slots after `upcoming`.
    rest: Schedule,
}

impl SlotCursor {
    /// The cursor of a punch, at slot 0 (the start time).
    pub fn new(info: &PunchInfo, config: SlotConfig) -> SlotCursor {
        let mut rest = Schedule::for_punch(info, config);
        let current = rest.step();
        let upcoming = rest.step();
        SlotCursor {
            start: info.start_at,
            role: info.role,
            current,
            upcoming,
            rest,
        }
    }

    fn time(&self, slot: &Slot) -> Instant {
        self.start + slot.at
    }

    /// Move to the slot whose time has come.
    pub fn advance(&mut self, now: Instant) {
        while now >= self.time(&self.upcoming) && self.upcoming.index != u32::MAX {
            let next = self.rest.step();
            self.current = core::mem::replace(&mut self.upcoming, next);
        }
    }

    /// When the next slot begins.
    pub fn next_at(&self) -> Instant {
        self.time(&self.upcoming)
    }

    /// The first time at or after `after` at which this side dials in a slot.
    pub fn next_dial(&self, after: Instant) -> Instant {
        let mut slots = [self.current, self.upcoming]
            .into_iter()
            .chain(self.rest.clone());
        slots
            .find_map(|slot| {
                let at = self.time(&slot) + slot.dial(self.role)?;
                (at >= after).then_some(at)
            })
            .unwrap_or(Instant::from_micros(i64::MAX))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::vec::Vec;

    fn info(role: Role, own: u8, peer: u8) -> PunchInfo {
        let ep = |n: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)), 5000);
        PunchInfo {
            role,
            matched_at: Instant::from_millis(0),
            start_at: Instant::from_millis(1000),
            own_observed: ep(own),
            own_nonce: [own; 32],
            peer_observed: ep(peer),
            peer_local: None,
            peer_nonce: [peer; 32],
            paths: None,
        }
    }

    fn slots(n: usize) -> Vec<Slot> {
        Schedule::for_punch(&info(Role::Leader, 1, 2), SlotConfig::default())
            .take(n)
            .collect()
    }

    #[test]
    fn both_roles_compute_the_same_schedule() {
        let config = SlotConfig::default();
        let leader: Vec<Slot> = Schedule::for_punch(&info(Role::Leader, 1, 2), config)
            .take(500)
            .collect();
        let follower: Vec<Slot> = Schedule::for_punch(&info(Role::Follower, 2, 1), config)
            .take(500)
            .collect();
        assert_eq!(leader, follower);
        // The order of the nonces matters (that is why they are ordered by role), and so do they.
        let swapped: Vec<Slot> = Schedule::new(&[2; 32], &[1; 32], config)
            .take(500)
            .collect();
        assert_ne!(leader, swapped);
        let other: Vec<Slot> = Schedule::new(&[1; 32], &[3; 32], config)
            .take(500)
            .collect();
        assert_ne!(leader, other);
    }

    #[test]
    fn known_answer() {
        // The vector of protocol §8.3: leader nonce 01×32, follower nonce 02×32, default parameters.
        let got: Vec<(u32, u64, Dialers)> = slots(6)
            .iter()
            .map(|s| (s.index, s.at.total_micros(), s.dialers))
            .collect();
        let both = |skew_us| Dialers::Both { skew_us };
        assert_eq!(
            got,
            std::vec![
                (0, 0, both(0)),
                (1, 14_623, both(-797)),
                (2, 28_624, Dialers::Leader),
                (3, 210_367, both(742)),
                (4, 224_466, both(2063)),
                (5, 244_974, Dialers::Follower),
            ]
        );
    }

    #[test]
    fn gaps_and_skews_stay_within_bounds() {
        let c = SlotConfig::default();
        let all = slots(2000);
        assert_eq!(all[0].at, Duration::ZERO);
        assert_eq!(all[0].dial(Role::Leader), Some(Duration::ZERO));
        assert_eq!(all[0].dial(Role::Follower), Some(Duration::ZERO));
        for pair in all.windows(2) {
            let (prev, slot) = (&pair[0], &pair[1]);
            assert_eq!(slot.index, prev.index + 1);
            let gap = slot.at - prev.at;
            let (lo, hi) = match prev.dialers {
                Dialers::Both { .. } => (c.dial_gap_min, c.dial_gap_max),
                _ => (c.listen_gap_min, c.listen_gap_max),
            };
            assert!(lo <= gap && gap <= hi, "gap {gap} after {prev:?}");
            match slot.dialers {
                Dialers::Both { skew_us } => {
                    assert!(u64::from(skew_us.unsigned_abs()) <= c.skew.total_micros());
                    // One side dials at the slot time, the other `skew_us` later.
                    let (l, f) = (slot.dial(Role::Leader), slot.dial(Role::Follower));
                    assert!(l == Some(Duration::ZERO) || f == Some(Duration::ZERO));
                }
                Dialers::Leader => {
                    assert_eq!(slot.dial(Role::Leader), Some(c.skew));
                    assert_eq!(slot.dial(Role::Follower), None);
                }
                Dialers::Follower => {
                    assert_eq!(slot.dial(Role::Leader), None);
                    assert_eq!(slot.dial(Role::Follower), Some(c.skew));
                }
            }
        }
    }

    #[test]
    fn kinds_come_in_their_proportions_and_skews_spread() {
        let all = slots(8000);
        let count = |f: &dyn Fn(&Dialers) -> bool| all.iter().filter(|s| f(&s.dialers)).count();
        let both = count(&|d| matches!(d, Dialers::Both { .. }));
        let leader = count(&|d| *d == Dialers::Leader);
        let follower = count(&|d| *d == Dialers::Follower);
        assert!((5700..6300).contains(&both), "{both}");
        assert!(leader.abs_diff(follower) <= 1, "{leader} {follower}");
        // One-sided slots take turns.
        let one_sided: Vec<Dialers> = all
            .iter()
            .map(|s| s.dialers)
            .filter(|d| !matches!(d, Dialers::Both { .. }))
            .collect();
        assert!(one_sided.windows(2).all(|w| w[0] != w[1]));
        // Skews cover both signs and most of the range.
        let skews: Vec<i32> = all
            .iter()
            .filter_map(|s| match s.dialers {
                Dialers::Both { skew_us } => Some(skew_us),
                _ => None,
            })
            .collect();
        assert!(skews.iter().any(|s| *s < -2500) && skews.iter().any(|s| *s > 2500));
    }

    #[test]
    fn not_periodic() {
        let all = slots(200);
        let gaps: Vec<u64> = all
            .windows(2)
            .map(|p| (p[1].at - p[0].at).total_micros())
            .collect();
        let mut distinct = gaps.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 190, "{} distinct gaps", distinct.len());
        for period in 1..=64 {
            assert!(
                (0..100).any(|i| gaps[i] != gaps[i + period]),
                "gaps repeat with period {period}"
            );
        }
    }

    #[test]
    fn each_side_dials_at_its_next_slot() {
        let leader = SlotCursor::new(&info(Role::Leader, 1, 2), SlotConfig::default());
        let follower = SlotCursor::new(&info(Role::Follower, 2, 1), SlotConfig::default());
        let all = slots(100);
        let start = Instant::from_millis(1000);
        for slot in &all[1..] {
            let at = start + slot.at;
            // Just after the previous slot: each side's next dial is its first slot from here on.
            for (slots, role) in [(&leader, Role::Leader), (&follower, Role::Follower)] {
                let expected = all
                    .iter()
                    .filter(|s| s.index >= slot.index)
                    .find_map(|s| Some(start + s.at + s.dial(role)?))
                    .unwrap();
                assert_eq!(
                    slots.next_dial(at),
                    expected,
                    "{role:?} from slot {}",
                    slot.index
                );
            }
        }
        // After a stall: we advance to the slot whose time has come; the next dial is not in the past.
        let mut late = leader.clone();
        let now = start + Duration::from_millis(800);
        late.advance(now);
        assert!(late.time(&late.current) <= now && now < late.next_at());
        assert!(late.next_dial(now) >= now);
    }
}
