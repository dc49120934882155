//! A small deterministic random bit generator: SHA-512 in counter mode over a caller-provided seed.
//!
//! p2psc takes 32 bytes of entropy per connection from the caller (a hardware RNG on a device, the OS on
//! a host) and derives from them everything random it needs: the registration nonce, ephemeral keys, the
//! local port and retry jitter. Same seed, same choices: that is what makes simulations replayable.

/// SHA-512 counter-mode generator. Not for long streams; a connection draws a few hundred bytes. The
/// seed is wiped when the generator is dropped: it determined the nonce and the ephemeral key.
#[derive(Clone, zeroize::ZeroizeOnDrop)]
pub struct Drbg {
    seed: [u8; 32],
    #[zeroize(skip)]
    counter: u64,
}

impl core::fmt::Debug for Drbg {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Drbg(..)")
    }
}

impl Drbg {
    /// A generator over `seed`, which must be secret and fresh for each connection.
    pub fn new(seed: [u8; 32]) -> Drbg {
        Drbg { seed, counter: 0 }
    }

    /// Fill `out` with the next bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(64) {
            let mut h = salty::Sha512::new();
            h.update(b"p2psc/1 drbg\0");
            h.update(&self.seed);
            h.update(&self.counter.to_be_bytes());
            self.counter += 1;
            let block = h.finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }

    /// 32 fresh bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.fill(&mut out);
        out
    }

    /// A value uniformly distributed in `low..=high` (bias below 2^-32 for the small ranges used here).
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        let span = high.saturating_sub(low).saturating_add(1);
        low + u64::from_be_bytes(b) % span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<Drbg>();
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let (mut a, mut b, mut c) = (Drbg::new([1; 32]), Drbg::new([1; 32]), Drbg::new([2; 32]));
        let (x, y, z) = (a.bytes32(), b.bytes32(), c.bytes32());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert_ne!(a.bytes32(), x, "the stream moves on");
    }

    #[test]
    fn range_stays_in_bounds_and_spreads() {
        let mut r = Drbg::new([3; 32]);
        let mut seen = [false; 11];
        for _ in 0..500 {
            let v = r.range(10, 20);
            assert!((10..=20).contains(&v));
            seen[(v - 10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(r.range(5, 5), 5);
    }
}
