//! TCP sockets, with embassy-net's API plus [`TcpSocket::connect_from`].
//!
//! Adapted from embassy-net 0.9.1 `src/tcp.rs` (MIT OR Apache-2.0).
//!
//! # Listening
//!
//! There is no `TcpListener`: put a [`TcpSocket`] into listening mode with [`TcpSocket::accept`].
//! A SYN for a port nobody listens on is answered with RST. To accept several connections on one
//! port, create several sockets and let each accept.
//!
//! # Connecting from a chosen port
//!
//! [`TcpSocket::connect_from`] sends the SYN from a given local port. That is what TCP hole
//! punching needs: the peers connect to each other's public endpoints, each from the local port
//! its NAT mapped for the mediator connection, and smoltcp completes the simultaneous open
//! (RFC 9293 §3.5, "MUST-10"). Several connections may share a local port as long as their remote
//! endpoints differ: smoltcp delivers segments by the full 4-tuple. A socket *listening* on that
//! port and placed earlier in the socket set would take the bare SYN of a simultaneous open, so
//! don't listen on the port you punch from.

use core::future::{poll_fn, Future};
use core::mem;
use core::task::{Context, Poll};

use embassy_time::{Duration, Instant};
use smoltcp::iface::{Interface, SocketHandle};
use smoltcp::socket::tcp;
pub use smoltcp::socket::tcp::State;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::time::{duration_from_smoltcp, duration_to_smoltcp};
use super::{wake_at, Stack};

mod io;

use io::TcpIo;

/// Error from reading or writing a [`TcpSocket`].
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The connection is gone: reset by the peer, timed out, aborted, or (for writes) the local
    /// write half was closed.
    ConnectionReset,
}

/// Error from [`TcpSocket::connect`] and [`TcpSocket::connect_from`].
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConnectError {
    /// The socket is already connected, connecting or listening.
    InvalidState,
    /// The connection was refused (RST) or closed before it was established.
    ConnectionReset,
    /// No connection within the socket's timeout ([`TcpSocket::set_timeout`]).
    TimedOut,
    /// The remote endpoint is unusable (unspecified address, port 0) or no local address can
    /// reach it.
    NoRoute,
}

/// Error from [`TcpSocket::accept`].
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AcceptError {
    /// The socket is already connected, connecting or listening elsewhere.
    InvalidState,
    /// The listen port is 0.
    InvalidPort,
    /// A connection was being set up but died (timeout or RST) before it was established.
    ConnectionReset,
}

/// A TCP socket on a [`Stack`].
///
/// Dropping it removes the smoltcp socket from the stack at once, without FIN or RST; call
/// [`TcpSocket::close`] or [`TcpSocket::abort`] and then [`TcpSocket::flush`] first to end the
/// connection politely.
pub struct TcpSocket<'a> {
    io: TcpIo<'a>,
}

/// The reading half of a [`TcpSocket`], from [`TcpSocket::split`].
pub struct TcpReader<'a> {
    io: TcpIo<'a>,
}

/// The writing half of a [`TcpSocket`], from [`TcpSocket::split`].
pub struct TcpWriter<'a> {
    io: TcpIo<'a>,
}

impl<'a> TcpReader<'a> {
    /// Wait until the socket has data to read (or the peer closed its side).
    pub fn wait_read_ready(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| self.io.poll_read_ready(cx))
    }

    /// Read into `buf`, waiting for at least one byte. `Ok(0)` means the peer closed its side.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.io.read(buf).await
    }

    /// Call `f` with the largest contiguous slice of received data and dequeue the number of
    /// bytes it returns, waiting for data first.
    pub async fn read_with<F, R>(&mut self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&mut [u8]) -> (usize, R),
    {
        self.io.read_with(f).await
    }

    /// Size of the receive buffer.
    pub fn recv_capacity(&self) -> usize {
        self.io.with(|s, _| s.recv_capacity())
    }

    /// Bytes waiting in the receive buffer.
    pub fn recv_queue(&self) -> usize {
        self.io.with(|s, _| s.recv_queue())
    }
}

