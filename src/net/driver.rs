//! Network device drivers: the [`embassy_net_driver`] traits, and the glue that lets smoltcp use them.
//!
//! p2psc uses the same driver trait as embassy-net, so every embassy-net driver (STM32 Ethernet,
//! W5500, CYW43, TUN/TAP on a host, …) works unchanged. This module re-exports the trait crate (as
//! `embassy_net::driver` does) and adapts a [`Driver`] to smoltcp's [`phy::Device`] for the
//! duration of one `Interface::poll`. Shape and behaviour follow embassy-net 0.9.1 `driver_util.rs`.

use core::task::Context;

pub use embassy_net_driver::*;
use smoltcp::phy::{self, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress as SmolHardwareAddress};

/// The driver's hardware address as smoltcp's, and the medium it implies.
pub(crate) fn to_smoltcp_hardware_address(addr: HardwareAddress) -> (SmolHardwareAddress, Medium) {
    match addr {
        HardwareAddress::Ethernet(eth) => (
            SmolHardwareAddress::Ethernet(EthernetAddress(eth)),
            Medium::Ethernet,
        ),
        #[cfg(feature = "medium-ip")]
        HardwareAddress::Ip => (SmolHardwareAddress::Ip, Medium::Ip),
        #[allow(unreachable_patterns)]
        _ => panic!("unsupported medium: p2psc::net supports Ethernet, and IP drivers with feature `medium-ip`"),
    }
}

/// A [`Driver`] seen as a smoltcp [`phy::Device`] while the runner holds the task context.
///
/// The context is needed because embassy-net drivers register the runner's waker when they
/// have no frame to give (receive) or no room to take one (transmit).
pub(crate) struct DriverAdapter<'d, 'c, T: Driver> {
    /// Must be `Some` whenever smoltcp may receive or transmit; `None` only while the
    /// interface is being created (smoltcp then asks for capabilities only).
    pub cx: Option<&'d mut Context<'c>>,
    pub inner: &'d mut T,
    pub medium: Medium,
    /// Set when the driver refused a transmit token: the runner then waits for the driver's
    /// wake-up instead of arming a timer that would only spin.
    pub tx_exhausted: bool,
}

/// The runner only polls the interface with a context; `None` here is a bug in this module.
fn task_cx<'a, 'c>(cx: &'a mut Option<&mut Context<'c>>) -> &'a mut Context<'c> {
    unwrap!(
        cx.as_deref_mut(),
        "DriverAdapter used for I/O without a task context"
    )
}

impl<'d, 'c, T: Driver> phy::Device for DriverAdapter<'d, 'c, T> {
    type RxToken<'a>
        = RxTokenAdapter<T::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = TxTokenAdapter<T::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.inner
            .receive(task_cx(&mut self.cx))
            .map(|(rx, tx)| (RxTokenAdapter(rx), TxTokenAdapter(tx)))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let token = self
            .inner
            .transmit(task_cx(&mut self.cx))
            .map(TxTokenAdapter);
        self.tx_exhausted = token.is_none();
        token
    }

    fn capabilities(&self) -> phy::DeviceCapabilities {
        fn convert(c: Checksum) -> phy::Checksum {
            match c {
                Checksum::Both => phy::Checksum::Both,
                Checksum::Tx => phy::Checksum::Tx,
                Checksum::Rx => phy::Checksum::Rx,
                Checksum::None => phy::Checksum::None,
            }
        }
        let caps: Capabilities = self.inner.capabilities();
        let mut smolcaps = phy::DeviceCapabilities::default();
        smolcaps.max_transmission_unit = caps.max_transmission_unit;
        smolcaps.max_burst_size = caps.max_burst_size;
        smolcaps.medium = self.medium;
        smolcaps.checksum.ipv4 = convert(caps.checksum.ipv4);
        smolcaps.checksum.tcp = convert(caps.checksum.tcp);
        smolcaps.checksum.udp = convert(caps.checksum.udp);
        smolcaps.checksum.icmpv4 = convert(caps.checksum.icmpv4);
        #[cfg(feature = "ipv6")]
        {
            smolcaps.checksum.icmpv6 = convert(caps.checksum.icmpv6);
        }
        smolcaps
    }
}

/// A driver's receive token as a smoltcp one.
pub(crate) struct RxTokenAdapter<T: RxToken>(T);

impl<T: RxToken> phy::RxToken for RxTokenAdapter<T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        self.0.consume(|buf| {
            trace!("net rx: {} bytes", buf.len());
            f(buf)
        })
    }
}

/// A driver's transmit token as a smoltcp one.
pub(crate) struct TxTokenAdapter<T: TxToken>(T);

impl<T: TxToken> phy::TxToken for TxTokenAdapter<T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.0.consume(len, |buf| {
            trace!("net tx: {} bytes", len);
            f(buf)
        })
    }
}
