//! p2psc on an ESP32-C3 (RISC-V, on-chip Wi-Fi through esp-radio): join the WPA2 network of the
//! build-time configuration, DHCP, then `p2psc::connector::connect` to the peer through the mediator,
//! then an echo exchange: send a message, expect it back (`host-sim tap peer --echo` or any echoing
//! p2psc peer). Logs over defmt through the USB-serial-JTAG / UART console
//! (`espflash monitor --log-format defmt`).
//!
//! Entropy comes from the ESP32-C3's true RNG with its SAR ADC noise source enabled (`TrngSource`),
//! conditioned through SHA-512 (`p2psc::rng::condition`) into the seed of p2psc's DRBG.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_time::{Duration, Timer};
use esp_hal::clock::CpuClock;
use esp_hal::rng::{Trng, TrngSource};
use esp_hal::timer::timg::TimerGroup;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config as WifiConfig, Interface, Password, Ssid, WifiController,
};
use p2psc::net::{self, Ipv4Address, Ipv4Cidr, StackResources};
use static_cell::StaticCell;
#[cfg(feature = "defmt")]
use {esp_backtrace as _, esp_println as _};

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
        core::hint::spin_loop();
    }
}

esp_bootloader_esp_idf::esp_app_desc!();

static RESOURCES: StaticCell<StackResources<{ app::SOCKETS }>> = StaticCell::new();
static CONNECT: StaticCell<app::Resources> = StaticCell::new();

#[embassy_executor::task]
async fn net_task(mut runner: net::Runner<'static, Interface>) -> ! {
    runner.run().await
}

/// Keep the station joined to the configured WPA2 network: connect, wait for a disconnection, again.
/// The controller lives here: dropping it would shut Wi-Fi down.
#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) -> ! {
    loop {
        info!("wifi: joining {}", config::WIFI_SSID);
        match controller.connect_async().await {
            Ok(_) => {
                info!("wifi: joined");
                let _ = controller.wait_for_disconnect_async().await;
                info!("wifi: disconnected");
            }
            Err(e) => info!("wifi: join failed ({}), retrying", e),
        }
        Timer::after(Duration::from_secs(3)).await;
    }
}

/// The station configuration from the build-time `P2PSC_WIFI_*` values (checked by build.rs).
fn station_config() -> WifiConfig {
    let (Ok(ssid), Ok(password)) = (
        Ssid::try_from(config::WIFI_SSID),
        Password::try_from(config::WIFI_PASSPHRASE),
    ) else {
        panic!("P2PSC_WIFI_SSID / P2PSC_WIFI_PASSPHRASE rejected by the Wi-Fi driver");
    };
    WifiConfig::Station(
        StationConfig::default()
            .with_ssid(ssid)
            .with_authentication(AuthenticationMethodConfig::Wpa2Personal(password)),
    )
}

#[esp_rtos::main]
async fn main(spawner: Spawner) {
    let p = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // Espressif's Wi-Fi stack allocates: the RAM the ROM bootloader used, and some more.
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 36 * 1024);
    let timg0 = TimerGroup::new(p.TIMG0);
    esp_rtos::start(timg0.timer0, p.FROM_CPU_INTR0);
    info!("p2psc on ESP32-C3");
    if config::TEST_KEYS {
        info!("WARNING: TEST device key (set P2PSC_KEY_SEED)");
    }
    if config::TEST_WIFI {
        info!("WARNING: TEST Wi-Fi network (set P2PSC_WIFI_SSID, P2PSC_WIFI_PASSPHRASE)");
    }

    // The RNG is a true RNG while an entropy source runs (the SAR ADC's noise here); condition 8
    // blocks of 64 bytes anyway, mixing in the boot timer.
    let _entropy = TrngSource::new(p.RNG, p.ADC1);
    let Ok(trng) = Trng::try_new() else {
        panic!("no entropy source");
    };
    let boot = embassy_time::Instant::now().as_ticks().to_le_bytes();
    let seed = p2psc::rng::condition(|block| trng.read(block), 8, &boot);
    let mut rng = p2psc::rng::Drbg::new(seed);
    let stack_seed = rng.range(0, u64::MAX);

    let Ok(mut controller) = WifiController::new(p.WIFI, Default::default()) else {
        panic!("wifi: no controller");
    };
    if controller.set_config(&station_config()).is_err() {
        panic!("wifi: configuration rejected");
    }
    spawner.spawn(wifi_task(controller).unwrap());

    let net_config = match config::IPV4 {
        Some((addr, prefix)) => net::Config::ipv4_static(net::StaticConfigV4 {
            address: Ipv4Cidr::new(Ipv4Address::from(addr), prefix),
            gateway: config::GATEWAY.map(Ipv4Address::from),
            dns_servers: heapless::Vec::new(),
        }),
        None => net::Config::dhcpv4(Default::default()),
    };
    let (stack, runner) = net::new(
        Interface::station(),
        net_config,
        RESOURCES.init(StackResources::new()),
        stack_seed,
    );
    spawner.spawn(net_task(runner).unwrap());
    app::punch_and_echo(
        stack,
        CONNECT.init(app::Resources::new()),
        &mut rng,
        b"hello from an ESP32-C3\n",
    )
    .await;
}
