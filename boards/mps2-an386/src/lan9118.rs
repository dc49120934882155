//! SMSC/Microchip LAN9118 Ethernet controller (MAC + PHY, 32-bit register window), as an
//! [`embassy_net_driver::Driver`].
//!
//! The LAN9118 is what QEMU emulates on the Arm MPS2 boards (`mps2-an385`/`an386` at 0x4020_0000,
//! IRQ 13; `mps2-an500` at 0xA000_0000); the LAN9218/9220/9221 are register compatible. No
//! crates.io driver exists for it. This module depends only on `embassy-net-driver` and
//! `embassy-sync`, and reaches the chip only through the [`Registers`] trait, so it can be lifted
//! into a crate of its own and is unit tested on the host against a fake register block (bottom
//! of this file).
//!
//! # Data path
//! - **Receive**: while `RX_FIFO_INF` counts a status word, pop it from `RX_STATUS`: bits 29:16
//!   are the frame length *including* the 4-byte CRC, bit 15 the error summary. Then read
//!   ⌈len/4⌉ little-endian words from `RX_DATA`, and hand smoltcp the frame without the CRC.
//!   Errored, runt and oversized frames are dropped by reading their words out (QEMU's
//!   `RX_DP_CTRL` fast-forward does not release the FIFO space in its accounting, and the chip
//!   only allows it for frames of 4 words or more, so reading is the one path that works on
//!   both).
//! - **Transmit**: when `TX_FIFO_INF[15:0]` has room for the frame and its two command words,
//!   write `TX_CMD_A` (first + last segment, length), `TX_CMD_B` (tag, length), then ⌈len/4⌉
//!   little-endian words (the last one zero-padded); then drain the TX status FIFO
//!   (`TX_FIFO_INF[23:16]`), counting errors.
//!
//! # Interrupts and wake-ups
//! The driver never spins. When it has nothing to give (`receive`) or no room to take a frame
//! (`transmit`), it registers the caller's waker in an [`AtomicWaker`] and enables the chip
//! interrupts it needs (`RSFL`: a frame is waiting; `TDFA`: transmit space; `PHY_INT`: link
//! change), with the IRQ line configured push-pull active high. The board's interrupt handler
//! calls [`on_interrupt`], which masks all chip interrupts (the line is level-triggered) and
//! wakes the registered task; the driver re-arms them the next time it finds nothing to do.
//! Ordering (clear status, re-check the FIFO, then enable) makes a frame arriving in between
//! either seen directly or raise the interrupt at once.

use core::task::Context;

