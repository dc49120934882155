//! A TCP socket that runs the secure channel (`doc/protocol.md` §12): [`SecureSocket`].
//!
//! It wraps a connected [`TcpSocket`] whose peer handshake is done, and implements
//! [`embedded_io_async::Read`] and [`embedded_io_async::Write`] over encrypted, authenticated records
//! ([`crate::proto::channel`]). The caller lends two buffers, one record each way; nothing is
//! allocated.
//!
//! ```no_run
//! use embedded_io_async::{Read, Write};
//! use p2psc::proto::channel::MAX_RECORD_LEN;
//! use p2psc::net::SecureSocket;
//! # async fn f(conn: p2psc::connector::PeerConnection<'_>) -> Result<(), p2psc::net::secure::Error> {
//! # let mut buf = [0u8; 64];
//!
//! let (mut rx, mut tx) = ([0u8; MAX_RECORD_LEN], [0u8; MAX_RECORD_LEN]);
//! let mut secure = SecureSocket::new(conn.socket, &conn.session_key, conn.role, &mut rx, &mut tx);
//! secure.write_all(b"hello").await?;
//! secure.flush().await?;
//! let n = secure.read(&mut buf).await?; // Ok(0) only after the peer's authenticated end of stream
//! secure.close().await?;                // our end-of-stream record, then FIN
//! # Ok(()) }
//! ```
//!
//! - `write` seals up to one record of the data and queues it in the TCP socket; `flush` waits until
//!   every sealed byte is in the socket and acknowledged. Both are cancel-safe: `write` waits only
//!   before it seals, for the previous record to make room.
//! - `read` returns plaintext only from records whose tag verified. It returns `Ok(0)` (end of
//!   stream) only after the peer's end-of-stream record; a stream cut before it is
//!   [`ChannelError::Truncated`]. On any channel error the connection is aborted (RST) and every
//!   later `read` returns the same error.
//! - [`close`](SecureSocket::close) sends the end-of-stream record, then closes the TCP write half.

use core::fmt;
use core::future::{poll_fn, Future};
use core::pin::pin;
use core::task::Poll;

use super::tcp::{self, TcpSocket};
use crate::proto::channel::{ChannelError, ChannelKeys, Opener, Sealer};
use crate::proto::SessionKey;
use crate::wire::Role;

/// Error from a [`SecureSocket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The TCP connection is gone (reset, timed out, aborted), or its write half was closed.
    ConnectionReset,
    /// The secure channel failed: a forged, replayed or cut stream, or a local misuse.
    Channel(ChannelError),
}

impl From<tcp::Error> for Error {
    fn from(e: tcp::Error) -> Error {
        match e {
            tcp::Error::ConnectionReset => Error::ConnectionReset,
        }
    }
}

impl From<ChannelError> for Error {
    fn from(e: ChannelError) -> Error {
        Error::Channel(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ConnectionReset => f.write_str("connection reset"),
            Error::Channel(e) => write!(f, "secure channel: {}", e),
        }
    }
}

impl core::error::Error for Error {}

impl embedded_io_async::Error for Error {
    fn kind(&self) -> embedded_io_async::ErrorKind {
        use embedded_io_async::ErrorKind;
        match self {
            Error::ConnectionReset => ErrorKind::ConnectionReset,
            Error::Channel(ChannelError::Truncated) => ErrorKind::ConnectionAborted,
            Error::Channel(ChannelError::BufferTooSmall) => ErrorKind::OutOfMemory,
            Error::Channel(ChannelError::Ended) => ErrorKind::NotConnected,
            Error::Channel(_) => ErrorKind::InvalidData,
        }
    }
}

/// A TCP connection whose stream runs the secure channel.
///
/// Build it right after the handshake, before any application byte is sent or read.
pub struct SecureSocket<'s, 'b> {
    socket: TcpSocket<'s>,
    sealer: Sealer,
    opener: Opener<&'b mut [u8]>,
    tx: &'b mut [u8],
    /// Sealed bytes not yet queued in the TCP socket: `tx[unsent_start..unsent_end]`.
    unsent_start: usize,
    unsent_end: usize,
}

impl<'s, 'b> SecureSocket<'s, 'b> {
    /// Run the channel on `socket` with the handshake's `session_key` and our `role`.
    ///
    /// `rx` holds one incoming record: give it [`MAX_RECORD_LEN`] bytes (a smaller one fails on a
    /// record larger than it). `tx` holds one outgoing record: any size of at least 20 bytes works,
    /// [`MAX_RECORD_LEN`] makes the fewest records.
    ///
    /// [`MAX_RECORD_LEN`]: crate::proto::channel::MAX_RECORD_LEN
    // Out of line: inlined into an async caller it was laid out twice (firmware size, size-report.sh).
    #[inline(never)]
    pub fn new(
        socket: TcpSocket<'s>,
        session_key: &SessionKey,
        role: Role,
        rx: &'b mut [u8],
        tx: &'b mut [u8],
    ) -> Self {
        let keys = ChannelKeys::derive(session_key, role);
        SecureSocket {
            socket,
            sealer: Sealer::new(keys.send),
            opener: Opener::new(keys.receive, rx),
            tx,
            unsent_start: 0,
            unsent_end: 0,
        }
    }

