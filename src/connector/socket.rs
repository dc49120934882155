//! Glue between smoltcp TCP sockets and the sans-IO machines: what a socket is doing, as a [`Link`];
//! closing without a RST; and the two frame loops (send whole frames while they fit, feed received
//! bytes until the machine takes no more).

use core::net::SocketAddr;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::socket::AnySocket;

use crate::proto::punch::Link;
use crate::wire::MAX_FRAME_LEN;

/// The TCP socket `handle` of `sockets`. Only for handles that passed [`usable`]: smoltcp panics on a
/// handle of another type or of no socket.
pub(crate) fn tcp<'a, 'b>(
    sockets: &'a mut SocketSet<'b>,
    handle: SocketHandle,
) -> &'a mut tcp::Socket<'b> {
    sockets.get_mut::<tcp::Socket>(handle)
}

/// The TCP socket `handle` of `sockets`, if it is one, found without smoltcp's panicking accessors.
pub(crate) fn try_tcp<'a, 'b>(
    sockets: &'a mut SocketSet<'b>,
    handle: SocketHandle,
) -> Option<&'a mut tcp::Socket<'b>> {
    sockets
        .iter_mut()
        .find(|(h, _)| *h == handle)
        .and_then(|(_, s)| tcp::Socket::downcast_mut(s))
}

/// Whether `handle` is a TCP socket of `sockets` whose buffers hold a whole frame each way.
pub(crate) fn usable(sockets: &mut SocketSet<'_>, handle: SocketHandle) -> bool {
    try_tcp(sockets, handle)
        .is_some_and(|s| s.send_capacity() >= MAX_FRAME_LEN && s.recv_capacity() >= MAX_FRAME_LEN)
}

/// What `s` is doing, as the sans-IO machines see it.
pub(crate) fn link(s: &tcp::Socket) -> Link {
    match s.state() {
        State::Closed => Link::Closed,
        State::Listen => Link::Listening,
        State::SynSent => Link::SynSent,
        State::SynReceived => Link::SynReceived,
        State::Established if s.may_recv() => match (s.local_endpoint(), s.remote_endpoint()) {
            (Some(local), Some(remote)) => Link::Established {
                local: SocketAddr::from(local),
                remote: SocketAddr::from(remote),
            },
            _ => Link::Closing,
        },
        _ => Link::Closing,
    }
}

/// Close a socket without a RST: `abort` alone would send one to the remote, and a RST through our own
/// NAT ends the session it keeps for the peer (Linux conntrack), closing the hole we punched. `listen`
/// forgets the remote, and aborting a listening socket sends nothing.
pub(crate) fn quiet_close(s: &mut tcp::Socket, port: u16) {
    s.abort();
    let _ = s.listen(port);
    s.abort();
}

/// Queue the frames `next` hands out while a largest frame still fits in `s`'s transmit buffer.
/// Returns whether any was queued. (`dyn`: one copy of the loop for every machine that sends.)
pub fn send_frames(s: &mut tcp::Socket, next: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> bool {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut sent = false;
    while s.send_capacity() - s.send_queue() >= MAX_FRAME_LEN {
        let Some(n) = next(&mut buf) else { break };
        sent |= s.send_slice(&buf[..n]).is_ok_and(|queued| queued > 0);
    }
    sent
}

/// Hand what `s` has received to `take` until it consumes nothing more (it returns how many bytes of
/// the slice it consumed). Returns whether anything was consumed.
pub fn feed(s: &mut tcp::Socket, take: &mut dyn FnMut(&[u8]) -> usize) -> bool {
    let mut fed = false;
    while s.can_recv() {
        match s.recv(|data| {
            let n = take(data);
            (n, n)
        }) {
            Ok(0) | Err(_) => break,
            Ok(_) => fed = true,
        }
    }
    fed
}