use embassy_net_driver::{Capabilities, Driver, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;

/// Largest Ethernet frame handed to or taken from smoltcp (no CRC, no VLAN tag).
pub const MTU: usize = 1514;
/// Bytes of a frame buffer: the largest frame the chip may report (1518 with CRC, rounded up to
/// whole FIFO words).
pub const FRAME_BUF_LEN: usize = 1520;

/// Register offsets in the 256-byte window (LAN9118 datasheet, section 5).
pub mod reg {
    /// RX data FIFO port (any offset 0x00..0x1C reads the same FIFO).
    pub const RX_DATA_FIFO: usize = 0x00;
    /// TX data FIFO port (0x20..0x3C).
    pub const TX_DATA_FIFO: usize = 0x20;
    /// RX status FIFO port (pops).
    pub const RX_STATUS_FIFO: usize = 0x40;
    /// TX status FIFO port (pops).
    pub const TX_STATUS_FIFO: usize = 0x48;
    /// Chip ID and revision.
    pub const ID_REV: usize = 0x50;
    /// IRQ pin configuration.
    pub const IRQ_CFG: usize = 0x54;
    /// Interrupt status (write 1 to clear).
    pub const INT_STS: usize = 0x58;
    /// Interrupt enable.
    pub const INT_EN: usize = 0x5C;
    /// Endianness test: reads 0x8765_4321 when the bus is set up right.
    pub const BYTE_TEST: usize = 0x64;
    /// FIFO interrupt thresholds.
    pub const FIFO_INT: usize = 0x68;
    /// Receive configuration.
    pub const RX_CFG: usize = 0x6C;
    /// Transmit configuration.
    pub const TX_CFG: usize = 0x70;
    /// Hardware configuration (soft reset, TX FIFO size).
    pub const HW_CFG: usize = 0x74;
    /// RX datapath control (fast-forward).
    pub const RX_DP_CTRL: usize = 0x78;
    /// RX FIFO information: [23:16] status words used, [15:0] data bytes used.
    pub const RX_FIFO_INF: usize = 0x7C;
    /// TX FIFO information: [23:16] status words used, [15:0] data bytes free.
    pub const TX_FIFO_INF: usize = 0x80;
    /// Power management (bit 0: device ready).
    pub const PMT_CTRL: usize = 0x84;
    /// 25 MHz free-running counter.
    pub const FREE_RUN: usize = 0x9C;
    /// Indirect MAC register access: command.
    pub const MAC_CSR_CMD: usize = 0xA4;
    /// Indirect MAC register access: data.
    pub const MAC_CSR_DATA: usize = 0xA8;
    /// Automatic flow control configuration.
    pub const AFC_CFG: usize = 0xAC;
}

/// Indirect MAC registers, through `MAC_CSR_CMD`/`MAC_CSR_DATA`.
pub mod mac {
    /// MAC control.
    pub const MAC_CR: u32 = 1;
    /// MAC address, bytes 4..6.
    pub const ADDRH: u32 = 2;
    /// MAC address, bytes 0..4.
    pub const ADDRL: u32 = 3;
    /// MII (PHY) access.
    pub const MII_ACC: u32 = 6;
    /// MII (PHY) data.
    pub const MII_DATA: u32 = 7;
}

const BYTE_TEST_VALUE: u32 = 0x8765_4321;
const HW_CFG_SRST: u32 = 1 << 0;
/// TX FIFO size 5 KiB (the rest of the 16 KiB goes to RX), and the must-be-one bit 20.
const HW_CFG_RUN: u32 = (5 << 16) | (1 << 20);
const PMT_CTRL_READY: u32 = 1 << 0;
/// Flow-control thresholds recommended by the datasheet for a 5 KiB TX FIFO.
const AFC_CFG_VALUE: u32 = 0x006E_3740;
const TX_CFG_TX_ON: u32 = 1 << 1;
/// Full duplex, transmitter and receiver on; unicast to us + broadcast.
const MAC_CR_RUN: u32 = (1 << 20) | (1 << 3) | (1 << 2);
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CSR_READ: u32 = 1 << 30;
const MII_BUSY: u32 = 1 << 0;
const MII_WRITE: u32 = 1 << 1;
/// The internal PHY's address.
const PHY_ADDR: u32 = 1;
const PHY_BMCR: u32 = 0;
const PHY_BMSR: u32 = 1;
const PHY_INT_SRC: u32 = 29;
const PHY_INT_MASK: u32 = 30;
/// BMCR: enable and restart auto-negotiation.
const BMCR_AUTONEG: u32 = (1 << 12) | (1 << 9);
const BMSR_LINK: u32 = 1 << 2;
/// PHY interrupt sources: auto-negotiation complete, link down.
const PHY_INT_LINK: u32 = 0x40 | 0x10;

/// IRQ_CFG: line enabled, active high, push-pull.
const IRQ_CFG_RUN: u32 = (1 << 8) | (1 << 4) | (1 << 0);
/// INT_STS/INT_EN bits.
pub mod int {
    /// RX status FIFO above its level (a frame is waiting).
    pub const RSFL: u32 = 1 << 3;
    /// TX data FIFO has the space set in `FIFO_INT[31:24]`.
    pub const TDFA: u32 = 1 << 9;
    /// PHY interrupt (link change).
    pub const PHY: u32 = 1 << 18;
}
/// `FIFO_INT`: TX data available level in 64-byte units: room for one full frame.
const FIFO_INT_TX_LEVEL: u32 = (FRAME_BUF_LEN as u32 + 8).div_ceil(64) << 24;

const RX_STS_ERROR: u32 = 1 << 15;
/// Set only in receive-all mode, for frames the address filter would have dropped.
const RX_STS_FILTER_FAIL: u32 = 1 << 30;
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;
const TX_STS_ERROR: u32 = 1 << 15;

/// Polls of a self-clearing bit before giving up (each is one bus read; the datasheet's worst
/// cases are well under a millisecond).
const SPIN_LIMIT: u32 = 100_000;

/// Word access to the chip's 256-byte register window. Offsets are byte offsets (`reg::*`).
///
/// `&self`, because the window is memory-mapped I/O: the driver and the interrupt handler each
/// hold their own [`Mmio`] to the same chip.
pub trait Registers {
    /// Read the 32-bit register at `offset` (FIFO ports pop).
    fn read(&self, offset: usize) -> u32;
    /// Write the 32-bit register at `offset` (FIFO ports push).
    fn write(&self, offset: usize, value: u32);
}

/// The chip's registers, memory-mapped at a base address.
#[derive(Debug)]
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// The register window at `base`.
    ///
    /// # Safety
    /// `base` must be the address of a LAN9118 register window, and nothing else may rely on
    /// exclusive access to it.
    pub const unsafe fn new(base: usize) -> Self {
        Mmio { base }
    }
}

impl Registers for Mmio {
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: a device register inside the window.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }
}

/// Why [`Lan9118::new`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `BYTE_TEST` did not read 0x8765_4321 (this value instead): no chip, or a bus set up with
    /// the wrong width or endianness.
    NotFound(u32),
    /// The soft reset did not finish.
    ResetTimeout,
    /// The device did not report ready after reset.
    NotReady,
    /// An indirect MAC or PHY register access stayed busy.
    CsrTimeout,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::NotFound(v) => write!(f, "no LAN9118 (BYTE_TEST reads {:#010x})", v),
            Error::ResetTimeout => f.write_str("soft reset did not finish"),
            Error::NotReady => f.write_str("device not ready after reset"),
            Error::CsrTimeout => f.write_str("MAC/PHY register access timed out"),
        }
    }
}

