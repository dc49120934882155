#!/usr/bin/env bash
# End-to-end: the emulated board punches through two real Linux NATs.
#
#   scripts/board-e2e.sh [--keep-logs DIR] [--no-build] [--stagger-ms N]
#
# --stagger-ms N: start the host peer N ms after the board (default 1000), so the board registers first and
# waits for its Match; 0 lets the host peer come first, and the board is then matched at once.
#
# Peer A is the mps2-an386 firmware (boards/mps2-an386, bin `punch`) in QEMU, its LAN9118 on a TAP device
# in home network A; peer B is `host-sim tap peer --echo` (smoltcp on a TAP) in home network B; the real
# `p2psc-mediator` listens on the public segment. Each home sits behind its own nftables router with
# port-preserving masquerade and a "drop unsolicited inbound" firewall. The topology and addresses are
# those of scripts/tap-lab.sh (port-preserving-drop), minus the delaying relays: public 203.0.113.0/24
# (mediator .10, router A .1, router B .2), both homes 192.168.1.0/24 (router .1, peer .2).
#
# Keys are the firmware's TEST keys: seed [0xA1; 32] on the board, [0xB2; 32] for the host peer.
#
# Passes (exit 0) when the board's console shows registered / matched / authenticated / echo ok and QEMU
# exits 0, the host peer exits 0 after echoing, and both print the same session fingerprint. Exit 1 on
# failure. Without root (or without qemu-system-arm, nft, ip) it prints SKIP and exits 0, unless
# P2PSC_REQUIRE_TAP=1, which makes that a failure (exit 1).
#
# Bounded: QEMU and the host peer are each killed after 120 s. Every namespace (prefix p2be<PID>-) and every
# process in it is removed on exit, Ctrl-C or SIGTERM.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
board=$root/boards/mps2-an386

logs='' build=1 stagger=1000
while [ $# -gt 0 ]; do
    case "$1" in
        --keep-logs) logs=${2:?--keep-logs needs a directory}; shift 2 ;;
        --no-build) build=0; shift ;;
        --stagger-ms) stagger=${2:?--stagger-ms needs a number}; shift 2 ;;
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
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, nftables, TAP devices)"
for tool in ip nft qemu-system-arm timeout; do
    command -v "$tool" >/dev/null || skip "$tool is missing (apt-get install iproute2 nftables qemu-system-arm)"
done
[ -c /dev/net/tun ] || skip "/dev/net/tun is missing"

# --- build ---------------------------------------------------------------------------------------------
target_dir=${CARGO_TARGET_DIR:-$root/target}
host_sim=$target_dir/debug/host-sim
mediator_bin=$target_dir/debug/p2psc-mediator
# The board has its own target dir (it is not a workspace member).
firmware=$board/target/thumbv7em-none-eabihf/release/punch
board_env=(
    P2PSC_KEY_SEED=a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1
    P2PSC_PEER_KEY=55154f42065ea5a1bea05463826be2684eb92df92c100027aabaae57ca554207
    P2PSC_MEDIATOR=203.0.113.10:7777 P2PSC_IPV4=192.168.1.2/24 P2PSC_GATEWAY=192.168.1.1 P2PSC_MAC=
)
if [ "$build" = 1 ]; then
    (cd "$root" && cargo build -q -p host-sim -p p2psc-mediator)
    (cd "$board" && env -u CARGO_TARGET_DIR "${board_env[@]}" cargo build -q --release --bin punch)
fi
for f in "$host_sim" "$mediator_bin" "$firmware"; do
    [ -x "$f" ] || { echo "board-e2e: FAIL: $f is missing (run without --no-build)" >&2; exit 1; }
done
seed_b=b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2
key_a=$("$host_sim" tap pubkey --key-seed a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1)

# --- bookkeeping and cleanup ---------------------------------------------------------------------------
prefix="p2be$$-"
namespaces=()
pids=()
keep_logs=1
if [ -z "$logs" ]; then
    logs=$(mktemp -d "${TMPDIR:-/tmp}/board-e2e.XXXXXX")
    keep_logs=0
else
    mkdir -p "$logs"
