//! Admission of new connections: how many a source may hold open, and how fast it may open new ones.
//!
//! Both limits count per source **host** (an IPv4 address, an IPv6 /64) and per source **network** (an
//! IPv4 /24, an IPv6 /48), the prefixes of [`p2psc::proto::mediator::Prefix`]: one machine usually holds
//! a whole IPv6 /64, one customer or rented range a /24 or a /48. New connections are rate-limited
//! with governor's GCRA per prefix: a burst as large as the prefix's concurrent allowance, then
//! `rate` per second. A refused attempt costs no allowance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use p2psc::proto::mediator::Prefix;

/// Limits on connections from one kind of prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixLimit {
    /// Most connections open at once.
    pub concurrent: u32,
    /// New connections per second, after a burst of `concurrent`; 0 turns the rate limit off.
    pub rate: u32,
}

/// Why a new connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_connections` are open.
    MaxConnections,
    /// Its host has as many open as it may.
    PerIp,
    /// Its network has as many open as it may.
    PerNet,
    /// Its host opens connections faster than it may.
    RateIp,
    /// Its network opens connections faster than it may.
    RateNet,
}

impl Refusal {
    /// The metrics label.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PerIp => "per_ip",
            Refusal::PerNet => "per_net",
            Refusal::RateIp => "rate_per_ip",
            Refusal::RateNet => "rate_per_net",
        }
    }

    /// Every refusal, in metrics order.
    pub(crate) const ALL: [Refusal; 5] = [
        Refusal::MaxConnections,
        Refusal::PerIp,
        Refusal::PerNet,
        Refusal::RateIp,
        Refusal::RateNet,
    ];
}

/// One kind of prefix: its open connections and its rate limiter.
struct Tier {
    limit: PrefixLimit,
    prefix: fn(IpAddr) -> Prefix,
    open: Mutex<HashMap<Prefix, u32>>,
    rate: Option<DefaultKeyedRateLimiter<Prefix>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Tier {
    fn new(limit: PrefixLimit, prefix: fn(IpAddr) -> Prefix) -> Tier {
        let rate = NonZeroU32::new(limit.rate).map(|rate| {
            let burst = NonZeroU32::new(limit.concurrent).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Tier {
            limit,
            prefix,
            open: Mutex::new(HashMap::new()),
            rate,
        }
    }

    /// Take a place for a connection from `ip` (the rate is checked by [`check_rate`](Self::check_rate)).
    fn take(&self, ip: IpAddr) -> bool {
        let mut open = lock(&self.open);
        let count = open.entry((self.prefix)(ip)).or_insert(0);
        if *count >= self.limit.concurrent {
            if *count == 0 {
                open.remove(&(self.prefix)(ip));
            }
            return false;
        }
        *count += 1;
        true
    }

    fn give_back(&self, ip: IpAddr) {
        let mut open = lock(&self.open);
        let prefix = (self.prefix)(ip);
        if let Some(count) = open.get_mut(&prefix) {
            *count -= 1;
            if *count == 0 {
                open.remove(&prefix);
            }
        }
    }

    fn check_rate(&self, ip: IpAddr) -> bool {
        self.rate
            .as_ref()
            .is_none_or(|rate| rate.check_key(&(self.prefix)(ip)).is_ok())
    }
}

/// The per-prefix limits of both tiers.
pub(crate) struct Limits {
    host: Tier,
    network: Tier,
}

impl Limits {
    pub(crate) fn new(host: PrefixLimit, network: PrefixLimit) -> Limits {
        Limits {
            host: Tier::new(host, Prefix::host),
            network: Tier::new(network, Prefix::network),
        }
    }

    /// Admit a connection from `ip`, or say why not. An admitted connection holds a place in both
    /// tiers until [`release`](Self::release).
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<(), Refusal> {
        if !self.host.take(ip) {
            return Err(Refusal::PerIp);
        }
        if !self.network.take(ip) {
            self.host.give_back(ip);
            return Err(Refusal::PerNet);
        }
        let refused = if !self.host.check_rate(ip) {
            Some(Refusal::RateIp)
        } else if !self.network.check_rate(ip) {
            Some(Refusal::RateNet)
        } else {
            None
        };
        match refused {
            Some(why) => {
                self.release(ip);
                Err(why)
            }
            None => Ok(()),
        }
    }

    /// Give back the places of a connection from `ip`.
    pub(crate) fn release(&self, ip: IpAddr) {
        self.host.give_back(ip);
        self.network.give_back(ip);
    }

    /// Forget the rate state of prefixes that have been quiet long enough to be back at a full burst,
    /// so that the limiters' memory follows the active sources, not every source ever seen.
    pub(crate) fn forget_quiet(&self) {
        for rate in [&self.host.rate, &self.network.rate].into_iter().flatten() {
            rate.retain_recent();
            rate.shrink_to_fit();
        }
    }

    /// Prefixes with open connections (hosts, networks): for tests.
    #[cfg(test)]
    fn open_prefixes(&self) -> (usize, usize) {
        (lock(&self.host.open).len(), lock(&self.network.open).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn concurrent_connections_count_per_host_and_per_network() {
        let off = 0;
        let limits = Limits::new(
            PrefixLimit {
                concurrent: 1,
                rate: off,
            },
            PrefixLimit {
                concurrent: 2,
                rate: off,
            },
        );
        assert_eq!(limits.admit(ip("2001:db8:0:1::1")), Ok(()));
        // The same /64.
        assert_eq!(limits.admit(ip("2001:db8:0:1::2")), Err(Refusal::PerIp));
        assert_eq!(limits.admit(ip("2001:db8:0:2::1")), Ok(()));
        // The same /48, a third /64.
        assert_eq!(limits.admit(ip("2001:db8:0:3::1")), Err(Refusal::PerNet));
        assert_eq!(limits.admit(ip("198.51.100.1")), Ok(()));
        limits.release(ip("2001:db8:0:1::1"));
        assert_eq!(limits.admit(ip("2001:db8:0:3::1")), Ok(()));
        for gone in ["2001:db8:0:2::1", "2001:db8:0:3::1", "198.51.100.1"] {
            limits.release(ip(gone));
        }
        assert_eq!(limits.open_prefixes(), (0, 0));
    }

    #[test]
    fn new_connections_are_rate_limited_after_a_burst() {
        let limits = Limits::new(
            PrefixLimit {
                concurrent: 3,
                rate: 1,
            },
            PrefixLimit {
                concurrent: 100,
                rate: 1,
            },
        );
        // A burst of 3 from one host (each closed at once), then nothing more this second.
        let start = std::time::Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.admit(ip("198.51.100.1")), Ok(()));
            limits.release(ip("198.51.100.1"));
        }
        let fourth = limits.admit(ip("198.51.100.1"));
        // (A machine that stalled for a second has earned the host a new allowance.)
        if start.elapsed() < std::time::Duration::from_millis(900) {
            assert_eq!(fourth, Err(Refusal::RateIp));
        }
        // Its network still has allowance; another host of it may connect.
        assert_eq!(limits.admit(ip("198.51.100.2")), Ok(()));
        assert_eq!(limits.open_prefixes().1, 1);
    }
}
