#!/usr/bin/env bash
# Flash and static RAM of every board image, as a markdown table (regenerate with this command).
#
#   scripts/size-report.sh [--check] [--quick]
#
# All images are release builds: fat LTO, one codegen unit, panic=abort (each board's Cargo.toml; the
# QEMU board is optimised for size, opt-level "z" with an inline threshold of 45, the others "s"), p2psc without its default features (IPv4 only: no `ipv6`, no `medium-ip`; `dhcpv4` where
# the board uses DHCP). Flash = .vector_table + .text + .rodata + .data (llvm-size's text + data); static
# RAM = .data + .bss (stack and heap not included; there is no heap). Rows:
#   - mps2-an386 `punch`: the QEMU firmware that punches (UART console, static address, no defmt) and
#     talks over the secure channel (protocol §12).
#   - mps2-an386 `punch --features plaintext`: the same over a plaintext stream; "secure channel share"
#     is punch − this: HKDF-SHA256, ChaCha20-Poly1305, the record layer and its 2.5 KiB of buffers.
#   - mps2-an386 `baseline`: the same bring-up, stack and socket with a plain TCP echo and no p2psc connect;
#     "p2psc share" is punch − baseline: registration, punch, handshake, Ed25519/X25519, the mediator
#     socket's buffers.
#   - mps2-an386 `punch` with DHCP (`--features dhcp`, P2PSC_IPV4=dhcp; own target dir), for what DHCP costs.
#   - mps2-an386 `punch --features dns` and `--features udp` (own target dirs): p2psc's DNS and UDP
#     features compiled in but unused by `punch`, i.e. what smoltcp's DNS/UDP socket handling adds to
#     the interface; "DNS cost" and "UDP cost" are each minus punch.
#   - mps2-an386 `punch --features relay` (own target dir, target/relay, the image
#     `scripts/board-e2e.sh --relay` boots): protocol version 2, the mapping probe and the relay through
#     the mediator (protocol §14); "relay cost" is minus punch. Built and checked with --quick too.
#   - nucleo-f767zi, rp2040-w5500 and pico-w `punch`, with defmt (RTT logging, panic-probe) and without.
#     pico-w builds with `--features ci-build-only` (an empty CYW43439 NVRAM placeholder, 0 bytes where
#     the real file has about 0.7 KiB; such an image cannot run) unless P2PSC_CYW43_NVRAM names the file;
#     its flash includes the 226 KiB CYW43439 Wi-Fi firmware blob.
#   - esp32c3 `punch` (riscv32imc), with defmt and without. Measured by section (llvm-size -A), not with
#     text + data: flash = the code and data the image loads (.trap, .rwtext*, .data*, .rodata*, .text*,
#     .flash.appdesc); static RAM = .trap + .rwtext* (code copied to IRAM) + .data* + .bss (its 36 KiB
#     Wi-Fi heap included; the 64 KiB heap in reclaimed bootloader RAM is not). The *_dummy address
#     space reservations and the rest-of-RAM .stack are left out. Espressif's Wi-Fi blobs are in both.
# Budget: the mps2-an386 firmware (`punch`, default build, with the secure channel) must fit 72 KiB of
# flash and 24 KiB of static RAM (64 KiB before the channel). The relay build has a budget of its own,
# 80 KiB of flash and the same 24 KiB of RAM: the relay is an opt-in feature whose code (version-2
# frames, the probe, the path decision, the relay states) does not fit the 72 KiB next to the
# punch-only image, and 80 KiB keeps it checked with about 2 KiB of headroom for fixes, as the default
# build's budget does. --check exits 1 when either is over budget (0 when both are within); --quick
# skips the DHCP, DNS and UDP builds and the real-chip boards.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
check=0 quick=0
for arg in "$@"; do
    case "$arg" in
        --check) check=1 ;;
        --quick) quick=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "size-report: unknown option $arg" >&2; exit 2 ;;
    esac
done

rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf >/dev/null 2>&1 || true
rustup component add llvm-tools >/dev/null 2>&1 || true
llvm_size=$(find "$(rustc --print sysroot)" -name llvm-size -type f | head -n 1)
[ -x "$llvm_size" ] || { echo "size-report: llvm-size not found (rustup component add llvm-tools)" >&2; exit 1; }

flash_budget=$((72 * 1024)) ram_budget=$((24 * 1024))
relay_flash_budget=$((80 * 1024))
declare -A flash ram

