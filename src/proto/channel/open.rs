//! The receiving half: stream bytes in, authenticated plaintext out.

use super::{
    nonce, ChannelError, DirectionKey, RecordCipher, RecordType, RustCryptoCipher, HEADER_LEN,
    MAX_DATA_RECORD_NUMBER, MAX_PLAINTEXT_LEN, MAX_RECORD_NUMBER, OVERHEAD, TAG_LEN,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading records.
    Open,
    /// The peer's end-of-stream record arrived.
    Ended,
    Failed(ChannelError),
}

/// Opens one direction's records, reassembling each in a buffer `B` (a `&mut [u8]` on a device, an
/// owned array or box on a host), with the cipher `C` (by default [`RustCryptoCipher`]).
///
/// Give it stream bytes either by copy ([`feed`](Opener::feed)) or by reading straight into
/// [`receive_buffer`](Opener::receive_buffer) and calling [`commit`](Opener::commit). Once a record
/// is complete and its tag verifies, its plaintext is in [`plaintext`](Opener::plaintext) until
/// [`consume`](Opener::consume)d; no stream bytes are taken meanwhile. At the transport's end of
/// stream, call [`finish`](Opener::finish): it fails unless the peer's end-of-stream record came.
///
/// The first error is final: every later call returns it, no plaintext is released after it.
pub struct Opener<B, C = RustCryptoCipher> {
    cipher: C,
    /// Number of the record being received.
    next: u64,
    buf: B,
    /// Bytes of the current record received so far.
    filled: usize,
    /// Authenticated plaintext not yet consumed: `buf[plain_start..plain_end]`.
    plain_start: usize,
    plain_end: usize,
    state: State,
}

