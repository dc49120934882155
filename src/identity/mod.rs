//! Ed25519 identities: a peer *is* its public key.
//!
//! Every peer and the mediator own a [`Keypair`] and are known to the others by its [`PublicKey`]
//! (32 bytes, the RFC 8032 §5.1.2 encoding). A peer proves who it is by signing with [`Keypair::sign`];
//! whoever checks uses a [`Verifier`]. Signing and the default verifier ([`SaltyVerifier`]) run on the
//! [`salty`] crate, which is `no_std`, allocation-free and has hand-written assembly for Cortex-M4/M7/M33.
//!
//! # Which signatures are valid
//!
//! RFC 8032 §5.1.7 leaves implementations some latitude, and a device and a server that disagree about
//! a signature would be a bug. p2psc accepts exactly what ed25519-dalek's `VerifyingKey::verify_strict`
//! accepts, and every [`Verifier`] must do the same:
//!
//! - `S` (the second half of the signature) must be less than the group order ℓ (§5.1.7 step 1).
//!   Without this check a signature can be altered into a second valid one (`S + ℓ`).
//! - The public key `A` must decode to a curve point (§5.1.3) and must not be one of the eight points of
//!   small order: for such a "weak" key, signatures can be made without any secret.
//! - `R` (the first half) must not encode a point of small order, and must equal, byte for byte, the
//!   encoding of `[S]B - [k]A` (the cofactorless equation, §5.1.7 step 3 without the factor 8).
//!
//! salty by itself checks only the last equation (it does not bound `S`, nor reject weak keys), so
//! [`PublicKey::verify`] adds the other checks, which cost a few byte comparisons.
//!
//! # Cost
//!
//! salty links its fast assembly only for `thumbv7em` and `thumbv8m.main`; everywhere else, the host
//! included, it uses a slow portable implementation (host: about 1–2 ms per signature, 2–3 ms per
//! verification; Cortex-M0 is about 50 times slower than Cortex-M4). A server that verifies many
//! signatures should implement [`Verifier`] with a fast host crate. [`Keypair::from_seed`] and
//! `Keypair::clone` cost one scalar multiplication each, about as much as a signature.
//!
//! # Secrets
//!
//! A [`Keypair`] holds its 32-byte seed (RFC 8032 calls it the private key) next to salty's expanded key,
//! so that it can be cloned and written to a file. Both are overwritten when the `Keypair` is dropped;
//! copies left behind by moves are not. `Debug` and `defmt::Format` print only the public key, and p2psc
//! offers no accessor for the seed: firmware that generated the seed already has it, and hosts store keys
//! with `Keypair::to_pkcs8_pem` (feature `std`).
//!
//! # Key files
//!
//! Keys are read in the formats OpenSSL uses, so that `openssl genpkey -algorithm ed25519 -out key.pem`
//! makes an identity and `openssl pkey -in key.pem -pubout` shows its public key: PKCS#8 (RFC 5958,
//! versions 1 and 2) for a [`Keypair`], SubjectPublicKeyInfo (RFC 8410) for a [`PublicKey`].
//!
//! - Feature `pkcs8`: their DER form (`Keypair::from_pkcs8_der`, `PublicKey::from_public_key_der`),
//!   `no_std` and without an allocator, for firmware that reads a key from flash or a file system.
//! - Feature `std` (which includes `pkcs8`): their PEM form ("PRIVATE KEY", "PUBLIC KEY"), read and
//!   written byte for byte as OpenSSL writes it.
//!
//! Public keys also read and print as 64 hexadecimal digits ([`PublicKey::from_hex`], which works in
//! `const` context, and `{:x}`), in every configuration. [`doc/keys.md`] covers making
//! keys, putting them on a device, secure elements and rotation.
//!
//! [`doc/keys.md`]: https://docs.rs/crate/p2psc/latest/source/doc/keys.md

#[cfg(feature = "dalek")]
#[cfg_attr(docsrs, doc(cfg(feature = "dalek")))]
pub mod dalek;
#[cfg(feature = "pkcs8")]
mod der;
mod hex;
mod keypair;
#[cfg(feature = "std")]
mod pem;
#[cfg(test)]
mod test_vectors;
mod verify;

use core::fmt;

