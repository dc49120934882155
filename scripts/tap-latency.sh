#!/usr/bin/env bash
# Set-up latency through real Linux NATs, per pairing of peer kinds: scripts/tap-lab.sh
# port-preserving-drop (both routers drop unsolicited inbound) with known one-way delays on the routers'
# uplinks, N runs per pairing, one run at a time (a timing figure: no other lab competes for the CPU).
#
#   scripts/tap-latency.sh [OPTIONS]
#
# Pairings: kernel-kernel (two `p2psc` tools, p2psc-tokio on kernel sockets), kernel-smoltcp (the tool as
# peer A, `host-sim tap peer` as B), smoltcp-smoltcp. Set-up latency and its limit are tap-lab.sh's
# `SETUP` line: max over the peers of (the relay's one-way delay, mediator to peer, + that peer's
# Match-to-authenticated time), against the farther peer's one-way delay + 1.5 x peer RTT (0.5 x mediator
# RTT + 1.5 x peer RTT when the delays are equal). Linux answers a simultaneous open's SYN with a SYN-ACK
# at once, so two kernel peers are connected one peer RTT after their SYNs cross; smoltcp 0.13 takes
# half a round trip more (doc/smoltcp.md).
#
# With --scenario symmetric-both (both routers fully-random) the pair is relayed through the mediator at
# once (protocol §14.3) and the limit is the relay's (§14.7): from the mediator's second verified
# registration, the Match reaches each peer and each peer's first flight crosses the mediator to the
# other, max(2 dA + dB, 2 dB + dA) (1.5 x mediator RTT when the delays are equal); the reference
# target is twice that.
#
# Options:
#   --runs N                 runs per pairing (default 5)
#   --scenario NAME          the tap-lab.sh scenario (default port-preserving-drop; symmetric-both: relayed)
#   --delay-a-ms N | --delay-b-ms N   one-way delay of router A's / B's uplink relay (default 20 / 5)
#   --pairs LIST             comma-separated pairings (default kernel-kernel,kernel-smoltcp,smoltcp-smoltcp)
#   --release                the release binaries (cargo build --release …; with --build, builds them)
#   --build                  cargo build -p host-sim -p p2psc-mediator -p p2psc-tokio first
#   --host-sim PATH | --mediator-bin PATH | --p2psc PATH   binaries (default: target/debug or release)
#   --logs DIR               keep every run's output and logs in DIR (default: a temp dir, removed)
#
# Prints one line per run, then the table: pairing, runs connected, set-up median (min-max), the limit,
# median minus limit, and each peer's median Match-to-authenticated time. Exit 0 when every run connected,
# 1 otherwise, 2 usage, 3 cannot run (not root, a binary missing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "tap-latency: $*" >&2; exit 3; }

runs=5 scenario=port-preserving-drop delay_a=20 delay_b=5 pairs=kernel-kernel,kernel-smoltcp,smoltcp-smoltcp profile=debug build=0 logs=''
host_sim='' mediator_bin='' p2psc_bin=''
while [ $# -gt 0 ]; do
    case "$1" in
        --release) profile=release; shift; continue ;;
        --build) build=1; shift; continue ;;
        -h|--help) usage; exit 0 ;;
    esac
    [ $# -ge 2 ] || { echo "tap-latency: unknown argument or missing value: $1" >&2; usage >&2; exit 2; }
    case "$1" in
        --runs) runs=$2 ;;
        --scenario) scenario=$2 ;;
        --delay-a-ms) delay_a=$2 ;;
        --delay-b-ms) delay_b=$2 ;;
        --pairs) pairs=$2 ;;
        --host-sim) host_sim=$2 ;;
        --mediator-bin) mediator_bin=$2 ;;
        --p2psc) p2psc_bin=$2 ;;
        --logs) logs=$2 ;;
        *) echo "tap-latency: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
for v in "$runs" "$delay_a" "$delay_b"; do
    case "$v" in ''|*[!0-9]*) echo "tap-latency: not a number: $v" >&2; exit 2 ;; esac
done
[ "$runs" -gt 0 ] || { echo "tap-latency: --runs must be positive" >&2; exit 2; }
IFS=, read -ra pair_list <<<"$pairs"
for pair in "${pair_list[@]}"; do
    case "$pair" in kernel-kernel|kernel-smoltcp|smoltcp-kernel|smoltcp-smoltcp) ;;
        *) echo "tap-latency: bad pairing $pair (KIND-KIND, each kernel or smoltcp)" >&2; exit 2 ;; esac
