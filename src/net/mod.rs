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
//!   the closure returns [`Poll::Ready`]. The closure says what should wake it: register the task's
//!   waker on the smoltcp sockets it watches (`register_recv_waker` / `register_send_waker`;
//!   smoltcp wakes both on every state change) and call [`wake_at`] with its own next deadline.
//!   [`now`] gives the current time in smoltcp's type, the one p2psc's state machines take.
//!
//! ```ignore
//! use core::task::Poll;
//! use p2psc::net::{self, Stack};
//! use smoltcp::socket::tcp;
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
//! - Not provided (p2psc does not need them): UDP, DNS, ICMP and raw sockets, multicast,
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
//!
//! They are default features, so that hosts get the whole API; firmware turns them off with
//! `default-features = false` and enables what it uses (`boards/` shows both).

pub mod connect;
pub mod driver;
pub mod secure;
pub mod tcp;
mod time;

use core::cell::RefCell;
use core::future::{poll_fn, Future};
use core::mem::MaybeUninit;
use core::pin::pin;
use core::task::{Context, Poll};

pub use connect::{connect, connect_observed, ConnectBuffers, Mediator, Peer, PeerConnection};
use embassy_net_driver::{Driver, LinkState};
use embassy_sync::waitqueue::{MultiWakerRegistration, WakerRegistration};
use embassy_time::Timer;
use heapless::Vec;
pub use secure::SecureSocket;
pub use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::iface::{PollResult, SocketStorage};
use smoltcp::phy::Medium;
#[cfg(feature = "dhcpv4")]
use smoltcp::socket::dhcpv4::{self, RetryConfig};
pub use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, Ipv4Address,
    Ipv4Cidr,
};
#[cfg(feature = "ipv6")]
pub use smoltcp::wire::{Ipv6Address, Ipv6Cidr};

use self::driver::DriverAdapter;
#[cfg(feature = "dhcpv4")]
use self::time::duration_to_smoltcp;
use self::time::{instant_from_smoltcp, instant_to_smoltcp};

const LOCAL_PORT_MIN: u16 = 1025;
const LOCAL_PORT_MAX: u16 = 65535;
/// Tasks that can wait on link/config changes at once before they start waking each other.
const STATE_WAITERS: usize = 4;

/// Memory for a network stack: the socket slots and the shared state.
///
/// `SOCK` is the number of sockets that can exist at once. DHCP (feature `dhcpv4`) uses one slot;
/// every [`tcp::TcpSocket`] and every socket a state machine adds uses one.
pub struct StackResources<const SOCK: usize> {
    sockets: MaybeUninit<[SocketStorage<'static>; SOCK]>,
    inner: MaybeUninit<RefCell<Inner>>,
}

impl<const SOCK: usize> StackResources<SOCK> {
    /// Uninitialized resources; [`new`] initializes them.
    pub const fn new() -> Self {
        Self {
            sockets: MaybeUninit::uninit(),
            inner: MaybeUninit::uninit(),
        }
    }
}

impl<const SOCK: usize> Default for StackResources<SOCK> {
    fn default() -> Self {
        Self::new()
    }
}

/// Static IPv4 configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StaticConfigV4 {
    /// IP address and subnet mask.
    pub address: Ipv4Cidr,
    /// Default gateway.
    pub gateway: Option<Ipv4Address>,
    /// DNS servers (kept for the application; this stack has no resolver).
    pub dns_servers: Vec<Ipv4Address, 3>,
}

/// Static IPv6 configuration.
#[cfg(feature = "ipv6")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StaticConfigV6 {
    /// IP address and subnet mask.
    pub address: Ipv6Cidr,
    /// Default gateway.
    pub gateway: Option<Ipv6Address>,
    /// DNS servers (kept for the application; this stack has no resolver).
    pub dns_servers: Vec<Ipv6Address, 3>,
}

