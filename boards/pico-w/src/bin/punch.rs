//! p2psc on a Raspberry Pi Pico W (RP2040 + Infineon CYW43439 over PIO SPI): join the WPA2 network of
//! the build-time configuration, DHCP, then `p2psc::connector::connect` to the peer through the
//! mediator, then an echo exchange: send a message, expect it back (`host-sim tap peer --echo` or any
//! echoing p2psc peer). Logs over defmt/RTT (`probe-rs run`).
//!
//! Entropy comes from the RP2040's ring oscillator (`RoscRng`), read raw (16 KiB of RANDOMBIT samples)
//! and conditioned through SHA-512 (`p2psc::rng::condition`), as on the RP2040 + W5500 board (its
//! README has the entropy budget). The Wi-Fi firmware and CLM blobs come from the `cyw43-firmware`
//! crate; the NVRAM file is named at build time (README.md).
#![no_std]
#![no_main]

use cyw43::{Aligned, JoinAuth, JoinOptions, PowerManagementMode, A4};
use cyw43_pio::{PioSpi, DEFAULT_CLOCK_DIVIDER};
use embassy_executor::Spawner;
use embassy_rp::clocks::RoscRng;
use embassy_rp::gpio::{Level, Output};
use embassy_rp::peripherals::{DMA_CH0, PIO0};
use embassy_rp::pio::{self, Pio};
use embassy_rp::{bind_interrupts, dma};
use embassy_time::{Duration, Timer};
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
    PIO0_IRQ_0 => pio::InterruptHandler<PIO0>;
    DMA_IRQ_0 => dma::InterruptHandler<DMA_CH0>;
});

/// The CYW43439 Wi-Fi firmware, 4-byte aligned as the driver uploads it in words.
static FIRMWARE: Aligned<A4, [u8; cyw43_firmware::CYW43_43439A0.len()]> =
    Aligned(*cyw43_firmware::CYW43_43439A0);
/// The country/regulatory (CLM) data the firmware loads after boot.
static CLM: &[u8] = cyw43_firmware::CYW43_43439A0_CLM;
/// The Pico W's NVRAM (radio board settings) from `P2PSC_CYW43_NVRAM`; empty in `ci-build-only` builds.
static NVRAM: &Aligned<A4, [u8]> = cyw43::aligned_bytes!(concat!(env!("OUT_DIR"), "/nvram.bin"));

type Cyw43Spi = PioSpi<'static, PIO0, 0>;

static CYW43: StaticCell<cyw43::State> = StaticCell::new();
static RESOURCES: StaticCell<StackResources<{ app::SOCKETS }>> = StaticCell::new();
static CONNECT: StaticCell<app::Resources> = StaticCell::new();

#[embassy_executor::task]
async fn cyw43_task(runner: cyw43::Runner<'static, cyw43::SpiBus<Output<'static>, Cyw43Spi>>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn net_task(mut runner: net::Runner<'static, cyw43::NetDriver<'static>>) -> ! {
    runner.run().await
}

/// Join the configured WPA2 network, retrying every few seconds until it works.
async fn join_wifi(control: &mut cyw43::Control<'static>) {
    let mut options = JoinOptions::new(config::WIFI_PASSPHRASE.as_bytes());
    options.auth = JoinAuth::Wpa2;
    info!("wifi: joining {}", config::WIFI_SSID);
    while let Err(e) = control.join(config::WIFI_SSID, options.clone()).await {
        info!("wifi: join failed ({}), retrying", e);
        Timer::after(Duration::from_secs(3)).await;
    }
    info!("wifi: joined {}", config::WIFI_SSID);
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    let p = embassy_rp::init(Default::default());
    info!("p2psc on Raspberry Pi Pico W");
    if config::TEST_KEYS {
        info!("WARNING: TEST device key (set P2PSC_KEY_SEED)");
    }
    if config::TEST_WIFI {
        info!("WARNING: TEST Wi-Fi network (set P2PSC_WIFI_SSID, P2PSC_WIFI_PASSPHRASE)");
    }
    // Raw ROSC bits are biased and correlated: condition 256 blocks of 64 bytes (the rp2040-w5500
    // README: entropy budget), mixing in the boot timer. Everything random (nonces, ephemeral keys,
    // ports, the stack's ISNs) derives from this one seed. Read before the radio draws current.
    let boot = embassy_time::Instant::now().as_ticks().to_le_bytes();
    let seed = p2psc::rng::condition(|block| RoscRng.fill_bytes(block), 256, &boot);
    let mut rng = p2psc::rng::Drbg::new(seed);
    let stack_seed = rng.range(0, u64::MAX);

    // Pico W wiring: WL_ON on GPIO 23, the CYW43439's gSPI data on 24, chip select on 25, clock on 29.
    let pwr = Output::new(p.PIN_23, Level::Low);
    let cs = Output::new(p.PIN_25, Level::High);
    let mut pio = Pio::new(p.PIO0, Irqs);
    let spi = PioSpi::new(
        &mut pio.common,
        pio.sm0,
        DEFAULT_CLOCK_DIVIDER,
        pio.irq0,
        cs,
        p.PIN_24,
        p.PIN_29,
        dma::Channel::new(p.DMA_CH0, Irqs),
    );
    let state = CYW43.init(cyw43::State::new());
    let (device, mut control, runner) = cyw43::new(state, pwr, spi, &FIRMWARE, NVRAM).await;
    spawner.spawn(cyw43_task(runner).unwrap());
    control.init(CLM).await;
    control
        .set_power_management(PowerManagementMode::PowerSave)
        .await;
    join_wifi(&mut control).await;

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
        b"hello from a Raspberry Pi Pico W\n",
    )
    .await;
}
