//! What the firmware examples take from the board, as small stand-ins so that they build and link
//! for any Cortex-M4F (`thumbv7em-none-eabihf`): your HAL provides the real ones.
//!
//! - [`NoEthernet`]: an [`embassy_net_driver::Driver`] that never receives and drops what it sends.
//!   Use your chip's (embassy-stm32's `Ethernet`, embassy-net-wiznet's W5500, …): p2psc takes the
//!   embassy-net driver trait unchanged.
//! - [`NoPhy`]: the same as a smoltcp `phy::Device`, for the super-loop example that runs smoltcp
//!   itself.
//! - An embassy-time driver on SysTick at 1 kHz ([`start_clock`], [`now`]); your HAL usually has one
//!   on a hardware timer (embassy-stm32's `time-driver-*` features).
//! - [`trng`]: the random number generator, which must be a hardware one (or seeded from one).
//!
//! The boards in the repository (`boards/`) show real drivers for QEMU's LAN9118, an STM32F767's
//! Ethernet and a W5500.

#![allow(dead_code)] // Each example uses part of this.

use core::cell::RefCell;
use core::task::{Context, Waker};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState};
use p2psc::rng::Drbg;

/// The core clock SysTick counts, in Hz (an STM32 running on its 16 MHz internal oscillator).
const CORE_CLOCK_HZ: u32 = 16_000_000;
/// Largest Ethernet frame without its FCS.
const MTU: usize = 1514;
/// Tasks that may wait on a timer at once (one entry each: its earliest deadline).
const TIMER_SLOTS: usize = 4;

/// A frame that never arrives: neither driver ever hands out a receive token.
pub enum NoFrame {}

/// Where a transmitted frame is written, and forgotten.
pub struct Discard;

/// An embassy-net driver without hardware behind it: the link is up, nothing ever arrives.
pub struct NoEthernet;

impl Driver for NoEthernet {
    type RxToken<'a> = NoFrame;
    type TxToken<'a> = Discard;

    fn receive(&mut self, _cx: &mut Context<'_>) -> Option<(NoFrame, Discard)> {
        None
    }

    fn transmit(&mut self, _cx: &mut Context<'_>) -> Option<Discard> {
        Some(Discard)
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(MAC)
    }
}

impl embassy_net_driver::RxToken for NoFrame {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, _f: F) -> R {
        match self {}
    }
}

impl embassy_net_driver::TxToken for Discard {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = [0; MTU];
        f(&mut frame[..len.min(MTU)])
    }
}

/// A locally administered MAC address (use the one your chip or board was given).
pub const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// A smoltcp device without hardware behind it, for firmware that drives smoltcp itself.
pub struct NoPhy;

impl smoltcp::phy::Device for NoPhy {
    type RxToken<'a> = NoFrame;
    type TxToken<'a> = Discard;

    fn receive(
        &mut self,
        _now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        None
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(Discard)
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        let mut caps = smoltcp::phy::DeviceCapabilities::default();
        caps.max_transmission_unit = MTU;
        caps.medium = smoltcp::phy::Medium::Ethernet;
        caps
    }
}

impl smoltcp::phy::RxToken for NoFrame {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, _f: F) -> R {
        match self {}
    }
}

impl smoltcp::phy::TxToken for Discard {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        embassy_net_driver::TxToken::consume(self, len, f)
    }
}

/// The random number generator p2psc draws from (`rand_core::CryptoRng`). **Stand-in**: a DRBG on a
/// fixed seed, which repeats nonces, ephemeral keys and ports on every boot (peers and NATs notice).
/// Use your HAL's hardware RNG (embassy-stm32's `Rng`, embassy-rp's `RoscRng` implement the trait),
/// or `Drbg::new` on 32 bytes from it.
pub fn trng() -> Drbg {
    Drbg::new([0x5e; 32])
}

/// The clock: milliseconds since [`start_clock`], and the tasks waiting for a moment.
struct Clock {
    ticks: u64,
    waiting: [Option<(u64, Waker)>; TIMER_SLOTS],
}

static CLOCK: Mutex<RefCell<Clock>> = Mutex::new(RefCell::new(Clock {
    ticks: 0,
    waiting: [const { None }; TIMER_SLOTS],
}));

/// Start SysTick at 1 kHz. Call once, first thing.
pub fn start_clock(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_CLOCK_HZ / 1_000 - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// The time, in smoltcp's type (what p2psc's poll API takes).
pub fn now() -> smoltcp::time::Instant {
    let ms = critical_section::with(|cs| CLOCK.borrow_ref(cs).ticks);
    smoltcp::time::Instant::from_millis(ms as i64)
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let mut clock = CLOCK.borrow_ref_mut(cs);
        clock.ticks += 1;
        let now = clock.ticks;
        for slot in clock.waiting.iter_mut() {
            if slot.as_ref().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, waker)) = slot.take() {
                    waker.wake();
                }
            }
        }
    });
}

/// embassy-time's driver on the SysTick clock (`tick-hz-1_000`: one tick a millisecond).
struct SysTickTime;

impl embassy_time_driver::Driver for SysTickTime {
    fn now(&self) -> u64 {
        critical_section::with(|cs| CLOCK.borrow_ref(cs).ticks)
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut clock = CLOCK.borrow_ref_mut(cs);
            let waiting = &mut clock.waiting;
            if let Some((t, _)) = waiting
                .iter_mut()
                .flatten()
                .find(|(_, w)| w.will_wake(waker))
            {
                *t = (*t).min(at);
            } else if let Some(free) = waiting.iter_mut().find(|s| s.is_none()) {
                *free = Some((at, waker.clone()));
            } else {
                // More waiting tasks than slots: wake now; the task checks its timer and asks again.
                waker.wake_by_ref();
            }
        })
    }
}

embassy_time_driver::time_driver_impl!(static TIME: SysTickTime = SysTickTime);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    cortex_m::asm::udf() // HardFault: a debugger shows where; a watchdog resets.
}
