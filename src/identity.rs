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
//! # Key files (feature `std`)
//!
//! Keys are read and written in the formats OpenSSL uses, so that
//! `openssl genpkey -algorithm ed25519 -out key.pem` makes an identity and
//! `openssl pkey -in key.pem -pubout` shows its public key:
//! PKCS#8 (RFC 5958, "PRIVATE KEY", versions 1 and 2) for a [`Keypair`], SubjectPublicKeyInfo
//! (RFC 8410, "PUBLIC KEY") for a [`PublicKey`]. Public keys also read and print as 64 hexadecimal
//! digits ([`PublicKey::from_hex`], which works in `const` context, and `{:x}`), in every configuration.

#[cfg(feature = "dalek")]
pub mod dalek;

use core::fmt;

/// Length of an encoded Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature (`R` then `S`).
pub const SIGNATURE_LEN: usize = 64;
/// Length of the secret seed a [`Keypair`] is derived from (RFC 8032's "private key").
pub const SEED_LEN: usize = 32;

/// How many leading bytes `Debug`, `Display` and `defmt::Format` show of a key or signature.
const SHORT_LEN: usize = 8;

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

    /// Parse exactly 64 hexadecimal digits (either case, nothing around them).
    ///
    /// Usable in `const` context, e.g. to build a mediator's key into firmware:
    /// ```
    /// use p2psc::identity::PublicKey;
    /// const MEDIATOR: PublicKey =
    ///     match PublicKey::from_hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a") {
    ///         Ok(key) => key,
    ///         Err(_) => panic!("bad mediator key"),
    ///     };
    /// assert_eq!(MEDIATOR.as_bytes()[0], 0xd7);
    /// ```
    pub const fn from_hex(hex: &str) -> Result<Self, KeyError> {
        match decode_hex(hex.as_bytes()) {
            Some(bytes) => Ok(Self(bytes)),
            None => Err(KeyError::InvalidHex),
        }
    }

    /// Verify `sig` over `msg` with salty, under the rules in the [module docs](self).
    ///
    /// [`SignatureError::InvalidKey`] if this key is not a point or is of small order,
    /// [`SignatureError::BadSignature`] otherwise.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        let mut r = [0; 32];
        let mut s = [0; 32];
        r.copy_from_slice(&sig.0[..32]);
        s.copy_from_slice(&sig.0[32..]);
        // Cheap checks first; each one rejects something salty would accept.
        if has_small_order(&self.0) {
            return Err(SignatureError::InvalidKey);
        }
        if !is_canonical_scalar(&s) || has_small_order(&r) {
            return Err(SignatureError::BadSignature);
        }
        let key = salty::PublicKey::try_from(&self.0).map_err(|_| SignatureError::InvalidKey)?;
        key.verify(msg, &salty::Signature::from(&sig.0))
            .map_err(|_| SignatureError::BadSignature)
    }
}

impl AsRef<[u8]> for PublicKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl core::str::FromStr for PublicKey {
    type Err = KeyError;

    /// Same as [`PublicKey::from_hex`].
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_hex(s)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_short_hex(f, "ed25519:", &self.0, "")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_short_hex(f, "ed25519:", &self.0, "")
    }
}

/// All 64 hex digits, lowercase; [`PublicKey::from_hex`] reads them back.
impl fmt::LowerHex for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for PublicKey {
    fn format(&self, f: defmt::Formatter<'_>) {
        let b = &self.0;
        defmt::write!(
            f,
            "ed25519:{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}…",
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7]
        );
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

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_short_hex(f, "Signature(", &self.0, ")")
    }
}

/// All 128 hex digits, lowercase.
impl fmt::LowerHex for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Signature {
    fn format(&self, f: defmt::Formatter<'_>) {
        let b = &self.0;
        defmt::write!(
            f,
            "Signature({=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}{=u8:02x}…)",
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7]
        );
    }
}

/// An Ed25519 key pair: a secret seed and the public key derived from it (RFC 8032 §5.1.5).
///
/// `Debug` prints only the public key. `Clone` re-derives the key pair from the seed, which costs one
/// scalar multiplication (see the [module docs](self) for the cost and for how the seed is kept).
pub struct Keypair {
    inner: salty::Keypair,
    /// Kept because salty does not give its copy back: needed for `Clone` and for PKCS#8 export.
    seed: [u8; SEED_LEN],
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
impl defmt::Format for Keypair {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Keypair {{ public: {}, .. }}", self.public_key());
    }
}

