//! What each candidate socket of a punch does (protocol §8.2–§8.3): its *turns*, taken in order and
//! again after each failed attempt.
//!
//! Two real-world behaviours shape the plan:
//!
//! - **Connection tracking keeps the first SYN's sequence number.** A NAT router that tracks TCP (Linux
//!   conntrack, in most home routers) keeps one entry per 5-tuple, with the window of the first SYN's
//!   initial sequence number, for minutes while nothing answers. A second SYN on the same 5-tuple from a
//!   new socket carries a new random ISN: when it lies "before" the first, every later segment is out
//!   of window, the router marks it INVALID and drops it or lets it out without translation, and the
//!   connection half-opens and dies. A listening socket that answers the peer's SYN on that 5-tuple
//!   sends a fresh ISN too. So an attempt through our NAT is never ended quietly and replaced: the socket
//!   keeps it, and its own SYN retransmissions carry the same ISN until the late peer's SYN meets it. It
//!   ends only when it is reset (the RST also ends the router's entry, so a new SYN opens a fresh one)
//!   or at the punch deadline.
//! - **A SYN from a peer on the same LAN can arrive before our own SYN has left.** On a LAN our SYN
//!   first waits for the peer's link-layer address (ARP); if the peer already knows ours, its SYN can
//!   reach our SYN-SENT socket first. smoltcp 0.13 panics then (`doc/smoltcp.md`). There is no NAT on a
//!   LAN to open, so only the leader dials the peer's LAN endpoint; the follower listens for it.
//!
//! A spare socket (one more than the peer's targets) listens on *P* for the whole punch, so that a SYN
//! from a port we never dialled (a peer behind a NAT with unpredictable ports) can still be taken while
//! the dialling socket keeps its attempt. A listening socket must come after the dialling sockets in the
//! shell's socket order: a stack that hands a segment to the first socket that accepts it (smoltcp) must
//! find the dialling socket's exact 4-tuple before the listener's port.

use core::net::SocketAddr;

use super::MAX_CANDIDATES;
use crate::proto::register::PunchInfo;
use crate::wire::Role;

/// One duty of a candidate socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Turn {
    /// Dial the peer's public endpoint, through our NAT: the attempt is kept until it is reset or the
    /// punch ends, never replaced by a new SYN (module docs).
    Public(SocketAddr),
    /// Dial the peer's LAN endpoint (the leader, when candidates race): no NAT in between, so an
    /// unanswered attempt ends at the attempt timeout and is dialled again at our next slot.
    Lan(SocketAddr),
    /// Listen on the punch port: for the whole punch (`all_along`), or for one attempt timeout (a
    /// follower's only socket waiting for the leader's LAN SYN before it dials).
    Listen {
        /// For the whole punch.
        all_along: bool,
    },
}

/// The turns of one candidate socket.
pub type Turns = heapless::Vec<Turn, 2>;

/// The turns of each of `sockets` candidate sockets (at most [`MAX_CANDIDATES`] are used), from the
/// Match in `info`, punching from `from` (when known: targets of another address family are left out).
/// Empty when there is nothing to dial.
pub fn plan(
    info: &PunchInfo,
    from: Option<SocketAddr>,
    sockets: usize,
) -> heapless::Vec<Turns, MAX_CANDIDATES> {
    let dialable = |t: &SocketAddr| from.is_none_or(|p| p.is_ipv4() == t.is_ipv4());
    let public = Some(info.peer_observed).filter(dialable).map(Turn::Public);
    let lan = info
        .peer_local
        .filter(|_| info.same_public_address())
        .filter(dialable);
    // The leader dials the LAN endpoint; the follower listens for it (module docs).
    let lan = lan.map(|t| match info.role {
        Role::Leader => Turn::Lan(t),
        Role::Follower => Turn::Listen { all_along: true },
    });
    let listen = Turn::Listen { all_along: true };
    let mut plan = heapless::Vec::new();
    if public.is_none() && lan.is_none() {
        return plan;
    }
    let sockets = sockets.min(MAX_CANDIDATES);
    let turns: [Option<Turns>; 2] = match (public, lan, sockets) {
        (_, _, 0) => [None, None],
        // One socket takes the LAN turn first (dialling, or listening for one attempt timeout), then
        // the public one.
        (Some(p), Some(Turn::Listen { .. }), 1) => {
            [Some(turns(&[Turn::Listen { all_along: false }, p])), None]
        }
        (Some(p), Some(l), 1) => [Some(turns(&[l, p])), None],
        (Some(p), None, 1) => [Some(turns(&[p])), None],
        // Two sockets: the public attempt first in socket order, then the LAN turn or a listener.
        (Some(p), Some(l), _) => [Some(turns(&[p])), Some(turns(&[l]))],
        (Some(p), None, _) => [Some(turns(&[p])), Some(turns(&[listen]))],
        (None, Some(l), _) => [Some(turns(&[l])), None],
        (None, None, _) => [None, None],
    };
    for t in turns.into_iter().flatten() {
        let _ = plan.push(t);
    }
    plan
}

fn turns(list: &[Turn]) -> Turns {
    list.iter().copied().collect()
}
