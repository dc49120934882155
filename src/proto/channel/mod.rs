//! The secure channel: an encrypted, integrity-protected byte stream keyed by the session key
//! (`doc/protocol.md` §12), sans I/O.
//!
//! After the peer handshake both peers hold the same [`SessionKey`] and know their [`Role`].
//! [`ChannelKeys::derive`] turns that into one key per direction (HKDF-SHA256, RFC 5869, with the
//! direction as the label). Each direction is then a sequence of *records*:
//!
//! ```text
//!  0      1         3                    3 + length      3 + length + 16
//!  +------+---------+--------------------+---------------+
//!  | type | length  | ciphertext         | tag           |   type: 1 data, 2 end of stream
//!  +------+---------+--------------------+---------------+   length: big-endian, ≤ 2029
//!  \____ AAD _____/   ChaCha20-Poly1305 (RFC 8439), nonce = 0x00000000 || u64be(record number)
//! ```
//!
//! - [`Sealer`] turns plaintext into records in a caller's buffer (in place, one record at a time).
//! - [`Opener`] is fed stream bytes in any chunking, reassembles one record at a time in a caller's
//!   buffer, and hands out its plaintext only once its tag has verified (decryption in place).
//! - Both compute ChaCha20-Poly1305 with a [`RecordCipher`]: by default [`RustCryptoCipher`]
//!   (portable, `no_std`); a host may plug in a faster implementation of the same AEAD with
//!   [`Sealer::with_cipher`] and [`Opener::with_cipher`].
//!
//! A sender ends its direction with an authenticated end-of-stream record ([`Sealer::seal_end`]),
//! so a receiver can tell a finished stream from a truncated one ([`Opener::finish`]). Every failure
//! is a [`ChannelError`] that sticks: the connection must then be closed, since the stream cannot be
//! resynchronised. Nothing here reads a socket: [`crate::net::secure`] is the async shell.
//!
//! ```
//! use p2psc::proto::channel::{ChannelKeys, Opener, Sealer, MAX_RECORD_LEN};
//! use p2psc::proto::SessionKey;
//! use p2psc::wire::Role;
//!
//! let session = SessionKey([7; 32]); // from the handshake
//! let mut leader = Sealer::new(ChannelKeys::derive(&session, Role::Leader).send);
//! let mut record = [0u8; MAX_RECORD_LEN];
//! let sealed = leader.seal(b"hello", &mut record).unwrap();
//!
//! let mut rx = [0u8; MAX_RECORD_LEN];
//! let mut follower = Opener::new(ChannelKeys::derive(&session, Role::Follower).receive, &mut rx);
//! // Stream bytes may arrive in any chunks; feed them until a record is complete.
//! for chunk in record[..sealed.len].chunks(4) {
//!     follower.feed(chunk).unwrap();
//! }
//! assert_eq!(follower.plaintext(), b"hello");
//! ```

use core::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroize;

use super::SessionKey;
use crate::wire::Role;

mod cipher;
mod open;
mod seal;

pub use cipher::{AeadError, RecordCipher, RustCryptoCipher, KEY_LEN, NONCE_LEN};
pub use open::Opener;
pub use seal::{Sealed, Sealer};

/// Length of a record header: the type (1 byte) and the ciphertext length (2 bytes, big-endian).
/// The header is the AEAD's associated data.
pub const HEADER_LEN: usize = 3;

/// Length of the Poly1305 tag that ends every record.
pub const TAG_LEN: usize = 16;

/// Bytes a record adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// The largest record on the wire. A receiver's buffer of this size holds any record; it is the
/// socket buffer size of a small device (2 KiB), so the channel at most doubles its receive memory.
pub const MAX_RECORD_LEN: usize = 2048;

/// The most plaintext one record carries (2029 bytes).
pub const MAX_PLAINTEXT_LEN: usize = MAX_RECORD_LEN - OVERHEAD;

/// The highest record number an application-data record may carry. The next one,
/// [`MAX_RECORD_NUMBER`], is kept for the end-of-stream record, so a sender can always end cleanly.
pub const MAX_DATA_RECORD_NUMBER: u64 = u64::MAX - 2;

/// The highest record number any record may carry; the counter never wraps.
pub const MAX_RECORD_NUMBER: u64 = u64::MAX - 1;

/// HKDF `info` for the key of the leader → follower direction (35 bytes, with the NUL).
pub const LEADER_TO_FOLLOWER_CONTEXT: &[u8; 35] = b"p2psc/1 channel leader-to-follower\0";

/// HKDF `info` for the key of the follower → leader direction (35 bytes, with the NUL).
pub const FOLLOWER_TO_LEADER_CONTEXT: &[u8; 35] = b"p2psc/1 channel follower-to-leader\0";