impl core::error::Error for Error {}

/// Frame counters, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to the stack.
    pub rx_frames: u32,
    /// Frames dropped: error status, runt, too long, or filtered.
    pub rx_dropped: u32,
    /// Frames written to the TX FIFO.
    pub tx_frames: u32,
    /// TX status words with the error bit.
    pub tx_errors: u32,
    /// Frames dropped because the TX FIFO had no room when the token was used.
    pub tx_dropped: u32,
}

/// The two frame buffers (one received frame, one to transmit), as a value that fits a
/// `StaticCell`.
pub struct PacketBuffers {
    rx: [u8; FRAME_BUF_LEN],
    tx: [u8; FRAME_BUF_LEN],
}

impl PacketBuffers {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        PacketBuffers {
            rx: [0; FRAME_BUF_LEN],
            tx: [0; FRAME_BUF_LEN],
        }
    }
}

impl Default for PacketBuffers {
    fn default() -> Self {
        Self::new()
    }
}

/// A LAN9118 as an embassy-net driver.
pub struct Lan9118<'a, R: Registers> {
    regs: R,
    waker: &'a AtomicWaker,
    bufs: &'a mut PacketBuffers,
    mac: [u8; 6],
    link_up: bool,
    tag: u16,
    stats: Stats,
}

/// Wait until `done(read(offset))`, at most [`SPIN_LIMIT`] reads.
fn spin_until<R: Registers>(regs: &R, offset: usize, done: impl Fn(u32) -> bool) -> bool {
    (0..SPIN_LIMIT).any(|_| done(regs.read(offset)))
}

fn mac_read<R: Registers>(regs: &R, index: u32) -> Result<u32, Error> {
    let idle = |v| v & MAC_CSR_BUSY == 0;
    if !spin_until(regs, reg::MAC_CSR_CMD, idle) {
        return Err(Error::CsrTimeout);
    }
    regs.write(reg::MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | index);
    if !spin_until(regs, reg::MAC_CSR_CMD, idle) {
        return Err(Error::CsrTimeout);
    }
    Ok(regs.read(reg::MAC_CSR_DATA))
}

fn mac_write<R: Registers>(regs: &R, index: u32, value: u32) -> Result<(), Error> {
    let idle = |v| v & MAC_CSR_BUSY == 0;
    if !spin_until(regs, reg::MAC_CSR_CMD, idle) {
        return Err(Error::CsrTimeout);
    }
    regs.write(reg::MAC_CSR_DATA, value);
    regs.write(reg::MAC_CSR_CMD, MAC_CSR_BUSY | index);
    if spin_until(regs, reg::MAC_CSR_CMD, idle) {
        Ok(())
    } else {
        Err(Error::CsrTimeout)
    }
}

fn mii_wait<R: Registers>(regs: &R) -> Result<(), Error> {
    for _ in 0..SPIN_LIMIT {
        if mac_read(regs, mac::MII_ACC)? & MII_BUSY == 0 {
            return Ok(());
        }
    }
    Err(Error::CsrTimeout)
}

fn phy_read<R: Registers>(regs: &R, index: u32) -> Result<u32, Error> {
    mii_wait(regs)?;
    mac_write(
        regs,
        mac::MII_ACC,
        (PHY_ADDR << 11) | (index << 6) | MII_BUSY,
    )?;
    mii_wait(regs)?;
    Ok(mac_read(regs, mac::MII_DATA)? & 0xFFFF)
}

fn phy_write<R: Registers>(regs: &R, index: u32, value: u32) -> Result<(), Error> {
    mii_wait(regs)?;
    mac_write(regs, mac::MII_DATA, value)?;
    mac_write(
        regs,
        mac::MII_ACC,
        (PHY_ADDR << 11) | (index << 6) | MII_WRITE | MII_BUSY,
    )?;
    mii_wait(regs)
}

/// The frame length (CRC included) of an RX status word, or `None` if the frame must be dropped.
pub fn rx_frame_len(status: u32) -> Option<usize> {
    let len = ((status >> 16) & 0x3FFF) as usize;
    let bad = status & (RX_STS_ERROR | RX_STS_FILTER_FAIL) != 0;
    // Shortest: an Ethernet header and the CRC; longest: what the buffer holds.
    if bad || !(14 + 4..=FRAME_BUF_LEN).contains(&len) {
        None
    } else {
        Some(len)
    }
}

/// Called from the chip's interrupt handler: mask every chip interrupt (the line is level
/// triggered and would fire again at once) and wake the task that waits on the driver.
pub fn on_interrupt<R: Registers>(regs: &R, waker: &AtomicWaker) {
    regs.write(reg::INT_EN, 0);
    waker.wake();
}