pub use keypair::{Keypair, PublicKey, Signature};
pub use verify::{SaltyVerifier, SignatureError};

/// Length of an encoded Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature (`R` then `S`).
pub const SIGNATURE_LEN: usize = 64;
/// Length of the secret seed a [`Keypair`] is derived from (RFC 8032's "private key").
pub const SEED_LEN: usize = 32;

/// Signing as a pluggable service: [`Keypair`] signs with salty; a host can sign with a faster crate, and a
/// device with a secure element can keep its key there. Implementations must produce RFC 8032 Ed25519
/// signatures (deterministic or not; verifiers do not care).
pub trait Signer {
    /// The public key signatures verify under.
    fn public_key(&self) -> PublicKey;
    /// Sign `msg`.
    fn sign(&self, msg: &[u8]) -> Signature;
}

impl<S: Signer + ?Sized> Signer for &S {
    fn public_key(&self) -> PublicKey {
        (**self).public_key()
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        (**self).sign(msg)
    }
}

/// Signature verification as a pluggable service: the mediator server verifies with a fast host crate,
/// the device with salty ([`SaltyVerifier`]).
///
/// An implementation must accept exactly the signatures [`PublicKey::verify`] accepts (see the
/// [module docs](self)); ed25519-dalek's `VerifyingKey::verify_strict` does. It should return
/// [`SignatureError::InvalidKey`] when the key itself is unusable and
/// [`SignatureError::BadSignature`] otherwise, but callers must treat both as "not authenticated".
pub trait Verifier {
    /// Check that `sig` is `key`'s signature over `msg`.
    fn verify(&self, key: &PublicKey, msg: &[u8], sig: &Signature) -> Result<(), SignatureError>;
}

impl<V: Verifier + ?Sized> Verifier for &V {
    fn verify(&self, key: &PublicKey, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        (**self).verify(key, msg, sig)
    }
}

/// Why a key could not be read.
///
/// Only [`InvalidHex`](Self::InvalidHex) can occur without the `pkcs8` feature, and
/// [`Pem`](Self::Pem) only with `std`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KeyError {
    /// Not exactly 64 hexadecimal digits.
    InvalidHex,
    /// Not a PEM document (RFC 7468) with the expected label (`PRIVATE KEY` for a key pair,
    /// `PUBLIC KEY` for a public key), or its base64 is broken.
    Pem,
    /// A password-protected PKCS#8 key (`EncryptedPrivateKeyInfo`, PEM label `ENCRYPTED PRIVATE KEY`),
    /// which p2psc does not decrypt; `openssl pkey -in KEY -out PLAIN` removes the password.
    Encrypted,
    /// A well-formed key of another algorithm (RSA, X25519, Ed448, …).
    NotEd25519,
    /// The DER (or the DER inside the PEM) is not a valid PKCS#8 or SubjectPublicKeyInfo Ed25519 key.
    Malformed,
    /// A PKCS#8 v2 key whose embedded public key is not the one its seed derives.
    PublicKeyMismatch,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidHex => "public key is not 64 hex digits",
            Self::Pem => "not a PEM key of the expected type",
            Self::Encrypted => "encrypted private key (remove the password first)",
            Self::NotEd25519 => "key is not an Ed25519 key",
            Self::Malformed => "malformed key",
            Self::PublicKeyMismatch => "public key in the key file does not match its private key",
        })
    }
}

impl core::error::Error for KeyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_trait() {
        fn check<V: Verifier>(
            v: V,
            key: &PublicKey,
            sig: &Signature,
        ) -> Result<(), SignatureError> {
            v.verify(key, b"hello", sig)
        }
        let keypair = Keypair::from_seed(&[1; 32]);
        let sig = keypair.sign(b"hello");
        let key = keypair.public_key();
        assert_eq!(check(SaltyVerifier, &key, &sig), Ok(()));
        let by_ref: &SaltyVerifier = &SaltyVerifier;
        assert_eq!(check(by_ref, &key, &sig), Ok(()));
        let dynamic: &dyn Verifier = &SaltyVerifier;
        assert_eq!(check(dynamic, &key, &sig), Ok(()));
        let other = Keypair::from_seed(&[2; 32]).public_key();
        assert_eq!(
            check(SaltyVerifier, &other, &sig),
            Err(SignatureError::BadSignature)
        );
    }
}
