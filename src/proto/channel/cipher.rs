//! The AEAD under the record layer, pluggable: [`RecordCipher`], and its default,
//! [`RustCryptoCipher`].
//!
//! Every record is sealed with ChaCha20-Poly1305 (RFC 8439 §2.8). Which code computes it is the
//! application's choice: the default is RustCrypto's portable, `no_std` `chacha20poly1305` (what a
//! device runs); a host can plug in a faster one (the tokio peer uses AWS-LC's assembly). All
//! implementations produce the same bytes; the spec's test vectors hold each of them to it.

use core::fmt;

use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit};

use super::TAG_LEN;

/// Length of a direction key (`doc/protocol.md` §12.1).
pub const KEY_LEN: usize = 32;

/// Length of a record's AEAD nonce: four zero bytes, then the record number big-endian (§12.3).
pub const NONCE_LEN: usize = 12;

/// The AEAD refused: a tag that does not verify, or (sealing) an input the implementation cannot
/// take. The record layer turns it into a [`super::ChannelError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AeadError;

impl fmt::Display for AeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AEAD operation refused")
    }
}

impl core::error::Error for AeadError {}

/// ChaCha20-Poly1305 (RFC 8439 §2.8) in place with a detached 16-byte tag: what [`super::Sealer`]
/// and [`super::Opener`] seal and open records with.
///
/// An implementation must be exactly RFC 8439's AEAD (the record layer's test vectors check it),
/// and must keep secrets out of memory it gives back: its copy of the key (its key schedule) is
/// wiped when it is dropped.
pub trait RecordCipher {
    /// The cipher for one direction's key. The record layer wipes its own copy of the key once
    /// this returns.
    fn new(key: &[u8; KEY_LEN]) -> Self;

    /// Encrypt `body` in place and return the tag over `aad` and the ciphertext.
    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError>;

    /// Verify `tag` over `aad` and the ciphertext `body`, and decrypt `body` in place. On failure,
    /// `body` must hold no plaintext: the ciphertext as it was, or zeros.
    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError>;
}

/// ChaCha20-Poly1305 from RustCrypto's `chacha20poly1305`: portable Rust, `no_std`, no allocator,
/// with SIMD on x86 (SSE2, AVX2) chosen at run time. The default cipher of [`super::Sealer`] and
/// [`super::Opener`]. It keeps its own copy of the key and wipes it when dropped.
pub struct RustCryptoCipher(ChaCha20Poly1305);

impl RecordCipher for RustCryptoCipher {
    fn new(key: &[u8; KEY_LEN]) -> Self {
        RustCryptoCipher(ChaCha20Poly1305::new(key.into()))
    }

    fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        self.0
            .encrypt_in_place_detached(nonce.into(), aad, body)
            .map(Into::into)
            .map_err(|_| AeadError)
    }

    fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        // It checks the tag before it decrypts: on failure `body` is untouched.
        self.0
            .decrypt_in_place_detached(nonce.into(), aad, body, tag.into())
            .map_err(|_| AeadError)
    }
}
