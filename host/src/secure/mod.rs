//! The secure channel (protocol §12) over a tokio TCP stream: p2psc's sans-IO record layer
//! ([`Sealer`], [`Opener`]) behind [`AsyncRead`] + [`AsyncWrite`], computing ChaCha20-Poly1305 with
//! AWS-LC ([`AwsLcCipher`]) rather than the record layer's portable default: the same bytes on the
//! wire, and the cipher no longer dominates a fast loopback or LAN stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use p2psc::proto::channel::{
    ChannelError, ChannelKeys, Opener, Sealer, MAX_PLAINTEXT_LEN, MAX_RECORD_LEN, OVERHEAD,
};
use p2psc::proto::SessionKey;
use p2psc::wire::Role;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

mod cipher;

pub use cipher::AwsLcCipher;

/// A TCP stream whose bytes are the secure channel's records. Reads return authenticated plaintext
/// and end (`Ok(0)`) only at the peer's authenticated end-of-stream record; `shutdown` sends ours. Any
/// channel error — a forged, replayed, reordered, truncated or oversized record — is an
/// `io::ErrorKind::InvalidData` error, after which the connection is reset and nothing more is read.
pub struct SecureStream {
    inner: TcpStream,
    /// Stream bytes read from the socket (or with the handshake) and not yet given to the opener:
    /// `inbox[taken..received]`. Reading in large chunks and feeding the opener from here costs one
    /// system call per chunk instead of two per record (its header, then its body).
    inbox: Box<[u8]>,
    taken: usize,
    received: usize,
    sealer: Sealer<AwsLcCipher>,
    opener: Opener<Box<[u8]>, AwsLcCipher>,
    /// Sealed records not yet written: `tx[unsent..sealed]`; one write carries many records.
    tx: Box<[u8]>,
    unsent: usize,
    sealed: usize,
}

/// How many stream bytes one read of the socket takes at most, and how much plaintext one write
/// seals at most (the records in it are at most [`MAX_RECORD_LEN`] each).
const CHUNK: usize = 64 * 1024;

/// Room for a whole [`CHUNK`] of plaintext in records (32 full ones and a short one): a writer's
/// 64 KiB goes out in one system call, not a full buffer and then a lone short record.
const TX_LEN: usize = CHUNK + CHUNK.div_ceil(MAX_PLAINTEXT_LEN) * OVERHEAD;

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
        let received = pending.len();
        let mut inbox = pending;
        inbox.resize(received.max(CHUNK), 0);
        SecureStream {
            inner,
            inbox: inbox.into_boxed_slice(),
            taken: 0,
            received,
            sealer: Sealer::with_cipher(keys.send),
            opener: Opener::with_cipher(keys.receive, vec![0; MAX_RECORD_LEN].into_boxed_slice()),
            tx: vec![0; TX_LEN].into_boxed_slice(),
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

    /// Give the opener stream bytes from the inbox, reading the socket when it is empty. `Ok(false)`
    /// at the socket's end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.taken < self.received {
            let unread = &self.inbox[self.taken..self.received];
            let n = self.opener.feed(unread).map_err(|e| self.fail(e))?;
            self.taken += n;
            return Poll::Ready(Ok(true));
        }
        let mut space = ReadBuf::new(&mut self.inbox);
        ready!(Pin::new(&mut self.inner).poll_read(cx, &mut space))?;
        let n = space.filled().len();
        (self.taken, self.received) = (0, n);
        if n == 0 {
            self.opener.finish().map_err(|e| self.fail(e))?;
        }
        Poll::Ready(Ok(n > 0))
    }

    /// Seal as much of `buf` as the free part of `tx` holds, in records; returns the bytes taken.
    fn seal(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        while taken < buf.len() && self.tx.len() - self.sealed > OVERHEAD {
            let sealed = self
                .sealer
                .seal(&buf[taken..], &mut self.tx[self.sealed..])
                .map_err(|e| self.fail(e))?;
            taken += sealed.consumed;
            self.sealed += sealed.len;
        }
        Ok(taken)
    }
}

impl AsyncRead for SecureStream {
    /// Fills `buf` with the plaintext of as many records as have arrived (one read of the socket at
    /// most), so that a large buffer takes many records per call.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        loop {
            if let Some(e) = self.opener.error() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
            let plaintext = self.opener.plaintext();
            let n = plaintext.len().min(buf.remaining());
            buf.put_slice(&plaintext[..n]);
            self.opener.consume(n);
            let got = buf.filled().len() > before;
            // Full, or the peer's authenticated end (EOF; bytes after it would be an error on the
            // next read, which the opener reports).
            if buf.remaining() == 0 || self.opener.is_ended() {
                return Poll::Ready(Ok(()));
            }
            // What has arrived is given out before the socket is read again.
            if got && self.taken == self.received {
                return Poll::Ready(Ok(()));
            }
            // With plaintext in `buf`, this only feeds the opener from the inbox: an error is then the
            // opener's, kept for the next read, and what was authenticated before it goes out first.
            match ready!(self.poll_fill(cx)) {
                Err(_) if got => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
                Ok(false) if !self.opener.is_ended() => return Poll::Ready(Ok(())),
                Ok(_) => {}
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
        (self.unsent, self.sealed) = (0, 0);
        let taken = self.seal(buf)?;
        // Start writing now; what does not fit goes out on the next call.
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
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