impl<'a> TcpWriter<'a> {
    /// Wait until the send buffer has room.
    pub fn wait_write_ready(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| self.io.poll_write_ready(cx))
    }

    /// Queue bytes from `buf`, waiting for room for at least one; returns how many were queued.
    pub fn write<'s>(
        &'s mut self,
        buf: &'s [u8],
    ) -> impl Future<Output = Result<usize, Error>> + 's {
        self.io.write(buf)
    }

    /// Wait until everything written has been sent and acknowledged.
    pub fn flush(&mut self) -> impl Future<Output = Result<(), Error>> + '_ {
        self.io.flush()
    }

    /// Call `f` with the largest contiguous free slice of the send buffer and queue the number
    /// of bytes it returns, waiting for room first.
    pub async fn write_with<F, R>(&mut self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&mut [u8]) -> (usize, R),
    {
        self.io.write_with(f).await
    }

    /// Size of the send buffer.
    pub fn send_capacity(&self) -> usize {
        self.io.with(|s, _| s.send_capacity())
    }

    /// Bytes waiting in the send buffer (unsent or unacknowledged).
    pub fn send_queue(&self) -> usize {
        self.io.with(|s, _| s.send_queue())
    }
}

impl<'a> TcpSocket<'a> {
    /// Create a socket on `stack` with the given receive and send buffers.
    ///
    /// # Panics
    /// If the stack's socket set is full (see [`StackResources`](super::StackResources)).
    pub fn new(stack: Stack<'a>, rx_buffer: &'a mut [u8], tx_buffer: &'a mut [u8]) -> Self {
        let handle = stack.with_inner_mut(|i| {
            // SAFETY: the set's lifetime is erased. The socket is removed in `Drop`, before
            // `'a` ends (the same contract, and the same `mem::forget` caveat, as embassy-net).
            let rx_buffer: &'static mut [u8] = unsafe { mem::transmute(rx_buffer) };
            let tx_buffer: &'static mut [u8] = unsafe { mem::transmute(tx_buffer) };
            i.sockets.add(tcp::Socket::new(
                tcp::SocketBuffer::new(rx_buffer),
                tcp::SocketBuffer::new(tx_buffer),
            ))
        });
        Self {
            io: TcpIo { stack, handle },
        }
    }

    /// Take ownership of a TCP socket that is already in `stack`'s socket set, typically one a
    /// state machine created and connected through [`Stack::with_mut`]. The result behaves like
    /// any `TcpSocket`: its `Drop` removes the socket from the set.
    ///
    /// The socket must not have another owner (another `TcpSocket`, or a state machine that will
    /// keep using or remove it); two owners do not cause memory unsafety, but the second one to
    /// touch a removed socket panics.
    ///
    /// # Panics
    /// If `handle` does not refer to a TCP socket in `stack`'s set.
    pub fn from_handle(stack: Stack<'a>, handle: SocketHandle) -> Self {
        let is_tcp = stack.with_inner(|i| {
            i.sockets
                .iter()
                .any(|(h, s)| h == handle && matches!(s, smoltcp::socket::Socket::Tcp(_)))
        });
        assert!(is_tcp, "from_handle: not a TCP socket of this stack");
        Self {
            io: TcpIo { stack, handle },
        }
    }

    /// The socket's handle in the stack's socket set, for [`Stack::with_mut`] and
    /// [`Stack::poll_with`] closures. The `TcpSocket` keeps ownership.
    pub fn handle(&self) -> SocketHandle {
        self.io.handle
    }

    /// Size of the receive buffer.
    pub fn recv_capacity(&self) -> usize {
        self.io.with(|s, _| s.recv_capacity())
    }

    /// Size of the send buffer.
    pub fn send_capacity(&self) -> usize {
        self.io.with(|s, _| s.send_capacity())
    }

    /// Bytes waiting in the send buffer (unsent or unacknowledged).
    pub fn send_queue(&self) -> usize {
        self.io.with(|s, _| s.send_queue())
    }

    /// Bytes waiting in the receive buffer.
    pub fn recv_queue(&self) -> usize {
        self.io.with(|s, _| s.recv_queue())
    }

    /// Call `f` with the largest contiguous free slice of the send buffer and queue the number
    /// of bytes it returns, waiting for room first.
    pub async fn write_with<F, R>(&mut self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&mut [u8]) -> (usize, R),
    {
        self.io.write_with(f).await
    }

    /// Call `f` with the largest contiguous slice of received data and dequeue the number of
    /// bytes it returns, waiting for data first.
    pub async fn read_with<F, R>(&mut self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&mut [u8]) -> (usize, R),
    {
        self.io.read_with(f).await
    }

    /// Split into a reading and a writing half that can be used from different tasks.
    pub fn split(&mut self) -> (TcpReader<'_>, TcpWriter<'_>) {
        (TcpReader { io: self.io }, TcpWriter { io: self.io })
    }

