#!/usr/bin/env bash
# Cargo runner: boot an ELF on QEMU's mps2-an386 (Cortex-M4). The UART is the console; semihosting lets
# the firmware end QEMU with an exit status.
#
#   P2PSC_TAP=tap0          attach the LAN9118 to this existing TAP device (else the NIC has no link
#                           partner: frames go nowhere)
#   P2PSC_MAC=52:54:..      its MAC address (default 52:54:00:12:34:02)
#   P2PSC_QEMU_TIMEOUT=90   kill QEMU after this many seconds (exit 124) if the firmware hangs
set -euo pipefail
elf=${1:?usage: qemu-run.sh FIRMWARE.elf}
nic=(-nic none)
if [ -n "${P2PSC_TAP:-}" ]; then
    nic=(-nic "tap,ifname=${P2PSC_TAP},script=no,downscript=no,model=lan9118,mac=${P2PSC_MAC:-52:54:00:12:34:02}")
fi
exec timeout --foreground -k 5 "${P2PSC_QEMU_TIMEOUT:-180}" \
    qemu-system-arm -M mps2-an386 -nographic -monitor none -serial stdio \
        -semihosting-config enable=on,target=native \
        "${nic[@]}" -kernel "$elf"
