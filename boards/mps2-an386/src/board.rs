//! Bring-up shared by the binaries: console, clock, NIC, network stack, interrupt and panic handlers.

use core::fmt;

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use cortex_m_rt::exception;
use embassy_executor::Spawner;
use embassy_sync::waitqueue::AtomicWaker;
use p2psc::net::{self, Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use static_cell::StaticCell;

use crate::config;
use crate::lan9118::{self, Lan9118, Mmio, PacketBuffers};
use crate::semihosting::exit;

/// LAN9118 register window on mps2-an385/an386.
pub const LAN9118_BASE: usize = 0x4020_0000;
/// Its interrupt line.
const LAN9118_IRQ: u16 = 13;
/// Socket slots: the mediator connection and one punch candidate (which becomes the application's
/// socket), plus the DHCP client's when `P2PSC_IPV4=dhcp`: `ConnectResources::SOCKETS` for one
/// candidate, and one more. Two candidates (`ConnectResources<_, _, 2>`) would need one more still.
pub const SOCKETS: usize = if config::IPV4.is_some() { 2 } else { 3 };

/// The NIC type the stack runs on.
pub type Nic = Lan9118<'static, Mmio>;

static NIC_WAKER: AtomicWaker = AtomicWaker::new();
static PACKET_BUFFERS: StaticCell<PacketBuffers> = StaticCell::new();
static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: 13 is a valid interrupt number on this board.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

/// A MAC address as `52:54:00:12:34:02`.
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// A string for `{}`, written as it is. `str`'s own `Display` goes through `Formatter::pad` (0.6 KB of
/// width, precision and alignment handling this firmware never asks for).
pub struct Text<'a>(pub &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// An IPv4 address as `a.b.c.d`. Every address this firmware prints goes through here: core's
/// `Ipv4Addr` formatter (which pads and aligns into a buffer) would cost 0.5 KB more.
pub struct Ip(pub Ipv4Address);

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [x, y, z, w] = self.0.octets();
        write!(f, "{}.{}.{}.{}", x, y, z, w)
    }
}

/// A socket address as `a.b.c.d:port`, without linking core's IPv6 formatter (~1.7 KB of flash) for
/// addresses that are IPv4 on this board.
pub struct Addr(pub core::net::SocketAddr);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            core::net::SocketAddr::V4(a) => write!(f, "{}:{}", Ip(*a.ip()), a.port()),
            core::net::SocketAddr::V6(a) => write!(f, "[IPv6]:{}", a.port()),
        }
    }
}

/// An endpoint as `a.b.c.d:port` (smoltcp's `Display` also links core's IPv6 formatter).
pub struct Ep(pub p2psc::net::IpEndpoint);

impl fmt::Display for Ep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.addr {
            p2psc::net::IpAddress::Ipv4(a) => Addr(core::net::SocketAddr::V4(
                core::net::SocketAddrV4::new(a, self.0.port),
            ))
            .fmt(f),
            #[allow(unreachable_patterns)]
            _ => write!(f, "[IPv6]:{}", self.0.port),
        }
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Nic>) -> ! {
    runner.run().await
}

