//! Boot entropy — **NOT SECURE: this emulated board has no hardware random number generator.**
//!
//! p2psc needs 32 fresh, secret bytes per connection (registration nonce, ephemeral X25519 key, local
//! port, retry jitter) and the stack needs a seed for TCP initial sequence numbers. Here they are
//! SHA-512 of a build-time secret (`P2PSC_ENTROPY_SECRET`) and timing jitter: the LAN9118's 25 MHz
//! free-running counter (QEMU derives it from host time, so it differs per boot) and SysTick's phase,
//! sampled around busy loops. That is enough to make two boots differ in the emulator; it is not
//! enough against an attacker who can observe or replay the boot. **A real board must take these
//! bytes from its TRNG** (STM32 `RNG`, RP2040 `ROSC` + conditioning, a secure element).

use crate::lan9118::{reg, Mmio, Registers};

/// 32 bytes for `label` (e.g. `b"connect"`, `b"stack"`), from the build secret and boot timing.
pub fn seed(label: &[u8]) -> [u8; 32] {
    // SAFETY: the LAN9118 window on this board; FREE_RUN is a read-only counter.
    let nic = unsafe { Mmio::new(crate::board::LAN9118_BASE) };
    let mut h = salty::Sha512::new();
    h.update(b"p2psc mps2-an386 boot entropy (no TRNG)\0");
    h.update(&crate::config::ENTROPY_SECRET);
    h.update(label);
    h.update(&embassy_time::Instant::now().as_ticks().to_le_bytes());
    let mut spin = 0u32;
    for _ in 0..32 {
        let sample = nic.read(reg::FREE_RUN) ^ crate::time::systick_phase().rotate_left(16);
        h.update(&sample.to_le_bytes());
        // Loop length depends on the last sample, so consecutive samples drift apart.
        for _ in 0..(64 + (sample & 0xFF)) {
            spin = spin.wrapping_add(1);
            core::hint::black_box(spin);
        }
    }
    let digest = h.finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest[..32]);
    out
}
