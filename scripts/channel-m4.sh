#!/usr/bin/env bash
# What the secure channel (doc/protocol.md §12) costs on a Cortex-M4, from the image in
# scripts/channel-m4/ (thumbv7em-none-eabihf, opt-level "s", fat LTO, panic=abort, as the boards):
#
#   - flash: the image that derives the keys and seals and opens records, minus the same image
#     without the channel (start-up code, exit and panic handler only); and HKDF-SHA256 against
#     HKDF-SHA512 alone (why the key schedule uses SHA-256);
#   - instructions per byte (needs qemu-system-arm): QEMU mps2-an386 runs the image once with 0 and
#     once with 20290 bytes of plaintext (10 full records), one instruction per translation block
#     with every executed block logged; the difference of the two counts over 20290 is the cost of
#     sealing plus opening one byte. A Cortex-M4 takes about one cycle per such instruction, more
#     for loads, stores and taken branches, so cycles per byte are somewhat above this count.
#
#   scripts/channel-m4.sh [--no-qemu]
set -euo pipefail
cd "$(dirname "$0")/channel-m4"
target=thumbv7em-none-eabihf
rustup target add "$target" >/dev/null 2>&1
rustup component add llvm-tools >/dev/null 2>&1
llvm_size=$(find "$(rustc --print sysroot)" -name llvm-size -type f | head -n 1)
elf=target/$target/release/channel-m4
bytes=20290

# flash [cargo args…]: flash bytes (text + data) of the image built with these arguments.
flash() {
    env -u CARGO_TARGET_DIR cargo build -q --release --target "$target" "$@"
    "$llvm_size" -B "$elf" | awk 'NR == 2 { print $1 + $2 }'
}
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }

base=$(flash)
channel=$(P2PSC_M4_BYTES=0 flash --features channel)
sha256=$(flash --features hkdf-sha256)
sha512=$(flash --features hkdf-sha512)
echo "| what (thumbv7em, opt \"s\", LTO) | flash |"
echo "|---|---:|"
echo "| the channel: key schedule, Sealer, Opener (image $channel − baseline $base bytes) | $(kib $((channel - base))) |"
echo "| HKDF-SHA256 alone | $(kib $((sha256 - base))) |"
echo "| HKDF-SHA512 alone | $(kib $((sha512 - base))) |"

if [ "${1:-}" = --no-qemu ]; then
    exit 0
fi
if ! command -v qemu-system-arm >/dev/null; then
    echo "qemu-system-arm not found: instruction counts skipped (apt-get install qemu-system-arm)"
    exit 0
fi
# count BYTES: instructions QEMU executes for the image that seals and opens BYTES bytes.
count() {
    P2PSC_M4_BYTES=$1 env -u CARGO_TARGET_DIR cargo build -q --release --target "$target" --features channel
    local fifo
    fifo=$(mktemp -u)
    mkfifo "$fifo"
    grep -c '^Trace' "$fifo" > "$fifo.count" &
    timeout 300 qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none \
        -semihosting-config enable=on,target=native -singlestep -d exec,nochain -D "$fifo" \
        -kernel "$elf" || { echo "the image failed under QEMU" >&2; exit 1; }
    wait
    cat "$fifo.count"
    rm -f "$fifo" "$fifo.count"
}
none=$(count 0)
some=$(count $bytes)
echo
echo "Cortex-M4 (QEMU mps2-an386) instructions: $none with no data (two key derivations, the end record),"
echo "$some with $bytes bytes: $(awk -v a="$none" -v b="$some" -v n=$bytes 'BEGIN { printf "%.1f", (b - a) / n }') per byte sealed and opened."
