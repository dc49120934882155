//! Console on CMSDK UART0 (transmit only, polled), and the `println!`/`print!` macros.
//!
//! QEMU connects UART0 to its `-serial` (stdio with `-nographic`). It does not transmit with
//! `BAUDDIV` < 16; 217 is 115200 baud at 25 MHz, as on the real FPGA board.

use core::fmt;

const BASE: usize = 0x4000_4000;
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const CTRL_TX_EN: u32 = 1 << 0;

fn write_reg(offset: usize, value: u32) {
    // SAFETY: CMSDK UART0 registers on the MPS2 memory map.
    unsafe { core::ptr::write_volatile((BASE + offset) as *mut u32, value) }
}

fn read_reg(offset: usize) -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile((BASE + offset) as *const u32) }
}

/// Enable the transmitter at 115200 baud.
pub fn init() {
    write_reg(BAUDDIV, 217);
    write_reg(CTRL, CTRL_TX_EN);
}

/// Send bytes, waiting while the transmit buffer is full.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        while read_reg(STATE) & STATE_TX_FULL != 0 {}
        write_reg(DATA, u32::from(b));
    }
}

/// [`fmt::Write`] onto the UART; `\n` becomes `\r\n` for terminals in raw mode.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if b == b'\n' {
                write_bytes(b"\r");
            }
            write_bytes(&[b]);
        }
        Ok(())
    }
}

/// Print `args`, then a line break if `newline`. One out-of-line call per `print!`/`println!`: the
/// firmware has some fifty of them.
#[doc(hidden)]
#[inline(never)]
pub fn _print(args: fmt::Arguments<'_>, newline: bool) {
    // Lines from an interrupt handler (the panic handler) must not interleave with thread mode.
    critical_section::with(|_| {
        let _ = fmt::Write::write_fmt(&mut Console, args);
        if newline {
            write_bytes(b"\r\n");
        }
    });
}

/// Print to the UART console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::uart::_print(format_args!($($arg)*), false) };
}

/// Print a line to the UART console.
#[macro_export]
macro_rules! println {
    () => { $crate::uart::_print(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::uart::_print(format_args!($($arg)*), true) };
}

/// A `log` backend on the UART (feature `log`): p2psc's and the stack's own lines.
#[cfg(feature = "log")]
pub mod logger {
    struct UartLogger;

    impl log::Log for UartLogger {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }

        fn log(&self, record: &log::Record<'_>) {
            crate::println!("[{} {}] {}", record.level(), record.target(), record.args());
        }

        fn flush(&self) {}
    }

    static LOGGER: UartLogger = UartLogger;

    /// Install the logger at `level`.
    pub fn init(level: log::LevelFilter) {
        // SAFETY: called once, before any other task runs.
        unsafe {
            let _ = log::set_logger_racy(&LOGGER);
            log::set_max_level_racy(level);
        }
    }
}