fi
cleaned=0
cleanup() {
    [ "$cleaned" = 1 ] && return
    cleaned=1
    local pid ns
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for ns in "${namespaces[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    done
    for _ in $(seq 20); do
        local left=0
        for ns in "${namespaces[@]}"; do
            [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && left=1
        done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for ns in "${namespaces[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    if [ "$keep_logs" = 0 ]; then rm -rf "$logs"; fi
}
trap cleanup EXIT
trap 'echo "board-e2e: interrupted" >&2; cleanup; exit 130' INT
trap 'echo "board-e2e: terminated" >&2; cleanup; exit 143' TERM

ns() { echo "${prefix}$1"; }
add_ns() {
    local name
    name=$(ns "$1")
    ip netns add "$name"
    namespaces+=("$name")
    ip -n "$name" link set lo up
    ip netns exec "$name" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# --- topology ------------------------------------------------------------------------------------------
pub_ip=203.0.113.10
port=7777
declare -A wan_ip=([A]=203.0.113.1 [B]=203.0.113.2)

add_ns pub
ip -n "$(ns pub)" link add pub type bridge stp_state 0
ip -n "$(ns pub)" addr add "$pub_ip/24" dev pub
ip -n "$(ns pub)" link set pub up
for side in A B; do
    add_ns "nat$side"
    add_ns "home$side"
    pubns=$(ns pub) natns=$(ns "nat$side") homens=$(ns "home$side")
    ip -n "$natns" link add wan type veth peer name "wan$side" netns "$pubns"
    ip -n "$pubns" link set "wan$side" master pub up
    ip -n "$natns" addr add "${wan_ip[$side]}/24" dev wan
    ip -n "$natns" link set wan up
    ip -n "$natns" link add lan type veth peer name uplink netns "$homens"
    ip -n "$natns" addr add 192.168.1.1/24 dev lan
    ip -n "$natns" link set lan up
    ip netns exec "$natns" sysctl -qw net.ipv4.ip_forward=1
    # Port-preserving masquerade; a home router that drops unsolicited inbound traffic.
    ip netns exec "$natns" nft -f - <<EOF
table ip lab {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
}
EOF
    ip -n "$homens" link add lan type bridge stp_state 0
    ip -n "$homens" link set lan up
    ip -n "$homens" link set uplink master lan up
    ip -n "$homens" tuntap add dev tap0 mode tap
    ip -n "$homens" link set tap0 master lan up
done

# --- run -----------------------------------------------------------------------------------------------
ip netns exec "$(ns pub)" "$mediator_bin" --listen "$pub_ip:$port" --stats-interval 0 --log-level info \
    >"$logs/mediator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    ip netns exec "$(ns pub)" ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && break
    sleep 0.1
done

t0=$(date +%s%N)
ip netns exec "$(ns homeA)" env P2PSC_TAP=tap0 P2PSC_QEMU_TIMEOUT=120 "$board/qemu-run.sh" "$firmware" \
    >"$logs/board.log" 2>&1 </dev/null &
qemu=$!
pids+=("$qemu")
sleep "$(awk "BEGIN { print $stagger / 1000 }")"
ip netns exec "$(ns homeB)" timeout -k 2 120 "$host_sim" tap peer --tap tap0 --ip 192.168.1.2/24 \
    --gw 192.168.1.1 --key-seed "$seed_b" --peer-key "$key_a" --mediator "$pub_ip:$port" --timeout 90 --echo \
    >"$logs/peer-B.log" 2>"$logs/peer-B.err" &
peer=$!
pids+=("$peer")

rc_board=0 rc_peer=0
wait "$qemu" || rc_board=$?
wait "$peer" || rc_peer=$?
wall_ms=$((($(date +%s%N) - t0) / 1000000))

# --- report and verdict --------------------------------------------------------------------------------
echo "-- board (QEMU mps2-an386), exit $rc_board"
tr -d '\r' <"$logs/board.log" | sed 's/^/    /'
echo "-- host peer B, exit $rc_peer"
sed 's/^/    /' "$logs/peer-B.log"
[ -s "$logs/peer-B.err" ] && tail -n 20 "$logs/peer-B.err" | sed 's/^/    /'
echo "-- mediator (last lines)"
tail -n 6 "$logs/mediator.log" | sed 's/^/    /'

fail=()
console=$(tr -d '\r' <"$logs/board.log")
[ "$rc_board" = 0 ] || fail+=("QEMU exited $rc_board")
[ "$rc_peer" = 0 ] || fail+=("host peer exited $rc_peer")
for line in 'p2psc: registered' 'p2psc: matched peer at ' 'p2psc: authenticated ' 'echo: ok'; do
    grep -q "^$line" <<<"$console" || fail+=("board never printed '$line'")
done
grep -q 'peer closed; echo ok' "$logs/peer-B.log" || fail+=("host peer did not echo")
fp_board=$(grep -o 'session [0-9a-f]*' <<<"$console" | head -1 || true)
fp_peer=$(grep -o 'session [0-9a-f]*' "$logs/peer-B.log" | head -1 || true)
[ -n "$fp_board" ] && [ "$fp_board" = "$fp_peer" ] ||
    fail+=("session fingerprints differ or missing ('$fp_board' vs '$fp_peer')")

echo "== board-e2e: $(grep -m1 '^p2psc: connected' <<<"$console" || echo 'board not connected'); wall $wall_ms ms"
[ "$keep_logs" = 1 ] && echo "   logs in $logs"
if [ ${#fail[@]} -eq 0 ]; then
    echo "RESULT: PASS board-e2e (QEMU mps2-an386 <-> host peer through two NATs)"
    exit 0
fi
printf 'RESULT: FAIL board-e2e: %s\n' "$(IFS=';'; echo "${fail[*]}")"
exit 1
