//! A small seeded generator for the network (jitter, loss, NAT port choice).
//!
//! SplitMix64: fast, tiny, and good enough to draw delays and coin flips. Each consumer gets its own
//! stream derived from the scenario seed ([`Rng::fork`]), so adding a draw in one place does not shift
//! the draws of another.

/// SplitMix64 (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        let span = high.saturating_sub(low).saturating_add(1);
        low + self.next_u64() % span
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// An independent stream for `label` (same seed and label, same stream).
    pub fn fork(&self, label: &str) -> Rng {
        let mut h = Rng(self.0 ^ 0x5851_f42d_4c95_7f2d);
        for b in label.bytes() {
            h.0 ^= u64::from(b);
            h.next_u64();
        }
        Rng(h.next_u64())
    }

    /// 32 bytes (for p2psc's connection seeds).
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.next_u64(), b.next_u64());
        let (mut x, mut y) = (a.fork("x"), a.fork("y"));
        assert_ne!(x.next_u64(), y.next_u64());
        assert_eq!(a.fork("x").next_u64(), b.fork("x").next_u64());
        for _ in 0..1000 {
            let v = a.range(20, 300);
            assert!((20..=300).contains(&v));
            assert!((0.0..1.0).contains(&a.unit()));
        }
        assert!(!a.chance(0.0));
    }
}
