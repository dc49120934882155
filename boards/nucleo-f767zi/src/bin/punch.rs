//! p2psc on a NUCLEO-F767ZI: DHCP (or static) on the on-chip Ethernet, then `p2psc::connector::connect` to the
//! peer through the mediator, then an echo exchange: send a message, expect it back (the peer runs
//! `host-sim tap peer --echo` or any echoing p2psc peer). Logs over defmt/RTT (`probe-rs run`).
//!
//! Entropy comes from the STM32's hardware RNG; the device key is build-time configuration here (see
//! README.md) — a product would keep it in protected flash or a secure element.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_stm32::bind_interrupts;
use embassy_stm32::eth::{self, Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::time::Hertz;
use p2psc::net::{self, Ipv4Address, Ipv4Cidr, StackResources};
use static_cell::StaticCell;
#[cfg(feature = "defmt")]
use {defmt_rtt as _, panic_probe as _};

#[allow(dead_code)]
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

#[macro_use]
#[path = "../../../common/logging.rs"]
mod logging;

#[path = "../../../common/app.rs"]
mod app;

#[cfg(not(feature = "defmt"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        cortex_m::asm::udf();
    }
}

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    RNG => rng::InterruptHandler<RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
static RESOURCES: StaticCell<StackResources<{ app::SOCKETS }>> = StaticCell::new();
static CONNECT: StaticCell<app::Resources> = StaticCell::new();

#[embassy_executor::task]
async fn net_task(mut runner: net::Runner<'static, Device>) -> ! {
    runner.run().await
}

fn clocks() -> embassy_stm32::Config {
    use embassy_stm32::rcc::*;
    let mut config = embassy_stm32::Config::default();
    // 8 MHz from the ST-LINK's MCO → 216 MHz core, 48 MHz for the RNG.
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL216,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV9),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());
    info!("p2psc on NUCLEO-F767ZI");
    if config::TEST_KEYS {
        info!("WARNING: TEST device key (set P2PSC_KEY_SEED)");
    }

    let mut rng = Rng::new(p.RNG, Irqs);
    let mut stack_seed = [0u8; 8];
    rng.fill_bytes(&mut stack_seed);

    let mac = config::MAC.unwrap_or([0x02, 0x00, 0x00, 0x00, 0xF7, 0x67]);
    let device = Ethernet::new(
        PACKETS.init(PacketQueue::new()),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        mac,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );
    let net_config = match config::IPV4 {
        Some((addr, prefix)) => net::Config::ipv4_static(net::StaticConfigV4 {
            address: Ipv4Cidr::new(Ipv4Address::from(addr), prefix),
            gateway: config::GATEWAY.map(Ipv4Address::from),
            dns_servers: heapless::Vec::new(),
        }),
        None => net::Config::dhcpv4(Default::default()),
    };
    let (stack, runner) = net::new(
        device,
        net_config,
        RESOURCES.init(StackResources::new()),
        u64::from_le_bytes(stack_seed),
    );
    spawner.spawn(net_task(runner).unwrap());
    app::punch_and_echo(
        stack,
        CONNECT.init(app::Resources::new()),
        &mut rng,
        b"hello from a NUCLEO-F767ZI\n",
    )
    .await;
}
