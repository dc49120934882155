#!/usr/bin/env bash
# Code size of the p2psc library for thumbv7em-none-eabihf at opt-level "s": the sum of the sections of
# every object in the rlib, per module. This is everything in the library, before the linker drops what
# an application does not call; the firmware size reports (boards/) show what a real image keeps.
set -euo pipefail
cd "$(dirname "$0")/.."
target=thumbv7em-none-eabihf
rustup target add "$target" >/dev/null
rustup component add llvm-tools >/dev/null
size=$(find "$(rustc --print sysroot)" -name llvm-size -type f | head -n 1)
cargo build -q -p p2psc --no-default-features --profile size --target "$target"
rlib="target/$target/size/libp2psc.rlib"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && ar x "$OLDPWD/$rlib")
printf '%-10s %10s %10s %10s\n' "" text data bss
"$size" -B "$tmp"/*.o | awk 'NR > 1 { t += $1; d += $2; b += $3 } END { printf "%-10s %10d %10d %10d\n", "p2psc", t, d, b }'