    /// Connect to `remote_endpoint` from an ephemeral local port, and wait until the connection
    /// is established.
    pub async fn connect<T>(&mut self, remote_endpoint: T) -> Result<(), ConnectError>
    where
        T: Into<IpEndpoint>,
    {
        self.connect_from(remote_endpoint, 0).await
    }

    /// Connect to `remote_endpoint` from local port `local_port` (0: an ephemeral port), and wait
    /// until the connection is established.
    ///
    /// The local port may already carry other connections (to other remote endpoints). If the
    /// remote end connects to this port at the same time, the two SYNs cross and the simultaneous
    /// open completes; this is how TCP hole punching connects. The local address is the one the
    /// interface would use to reach `remote_endpoint`.
    ///
    /// With a timeout set ([`TcpSocket::set_timeout`]) the attempt ends with
    /// [`ConnectError::TimedOut`] after that long, also when no SYN could be sent (no ARP answer).
    /// Without one, smoltcp retransmits the SYN with back-off until the future is dropped (the
    /// socket then stays in `SynSent`; [`abort`](TcpSocket::abort) it to reuse it).
    pub async fn connect_from<T>(
        &mut self,
        remote_endpoint: T,
        local_port: u16,
    ) -> Result<(), ConnectError>
    where
        T: Into<IpEndpoint>,
    {
        let remote_endpoint = remote_endpoint.into();
        let local_port = match local_port {
            0 => self.io.stack.with_inner_mut(|i| i.get_local_port()),
            port => port,
        };
        let deadline = self
            .io
            .with_mut(|s, iface| {
                s.connect(iface.context(), remote_endpoint, local_port)?;
                Ok(s.timeout()
                    .map(|t| Instant::now() + duration_from_smoltcp(t)))
            })
            .map_err(|e| match e {
                tcp::ConnectError::InvalidState => ConnectError::InvalidState,
                tcp::ConnectError::Unaddressable => ConnectError::NoRoute,
            })?;
        debug!(
            "tcp: connect {:?} from port {}",
            remote_endpoint, local_port
        );

        poll_fn(|cx| {
            self.io.with_mut(|s, _| {
                let expired = deadline.is_some_and(|d| Instant::now() >= d);
                match s.state() {
                    tcp::State::SynSent | tcp::State::SynReceived if expired => {
                        s.abort();
                        Poll::Ready(Err(ConnectError::TimedOut))
                    }
                    tcp::State::SynSent | tcp::State::SynReceived => {
                        s.register_send_waker(cx.waker());
                        if let Some(d) = deadline {
                            wake_at(cx, super::time::instant_to_smoltcp(d));
                        }
                        Poll::Pending
                    }
                    // smoltcp closes on RST and on its own timeout.
                    tcp::State::Closed | tcp::State::TimeWait if expired => {
                        Poll::Ready(Err(ConnectError::TimedOut))
                    }
                    tcp::State::Closed | tcp::State::TimeWait => {
                        Poll::Ready(Err(ConnectError::ConnectionReset))
                    }
                    // Unreachable while we hold `&mut self`.
                    tcp::State::Listen => Poll::Ready(Err(ConnectError::InvalidState)),
                    _ => Poll::Ready(Ok(())),
                }
            })
        })
        .await
    }

    /// Listen on `local_endpoint` and wait until a connection is established.
    pub async fn accept<T>(&mut self, local_endpoint: T) -> Result<(), AcceptError>
    where
        T: Into<IpListenEndpoint>,
    {
        match self.io.with_mut(|s, _| s.listen(local_endpoint)) {
            Ok(()) => {}
            Err(tcp::ListenError::InvalidState) => return Err(AcceptError::InvalidState),
            Err(tcp::ListenError::Unaddressable) => return Err(AcceptError::InvalidPort),
        }

        poll_fn(|cx| {
            self.io.with_mut(|s, _| match s.state() {
                tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                tcp::State::Closed | tcp::State::TimeWait => {
                    Poll::Ready(Err(AcceptError::ConnectionReset))
                }
                _ => Poll::Ready(Ok(())),
            })
        })
        .await
    }

