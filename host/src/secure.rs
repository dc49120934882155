//! The secure channel (protocol §12) over a tokio TCP stream: p2psc's sans-IO record layer
//! ([`Sealer`], [`Opener`]) behind [`AsyncRead`] + [`AsyncWrite`].

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use p2psc::proto::channel::{ChannelError, ChannelKeys, Opener, Sealer, MAX_RECORD_LEN};
use p2psc::proto::SessionKey;
use p2psc::wire::Role;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream whose bytes are the secure channel's records. Reads return authenticated plaintext
/// and end (`Ok(0)`) only at the peer's authenticated end-of-stream record; `shutdown` sends ours. Any
/// channel error — a forged, replayed, reordered, truncated or oversized record — is an
/// `io::ErrorKind::InvalidData` error, after which the connection is reset and nothing more is read.
pub struct SecureStream {
    inner: TcpStream,
    /// Bytes read with the handshake, before the stream's own.
    pending: Vec<u8>,
    sealer: Sealer,
    opener: Opener<Box<[u8]>>,
    tx: Box<[u8]>,
    /// Sealed bytes not yet written: `tx[unsent..sealed]`.
    unsent: usize,
    sealed: usize,
}

impl std::fmt::Debug for SecureStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureStream")
            .field("inner", &self.inner)
            .field("opener", &self.opener)
            .finish()
    }
}

impl SecureStream {
    /// Run the channel on `inner` (`pending`: bytes already read after the handshake) with the
    /// handshake's session key and our role.
    pub fn new(inner: TcpStream, pending: Vec<u8>, key: &SessionKey, role: Role) -> SecureStream {
        let keys = ChannelKeys::derive(key, role);
        SecureStream {
            inner,
            pending,
            sealer: Sealer::new(keys.send),
            opener: Opener::new(keys.receive, vec![0; MAX_RECORD_LEN].into_boxed_slice()),
            tx: vec![0; MAX_RECORD_LEN].into_boxed_slice(),
            unsent: 0,
            sealed: 0,
        }
    }

    /// The TCP stream underneath (for its addresses and options; its bytes are the channel's).
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// A channel error ends the connection: reset it (protocol §12.6).
    fn fail(&mut self, e: ChannelError) -> io::Error {
        let s = socket2::SockRef::from(&self.inner);
        let _ = s.set_linger(Some(std::time::Duration::ZERO));
        let _ = s.shutdown(std::net::Shutdown::Both);
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// Write the sealed bytes not yet written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.unsent < self.sealed {
            let unsent = &self.tx[self.unsent..self.sealed];
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, unsent))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unsent += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Give the opener stream bytes: the handshake's leftovers first, then the socket's. `Ok(false)`
    /// at the socket's end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if !self.pending.is_empty() {
            let n = self.opener.feed(&self.pending).map_err(|e| self.fail(e))?;
            self.pending.drain(..n);
            return Poll::Ready(Ok(true));
        }
        let mut space = ReadBuf::new(self.opener.receive_buffer());
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut space))?;
        let n = space.filled().len();
        let result = match n {
            0 => self.opener.finish(),
            n => self.opener.commit(n),
        };
        result.map_err(|e| self.fail(e))?;
        Poll::Ready(Ok(n > 0))
    }
}

impl AsyncRead for SecureStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(e) = self.opener.error() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
            let n = self.opener.read(buf.initialize_unfilled());
            if n > 0 || buf.remaining() == 0 {
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if self.opener.is_ended() {
                // The peer's authenticated end: EOF (bytes after it would be an error on the next
                // read, which the opener reports).
                return Poll::Ready(Ok(()));
            }
            if !ready!(self.poll_fill(cx))? && !self.opener.is_ended() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for SecureStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        let sealed = this
            .sealer
            .seal(buf, &mut this.tx)
            .map_err(|e| this.fail(e))?;
        (this.unsent, this.sealed) = (0, sealed.len);
        // Start writing now; what does not fit goes out on the next call.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(sealed.consumed))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Send our end-of-stream record, then close our direction (FIN).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        if !self.sealer.is_ended() {
            let this = &mut *self;
            let len = this
                .sealer
                .seal_end(&mut this.tx)
                .map_err(|e| this.fail(e))?;
            (this.unsent, this.sealed) = (0, len);
            ready!(self.poll_drain(cx))?;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