/// Signing as a pluggable service: [`Keypair`] signs with salty; a host can sign with a faster crate, and a
/// device with a secure element can keep its key there. Implementations must produce RFC 8032 Ed25519
/// signatures (deterministic or not; verifiers do not care).
pub trait Signer {
    /// The public key signatures verify under.
    fn public_key(&self) -> PublicKey;
    /// Sign `msg`.
    fn sign(&self, msg: &[u8]) -> Signature;
}

impl Signer for Keypair {
    fn public_key(&self) -> PublicKey {
        Keypair::public_key(self)
    }
    fn sign(&self, msg: &[u8]) -> Signature {
        Keypair::sign(self, msg)
    }
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

/// Verifies with salty, through [`PublicKey::verify`] (works everywhere; fast only on thumbv7em and
/// thumbv8m.main).
#[derive(Clone, Copy, Debug, Default)]
pub struct SaltyVerifier;

impl Verifier for SaltyVerifier {
    fn verify(&self, key: &PublicKey, msg: &[u8], sig: &Signature) -> Result<(), SignatureError> {
        key.verify(msg, sig)
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SignatureError {
    /// The public key does not decode to a curve point (RFC 8032 §5.1.3), or is one of the eight points
    /// of small order, for which a signature proves nothing.
    InvalidKey,
    /// The signature is not this key's over this message: wrong key or message, `S` not less than ℓ,
    /// or `R` a point of small order.
    BadSignature,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidKey => "invalid or weak Ed25519 public key",
            Self::BadSignature => "bad Ed25519 signature",
        })
    }
}

impl core::error::Error for SignatureError {}

/// Why a key could not be read.
///
/// Only [`InvalidHex`](Self::InvalidHex) can occur without the `std` feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KeyError {
    /// Not exactly 64 hexadecimal digits.
    InvalidHex,
    /// Not a PEM document (RFC 7468) with the expected label (`PRIVATE KEY` for a key pair,
    /// `PUBLIC KEY` for a public key), or its base64 is broken.
    Pem,
    /// A password-protected PKCS#8 key (`ENCRYPTED PRIVATE KEY`), which p2psc does not decrypt;
    /// `openssl pkey -in KEY -out PLAIN` removes the password.
    Encrypted,
    /// A well-formed key of another algorithm (RSA, X25519, Ed448, …).
    NotEd25519,
    /// The DER inside the PEM is not a valid PKCS#8 or SubjectPublicKeyInfo Ed25519 key.
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

#[cfg(feature = "std")]
mod files {
    //! PEM, PKCS#8 and SPKI through the RustCrypto `ed25519`, `pkcs8`, `spki` and `der` crates.

    use super::{wipe, KeyError, Keypair, PublicKey};
    use ed25519::pkcs8::spki::der::{self, pem::LineEnding, zeroize::Zeroizing};
    use ed25519::pkcs8::{
        self, spki, DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
        KeypairBytes, PublicKeyBytes, SecretDocument,
    };
    use std::string::String;

    /// RFC 7468 labels.
    const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
    const ENCRYPTED_PRIVATE_KEY_LABEL: &str = "ENCRYPTED PRIVATE KEY";

    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    impl PublicKey {
        /// Read a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`, RFC 8410), as written by
        /// `openssl pkey -pubout`. The key is not validated (see [`PublicKey`]).
        pub fn from_public_key_pem(pem: &str) -> Result<Self, KeyError> {
            let key = PublicKeyBytes::from_public_key_pem(pem).map_err(spki_error)?;
            Ok(Self(key.to_bytes()))
        }

        /// Write a SubjectPublicKeyInfo PEM, byte for byte what `openssl pkey -pubout` writes
        /// (LF line endings, final newline).
        pub fn to_public_key_pem(&self) -> String {
            PublicKeyBytes(self.0)
                .to_public_key_pem(LineEnding::LF)
                .expect("a 32-byte SubjectPublicKeyInfo always encodes")
        }

        /// All 64 hex digits, lowercase (same as `format!("{:x}", key)`).
        pub fn to_hex(&self) -> String {
            std::format!("{self:x}")
        }
    }

    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    impl Keypair {
        /// Read a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, RFC 5958 / RFC 8410), as written by
        /// `openssl genpkey -algorithm ed25519`.
        ///
        /// Both versions are accepted; if a v2 key carries a public key, it must be the one the seed
        /// derives ([`KeyError::PublicKeyMismatch`] otherwise). Encrypted keys are refused with
        /// [`KeyError::Encrypted`].
        pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
            // Decoding the PEM ourselves tells an encrypted key from a wrong one.
            let (label, der) = SecretDocument::from_pem(pem).map_err(|e| der_error(&e))?;
            match label {
                PRIVATE_KEY_LABEL => {}
                ENCRYPTED_PRIVATE_KEY_LABEL => return Err(KeyError::Encrypted),
                _ => return Err(KeyError::Pem),
            }
            let mut bytes = KeypairBytes::from_pkcs8_der(der.as_bytes()).map_err(pkcs8_error)?;
            let keypair = Keypair::from_seed(&bytes.secret_key);
            // `ed25519` wipes its copy only with its `zeroize` feature, which p2psc does not enable.
            wipe(&mut bytes.secret_key);
            match bytes.public_key {
                Some(public) if public.to_bytes() != keypair.public_key().0 => {
                    Err(KeyError::PublicKeyMismatch)
                }
                _ => Ok(keypair),
            }
        }

