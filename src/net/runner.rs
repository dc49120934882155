//! The stack's background task: [`Runner::run`] polls the smoltcp interface over the driver,
//! follows the link state and the DHCP lease, and sleeps until the interface or the driver has
//! something to do.

use core::convert::Infallible;
use core::future::poll_fn;
use core::task::{Context, Poll};

use embassy_net_driver::{Driver, LinkState};
use smoltcp::iface::PollResult;
use smoltcp::phy::Medium;
#[cfg(feature = "dhcpv4")]
use smoltcp::socket::dhcpv4;

use super::driver::{to_smoltcp_hardware_address, DriverAdapter};
use super::stack::Inner;
use super::time::instant_to_smoltcp;
#[cfg(feature = "dhcpv4")]
use super::StaticConfigV4;
use super::{wake_at, Stack};

/// The stack's background task. Call [`Runner::run`] in a task of its own.
pub struct Runner<'d, D: Driver> {
    pub(super) driver: D,
    pub(super) stack: Stack<'d>,
}

impl<'d, D: Driver> Runner<'d, D> {
    /// Run the stack. Never returns; run it in a task of its own.
    pub async fn run(&mut self) -> ! {
        // The future never completes: its output type has no values, so no panic is needed after it.
        let never: Infallible = poll_fn(|cx| {
            self.stack.with_inner_mut(|i| i.poll(cx, &mut self.driver));
            Poll::Pending
        })
        .await;
        match never {}
    }
}

impl Inner {
    /// One turn of the runner: move frames, update link and DHCP state, arm the next wake-up.
    pub(super) fn poll<D: Driver>(&mut self, cx: &mut Context<'_>, driver: &mut D) {
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
                wake_at(cx, poll_at);
            }
        }
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
}
