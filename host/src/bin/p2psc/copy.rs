//! Moving bytes: one direction with half-close at its end, and both directions of a connection pair.
//! Errors name the end that failed, which decides the exit class (local I/O or a broken peer
//! connection).

use std::io;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::fail::{Class, Failure};

/// Bytes moved per read: large enough that a bulk transfer costs few system calls.
pub const CHUNK: usize = 64 * 1024;

/// One end of a copy: its name in messages and the class of its failures.
#[derive(Debug, Clone, Copy)]
pub struct End {
    name: &'static str,
    class: Class,
}

/// Our standard input.
pub const STDIN: End = End {
    name: "stdin",
    class: Class::LocalIo,
};
/// Our standard output.
pub const STDOUT: End = End {
    name: "stdout",
    class: Class::LocalIo,
};
/// The p2psc connection.
pub const PEER: End = End {
    name: "the peer",
    class: Class::PeerLost,
};
/// A forwarded local connection (client or service).
pub const LOCAL: End = End {
    name: "the local connection",
    class: Class::LocalIo,
};

impl End {
    /// The failure of doing something (`doing`: "read from", "write to", "close") with this end.
    pub fn failed(self, doing: &str, e: io::Error) -> Failure {
        Failure::new(self.class, format!("cannot {doing} {}: {e}", self.name))
    }
}

/// Copy `from` to `to` until `from` ends, then close `to` for writing (a FIN towards a socket): the
/// half-close that tells the other side this direction is done. Returns the bytes copied.
///
/// Whenever `from` has nothing ready, `to` is flushed before waiting for more: a writer that buffers
/// (the secure channel keeps the records it sealed that the socket could not take yet) must not hold
/// back what was written until the next input — the other side may be waiting for it before it sends
/// anything more (an echo, a request and its answer). `tokio::io::copy` does the same.
pub async fn copy<R, W>(from: &mut R, src: End, to: &mut W, dst: End) -> Result<u64, Failure>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match read_now(from, &mut buf).await {
            Some(read) => read,
            None => {
                to.flush().await.map_err(|e| dst.failed("write to", e))?;
                from.read(&mut buf).await
            }
        };
        let n = n.map_err(|e| src.failed("read from", e))?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n])
            .await
            .map_err(|e| dst.failed("write to", e))?;
        total += n as u64;
    }
    // Flush first: tokio's stdout does not flush on shutdown, and its last write may still be in
    // flight on a blocking thread.
    to.flush().await.map_err(|e| dst.failed("write to", e))?;
    to.shutdown().await.map_err(|e| dst.failed("close", e))?;
    Ok(total)
}

/// A read of `from` that is ready now, or `None` when it would wait (reading is cancel-safe: nothing
/// is taken from `from` then).
async fn read_now<R>(from: &mut R, buf: &mut [u8]) -> Option<io::Result<usize>>
where
    R: AsyncRead + Unpin + ?Sized,
{
    std::future::poll_fn(|cx| {
        let mut space = ReadBuf::new(buf);
        Poll::Ready(match Pin::new(&mut *from).poll_read(cx, &mut space) {
            Poll::Ready(Ok(())) => Some(Ok(space.filled().len())),
            Poll::Ready(Err(e)) => Some(Err(e)),
            Poll::Pending => None,
        })
    })
    .await
}

/// Carry `local` and `peer` both ways until both directions are closed; the first error ends both
/// (dropping the halves closes the sockets). Returns (bytes to the peer, bytes from it).
pub async fn carry<L, P>(local: L, peer: P) -> Result<(u64, u64), Failure>
where
    L: AsyncRead + AsyncWrite + Unpin,
    P: AsyncRead + AsyncWrite + Unpin,
{
    let (mut local_rx, mut local_tx) = tokio::io::split(local);
    let (mut peer_rx, mut peer_tx) = tokio::io::split(peer);
    let up = copy(&mut local_rx, LOCAL, &mut peer_tx, PEER);
    let down = copy(&mut peer_rx, PEER, &mut local_tx, LOCAL);
    tokio::try_join!(up, down)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_directions_arrive_and_each_end_is_half_closed() {
        let (local, mut client) = tokio::io::duplex(1024);
        let (peer, mut remote) = tokio::io::duplex(1024);
        let carrying = tokio::spawn(carry(local, peer));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let to_remote = data.clone();
        let client_side = tokio::spawn(async move {
            client.write_all(&to_remote).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        remote.read_to_end(&mut got).await.unwrap();
        assert!(got == data);
        remote.write_all(b"reply").await.unwrap();
        remote.shutdown().await.unwrap();
        assert_eq!(client_side.await.unwrap(), b"reply");
        assert_eq!(carrying.await.unwrap(), Ok((data.len() as u64, 5)));
    }

    #[tokio::test]
    async fn what_a_buffering_writer_holds_goes_out_while_the_source_waits() {
        // The source sends a request and waits for the answer, its direction still open; the
        // destination holds writes until flushed (as the secure channel may). The request must arrive.
        let (mut client, mut source) = tokio::io::duplex(1024);
        let (sink, mut remote) = tokio::io::duplex(1024);
        let mut buffered = tokio::io::BufWriter::with_capacity(4096, sink);
        let copying =
            tokio::spawn(async move { copy(&mut source, LOCAL, &mut buffered, PEER).await });
        client.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        let arrived = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            remote.read_exact(&mut got),
        )
        .await;
        assert!(matches!(arrived, Ok(Ok(7))), "held back: {arrived:?}");
        assert_eq!(&got, b"request");
        drop(client);
        let mut rest = Vec::new();
        remote.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(copying.await.unwrap(), Ok(7));
    }

    #[tokio::test]
    async fn a_failing_end_is_named_with_its_class() {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
            }
        }
        let mut sink = tokio::io::sink();
        let f = copy(&mut Broken, PEER, &mut sink, STDOUT)
            .await
            .unwrap_err();
        assert_eq!(f.class, Class::PeerLost);
        assert!(f.message.starts_with("cannot read from the peer"), "{f}");
    }
}
