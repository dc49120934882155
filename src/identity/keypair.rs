//! The key types: [`PublicKey`] and [`Signature`] (plain bytes), and [`Keypair`], which signs with salty.
//!
//! How they print is in `hex`, how a public key checks a signature in `verify`, and the key files
//! in `pem`.

use core::fmt;

use super::{Signer, PUBLIC_KEY_LEN, SEED_LEN, SIGNATURE_LEN};

/// An Ed25519 public key, stored as its 32 raw bytes (RFC 8032 encoding).
///
/// Not validated on construction: any 32 bytes make a `PublicKey`, and [`verify`](Self::verify) rejects
/// the ones that are not a usable point. `Debug` and `Display` print a short form, `ed25519:` and the
/// first 8 bytes in hex (`ed25519:7dccfdb9cae36575…`); `{:x}` prints all 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Wrap 32 bytes, unchecked.
    pub const fn from_bytes(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }

    /// The 32 raw bytes, by value.
    pub const fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0
    }
}

impl AsRef<[u8]> for PublicKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// An Ed25519 signature: the encoded point `R`, then the scalar `S`, 64 bytes (RFC 8032 §5.1.6).
///
/// Any 64 bytes make a `Signature`; verification rejects malformed ones. `Debug` shows the first
/// 8 bytes in hex, `{:x}` all of them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; SIGNATURE_LEN]);

impl Signature {
    /// Wrap 64 bytes, unchecked.
    pub const fn from_bytes(bytes: [u8; SIGNATURE_LEN]) -> Self {
        Self(bytes)
    }

    /// The 64 raw bytes, by value.
    pub const fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0
    }

    /// The 64 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; SIGNATURE_LEN] {
        &self.0
    }
}

impl AsRef<[u8]> for Signature {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// An Ed25519 key pair: a secret seed and the public key derived from it (RFC 8032 §5.1.5).
///
/// `Debug` prints only the public key. `Clone` re-derives the key pair from the seed, which costs one
/// scalar multiplication (see the [module docs](super) for the cost and for how the seed is kept).
pub struct Keypair {
    inner: salty::Keypair,
    /// Kept because salty does not give its copy back: needed for `Clone` and for PKCS#8 export.
    pub(super) seed: [u8; SEED_LEN],
}

impl Keypair {
    /// Derive the key pair from a 32-byte secret seed.
    ///
    /// The seed must come from a cryptographically secure random source; the same seed always gives
    /// the same key pair. Costs one scalar multiplication.
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        Self {
            inner: salty::Keypair::from(seed),
            seed: *seed,
        }
    }

    /// The public half, which identifies this peer.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.inner.public.to_bytes())
    }

    /// Sign `msg` (pure Ed25519, RFC 8032 §5.1.6; deterministic: the same message gives the same bytes).
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.inner.sign(msg).to_bytes())
    }
}

impl Clone for Keypair {
    fn clone(&self) -> Self {
        Self::from_seed(&self.seed)
    }
}

impl Drop for Keypair {
    fn drop(&mut self) {
        // salty wipes its own expanded key when `inner` drops; this wipes our copy of the seed.
        wipe(&mut self.seed);
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
#[cfg_attr(docsrs, doc(cfg(feature = "defmt")))]
impl defmt::Format for Keypair {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Keypair {{ public: {}, .. }}", self.public_key());
    }
}

impl Signer for Keypair {
    fn public_key(&self) -> PublicKey {
        Keypair::public_key(self)
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        Keypair::sign(self, msg)
    }
}

/// Overwrite a secret so that it does not outlive its owner in memory (`zeroize`: volatile writes the
/// compiler cannot drop).
pub(super) fn wipe(secret: &mut [u8; 32]) {
    zeroize::Zeroize::zeroize(secret);
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::super::test_vectors::{flip, RFC8032};
    use super::super::SignatureError;
    use super::*;
    use hex_literal::hex;
    use std::{format, string::String, vec::Vec};

    #[test]
    fn rfc8032_vectors() {
        for v in &RFC8032 {
            let keypair = Keypair::from_seed(&v.seed);
            let key = keypair.public_key();
            assert_eq!(key.as_bytes(), &v.public, "{}: public key", v.name);
            let sig = keypair.sign(v.msg);
            assert_eq!(sig.as_bytes(), &v.sig, "{}: signature", v.name);
            assert_eq!(key.verify(v.msg, &sig), Ok(()), "{}", v.name);

            let mut msg = Vec::from(v.msg);
            if msg.is_empty() {
                msg.push(0);
            } else {
                flip(&mut msg, 0);
            }
            assert_eq!(
                key.verify(&msg, &sig),
                Err(SignatureError::BadSignature),
                "{}",
                v.name
            );

            // Bits of R (0..256) and S (256..512), including both top bits.
            for bit in [0, 1, 100, 254, 255, 256, 300, 509, 510, 511] {
                let mut bad = v.sig;
                flip(&mut bad, bit);
                let result = key.verify(v.msg, &Signature::from_bytes(bad));
                assert_eq!(
                    result,
                    Err(SignatureError::BadSignature),
                    "{} bit {}",
                    v.name,
                    bit
                );
            }
        }
    }

    /// Every Wycheproof Ed25519 verification test: the expected result, and the same answer as
    /// ed25519-dalek's `verify_strict`.
    #[test]
    fn clone_is_the_same_identity() {
        let keypair = Keypair::from_seed(&RFC8032[2].seed);
        let clone = keypair.clone();
        drop(keypair);
        assert_eq!(clone.public_key().as_bytes(), &RFC8032[2].public);
        assert_eq!(clone.sign(RFC8032[2].msg).as_bytes(), &RFC8032[2].sig);
    }

    #[test]
    fn debug_does_not_leak_the_seed() {
        let seed = hex!("b80947d8b4b3004e706df0293ed66e7d4317ce5aaf3444085394db90c33e2a33");
        let keypair = Keypair::from_seed(&seed);
        let seed_hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let short = format!("{}", keypair.public_key());
        for shown in [format!("{keypair:?}"), format!("{keypair:#?}")] {
            assert!(!shown.contains(&seed_hex[..8]), "{shown}");
            assert!(!shown.contains(&seed_hex[..8].to_uppercase()), "{shown}");
            assert!(shown.contains(&short), "{shown}");
        }
        assert_eq!(
            format!("{keypair:?}"),
            format!("Keypair {{ public: {short}, .. }}")
        );
    }
}
