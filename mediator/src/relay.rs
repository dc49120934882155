//! Version 2: the relay of a joined pair (`doc/mediator.md` §16.3–§16.4).
//!
//! When both sessions of a pair are relaying (each has written its Relayed), the follower's task
//! hands its connection and the payload it held over to the leader's task ([`start`]), which splices
//! the two: per direction, read at most one buffer (`relay.buffer`), write all of it to the other
//! connection, only then read again. So the mediator holds at most one buffer per direction, and a slow
//! reader slows the writer through TCP flow control. Before each read a direction takes permission
//! from the pair's [`Budget`] (its rate, byte, duration and idle limits, from the core) and from the
//! server's total rate; without it, it waits.
//!
//! A FIN read on one connection is forwarded as a FIN on the other; when both directions have ended,
//! both connections are closed. Everything else ends the relay with a reset of both connections (their
//! sockets get `SO_LINGER` 0 at the start, so closing them sends a RST): a reset or error on either
//! connection, a limit, or the end of the shutdown grace period. A reset cannot be mistaken for a
//! complete stream (P§14.6).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2psc::proto::mediator::relay::{Budget, Grant, Limit};
use p2psc::proto::Session;
use p2psc::wire::Role;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use crate::shared::{lock, ConnGuard, Shared};

/// One connection of a joined relay, as its task hands it on.
pub(crate) struct Half {
    pub(crate) stream: TcpStream,
    /// Payload the peer sent behind its RelayRequest, for the other peer.
    pub(crate) held: Vec<u8>,
    /// Its place in the connection limits: a relayed connection still counts.
    pub(crate) guard: ConnGuard,
}

/// The leader's side of an admitted relay: where the follower's connection arrives, and the relay's
/// place in the table's count.
pub(crate) struct Join {
    pub(crate) half: oneshot::Receiver<Half>,
    pub(crate) ticket: RelayTicket,
}

/// An admitted relay's place in the table's count of open relays: given back on drop, however the
/// relay ends, with the cause counted if one was set.
pub(crate) struct RelayTicket {
    shared: Arc<Shared>,
    ended: Option<Ended>,
}

impl RelayTicket {
    pub(crate) fn new(shared: Arc<Shared>) -> RelayTicket {
        RelayTicket {
            shared,
            ended: None,
        }
    }
}

impl Drop for RelayTicket {
    fn drop(&mut self) {
        self.shared.relay_ended(self.ended);
    }
}

/// Why a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Both peers closed their directions (FIN both ways).
    Closed,
    /// A peer reset its connection, or reading or writing failed (or the follower never came).
    Reset,
    /// The relay carried `relay.max_bytes`.
    Bytes,
    /// The relay lived `relay.max_duration`.
    Duration,
    /// No byte moved for `relay.idle_timeout`.
    Idle,
    /// The shutdown grace period ended.
    Shutdown,
}

impl Ended {
    /// Every cause, in the order of the metrics and [`Snapshot::relays_ended`](crate::Snapshot).
    pub(crate) const ALL: [Ended; 6] = [
        Ended::Closed,
        Ended::Reset,
        Ended::Bytes,
        Ended::Duration,
        Ended::Idle,
        Ended::Shutdown,
    ];

    /// The metrics label.
    pub(crate) const fn label(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::Reset => "reset",
            Ended::Bytes => "bytes",
            Ended::Duration => "duration",
            Ended::Idle => "idle",
            Ended::Shutdown => "shutdown",
        }
    }
}

impl From<Limit> for Ended {
    fn from(limit: Limit) -> Ended {
        match limit {
            Limit::Bytes => Ended::Bytes,
            Limit::Duration => Ended::Duration,
            Limit::Idle => Ended::Idle,
        }
    }
}

/// A relaying session's connection, its Relayed written: the follower hands it to its leader; the
/// leader waits (at most `step_timeout`) for the follower's and splices the two.
pub(crate) async fn start(
    shared: Arc<Shared>,
    session: &Session,
    join: Option<Join>,
    half: Half,
    shutdown: watch::Receiver<bool>,
) {
    match (session.relay_pair(), join) {
        (Some((_, Role::Leader)), Some(mut join)) => {
            let wait = shared.config.mediator.step_timeout.into();
            match tokio::time::timeout(wait, &mut join.half).await {
                Ok(Ok(other)) => splice(shared, join.ticket, half, other, shutdown).await,
                _ => {
                    join.ticket.ended = Some(Ended::Reset);
                    reset(half.stream);
                }
            }
        }
        (Some((leader, Role::Follower)), _) => {
            if let Err(half) = shared.hand_over(leader, half) {
                reset(half.stream);
            }
        }
        _ => reset(half.stream),
    }
}

