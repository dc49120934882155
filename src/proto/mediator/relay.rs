//! The mediator's relay policy (protocol §14, `doc/mediator.md` §16), sans I/O: the fallback deadline a
//! Match announces, and the limits every relayed pair runs under — token buckets for the rates, and a
//! [`Budget`] per pair for its bytes, age and idle time. The server's splice asks them before each read
//! and tells them what it moved; time comes in as an argument.
//!
//! Back-pressure is how every limit but the final ones acts: a direction that may not read now waits
//! (its reader stops reading, TCP flow control slows the writer), so nothing is ever dropped and memory
//! stays at one buffer per direction. The final limits (bytes, duration, idle) end the relay, and the
//! shell then resets both connections, so that no peer can take a cut stream for a complete one.

use core::fmt;

use crate::time::{elapsed, Duration, Instant};

/// Relay policy (`doc/mediator.md` §2, §16.4). The defaults are those of `MediatorConfig::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RelayConfig {
    /// Whether the mediator offers relays at all.
    pub enabled: bool,
    /// Most pairs relayed at once.
    pub max_pairs: usize,
    /// Bytes per second one pair may relay, both directions together (0: no limit).
    pub pair_rate: u64,
    /// Bytes per second all pairs together (0: no limit); the shell keeps that bucket.
    pub total_rate: u64,
    /// Bytes one relay may carry, both directions together.
    pub max_bytes: u64,
    /// Longest life of one relay.
    pub max_duration: Duration,
    /// A relay with no byte in either direction for this long ends.
    pub idle_timeout: Duration,
    /// Buffer per direction: the most a relay holds for a slow reader.
    pub buffer: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: true,
            max_pairs: 256,
            pair_rate: 1 << 20,
            total_rate: 32 << 20,
            max_bytes: 1 << 30,
            max_duration: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(300),
            buffer: 16 * 1024,
        }
    }
}

/// The punch deadline after which a pair offered a relay falls back to it (protocol §14.3,
/// `doc/mediator.md` §6.1), from the two measured round trips: `min(15 s, 3 s + 4 × (rtt_a + rtt_b))`,
/// in whole milliseconds, never 0 (0 in a Match means "no relay").
pub fn relay_after(rtt_a: Duration, rtt_b: Duration) -> u16 {
    let sum = rtt_a.total_millis() + rtt_b.total_millis();
    (3_000 + 4 * sum).clamp(1, 15_000) as u16
}

/// Why a relay ended on a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Limit {
    /// It carried `max_bytes`.
    Bytes,
    /// It lived `max_duration`.
    Duration,
    /// Nothing moved for `idle_timeout`.
    Idle,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Bytes => "byte limit",
            Limit::Duration => "duration limit",
            Limit::Idle => "idle timeout",
        })
    }
}

/// A token bucket: `rate` bytes per second, holding at most `burst`. Rate 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst: burst.max(1),
            tokens: burst.max(1),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let micros = elapsed(now, self.at).total_micros();
        let added = (u128::from(micros) * u128::from(self.rate) / 1_000_000) as u64;
        if added > 0 {
            self.tokens = self.tokens.saturating_add(added).min(self.burst);
            // Advance only by the time the tokens stand for, so fractions are not lost.
            let used = (u128::from(added) * 1_000_000 / u128::from(self.rate)) as u64;
            self.at += Duration::from_micros(used);
        }
        if self.tokens == self.burst {
            self.at = now;
        }
    }

    /// Take up to `want` bytes' worth: how many may go now (at least 1), or when to ask again.
    pub fn take(&mut self, now: Instant, want: usize) -> Result<usize, Instant> {
        if self.rate == 0 {
            return Ok(want);
        }
        self.refill(now);
        if self.tokens == 0 {
            // One token's time from the last refill.
            return Err(self.at + Duration::from_micros(1_000_000u64.div_ceil(self.rate)));
        }
        let n = (want as u64).min(self.tokens);
        self.tokens -= n;
        Ok(n as usize)
    }

    /// Give back bytes taken but not moved (a read returned fewer than granted).
    pub fn give_back(&mut self, n: usize) {
        if self.rate != 0 {
            self.tokens = self.tokens.saturating_add(n as u64).min(self.burst);
        }
    }
}

/// What a direction of a relay may do now ([`Budget::grant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Grant {
    /// Read and forward at most this many bytes.
    Go(usize),
    /// Nothing now: ask again at this time (the pair's rate).
    Wait(Instant),
    /// The relay has ended on this limit: reset both connections.
    End(Limit),
}

/// The limits of one relayed pair, both directions together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Budget {
    config: RelayConfig,
    started: Instant,
    last: Instant,
    bytes: u64,
    rate: TokenBucket,
}

impl Budget {
    /// The budget of a relay joined at `now`. The rate's burst is one buffer.
    pub fn new(config: RelayConfig, now: Instant) -> Budget {
        Budget {
            config,
            started: now,
            last: now,
            bytes: 0,
            rate: TokenBucket::new(config.pair_rate, config.buffer as u64, now),
        }
    }

