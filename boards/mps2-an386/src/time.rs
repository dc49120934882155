//! An embassy-time driver on SysTick: a 1 kHz tick (`tick-hz-1_000`) from the 25 MHz core clock, and
//! a small alarm table.
//!
//! Why a tick and not a one-shot alarm: SysTick is the one timer every Cortex-M has, and a 1 ms period
//! keeps the driver to a counter and a table. Idle cost is one short interrupt per millisecond; the
//! executor sleeps with `wfi` in between, so QEMU uses a few percent of a host core, not a whole one.
//! Network timers (TCP retransmission, the punch's retry jitter) need nothing finer than 1 ms.

use core::cell::RefCell;
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_time_driver::Driver;

/// Core clock of the MPS2 FPGA images (and QEMU's model of them).
pub const SYSCLK_HZ: u32 = 25_000_000;
const TICK_HZ: u32 = embassy_time_driver::TICK_HZ as u32;
/// Tasks that can wait on a timer at once. Each task holds at most one entry (the earliest of its
/// deadlines), as in embassy's timer queues; the firmware has two or three tasks.
const SLOTS: usize = 6;

struct Clock {
    ticks: u64,
    /// Earliest deadline in `slots` (`u64::MAX`: none).
    next: u64,
    slots: [Option<(u64, Waker)>; SLOTS],
}

impl Clock {
    fn fire_due(&mut self) {
        let now = self.ticks;
        let mut next = u64::MAX;
        for slot in self.slots.iter_mut() {
            match slot {
                Some((at, _)) if *at <= now => {
                    if let Some((_, waker)) = slot.take() {
                        waker.wake();
                    }
                }
                Some((at, _)) => next = next.min(*at),
                None => {}
            }
        }
        self.next = next;
    }
}

static CLOCK: Mutex<RefCell<Clock>> = Mutex::new(RefCell::new(Clock {
    ticks: 0,
    next: u64::MAX,
    slots: [const { None }; SLOTS],
}));

struct SysTickDriver;

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| CLOCK.borrow_ref(cs).ticks)
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut clock = CLOCK.borrow_ref_mut(cs);
            if at <= clock.ticks {
                waker.wake_by_ref();
                return;
            }
            let slots = &mut clock.slots;
            if let Some((t, _)) = slots.iter_mut().flatten().find(|(_, w)| w.will_wake(waker)) {
                *t = (*t).min(at);
            } else if let Some(free) = slots.iter_mut().find(|s| s.is_none()) {
                *free = Some((at, waker.clone()));
            } else {
                // Table full (more waiting tasks than SLOTS): wake now; the task re-checks its
                // timer and schedules again, so this costs cycles, never a lost wake-up.
                waker.wake_by_ref();
                return;
            }
            clock.next = clock.next.min(at);
        })
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver);

/// Start the tick. Call once, before anything reads the time.
pub fn init(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYSCLK_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let mut clock = CLOCK.borrow_ref_mut(cs);
        clock.ticks += 1;
        if clock.ticks >= clock.next {
            clock.fire_due();
        }
    });
}

/// Current value of SysTick's down-counter (sub-millisecond jitter, for the boot entropy).
pub fn systick_phase() -> u32 {
    SYST::get_current()
}
