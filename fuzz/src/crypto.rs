//! Signing and verification for harnesses, memoised per process.
//!
//! Ed25519 signing is deterministic and verification is a pure function, so a cached answer is the
//! answer: the caches change the speed of a target, never what it computes. Verification runs on
//! ed25519-dalek (`p2psc::identity::dalek`, ~40 µs instead of salty's ~1.6 ms on a host); it accepts
//! exactly what salty accepts, which the `verify` target checks on mutated signatures.

use std::cell::RefCell;
use std::collections::HashMap;

use p2psc::identity::dalek::DalekVerifier;
use p2psc::identity::{PublicKey, Signature, SignatureError, Signer, Verifier};

use crate::ident::Identity;

/// Cache entries kept before a cache starts over (bounds memory on long runs).
const CACHE_LIMIT: usize = 1 << 16;

/// A signature by key: its bytes, the key and the message.
type SignKey = ([u8; 32], Vec<u8>);
/// A verification: the key, the signature and the message.
type VerifyKey = ([u8; 32], [u8; 64], Vec<u8>);

thread_local! {
    static SIGNATURES: RefCell<HashMap<SignKey, Signature>> = RefCell::default();
    static VERDICTS: RefCell<HashMap<VerifyKey, Result<(), SignatureError>>> = RefCell::default();
}

/// What one input's signers signed, to check that a verified registration was signed by its key's
/// owner in this very run.
#[derive(Default)]
pub struct SignLog(RefCell<Vec<(PublicKey, Vec<u8>)>>);

impl SignLog {
    /// Whether `key` signed `msg` during this input.
    pub fn signed(&self, key: &PublicKey, msg: &[u8]) -> bool {
        self.0.borrow().iter().any(|(k, m)| k == key && m == msg)
    }
}

/// Signs as an [`Identity`] through ed25519-dalek, memoised, and records what it signs in a [`SignLog`].
pub struct FastSigner<'a> {
    id: &'static Identity,
    log: &'a SignLog,
}

impl<'a> FastSigner<'a> {
    /// A signer for `id` that records into `log`.
    pub fn new(id: &'static Identity, log: &'a SignLog) -> Self {
        FastSigner { id, log }
    }
}

impl Signer for FastSigner<'_> {
    fn public_key(&self) -> PublicKey {
        self.id.public
    }

    fn sign(&self, msg: &[u8]) -> Signature {
        self.log.0.borrow_mut().push((self.id.public, msg.to_vec()));
        let key = (self.id.public.to_bytes(), msg.to_vec());
        SIGNATURES.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            *cache
                .entry(key)
                .or_insert_with(|| Signer::sign(&self.id.dalek, msg))
        })
    }
}

/// [`DalekVerifier`], memoised.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastVerifier;

impl Verifier for FastVerifier {
    fn verify(&self, key: &PublicKey, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        let entry = (key.to_bytes(), sig.to_bytes(), msg.to_vec());
        VERDICTS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            *cache
                .entry(entry)
                .or_insert_with(|| DalekVerifier.verify(key, msg, sig))
        })
    }
}
