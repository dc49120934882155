//! An async TCP/IP stack with embassy-net's API, plus the two things hole punching needs.
//!
//! # Why p2psc does not sit on embassy-net 0.9.1
//!
//! TCP hole punching (simultaneous open through two NATs) must send its SYN from the local port
//! the mediator observed, which is the local port of the connection to the mediator. embassy-net
//! 0.9.1 cannot do that: `TcpSocket::connect(remote)` takes its local port from an internal
//! counter, `accept(port)` only listens and never sends the outbound SYN a NAT needs, and the
//! smoltcp interface and sockets behind a `Stack` are private. p2psc's connector also drives
//! several smoltcp sockets at once as a sans-IO state machine (`poll(now, iface, sockets)`), which
//! needs the interface and socket set themselves. A library cannot ship a patched dependency, so
//! p2psc carries this small stack instead: the same driver trait ([`embassy_net_driver`] 0.2), the
//! same smoltcp (0.13), the same shape and names. Porting an embassy-net application means changing
//! `embassy_net::` to `p2psc::net::` in its imports. The few-line upstream patch that would make
//! embassy-net sufficient (`connect_from`) is in `doc/embassy-net.md`, for the way back.
//!
//! # Architecture
//!
//! - [`new`] builds a smoltcp [`Interface`] and [`SocketSet`] inside caller-provided
//!   [`StackResources`] (a `const fn new()` value that fits a `StaticCell`; no allocator) and returns
//!   a [`Stack`] and a [`Runner`].
//! - [`Stack`] is a `Copy` handle to the shared state (a `RefCell`, as in embassy-net: everything
//!   runs on one executor). Sockets and application code use it.
//! - [`Runner::run`] must run in its own task. It polls the interface, then sleeps until the
//!   interface's `poll_at`, until the driver wakes it (frame received, room to transmit, link
//!   change), or until any [`Stack`] or socket operation wakes it because it may have queued
//!   something to send.
//! - [`tcp::TcpSocket`] is a socket handle plus wakers, like embassy-net's; its `Drop` removes the
//!   smoltcp socket from the set.
//!
//! # Driving a sans-IO state machine over the stack
//!
//! Two hooks let another module run a poll-style state machine (one that owns several smoltcp
//! sockets and is advanced by `poll(now, &mut Interface, &mut SocketSet)`) without busy-looping:
//!
//! - [`Stack::with_mut`] runs a closure on the interface and socket set, then wakes the runner so
//!   whatever the closure queued (a `connect`, data, an abort) goes out promptly.
//! - [`Stack::poll_with`] is the async form: it calls the closure each time the task is woken until
//!   the closure returns [`Poll::Ready`](core::task::Poll::Ready). The closure says what should wake it: register the task's
//!   waker on the smoltcp sockets it watches (`register_recv_waker` / `register_send_waker`;
//!   smoltcp wakes both on every state change) and call [`wake_at`] with its own next deadline.
//!   [`now`] gives the current time in smoltcp's type, the one p2psc's state machines take.
//!
//! ```no_run
//! use core::task::Poll;
//! use p2psc::net::{self, Stack};
//! use smoltcp::socket::tcp;
//! # use p2psc::net::{Interface, SocketHandle, SocketSet};
//! # use p2psc::time::Instant;
//! # struct Machine;
//! # struct Outcome;
//! # impl Machine {
//! #     fn poll(&mut self, _: Instant, _: &mut Interface, _: &mut SocketSet<'_>) -> Option<Outcome> {
//! #         None
//! #     }
//! #     fn socket_handles(&self) -> [SocketHandle; 0] { [] }
//! #     fn poll_at(&self) -> Option<Instant> { None }
//! # }
//!
//! async fn drive(stack: Stack<'_>, machine: &mut Machine) -> Outcome {
//!     stack
//!         .poll_with(|cx, iface, sockets| {
//!             if let Some(outcome) = machine.poll(net::now(), iface, sockets) {
//!                 return Poll::Ready(outcome);
//!             }
//!             for handle in machine.socket_handles() {
//!                 let socket = sockets.get_mut::<tcp::Socket>(handle);
//!                 socket.register_recv_waker(cx.waker());
//!                 socket.register_send_waker(cx.waker());
//!             }
//!             if let Some(at) = machine.poll_at() {
//!                 net::wake_at(cx, at);
//!             }
//!             Poll::Pending
//!         })
//!         .await
//! }
//! ```
//!
//! A smoltcp socket keeps one receive and one send waker; registering replaces the previous one.
//! So the machine should register only on sockets it owns, not on one a [`tcp::TcpSocket`] is
//! waiting on. A socket the machine created can be handed to the application as a
//! [`tcp::TcpSocket`] with [`tcp::TcpSocket::from_handle`].
//!
//! ## Sockets and buffer lifetimes
//!
//! The socket set holds sockets whose buffers live as long as different borrows (each
//! [`tcp::TcpSocket`] lends its own). The closures of [`Stack::with_mut`] and [`Stack::poll_with`]
//! therefore see a `SocketSet<'s>` for an arbitrary `'s`: they can use and remove any socket, and add
//! sockets whose buffers are `'static` (e.g. from a `StaticCell`). Sockets with shorter-lived buffers
//! enter the set through [`tcp::TcpSocket::new`] (then hand the machine [`tcp::TcpSocket::handle`]),
//! or through the `unsafe` [`Stack::with_mut_unchecked`].
//!
//! # Differences from embassy-net 0.9.1
//!
//! - Added: [`tcp::TcpSocket::connect_from`], [`tcp::TcpSocket::from_handle`] /
//!   [`tcp::TcpSocket::handle`], [`Stack::with_mut`], [`Stack::with_mut_unchecked`],
//!   [`Stack::poll_with`], [`now`], [`wake_at`].
//! - A connect that ends because of the socket's timeout ([`tcp::TcpSocket::set_timeout`]) fails
//!   with [`tcp::ConnectError::TimedOut`]; embassy-net reports every failed connect as
//!   `ConnectionReset`.
//! - `wait_read_ready`/`wait_write_ready` also return when the connection is closed, and
//!   `write(&[])` returns `Ok(0)`, instead of waiting forever.
//! - Ephemeral local ports skip ports that a TCP socket in the set already uses.
//! - `accept` fails with [`tcp::AcceptError::ConnectionReset`] if the half-open connection dies
//!   instead of returning `Ok` on a closed socket.
//! - `Stack::dns_query` (feature `dns`) is bounded by a timeout (`dns::DnsError::TimedOut`).
//! - Not provided (p2psc does not need them): ICMP and raw sockets, multicast,
//!   IEEE 802.15.4, SLAAC, the DHCP hostname option, `TcpClient`.
//!
//! # Features
//!
//! IPv4 over Ethernet and TCP are always there. Each of these costs flash whether the application
//! uses it or not, because smoltcp's interface handles every protocol it is built with:
//!
//! - `ipv6`: IPv6 addresses (`ConfigV6`, `StaticConfigV6`) and smoltcp's IPv6, NDISC and ICMPv6
//!   (about 16 KiB of flash on a Cortex-M4).
//! - `dhcpv4`: `ConfigV4::Dhcp` and smoltcp's DHCP client socket (about 6 KiB).
//! - `medium-ip`: drivers without a link layer ([`driver::HardwareAddress::Ip`]: TUN, PPP; 0.3 KiB).
//! - `dns` (not default): `Stack::dns_query`, smoltcp's DNS socket (one socket slot), and a
//!   mediator given by host name in `connector::connect`.
//! - `udp` (not default): `udp::UdpSocket` (also re-exported as `UdpSocket`), smoltcp's UDP socket.
//!
//! They are default features, so that hosts get the whole API; firmware turns them off with
//! `default-features = false` and enables what it uses (`boards/` shows both).