impl<'a, R: Registers> Lan9118<'a, R> {
    /// Reset and start the chip.
    ///
    /// `mac`: the address to program, or `None` to keep the one the chip has (loaded from its
    /// EEPROM; QEMU's `-nic …,mac=`). `waker` must be the one the interrupt handler passes to
    /// [`on_interrupt`].
    pub fn new(
        regs: R,
        mac: Option<[u8; 6]>,
        bufs: &'a mut PacketBuffers,
        waker: &'a AtomicWaker,
    ) -> Result<Self, Error> {
        let byte_test = regs.read(reg::BYTE_TEST);
        if byte_test != BYTE_TEST_VALUE {
            return Err(Error::NotFound(byte_test));
        }
        regs.write(reg::HW_CFG, HW_CFG_SRST);
        if !spin_until(&regs, reg::HW_CFG, |v| v & HW_CFG_SRST == 0) {
            return Err(Error::ResetTimeout);
        }
        if !spin_until(&regs, reg::PMT_CTRL, |v| v & PMT_CTRL_READY != 0) {
            return Err(Error::NotReady);
        }
        regs.write(reg::HW_CFG, HW_CFG_RUN);
        regs.write(reg::AFC_CFG, AFC_CFG_VALUE);
        regs.write(reg::INT_EN, 0);
        regs.write(reg::INT_STS, u32::MAX);
        regs.write(reg::FIFO_INT, FIFO_INT_TX_LEVEL);

        let mac = match mac {
            Some(m) => {
                mac_write(
                    &regs,
                    mac::ADDRL,
                    u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
                )?;
                mac_write(&regs, mac::ADDRH, u32::from(m[4]) | u32::from(m[5]) << 8)?;
                m
            }
            None => {
                let lo = mac_read(&regs, mac::ADDRL)?.to_le_bytes();
                let hi = mac_read(&regs, mac::ADDRH)?.to_le_bytes();
                [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]]
            }
        };

        phy_write(&regs, PHY_BMCR, BMCR_AUTONEG)?;
        phy_write(&regs, PHY_INT_MASK, PHY_INT_LINK)?;
        phy_read(&regs, PHY_INT_SRC)?;
        let link_up = phy_read(&regs, PHY_BMSR)? & BMSR_LINK != 0;

        regs.write(reg::RX_CFG, 0);
        regs.write(reg::TX_CFG, TX_CFG_TX_ON);
        mac_write(&regs, mac::MAC_CR, MAC_CR_RUN)?;
        regs.write(reg::IRQ_CFG, IRQ_CFG_RUN);

        Ok(Lan9118 {
            regs,
            waker,
            bufs,
            mac,
            link_up,
            tag: 0,
            stats: Stats::default(),
        })
    }

    /// The MAC address in use.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// Frame counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Register `cx`'s waker and enable the interrupts that end the wait (`extra` for transmit).
    fn arm(&self, cx: &Context<'_>, extra: u32) {
        self.waker.register(cx.waker());
        let en = self.regs.read(reg::INT_EN);
        self.regs
            .write(reg::INT_EN, en | int::RSFL | int::PHY | extra);
    }

    fn rx_pending(&self) -> bool {
        (self.regs.read(reg::RX_FIFO_INF) >> 16) & 0xFF != 0
    }

    fn tx_room(&self) -> bool {
        let free = (self.regs.read(reg::TX_FIFO_INF) & 0xFFFF) as usize;
        free >= FRAME_BUF_LEN + 8
    }

    /// Pop frames until one is good; returns its length without CRC, in `bufs.rx`.
    fn pop_frame(&mut self) -> Option<usize> {
        while self.rx_pending() {
            let status = self.regs.read(reg::RX_STATUS_FIFO);
            let reported = ((status >> 16) & 0x3FFF) as usize;
            match rx_frame_len(status) {
                Some(len) => {
                    for chunk in self.bufs.rx[..len.div_ceil(4) * 4].chunks_exact_mut(4) {
                        chunk.copy_from_slice(&self.regs.read(reg::RX_DATA_FIFO).to_le_bytes());
                    }
                    self.stats.rx_frames += 1;
                    return Some(len - 4);
                }
                None => {
                    // Drain the frame's words (at most what the chip can hold for one frame).
                    for _ in 0..reported.min(2048).div_ceil(4) {
                        self.regs.read(reg::RX_DATA_FIFO);
                    }
                    self.stats.rx_dropped += 1;
                }
            }
        }
        None
    }
}

