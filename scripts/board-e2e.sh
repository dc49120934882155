#!/usr/bin/env bash
# End-to-end: the emulated board punches through two real Linux NATs.
#
#   scripts/board-e2e.sh [--keep-logs DIR] [--no-build] [--stagger-ms N] [--peer smoltcp|kernel] [--relay]
#                        [--no-probe] [--runs N] [--mediator-bin PATH]
#
# --stagger-ms N: start the host peer N ms after the board (default 1000), so the board registers first and
# waits for its Match; 0 lets the host peer come first, and the board is then matched at once.
#
# Peer A is the mps2-an386 firmware (boards/mps2-an386, bin `punch`) in QEMU, its LAN9118 on a TAP device
# in home network A; peer B is `host-sim tap peer --echo` (smoltcp on a TAP) in home network B, or with
# --peer kernel the `p2psc` tool (p2psc-tokio on the kernel's sockets) in a Linux host of its own on home
# network B, echoing with `p2psc pipe <fifo | tee fifo` (the README's echo loop): the real deployment, a
# microcontroller and a Linux host. Both carry the secure channel. The real `p2psc-mediator` listens on
# the public segment. Each home sits behind its own nftables router with
# port-preserving masquerade and a "drop unsolicited inbound" firewall. The topology and addresses are
# those of scripts/tap-lab.sh (port-preserving-drop), minus the delaying relays: public 203.0.113.0/24
# (mediator .10, router A .1, router B .2), both homes 192.168.1.0/24 (router .1, peer .2).
#
# --relay: the relayed path of protocol version 2 (protocol §14). The firmware is built with its feature
# `relay` (own target dir, boards/mps2-an386/target/relay), and both routers map every connection to a new
# random port (masquerade fully-random, the TAP lab's `symmetric`) behind the same "drop unsolicited
# inbound" firewall: no punch can connect such a pair, so the peers must ask the mediator to relay and
# authenticate end to end through it. The run then passes only when both ends report the relayed path
# (the board's `p2psc: relay joined` and `path relayed` on its connected line; `path relayed` on the host
# peer's authenticated line); without --relay, both ends must report `path direct`.
# The mediator must offer relays: the repository's own build does once it has the relay splice. The probe
# (protocol §14.2) normally sends such a pair to the relay at once; the probe is best effort, so a run that
# reaches the relay after the punch failed passes too (the summary line says which way it went).
# --no-probe (with --relay): the mediator runs without its probe endpoint (`--probe-port 0`), so the pair
# punches first and must reach the relay after the punch fails (`asking the mediator to relay (the punch
# failed)` on the board).
#
# --runs N: N runs in a row, each in a fresh lab (the builds are made once); passes when every run passes.
# --mediator-bin PATH (or P2PSC_MEDIATOR_BIN): the mediator binary to run, instead of the workspace's own
# debug build (which is then not built).
#
# Keys are the firmware's TEST keys: seed [0xA1; 32] on the board, [0xB2; 32] for the host peer (the
# tool gets it as a PKCS#8 PEM file made from the seed).
#
# Passes (exit 0) when the board's console shows registered / matched / authenticated / echo ok and QEMU
# exits 0, the host peer exits 0 after echoing, and both print the same session fingerprint (the tool
# prints none: there, what it echoed must be exactly the firmware's three messages). Exit 1 on
# failure. Without root (or without qemu-system-arm, nft, ip) it prints SKIP and exits 0, unless
# P2PSC_REQUIRE_TAP=1, which makes that a failure (exit 1).
#
# Bounded: QEMU and the host peer are each killed after 120 s. Every namespace (prefix p2be<PID>-) and every
# process in it is removed on exit, Ctrl-C or SIGTERM.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
board=$root/boards/mps2-an386