/// DHCPv4 client configuration.
#[cfg(feature = "dhcpv4")]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct DhcpConfig {
    /// Cap on the lease duration; `None` uses what the server grants.
    pub max_lease_duration: Option<embassy_time::Duration>,
    /// Retransmission timing.
    pub retry_config: RetryConfig,
    /// Ignore DHCPNAK (not RFC 2131 compliant; helps with rogue servers).
    pub ignore_naks: bool,
    /// Server port, almost always 67.
    pub server_port: u16,
    /// Client port, almost always 68.
    pub client_port: u16,
}

#[cfg(feature = "dhcpv4")]
impl Default for DhcpConfig {
    fn default() -> Self {
        Self {
            max_lease_duration: None,
            retry_config: RetryConfig::default(),
            ignore_naks: false,
            server_port: smoltcp::wire::DHCP_SERVER_PORT,
            client_port: smoltcp::wire::DHCP_CLIENT_PORT,
        }
    }
}

/// Network stack configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Config {
    /// IPv4 configuration.
    pub ipv4: ConfigV4,
    /// IPv6 configuration.
    #[cfg(feature = "ipv6")]
    pub ipv6: ConfigV6,
}

impl Config {
    /// Static IPv4 addressing, no IPv6.
    pub const fn ipv4_static(config: StaticConfigV4) -> Self {
        Self {
            ipv4: ConfigV4::Static(config),
            #[cfg(feature = "ipv6")]
            ipv6: ConfigV6::None,
        }
    }

    /// Static IPv6 addressing, no IPv4.
    #[cfg(feature = "ipv6")]
    pub const fn ipv6_static(config: StaticConfigV6) -> Self {
        Self {
            ipv4: ConfigV4::None,
            ipv6: ConfigV6::Static(config),
        }
    }

    /// IPv4 addressing from DHCP, no IPv6: `Config::dhcpv4(Default::default())`.
    #[cfg(feature = "dhcpv4")]
    pub const fn dhcpv4(config: DhcpConfig) -> Self {
        Self {
            ipv4: ConfigV4::Dhcp(config),
            #[cfg(feature = "ipv6")]
            ipv6: ConfigV6::None,
        }
    }
}

/// IPv4 configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigV4 {
    /// No IPv4.
    #[default]
    None,
    /// A static address.
    Static(StaticConfigV4),
    /// An address from DHCP.
    #[cfg(feature = "dhcpv4")]
    Dhcp(DhcpConfig),
}

/// IPv6 configuration.
#[cfg(feature = "ipv6")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigV6 {
    /// No IPv6.
    #[default]
    None,
    /// A static address.
    Static(StaticConfigV6),
}

/// The stack's background task. Call [`Runner::run`] in a task of its own.
pub struct Runner<'d, D: Driver> {
    driver: D,
    stack: Stack<'d>,
}

/// Handle to a network stack: create sockets with it, read its configuration, and run state
/// machines over it ([`Stack::with_mut`], [`Stack::poll_with`]).
///
/// It is `Copy`; pass it by value. Everything it reaches lives in one `RefCell`, so none of its
/// methods may be called from inside a [`Stack::with_mut`] or [`Stack::poll_with`] closure
/// (that panics with "already borrowed").
#[derive(Copy, Clone)]
pub struct Stack<'d> {
    inner: &'d RefCell<Inner>,
}

pub(crate) struct Inner {
    /// Lifetime erased: each socket's buffers outlive its presence in the set (see the module
    /// doc, "Sockets and buffer lifetimes").
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) iface: Interface,
    /// Wakes the runner.
    pub(crate) waker: WakerRegistration,
    /// Wakes tasks waiting for link or configuration changes.
    state_waker: MultiWakerRegistration<STATE_WAITERS>,
    hardware_address: HardwareAddress,
    next_local_port: u16,
    link_up: bool,
    static_v4: Option<StaticConfigV4>,
    #[cfg(feature = "ipv6")]
    static_v6: Option<StaticConfigV6>,
    #[cfg(feature = "dhcpv4")]
    dhcp_socket: Option<SocketHandle>,
}

fn _assert_covariant<'a, 'b: 'a>(x: Stack<'b>) -> Stack<'a> {
    x
}