        /// Write a PKCS#8 v1 PEM, byte for byte what `openssl genpkey -algorithm ed25519` writes
        /// (LF line endings, final newline). The text holds the secret; it is wiped when dropped.
        pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
            // v1, without the public key, like OpenSSL: every reader recomputes it anyway.
            let mut bytes = KeypairBytes {
                secret_key: self.seed,
                public_key: None,
            };
            let pem = bytes.to_pkcs8_pem(LineEnding::LF);
            wipe(&mut bytes.secret_key);
            pem.expect("a 32-byte PKCS#8 key always encodes")
        }
    }

    fn der_error(e: &der::Error) -> KeyError {
        match e.kind() {
            der::ErrorKind::Pem(_) => KeyError::Pem,
            _ => KeyError::Malformed,
        }
    }

    fn spki_error(e: spki::Error) -> KeyError {
        match e {
            spki::Error::OidUnknown { .. } => KeyError::NotEd25519,
            spki::Error::Asn1(e) => der_error(&e),
            _ => KeyError::Malformed,
        }
    }

    fn pkcs8_error(e: pkcs8::Error) -> KeyError {
        match e {
            pkcs8::Error::PublicKey(e) => spki_error(e),
            pkcs8::Error::Asn1(e) => der_error(&e),
            _ => KeyError::Malformed,
        }
    }
}

/// The group order ℓ = 2^252 + 27742317777372353535851937790883648493 (RFC 8032 §5.1), little-endian.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// Whether the little-endian number `s` is less than ℓ (RFC 8032 §5.1.7 step 1).
fn is_canonical_scalar(s: &[u8; 32]) -> bool {
    for (a, l) in s.iter().rev().zip(GROUP_ORDER.iter().rev()) {
        if a != l {
            return a < l;
        }
    }
    false // s == ℓ
}

/// p + k for small k, little-endian, where p = 2^255 - 19 is the field prime.
const fn p_plus(k: u8) -> [u8; 32] {
    let mut bytes = [0xff; 32];
    bytes[0] = 0xed + k;
    bytes[31] = 0x7f;
    bytes
}

/// The y coordinates of the eight points of small order, with the x sign bit (bit 255) cleared, in
/// every encoding that decodes (y and, for y < 19, y + p). Same list as libsodium's
/// `ge25519_has_small_order`; checked against curve25519-dalek's `EIGHT_TORSION` in the tests.
const SMALL_ORDER_Y: [[u8; 32]; 7] = [
    // y = 0: the two points of order 4
    [0; 32],
    // y = 1: the neutral element
    {
        let mut one = [0; 32];
        one[0] = 1;
        one
    },
    // the four points of order 8 (two y values, each with both signs of x)
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // y = p - 1 = -1: the point of order 2
    {
        let mut minus_one = p_plus(0);
        minus_one[0] = 0xec;
        minus_one
    },
    // y = p and y = p + 1: non-canonical encodings of 0 and 1
    p_plus(0),
    p_plus(1),
];

/// Whether `encoding` decodes to a point of small order (order 1, 2, 4 or 8).
fn has_small_order(encoding: &[u8; 32]) -> bool {
    let mut y = *encoding;
    y[31] &= 0x7f; // the sign of x does not change the order
    SMALL_ORDER_Y.contains(&y)
}