/// What a record carries: its first header byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum RecordType {
    /// Application data (possibly none).
    Data = 1,
    /// The sender's end of stream: no data, nothing may follow in this direction.
    End = 2,
}

impl RecordType {
    /// Decode a header byte.
    pub const fn from_u8(value: u8) -> Option<RecordType> {
        match value {
            1 => Some(RecordType::Data),
            2 => Some(RecordType::End),
            _ => None,
        }
    }
}

/// Why the channel failed. Every error is final for the connection: close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ChannelError {
    /// A record's tag does not verify: it was altered, replayed, reordered, a record before it was
    /// lost, or the peer uses another key. None of its plaintext is released.
    BadTag,
    /// A record header announces more than [`MAX_PLAINTEXT_LEN`] bytes (or a caller asked to seal
    /// more than that in one record).
    Oversized,
    /// The caller's buffer cannot hold the record (an [`Opener`] buffer smaller than
    /// [`MAX_RECORD_LEN`], or a [`Sealer`] output buffer without room for the overhead).
    BufferTooSmall,
    /// An authenticated record the protocol does not allow: an undefined type, or an end-of-stream
    /// record that carries data. Only a faulty peer sends one.
    Malformed,
    /// Bytes arrived after the peer's end-of-stream record.
    DataAfterEnd,
    /// The stream ended before the peer's end-of-stream record: it was cut, perhaps by an attacker.
    Truncated,
    /// The record counter reached its limit: this direction carries no more data.
    CounterExhausted,
    /// Sealing after our own end-of-stream record.
    Ended,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelError::BadTag => "record does not authenticate",
            ChannelError::Oversized => "record longer than the protocol maximum",
            ChannelError::BufferTooSmall => "buffer too small for the record",
            ChannelError::Malformed => "authenticated record of a kind the protocol forbids",
            ChannelError::DataAfterEnd => "data after the end of the stream",
            ChannelError::Truncated => "stream ended without an end-of-stream record",
            ChannelError::CounterExhausted => "record counter exhausted",
            ChannelError::Ended => "stream already ended",
        })
    }
}

impl core::error::Error for ChannelError {}

/// The key of one direction, wiped from memory when dropped.
pub struct DirectionKey([u8; KEY_LEN]);

impl DirectionKey {
    /// The cipher of this direction; the key is wiped when `self` drops, the cipher's own copy when
    /// the cipher does.
    fn cipher<C: RecordCipher>(self) -> C {
        C::new(&self.0)
    }
}

impl Drop for DirectionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirectionKey(..)")
    }
}

#[cfg(feature = "defmt")]
#[cfg_attr(docsrs, doc(cfg(feature = "defmt")))]
impl defmt::Format for DirectionKey {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "DirectionKey(..)")
    }
}

/// The two keys of one side of a channel.
#[derive(Debug)]
pub struct ChannelKeys {
    /// The key of the records this side sends (seal with it).
    pub send: DirectionKey,
    /// The key of the records this side receives (open with it).
    pub receive: DirectionKey,
}

impl ChannelKeys {
    /// Derive both direction keys from the handshake's session key and this side's role
    /// (`doc/protocol.md` §12.1): `HKDF-SHA256(salt: none, ikm: session key, info: context)`.
    /// The leader's `send` is the follower's `receive`, and the other way round.
    pub fn derive(session_key: &SessionKey, role: Role) -> ChannelKeys {
        let hkdf = Hkdf::<Sha256>::new(None, &session_key.0);
        let expand = |info: &[u8]| {
            let mut key = DirectionKey([0; 32]);
            // 32 bytes is far below HKDF's limit of 255 hash lengths, so this cannot fail.
            let _ = hkdf.expand(info, &mut key.0);
            key
        };
        let leader_to_follower = expand(LEADER_TO_FOLLOWER_CONTEXT);
        let follower_to_leader = expand(FOLLOWER_TO_LEADER_CONTEXT);
        match role {
            Role::Leader => ChannelKeys {
                send: leader_to_follower,
                receive: follower_to_leader,
            },
            Role::Follower => ChannelKeys {
                send: follower_to_leader,
                receive: leader_to_follower,
            },
        }
    }
}

/// The AEAD nonce of record number `seq`: four zero bytes, then the number big-endian (RFC 8439
/// §2.8 "constant || counter"; the key is unique to this connection and direction).
fn nonce(seq: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0; NONCE_LEN];
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    nonce
}

/// The record header (the associated data) for `record_type` and `len` bytes of ciphertext.
fn header(record_type: RecordType, len: usize) -> [u8; HEADER_LEN] {
    // Callers check len ≤ MAX_PLAINTEXT_LEN, which fits a u16.
    let len = (len as u16).to_be_bytes();
    [record_type as u8, len[0], len[1]]
}

#[cfg(test)]
mod tests;