/// Start the console, clock, NIC and network stack (its runner as a task on `spawner`) and return
/// the stack. `app` names the binary in the banner. A missing NIC ends the run (exit status 1).
pub fn start(spawner: Spawner, app: &str) -> Stack<'static> {
    crate::uart::init();
    println!();
    println!(
        "{}: p2psc on mps2-an386 (Cortex-M4 @ 25 MHz, LAN9118)",
        Text(app)
    );
    if config::TEST_KEYS {
        println!("WARNING: TEST device key / entropy secret (public values; set P2PSC_KEY_SEED, P2PSC_ENTROPY_SECRET)");
    }
    println!("WARNING: no TRNG on this board: boot entropy is a build secret + timing jitter");
    #[cfg(feature = "log")]
    crate::uart::logger::init(log::LevelFilter::Debug);

    let Some(p) = cortex_m::Peripherals::take() else {
        println!("board: start called twice");
        exit(false)
    };
    crate::time::init(p.SYST);

    // SAFETY: the LAN9118 window; the driver owns it, the interrupt handler only masks INT_EN.
    let regs = unsafe { Mmio::new(LAN9118_BASE) };
    let bufs = PACKET_BUFFERS.init(PacketBuffers::new());
    let nic = match Lan9118::new(regs, config::MAC, bufs, &NIC_WAKER) {
        Ok(nic) => nic,
        Err(e) => {
            println!("lan9118: {}", e);
            exit(false)
        }
    };
    println!("lan9118: up, mac {}", Mac(nic.mac_address()));
    // SAFETY: the handler below only touches the chip's INT_EN and the waker.
    unsafe { NVIC::unmask(Irq(LAN9118_IRQ)) };

    let net_config = match config::IPV4 {
        Some((addr, prefix)) => net::Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(Ipv4Address::from(addr), prefix),
            gateway: config::GATEWAY.map(Ipv4Address::from),
            dns_servers: heapless::Vec::new(),
        }),
        #[cfg(feature = "dhcp")]
        None => net::Config::dhcpv4(Default::default()),
        // build.rs already refuses this combination.
        #[cfg(not(feature = "dhcp"))]
        None => {
            println!("net: P2PSC_IPV4=dhcp needs the `dhcp` feature");
            exit(false)
        }
    };
    let seed = crate::entropy::seed(b"stack");
    let mut seed64 = [0u8; 8];
    seed64.copy_from_slice(&seed[..8]);
    let (stack, runner) = net::new(
        nic,
        net_config,
        RESOURCES.init(StackResources::new()),
        u64::from_le_bytes(seed64),
    );
    spawner.spawn(net_task(runner).unwrap());
    stack
}

/// Wait until the stack has an address (at once with static addressing) and print it; `None` if DHCP
/// found no server within 20 s.
pub async fn wait_config(stack: Stack<'static>) -> Option<StaticConfigV4> {
    if config::IPV4.is_none() {
        println!("net: DHCP...");
    }
    let up = embassy_time::with_timeout(
        embassy_time::Duration::from_secs(20),
        stack.wait_config_up(),
    );
    if up.await.is_err() {
        println!("net: no DHCP lease");
        return None;
    }
    let c = stack.config_v4()?;
    let (addr, prefix) = (Ip(c.address.address()), c.address.prefix_len());
    match c.gateway {
        Some(gw) => println!("net: {}/{} gateway {}", addr, prefix, Ip(gw)),
        None => println!("net: {}/{} (no gateway)", addr, prefix),
    }
    Some(c)
}

extern "C" {
    /// cortex-m-rt's default handler (ours, below).
    fn DefaultHandler();
}

/// The 32 device interrupts of the MPS2 images: the LAN9118 on IRQ 13, everything else to the
/// default handler. (cortex-m-rt's own table without a device crate has 240 entries, 0.8 KB more.)
#[doc(hidden)]
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
pub static __INTERRUPTS: [unsafe extern "C" fn(); 32] = {
    let mut table = [DefaultHandler as unsafe extern "C" fn(); 32];
    table[LAN9118_IRQ as usize] = ETHERNET;
    table
};

/// LAN9118 interrupt.
#[no_mangle]
unsafe extern "C" fn ETHERNET() {
    // SAFETY: same window as the driver's; `on_interrupt` writes only INT_EN.
    let regs = unsafe { Mmio::new(LAN9118_BASE) };
    lan9118::on_interrupt(&regs, &NIC_WAKER);
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    println!("unexpected exception/interrupt {}", irqn);
    exit(false);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // Message and location only with `log`. A handler that never reads `info` lets the optimiser drop
    // what every panic site would pass it: the file name, line and message (~6 KB of this image).
    #[cfg(feature = "log")]
    println!("panic: {}", info);
    #[cfg(not(feature = "log"))]
    {
        let _ = info;
        println!("panic (build with --features log for where and why)");
    }
    exit(false)
}
