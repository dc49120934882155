//! One task per connection: the I/O shell around a [`Session`].
//!
//! The task owns the socket and the session, and waits for whichever comes first: bytes from the peer,
//! a notice in its mailbox (Match, Replaced, PeerTimeout; in version 2 the relay's notices), the
//! session's next deadline, or shutdown. After each of them it writes whatever the session queued, whole
//! frames at a time, and closes once the session says so. It holds no buffer across an `.await` except
//! one outgoing frame pair, so an idle waiting peer costs little memory (the figures are in the README).
//!
//! Version 2: bytes behind a RelayRequest are relay payload; the task holds them (at most
//! `relay.buffer`, then it stops reading). Once the session is relaying and its Relayed is written,
//! the follower's task hands its connection (and the payload) to the leader's task, which runs the
//! splice of the pair ([`crate::relay`]).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use p2psc::proto::{ConnId, Notice, Session, SessionEvent};
use p2psc::wire::{AbortReason, Message, HEADER_LEN, MAX_FRAME_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::limits::Refusal;
use crate::relay::{self, Half};
use crate::shared::{ConnGuard, Links, Mailbox, Shared};
use p2psc::identity::dalek::DalekVerifier;

/// How long a closing connection keeps reading (and discarding) after its last frame, so that bytes the
/// peer sent meanwhile do not turn our FIN into a RST that could destroy the Abort before it is read.
pub(crate) const CLOSE_DRAIN: Duration = Duration::from_millis(500);

/// At most this many refused connections are being answered at once; beyond, they are dropped silently.
const MAX_REFUSING: usize = 256;

/// How a connection ended.
enum End {
    /// The session finished (matched and lingered, or aborted with its Abort sent).
    Closed,
    /// The peer closed its side first.
    PeerClosed,
    /// Reading or writing failed.
    Failed(io::Error),
    /// Version 2: the relay is joined and Relayed written: the connection is the relay's.
    Relay,
}

/// The peer's address as the session must report it: an IPv4 peer reaching an IPv6 socket shows up
/// IPv4-mapped (`::ffff:a.b.c.d`), which is the IPv4 address.
pub(crate) fn normalise(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

/// A connection task's state besides its socket.
struct Conn {
    shared: Arc<Shared>,
    id: ConnId,
    session: Session,
    links: Links,
    /// Version 2: relay payload received behind our RelayRequest, for the partner.
    held: Vec<u8>,
}

impl Conn {
    fn settle(&mut self, event: SessionEvent) {
        let (session, links) = (&mut self.session, &mut self.links);
        self.shared.settle(self.id, session, links, event);
    }

    fn abort(&mut self, reason: AbortReason) {
        if let Some(event) = self.session.abort(reason) {
            self.settle(event);
        }
    }

    fn notice(&mut self, notice: Notice) {
        match self.session.notify(self.shared.clock.now(), notice) {
            Some(event) => self.settle(event),
            None => self.shared.rearm(self.id, &self.session, &mut self.links),
        }
    }

    /// How much to read now. A full hold stops reading: TCP flow control keeps the rest in the peer's
    /// send buffer. Before the hold, a read takes at most a header more than a hold, so the payload
    /// behind a RelayRequest read with it fits.
    fn room(&self) -> usize {
        let hold_at_most = self.shared.config.mediator.relay.buffer;
        match self.session.holds_payload() {
            true => hold_at_most.saturating_sub(self.held.len()),
            false => hold_at_most.saturating_add(HEADER_LEN),
        }
    }

    /// Read what the peer sent and feed it to the session (payload behind a RelayRequest to the
    /// hold); how the connection ended, if it did.
    fn read(&mut self, stream: &TcpStream) -> Option<End> {
        // A local buffer, not held across an await: it costs stack, not per-connection memory.
        let mut buf = [0u8; 512];
        let want = self.room().min(buf.len());
        let n = match stream.try_read(&mut buf[..want]) {
            Ok(0) => return Some(End::PeerClosed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => return Some(End::Failed(e)),
        };
        let now = self.shared.clock.now();
        let used = p2psc::proto::feed(&buf[..n], |data| {
            let (used, event) = self.session.receive(now, &DalekVerifier, data);
            if let Some(event) = event {
                self.settle(event);
            }
            used
        });
        if self.session.holds_payload() {
            self.held.extend_from_slice(&buf[used..n]);
        }
        None
    }
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
    mut shutdown: watch::Receiver<bool>,
) {
    let clock = shared.clock;
    let write_timeout = shared.config.mediator.step_timeout.into();
    let id = guard.conn;
    let Some(mut c) = Conn::open(shared, id, peer) else {
        return;
    };
    let mut shutting_down = *shutdown.borrow_and_update();
    if shutting_down {
        c.abort(AbortReason::ShuttingDown);
    }
    tracing::trace!(conn = id, %peer, "connected");

    let end = loop {
        let timeout = match shutting_down {
            true => c.shared.config.shutdown_grace,
            false => write_timeout,
        };
        if let Err(e) = flush(&mut stream, &mut c.session, &clock, timeout).await {
            break End::Failed(e);
        }
        if c.session.is_closed() {
            break End::Closed;
        }
        if c.session.is_relaying() {
            break End::Relay;
        }
        let wake = c.session.poll_at().map(|at| clock.deadline(at));
        let room = c.room();
        tokio::select! {
            biased;
            _ = shutdown.changed(), if !shutting_down => {
                shutting_down = true;
                c.abort(AbortReason::ShuttingDown);
            }
            notice = next_notice(&mut c.links.mailbox) => {
                if let Some(notice) = notice {
                    c.notice(notice);
                }
            }
            ready = stream.readable(), if room > 0 => {
                let ended = match ready {
                    Ok(()) => c.read(&stream),
                    Err(e) => Some(End::Failed(e)),
                };
                if let Some(end) = ended {
                    break end;
                }
            }
            _ = sleep_until(wake) => {
                if let Some(event) = c.session.poll(clock.now()) {
                    c.settle(event);
                }
            }
        }
    };
    finish(c, end, stream, guard, shutting_down, shutdown).await;
}

impl Conn {
    /// The session of a new connection from `peer`, with a fresh challenge nonce (`None`, logged, when
    /// the OS has no randomness to give).
    fn open(shared: Arc<Shared>, id: ConnId, peer: SocketAddr) -> Option<Conn> {
        let mut nonce = [0u8; 32];
        if let Err(e) = getrandom::getrandom(&mut nonce) {
            tracing::error!(conn = id, error = %e, "no randomness for a challenge nonce; dropping connection");
            return None;
        }
        let session = Session::new(shared.config.mediator, peer, nonce, shared.clock.now());
        Some(Conn {
            shared,
            id,
            session,
            links: Links::default(),
            held: Vec::new(),
        })
    }
}

/// After the connection's loop: close as `end` says, or hand the connection to the relay.
async fn finish(
    c: Conn,
    end: End,
    stream: TcpStream,
    guard: ConnGuard,
    shutting_down: bool,
    shutdown: watch::Receiver<bool>,
) {
    let (conn, shared, session) = (c.id, c.shared, c.session);
    if let End::Relay = end {
        let half = Half {
            stream,
            held: c.held,
            guard,
        };
        relay::start(shared, &session, c.links.join, half, shutdown).await;
        return;
    }
    shared.closed(conn, &session);
    match end {
        End::Closed => {
            tracing::trace!(conn, "closing");
            let drain = match shutting_down {
                true => CLOSE_DRAIN.min(shared.config.shutdown_grace),
                false => CLOSE_DRAIN,
            };
            close_gracefully(stream, drain).await;
        }
        // A matched peer is off to punch: its leaving is the normal end, not a disconnect. Dropping the
        // stream closes it (a FIN: we have read all the peer sent).
        End::PeerClosed if session.is_matched() => {
            tracing::trace!(conn, "matched peer closed");
            drop(stream);
        }
        End::PeerClosed | End::Failed(_) | End::Relay => {
            let waited = shared.disconnected(conn, &session);
            match end {
                End::Failed(e) => tracing::debug!(conn, error = %e, waited, "connection failed"),
                _ => tracing::debug!(conn, waited, "peer closed the connection"),
            }
            drop(stream);
        }
    }
    // Only now give back the connection's place in the limits.
    drop(guard);
}

/// Write every frame the session has queued, whole, within `timeout` (a peer that does not read cannot
/// hold the task).
async fn flush(
    stream: &mut TcpStream,
    session: &mut Session,
    clock: &Clock,
    timeout: Duration,
) -> io::Result<()> {
    let mut buf = [0u8; 2 * MAX_FRAME_LEN];
    loop {
        let len = p2psc::proto::fill(&mut buf, |out| session.transmit(clock.now(), out));
        if len == 0 {
            return Ok(());
        }
        write_within(stream, &buf[..len], timeout).await?;
    }
}

/// Write all of `data` within `timeout`.
pub(crate) async fn write_within(
    stream: &mut TcpStream,
    data: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    // The kernel's send buffer is almost always free: try without the future machinery first.
    let written = match stream.try_write(data) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    if written < data.len() {
        tokio::time::timeout(timeout, stream.write_all(&data[written..]))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    }
    Ok(())
}

async fn next_notice(mailbox: &mut Option<Mailbox>) -> Option<p2psc::proto::Notice> {
    match mailbox {
        Some(rx) => {
            let notice = rx.await.ok();
            *mailbox = None;
            notice
        }
        None => std::future::pending().await,
    }
}

pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// FIN after the last frame, then read and discard until the peer closes too, for at most `drain`.
pub(crate) async fn close_gracefully(mut stream: TcpStream, drain: Duration) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(drain, async {
        let mut buf = [0u8; 256];
        let mut total = 0usize;
        // Bounded: a peer that keeps sending gets a RST instead.
        while total < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// Answer a connection beyond the limits with `Abort(TooManyConnections)` and close it. Refusing costs a
/// short task; when too many refusals are already in flight, the connection is simply dropped.
pub(crate) fn refuse(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr, why: Refusal) {
    tracing::debug!(%peer, ?why, "refusing connection");
    if shared.refusing.fetch_add(1, Relaxed) >= MAX_REFUSING {
        shared.refusing.fetch_sub(1, Relaxed);
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let mut frame = [0u8; MAX_FRAME_LEN];
        if let Some(n) = Message::Abort(AbortReason::TooManyConnections).emit_bytes(&mut frame) {
            // A fresh socket's send buffer is empty: this never blocks.
            let _ = stream.try_write(&frame[..n]);
        }
        close_gracefully(stream, CLOSE_DRAIN).await;
        shared.refusing.fetch_sub(1, Relaxed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_peers_are_ipv4() {
        let mapped: SocketAddr = "[::ffff:203.0.113.9]:4000".parse().unwrap();
        assert_eq!(normalise(mapped), "203.0.113.9:4000".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
        assert_eq!(normalise(v6), v6);
        let v4: SocketAddr = "198.51.100.1:1".parse().unwrap();
        assert_eq!(normalise(v4), v4);
    }
}
