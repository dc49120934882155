//! A virtual embassy-time driver: time stands still until the executor advances it.
//!
//! embassy-time's own `mock-driver` is one process-wide clock (parallel tests would share it) and
//! does not tell when its next alarm is due, so an executor could only creep forward in small
//! steps. This driver keeps time and alarms per thread (libtest runs each test on its own
//! thread) and lets the executor jump straight to the next alarm.

use std::cell::{Cell, RefCell};
use std::task::Waker;

use embassy_time::{Duration, Instant};

thread_local! {
    static NOW: Cell<u64> = const { Cell::new(0) };
    static ALARMS: RefCell<Vec<(u64, Waker)>> = const { RefCell::new(Vec::new()) };
}

struct VirtualClock;

impl embassy_time_driver::Driver for VirtualClock {
    fn now(&self) -> u64 {
        NOW.with(Cell::get)
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        // Like embassy's timer queues: one entry per task, at the earliest requested time.
        ALARMS.with(|alarms| {
            let mut alarms = alarms.borrow_mut();
            match alarms.iter_mut().find(|(_, w)| w.will_wake(waker)) {
                Some(entry) => entry.0 = entry.0.min(at),
                None => alarms.push((at, waker.clone())),
            }
        })
    }
}

embassy_time_driver::time_driver_impl!(static CLOCK: VirtualClock = VirtualClock);

/// Start this thread's clock at zero with no alarms.
pub fn reset() {
    NOW.with(|n| n.set(0));
    ALARMS.with(|a| a.borrow_mut().clear());
}

/// Time since [`reset`].
pub fn elapsed() -> Duration {
    Instant::now().duration_since(Instant::from_ticks(0))
}

/// Wake every task whose alarm is due now. Returns how many were woken.
pub fn fire_due() -> usize {
    let now = NOW.with(Cell::get);
    let due: Vec<Waker> = ALARMS.with(|alarms| {
        let mut alarms = alarms.borrow_mut();
        let mut due = Vec::new();
        alarms.retain(|(at, w)| {
            if *at <= now {
                due.push(w.clone());
                false
            } else {
                true
            }
        });
        due
    });
    let n = due.len();
    // Wake outside the borrow: a waker may schedule again.
    due.into_iter().for_each(Waker::wake);
    n
}

/// Jump to the earliest alarm (if it is in the future) and fire everything due. Returns `false`
/// if no alarm is pending.
pub fn advance_to_next_alarm() -> bool {
    let Some(next) = ALARMS.with(|a| a.borrow().iter().map(|(at, _)| *at).min()) else {
        return false;
    };
    NOW.with(|n| n.set(n.get().max(next)));
    fire_due();
    true
}
