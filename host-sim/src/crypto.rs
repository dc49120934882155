//! Ed25519 on ed25519-dalek for the simulated hosts.
//!
//! The peers sign through p2psc's [`Signer`] trait and the mediator verifies through its
//! [`Verifier`](p2psc::identity::Verifier) trait, exactly as a host application and the
//! `p2psc-mediator` server do. On a host, salty's portable code needs 1–3 ms per operation,
//! ed25519-dalek tens of microseconds; signatures are the same RFC 8032 bytes either way. The peers
//! still verify each other with p2psc's own salty verifier (that is what `p2psc::connector::connect`
//! uses), so the code a device runs is what the simulation runs.

use p2psc::identity::dalek::DalekSigner;
pub use p2psc::identity::dalek::DalekVerifier;
use p2psc::identity::{PublicKey, Signature, Signer};

/// A peer identity: signs with ed25519-dalek. `claim` lets a test present one key and sign with
/// another (the mediator must answer that with `BadProof`).
#[derive(Clone)]
pub struct SimSigner {
    key: DalekSigner,
    claim: Option<PublicKey>,
}

impl SimSigner {
    /// The identity of a 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> SimSigner {
        SimSigner {
            key: DalekSigner::from_seed(seed),
            claim: None,
        }
    }

    /// An impostor: claims `key` but signs with its own secret.
    pub fn claiming(mut self, key: PublicKey) -> SimSigner {
        self.claim = Some(key);
        self
    }
}

impl core::fmt::Debug for SimSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SimSigner")
            .field("public", &Signer::public_key(self))
            .finish_non_exhaustive()
    }
}

impl Signer for SimSigner {
    fn public_key(&self) -> PublicKey {
        self.claim.unwrap_or_else(|| self.key.public_key())
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        self.key.sign(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2psc::identity::{Keypair, SaltyVerifier, Verifier};

    #[test]
    fn same_signatures_as_salty_and_both_verifiers_agree() {
        let seed = [5u8; 32];
        let (salty, dalek) = (Keypair::from_seed(&seed), SimSigner::from_seed(&seed));
        assert_eq!(Signer::public_key(&salty), dalek.public_key());
        let sig = dalek.sign(b"transcript");
        assert_eq!(Signer::sign(&salty, b"transcript"), sig);
        let key = dalek.public_key();
        assert_eq!(DalekVerifier.verify(&key, b"transcript", &sig), Ok(()));
        assert_eq!(SaltyVerifier.verify(&key, b"transcript", &sig), Ok(()));
        assert!(DalekVerifier.verify(&key, b"other", &sig).is_err());
        let liar = SimSigner::from_seed(&[6; 32]).claiming(key);
        assert_eq!(liar.public_key(), key);
        assert!(DalekVerifier
            .verify(&key, b"transcript", &liar.sign(b"transcript"))
            .is_err());
    }
}