impl<R: Registers> Driver for Lan9118<'_, R> {
    type RxToken<'b>
        = RxToken<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = TxToken<'b, R>
    where
        Self: 'b;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(RxToken<'_>, TxToken<'_, R>)> {
        let len = match self.pop_frame() {
            Some(len) => len,
            None => {
                // Clear the sticky level flag, look once more, then let the chip interrupt:
                // a frame landing in between is either popped here or raises RSFL at once.
                self.regs.write(reg::INT_STS, int::RSFL);
                match self.pop_frame() {
                    Some(len) => len,
                    None => {
                        self.arm(cx, 0);
                        return None;
                    }
                }
            }
        };
        let PacketBuffers { rx, tx } = &mut *self.bufs;
        Some((
            RxToken {
                buf: &mut rx[..len],
            },
            TxToken {
                regs: &self.regs,
                buf: tx,
                tag: &mut self.tag,
                stats: &mut self.stats,
            },
        ))
    }

    fn transmit(&mut self, cx: &mut Context<'_>) -> Option<TxToken<'_, R>> {
        if !self.tx_room() {
            self.regs.write(reg::INT_STS, int::TDFA);
            if !self.tx_room() {
                self.arm(cx, int::TDFA);
                return None;
            }
        }
        Some(TxToken {
            regs: &self.regs,
            buf: &mut self.bufs.tx,
            tag: &mut self.tag,
            stats: &mut self.stats,
        })
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
        // The PHY is read only when it said something changed; `arm` keeps PHY_INT enabled.
        if self.regs.read(reg::INT_STS) & int::PHY != 0 {
            let up = phy_read(&self.regs, PHY_INT_SRC)
                .and_then(|_| phy_read(&self.regs, PHY_BMSR))
                .map(|bmsr| bmsr & BMSR_LINK != 0);
            self.regs.write(reg::INT_STS, int::PHY);
            if let Ok(up) = up {
                self.link_up = up;
            }
        }
        if self.link_up {
            LinkState::Up
        } else {
            LinkState::Down
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}

/// A received frame (CRC stripped).
pub struct RxToken<'a> {
    buf: &'a mut [u8],
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<T, F>(self, f: F) -> T
    where
        F: FnOnce(&mut [u8]) -> T,
    {
        f(self.buf)
    }
}

/// Room for one frame to transmit.
pub struct TxToken<'a, R: Registers> {
    regs: &'a R,
    buf: &'a mut [u8; FRAME_BUF_LEN],
    tag: &'a mut u16,
    stats: &'a mut Stats,
}

impl<R: Registers> TxToken<'_, R> {
    /// Push the first `len` bytes of the buffer into the TX FIFO. Out of line: smoltcp fills frames
    /// from several places, and each gets its own copy of `consume`.
    #[inline(never)]
    fn send(self, len: usize) {
        let words = len.div_ceil(4);
        // Room was checked when the token was made; a token from `receive` may find the FIFO
        // full, and then the frame is dropped (TCP retransmits) rather than blocking here.
        let free = (self.regs.read(reg::TX_FIFO_INF) & 0xFFFF) as usize;
        if free < words * 4 + 8 {
            self.stats.tx_dropped += 1;
            return;
        }
        *self.tag = self.tag.wrapping_add(1);
        let len32 = len as u32;
        self.regs
            .write(reg::TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len32);
        self.regs
            .write(reg::TX_DATA_FIFO, u32::from(*self.tag) << 16 | len32);
        for chunk in self.buf[..words * 4].chunks_exact(4) {
            let word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            self.regs.write(reg::TX_DATA_FIFO, word);
        }
        self.stats.tx_frames += 1;

        // Drain TX status so the status FIFO never fills (which would stop the transmitter).
        while (self.regs.read(reg::TX_FIFO_INF) >> 16) & 0xFF != 0 {
            if self.regs.read(reg::TX_STATUS_FIFO) & TX_STS_ERROR != 0 {
                self.stats.tx_errors += 1;
            }
        }
    }
}