    /// Wait until the socket has data to read (or the peer closed its side).
    pub fn wait_read_ready(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| self.io.poll_read_ready(cx))
    }

    /// Read into `buf`, waiting for at least one byte. `Ok(0)` means the peer closed its side
    /// (or `buf` is empty).
    pub fn read<'s>(
        &'s mut self,
        buf: &'s mut [u8],
    ) -> impl Future<Output = Result<usize, Error>> + 's {
        self.io.read(buf)
    }

    /// Wait until the send buffer has room.
    pub fn wait_write_ready(&self) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| self.io.poll_write_ready(cx))
    }

    /// Queue bytes from `buf`, waiting for room for at least one; returns how many were queued.
    pub fn write<'s>(
        &'s mut self,
        buf: &'s [u8],
    ) -> impl Future<Output = Result<usize, Error>> + 's {
        self.io.write(buf)
    }

    /// Wait until everything written has been sent and acknowledged, and after
    /// [`close`](TcpSocket::close) until the FIN has been; after [`abort`](TcpSocket::abort), until
    /// the RST has been sent.
    pub fn flush(&mut self) -> impl Future<Output = Result<(), Error>> + '_ {
        self.io.flush()
    }

    /// Close the connection if nothing is received for `duration` (also bounds `connect`).
    pub fn set_timeout(&mut self, duration: Option<Duration>) {
        self.io
            .with_mut(|s, _| s.set_timeout(duration.map(duration_to_smoltcp)))
    }

    /// Send keep-alive probes after `interval` of silence. Combine with a longer
    /// [`set_timeout`](TcpSocket::set_timeout) to detect a peer that went away; the keep-alives
    /// also keep NAT mappings open.
    pub fn set_keep_alive(&mut self, interval: Option<Duration>) {
        self.io
            .with_mut(|s, _| s.set_keep_alive(interval.map(duration_to_smoltcp)))
    }

    /// Set the IP hop limit (TTL) of sent packets; `None` for the default.
    pub fn set_hop_limit(&mut self, hop_limit: Option<u8>) {
        self.io.with_mut(|s, _| s.set_hop_limit(hop_limit))
    }

    /// Enable or disable Nagle's algorithm (enabled by default).
    pub fn set_nagle_enabled(&mut self, enabled: bool) {
        self.io.with_mut(|s, _| s.set_nagle_enabled(enabled))
    }

    /// The local endpoint, or `None` if the socket is neither connected nor connecting.
    pub fn local_endpoint(&self) -> Option<IpEndpoint> {
        self.io.with(|s, _| s.local_endpoint())
    }

    /// The remote endpoint, or `None` if the socket is neither connected nor connecting.
    pub fn remote_endpoint(&self) -> Option<IpEndpoint> {
        self.io.with(|s, _| s.remote_endpoint())
    }

    /// The TCP state.
    pub fn state(&self) -> State {
        self.io.with(|s, _| s.state())
    }

    /// Close the write half: queued data is still sent, followed by a FIN. Reading goes on until
    /// the peer closes its side.
    pub fn close(&mut self) {
        self.io.with_mut(|s, _| s.close())
    }

    /// Close both halves at once, dropping queued data. The RST goes out on the next runner poll;
    /// [`flush`](TcpSocket::flush) waits for it.
    pub fn abort(&mut self) {
        self.io.with_mut(|s, _| s.abort())
    }

    /// Whether the write half is open (`Established` or `CloseWait`). The buffer may still be full.
    pub fn may_send(&self) -> bool {
        self.io.with(|s, _| s.may_send())
    }

    /// Whether the write half is open and the send buffer has room.
    pub fn can_send(&self) -> bool {
        self.io.with(|s, _| s.can_send())
    }

    /// Whether data may still arrive: true while data is buffered or the peer has not closed.
    pub fn may_recv(&self) -> bool {
        self.io.with(|s, _| s.may_recv())
    }

    /// Whether received data is waiting in the buffer.
    pub fn can_recv(&self) -> bool {
        self.io.with(|s, _| s.can_recv())
    }
}

impl Drop for TcpSocket<'_> {
    fn drop(&mut self) {
        self.io.stack.with_inner_mut(|i| {
            i.sockets.remove(self.io.handle);
        });
    }
}

fn _assert_covariant<'a, 'b: 'a>(x: TcpSocket<'b>) -> TcpSocket<'a> {
    x
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::ConnectionReset => f.write_str("connection reset"),
        }
    }
}

impl core::error::Error for Error {}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConnectError::InvalidState => "socket already in use",
            ConnectError::ConnectionReset => "connection refused or reset",
            ConnectError::TimedOut => "connect timed out",
            ConnectError::NoRoute => "no route to remote endpoint",
        })
    }
}

impl core::error::Error for ConnectError {}

impl core::fmt::Display for AcceptError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AcceptError::InvalidState => "socket already in use",
            AcceptError::InvalidPort => "invalid listen port",
            AcceptError::ConnectionReset => "connection reset before it was established",
        })
    }
}

impl core::error::Error for AcceptError {}
