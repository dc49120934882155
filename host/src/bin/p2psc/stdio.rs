//! stdin and stdout on threads of their own, handing chunks to the async side through channels.
//!
//! tokio's `stdin()`/`stdout()` run every read and write as a separate job on the blocking pool and
//! copy each chunk through a buffer of their own; a thread per stream that owns it for the whole run
//! moves bulk data with fewer hand-offs (about twice the throughput on loopback). Buffers go back and
//! forth, so a bulk transfer allocates nothing after its first few chunks. A thread blocked reading
//! stdin is simply left behind when the tool exits.

use std::io::{self, Read, Write};
use std::sync::mpsc as std_mpsc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use crate::copy::{CHUNK, PEER, STDIN, STDOUT};
use crate::fail::Failure;

/// Chunks in flight between a stdio thread and the async side.
const DEPTH: usize = 4;

/// Buffers handed back for reuse.
struct Spares(std_mpsc::Receiver<Vec<u8>>);

impl Spares {
    /// A returned buffer, or a new one, `CHUNK` bytes long.
    fn take(&self) -> Vec<u8> {
        let mut buf = self.0.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        buf
    }
}

/// Copy stdin to `to` until stdin ends, then flush and close `to` (a half-close towards the peer).
pub async fn stdin_to<W: AsyncWrite + Unpin>(to: &mut W) -> Result<u64, Failure> {
    let (tx, mut chunks) = mpsc::channel::<io::Result<Vec<u8>>>(DEPTH);
    let (give_back, spares) = std_mpsc::channel();
    std::thread::spawn(move || read_stdin(&tx, &Spares(spares)));
    send_chunks(&mut chunks, to, &give_back).await
}

/// Write the chunks to `to` until the channel closes, then flush and close `to`. When no chunk is
/// waiting, `to` is flushed before waiting for the next: the secure channel may still hold records
/// the socket could not take, and the peer may be waiting for them before it sends anything more (an
/// echo loop: `p2psc pipe <fifo | tee fifo` would stop short of the last bytes).
async fn send_chunks<W: AsyncWrite + Unpin>(
    chunks: &mut mpsc::Receiver<io::Result<Vec<u8>>>,
    to: &mut W,
    give_back: &std_mpsc::Sender<Vec<u8>>,
) -> Result<u64, Failure> {
    let mut total = 0u64;
    loop {
        let chunk = match chunks.try_recv() {
            Ok(chunk) => chunk,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                to.flush().await.map_err(|e| PEER.failed("write to", e))?;
                match chunks.recv().await {
                    Some(chunk) => chunk,
                    None => break,
                }
            }
        };
        let chunk = chunk.map_err(|e| STDIN.failed("read from", e))?;
        to.write_all(&chunk)
            .await
            .map_err(|e| PEER.failed("write to", e))?;
        total += chunk.len() as u64;
        let _ = give_back.send(chunk);
    }
    to.flush().await.map_err(|e| PEER.failed("write to", e))?;
    to.shutdown().await.map_err(|e| PEER.failed("close", e))?;
    Ok(total)
}

/// The stdin thread: chunks until the end of stdin (the channel closes) or an error (sent last).
fn read_stdin(tx: &mpsc::Sender<io::Result<Vec<u8>>>, spares: &Spares) {
    let mut stdin = io::stdin().lock();
    loop {
        let mut buf = spares.take();
        let chunk = match stdin.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let last = chunk.is_err();
        if tx.blocking_send(chunk).is_err() || last {
            return;
        }
    }
}

/// Copy `from` to stdout until `from` ends; returns once stdout has everything.
pub async fn to_stdout<R: AsyncRead + Unpin>(from: &mut R) -> Result<u64, Failure> {
    let (tx, chunks) = mpsc::channel::<Vec<u8>>(DEPTH);
    let (give_back, spares) = std_mpsc::channel();
    let spares = Spares(spares);
    let (done_tx, done) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(write_stdout(chunks, &give_back));
    });
    let mut total = 0u64;
    loop {
        let mut buf = spares.take();
        let n = from
            .read(&mut buf)
            .await
            .map_err(|e| PEER.failed("read from", e))?;
        if n == 0 {
            break;
        }
        buf.truncate(n);
        total += n as u64;
        // A closed channel: the thread stopped on an error, which `done` carries.
        if tx.send(buf).await.is_err() {
            break;
        }
    }
    drop(tx);
    let written = done
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::Other.into()));
    written.map_err(|e| STDOUT.failed("write to", e))?;
    Ok(total)
}

