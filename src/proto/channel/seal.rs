//! The sending half: plaintext in, records out.

use super::{
    header, nonce, ChannelError, DirectionKey, RecordCipher, RecordType, RustCryptoCipher,
    HEADER_LEN, MAX_DATA_RECORD_NUMBER, MAX_PLAINTEXT_LEN, MAX_RECORD_NUMBER, OVERHEAD, TAG_LEN,
};

/// What [`Sealer::seal`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sealed {
    /// How many bytes of the plaintext the record carries (a prefix of it).
    pub consumed: usize,
    /// The record's length: send `out[..len]`.
    pub len: usize,
}

/// Seals one direction's records, numbering them from 0, with the cipher `C` (by default
/// [`RustCryptoCipher`]).
///
/// Every call writes at most one whole record into the caller's buffer; the caller sends it before
/// or after sealing the next, in order. After [`seal_end`](Sealer::seal_end) nothing more can be
/// sealed.
pub struct Sealer<C = RustCryptoCipher> {
    cipher: C,
    next: u64,
    ended: bool,
}

impl<C> core::fmt::Debug for Sealer<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sealer")
            .field("next", &self.next)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Sealer {
    /// A sealer with the key of the direction it sends ([`super::ChannelKeys::send`]) and the
    /// default cipher.
    pub fn new(key: DirectionKey) -> Sealer {
        Sealer::with_cipher(key)
    }
}

impl<C: RecordCipher> Sealer<C> {
    /// A sealer with the key of the direction it sends and the cipher `C`
    /// (`Sealer::<MyCipher>::with_cipher(keys.send)`).
    pub fn with_cipher(key: DirectionKey) -> Sealer<C> {
        Sealer::starting_at(key, 0)
    }

    /// A sealer whose next record number is `next` (tests reach the counter limit with it).
    pub(super) fn starting_at(key: DirectionKey, next: u64) -> Sealer<C> {
        Sealer {
            cipher: key.cipher(),
            next,
            ended: false,
        }
    }

    /// Seal as much of `plaintext` as one record and `out` allow (at most [`MAX_PLAINTEXT_LEN`]
    /// bytes, at most `out.len() - OVERHEAD`) into `out`. An empty `plaintext` gives an empty
    /// data record.
    ///
    /// Fails with [`ChannelError::BufferTooSmall`] if `out` cannot hold a record with at least one
    /// byte of a non-empty plaintext, [`ChannelError::CounterExhausted`] when no data record number
    /// is left (send [`seal_end`](Sealer::seal_end) and close), [`ChannelError::Ended`] after the
    /// end of stream. Nothing is written and no number is used when it fails.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<Sealed, ChannelError> {
        let room = out.len().saturating_sub(OVERHEAD).min(MAX_PLAINTEXT_LEN);
        let take = plaintext.len().min(room);
        if out.len() < OVERHEAD || (take == 0 && !plaintext.is_empty()) {
            return Err(ChannelError::BufferTooSmall);
        }
        self.check(RecordType::Data)?;
        out[HEADER_LEN..HEADER_LEN + take].copy_from_slice(&plaintext[..take]);
        let len = self.seal_record(RecordType::Data, out, take)?;
        Ok(Sealed {
            consumed: take,
            len,
        })
    }

    /// Seal in place: `record[HEADER_LEN..HEADER_LEN + plaintext_len]` holds the plaintext (put it
    /// there, e.g. straight from a sensor, to save a copy). Writes the header before it and the tag
    /// after it, encrypts it, and returns the record length (`plaintext_len + OVERHEAD`).
    pub fn seal_in_place(
        &mut self,
        record: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, ChannelError> {
        if plaintext_len > MAX_PLAINTEXT_LEN {
            return Err(ChannelError::Oversized);
        }
        if record.len() < plaintext_len + OVERHEAD {
            return Err(ChannelError::BufferTooSmall);
        }
        self.check(RecordType::Data)?;
        self.seal_record(RecordType::Data, record, plaintext_len)
    }

    /// Seal the end-of-stream record (19 bytes) into `out`. Afterwards this sealer seals nothing
    /// more; send the record, then close the connection (or its sending half).
    pub fn seal_end(&mut self, out: &mut [u8]) -> Result<usize, ChannelError> {
        if out.len() < OVERHEAD {
            return Err(ChannelError::BufferTooSmall);
        }
        self.check(RecordType::End)?;
        let len = self.seal_record(RecordType::End, out, 0)?;
        self.ended = true;
        Ok(len)
    }

    /// Whether the end-of-stream record has been sealed.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// How many records have been sealed (the number of the next one).
    pub fn records_sealed(&self) -> u64 {
        self.next
    }

    /// May a record of `record_type` be sealed now?
    fn check(&self, record_type: RecordType) -> Result<(), ChannelError> {
        let limit = match record_type {
            RecordType::Data => MAX_DATA_RECORD_NUMBER,
            RecordType::End => MAX_RECORD_NUMBER,
        };
        if self.ended {
            Err(ChannelError::Ended)
        } else if self.next > limit {
            Err(ChannelError::CounterExhausted)
        } else {
            Ok(())
        }
    }

    /// Header, encryption and tag around the `len` plaintext bytes at `buf[HEADER_LEN..]`, which
    /// has room for them; uses up one record number.
    pub(super) fn seal_record(
        &mut self,
        record_type: RecordType,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, ChannelError> {
        let aad = header(record_type, len);
        let (head, rest) = buf.split_at_mut(HEADER_LEN);
        let (body, tail) = rest.split_at_mut(len);
        let tag = self
            .cipher
            .seal_in_place(&nonce(self.next), &aad, body)
            // No cipher refuses a body of at most MAX_PLAINTEXT_LEN bytes.
            .map_err(|_| ChannelError::Oversized)?;
        head.copy_from_slice(&aad);
        tail[..TAG_LEN].copy_from_slice(&tag);
        self.next += 1;
        Ok(len + OVERHEAD)
    }
}
