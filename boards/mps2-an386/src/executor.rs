//! A thread-mode embassy executor that sleeps with `wfi`.
//!
//! embassy-executor's own Cortex-M thread executor (feature `executor-thread`) idles with `wfe`/`sev`.
//! QEMU implements `wfe` as a no-op yield, so that executor spins a host core at 100 % for as long as
//! the firmware idles (FACTS: ~80 % vs ~5 % with `wfi`); on a 2-core CI that slows everything else.
//! This one is the same `raw::Executor` with a pender that sets a flag, and a loop that checks the
//! flag with interrupts masked and then `wfi`s, which wakes on any pending interrupt even while
//! masked. A wake-up from an interrupt (SysTick alarm, Ethernet) or from another task is never lost.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{raw, Spawner};

/// Set by the pender (a task was woken), cleared by the executor before it polls.
static PENDING: AtomicBool = AtomicBool::new(true);

#[unsafe(export_name = "__pender")]
fn pender(_context: *mut ()) {
    PENDING.store(true, Ordering::Release);
}

/// The executor; put it in a `StaticCell` and [`Executor::run`] it from `main`.
pub struct Executor {
    inner: raw::Executor,
    not_send: PhantomData<*mut ()>,
}

impl Executor {
    /// A new executor.
    pub fn new() -> Self {
        Executor {
            inner: raw::Executor::new(core::ptr::null_mut()),
            not_send: PhantomData,
        }
    }

    /// Spawn the first tasks with `init`, then run forever, sleeping whenever no task is ready.
    pub fn run(&'static mut self, init: impl FnOnce(Spawner)) -> ! {
        init(self.inner.spawner());
        loop {
            if PENDING.swap(false, Ordering::Acquire) {
                // SAFETY: `poll` is called from this one thread, never re-entered.
                unsafe { self.inner.poll() };
                continue;
            }
            cortex_m::interrupt::disable();
            if !PENDING.load(Ordering::Acquire) {
                cortex_m::asm::wfi();
            }
            // SAFETY: re-enables the interrupts masked just above; the pending one runs now.
            unsafe { cortex_m::interrupt::enable() };
        }
    }
}

impl Default for Executor {
    fn default() -> Self {
        Self::new()
    }
}