# measure KEY ELF: fills flash[KEY], ram[KEY]
measure() {
    local key=$1 elf=$2 text data bss
    read -r text data bss _ < <("$llvm_size" -B "$elf" | awk 'NR == 2 { print $1, $2, $3 }')
    flash[$key]=$((text + data))
    ram[$key]=$((data + bss))
}
# measure_esp KEY ELF: like measure, by section for the ESP32-C3's memory map (see the header).
measure_esp() {
    local key=$1 elf=$2 f r
    read -r f r < <("$llvm_size" -A "$elf" | awk '
        $1 ~ /dummy/ { next }
        $1 ~ /^\.(trap|rwtext|data|rodata|text|flash\.appdesc)/ { flash += $2 }
        $1 ~ /^\.(trap|rwtext|data|bss)/ { ram += $2 }
        END { print flash + 0, ram + 0 }')
    flash[$key]=$f
    ram[$key]=$r
}
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }
# build DIR TARGET BIN [cargo args…]: release build of BIN in the board at DIR, prints the ELF path.
# The board's own target dir, or $tdir (relative to the board) when set.
build() {
    local dir=$1 target=$2 bin=$3 out
    shift 3
    out=$root/boards/$dir/${tdir:-target}
    (cd "$root/boards/$dir" && env -u CARGO_TARGET_DIR cargo build -q --release --target-dir "$out" --bin "$bin" "$@" >&2)
    echo "$out/$target/release/$bin"
}

# build_measure KEY DIR TARGET BIN [cargo args…]: build, then measure. A failed build ends the script
# (inside an argument's "$(…)" it would not, and the old ELF would be measured).
build_measure() {
    local key=$1 elf
    shift
    elf=$(build "$@") || { echo "size-report: building $key failed" >&2; exit 1; }
    ${measure_with:-measure} "$key" "$elf"
}

m=thumbv7em-none-eabihf
build_measure mps2-punch mps2-an386 $m punch
build_measure mps2-baseline mps2-an386 $m baseline
tdir=target/plaintext build_measure mps2-plain mps2-an386 $m punch --features plaintext
tdir=target/relay build_measure mps2-relay mps2-an386 $m punch --features relay
if [ "$quick" = 0 ]; then
    # A target dir of its own: the default `punch` above stays the one QEMU boots.
    P2PSC_IPV4=dhcp tdir=target/dhcp build_measure mps2-dhcp mps2-an386 $m punch --features dhcp
    tdir=target/dns build_measure mps2-dns mps2-an386 $m punch --features dns
    tdir=target/udp build_measure mps2-udp mps2-an386 $m punch --features udp
    build_measure f767-defmt nucleo-f767zi $m punch
    build_measure f767-plain nucleo-f767zi $m punch --no-default-features
    build_measure rp-defmt rp2040-w5500 thumbv6m-none-eabi punch
    build_measure rp-plain rp2040-w5500 thumbv6m-none-eabi punch --no-default-features
    build_measure picow-defmt pico-w thumbv6m-none-eabi punch --features ci-build-only
    build_measure picow-plain pico-w thumbv6m-none-eabi punch --no-default-features --features ci-build-only
    measure_with=measure_esp build_measure esp-defmt esp32c3 riscv32imc-unknown-none-elf punch
    measure_with=measure_esp build_measure esp-plain esp32c3 riscv32imc-unknown-none-elf punch --no-default-features
fi

