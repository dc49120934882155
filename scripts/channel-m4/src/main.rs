//! A Cortex-M4 image (QEMU mps2-an386) that exercises p2psc's secure channel, for two figures:
//!
//! - flash: the image with feature `channel` minus the image without features (the same start-up
//!   code and panic handler); `hkdf-sha256` and `hkdf-sha512` build the key schedule's HKDF alone.
//! - instructions per byte: with `channel`, the image seals `P2PSC_M4_BYTES` bytes (compile-time,
//!   default 0) in records of the maximum size and opens them again, then ends QEMU through
//!   semihosting; the difference of two instruction counts over the difference of the byte counts
//!   is the per-byte cost of sealing plus opening.
//!
//! `scripts/channel-m4.sh` builds, runs and reports all of it.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::panic::PanicInfo;

use cortex_m_rt::entry;

#[entry]
fn main() -> ! {
    exit(black_box(work()))
}

#[cfg(feature = "channel")]
fn work() -> bool {
    use p2psc::proto::channel::{ChannelKeys, Opener, Sealer, MAX_PLAINTEXT_LEN, MAX_RECORD_LEN};
    use p2psc::proto::SessionKey;
    use p2psc::wire::Role;

    const BYTES: usize = parse(option_env!("P2PSC_M4_BYTES"));
    let session = black_box(SessionKey([0x5a; 32]));
    let mut sealer = Sealer::new(ChannelKeys::derive(&session, Role::Leader).send);
    let mut rx = [0u8; MAX_RECORD_LEN];
    let mut opener = Opener::new(
        ChannelKeys::derive(&session, Role::Follower).receive,
        &mut rx,
    );
    let mut record = [0u8; MAX_RECORD_LEN];
    let chunk = [0xa5u8; MAX_PLAINTEXT_LEN];
    let mut left = BYTES;
    let mut ok = true;
    while left > 0 {
        let take = left.min(MAX_PLAINTEXT_LEN);
        let sealed = match sealer.seal(black_box(&chunk[..take]), &mut record) {
            Ok(sealed) => sealed,
            Err(_) => return false,
        };
        ok &= opener.feed(&record[..sealed.len]) == Ok(sealed.len);
        ok &= opener.plaintext() == &chunk[..take];
        opener.consume(take);
        left -= take;
    }
    let end = sealer.seal_end(&mut record).unwrap_or(0);
    ok &= opener.feed(&record[..end]) == Ok(end) && opener.finish().is_ok();
    ok
}

#[cfg(all(
    not(feature = "channel"),
    any(feature = "hkdf-sha256", feature = "hkdf-sha512")
))]
fn work() -> bool {
    #[cfg(feature = "hkdf-sha256")]
    type Hash = sha2::Sha256;
    #[cfg(not(feature = "hkdf-sha256"))]
    type Hash = sha2::Sha512;
    let ikm = black_box([0x5au8; 32]);
    let hkdf = hkdf::Hkdf::<Hash>::new(None, &ikm);
    let mut key = [0u8; 32];
    let ok = hkdf
        .expand(black_box(b"p2psc/1 channel leader-to-follower\0"), &mut key)
        .is_ok();
    black_box(key);
    ok
}

/// The baseline: start-up, exit and panic handler only.
#[cfg(not(any(feature = "channel", feature = "hkdf-sha256", feature = "hkdf-sha512")))]
fn work() -> bool {
    true
}

/// A decimal number from a build-time variable (0 when unset).
#[allow(dead_code)]
const fn parse(value: Option<&str>) -> usize {
    let bytes = match value {
        Some(v) => v.as_bytes(),
        None => return 0,
    };
    let mut n = 0;
    let mut i = 0;
    while i < bytes.len() {
        n = n * 10 + (bytes[i] - b'0') as usize;
        i += 1;
    }
    n
}

/// End QEMU through semihosting (`SYS_EXIT`): status 0 if `success`, else 1.
fn exit(success: bool) -> ! {
    // ADP_Stopped_ApplicationExit / ADP_Stopped_InternalError.
    let reason: u32 = if success { 0x20026 } else { 0x20024 };
    // SAFETY: the semihosting call takes its operation (0x18, SYS_EXIT) in r0 and the reason in r1;
    // it touches no memory of ours.
    unsafe {
        core::arch::asm!("bkpt #0xab", in("r0") 0x18u32, in("r1") reason, options(nomem, nostack));
    }
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    exit(false)
}
