#!/usr/bin/env bash
# Board firmware checks (called by scripts/test.sh):
#   1. formatting and clippy of boards/mps2-an386; host unit tests of its LAN9118 driver and of the shared
#      build-time configuration parser (boards/common/buildcfg.rs);
#   2. release builds of every board (mps2-an386, nucleo-f767zi, rp2040-w5500, pico-w, esp32c3; with and without defmt), the
#      size table and the mps2-an386 budgets: 72 KiB flash / 24 KiB static RAM, and 80 KiB / 24 KiB for its
#      relay build (scripts/size-report.sh --check);
#   3. the mps2-an386 firmware boots in QEMU with no network and ends cleanly with the typed error
#      (MediatorUnreachable) and QEMU exit status 1, in well under a minute;
#   4. scripts/board-e2e.sh: the firmware punches through two Linux NATs to `host-sim tap peer` (smoltcp),
#      then to the `p2psc` tool on a Linux host's kernel sockets (--peer kernel; the second run reuses the
#      first one's builds), then relayed: the firmware's relay build behind two fully-random NATs, to the
#      tool (2 runs, the probe sends the pair to the relay) and to `host-sim tap peer` (1 run, the mediator
#      without its probe endpoint: the relay after the punch fails), every run connected through the
#      mediator's relay, path relayed, echo ok (root; skipped otherwise unless P2PSC_REQUIRE_TAP=1). The
#      mediator is the workspace's, or the binary P2PSC_MEDIATOR_BIN names.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
step() { printf '\n=== boards: %s\n' "$*"; }
unset CARGO_TARGET_DIR # each board has its own target dir
host=$(rustc -vV | sed -n 's/^host: //p')
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf >/dev/null

step "mps2-an386: fmt, clippy, host tests"
for b in mps2-an386 nucleo-f767zi rp2040-w5500 pico-w esp32c3; do
    (cd "boards/$b" && cargo fmt -- --check)
done
# The Wi-Fi boards' own code (pico-w's CI build links an NVRAM placeholder: boards/pico-w/README.md).
(cd boards/pico-w && cargo clippy -q --release --features ci-build-only -- -D warnings)
(cd boards/esp32c3 && cargo clippy -q --release -- -D warnings)
(cd boards/mps2-an386 && cargo clippy -q --release -- -D warnings)
(cd boards/mps2-an386 && cargo clippy -q --release --features relay -- -D warnings)
(cd boards/mps2-an386 && cargo clippy -q --lib --tests --target "$host" -- -D warnings)
(cd boards/mps2-an386 && cargo test --lib --target "$host")

step "builds, sizes and the flash/RAM budget"
scripts/size-report.sh --check

step "mps2-an386 in QEMU without a network"
if command -v qemu-system-arm >/dev/null; then
    firmware=boards/mps2-an386/target/thumbv7em-none-eabihf/release/punch
    log=$(mktemp)
    rc=0
    P2PSC_QEMU_TIMEOUT=60 boards/mps2-an386/qemu-run.sh "$firmware" >"$log" 2>&1 </dev/null || rc=$?
    tr -d '\r' <"$log" | sed 's/^/    /'
    if [ "$rc" = 1 ] && grep -q '^p2psc: failed: mediator unreachable' "$log"; then
        echo "ok: QEMU boot without network ends with MediatorUnreachable, exit 1"
    else
        echo "QEMU boot without network: expected exit 1 and 'p2psc: failed: mediator unreachable', got exit $rc" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
elif [ "${P2PSC_REQUIRE_TAP:-0}" = 1 ]; then
    echo "qemu-system-arm is missing (P2PSC_REQUIRE_TAP=1)" >&2
    exit 1
else
    echo "SKIP: qemu-system-arm is missing (apt-get install qemu-system-arm)"
fi

step "end-to-end through two NATs"
scripts/board-e2e.sh
step "end-to-end through two NATs, the p2psc tool as the host peer"
scripts/board-e2e.sh --peer kernel --no-build
step "end-to-end relayed: both NATs fully-random, the p2psc tool as the host peer"
scripts/board-e2e.sh --relay --peer kernel --runs 2
step "end-to-end relayed after the punch fails (no probe endpoint), host-sim tap peer as the host peer"
scripts/board-e2e.sh --relay --no-probe --no-build