/// Overwrite a secret so that it does not outlive its owner in memory.
fn wipe(secret: &mut [u8; 32]) {
    // A volatile write, so that the compiler cannot drop this last store to memory about to be freed.
    // SAFETY: `secret` is a valid, aligned and exclusive reference.
    unsafe { core::ptr::write_volatile(secret, [0; 32]) };
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

const fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const fn decode_hex(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    let mut i = 0;
    while i < 32 {
        let (Some(hi), Some(lo)) = (hex_digit(hex[2 * i]), hex_digit(hex[2 * i + 1])) else {
            return None;
        };
        out[i] = hi << 4 | lo;
        i += 1;
    }
    Some(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

fn write_short_hex(
    f: &mut fmt::Formatter<'_>,
    prefix: &str,
    bytes: &[u8],
    suffix: &str,
) -> fmt::Result {
    f.write_str(prefix)?;
    write_hex(f, &bytes[..SHORT_LEN])?;
    f.write_str("…")?;
    f.write_str(suffix)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
    use hex_literal::hex;
    use proptest::prelude::*;
    use std::{format, string::String, vec::Vec};

    struct Vector {
        name: &'static str,
        seed: [u8; 32],
        public: [u8; 32],
        msg: &'static [u8],
        sig: [u8; 64],
    }

    /// RFC 8032 section 7.1.
    const RFC8032: [Vector; 5] = [
        Vector {
            name: "TEST 1",
            seed: hex!("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
            public: hex!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
            msg: &[],
            sig: hex!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            ),
        },
        Vector {
            name: "TEST 2",
            seed: hex!("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
            public: hex!("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
            msg: &hex!("72"),
            sig: hex!(
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
            ),
        },
        Vector {
            name: "TEST 3",
            seed: hex!("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"),
            public: hex!("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"),
            msg: &hex!("af82"),
            sig: hex!(
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
                "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
            ),
        },
        Vector {
            name: "TEST 1024",
            seed: hex!("f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5"),
            public: hex!("278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e"),
            msg: &MSG_1024,
            sig: hex!(
                "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
                "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03"
            ),
        },
        Vector {
            name: "TEST SHA(abc)",
            seed: hex!("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42"),
            public: hex!("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf"),
            // SHA-512("abc")
            msg: &hex!(
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
            ),
            sig: hex!(
                "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
                "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"
            ),
        },
    ];

    const MSG_1024: [u8; 1023] = hex!(
        "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1"
        "e355f6c50544e23fb1433ddf73be84d879de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
        "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc1a858efcb8550ee3a5e1998bd177e93a"
        "7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
        "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbefefd75499da96bd68a8a97b928a8bbc10"
        "3b6621fcde2beca1231d206be6cd9ec7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
        "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2d17ba70eb6248e594e1a2297acbbb39d"
        "502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
        "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089b"
        "eccf80cfe2df16a2cf65bd92dd597b0707e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
        "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51addd3b75a2b1ae0784504df543af8969b"
        "e3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
        "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988d"
        "cda6f3bfd15c4b4c4525004aa06eeff8ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
        "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d78ff4ef5d63653a65040cf9bfd4aca7"
        "984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
        "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac09"
        "43bf6686b64b2579376504ccc493d97e6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
        "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50d334ba77c225bc307ba537152f3f161"
        "0e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
        "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8ca"
        "c60c905c15fc910840b94c00a0b9d0"
    );

    fn flip(bytes: &mut [u8], bit: usize) {
        bytes[bit / 8] ^= 1 << (bit % 8);
    }

    /// What ed25519-dalek's `verify_strict` says, for keys and signatures of any bytes.
    fn dalek_accepts(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
        VerifyingKey::from_bytes(key).is_ok_and(|key| {
            key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
                .is_ok()
        })
    }

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
    fn wycheproof() {
        fn unhex(s: &str) -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        }
        fn string_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
            let rest = line.strip_prefix(&format!("\"{name}\" : \""))?;
            Some(&rest[..rest.find('"')?])
        }
        let json = include_str!("../tests/fixtures/wycheproof/eddsa_test.json");
        let (mut key, mut msg, mut sig) = ([0; 32], Vec::new(), Vec::new());
        let (mut tests, mut valid) = (0, 0);
        for line in json.lines().map(str::trim) {
            if let Some(pk) = string_field(line, "pk") {
                key.copy_from_slice(&unhex(pk));
            } else if let Some(m) = string_field(line, "msg") {
                msg = unhex(m);
            } else if let Some(s) = string_field(line, "sig") {
                sig = unhex(s);
            } else if let Some(result) = string_field(line, "result") {
                tests += 1;
                let Ok(sig) = <[u8; 64]>::try_from(&sig[..]) else {
                    assert_eq!(result, "invalid", "{} bytes signature", sig.len());
                    continue;
                };
                let ours = PublicKey::from_bytes(key).verify(&msg, &Signature::from_bytes(sig));
                assert_eq!(
                    ours.is_ok(),
                    result == "valid",
                    "key {:?} sig {:?}",
                    key,
                    sig
                );
                assert_eq!(
                    ours.is_ok(),
                    dalek_accepts(&key, &msg, &sig),
                    "key {:?}",
                    key
                );
                valid += usize::from(ours.is_ok());
            }
        }
        assert_eq!((tests, valid), (145, 84));
    }

    /// The blocklist holds exactly the encodings of the eight points of small order.
    #[test]
    fn small_order_list_matches_dalek() {
        use curve25519_dalek::{constants::EIGHT_TORSION, edwards::CompressedEdwardsY};
        for point in EIGHT_TORSION {
            assert!(has_small_order(&point.compress().to_bytes()), "{point:?}");
        }
        for y in SMALL_ORDER_Y {
            for sign in [0, 0x80] {
                let mut encoding = y;
                encoding[31] |= sign;
                let point = CompressedEdwardsY(encoding).decompress().unwrap();
                assert!(point.is_small_order(), "{encoding:02x?}");
            }
        }
        // A valid key is not flagged.
        assert!(!has_small_order(&RFC8032[0].public));
    }

    #[test]
    fn group_order_matches_dalek() {
        use curve25519_dalek::Scalar;
        let canonical = |s: [u8; 32]| bool::from(Scalar::from_canonical_bytes(s).is_some());
        let mut below = GROUP_ORDER;
        below[0] -= 1;
        let mut above = GROUP_ORDER;
        above[0] += 1;
        let mut top_byte = [0; 32];
        top_byte[31] = 0x10;
        for s in [
            [0; 32],
            below,
            GROUP_ORDER,
            above,
            top_byte,
            [0xff; 32],
            RFC8032[2].sig[32..].try_into().unwrap(),
        ] {
            assert_eq!(is_canonical_scalar(&s), canonical(s), "{s:02x?}");
        }
        assert!(is_canonical_scalar(&below) && !is_canonical_scalar(&GROUP_ORDER));
    }

    /// With the neutral element as key, R = neutral and S = 0 satisfy salty's equation for every
    /// message; p2psc must refuse the key.
    #[test]
    fn weak_key_is_rejected() {
        let mut neutral = [0; 32];
        neutral[0] = 1;
        let mut forged = [0; 64];
        forged[0] = 1;
        let salty_key = salty::PublicKey::try_from(&neutral).unwrap();
        assert!(salty_key
            .verify(b"anything", &salty::Signature::from(&forged))
            .is_ok());

        let key = PublicKey::from_bytes(neutral);
        let forged = Signature::from_bytes(forged);
        assert_eq!(
            key.verify(b"anything", &forged),
            Err(SignatureError::InvalidKey)
        );
        assert!(!dalek_accepts(&neutral, b"anything", forged.as_bytes()));
    }

    /// With R = neutral element and S = k·a (a: the key's discrete log, k = H(R || A || M)),
    /// [S]B - [k]A = R holds; a signature with a small-order R must still be refused.
    #[test]
    fn small_order_r_is_rejected() {
        use curve25519_dalek::{constants::ED25519_BASEPOINT_POINT, Scalar};
        let a = Scalar::from(123_456_789_u64);
        let key = (a * ED25519_BASEPOINT_POINT).compress().to_bytes();
        let mut r = [0; 32];
        r[0] = 1;
        let msg = b"small R";
        let hash = salty::Sha512::new()
            .updated(&r)
            .updated(&key)
            .updated(msg)
            .finalize();
        let s = Scalar::from_bytes_mod_order_wide(&hash) * a;
        let mut sig = [0; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(s.as_bytes());
        let salty_key = salty::PublicKey::try_from(&key).unwrap();
        assert!(salty_key.verify(msg, &salty::Signature::from(&sig)).is_ok());

        let sig = Signature::from_bytes(sig);
        assert_eq!(
            PublicKey::from_bytes(key).verify(msg, &sig),
            Err(SignatureError::BadSignature)
        );
        assert!(!dalek_accepts(&key, msg, sig.as_bytes()));
    }

    /// S + ℓ is the same scalar to salty's multiplication; p2psc must refuse it (RFC 8032 §5.1.7).
    #[test]
    fn malleated_signature_is_rejected() {
        let v = &RFC8032[1];
        let mut malleated = v.sig;
        let mut carry = 0u16;
        for (s, l) in malleated[32..].iter_mut().zip(GROUP_ORDER) {
            let sum = u16::from(*s) + u16::from(l) + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        let salty_key = salty::PublicKey::try_from(&v.public).unwrap();
        assert!(salty_key
            .verify(v.msg, &salty::Signature::from(&malleated))
            .is_ok());

        let key = PublicKey::from_bytes(v.public);
        let malleated = Signature::from_bytes(malleated);
        assert_eq!(
            key.verify(v.msg, &malleated),
            Err(SignatureError::BadSignature)
        );
        assert!(!dalek_accepts(&v.public, v.msg, malleated.as_bytes()));
    }

    #[test]
    fn invalid_point_is_rejected() {
        // y = 2 is not the y coordinate of any curve point.
        let mut y2 = [0; 32];
        y2[0] = 2;
        assert!(VerifyingKey::from_bytes(&y2).is_err());
        let sig = Keypair::from_seed(&[7; 32]).sign(b"m");
        assert_eq!(
            PublicKey::from_bytes(y2).verify(b"m", &sig),
            Err(SignatureError::InvalidKey)
        );
    }

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

    #[test]
    fn short_and_full_forms() {
        let key = PublicKey::from_bytes(RFC8032[0].public);
        assert_eq!(format!("{key}"), "ed25519:d75a980182b10ab7…");
        assert_eq!(format!("{key:?}"), "ed25519:d75a980182b10ab7…");
        assert_eq!(
            format!("{key:x}"),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = Signature::from_bytes(RFC8032[0].sig);
        assert_eq!(format!("{sig:?}"), "Signature(e5564300c360ac72…)");
        assert_eq!(format!("{sig:x}").len(), 128);
        assert!(format!("{sig:x}").starts_with("e5564300c360ac72"));
        assert_eq!(
            format!("{}", SignatureError::InvalidKey),
            "invalid or weak Ed25519 public key"
        );
    }

    #[test]
    fn hex_parsing() {
        const KEY: PublicKey = match PublicKey::from_hex(
            "D75A980182B10AB7D54BFED3C964073A0EE172F3DAA62325AF021A68F707511A",
        ) {
            Ok(key) => key,
            Err(_) => panic!(),
        };
        assert_eq!(KEY.as_bytes(), &RFC8032[0].public);
        let full = format!("{KEY:x}");
        assert_eq!(full.parse::<PublicKey>(), Ok(KEY));
        for bad in [
            String::new(),
            String::from(&full[..63]),
            format!("{full}0"),
            format!(" {}", &full[1..]),
            format!("{}g", &full[..63]),
            format!("ed25519:{full}"),
            format!("{}é", &full[..62]), // 64 bytes, not 64 digits
        ] {
            assert_eq!(
                bad.parse::<PublicKey>(),
                Err(KeyError::InvalidHex),
                "{bad:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// salty and ed25519-dalek make the same signature (Ed25519 is deterministic), and each
        /// verifies the other's.
        #[test]
        fn salty_and_dalek_interoperate(seed in any::<[u8; 32]>(), msg in prop::collection::vec(any::<u8>(), 0..300)) {
            let ours = Keypair::from_seed(&seed);
            let theirs = SigningKey::from_bytes(&seed);
            prop_assert_eq!(ours.public_key().to_bytes(), theirs.verifying_key().to_bytes());

            let our_sig = ours.sign(&msg);
            prop_assert!(theirs.verifying_key().verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(our_sig.as_bytes())).is_ok());
            let their_sig = Signature::from_bytes(theirs.sign(&msg).to_bytes());
            prop_assert_eq!(SaltyVerifier.verify(&ours.public_key(), &msg, &their_sig), Ok(()));
            prop_assert_eq!(our_sig, their_sig);
        }

        /// After one flipped bit anywhere in key, signature or message, salty and ed25519-dalek still
        /// agree (and both reject).
        #[test]
        fn tampering_agrees_with_dalek(seed in any::<[u8; 32]>(), msg in prop::collection::vec(any::<u8>(), 1..100), bit in any::<prop::sample::Index>()) {
            let keypair = Keypair::from_seed(&seed);
            let mut key = keypair.public_key().to_bytes();
            let mut sig = keypair.sign(&msg).to_bytes();
            let mut msg = msg;
            let bit = bit.index(8 * (32 + 64 + msg.len()));
            match bit / 8 {
                0..32 => flip(&mut key, bit),
                32..96 => flip(&mut sig, bit - 8 * 32),
                _ => flip(&mut msg, bit - 8 * 96),
            }
            let ours = PublicKey::from_bytes(key).verify(&msg, &Signature::from_bytes(sig));
            prop_assert!(ours.is_err());
            prop_assert_eq!(ours.is_ok(), dalek_accepts(&key, &msg, &sig));
        }
    }

    #[cfg(feature = "std")]
    mod files {
        use super::super::*;
        use ed25519::pkcs8::spki::der::{pem, pem::LineEnding};
        use ed25519::pkcs8::{EncodePrivateKey, KeypairBytes, PublicKeyBytes, SecretDocument};
        use proptest::prelude::*;
        use std::{string::String, vec::Vec};

        const ALICE: &str = include_str!("../tests/fixtures/alice.pem");
        const ALICE_PUB: &str = include_str!("../tests/fixtures/alice.pub.pem");
        const BOB: &str = include_str!("../tests/fixtures/bob.pem");
        const BOB_PUB: &str = include_str!("../tests/fixtures/bob.pub.pem");

        #[test]
        fn openssl_keys_match_their_public_keys() {
            for (private, public) in [(ALICE, ALICE_PUB), (BOB, BOB_PUB)] {
                let keypair = Keypair::from_pkcs8_pem(private).unwrap();
                let key = PublicKey::from_public_key_pem(public).unwrap();
                assert_eq!(keypair.public_key(), key);
            }
            // As printed by `openssl pkey -in alice.pem -text -noout`.
            assert_eq!(
                PublicKey::from_public_key_pem(ALICE_PUB).unwrap().to_hex(),
                "7dccfdb9cae36575907dbfd97ae050fb185d400f8617a29844d7c5e037f632d6"
            );
            assert_ne!(
                PublicKey::from_public_key_pem(ALICE_PUB),
                PublicKey::from_public_key_pem(BOB_PUB)
            );
        }

        #[test]
        fn same_signature_as_openssl() {
            let msg = include_bytes!("../tests/fixtures/alice.msg");
            let openssl = Signature::from_bytes(*include_bytes!("../tests/fixtures/alice.msg.sig"));
            let keypair = Keypair::from_pkcs8_pem(ALICE).unwrap();
            assert_eq!(keypair.sign(msg), openssl);
            assert_eq!(keypair.public_key().verify(msg, &openssl), Ok(()));
        }

        #[test]
        fn writes_what_openssl_writes() {
            for (private, public) in [(ALICE, ALICE_PUB), (BOB, BOB_PUB)] {
                let keypair = Keypair::from_pkcs8_pem(private).unwrap();
                assert_eq!(keypair.to_pkcs8_pem().trim_end(), private.trim_end());
                assert_eq!(
                    keypair.public_key().to_public_key_pem().trim_end(),
                    public.trim_end()
                );
            }
        }

        #[test]
        fn pem_round_trip() {
            let keypair = Keypair::from_seed(&[42; 32]);
            let again = Keypair::from_pkcs8_pem(&keypair.to_pkcs8_pem()).unwrap();
            assert_eq!(again.public_key(), keypair.public_key());
            assert_eq!(again.sign(b"x"), keypair.sign(b"x"));
            let key = keypair.public_key();
            assert_eq!(
                PublicKey::from_public_key_pem(&key.to_public_key_pem()),
                Ok(key)
            );
            assert_eq!(key.to_hex().parse::<PublicKey>(), Ok(key));
        }

        fn v2_pem(seed: [u8; 32], public: [u8; 32]) -> String {
            let bytes = KeypairBytes {
                secret_key: seed,
                public_key: Some(PublicKeyBytes(public)),
            };
            String::from(bytes.to_pkcs8_pem(LineEnding::LF).unwrap().as_str())
        }

        #[test]
        fn pkcs8_v2() {
            let keypair = Keypair::from_seed(&[3; 32]);
            let v2 = v2_pem([3; 32], keypair.public_key().to_bytes());
            assert_ne!(v2, *keypair.to_pkcs8_pem());
            assert_eq!(
                Keypair::from_pkcs8_pem(&v2).unwrap().public_key(),
                keypair.public_key()
            );

            let other = Keypair::from_seed(&[4; 32]).public_key().to_bytes();
            assert_eq!(
                Keypair::from_pkcs8_pem(&v2_pem([3; 32], other)).unwrap_err(),
                KeyError::PublicKeyMismatch
            );
        }

        #[test]
        fn other_algorithms_are_refused() {
            for pem in [
                include_str!("../tests/fixtures/x25519.pem"),
                include_str!("../tests/fixtures/ed448.pem"),
                include_str!("../tests/fixtures/rsa.pem"),
            ] {
                assert_eq!(
                    Keypair::from_pkcs8_pem(pem).unwrap_err(),
                    KeyError::NotEd25519
                );
            }
            let x25519_pub = include_str!("../tests/fixtures/x25519.pub.pem");
            assert_eq!(
                PublicKey::from_public_key_pem(x25519_pub),
                Err(KeyError::NotEd25519)
            );
        }

        #[test]
        fn encrypted_key_is_refused() {
            let pem = include_str!("../tests/fixtures/alice.encrypted.pem");
            assert_eq!(
                Keypair::from_pkcs8_pem(pem).unwrap_err(),
                KeyError::Encrypted
            );
        }

        #[test]
        fn garbage_is_an_error() {
            let bad_base64 = "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n";
            for text in ["", "hello", bad_base64, ALICE_PUB, &ALICE[1..]] {
                assert_eq!(
                    Keypair::from_pkcs8_pem(text).unwrap_err(),
                    KeyError::Pem,
                    "{text:?}"
                );
            }
            for text in ["", "hello", ALICE] {
                assert_eq!(
                    PublicKey::from_public_key_pem(text),
                    Err(KeyError::Pem),
                    "{text:?}"
                );
            }

            // Well-formed PEM around DER that is not a key.
            let (_, der) = SecretDocument::from_pem(ALICE).unwrap();
            let truncated =
                pem::encode_string("PRIVATE KEY", LineEnding::LF, &der.as_bytes()[..40]).unwrap();
            assert_eq!(
                Keypair::from_pkcs8_pem(&truncated).unwrap_err(),
                KeyError::Malformed
            );
            let (_, spki) = SecretDocument::from_pem(ALICE_PUB).unwrap();
            let spki_as_pkcs8 =
                pem::encode_string("PRIVATE KEY", LineEnding::LF, spki.as_bytes()).unwrap();
            assert_eq!(
                Keypair::from_pkcs8_pem(&spki_as_pkcs8).unwrap_err(),
                KeyError::Malformed
            );
            let pkcs8_as_spki =
                pem::encode_string("PUBLIC KEY", LineEnding::LF, der.as_bytes()).unwrap();
            assert_eq!(
                PublicKey::from_public_key_pem(&pkcs8_as_spki),
                Err(KeyError::Malformed)
            );
        }

        proptest! {
            #[test]
            fn any_text_is_refused_without_panic(text in ".*") {
                prop_assert!(Keypair::from_pkcs8_pem(&text).is_err());
                prop_assert!(PublicKey::from_public_key_pem(&text).is_err());
            }

            /// One changed character in a real key file: an error or a key, never a panic.
            #[test]
            fn damaged_key_files_do_not_panic(i in any::<prop::sample::Index>(), c in any::<char>()) {
                for text in [ALICE, ALICE_PUB] {
                    let mut damaged: Vec<char> = text.chars().collect();
                    let i = i.index(damaged.len());
                    damaged[i] = c;
                    let damaged: String = damaged.into_iter().collect();
                    let _ = Keypair::from_pkcs8_pem(&damaged);
                    let _ = PublicKey::from_public_key_pem(&damaged);
                }
            }
        }
    }
}