impl<B, C> core::fmt::Debug for Opener<B, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opener")
            .field("next", &self.next)
            .field("filled", &self.filled)
            .field("pending", &(self.plain_end - self.plain_start))
            .field("state", &self.state)
            .finish()
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Opener<B> {
    /// An opener with the key of the direction it receives ([`super::ChannelKeys::receive`]) and
    /// the default cipher, reassembling records in `buf`. Give it [`super::MAX_RECORD_LEN`] bytes: a
    /// record that does not fit fails with [`ChannelError::BufferTooSmall`].
    pub fn new(key: DirectionKey, buf: B) -> Opener<B> {
        Opener::with_cipher(key, buf)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, C: RecordCipher> Opener<B, C> {
    /// An opener like [`new`](Opener::new), with the cipher `C`
    /// (`Opener::<_, MyCipher>::with_cipher(keys.receive, buf)`).
    pub fn with_cipher(key: DirectionKey, buf: B) -> Opener<B, C> {
        Opener::starting_at(key, buf, 0)
    }

    /// An opener whose next record number is `next` (tests reach the counter limit with it).
    pub(super) fn starting_at(key: DirectionKey, buf: B, next: u64) -> Opener<B, C> {
        let state = if buf.as_ref().len() < OVERHEAD {
            State::Failed(ChannelError::BufferTooSmall)
        } else {
            State::Open
        };
        Opener {
            cipher: key.cipher(),
            next,
            buf,
            filled: 0,
            plain_start: 0,
            plain_end: 0,
            state,
        }
    }

    /// The plaintext received and not yet consumed (empty after an error).
    pub fn plaintext(&self) -> &[u8] {
        &self.buf.as_ref()[self.plain_start..self.plain_end]
    }

    /// Mark the first `n` bytes of [`plaintext`](Opener::plaintext) as taken (at most all of it).
    pub fn consume(&mut self, n: usize) {
        self.plain_start += n.min(self.plain_end - self.plain_start);
    }

    /// Copy plaintext into `out`, consume it, and return how many bytes were copied.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.plain_end - self.plain_start);
        out[..n].copy_from_slice(&self.buf.as_ref()[self.plain_start..self.plain_start + n]);
        self.consume(n);
        n
    }

    /// Whether the peer's end-of-stream record has arrived and every plaintext byte before it has
    /// been consumed: the peer's direction is finished.
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended && self.plain_start == self.plain_end
    }

    /// The error, once failed.
    pub fn error(&self) -> Option<ChannelError> {
        match self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Number of records opened so far.
    pub fn records_opened(&self) -> u64 {
        self.next
    }

    /// Where the next stream bytes go: the rest of the current record's header, or of its body
    /// once the header is in. Read at most this many bytes from the transport into it, then
    /// [`commit`](Opener::commit) them. Empty while plaintext is pending, after the end of stream and
    /// after an error.
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        let end = self.wanted();
        &mut self.buf.as_mut()[self.filled..end]
    }

    /// Take the first `n` bytes of [`receive_buffer`](Opener::receive_buffer) (at most its length)
    /// as received. Checks the header once it is complete, and opens the record once it is.
    pub fn commit(&mut self, n: usize) -> Result<(), ChannelError> {
        match self.state {
            State::Failed(e) => return Err(e),
            State::Ended if n > 0 => return Err(self.fail(ChannelError::DataAfterEnd)),
            State::Ended => return Ok(()),
            State::Open => {}
        }
        if self.plain_start < self.plain_end {
            // receive_buffer() was empty: there is nothing to take.
            return Ok(());
        }
        let end = self.wanted();
        self.filled += n.min(end - self.filled);
        if self.filled < end {
            return Ok(());
        }
        if self.filled == HEADER_LEN {
            // The header is in: how long is the record?
            let len = self.body_len();
            if len > MAX_PLAINTEXT_LEN {
                return Err(self.fail(ChannelError::Oversized));
            }
            if len + OVERHEAD > self.buf.as_ref().len() {
                return Err(self.fail(ChannelError::BufferTooSmall));
            }
            // Even an empty record still needs its tag, so the record is not complete yet.
            return Ok(());
        }
        self.open().map_err(|e| self.fail(e))
    }

    /// Take stream bytes from `data`, up to the end of the first record that yields plaintext or
    /// ends the stream (or all of `data`), and return how many were taken. Takes none while
    /// plaintext is pending; after the end of stream, any byte is [`ChannelError::DataAfterEnd`].
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, ChannelError> {
        let mut taken = 0;
        loop {
            match self.state {
                State::Failed(e) => return Err(e),
                State::Ended if taken < data.len() => {
                    return Err(self.fail(ChannelError::DataAfterEnd))
                }
                State::Ended | State::Open => {}
            }
            let space = self.receive_buffer();
            let n = space.len().min(data.len() - taken);
            if n == 0 {
                return Ok(taken);
            }
            space[..n].copy_from_slice(&data[taken..taken + n]);
            taken += n;
            self.commit(n)?;
            if self.plain_start < self.plain_end || self.state == State::Ended {
                return Ok(taken);
            }
        }
    }

    /// The transport's stream has ended. `Ok` if the peer ended it with its end-of-stream record
    /// (plaintext may still be pending); otherwise the stream was cut: [`ChannelError::Truncated`].
    pub fn finish(&mut self) -> Result<(), ChannelError> {
        match self.state {
            State::Ended => Ok(()),
            State::Failed(e) => Err(e),
            State::Open => Err(self.fail(ChannelError::Truncated)),
        }
    }

    fn fail(&mut self, error: ChannelError) -> ChannelError {
        self.state = State::Failed(error);
        self.plain_start = 0;
        self.plain_end = 0;
        error
    }

    /// The end of the current part in `buf` (header, then whole record); `filled` when nothing
    /// may be received now.
    fn wanted(&self) -> usize {
        if self.state != State::Open || self.plain_start < self.plain_end {
            self.filled
        } else if self.filled < HEADER_LEN {
            HEADER_LEN
        } else {
            // commit checked this length against the maximum and the buffer.
            self.body_len() + OVERHEAD
        }
    }

    fn body_len(&self) -> usize {
        let buf = self.buf.as_ref();
        usize::from(u16::from_be_bytes([buf[1], buf[2]]))
    }

    /// The whole record is in `buf[..filled]`: verify, decrypt in place, act on its type.
    fn open(&mut self) -> Result<(), ChannelError> {
        if self.next > MAX_RECORD_NUMBER {
            return Err(ChannelError::CounterExhausted);
        }
        let record = &mut self.buf.as_mut()[..self.filled];
        let (head, rest) = record.split_at_mut(HEADER_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let tag = <&[u8; TAG_LEN]>::try_from(&*tag).map_err(|_| ChannelError::BadTag)?;
        self.cipher
            .open_in_place(&nonce(self.next), head, body, tag)
            .map_err(|_| ChannelError::BadTag)?;
        // Authenticated: only now is the type trusted.
        let record_type = RecordType::from_u8(head[0]);
        let len = body.len();
        match record_type {
            Some(RecordType::Data) if self.next > MAX_DATA_RECORD_NUMBER => {
                return Err(ChannelError::CounterExhausted)
            }
            Some(RecordType::Data) => {
                self.plain_start = HEADER_LEN;
                self.plain_end = HEADER_LEN + len;
            }
            Some(RecordType::End) if len == 0 => self.state = State::Ended,
            Some(RecordType::End) | None => return Err(ChannelError::Malformed),
        }
        self.next += 1;
        self.filled = 0;
        Ok(())
    }
}
