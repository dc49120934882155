//! p2psc on an RP2040 + WIZnet W5500 (pins of the W5500-EVB-Pico): DHCP (or static) through the W5500 in
//! MACRAW mode, then `p2psc::connector::connect` to the peer through the mediator, then an echo exchange: send
//! a message, expect it back (`host-sim tap peer --echo` or any echoing p2psc peer). Logs over
//! defmt/RTT (`probe-rs run`).
//!
//! Entropy comes from the RP2040's ring oscillator (`RoscRng`), the best source on this chip, read
//! raw (16 KiB of RANDOMBIT samples) and conditioned through SHA-512 (`p2psc::rng::condition`); the
//! README has the entropy budget. The device key is build-time configuration here (README.md). The RP2040 is a Cortex-M0+: salty has no
//! fast path for it, so sign + verify take about a second at 125 MHz and need ~12 KB of stack.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_net_wiznet::chip::W5500;
use embassy_net_wiznet::{Device, Runner, State};
use embassy_rp::clocks::RoscRng;
use embassy_rp::gpio::{Input, Level, Output, Pull};
use embassy_rp::peripherals::{DMA_CH0, DMA_CH1, SPI0};
use embassy_rp::spi::{Async, Config as SpiConfig, Spi};
use embassy_rp::{bind_interrupts, dma};
use embassy_time::Delay;
use embedded_hal_bus::spi::ExclusiveDevice;
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
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>, dma::InterruptHandler<DMA_CH1>;
});

type SpiDev = ExclusiveDevice<Spi<'static, SPI0, Async>, Output<'static>, Delay>;

static WIZNET: StaticCell<State<4, 4>> = StaticCell::new();
static RESOURCES: StaticCell<StackResources<{ app::SOCKETS }>> = StaticCell::new();
static CONNECT: StaticCell<app::Resources> = StaticCell::new();

#[embassy_executor::task]
async fn wiznet_task(runner: Runner<'static, W5500, SpiDev, Input<'static>, Output<'static>>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn net_task(mut runner: net::Runner<'static, Device<'static>>) -> ! {
    runner.run().await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    info!("p2psc on RP2040 + W5500");
    if config::TEST_KEYS {
        info!("WARNING: TEST device key (set P2PSC_KEY_SEED)");
    }
    // Raw ROSC bits are biased and correlated: condition 256 blocks of 64 bytes (README: entropy
    // budget), mixing in the boot timer. Everything random (nonces, ephemeral keys, ports, the stack's
    // ISNs) derives from this one seed.
    let boot = embassy_time::Instant::now().as_ticks().to_le_bytes();
    let seed = p2psc::rng::condition(|block| RoscRng.fill_bytes(block), 256, &boot);
    let mut rng = p2psc::rng::Drbg::new(seed);
    let stack_seed = rng.range(0, u64::MAX);

    let mut spi_cfg = SpiConfig::default();
    spi_cfg.frequency = 50_000_000;
    let spi = Spi::new(
        p.SPI0, p.PIN_18, p.PIN_19, p.PIN_16, p.DMA_CH0, p.DMA_CH1, Irqs, spi_cfg,
    );
    let cs = Output::new(p.PIN_17, Level::High);
    let int = Input::new(p.PIN_21, Pull::Up);
    let reset = Output::new(p.PIN_20, Level::High);
    let mac = config::MAC.unwrap_or([0x02, 0x00, 0x00, 0x00, 0x55, 0x00]);
    let Ok(spi_dev) = ExclusiveDevice::new(spi, cs, Delay);
    let (device, runner) =
        match embassy_net_wiznet::new(mac, WIZNET.init(State::new()), spi_dev, int, reset).await {
            Ok(dr) => dr,
            Err(_) => {
                info!("w5500: not found");
                return;
            }
        };
    spawner.spawn(wiznet_task(runner).unwrap());

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
        stack_seed,
    );
    spawner.spawn(net_task(runner).unwrap());
    app::punch_and_echo(
        stack,
        CONNECT.init(app::Resources::new()),
        &mut rng,
        b"hello from an RP2040 + W5500\n",
    )
    .await;
}
