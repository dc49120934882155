//! The stack itself: [`StackResources`] (its memory), [`new`], the shared state behind a `RefCell`,
//! and the [`Stack`] handle that sockets and state machines use.

use core::cell::RefCell;
use core::future::{poll_fn, Future};
use core::mem::MaybeUninit;
use core::task::{Context, Poll};

use embassy_net_driver::Driver;
use embassy_sync::waitqueue::{MultiWakerRegistration, WakerRegistration};
use smoltcp::iface::SocketStorage;

use super::driver::{to_smoltcp_hardware_address, DriverAdapter};
use super::time::instant_to_smoltcp;
#[cfg(any(feature = "dhcpv4", feature = "dns"))]
use super::SocketHandle;
use super::{Config, ConfigV4, HardwareAddress, Interface, Runner, SocketSet, StaticConfigV4};
#[cfg(feature = "ipv6")]
use super::{ConfigV6, StaticConfigV6};

const LOCAL_PORT_MIN: u16 = 1025;
const LOCAL_PORT_MAX: u16 = 65535;
/// Tasks that can wait on link/config changes at once before they start waking each other.
const STATE_WAITERS: usize = 4;

/// Memory for a network stack: the socket slots and the shared state.
///
/// `SOCK` is the number of sockets that can exist at once. DHCP (feature `dhcpv4`) uses one slot;
/// so does a running DNS query (feature `dns`); every [`tcp::TcpSocket`](super::tcp::TcpSocket) and every socket a
/// state machine adds uses one.
pub struct StackResources<const SOCK: usize> {
    sockets: MaybeUninit<[SocketStorage<'static>; SOCK]>,
    inner: MaybeUninit<RefCell<Inner>>,
    /// The DNS socket's one query slot.
    #[cfg(feature = "dns")]
    dns_queries: [Option<smoltcp::socket::dns::DnsQuery>; 1],
}

impl<const SOCK: usize> StackResources<SOCK> {
    /// Uninitialized resources; [`new`] initializes them.
    pub const fn new() -> Self {
        Self {
            sockets: MaybeUninit::uninit(),
            inner: MaybeUninit::uninit(),
            #[cfg(feature = "dns")]
            dns_queries: [None],
        }
    }
}

impl<const SOCK: usize> Default for StackResources<SOCK> {
    fn default() -> Self {
        Self::new()
    }
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
    /// doc of `net`, "Sockets and buffer lifetimes").
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) iface: Interface,
    /// Wakes the runner.
    pub(crate) waker: WakerRegistration,
    /// Wakes tasks waiting for link or configuration changes.
    pub(super) state_waker: MultiWakerRegistration<STATE_WAITERS>,
    pub(super) hardware_address: HardwareAddress,
    /// Slots of the socket set (`SOCK` of the resources): smoltcp's `add` panics when all are taken.
    pub(super) socket_slots: usize,
    next_local_port: u16,
    pub(super) link_up: bool,
    pub(super) static_v4: Option<StaticConfigV4>,
    #[cfg(feature = "ipv6")]
    pub(super) static_v6: Option<StaticConfigV6>,
    #[cfg(feature = "dhcpv4")]
    pub(super) dhcp_socket: Option<SocketHandle>,
    /// The DNS socket while a query runs (feature `dns`): it takes a socket slot only then.
    #[cfg(feature = "dns")]
    pub(super) dns_socket: Option<SocketHandle>,
    /// The DNS socket's query slot, in the resources (borrowed for `'d`, like the socket storage).
    #[cfg(feature = "dns")]
    pub(super) dns_queries: *mut [Option<smoltcp::socket::dns::DnsQuery>; 1],
    /// Wakes tasks waiting for the running DNS query to end.
    #[cfg(feature = "dns")]
    pub(super) dns_waker: WakerRegistration,
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
        socket_slots: SOCK,
        next_local_port,
        link_up: false,
        static_v4: None,
        #[cfg(feature = "ipv6")]
        static_v6: None,
        #[cfg(feature = "dhcpv4")]
        dhcp_socket: None,
        #[cfg(feature = "dns")]
        dns_socket: None,
        #[cfg(feature = "dns")]
        dns_queries: &raw mut resources.dns_queries,
        #[cfg(feature = "dns")]
        dns_waker: WakerRegistration::new(),
    };
    inner.set_config_v4(config.ipv4);
    #[cfg(feature = "ipv6")]
    inner.set_config_v6(config.ipv6);
    inner.apply_static_config();

    let inner = &*resources.inner.write(RefCell::new(inner));
    let stack = Stack { inner };
    (stack, Runner { driver, stack })
}

impl<'d> Stack<'d> {
    pub(super) fn with_inner<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.inner.borrow())
    }

    pub(super) fn with_inner_mut<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
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
    ///   reused (for instance by wrapping its handle in a [`tcp::TcpSocket::from_handle`](super::tcp::TcpSocket::from_handle) that lives
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
    /// sockets it watches and call [`wake_at`](super::wake_at) with its own next deadline. If it registers nothing,
    /// it is only called again on spurious wake-ups. The runner is woken after every call, so
    /// whatever `f` queued is transmitted; the runner's poll in turn wakes the sockets' wakers only
    /// when something changed.
    ///
    /// To stop at a deadline instead, return `Poll::Ready` from `f` once [`now`](super::now) passes it (with
    /// [`wake_at`](super::wake_at) armed for it), or race this future against `embassy_time::Timer::at`.
    ///
    /// # Panics
    /// If `f` calls methods of this stack (the state is borrowed while `f` runs).
    pub async fn poll_with<T, F>(&self, mut f: F) -> T
    where
        F: for<'s> FnMut(&mut Context<'_>, &mut Interface, &mut SocketSet<'s>) -> Poll<T>,
    {
        poll_fn(|cx| self.with_mut(|iface, sockets| f(cx, iface, sockets))).await
    }

    /// Socket slots not in use (of the `SOCK` of [`StackResources`]): creating more sockets than this
    /// panics, so an operation that creates several checks first.
    pub(crate) fn free_socket_slots(&self) -> usize {
        self.with_inner(|i| i.socket_slots - i.sockets.iter().count())
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
    #[cfg_attr(docsrs, doc(cfg(feature = "ipv6")))]
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
    #[cfg_attr(docsrs, doc(cfg(feature = "ipv6")))]
    pub fn set_config_v6(&self, config: ConfigV6) {
        self.with_inner_mut(|i| {
            i.set_config_v6(config);
            i.apply_static_config();
            i.waker.wake();
        })
    }
}

impl Inner {
    /// Next ephemeral port not in use by a TCP socket of this stack.
    pub(super) fn get_local_port(&mut self) -> u16 {
        let in_use = |sockets: &SocketSet<'_>, port: u16| {
            sockets.iter().any(|(_, s)| match s {
                smoltcp::socket::Socket::Tcp(s) => {
                    s.listen_endpoint().port == port
                        || s.local_endpoint().is_some_and(|e| e.port == port)
                }
                #[cfg(feature = "udp")]
                smoltcp::socket::Socket::Udp(s) => s.endpoint().port == port,
                // The DHCP and DNS sockets, when there are.
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
}

fn next_port(port: u16) -> u16 {
    if port == LOCAL_PORT_MAX {
        LOCAL_PORT_MIN
    } else {
        port + 1
    }
}
