#!/usr/bin/env bash
# The whole test suite: the README's test command, and what CI runs.
#
# Installs what it needs when it can (rustup targets and components; apt packages when root), then:
# formatting, clippy, no_std builds of p2psc for three bare-metal targets (with and without defmt, without
# and with the optional IPv6/DHCP/IP-medium parts of `net`; DER key files), the firmware examples,
# the workspace tests and doctests, the docs (rustdoc warnings are errors), the fuzz targets' build, the
# board firmware (build, host tests, size budget)
# and, as root, the tests through real Linux NATs (network namespaces + TAP: the scripts/tap-lab.sh scenarios
# and the scripts/tap-late.sh late-peer / same-LAN race matrix, from host-sim/tests/tap.rs) and the emulated board.
# Set P2PSC_REQUIRE_TAP=1 to make the root-only tests fail instead of skip when they cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "prerequisites"
rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf >/dev/null
rustup component add rustfmt clippy llvm-tools >/dev/null
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    need=()
    for pkg in nftables iproute2 qemu-system-arm; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "no_std builds"
for target in thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    cargo build -p p2psc --no-default-features --target "$target"
    cargo build -p p2psc --no-default-features --features defmt --target "$target"
    # Protocol version 2 (the probe and the relay) on every device architecture.
    cargo build -p p2psc --no-default-features --features relay --target "$target"
done
# The optional parts of `net` (default features ipv6, dhcpv4, medium-ip) on bare metal too; and the lean
# build lint-free, since the workspace clippy above only sees the default features.
cargo build -p p2psc --features defmt --target thumbv7em-none-eabihf
cargo clippy -p p2psc --no-default-features --target thumbv7em-none-eabihf -- -D warnings
cargo clippy -p p2psc --no-default-features --features relay --target thumbv7em-none-eabihf -- -D warnings
# DNS and UDP (features dns, udp; off by default) on bare metal, with and without defmt, lint-free.
cargo build -p p2psc --no-default-features --features dns,udp --target thumbv7em-none-eabihf
cargo build -p p2psc --features dns,udp,defmt --target thumbv7em-none-eabihf
cargo clippy -p p2psc --no-default-features --features dns,udp --target thumbv7em-none-eabihf -- -D warnings
# DER key files (feature pkcs8) without an allocator.
cargo build -p p2psc --no-default-features --features pkcs8 --target thumbv7em-none-eabihf
# The firmware examples build, link (the examples' memory map is in build.rs) and are lint-free.
firmware_examples=(--example embassy_echo --example superloop_echo)
cargo build -p p2psc "${firmware_examples[@]}" --target thumbv7em-none-eabihf
cargo clippy -p p2psc "${firmware_examples[@]}" --target thumbv7em-none-eabihf -- -D warnings

step "workspace tests"
cargo test --workspace

step "docs"
# What docs.rs builds, and the lean configuration: no broken or redundant links (doctests ran above).
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
RUSTDOCFLAGS="-D warnings" cargo doc -p p2psc --no-deps --no-default-features

for extra in scripts/test-fuzz.sh scripts/test-boards.sh; do
    if [ -x "$extra" ]; then
        step "$extra"
        "$extra"
    fi
done

step "all tests passed"