args=("$@")
logs='' build=1 stagger=1000 peer_kind=smoltcp relay=0 no_probe=0 runs=1 mediator_bin=${P2PSC_MEDIATOR_BIN:-}
while [ $# -gt 0 ]; do
    case "$1" in
        --keep-logs) logs=${2:?--keep-logs needs a directory}; shift 2 ;;
        --no-build) build=0; shift ;;
        --stagger-ms) stagger=${2:?--stagger-ms needs a number}; shift 2 ;;
        --peer) peer_kind=${2:?--peer needs smoltcp or kernel}; shift 2 ;;
        --relay) relay=1; shift ;;
        --no-probe) no_probe=1; shift ;;
        --runs) runs=${2:?--runs needs a number}; shift 2 ;;
        --mediator-bin) mediator_bin=${2:?--mediator-bin needs a path}; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "board-e2e: unknown option $1" >&2; exit 2 ;;
    esac
done

skip() {
    if [ "${P2PSC_REQUIRE_TAP:-0}" = 1 ]; then
        echo "board-e2e: FAIL: cannot run: $* (P2PSC_REQUIRE_TAP=1)" >&2
        exit 1
    fi
    echo "board-e2e: SKIP: $*"
    exit 0
}
case "$peer_kind" in smoltcp|kernel) ;; *) echo "board-e2e: --peer smoltcp or kernel, not $peer_kind" >&2; exit 2 ;; esac
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "board-e2e: --runs takes a positive number, not $runs" >&2; exit 2; }
[ "$no_probe" = 0 ] || [ "$relay" = 1 ] || { echo "board-e2e: --no-probe goes with --relay" >&2; exit 2; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, nftables, TAP devices)"
for tool in ip nft qemu-system-arm timeout; do
    command -v "$tool" >/dev/null || skip "$tool is missing (apt-get install iproute2 nftables qemu-system-arm)"
done
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing"

# --- build ---------------------------------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-$root/target}
host_sim=$target_dir/debug/host-sim
p2psc_bin=$target_dir/debug/p2psc
packages=(-p host-sim -p p2psc-tokio)
if [ -z "$mediator_bin" ]; then
    mediator_bin=$target_dir/debug/p2psc-mediator
    packages+=(-p p2psc-mediator)
fi
# The board has its own target dir (it is not a workspace member); the relay build its own below it, so
# that the default image stays the one the other checks boot.
board_build=(--release --bin punch)
firmware=$board/target/thumbv7em-none-eabihf/release/punch
if [ "$relay" = 1 ]; then
    board_build+=(--features relay --target-dir target/relay)
    firmware=$board/target/relay/thumbv7em-none-eabihf/release/punch
fi
board_env=(
    P2PSC_KEY_SEED=a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1
    P2PSC_PEER_KEY=55154f42065ea5a1bea05463826be2684eb92df92c100027aabaae57ca554207
    P2PSC_MEDIATOR=203.0.113.10:7777 P2PSC_IPV4=192.168.1.2/24 P2PSC_GATEWAY=192.168.1.1 P2PSC_MAC=
)
if [ "$build" = 1 ]; then
    (cd "$root" && cargo build -q "${packages[@]}")
    (cd "$board" && env -u CARGO_TARGET_DIR "${board_env[@]}" cargo build -q "${board_build[@]}")
fi
needed=("$host_sim" "$mediator_bin" "$firmware")
[ "$peer_kind" = kernel ] && needed+=("$p2psc_bin")
for f in "${needed[@]}"; do
    [ -x "$f" ] || { echo "board-e2e: FAIL: $f is missing (run without --no-build)" >&2; exit 1; }
done