done

[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, nftables, TAP devices)"
target_dir=${CARGO_TARGET_DIR:-$root/target}/$profile
host_sim=${host_sim:-$target_dir/host-sim} mediator_bin=${mediator_bin:-$target_dir/p2psc-mediator}
p2psc_bin=${p2psc_bin:-$target_dir/p2psc}
if [ "$build" = 1 ]; then
    release=()
    [ "$profile" = release ] && release=(--release)
    (cd "$root" && cargo build -q "${release[@]}" -p host-sim -p p2psc-mediator -p p2psc-tokio) || die "build failed"
fi
for bin in "$host_sim" "$mediator_bin" "$p2psc_bin"; do
    [ -x "$bin" ] || die "no binary at $bin (--build)"
done

keep_logs=1
if [ -z "$logs" ]; then
    logs=$(mktemp -d "${TMPDIR:-/tmp}/tap-latency.XXXXXX")
    keep_logs=0
fi
mkdir -p "$logs"
# tap-lab.sh removes its own namespaces, also when stopped; only our temp dir is left to remove.
trap '[ "$keep_logs" = 0 ] && rm -rf "$logs"' EXIT

echo "== tap-latency $scenario: ${pair_list[*]}; $runs runs each; one-way delays A $delay_a ms, B $delay_b ms ($profile binaries)"
# One run: tap-lab.sh's output in $logs/PAIR.RUN.out; prints its SETUP line (or why there is none).
one_run() { # one_run PAIR RUN
    local pair=$1 run=$2 out=$logs/$1.$2.out
    "$here/tap-lab.sh" "$scenario" --peer-a "${pair%-*}" --peer-b "${pair#*-}" \
        --delay-a-ms "$delay_a" --delay-b-ms "$delay_b" -q --prefix "p2y$$-" --logs "$logs/$pair.$run" \
        --host-sim "$host_sim" --mediator-bin "$mediator_bin" --p2psc "$p2psc_bin" >"$out" 2>&1 </dev/null || true
    printf '  %-16s %d: %s\n' "$pair" "$run" \
        "$(grep -h '^SETUP\|^RESULT: FAIL' "$out" | head -1 | cut -c1-150 || echo "no SETUP line (see $out)")"
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
minmax() { sort -n | sed -n '1p;$p' | paste -sd ' ' | awk '{ print ($2 == "" || $1 == $2) ? $1 : $1 "-" $2 }'; }
# field N of every SETUP line of a pairing: 2 set-up, 5 limit, 24 and 26 Match to authenticated A, B.
setup_field() { cat "$logs/$1".*.out | awk -v n="$2" '/^SETUP / { gsub(/[,;()]/, ""); print $n }'; }

all_ok=1
rows=()
for pair in "${pair_list[@]}"; do
    for run in $(seq "$runs"); do one_run "$pair" "$run"; done
    connected=$(cat "$logs/$pair".*.out | grep -c '^SETUP ' || true)
    [ "$connected" = "$runs" ] || all_ok=0
    [ "$connected" -gt 0 ] || { rows+=("$(printf '%-16s %5s' "$pair" "0/$runs")"); continue; }
    med=$(setup_field "$pair" 2 | median) limit=$(setup_field "$pair" 5 | median)
    rows+=("$(printf '%-16s %5s %7s %-9s %5s %+6.0f %5s %5s' "$pair" "$connected/$runs" "$med" \
        "($(setup_field "$pair" 2 | minmax))" "$limit" "$(awk "BEGIN { print $med - $limit }")" \
        "$(setup_field "$pair" 24 | median)" "$(setup_field "$pair" 26 | median)")")
done

printf '\n== tap-latency: set-up latency in ms (one-way delays A %s, B %s ms)\n' "$delay_a" "$delay_b"
printf '%-16s %5s %7s %-9s %5s %6s %5s %5s\n' pairing runs median "(range)" limit "-limit" "A" "B"
printf '%s\n' "${rows[@]}"
echo "(A, B: each peer's median Match-to-authenticated time)"
[ "$keep_logs" = 1 ] && echo "logs in $logs"
if [ "$all_ok" = 1 ]; then echo "RESULT: PASS tap-latency"; else echo "RESULT: FAIL tap-latency: a run did not connect"; exit 1; fi