verdict() { # verdict FLASH RAM [FLASH_BUDGET]
    local v=() budget=${3:-$flash_budget}
    [ "$1" -le "$budget" ] || v+=("flash over by $(kib $(($1 - budget)))")
    [ "$2" -le "$ram_budget" ] || v+=("RAM over by $(kib $(($2 - ram_budget)))")
    if [ ${#v[@]} -eq 0 ]; then echo "within $((budget / 1024)) KiB / 24 KiB"; else (IFS=';'; echo "**OVER**: ${v[*]}"); fi
}
cost_row() { # cost_row LABEL KEY NOTE: KEY − punch
    local f=$((flash[$2] - flash[mps2-punch])) r=$((ram[$2] - ram[mps2-punch]))
    printf '| mps2-an386 | **%s** | %s | %s | %s | %s |\n' "$1" "$f" "$(kib "$f")" "$(kib "$r")" "$3"
}
row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "${flash[$3]}" "$(kib "${flash[$3]}")" "$(kib "${ram[$3]}")" "$4"; }

echo "| board | image | flash (bytes) | flash | static RAM | note |"
echo "|---|---|---:|---:|---:|---|"
row "mps2-an386 (QEMU, Cortex-M4)" "punch (UART console)" mps2-punch "$(verdict "${flash[mps2-punch]}" "${ram[mps2-punch]}")"
row "mps2-an386 (QEMU, Cortex-M4)" "baseline: no p2psc connect" mps2-baseline "same stack, NIC and socket"
share_flash=$((flash[mps2-punch] - flash[mps2-baseline])) share_ram=$((ram[mps2-punch] - ram[mps2-baseline]))
printf '| mps2-an386 | **p2psc share** (punch − baseline) | %s | %s | %s | registration, punch, handshake, Ed25519/X25519, mediator socket, secure channel |\n' \
    "$share_flash" "$(kib "$share_flash")" "$(kib "$share_ram")"
row "mps2-an386 (QEMU, Cortex-M4)" "punch, plaintext stream (\`--features plaintext\`)" mps2-plain "not the budgeted build"
channel_flash=$((flash[mps2-punch] - flash[mps2-plain])) channel_ram=$((ram[mps2-punch] - ram[mps2-plain]))
printf '| mps2-an386 | **secure channel share** (punch − plaintext) | %s | %s | %s | HKDF-SHA256, ChaCha20-Poly1305, records, record buffers |\n' \
    "$channel_flash" "$(kib "$channel_flash")" "$(kib "$channel_ram")"
row "mps2-an386 (QEMU, Cortex-M4)" "punch with the relay (\`--features relay\`)" mps2-relay \
    "own budget: $(verdict "${flash[mps2-relay]}" "${ram[mps2-relay]}" "$relay_flash_budget")"
cost_row "relay cost (relay − punch)" mps2-relay "protocol version 2: version-2 frames, mapping probe, path decision, relay"
if [ "$quick" = 0 ]; then
    row "mps2-an386 (QEMU, Cortex-M4)" "punch with DHCP (\`--features dhcp\`)" mps2-dhcp "not the budgeted build"
    row "mps2-an386 (QEMU, Cortex-M4)" "punch with DNS (\`--features dns\`)" mps2-dns "not the budgeted build"
    cost_row "DNS cost (dns − punch)" mps2-dns "smoltcp DNS socket in the interface, query slot; no query made"
    row "mps2-an386 (QEMU, Cortex-M4)" "punch with UDP (\`--features udp\`)" mps2-udp "not the budgeted build"
    cost_row "UDP cost (udp − punch)" mps2-udp "smoltcp UDP socket in the interface; no socket opened"
    row "nucleo-f767zi (STM32F767ZI)" "punch, defmt" f767-defmt "2 MiB flash / 512 KiB RAM part"
    row "nucleo-f767zi (STM32F767ZI)" "punch, no defmt" f767-plain ""
    row "rp2040-w5500 (RP2040, Cortex-M0+)" "punch, defmt" rp-defmt "2 MiB flash / 264 KiB RAM"
    row "rp2040-w5500 (RP2040, Cortex-M0+)" "punch, no defmt" rp-plain ""
    row "pico-w (RP2040 + CYW43439 Wi-Fi)" "punch, defmt" picow-defmt "incl. 226 KiB Wi-Fi firmware blob; CI build: NVRAM placeholder"
    row "pico-w (RP2040 + CYW43439 Wi-Fi)" "punch, no defmt" picow-plain ""
    row "esp32c3 (ESP32-C3, RISC-V, Wi-Fi)" "punch, defmt" esp-defmt "by section; incl. Espressif Wi-Fi blobs and a 36 KiB heap"
    row "esp32c3 (ESP32-C3, RISC-V, Wi-Fi)" "punch, no defmt" esp-plain ""
fi
echo
echo "Regenerate: \`scripts/size-report.sh\` (rustc $(rustc --version | cut -d' ' -f2), fat LTO, codegen-units 1; opt-level \"z\" with inline threshold 45 for mps2-an386, \"s\" for the others)."

# check_budget KEY WHAT FLASH_BUDGET: 0 when KEY is within FLASH_BUDGET and the RAM budget, a line either way.
check_budget() {
    local key=$1 what=$2 budget=$3
    if [ "${flash[$key]}" -gt "$budget" ] || [ "${ram[$key]}" -gt "$ram_budget" ]; then
        echo "size-report: mps2-an386 $what is over its $((budget / 1024)) KiB flash / 24 KiB RAM budget:" \
            "$(kib "${flash[$key]}") flash ($((flash[$key] - budget)) bytes over), $(kib "${ram[$key]}") RAM" >&2
        return 1
    fi
    echo "size-report: mps2-an386 $what is within budget: $(kib "${flash[$key]}") of $((budget / 1024)) KiB flash" \
        "($((budget - flash[$key])) bytes left), $(kib "${ram[$key]}") of 24 KiB RAM" >&2
}
if [ "$check" = 1 ]; then
    over=0
    check_budget mps2-punch punch "$flash_budget" || over=1
    check_budget mps2-relay "punch --features relay" "$relay_flash_budget" || over=1
    exit "$over"
fi