/// Close with a RST.
fn reset(stream: TcpStream) {
    set_linger(&stream, Some(Duration::ZERO));
}

fn set_linger(stream: &TcpStream, linger: Option<Duration>) {
    let _ = socket2::SockRef::from(stream).set_linger(linger);
}

/// Relay between `a` and `b` until both directions have ended, or a reset, a limit or shutdown.
async fn splice(
    shared: Arc<Shared>,
    mut ticket: RelayTicket,
    a: Half,
    b: Half,
    shutdown: watch::Receiver<bool>,
) {
    let budget = Mutex::new(Budget::new(
        shared.config.mediator.relay,
        shared.clock.now(),
    ));
    let (mut sa, mut sb) = (a.stream, b.stream);
    set_linger(&sa, Some(Duration::ZERO));
    set_linger(&sb, Some(Duration::ZERO));
    let ended = {
        let ((ra, wa), (rb, wb)) = (sa.split(), sb.split());
        let pumps = async {
            tokio::try_join!(
                pump(&shared, &budget, ra, wb, a.held),
                pump(&shared, &budget, rb, wa, b.held),
            )
        };
        tokio::select! {
            done = pumps => done.err().unwrap_or(Ended::Closed),
            limit = limits(&shared, &budget) => limit,
            end = after_shutdown(shutdown, shared.config.shutdown_grace) => end,
        }
    };
    if ended == Ended::Closed {
        // Both FINs went through: close normally, so no RST destroys data the peers have not read.
        set_linger(&sa, None);
        set_linger(&sb, None);
    }
    let bytes = lock(&budget).bytes();
    tracing::debug!(cause = ended.label(), bytes, "relay ended");
    drop((sa, sb, a.guard, b.guard));
    ticket.ended = Some(ended);
}

/// One direction: the held payload first, then read → write until end of stream (forwarded as a FIN).
async fn pump(
    shared: &Shared,
    budget: &Mutex<Budget>,
    from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    held: Vec<u8>,
) -> Result<(), Ended> {
    let failed = |_: io::Error| Ended::Reset;
    if !held.is_empty() {
        lock(budget).record(shared.clock.now(), 0, held.len());
        shared.relayed(held.len());
        to.write_all(&held).await.map_err(failed)?;
    }
    drop(held);
    let size = shared.config.mediator.relay.buffer;
    // Allocated while bytes flow, freed when the connection has nothing to read: an idle relay holds
    // no buffer.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if buf.is_empty() {
            from.readable().await.map_err(failed)?;
            buf.resize(size, 0);
        }
        let (granted, total) = permission(shared, budget).await?;
        let read = from.try_read(&mut buf[..total]);
        let moved = *read.as_ref().unwrap_or(&0);
        lock(budget).record(shared.clock.now(), granted, moved);
        shared.give_back_total(total - moved);
        match read {
            Ok(0) => {
                to.shutdown().await.map_err(failed)?;
                return Ok(());
            }
            Ok(n) => {
                shared.relayed(n);
                to.write_all(&buf[..n]).await.map_err(failed)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf = Vec::new(),
            Err(e) => return Err(failed(e)),
        }
    }
}

/// Permission to read: bytes granted by the pair's budget, and (at most as many) by the total rate.
async fn permission(shared: &Shared, budget: &Mutex<Budget>) -> Result<(usize, usize), Ended> {
    loop {
        let now = shared.clock.now();
        let grant = lock(budget).grant(now);
        let wait = match grant {
            Grant::End(limit) => return Err(limit.into()),
            Grant::Go(n) => match shared.take_total(now, n) {
                Ok(m) => return Ok((n, m)),
                Err(at) => {
                    lock(budget).record(now, n, 0);
                    at
                }
            },
            Grant::Wait(at) => at,
        };
        tokio::time::sleep_until(shared.clock.deadline(wait)).await;
    }
}

/// The pair's duration and idle limits (bytes are checked as they are granted).
async fn limits(shared: &Shared, budget: &Mutex<Budget>) -> Ended {
    loop {
        let at = lock(budget).poll_at();
        tokio::time::sleep_until(shared.clock.deadline(at)).await;
        let ended = lock(budget).ended(shared.clock.now());
        if let Some(limit) = ended {
            return limit.into();
        }
    }
}

/// Once shutdown has begun, the grace period; then the relay ends.
async fn after_shutdown(mut shutdown: watch::Receiver<bool>, grace: Duration) -> Ended {
    if !*shutdown.borrow_and_update() {
        let _ = shutdown.changed().await;
    }
    tokio::time::sleep(grace).await;
    Ended::Shutdown
}