/// Create a network stack on `driver`.
///
/// `random_seed` seeds TCP initial sequence numbers and the first ephemeral port; give each boot
/// a different one (hole punching with the same ports and sequence numbers after a reboot confuses
/// NATs and peers).
pub fn new<'d, D: Driver, const SOCK: usize>(
    mut driver: D,
    config: Config,
    resources: &'d mut StackResources<SOCK>,
    random_seed: u64,
) -> (Stack<'d>, Runner<'d, D>) {
    let (hardware_address, medium) = to_smoltcp_hardware_address(driver.hardware_address());
    let mut iface_cfg = smoltcp::iface::Config::new(hardware_address);
    iface_cfg.random_seed = random_seed;

    let iface = Interface::new(
        iface_cfg,
        &mut DriverAdapter {
            inner: &mut driver,
            cx: None,
            medium,
            tx_exhausted: false,
        },
        instant_to_smoltcp(embassy_time::Instant::now()),
    );

    let sockets = resources.sockets.write([SocketStorage::EMPTY; SOCK]);
    // SAFETY: `Stack<'d>` and `Runner<'d, _>` are the only ways to reach the set, and both are
    // bounded by `'d`, the borrow of `resources`. The `'static` is an erased lifetime, never
    // handed out as such (see `Stack::with_mut`).
    let sockets: &'static mut [SocketStorage<'static>] =
        unsafe { core::mem::transmute::<&mut [SocketStorage<'static>], _>(&mut sockets[..]) };
    let sockets = SocketSet::new(sockets);

    let next_local_port =
        (random_seed % u64::from(LOCAL_PORT_MAX - LOCAL_PORT_MIN)) as u16 + LOCAL_PORT_MIN;

    let mut inner = Inner {
        sockets,
        iface,
        waker: WakerRegistration::new(),
        state_waker: MultiWakerRegistration::new(),
        hardware_address,
        next_local_port,
        link_up: false,
        static_v4: None,
        #[cfg(feature = "ipv6")]
        static_v6: None,
        #[cfg(feature = "dhcpv4")]
        dhcp_socket: None,
    };
    inner.set_config_v4(config.ipv4);
    #[cfg(feature = "ipv6")]
    inner.set_config_v6(config.ipv6);
    inner.apply_static_config();

    let inner = &*resources.inner.write(RefCell::new(inner));
    let stack = Stack { inner };
    (stack, Runner { driver, stack })
}

fn to_smoltcp_hardware_address(addr: driver::HardwareAddress) -> (HardwareAddress, Medium) {
    match addr {
        driver::HardwareAddress::Ethernet(eth) => (
            HardwareAddress::Ethernet(EthernetAddress(eth)),
            Medium::Ethernet,
        ),
        #[cfg(feature = "medium-ip")]
        driver::HardwareAddress::Ip => (HardwareAddress::Ip, Medium::Ip),
        #[allow(unreachable_patterns)]
        _ => panic!("unsupported medium: p2psc::net supports Ethernet, and IP drivers with feature `medium-ip`"),
    }
}

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

impl<'d> Stack<'d> {
    fn with_inner<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.inner.borrow())
    }

    fn with_inner_mut<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.borrow_mut())
    }

    /// Run `f` on the smoltcp interface and socket set, then wake the runner so that anything
    /// `f` queued (a SYN, data, a RST) is sent at the next opportunity.
    ///
    /// This is the hook for sans-IO state machines that manage smoltcp sockets themselves, e.g.
    /// `stack.with_mut(|iface, sockets| connector.poll(net::now(), iface, sockets))`. The socket set
    /// is given for an arbitrary lifetime `'s`, so `f` can use or remove any socket and add sockets
    /// with `'static` buffers; see the module doc for sockets with borrowed buffers.
    ///
    /// # Panics
    /// If called from inside another `with_mut`/`poll_with` closure of the same stack.
    pub fn with_mut<R>(
        &self,
        f: impl for<'s> FnOnce(&mut Interface, &mut SocketSet<'s>) -> R,
    ) -> R {
        self.with_inner_mut(|i| {
            let r = f(&mut i.iface, &mut i.sockets);
            i.waker.wake();
            r
        })
    }

    /// [`Stack::with_mut`] with the socket set at the stack's own lifetime `'d`, so that `f` can
    /// add sockets whose buffers live for `'d` rather than `'static`.
    ///
    /// # Safety
    /// `Stack<'d>` is covariant, so `'d` may be shorter than the stack really lives. The caller
    /// must make sure that
    /// - every socket `f` adds is removed from the set before the memory it borrows is freed or
    ///   reused (for instance by wrapping its handle in a [`tcp::TcpSocket::from_handle`] that lives
    ///   no longer than that memory, or by removing it in a `Drop`), and
    /// - `f` does not move out of the set (by `remove` or `mem::swap`) a socket that it did not
    ///   add and keep it beyond the closure.
    pub unsafe fn with_mut_unchecked<R>(
        &self,
        f: impl FnOnce(&mut Interface, &mut SocketSet<'d>) -> R,
    ) -> R {
        self.with_inner_mut(|i| {
            // SAFETY: same type with a shorter erased lifetime; the caller upholds the contract
            // above, which is what keeps every socket's buffers alive while it is in the set.
            let sockets = unsafe {
                core::mem::transmute::<&mut SocketSet<'static>, &mut SocketSet<'d>>(&mut i.sockets)
            };
            let r = f(&mut i.iface, sockets);
            i.waker.wake();
            r
        })
    }

    /// Wait until `f` returns [`Poll::Ready`], calling it (through [`Stack::with_mut`]) once now
    /// and again each time the task is woken.
    ///
    /// This is how a poll-style state machine runs over the stack without busy-looping. `f` gets
    /// the task context and decides what wakes it next: register `cx.waker()` on the smoltcp
    /// sockets it watches and call [`wake_at`] with its own next deadline. If it registers nothing,
    /// it is only called again on spurious wake-ups. The runner is woken after every call, so
    /// whatever `f` queued is transmitted; the runner's poll in turn wakes the sockets' wakers only
    /// when something changed.
    ///
    /// To stop at a deadline instead, return `Poll::Ready` from `f` once [`now`] passes it (with
    /// [`wake_at`] armed for it), or race this future against `embassy_time::Timer::at`.
    ///
    /// # Panics
    /// If `f` calls methods of this stack (the state is borrowed while `f` runs).
    pub async fn poll_with<T, F>(&self, mut f: F) -> T
    where
        F: for<'s> FnMut(&mut Context<'_>, &mut Interface, &mut SocketSet<'s>) -> Poll<T>,
    {
        poll_fn(|cx| self.with_mut(|iface, sockets| f(cx, iface, sockets))).await
    }

    /// The interface's hardware address.
    pub fn hardware_address(&self) -> HardwareAddress {
        self.with_inner(|i| i.hardware_address)
    }

    /// Whether the driver reports the link as up.
    pub fn is_link_up(&self) -> bool {
        self.with_inner(|i| i.link_up)
    }

    /// Whether the stack has an IP address (static, or leased by DHCP).
    pub fn is_config_up(&self) -> bool {
        self.with_inner(|i| i.is_config_up())
    }

    /// Wait until the link is up. Needs [`Runner::run`] to be running.
    pub async fn wait_link_up(&self) {
        self.wait(|| self.is_link_up()).await
    }

    /// Wait until the link is down.
    pub async fn wait_link_down(&self) {
        self.wait(|| !self.is_link_up()).await
    }

    /// Wait until the stack has an IP address. Needs [`Runner::run`] to be running; with DHCP it
    /// may wait forever, so race it against a timer if that matters.
    pub async fn wait_config_up(&self) {
        self.wait(|| self.is_config_up()).await
    }

    /// Wait until the stack loses its IP configuration.
    pub async fn wait_config_down(&self) {
        self.wait(|| !self.is_config_up()).await
    }

    fn wait<'a>(
        &'a self,
        mut predicate: impl FnMut() -> bool + 'a,
    ) -> impl Future<Output = ()> + 'a {
        poll_fn(move |cx| {
            if predicate() {
                Poll::Ready(())
            } else {
                self.with_inner_mut(|i| i.state_waker.register(cx.waker()));
                Poll::Pending
            }
        })
    }

    /// The current IPv4 configuration: the static one, or the DHCP lease (`None` while there is
    /// none).
    pub fn config_v4(&self) -> Option<StaticConfigV4> {
        self.with_inner(|i| i.static_v4.clone())
    }

    /// The current IPv6 configuration.
    #[cfg(feature = "ipv6")]
    pub fn config_v6(&self) -> Option<StaticConfigV6> {
        self.with_inner(|i| i.static_v6.clone())
    }

    /// Replace the IPv4 configuration.
    pub fn set_config_v4(&self, config: ConfigV4) {
        self.with_inner_mut(|i| {
            i.set_config_v4(config);
            i.apply_static_config();
            i.waker.wake();
        })
    }

    /// Replace the IPv6 configuration.
    #[cfg(feature = "ipv6")]
    pub fn set_config_v6(&self, config: ConfigV6) {
        self.with_inner_mut(|i| {
            i.set_config_v6(config);
            i.apply_static_config();
            i.waker.wake();
        })
    }
}

