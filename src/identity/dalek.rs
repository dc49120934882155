//! Ed25519 on ed25519-dalek, for hosts (feature `dalek`): a fast [`Verifier`] for servers and a fast
//! [`Signer`] for load generators and simulations.
//!
//! salty's portable code needs about 2 ms per verification on a host; ed25519-dalek about 42 µs (see
//! `mediator-bench`). Both accept exactly the same signatures (the rules are in the parent module):
//! `verify_strict` bounds `S`, rejects small-order `R`, and — with the explicit
//! [`VerifyingKey::is_weak`] check below — rejects the small-order keys too.

use super::{PublicKey, Signature, SignatureError, Signer, Verifier};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

/// Verifies with ed25519-dalek's `verify_strict`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DalekVerifier;

impl Verifier for DalekVerifier {
    fn verify(&self, key: &PublicKey, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        let key =
            VerifyingKey::from_bytes(key.as_bytes()).map_err(|_| SignatureError::InvalidKey)?;
        if key.is_weak() {
            return Err(SignatureError::InvalidKey);
        }
        key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig.as_bytes()))
            .map_err(|_| SignatureError::BadSignature)
    }
}

/// Signs with ed25519-dalek (the same RFC 8032 bytes as [`Keypair`](super::Keypair), tens of times
/// faster on a host). Load generators and simulations use it to play many clients.
#[derive(Clone)]
pub struct DalekSigner(SigningKey);

impl DalekSigner {
    /// The key pair of a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> DalekSigner {
        DalekSigner(SigningKey::from_bytes(seed))
    }
}

impl core::fmt::Debug for DalekSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DalekSigner")
            .field("public", &Signer::public_key(self))
            .finish_non_exhaustive()
    }
}

impl Signer for DalekSigner {
    fn public_key(&self) -> PublicKey {
        PublicKey::from_bytes(self.0.verifying_key().to_bytes())
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        Signature::from_bytes(self.0.sign(msg).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Keypair, SaltyVerifier};

    /// ℓ, little-endian.
    const GROUP_ORDER: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    #[test]
    fn signs_like_salty_and_both_verify() {
        let salty = Keypair::from_seed(&[9; 32]);
        let dalek = DalekSigner::from_seed(&[9; 32]);
        assert_eq!(Signer::public_key(&dalek), salty.public_key());
        let sig = Signer::sign(&dalek, b"transcript");
        assert_eq!(sig, salty.sign(b"transcript"));
        let key = salty.public_key();
        assert_eq!(DalekVerifier.verify(&key, b"transcript", &sig), Ok(()));
        assert_eq!(SaltyVerifier.verify(&key, b"transcript", &sig), Ok(()));
        assert_eq!(
            DalekVerifier.verify(&key, b"other", &sig),
            Err(SignatureError::BadSignature)
        );
    }

    /// The cases where a lax verifier would differ: S + ℓ, a small-order key, a key that is no point.
    #[test]
    fn strict_like_salty_verifier() {
        let keypair = Keypair::from_seed(&[5; 32]);
        let mut malleated = keypair.sign(b"m").to_bytes();
        let mut carry = 0u16;
        for (s, l) in malleated[32..].iter_mut().zip(GROUP_ORDER) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        let malleated = Signature::from_bytes(malleated);
        let key = keypair.public_key();
        assert_eq!(
            DalekVerifier.verify(&key, b"m", &malleated),
            SaltyVerifier.verify(&key, b"m", &malleated)
        );
        assert!(DalekVerifier.verify(&key, b"m", &malleated).is_err());

        // The identity point (small order): anyone can "sign" for it with R = identity, S = 0.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let forged = Signature::from_bytes(forged);
        let weak = PublicKey::from_bytes(identity);
        assert_eq!(
            DalekVerifier.verify(&weak, b"m", &forged),
            Err(SignatureError::InvalidKey)
        );
        assert!(SaltyVerifier.verify(&weak, b"m", &forged).is_err());

        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        let sig = keypair.sign(b"m");
        assert_eq!(
            DalekVerifier.verify(&PublicKey::from_bytes(not_a_point), b"m", &sig),
            Err(SignatureError::InvalidKey)
        );
    }
}