# Several runs: this script once per run (a fresh lab each time, the builds above reused); the last
# --runs/--no-build/--keep-logs given win over the caller's.
if [ "$runs" -gt 1 ]; then
    passed=0 failed_runs=()
    for run in $(seq "$runs"); do
        echo "=== board-e2e: run $run of $runs"
        per_run=(--runs 1 --no-build --mediator-bin "$mediator_bin")
        [ -n "$logs" ] && per_run+=(--keep-logs "$logs/run$run")
        if "$0" "${args[@]}" "${per_run[@]}"; then
            passed=$((passed + 1))
        else
            failed_runs+=("$run")
        fi
    done
    what="$([ "$relay" = 1 ] && echo "relayed, both NATs fully-random" || echo direct) <-> $peer_kind host peer"
    [ "$no_probe" = 1 ] && what+=", no probe endpoint"
    if [ ${#failed_runs[@]} -eq 0 ]; then
        echo "RESULT: PASS board-e2e: $passed of $runs runs ($what; mediator $mediator_bin)"
        exit 0
    fi
    echo "RESULT: FAIL board-e2e: $passed of $runs runs passed, failed: ${failed_runs[*]} ($what; mediator $mediator_bin)"
    exit 1
fi
seed_b=b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2
key_a=$("$host_sim" tap pubkey --key-seed a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1)

# --- the lab: namespaces, NAT routers, mediator (scripts/lib/netlab.sh) ----------------------------------
prefix="p2be$$-"
# shellcheck source=SCRIPTDIR/lib/netlab.sh
. "$here/lib/netlab.sh"
netlab_init board-e2e

# Port-preserving masquerade (with --relay: fully-random, a new random port per connection); a home router
# that drops unsolicited inbound traffic. No delaying relays, no static ARP.
nat_kind='port-preserving'
[ "$relay" = 1 ] && nat_kind=fully-random
netlab_topology --nat-a "$nat_kind" --fw-a drop --nat-b "$nat_kind" --fw-b drop
# The tool's host: its own kernel stack on home B's LAN, and the host peer's key as a PKCS#8 PEM file (the
# fixed DER prefix of an Ed25519 private key, then the seed).
if [ "$peer_kind" = kernel ]; then
    netlab_kernel_host hostB homeB "$peer_ip"
    {
        echo "-----BEGIN PRIVATE KEY-----"
        der_hex=302e020100300506032b657004220420$seed_b der=''
        for ((i = 0; i < ${#der_hex}; i += 2)); do der+="\\x${der_hex:i:2}"; done
        printf '%b' "$der" | base64
        echo "-----END PRIVATE KEY-----"
    } >"$logs/key-B.pem"
    [ "$("$p2psc_bin" pubkey "$logs/key-B.pem")" = "${board_env[1]#P2PSC_PEER_KEY=}" ] ||
        { echo "board-e2e: FAIL: the PEM key is not the firmware's peer key" >&2; exit 1; }
fi

# --- run -----------------------------------------------------------------------------------------------
if [ "$no_probe" = 1 ]; then
    # netlab_start_mediator's command line, without the probe endpoint.
    start_bg "$logs/mediator.log" pub "$mediator_bin" --listen "$pub_ip:$port" --stats-interval 0 --log-level info \
        --probe-port 0
else
    netlab_start_mediator "$mediator_bin"
fi
netlab_poll 100 netlab_mediator_listening || true
# The probe endpoint (protocol §14.2: the mediator's port + 1), for the report: without it the probe finds
# nothing, and a relayed pair reaches the relay only after the punch's fallback deadline.
probe_listening=no
[ -n "$(nx pub ss -Hltn "sport = :$((port + 1))" 2>/dev/null)" ] && probe_listening=yes

t0=$(date +%s%N)
ip netns exec "$(ns homeA)" env P2PSC_TAP=tap0 P2PSC_QEMU_TIMEOUT=120 "$board/qemu-run.sh" "$firmware" \
    >"$logs/board.log" 2>&1 </dev/null &
qemu=$!
pids+=("$qemu")
sleep "$(awk "BEGIN { print $stagger / 1000 }")"
if [ "$peer_kind" = kernel ]; then
    mkfifo "$logs/loop"
    # Progress and errors to the log, what it echoed to peer-B.data. `timeout` bounds the whole loop (inside
    # the pipeline it would hold tee's input open).
    # shellcheck disable=SC2016 # the inner script's own arguments
    ip netns exec "$(ns hostB)" timeout -k 2 120 bash -c 'set -o pipefail; fifo=$1; shift; "$@" <"$fifo" | tee "$fifo"' \
        echo-loop "$logs/loop" "$p2psc_bin" pipe --key "$logs/key-B.pem" --peer "$key_a" \
        --mediator "$pub_ip:$port" --timeout 90s >"$logs/peer-B.data" 2>"$logs/peer-B.log" </dev/null &
else
    ip netns exec "$(ns homeB)" timeout -k 2 120 "$host_sim" tap peer --tap tap0 --ip "$peer_ip" \
        --gw "$lan_gw" --key-seed "$seed_b" --peer-key "$key_a" --mediator "$pub_ip:$port" --timeout 90 --echo \
        >"$logs/peer-B.log" 2>"$logs/peer-B.err" &
fi
peer=$!
pids+=("$peer")

rc_board=0 rc_peer=0
wait "$qemu" || rc_board=$?
wait "$peer" || rc_peer=$?
wall_ms=$((($(date +%s%N) - t0) / 1000000))

# --- report and verdict --------------------------------------------------------------------------------
echo "-- board (QEMU mps2-an386), exit $rc_board"
tr -d '\r' <"$logs/board.log" | sed 's/^/    /'
echo "-- host peer B ($peer_kind), exit $rc_peer"
sed 's/^/    /' "$logs/peer-B.log"
[ -s "$logs/peer-B.err" ] && tail -n 20 "$logs/peer-B.err" | sed 's/^/    /'
echo "-- mediator $mediator_bin (last lines; probe endpoint :$((port + 1)) listening: $probe_listening)"
tail -n 6 "$logs/mediator.log" | sed 's/^/    /'

fail=()
console=$(tr -d '\r' <"$logs/board.log")
[ "$rc_board" = 0 ] || fail+=("QEMU exited $rc_board")
[ "$rc_peer" = 0 ] || fail+=("host peer exited $rc_peer")
expected_lines=('p2psc: registered' 'p2psc: matched peer at ' 'p2psc: authenticated ' 'echo: ok')
path=direct
if [ "$relay" = 1 ]; then
    expected_lines+=('p2psc: relay joined')
    [ "$no_probe" = 1 ] && expected_lines+=('p2psc: asking the mediator to relay (the punch failed)')
    path=relayed
fi
for line in "${expected_lines[@]}"; do
    grep -q "^$line" <<<"$console" || fail+=("board never printed '$line'")
done
grep -q "^p2psc: connected to .* path $path " <<<"$console" || fail+=("the board's connection is not $path")
if [ "$peer_kind" = kernel ]; then
    # The firmware's three messages (boards/mps2-an386/src/bin/punch.rs), each echoed as it came.
    expected=$(printf 'hello from mps2-an386, round %d\n' 0 1 2 | od -An -tx1)
    [ "$(od -An -tx1 <"$logs/peer-B.data")" = "$expected" ] ||
        fail+=("the tool echoed $(wc -c <"$logs/peer-B.data") bytes, not the firmware's three messages")
    grep -q '^p2psc: authenticated in ' "$logs/peer-B.log" || fail+=("the tool did not authenticate")
    grep -q "^p2psc: authenticated in .*; path $path;" "$logs/peer-B.log" || fail+=("the tool's connection is not $path")
else
    grep -q 'peer closed; echo ok' "$logs/peer-B.log" || fail+=("host peer did not echo")
    grep -q "authenticated: .* path $path " "$logs/peer-B.log" || fail+=("the host peer's connection is not $path")
    fp_board=$(grep -o 'session [0-9a-f]*' <<<"$console" | head -1 || true)
    fp_peer=$(grep -o 'session [0-9a-f]*' "$logs/peer-B.log" | head -1 || true)
    [ -n "$fp_board" ] && [ "$fp_board" = "$fp_peer" ] ||
        fail+=("session fingerprints differ or missing ('$fp_board' vs '$fp_peer')")
fi

way=''
if [ "$relay" = 1 ]; then
    way=$(grep -m1 -o '^p2psc: asking the mediator to relay ([^)]*)' <<<"$console" | sed 's/.*(\(.*\))/; relay asked: \1/' || true)
fi
echo "== board-e2e: $(grep -m1 '^p2psc: connected' <<<"$console" || echo 'board not connected')$way; wall $wall_ms ms"
[ "$keep_logs" = 1 ] && echo "   logs in $logs"
if [ ${#fail[@]} -eq 0 ]; then
    echo "RESULT: PASS board-e2e (QEMU mps2-an386 <-> $peer_kind host peer through two $nat_kind NATs, path $path$([ "$no_probe" = 1 ] && echo ', no probe endpoint'))"
    exit 0
fi
printf 'RESULT: FAIL board-e2e: %s\n' "$(IFS=';'; echo "${fail[*]}")"
exit 1
