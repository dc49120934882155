//! A small deterministic random bit generator: SHA-512 in counter mode over a caller-provided seed.
//!
//! p2psc draws 32 bytes per connection from the caller's random number generator (a
//! [`rand_core::RngCore`] + [`CryptoRng`]: a hardware RNG on a device, the OS on a host) and derives from
//! them everything random it needs: the registration nonce, ephemeral keys, the local port and retry
//! jitter. Same seed, same choices: that is what makes simulations replayable.
//!
//! A board that has a 32-byte seed rather than an RNG (conditioned from a weak source with
//! [`condition`], or read from a secure element) hands p2psc a [`Drbg`] over it: it implements both
//! traits.
//!
//! ```
//! use p2psc::rng::Drbg;
//! use rand_core::RngCore;
//!
//! let mut rng = Drbg::new([7; 32]); // yours: fresh and secret, e.g. `condition(..)` of a TRNG
//! let mut nonce = [0u8; 16];
//! rng.fill_bytes(&mut nonce);
//! assert_ne!(nonce, [0; 16]);
//! ```

use rand_core::{CryptoRng, RngCore};

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

/// The generator as a [`RngCore`]: the bytes are those of [`Drbg::fill`].
impl RngCore for Drbg {
    fn next_u32(&mut self) -> u32 {
        rand_core::impls::next_u32_via_fill(self)
    }

    fn next_u64(&mut self) -> u64 {
        rand_core::impls::next_u64_via_fill(self)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.fill(dst)
    }
}

/// SHA-512 of a secret seed and a counter is a pseudorandom function: the output is as unpredictable as
/// the seed is secret (it is only as good as the seed; there is no reseeding).
impl CryptoRng for Drbg {}

/// 32 bytes from `rng`, the seed of one connection's [`Drbg`].
pub(crate) fn seed_from(rng: &mut impl CryptoRng) -> [u8; 32] {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    seed
}

/// Condition a weak, biased or correlated entropy source into a 32-byte seed: `blocks` blocks of 64 raw
/// bytes from `read`, hashed together with SHA-512 (a vetted conditioning function in the sense of NIST
/// SP 800-90B §3.1.5), then any `extra` bytes (a boot timer, a chip id: mixed in, never credited).
///
/// The seed is only as good as the raw samples: budget them so that, at a conservative estimate of
/// their min-entropy, the blocks carry several times the 256 bits the seed stands for (a board's
/// README says what it assumes for its source).
pub fn condition(mut read: impl FnMut(&mut [u8]), blocks: usize, extra: &[u8]) -> [u8; 32] {
    let mut h = salty::Sha512::new();
    h.update(b"p2psc/1 entropy\0");
    let mut block = zeroize::Zeroizing::new([0u8; 64]);
    for _ in 0..blocks {
        read(&mut block[..]);
        h.update(&block[..]);
    }
    h.update(extra);
    let digest = zeroize::Zeroizing::new(h.finalize());
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&digest[..32]);
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditioning_reads_every_block_and_depends_on_all_input() {
        let mut calls = 0;
        let counter = |buf: &mut [u8]| {
            calls += 1;
            buf.fill(calls as u8);
        };
        let a = condition(counter, 8, b"boot");
        assert_eq!(calls, 8);
        // A constant source still gives a fixed output (no entropy created); any difference changes it.
        let zeros = condition(|b| b.fill(0), 8, b"boot");
        assert_ne!(a, zeros);
        assert_ne!(zeros, condition(|b| b.fill(0), 8, b"boot!"));
        assert_ne!(zeros, condition(|b| b.fill(0), 9, b"boot"));
        assert_eq!(zeros, condition(|b| b.fill(0), 8, b"boot"));
    }

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
    fn as_rng_core_it_gives_the_same_stream() {
        let (mut a, mut b) = (Drbg::new([4; 32]), Drbg::new([4; 32]));
        let mut bytes = [0u8; 12];
        a.fill_bytes(&mut bytes);
        let mut expected = [0u8; 12];
        b.fill(&mut expected);
        assert_eq!(bytes, expected);
        let word = a.next_u64();
        let mut next = [0u8; 8];
        b.fill(&mut next);
        assert_eq!(word, u64::from_le_bytes(next));
        assert_eq!(seed_from(&mut a), b.bytes32());
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
