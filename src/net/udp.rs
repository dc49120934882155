//! UDP sockets (feature `udp`), with embassy-net's API.
//!
//! Adapted from embassy-net 0.9.1 `src/udp.rs` (MIT OR Apache-2.0).

use core::future::poll_fn;
use core::mem;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
pub use smoltcp::socket::udp::{PacketMetadata, UdpMetadata};
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::Stack;

/// Error from [`UdpSocket::bind`].
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BindError {
    /// The socket is already bound.
    InvalidState,
    /// The endpoint is unusable (port 0 after ephemeral selection, which cannot happen, or an
    /// address smoltcp rejects).
    NoRoute,
}

/// Error from [`UdpSocket::send_to`].
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SendError {
    /// The remote endpoint is unusable (unspecified address, port 0).
    NoRoute,
    /// The socket is not bound: call [`UdpSocket::bind`] first.
    SocketNotBound,
    /// The datagram is larger than the socket's send buffer.
    PacketTooLarge,
}

/// Error from [`UdpSocket::recv_from`].
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RecvError {
    /// The datagram was longer than the buffer given; the rest of it is lost.
    Truncated,
}

/// A UDP socket in a [`Stack`]. Dropping it removes it from the stack.
pub struct UdpSocket<'a> {
    stack: Stack<'a>,
    handle: SocketHandle,
}

impl<'a> UdpSocket<'a> {
    /// Create a UDP socket with the given buffers: `*_meta` hold one entry per queued datagram,
    /// `*_buffer` their payloads.
    ///
    /// # Panics
    /// If the stack has no free socket slot (`SOCK` of [`StackResources`](super::StackResources)).
    pub fn new(
        stack: Stack<'a>,
        rx_meta: &'a mut [PacketMetadata],
        rx_buffer: &'a mut [u8],
        tx_meta: &'a mut [PacketMetadata],
        tx_buffer: &'a mut [u8],
    ) -> Self {
        let handle = stack.with_inner_mut(|i| {
            // SAFETY: the set's lifetime is erased. The socket is removed in `Drop`, before
            // `'a` ends (the same contract, and the same `mem::forget` caveat, as embassy-net).
            let rx_meta: &'static mut [PacketMetadata] = unsafe { mem::transmute(rx_meta) };
            let rx_buffer: &'static mut [u8] = unsafe { mem::transmute(rx_buffer) };
            let tx_meta: &'static mut [PacketMetadata] = unsafe { mem::transmute(tx_meta) };
            let tx_buffer: &'static mut [u8] = unsafe { mem::transmute(tx_buffer) };
            i.sockets.add(udp::Socket::new(
                udp::PacketBuffer::new(rx_meta, rx_buffer),
                udp::PacketBuffer::new(tx_meta, tx_buffer),
            ))
        });
        Self { stack, handle }
    }

    fn with_mut<R>(&self, f: impl FnOnce(&mut udp::Socket<'static>) -> R) -> R {
        self.stack.with_inner_mut(|i| {
            let r = f(i.sockets.get_mut::<udp::Socket>(self.handle));
            i.waker.wake();
            r
        })
    }

    /// Bind to a local endpoint; port 0 picks an ephemeral port.
    pub fn bind<T: Into<IpListenEndpoint>>(&mut self, endpoint: T) -> Result<(), BindError> {
        let mut endpoint = endpoint.into();
        if endpoint.port == 0 {
            endpoint.port = self.stack.with_inner_mut(|i| i.get_local_port());
        }
        self.with_mut(|s| s.bind(endpoint)).map_err(|e| match e {
            udp::BindError::InvalidState => BindError::InvalidState,
            udp::BindError::Unaddressable => BindError::NoRoute,
        })
    }

    /// The local endpoint the socket is bound to (port 0 if unbound).
    pub fn endpoint(&self) -> IpListenEndpoint {
        self.with_mut(|s| s.endpoint())
    }

    /// Whether the socket is bound.
    pub fn is_open(&self) -> bool {
        self.with_mut(|s| s.is_open())
    }

    /// Unbind the socket, dropping the datagrams queued in both directions.
    pub fn close(&mut self) {
        self.with_mut(|s| s.close())
    }

    /// Send `buf` as one datagram to `remote_endpoint`, waiting for room in the send buffer.
    pub async fn send_to<T: Into<IpEndpoint>>(
        &self,
        buf: &[u8],
        remote_endpoint: T,
    ) -> Result<(), SendError> {
        let remote_endpoint = remote_endpoint.into();
        poll_fn(|cx| {
            self.with_mut(|s| {
                if buf.len() > s.payload_send_capacity() {
                    return Poll::Ready(Err(SendError::PacketTooLarge));
                }
                match s.send_slice(buf, remote_endpoint) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(udp::SendError::BufferFull) => {
                        s.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    Err(udp::SendError::Unaddressable) if s.endpoint().port == 0 => {
                        Poll::Ready(Err(SendError::SocketNotBound))
                    }
                    Err(udp::SendError::Unaddressable) => Poll::Ready(Err(SendError::NoRoute)),
                }
            })
        })
        .await
    }

    /// Wait for a datagram, copy it into `buf`, and return its length and where it came from.
    /// A datagram longer than `buf` is dropped with [`RecvError::Truncated`].
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, UdpMetadata), RecvError> {
        poll_fn(|cx| {
            self.with_mut(|s| match s.recv_slice(buf) {
                Ok((n, meta)) => Poll::Ready(Ok((n, meta))),
                Err(udp::RecvError::Truncated) => Poll::Ready(Err(RecvError::Truncated)),
                Err(udp::RecvError::Exhausted) => {
                    s.register_recv_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }

    /// The socket's handle in the stack's socket set. The `UdpSocket` keeps ownership.
    pub fn handle(&self) -> SocketHandle {
        self.handle
    }
}

impl Drop for UdpSocket<'_> {
    fn drop(&mut self) {
        self.stack.with_inner_mut(|i| {
            i.sockets.remove(self.handle);
        });
    }
}