    /// The TCP socket underneath, for its state, endpoints and options. Reading or writing it
    /// directly would corrupt the channel's stream.
    pub fn socket(&self) -> &TcpSocket<'s> {
        &self.socket
    }

    /// The TCP socket underneath, mutably (timeouts, keep-alive, Nagle). Reading or writing it
    /// directly would corrupt the channel's stream.
    pub fn socket_mut(&mut self) -> &mut TcpSocket<'s> {
        &mut self.socket
    }

    /// Read plaintext into `buf`, waiting for at least one byte. `Ok(0)` means the peer ended its
    /// stream with its end-of-stream record (or `buf` is empty).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(e) = self.opener.error() {
                return Err(e.into());
            }
            let n = self.opener.read(buf);
            if n > 0 {
                return Ok(n);
            }
            if self.opener.is_ended() {
                return self.after_end().await;
            }
            let received = self.socket.read(self.opener.receive_buffer()).await?;
            let result = match received {
                0 => self.opener.finish(),
                n => self.opener.commit(n),
            };
            result.map_err(|e| self.fail(e))?;
        }
    }

    /// Seal up to one record of `buf` and queue it; returns how many bytes of `buf` it carries.
    /// Waits first until the previous record is queued in the TCP socket.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.send_unsent().await?;
        let sealed = self.sealer.seal(buf, self.tx)?;
        self.unsent_start = 0;
        self.unsent_end = sealed.len;
        self.queue_unsent_now().await?;
        Ok(sealed.consumed)
    }

    /// Wait until every sealed byte is queued, sent and acknowledged.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.send_unsent().await?;
        Ok(self.socket.flush().await?)
    }

    /// End our direction: send the end-of-stream record, close the TCP write half (FIN) and wait
    /// until both are acknowledged. Reading goes on until the peer ends its direction. Calling it
    /// again only waits.
    pub async fn close(&mut self) -> Result<(), Error> {
        self.send_unsent().await?;
        if !self.sealer.is_ended() {
            self.unsent_start = 0;
            self.unsent_end = self.sealer.seal_end(self.tx)?;
            self.send_unsent().await?;
            self.socket.close();
        }
        Ok(self.socket.flush().await?)
    }

    /// Abort the connection (RST), dropping unsent data; the peer sees a cut stream.
    pub fn abort(&mut self) {
        self.unsent_start = self.unsent_end;
        self.socket.abort();
    }

    /// After the peer's end of stream: `Ok(0)`, unless more bytes came after it.
    async fn after_end(&mut self) -> Result<usize, Error> {
        if !self.socket.can_recv() {
            return Ok(0);
        }
        let mut byte = [0u8; 1];
        let n = self.socket.read(&mut byte).await?;
        self.opener.feed(&byte[..n]).map_err(|e| self.fail(e))?;
        Ok(0)
    }

    /// A channel error ends the connection (`doc/protocol.md` §12.6).
    fn fail(&mut self, error: ChannelError) -> Error {
        self.abort();
        error.into()
    }

    /// Queue every sealed byte in the TCP socket, waiting for room.
    async fn send_unsent(&mut self) -> Result<(), Error> {
        while self.unsent_start < self.unsent_end {
            let unsent = &self.tx[self.unsent_start..self.unsent_end];
            self.unsent_start += self.socket.write(unsent).await?;
        }
        Ok(())
    }

    /// Queue what fits of the sealed bytes now, without waiting.
    async fn queue_unsent_now(&mut self) -> Result<(), Error> {
        poll_fn(|cx| {
            while self.unsent_start < self.unsent_end {
                let unsent = &self.tx[self.unsent_start..self.unsent_end];
                match pin!(self.socket.write(unsent)).poll(cx) {
                    Poll::Ready(Ok(n)) => self.unsent_start += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => break,
                }
            }
            Poll::Ready(Ok(()))
        })
        .await
    }
}

impl fmt::Debug for SecureSocket<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureSocket")
            .field("sealer", &self.sealer)
            .field("opener", &self.opener)
            .field("unsent", &(self.unsent_end - self.unsent_start))
            .finish()
    }
}

impl embedded_io_async::ErrorType for SecureSocket<'_, '_> {
    type Error = Error;
}

impl embedded_io_async::Read for SecureSocket<'_, '_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        SecureSocket::read(self, buf).await
    }
}

impl embedded_io_async::Write for SecureSocket<'_, '_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        SecureSocket::write(self, buf).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        SecureSocket::flush(self).await
    }
}