/// The stdout thread: write every chunk (handing the buffer back), then flush and close stdout.
fn write_stdout(
    mut chunks: mpsc::Receiver<Vec<u8>>,
    give_back: &std_mpsc::Sender<Vec<u8>>,
) -> io::Result<()> {
    write_chunks(&mut chunks, &mut io::stdout().lock(), give_back)?;
    close_stdout()
}

/// Write every chunk to `out`, flushed whenever no further chunk is waiting, and at the end. Rust's
/// stdout is line-buffered: without the flush, the bytes after the last newline of what the peer sent
/// (a prompt, a binary protocol's message, the tail of an echo) would wait for its next bytes.
fn write_chunks(
    chunks: &mut mpsc::Receiver<Vec<u8>>,
    out: &mut impl Write,
    give_back: &std_mpsc::Sender<Vec<u8>>,
) -> io::Result<()> {
    while let Some(chunk) = chunks.blocking_recv() {
        out.write_all(&chunk)?;
        let _ = give_back.send(chunk);
        if chunks.is_empty() {
            out.flush()?;
        }
    }
    out.flush()
}

/// Close stdout once the peer's direction has ended, so that whatever reads it sees its end now, not
/// when the tool exits: the half-close of the other direction. `p2psc pipe <fifo | tee fifo` (an echo)
/// depends on it: tee ends, the fifo closes, and our stdin ends in turn. /dev/null takes the place of
/// descriptor 1, so a stray later write cannot reach another file that reuses the number.
#[cfg(unix)]
fn close_stdout() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    // SAFETY: dup2 on two open descriptors; it atomically replaces descriptor 1, which this thread
    // alone writes (it holds the stdout lock).
    if unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere stdout stays open until the tool exits.
#[cfg(not(unix))]
fn close_stdout() -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chunk_goes_out_while_stdin_waits() {
        // stdin gave one chunk and stays open; the peer's stream holds writes until flushed (as the
        // secure channel may). The chunk must reach the peer before stdin gives more.
        let (tx, mut chunks) = mpsc::channel(DEPTH);
        let (give_back, _spares) = std_mpsc::channel();
        let (sink, mut remote) = tokio::io::duplex(1024);
        let mut buffered = tokio::io::BufWriter::with_capacity(4096, sink);
        let sending =
            tokio::spawn(async move { send_chunks(&mut chunks, &mut buffered, &give_back).await });
        tx.send(Ok(b"echo me".to_vec())).await.unwrap();
        let mut got = [0u8; 7];
        let arrived = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            remote.read_exact(&mut got),
        )
        .await;
        assert!(matches!(arrived, Ok(Ok(7))), "held back: {arrived:?}");
        assert_eq!(&got, b"echo me");
        // The end of stdin closes our direction.
        drop(tx);
        let mut rest = Vec::new();
        remote.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        assert_eq!(sending.await.unwrap(), Ok(7));
    }

    /// A writer whose bytes the test can see from another thread.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_after_the_last_newline_are_written_while_the_peer_is_quiet() {
        // stdout is line-buffered (a LineWriter); the peer sent a line and a prompt, and waits.
        let (tx, mut chunks) = mpsc::channel(DEPTH);
        let (give_back, _spares) = std_mpsc::channel();
        let seen = Shared::default();
        let mut out = io::LineWriter::new(seen.clone());
        let writer = std::thread::spawn(move || write_chunks(&mut chunks, &mut out, &give_back));
        let sent = b"line\nPassword: ";
        tx.blocking_send(sent.to_vec()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.0.lock().unwrap().len() < sent.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(seen.0.lock().unwrap().as_slice(), sent);
        drop(tx);
        writer.join().unwrap().unwrap();
    }
}
