//! The identities of the fuzz targets, made once per process from fixed seeds.
//!
//! Few of them on purpose: registrations of one key collide, wanted keys are present, and the same
//! transcripts come back input after input, so that the signature caches of [`crate::crypto`] hit.

use std::sync::OnceLock;

use p2psc::identity::dalek::DalekSigner;
use p2psc::identity::{Keypair, PublicKey};

/// How many identities there are.
pub const IDENTITIES: usize = 4;

/// One identity: the device's salty key pair and the same key on ed25519-dalek (identical signatures,
/// RFC 8032 signing is deterministic), which signs about 50 times faster on a host.
pub struct Identity {
    /// The key pair as a device holds it (salty).
    pub keypair: Keypair,
    /// The same key on ed25519-dalek.
    pub dalek: DalekSigner,
    /// Its public key.
    pub public: PublicKey,
}

/// Identity `i` (modulo [`IDENTITIES`]).
pub fn identity(i: usize) -> &'static Identity {
    static ALL: OnceLock<Vec<Identity>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        (0..IDENTITIES)
            .map(|i| {
                let seed = [0x51 + i as u8; 32];
                let keypair = Keypair::from_seed(&seed);
                let public = keypair.public_key();
                let dalek = DalekSigner::from_seed(&seed);
                Identity {
                    keypair,
                    dalek,
                    public,
                }
            })
            .collect()
    });
    &all[i % IDENTITIES]
}

/// The public key of identity `i`.
pub fn public(i: usize) -> PublicKey {
    identity(i).public
}