impl<R: Registers> embassy_net_driver::TxToken for TxToken<'_, R> {
    fn consume<T, F>(self, len: usize, f: F) -> T
    where
        F: FnOnce(&mut [u8]) -> T,
    {
        let len = len.min(MTU);
        // Zero the pad bytes of the last word: they go on the bus (and into tests) as written.
        self.buf[len..len.div_ceil(4) * 4].fill(0);
        let result = f(&mut self.buf[..len]);
        self.send(len);
        result
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};
    use std::vec::Vec;

    use embassy_net_driver::{RxToken as _, TxToken as _};

    use super::*;

    /// A LAN9118 register block in memory: FIFOs, indirect MAC/PHY registers, and a log of every
    /// register write.
    struct Fake {
        s: RefCell<State>,
    }

    #[derive(Default)]
    struct State {
        byte_test: u32,
        /// Reads of HW_CFG before SRST clears (`u32::MAX`: never).
        reset_reads: u32,
        hw_cfg: u32,
        int_sts: u32,
        int_en: u32,
        mac_cmd: u32,
        mac_data: u32,
        mac_regs: [u32; 16],
        phy_regs: [u32; 32],
        /// RX: (status, data words) per frame.
        rx: VecDeque<(u32, Vec<u32>)>,
        rx_words: VecDeque<u32>,
        rx_underflow: u32,
        tx_free: u32,
        tx_fifo: Vec<u32>,
        tx_status: VecDeque<u32>,
        writes: Vec<(usize, u32)>,
        mac_writes: Vec<(u32, u32)>,
    }

    impl Fake {
        fn new() -> Self {
            let mut s = State {
                byte_test: BYTE_TEST_VALUE,
                reset_reads: 2,
                tx_free: 4608,
                ..State::default()
            };
            s.mac_regs[mac::ADDRL as usize] = 0x00AA_5452; // 52:54:AA:00
            s.mac_regs[mac::ADDRH as usize] = 0x0000_0201; // 01:02
            s.phy_regs[PHY_BMSR as usize] = 0x782D;
            Fake { s: RefCell::new(s) }
        }

        /// Queue a frame as the chip would: status word, data plus CRC in LE words.
        fn push_rx(&self, frame: &[u8], status_bits: u32) {
            let mut bytes = frame.to_vec();
            bytes.extend_from_slice(&[0xC1, 0xC2, 0xC3, 0xC4]);
            let words = bytes
                .chunks(4)
                .map(|c| {
                    let mut w = [0u8; 4];
                    w[..c.len()].copy_from_slice(c);
                    u32::from_le_bytes(w)
                })
                .collect();
            let status = ((bytes.len() as u32) << 16) | status_bits;
            self.s.borrow_mut().rx.push_back((status, words));
        }
    }

    impl Registers for &Fake {
        fn read(&self, offset: usize) -> u32 {
            let mut s = self.s.borrow_mut();
            match offset {
                0x00..=0x1C => s.rx_words.pop_front().unwrap_or_else(|| {
                    s.rx_underflow += 1;
                    0
                }),
                reg::RX_STATUS_FIFO => match s.rx.pop_front() {
                    Some((status, words)) => {
                        s.rx_words.extend(words);
                        status
                    }
                    None => 0,
                },
                reg::TX_STATUS_FIFO => s.tx_status.pop_front().unwrap_or(0),
                reg::BYTE_TEST => s.byte_test,
                reg::HW_CFG => {
                    if s.hw_cfg & HW_CFG_SRST != 0 {
                        if s.reset_reads == 0 {
                            s.hw_cfg &= !HW_CFG_SRST;
                        } else if s.reset_reads != u32::MAX {
                            s.reset_reads -= 1;
                        }
                    }
                    s.hw_cfg
                }
                reg::PMT_CTRL => PMT_CTRL_READY,
                reg::INT_STS => s.int_sts,
                reg::INT_EN => s.int_en,
                reg::RX_FIFO_INF => (s.rx.len() as u32) << 16 | (s.rx_words.len() as u32 * 4),
                reg::TX_FIFO_INF => (s.tx_status.len() as u32) << 16 | s.tx_free,
                reg::MAC_CSR_CMD => s.mac_cmd,
                reg::MAC_CSR_DATA => s.mac_data,
                _ => 0,
            }
        }

        fn write(&self, offset: usize, value: u32) {
            let mut s = self.s.borrow_mut();
            s.writes.push((offset, value));
            match offset {
                reg::TX_DATA_FIFO => {
                    s.tx_fifo.push(value);
                    // A complete frame (cmd A, cmd B, data) yields a status word.
                    let cmd_a = s.tx_fifo[0];
                    let words = (cmd_a & 0x7FF).div_ceil(4) as usize;
                    if s.tx_fifo.len() == 2 + words {
                        let tag = s.tx_fifo[1] & 0xFFFF_0000;
                        s.tx_status.push_back(tag);
                    }
                }
                reg::HW_CFG => s.hw_cfg = value,
                reg::INT_STS => s.int_sts &= !value,
                reg::INT_EN => s.int_en = value,
                reg::MAC_CSR_DATA => s.mac_data = value,
                reg::MAC_CSR_CMD => {
                    let index = value & 0xF;
                    if value & MAC_CSR_READ != 0 {
                        s.mac_data = s.mac_regs[index as usize];
                    } else {
                        let data = s.mac_data;
                        s.mac_writes.push((index, data));
                        s.mac_regs[index as usize] = data;
                        if index == mac::MII_ACC {
                            let phy = ((data >> 6) & 0x1F) as usize;
                            if data & MII_WRITE != 0 {
                                s.phy_regs[phy] = s.mac_regs[mac::MII_DATA as usize];
                            } else {
                                s.mac_regs[mac::MII_DATA as usize] = s.phy_regs[phy];
                            }
                            s.mac_regs[mac::MII_ACC as usize] &= !MII_BUSY;
                        }
                    }
                    s.mac_cmd = value & !MAC_CSR_BUSY;
                }
                _ => {}
            }
        }
    }

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountingWaker>, Waker) {
        let w = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (w.clone(), Waker::from(w))
    }

    fn driver<'a>(
        fake: &'a Fake,
        bufs: &'a mut PacketBuffers,
        aw: &'a AtomicWaker,
    ) -> Lan9118<'a, &'a Fake> {
        let d = Lan9118::new(fake, None, bufs, aw).expect("init");
        fake.s.borrow_mut().writes.clear();
        d
    }

    #[test]
    fn init_sequence() {
        let fake = Fake::new();
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        Lan9118::new(&fake, None, &mut bufs, &aw).unwrap();
        let s = fake.s.borrow();
        // Direct register writes, in order (MAC CSR traffic filtered out).
        let direct: Vec<(usize, u32)> = s
            .writes
            .iter()
            .copied()
            .filter(|(o, _)| *o != reg::MAC_CSR_CMD && *o != reg::MAC_CSR_DATA)
            .collect();
        assert_eq!(
            direct,
            [
                (reg::HW_CFG, 1),
                (reg::HW_CFG, 5 << 16 | 1 << 20),
                (reg::AFC_CFG, 0x006E_3740),
                (reg::INT_EN, 0),
                (reg::INT_STS, u32::MAX),
                (reg::FIFO_INT, 24 << 24),
                (reg::RX_CFG, 0),
                (reg::TX_CFG, 2),
                (reg::IRQ_CFG, 0x111),
            ]
        );
        // MAC_CR is the last indirect write, after RX/TX configuration.
        assert_eq!(s.mac_writes.last(), Some(&(mac::MAC_CR, 0x0010_000C)));
        // Auto-negotiation restarted and link interrupts unmasked on the PHY.
        assert_eq!(s.phy_regs[PHY_BMCR as usize], 0x1200);
        assert_eq!(s.phy_regs[PHY_INT_MASK as usize], 0x50);
    }

    #[test]
    fn init_rejects_missing_chip_and_stuck_reset() {
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let fake = Fake::new();
        fake.s.borrow_mut().byte_test = 0x4321_8765;
        assert_eq!(
            Lan9118::new(&fake, None, &mut bufs, &aw).err(),
            Some(Error::NotFound(0x4321_8765))
        );
        let fake = Fake::new();
        fake.s.borrow_mut().reset_reads = u32::MAX;
        assert_eq!(
            Lan9118::new(&fake, None, &mut bufs, &aw).err(),
            Some(Error::ResetTimeout)
        );
    }

    #[test]
    fn mac_read_back_and_programmed() {
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let fake = Fake::new();
        {
            let d = Lan9118::new(&fake, None, &mut bufs, &aw).unwrap();
            assert_eq!(d.mac_address(), [0x52, 0x54, 0xAA, 0x00, 0x01, 0x02]);
            assert_eq!(
                d.hardware_address(),
                HardwareAddress::Ethernet([0x52, 0x54, 0xAA, 0x00, 0x01, 0x02])
            );
        }

        let fake = Fake::new();
        let mac = [0x02, 0x00, 0x00, 0x12, 0x34, 0x56];
        let d = Lan9118::new(&fake, Some(mac), &mut bufs, &aw).unwrap();
        assert_eq!(d.mac_address(), mac);
        let s = fake.s.borrow();
        assert_eq!(s.mac_regs[mac::ADDRL as usize], 0x1200_0002);
        assert_eq!(s.mac_regs[mac::ADDRH as usize], 0x0000_5634);
    }

    #[test]
    fn tx_command_words_and_odd_lengths() {
        let fake = Fake::new();
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let mut d = driver(&fake, &mut bufs, &aw);
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        for (i, len) in [60usize, 61, 62, 63, 64, 1514].into_iter().enumerate() {
            fake.s.borrow_mut().tx_fifo.clear();
            let frame: Vec<u8> = (0..len).map(|b| b as u8 ^ 0x5A).collect();
            let token = d.transmit(&mut cx).expect("room");
            token.consume(len, |buf| buf.copy_from_slice(&frame));
            let s = fake.s.borrow();
            let tag = i as u32 + 1;
            assert_eq!(
                s.tx_fifo[0],
                1 << 13 | 1 << 12 | len as u32,
                "cmd A, len {len}"
            );
            assert_eq!(s.tx_fifo[1], tag << 16 | len as u32, "cmd B, len {len}");
            assert_eq!(
                s.tx_fifo.len(),
                2 + len.div_ceil(4),
                "word count, len {len}"
            );
            let mut bytes: Vec<u8> = s.tx_fifo[2..]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            assert!(bytes[len..].iter().all(|&b| b == 0), "padding, len {len}");
            bytes.truncate(len);
            assert_eq!(bytes, frame);
            // The status word was drained.
            assert!(s.tx_status.is_empty());
        }
        assert_eq!(d.stats().tx_frames, 6);
    }

    #[test]
    fn tx_status_errors_counted() {
        let fake = Fake::new();
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let mut d = driver(&fake, &mut bufs, &aw);
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        fake.s.borrow_mut().tx_status.push_back(TX_STS_ERROR);
        d.transmit(&mut cx).unwrap().consume(60, |b| b.fill(1));
        assert_eq!(d.stats().tx_errors, 1);
        assert_eq!(fake.s.borrow().tx_status.len(), 0);
    }

    #[test]
    fn tx_fifo_full_waits_for_interrupt() {
        let fake = Fake::new();
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let mut d = driver(&fake, &mut bufs, &aw);
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        fake.s.borrow_mut().tx_free = 1000;
        assert!(d.transmit(&mut cx).is_none());
        assert_ne!(fake.s.borrow().int_en & int::TDFA, 0, "TDFA armed");
        assert!(fake.s.borrow().tx_fifo.is_empty());

        // The interrupt masks the chip and wakes the runner.
        on_interrupt(&&fake, &aw);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(fake.s.borrow().int_en, 0);

        fake.s.borrow_mut().tx_free = 4608;
        assert!(d.transmit(&mut cx).is_some());
    }

    #[test]
    fn tx_token_from_receive_drops_when_full() {
        let fake = Fake::new();
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let mut d = driver(&fake, &mut bufs, &aw);
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        fake.push_rx(&[0xEE; 60], 0);
        fake.s.borrow_mut().tx_free = 16;
        let (_rx, tx) = d.receive(&mut cx).unwrap();
        tx.consume(60, |b| b.fill(0));
        assert!(fake.s.borrow().tx_fifo.is_empty());
        assert_eq!(d.stats().tx_dropped, 1);
    }

    #[test]
    fn rx_strips_crc_for_every_alignment() {
        let fake = Fake::new();
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let mut d = driver(&fake, &mut bufs, &aw);
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        for len in [60usize, 61, 62, 63, 1514] {
            let frame: Vec<u8> = (0..len).map(|b| (b * 7) as u8).collect();
            fake.push_rx(&frame, 0);
            let (rx, _tx) = d.receive(&mut cx).expect("frame");
            let got = rx.consume(|buf| buf.to_vec());
            assert_eq!(got, frame, "len {len}");
            // Exactly the frame's words were read: nothing left, no underflow.
            let s = fake.s.borrow();
            assert!(s.rx_words.is_empty(), "len {len}");
            assert_eq!(s.rx_underflow, 0);
        }
        assert_eq!(d.stats().rx_frames, 5);
    }

    #[test]
    fn rx_drops_errored_and_malformed_frames() {
        let fake = Fake::new();
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let mut d = driver(&fake, &mut bufs, &aw);
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        fake.push_rx(&[1; 64], RX_STS_ERROR); // CRC/length error summary
        fake.push_rx(&[2; 64], RX_STS_FILTER_FAIL);
        fake.push_rx(&[3; 10], 0); // runt: shorter than a header
        fake.push_rx(&[4; 61], 0); // the good one
        let (rx, _tx) = d.receive(&mut cx).expect("good frame after the bad ones");
        assert_eq!(rx.consume(|b| b.to_vec()), [4; 61]);
        let s = fake.s.borrow();
        assert!(s.rx_words.is_empty());
        assert_eq!(s.rx_underflow, 0, "dropped frames drained exactly");
        drop(s);
        assert_eq!(d.stats().rx_dropped, 3);
    }

    #[test]
    fn rx_status_parsing() {
        assert_eq!(rx_frame_len(64 << 16), Some(64));
        assert_eq!(rx_frame_len(1518 << 16), Some(1518));
        assert_eq!(rx_frame_len(1522 << 16), None, "longer than the buffer");
        assert_eq!(rx_frame_len(17 << 16), None, "no room for header + CRC");
        assert_eq!(rx_frame_len(64 << 16 | 1 << 15), None);
        // Broadcast/multicast flags are not errors.
        assert_eq!(rx_frame_len(64 << 16 | 1 << 13 | 1 << 10), Some(64));
    }

    #[test]
    fn rx_empty_arms_interrupt_and_wakes_on_it() {
        let fake = Fake::new();
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let mut d = driver(&fake, &mut bufs, &aw);
        let (count, w) = waker();
        let mut cx = Context::from_waker(&w);
        fake.s.borrow_mut().int_sts = int::RSFL;
        assert!(d.receive(&mut cx).is_none());
        {
            let s = fake.s.borrow();
            assert_eq!(s.int_sts & int::RSFL, 0, "stale level flag cleared");
            assert_eq!(s.int_en & (int::RSFL | int::PHY), int::RSFL | int::PHY);
            // Cleared before enabled: a frame in between cannot be missed.
            let clear = s
                .writes
                .iter()
                .position(|w| *w == (reg::INT_STS, int::RSFL));
            let enable = s.writes.iter().position(|w| w.0 == reg::INT_EN);
            assert!(clear < enable);
        }
        on_interrupt(&&fake, &aw);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(fake.s.borrow().int_en, 0);
        // Nothing queued, no wake-ups and no reads of the data FIFO.
        assert_eq!(fake.s.borrow().rx_underflow, 0);
    }

    #[test]
    fn link_state_follows_phy_interrupt() {
        let fake = Fake::new();
        let (mut bufs, aw) = (PacketBuffers::new(), AtomicWaker::new());
        let mut d = driver(&fake, &mut bufs, &aw);
        let (_, w) = waker();
        let mut cx = Context::from_waker(&w);
        assert!(d.link_state(&mut cx) == LinkState::Up);
        // The PHY goes down, but the driver reads it only when PHY_INT says so.
        fake.s.borrow_mut().phy_regs[PHY_BMSR as usize] = 0x7809;
        assert!(d.link_state(&mut cx) == LinkState::Up);
        fake.s.borrow_mut().int_sts |= int::PHY;
        assert!(d.link_state(&mut cx) == LinkState::Down);
        assert_eq!(fake.s.borrow().int_sts & int::PHY, 0);
    }
}
