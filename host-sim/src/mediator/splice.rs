//! The relay's splice (`doc/mediator.md` §16.3): two smoltcp sockets joined by the mediator, bytes
//! both ways under the pair's [`Budget`] and the node's total rate, half-closes forwarded, a reset or a
//! limit resetting both. What to relay and when it may start comes from the core's sessions and table;
//! this is only the byte pump.
//!
//! Each direction reads only as much as the other socket's transmit buffer can take, so the relay holds
//! nothing of its own: the destination's transmit buffer is the direction's fixed buffer, and a slow
//! reader stops the reads (back-pressure). The payload a session held before the join is still in its
//! socket's receive buffer, so it goes first.

use p2psc::proto::mediator::relay::{Budget, Grant, Limit, TokenBucket};
use p2psc::time::{Duration, Instant};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};

/// Most bytes moved in one step of one direction.
const CHUNK: usize = 1024;

/// How often a relay whose directions have both ended looks whether its sockets are done: the last
/// ACK that closes a socket wakes nobody.
const CLOSING_RECHECK: Duration = Duration::from_millis(10);

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both peers closed their direction (FIN both ways).
    Closed,
    /// A peer's connection was reset (or died): the other was reset too.
    Reset,
    /// A limit of the pair's budget: both were reset.
    Limit(Limit),
}

/// One relayed pair: the two sockets (leader's first) and their budget.
pub struct Splice {
    /// The two connections' slots in the node.
    pub slots: [usize; 2],
    handles: [SocketHandle; 2],
    budget: Budget,
    /// `fin[d]`: the FIN read on `handles[d]` was forwarded to the other socket.
    fin: [bool; 2],
    /// The pair's rate said: ask again then; or, both directions ended, look again then.
    wait: Option<Instant>,
}

impl Splice {
    /// Join the connections in `slots` (their sockets `handles`) under `budget`.
    pub fn new(slots: [usize; 2], handles: [SocketHandle; 2], budget: Budget) -> Splice {
        Splice {
            slots,
            handles,
            budget,
            fin: [false; 2],
            wait: None,
        }
    }

    /// Bytes relayed so far, both directions.
    pub fn bytes(&self) -> u64 {
        self.budget.bytes()
    }

    /// When [`pump`](Self::pump) must run next at the latest.
    pub fn poll_at(&self) -> Instant {
        let end = self.budget.poll_at();
        self.wait.map_or(end, |w| w.min(end))
    }

    /// Move what can move both ways; `Some` once the relay has ended (both sockets then reset or
    /// closed: the caller frees their slots).
    pub fn pump(
        &mut self,
        now: Instant,
        total: &mut TokenBucket,
        sockets: &mut SocketSet<'_>,
    ) -> Option<RelayEnd> {
        if let Some(limit) = self.budget.ended(now) {
            self.reset(sockets);
            return Some(RelayEnd::Limit(limit));
        }
        if self.wait.is_some_and(|w| now >= w) {
            self.wait = None;
        }
        for d in 0..2 {
            if let Err(limit) = self.forward(d, now, total, sockets) {
                self.reset(sockets);
                return Some(RelayEnd::Limit(limit));
            }
        }
        self.end(now, sockets)
    }

    /// Move bytes from `handles[d]` to the other socket, and its FIN once everything before it went.
    fn forward(
        &mut self,
        d: usize,
        now: Instant,
        total: &mut TokenBucket,
        sockets: &mut SocketSet<'_>,
    ) -> Result<(), Limit> {
        let (from, to) = (self.handles[d], self.handles[1 - d]);
        let mut buf = [0u8; CHUNK];
        while self.wait.is_none() {
            let room = {
                let to = sockets.get::<tcp::Socket>(to);
                if to.may_send() {
                    to.send_capacity() - to.send_queue()
                } else {
                    0
                }
            };
            let queued = sockets.get::<tcp::Socket>(from).recv_queue();
            let want = room.min(queued).min(CHUNK);
            if want == 0 {
                break;
            }
            let granted = match self.budget.grant(now) {
                Grant::Go(n) => n.min(want),
                Grant::Wait(at) => {
                    self.wait = Some(at);
                    break;
                }
                Grant::End(limit) => return Err(limit),
            };
            let allowed = match total.take(now, granted) {
                Ok(n) => n,
                Err(at) => {
                    self.budget.record(now, granted, 0);
                    self.wait = Some(at);
                    break;
                }
            };
            let moved = sockets
                .get_mut::<tcp::Socket>(from)
                .recv_slice(&mut buf[..allowed])
                .unwrap_or(0);
            let sent = sockets
                .get_mut::<tcp::Socket>(to)
                .send_slice(&buf[..moved])
                .unwrap_or(0);
            debug_assert_eq!(sent, moved, "read no more than the other side can take");
            total.give_back(allowed - moved);
            self.budget.record(now, granted, moved);
            if moved == 0 {
                break;
            }
        }
        let source = sockets.get::<tcp::Socket>(from);
        let ended =
            !source.may_recv() && source.recv_queue() == 0 && source.state() != State::Closed;
        if ended && !self.fin[d] {
            self.fin[d] = true;
            sockets.get_mut::<tcp::Socket>(to).close();
        }
        Ok(())
    }

    /// The end of the relay, if it has come: both directions closed and both sockets done with their
    /// FINs, or a socket that died with a direction still open (reset: the other is reset too).
    fn end(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> Option<RelayEnd> {
        let states = self.handles.map(|h| sockets.get::<tcp::Socket>(h).state());
        let done = |s: State| matches!(s, State::Closed | State::TimeWait);
        if self.fin == [true, true] {
            if states.iter().all(|s| done(*s)) {
                self.reset(sockets);
                return Some(RelayEnd::Closed);
            }
            self.wait = Some(now + CLOSING_RECHECK);
            return None;
        }
        states.contains(&State::Closed).then(|| {
            self.reset(sockets);
            RelayEnd::Reset
        })
    }

    /// Reset both connections (a RST where one is still open).
    fn reset(&mut self, sockets: &mut SocketSet<'_>) {
        for h in self.handles {
            sockets.get_mut::<tcp::Socket>(h).abort();
        }
    }
}
