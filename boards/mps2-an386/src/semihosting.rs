//! End the QEMU run with an exit status, through Arm semihosting (`SYS_EXIT`).
//!
//! QEMU must run with `-semihosting-config enable=on` (qemu-run.sh does). On a real board with no
//! debugger attached, `bkpt` would fault; these images are for the emulator.

/// `ADP_Stopped_ApplicationExit`: QEMU exits with status 0.
const APPLICATION_EXIT: u32 = 0x20026;
/// `ADP_Stopped_InternalError`: QEMU exits with status 1.
const INTERNAL_ERROR: u32 = 0x20024;
const SYS_EXIT: u32 = 0x18;

/// Stop the emulator: status 0 if `success`, else 1. Does not return.
pub fn exit(success: bool) -> ! {
    let reason = if success {
        APPLICATION_EXIT
    } else {
        INTERNAL_ERROR
    };
    // SAFETY: the semihosting call takes its operation in r0 and (AArch32 SYS_EXIT) the reason
    // in r1; it touches no memory of ours.
    unsafe {
        core::arch::asm!("bkpt #0xab", in("r0") SYS_EXIT, in("r1") reason, options(nomem, nostack));
    }
    loop {
        cortex_m::asm::wfi();
    }
}