    /// Bytes relayed so far, both directions.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// May a direction read now, and how much (at most one buffer, at most the bytes left)?
    pub fn grant(&mut self, now: Instant) -> Grant {
        if let Some(limit) = self.ended(now) {
            return Grant::End(limit);
        }
        let left = self.config.max_bytes - self.bytes;
        let want = (self.config.buffer as u64).min(left) as usize;
        match self.rate.take(now, want.max(1)) {
            Ok(n) => Grant::Go(n),
            Err(at) => Grant::Wait(at),
        }
    }

    /// A direction moved `moved` of the `granted` bytes at `now` (0 moved: nothing arrived, but the
    /// read ended: no activity).
    pub fn record(&mut self, now: Instant, granted: usize, moved: usize) {
        self.rate.give_back(granted.saturating_sub(moved));
        if moved > 0 {
            self.bytes = self.bytes.saturating_add(moved as u64);
            self.last = now;
        }
    }

    /// The limit the relay has reached at `now`, if any.
    pub fn ended(&self, now: Instant) -> Option<Limit> {
        if self.bytes >= self.config.max_bytes {
            Some(Limit::Bytes)
        } else if now >= self.started + self.config.max_duration {
            Some(Limit::Duration)
        } else if now >= self.last + self.config.idle_timeout {
            Some(Limit::Idle)
        } else {
            None
        }
    }

    /// When [`ended`](Self::ended) may next become true without any bytes moving.
    pub fn poll_at(&self) -> Instant {
        let end = self.started + self.config.max_duration;
        end.min(self.last + self.config.idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn fallback_deadline_fits_the_round_trips() {
        let ms = Duration::from_millis;
        assert_eq!(relay_after(ms(100), ms(100)), 3_800);
        assert_eq!(relay_after(ms(0), ms(0)), 3_000);
        assert_eq!(relay_after(ms(2_000), ms(2_000)), 15_000);
    }

    #[test]
    fn a_bucket_grants_its_rate_and_no_more() {
        let mut b = TokenBucket::new(1000, 100, at(0));
        assert_eq!(b.take(at(0), 500), Ok(100));
        let again = b.take(at(0), 500).unwrap_err();
        assert_eq!(again, at(1));
        // 50 ms later: 50 bytes.
        assert_eq!(b.take(at(50), 500), Ok(50));
        b.give_back(20);
        assert_eq!(b.take(at(50), 500), Ok(20));
        // Long idle: never more than the burst.
        assert_eq!(b.take(at(10_000), 500), Ok(100));
        let mut free = TokenBucket::new(0, 1, at(0));
        assert_eq!(free.take(at(0), 1 << 20), Ok(1 << 20));
    }

    #[test]
    fn a_slow_rate_keeps_its_fractions() {
        // 3 bytes/s, emptied: 3 tokens over a second of 100 ms steps, none lost to rounding.
        let mut b = TokenBucket::new(3, 3, at(0));
        assert_eq!(b.take(at(0), 3), Ok(3));
        let got: usize = (1..=10).filter_map(|i| b.take(at(i * 100), 1).ok()).sum();
        assert_eq!(got, 3);
    }

    fn config() -> RelayConfig {
        RelayConfig {
            pair_rate: 0,
            max_bytes: 10_000,
            max_duration: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(5),
            buffer: 4096,
            ..RelayConfig::default()
        }
    }

    #[test]
    fn a_budget_ends_on_bytes_duration_and_idleness() {
        let mut b = Budget::new(config(), at(0));
        assert_eq!(b.grant(at(0)), Grant::Go(4096));
        b.record(at(0), 4096, 4096);
        b.record(at(1), 4096, 4096);
        // Only what is left.
        assert_eq!(b.grant(at(2)), Grant::Go(10_000 - 8192));
        b.record(at(2), 1808, 1808);
        assert_eq!(b.grant(at(3)), Grant::End(Limit::Bytes));
        assert_eq!(b.bytes(), 10_000);

        let mut idle = Budget::new(config(), at(0));
        idle.record(at(4_000), 10, 10);
        assert_eq!(idle.poll_at(), at(9_000));
        assert_eq!(idle.ended(at(8_999)), None);
        assert_eq!(idle.grant(at(9_000)), Grant::End(Limit::Idle));
        // A read that moved nothing is no activity.
        let mut quiet = Budget::new(config(), at(0));
        quiet.record(at(4_000), 4096, 0);
        assert_eq!(quiet.ended(at(5_000)), Some(Limit::Idle));

        let mut old = Budget::new(config(), at(0));
        for s in 1..60 {
            old.record(at(s * 1000), 1, 1);
        }
        assert_eq!(old.poll_at(), at(60_000));
        assert_eq!(old.grant(at(60_000)), Grant::End(Limit::Duration));
    }

    #[test]
    fn a_budget_waits_for_its_rate() {
        let mut b = Budget::new(
            RelayConfig {
                pair_rate: 1000,
                ..config()
            },
            at(0),
        );
        assert_eq!(b.grant(at(0)), Grant::Go(4096));
        b.record(at(0), 4096, 100);
        // 3996 were given back.
        assert_eq!(b.grant(at(0)), Grant::Go(3996));
        b.record(at(0), 3996, 3996);
        assert_eq!(b.grant(at(0)), Grant::Wait(at(1)));
    }
}