mod config;
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub mod dns;
pub mod driver;
mod runner;
pub mod secure;
mod stack;
pub mod tcp;
mod time;
#[cfg(feature = "udp")]
#[cfg_attr(docsrs, doc(cfg(feature = "udp")))]
pub mod udp;

use core::future::Future;
use core::pin::pin;
use core::task::Context;

#[cfg(feature = "dhcpv4")]
#[cfg_attr(docsrs, doc(cfg(feature = "dhcpv4")))]
pub use config::DhcpConfig;
pub use config::{Config, ConfigV4, StaticConfigV4};
#[cfg(feature = "ipv6")]
#[cfg_attr(docsrs, doc(cfg(feature = "ipv6")))]
pub use config::{ConfigV6, StaticConfigV6};
use embassy_time::Timer;
pub use runner::Runner;
pub use secure::SecureSocket;
pub use smoltcp::iface::{Interface, SocketHandle, SocketSet};
pub use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, Ipv4Address,
    Ipv4Cidr,
};
#[cfg(feature = "ipv6")]
#[cfg_attr(docsrs, doc(cfg(feature = "ipv6")))]
pub use smoltcp::wire::{Ipv6Address, Ipv6Cidr};
pub use stack::{new, Stack, StackResources};
#[cfg(feature = "udp")]
#[cfg_attr(docsrs, doc(cfg(feature = "udp")))]
pub use udp::UdpSocket;

pub(crate) use self::time::duration_to_smoltcp;
use self::time::{instant_from_smoltcp, instant_to_smoltcp};

/// The current time on the stack's clock (embassy-time), in smoltcp's type, which is what p2psc's
/// state machines take as `now`.
pub fn now() -> crate::time::Instant {
    instant_to_smoltcp(embassy_time::Instant::now())
}

/// Arrange for the task behind `cx` to be woken at `at` (or at once, if `at` has passed).
///
/// For [`Stack::poll_with`] closures whose state machine has a deadline of its own (a retry,
/// a give-up time). The wake-up cannot be cancelled; an early-finished task may get one spurious
/// wake-up later, which futures must tolerate anyway.
pub fn wake_at(cx: &mut Context<'_>, at: crate::time::Instant) {
    let timer = pin!(Timer::at(instant_from_smoltcp(at)));
    if timer.poll(cx).is_ready() {
        cx.waker().wake_by_ref();
    }
}

/// Arrange for the task behind `cx` to be woken when any of the TCP sockets `handles` can receive or
/// send (or changes state), and at `at` if given: what a [`Stack::poll_with`] closure driving a poll-API
/// state machine over those sockets needs before it returns `Pending`.
pub fn wake_on(
    cx: &mut Context<'_>,
    sockets: &mut SocketSet<'_>,
    handles: impl IntoIterator<Item = SocketHandle>,
    at: Option<crate::time::Instant>,
) {
    for handle in handles {
        let s = sockets.get_mut::<smoltcp::socket::tcp::Socket>(handle);
        s.register_recv_waker(cx.waker());
        s.register_send_waker(cx.waker());
    }
    if let Some(at) = at {
        wake_at(cx, at);
    }
}
