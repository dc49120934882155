//! Reassembly of frames from a TCP byte stream into a fixed buffer.

use super::{Error, Frame, Message, Result, HEADER_LEN, MAX_FRAME_LEN};

/// Collects the bytes of one frame at a time from a stream, in a buffer of [`MAX_FRAME_LEN`] bytes.
///
/// The header is checked as soon as it is complete ([`Frame::check_header`]), so a foreign version or an
/// oversized length is refused before any body arrives. After an error the stream cannot be resynchronised: the caller closes the connection.
#[derive(Debug, Clone)]
pub struct FrameReader {
    buf: [u8; MAX_FRAME_LEN],
    len: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameReader {
    /// An empty reader.
    pub const fn new() -> FrameReader {
        FrameReader {
            buf: [0; MAX_FRAME_LEN],
            len: 0,
        }
    }

    /// Bytes of an unfinished frame held so far.
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// The version byte of the frame [`read`](Self::read) returned last (or of the one being read).
    pub fn version(&self) -> u8 {
        self.buf[0]
    }

    /// Take bytes from `data`, at most up to the end of the current frame, and return how many were taken
    /// and, if the frame is now complete, the parsed message (or why it is invalid).
    ///
    /// Call again with the rest of `data` for the following frames.
    pub fn read(&mut self, data: &[u8]) -> (usize, Option<Result<Message>>) {
        let mut taken = 0;
        loop {
            let want = if self.len < HEADER_LEN {
                HEADER_LEN
            } else {
                // The header was checked below when it completed, so this is at most MAX_FRAME_LEN.
                Frame::new_unchecked(&self.buf[..]).frame_len()
            };
            let take = (want - self.len).min(data.len() - taken);
            self.buf[self.len..self.len + take].copy_from_slice(&data[taken..taken + take]);
            self.len += take;
            taken += take;
            if self.len < HEADER_LEN {
                return (taken, None);
            }
            let frame = Frame::new_unchecked(&self.buf[..self.len]);
            match frame.check_len() {
                Ok(()) => {
                    let result = Message::parse(&frame);
                    self.len = 0;
                    return (taken, Some(result));
                }
                // Header complete, body not: loop once more if `data` has more bytes.
                Err(Error::Truncated) if taken < data.len() => continue,
                Err(Error::Truncated) => return (taken, None),
                Err(e) => {
                    self.len = 0;
                    return (taken, Some(Err(e)));
                }
            }
        }
    }
}
