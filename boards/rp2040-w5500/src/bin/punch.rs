//! p2psc on an RP2040 + WIZnet W5500 (pins of the W5500-EVB-Pico): DHCP (or static) through the W5500 in
//! MACRAW mode, then `p2psc::net::connect` to the peer through the mediator, then an echo exchange: send
//! a message, expect it back (`host-sim tap peer --echo` or any echoing p2psc peer). Logs over
//! defmt/RTT (`probe-rs run`).
//!
//! Entropy comes from the RP2040's ring oscillator (`RoscRng`), the best source on this chip; the
//! device key is build-time configuration here (README.md). The RP2040 is a Cortex-M0+: salty has no
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
use embassy_time::{with_timeout, Delay, Duration};
use embedded_hal_bus::spi::ExclusiveDevice;
use embedded_io_async::Write as _;
use p2psc::connector::ConnectConfig;
use p2psc::identity::{Keypair, PublicKey};
use p2psc::net::{self, ConnectBuffers, Ipv4Address, Ipv4Cidr, Mediator, Peer, StackResources};
use static_cell::StaticCell;
#[cfg(feature = "defmt")]
use {defmt_rtt as _, panic_probe as _};

#[allow(dead_code)]
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

/// `info!` through defmt, or nothing without the `defmt` feature (arguments still evaluated).
macro_rules! info {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        defmt::info!($fmt $(, $arg)*);
        #[cfg(not(feature = "defmt"))]
        let _ = ($(&$arg,)*);
    }};
}

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

/// Sockets: DHCP, the mediator connection, the punch candidate.
const SOCKETS: usize = 3;

static WIZNET: StaticCell<State<4, 4>> = StaticCell::new();
static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();
static BUFFERS: StaticCell<[u8; 2 * 1024 + 2 * 256]> = StaticCell::new();

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
    let mut rng = RoscRng;
    let mut connect_seed = [0u8; 32];
    rng.fill_bytes(&mut connect_seed);

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
        rng.next_u64(),
    );
    spawner.spawn(net_task(runner).unwrap());
    stack.wait_config_up().await;
    if let Some(c) = stack.config_v4() {
        info!("net: {} gateway {}", c.address, c.gateway);
    }

    let me = Keypair::from_seed(&config::KEY_SEED);
    let peer = Peer::new(PublicKey::from_bytes(config::PEER_KEY));
    let mediator = Mediator::new(
        Ipv4Address::from(config::MEDIATOR_ADDR),
        config::MEDIATOR_PORT,
    );
    info!(
        "p2psc: me {}, peer {}, mediator {}",
        me.public_key(),
        peer.key,
        mediator.endpoint
    );

    let b = BUFFERS.init([0; 2 * 1024 + 2 * 256]);
    let (rx, rest) = b.split_at_mut(1024);
    let (tx, rest) = rest.split_at_mut(1024);
    let (mediator_rx, mediator_tx) = rest.split_at_mut(256);
    let buffers = ConnectBuffers {
        rx,
        tx,
        mediator_rx,
        mediator_tx,
        race: None,
    };
    let result = net::connect_observed(
        stack,
        &me,
        &peer,
        &mediator,
        buffers,
        ConnectConfig::default(),
        connect_seed,
        |event| info!("p2psc: {}", event),
    )
    .await;
    let mut conn = match result {
        Ok(conn) => conn,
        Err(e) => {
            info!("p2psc: failed: {}", e);
            return;
        }
    };
    info!("p2psc: authenticated {} as {}", conn.remote, conn.role);

    let msg = b"hello from an RP2040 + W5500\n";
    let mut back = [0u8; 29];
    let ok = conn.socket.write_all(msg).await.is_ok()
        && matches!(
            with_timeout(
                Duration::from_secs(10),
                read_exact(&mut conn.socket, &mut back)
            )
            .await,
            Ok(true)
        )
        && back == *msg;
    info!("echo: {}", if ok { "ok" } else { "failed" });
    conn.socket.close();
    let _ = with_timeout(Duration::from_secs(2), conn.socket.flush()).await;
}

async fn read_exact(socket: &mut net::tcp::TcpSocket<'_>, buf: &mut [u8]) -> bool {
    let mut n = 0;
    while n < buf.len() {
        match socket.read(&mut buf[n..]).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => n += read,
        }
    }
    true
}