impl Inner {
    fn is_config_up(&self) -> bool {
        #[cfg(feature = "ipv6")]
        if self.static_v6.is_some() {
            return true;
        }
        self.static_v4.is_some()
    }

    /// Next ephemeral port not in use by a TCP socket of this stack.
    fn get_local_port(&mut self) -> u16 {
        let in_use = |sockets: &SocketSet<'_>, port: u16| {
            sockets.iter().any(|(_, s)| match s {
                smoltcp::socket::Socket::Tcp(s) => {
                    s.listen_endpoint().port == port
                        || s.local_endpoint().is_some_and(|e| e.port == port)
                }
                // The DHCP socket, when there is one.
                #[allow(unreachable_patterns)]
                _ => false,
            })
        };
        let mut port = self.next_local_port;
        // Bounded: the set holds far fewer sockets than there are ports.
        for _ in 0..=self.sockets.iter().count() {
            if !in_use(&self.sockets, port) {
                break;
            }
            port = next_port(port);
        }
        self.next_local_port = next_port(port);
        port
    }

    fn set_config_v4(&mut self, config: ConfigV4) {
        self.static_v4 = match &config {
            ConfigV4::Static(c) => Some(c.clone()),
            _ => None,
        };
        #[cfg(feature = "dhcpv4")]
        match config {
            ConfigV4::Dhcp(c) => {
                let handle = match self.dhcp_socket {
                    Some(h) => h,
                    None => {
                        let h = self.sockets.add(dhcpv4::Socket::new());
                        self.dhcp_socket = Some(h);
                        h
                    }
                };
                let socket = self.sockets.get_mut::<dhcpv4::Socket>(handle);
                socket.set_ignore_naks(c.ignore_naks);
                socket.set_max_lease_duration(c.max_lease_duration.map(duration_to_smoltcp));
                socket.set_ports(c.server_port, c.client_port);
                socket.set_retry_config(c.retry_config);
                socket.reset();
            }
            ConfigV4::None | ConfigV4::Static(_) => {
                if let Some(h) = self.dhcp_socket.take() {
                    self.sockets.remove(h);
                }
            }
        }
    }

    #[cfg(feature = "ipv6")]
    fn set_config_v6(&mut self, config: ConfigV6) {
        self.static_v6 = match config {
            ConfigV6::None => None,
            ConfigV6::Static(c) => Some(c),
        };
    }

    fn apply_static_config(&mut self) {
        let v4 = self.static_v4.clone();
        #[cfg(feature = "ipv6")]
        let v6 = self.static_v6.clone();

        match &v4 {
            Some(c) => {
                debug!("IPv4: up, address {:?}, gateway {:?}", c.address, c.gateway);
            }
            None => debug!("IPv4: down"),
        }
        #[cfg(feature = "ipv6")]
        match &v6 {
            Some(c) => {
                debug!("IPv6: up, address {:?}, gateway {:?}", c.address, c.gateway);
            }
            None => debug!("IPv6: down"),
        }

        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(c) = &v4 {
                // Two addresses at most; smoltcp keeps room for several.
                let _ = addrs.push(IpCidr::Ipv4(c.address));
            }
            #[cfg(feature = "ipv6")]
            if let Some(c) = &v6 {
                let _ = addrs.push(IpCidr::Ipv6(c.address));
            }
        });

        let routes = self.iface.routes_mut();
        match v4.and_then(|c| c.gateway) {
            Some(gw) => {
                if routes.add_default_ipv4_route(gw).is_err() {
                    warn!("route table full, no IPv4 default route");
                }
            }
            None => {
                routes.remove_default_ipv4_route();
            }
        }
        #[cfg(feature = "ipv6")]
        match v6.and_then(|c| c.gateway) {
            Some(gw) => {
                if routes.add_default_ipv6_route(gw).is_err() {
                    warn!("route table full, no IPv6 default route");
                }
            }
            None => {
                routes.remove_default_ipv6_route();
            }
        }

        self.state_waker.wake();
    }

    /// Follow the DHCP client: restart it when the link comes up, apply or drop its lease.
    #[cfg(feature = "dhcpv4")]
    fn poll_dhcp(&mut self, old_link_up: bool) {
        let Some(handle) = self.dhcp_socket else {
            return;
        };
        let socket = self.sockets.get_mut::<dhcpv4::Socket>(handle);
        let mut reconfigure = false;
        if self.link_up {
            if !old_link_up {
                socket.reset();
            }
            match socket.poll() {
                None => {}
                Some(dhcpv4::Event::Deconfigured) => {
                    self.static_v4 = None;
                    reconfigure = true;
                }
                Some(dhcpv4::Event::Configured(config)) => {
                    self.static_v4 = Some(StaticConfigV4 {
                        address: config.address,
                        gateway: config.router,
                        dns_servers: config.dns_servers.iter().copied().take(3).collect(),
                    });
                    reconfigure = true;
                }
            }
        } else if old_link_up {
            socket.reset();
            self.static_v4 = None;
            reconfigure = true;
        }
        if reconfigure {
            self.apply_static_config();
        }
    }

    /// One turn of the runner: move frames, update link and DHCP state, arm the next wake-up.
    fn poll<D: Driver>(&mut self, cx: &mut Context<'_>, driver: &mut D) {
        self.waker.register(cx.waker());

        let (hardware_address, medium) = to_smoltcp_hardware_address(driver.hardware_address());
        if medium == Medium::Ethernet {
            // Some drivers learn their MAC address only after start-up.
            self.iface.set_hardware_addr(hardware_address);
            self.hardware_address = hardware_address;
        }

        let timestamp = instant_to_smoltcp(embassy_time::Instant::now());
        let mut device = DriverAdapter {
            cx: Some(cx),
            inner: driver,
            medium,
            tx_exhausted: false,
        };
        let result = self.iface.poll(timestamp, &mut device, &mut self.sockets);
        let tx_exhausted = device.tx_exhausted;
        if result == PollResult::SocketStateChanged {
            trace!("net: socket state changed");
        }

        let old_link_up = self.link_up;
        self.link_up = driver.link_state(cx) == LinkState::Up;
        if old_link_up != self.link_up {
            info!("link up: {:?}", self.link_up);
            self.state_waker.wake();
        }

        #[cfg(feature = "dhcpv4")]
        self.poll_dhcp(old_link_up);

        // With the driver out of transmit buffers, its waker (not a timer) says when to go on.
        if !tx_exhausted {
            if let Some(poll_at) = self.iface.poll_at(timestamp, &self.sockets) {
                let timer = pin!(Timer::at(instant_from_smoltcp(poll_at)));
                if timer.poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
            }
        }
    }
}

fn next_port(port: u16) -> u16 {
    if port == LOCAL_PORT_MAX {
        LOCAL_PORT_MIN
    } else {
        port + 1
    }
}

impl<'d, D: Driver> Runner<'d, D> {
    /// Run the stack. Never returns; run it in a task of its own.
    pub async fn run(&mut self) -> ! {
        poll_fn(|cx| {
            self.stack.with_inner_mut(|i| i.poll(cx, &mut self.driver));
            Poll::<()>::Pending
        })
        .await;
        unreachable!()
    }
}
