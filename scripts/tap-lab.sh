#!/usr/bin/env bash
# p2psc through real Linux NATs: two peers, each in its own home network behind its own nftables NAT
# router, the real `p2psc-mediator` on a public segment (TEST-NET-3), and a userspace delaying relay on
# each router's uplink (this kernel has no netem). Each peer is a `host-sim tap peer` (smoltcp on a TAP
# device: the firmware's code) or, with --peer-a/--peer-b kernel, the `p2psc` tool (p2psc-tokio on the
# kernel's own sockets) in a Linux host of its own on the home LAN. Run as root.
#
#   scripts/tap-lab.sh SCENARIO [OPTIONS]
#
# Scenarios (each sets defaults the options below can override):
#   port-preserving-drop   plain masquerade on both routers; both drop unsolicited inbound. Expect success.
#   port-preserving-rst    plain masquerade, no filter: a router's own stack answers an early SYN with RST.
#                          Peer B stalls 800 ms after the Match, so A's first SYN meets B's router before B
#                          has dialled and is reset (and the RST closes A's router's entry too): the
#                          connector must recover, both SYNs leaving within one router-to-router delay
#                          of each other at a slot of the shared retry schedule. Expect success.
#   symmetric              A's router maps every connection to a random port (masquerade fully-random);
#                          B's is port-preserving. The mapping probe (protocol §14.2) finds A's mapping
#                          Dependent and B's Independent, so the pair punches with the relay as fallback
#                          (§14.3): no SYN of A's reaches B through B's filter, and at the fallback deadline
#                          both ask the mediator to relay. Expect success, path relayed.
#   symmetric-both         Both routers fully-random: both mappings Dependent, so both peers ask for the
#                          relay at once, without a punch. Expect success, path relayed.
#   same-lan-race          Both peers on one home LAN behind router A (no router B): A on tap0 at .2, B on
#                          tap1 at .3. Same public address, so they race the LAN and the public path. B
#                          (--announcer) tells A its MAC until the Match (`--announce-to`, unsolicited ARP
#                          replies): at the start time A's SYN goes straight out, while B's own SYN to A
#                          still waits for ARP. Expect success (over the LAN; router A does not hairpin).
#   all                    The first four in turn; exits non-zero if any fails.
#
# scripts/tap-late.sh runs the late-peer and same-LAN race matrix (many runs in parallel) on top of this;
# scripts/tap-latency.sh the set-up latency of each pairing of peer kinds (runs one at a time).
#
# Options:
#   --peer-a|--peer-b smoltcp|kernel      what each peer is (default smoltcp). Peer A sends a message and
#                                         expects it back, peer B echoes; both check the bytes (a kernel
#                                         peer: `p2psc pipe`, its bytes compared with `cmp`;
#                                         scripts/lib/labpeers.sh)
#   --plaintext                           both peers carry plaintext instead of the secure channel
#   --nat-a|--nat-b port-preserving|random|fully-random|symmetric   masquerade flavour per router
#   --fw-a|--fw-b drop|none               home-router firewall on the WAN side
#   --delay-a-ms|--delay-b-ms N           one-way delay of each router's uplink relay (default 20 / 5)
#   --stall-a-ms|--stall-b-ms N           peer stops polling for N ms after the Match (a slow device). A
#                                         kernel peer cannot stall itself: the lab stops it (SIGSTOP) while
#                                         it waits for its Match and resumes it N ms after B's, so only a
#                                         kernel peer A (the leader, which registers first) can be late
#   --stagger-ms N                        B starts N ms after A, so A leads (default 300)
#   --announcer a|b                       same-lan-race: the peer that tells the other its MAC, and so
#                                         still has to ARP itself (default b, the follower; a: the leader).
#                                         A kernel peer is told with a permanent neighbour entry; a kernel
#                                         announcer to a smoltcp peer is not possible (labpeers.sh)
#   --expect success|ERROR                e.g. --expect PunchFailed (the peers' typed ConnectError)
#   --expect-path direct|relayed|any      the path both peers must report when they connect (default:
#                                         the scenario's; relayed for the symmetric ones, else direct)
#   --relay fallback|only|off             both peers' relay mode (protocol §14; default fallback)
#   --timeout S                           connector deadline per peer (default 30)
#   --punch-timeout S                     connector punch deadline (default: the connector's, 15)
#   --peer-arg ARG                        one more argument for both `host-sim tap peer`s (repeatable), e.g.
#                                         the shared retry schedule: --peer-arg --dial-gap-ms=20-60,
#                                         --listen-gap-ms=100-300, --slot-skew-us=3000, --jitter-us=500
#   --prefix P                            namespace prefix (default p2l<PID>-); must be unique per run
#   --logs DIR                            keep logs (and pcaps) in DIR (default: a temp dir, removed)
#   --pcap                                tcpdump both routers' WAN and LAN into the log dir; print excerpts
#   --host-sim PATH | --mediator-bin PATH | --p2psc PATH
#                                         binaries (default: $CARGO_TARGET_DIR or target/, debug)
#   --build                               cargo build -p host-sim -p p2psc-mediator -p p2psc-tokio first
#   -q | --quiet                          print only the summary, not the peers' logs
#   -v | --verbose                        peers log p2psc and smoltcp debug lines (their stderr, in the log dir)
#
# Exit: 0 the outcome matched --expect; 1 it did not; 2 usage; 3 setup failed (not root, tool missing).
# Everything runs in namespaces named PREFIX*; all of them, and every process in them, are removed on
# exit, on Ctrl-C and on SIGTERM. Addresses: public 203.0.113.0/24 (TEST-NET-3, mediator .10, router A .1,
# router B .2); both homes 192.168.1.0/24 (router .1, peer .2), the same on purpose (same-lan-race: one
# home, peers .2 and .3); a kernel peer's host is namespace PREFIXhostA/B, bridged into its home. A peer
# that panics is reported with its message (stderr in the log dir).
#
# The summary ends with one `PEER SIDE KIND: …` line per peer (connected, data checked, SYN attempts,
# ms from the Match to authenticated) and, when both connected through two routers without a stall, the
# `SETUP` line: the set-up latency, max over the peers of (the relay's one-way delay, mediator to peer, +
# that peer's Match-to-authenticated time) against its limit 0.5 x mediator RTT + 1.5 x peer RTT (with
# unequal delays: the farther peer's one-way delay + 1.5 x peer RTT), the host-sim figure's definition.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/netlab.sh
. "$here/lib/netlab.sh"
# shellcheck source=SCRIPTDIR/lib/labpeers.sh
. "$here/lib/labpeers.sh"

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "tap-lab: $*" >&2; exit 3; }

[ $# -ge 1 ] || { usage >&2; exit 2; }
scenario=$1
shift
case "$scenario" in -h|--help) usage; exit 0 ;; esac

# --- defaults, then the scenario's, then the options ------------------------------------------------
nat_a=port-preserving nat_b=port-preserving fw_a=drop fw_b=drop
delay_a=20 delay_b=5 stall_a=0 stall_b=0 stagger=300 expect=success expect_path=direct relay=fallback
timeout_s=30 punch_timeout='' peer_args=() prefix="p2l$$-" logs='' pcap=0 build=0 quiet=0 verbose=0
same_lan=0 announcer=B kind_a=smoltcp kind_b=smoltcp plaintext=0
target_dir=${CARGO_TARGET_DIR:-$root/target}
host_sim=${HOST_SIM:-$target_dir/debug/host-sim}
mediator_bin=${P2PSC_MEDIATOR_BIN:-$target_dir/debug/p2psc-mediator}
p2psc_bin=${P2PSC_BIN:-$target_dir/debug/p2psc}

case "$scenario" in
    port-preserving-drop) ;;
    port-preserving-rst) fw_a=none fw_b=none stall_b=800 ;;
    symmetric) nat_a=fully-random expect_path=relayed ;;
    symmetric-both) nat_a=fully-random nat_b=fully-random expect_path=relayed ;;
    same-lan-race) same_lan=1 ;;
    all)
        rc=0
        results=()
        for s in port-preserving-drop port-preserving-rst symmetric symmetric-both; do
            if "$0" "$s" "$@"; then results+=("PASS $s"); else rc=1; results+=("FAIL $s"); fi
        done
        printf '\n== tap-lab summary ==\n'
        printf '  %s\n' "${results[@]}"
        exit $rc
        ;;
    *) echo "tap-lab: unknown scenario $scenario" >&2; usage >&2; exit 2 ;;
esac

while [ $# -gt 0 ]; do
    opt=$1
    case "$opt" in
        --pcap) pcap=1; shift; continue ;;
        --plaintext) plaintext=1; shift; continue ;;
        --build) build=1; shift; continue ;;
        -q|--quiet) quiet=1; shift; continue ;;
        -v|--verbose) verbose=1; shift; continue ;;
        -h|--help) usage; exit 0 ;;
    esac
    [ $# -ge 2 ] || { echo "tap-lab: $opt needs a value" >&2; exit 2; }
    val=$2
    shift 2
    case "$opt" in
        --peer-a) kind_a=$val ;;
        --peer-b) kind_b=$val ;;
        --nat-a) nat_a=$val ;;
        --nat-b) nat_b=$val ;;
        --fw-a) fw_a=$val ;;
        --fw-b) fw_b=$val ;;
        --delay-a-ms) delay_a=$val ;;
        --delay-b-ms) delay_b=$val ;;
        --stall-a-ms) stall_a=$val ;;
        --stall-b-ms) stall_b=$val ;;
        --stagger-ms) stagger=$val ;;
        --announcer) announcer=${val^^} ;;
        --expect) expect=$val ;;
        --expect-path) expect_path=$val ;;
        --relay) relay=$val ;;
        --timeout) timeout_s=$val ;;
        --punch-timeout) punch_timeout=$val ;;
        --peer-arg) peer_args+=("$val") ;;
        --prefix) prefix=$val ;;
        --logs) logs=$val ;;
        --host-sim) host_sim=$val ;;
        --mediator-bin) mediator_bin=$val ;;
        --p2psc) p2psc_bin=$val ;;
        *) echo "tap-lab: unknown option $opt" >&2; exit 2 ;;
    esac
done

for v in "$nat_a" "$nat_b"; do
    case "$v" in port-preserving|random|fully-random|symmetric) ;; *) echo "tap-lab: bad NAT $v" >&2; exit 2 ;; esac
done
for v in "$fw_a" "$fw_b"; do
    case "$v" in drop|none) ;; *) echo "tap-lab: bad firewall $v" >&2; exit 2 ;; esac
done
for v in "$delay_a" "$delay_b" "$stall_a" "$stall_b" "$stagger" "$timeout_s" ${punch_timeout:+"$punch_timeout"}; do
    case "$v" in ''|*[!0-9]*) echo "tap-lab: not a number: $v" >&2; exit 2 ;; esac
done
case "$prefix" in ''|*[!A-Za-z0-9_.-]*) echo "tap-lab: bad prefix $prefix" >&2; exit 2 ;; esac
case "$announcer" in A|B) ;; *) echo "tap-lab: bad --announcer $announcer (a or b)" >&2; exit 2 ;; esac
for v in "$kind_a" "$kind_b"; do
    case "$v" in smoltcp|kernel) ;; *) echo "tap-lab: bad peer kind $v (smoltcp or kernel)" >&2; exit 2 ;; esac
done
if [ "$kind_b" = kernel ] && [ "$stall_b" != 0 ]; then
    echo "tap-lab: a kernel peer B cannot be late (--stall-b-ms): only a kernel peer A, stopped while it waits" >&2
    exit 2
fi

# --- prerequisites -------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, nftables, TAP devices)"
for tool in ip nft timeout ss; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install iproute2 nftables coreutils)"
done
[ -c /dev/net/tun ] || die "/dev/net/tun is missing"
if [ "$pcap" = 1 ]; then command -v tcpdump >/dev/null || die "tcpdump is missing (--pcap)"; fi
if [ "$build" = 1 ]; then
    (cd "$root" && cargo build -q -p host-sim -p p2psc-mediator -p p2psc-tokio) || die "build failed"
fi
[ -x "$host_sim" ] || die "no host-sim binary at $host_sim (--build, or cargo build -p host-sim)"
[ -x "$mediator_bin" ] || die "no p2psc-mediator binary at $mediator_bin (--build, or cargo build -p p2psc-mediator)"
if [ "$kind_a" = kernel ] || [ "$kind_b" = kernel ]; then
    [ -x "$p2psc_bin" ] || die "no p2psc binary at $p2psc_bin (--build, or cargo build -p p2psc-tokio)"
fi

# --- the lab: namespaces, NAT routers, relays, mediator (scripts/lib/netlab.sh) ------------------------
netlab_init tap-lab die

declare -A nat=([A]=$nat_a [B]=$nat_b)
declare -A fw=([A]=$fw_a [B]=$fw_b)
declare -A delay=([A]=$delay_a [B]=$delay_b)
declare -A stall=([A]=$stall_a [B]=$stall_b)

declare -A kind=([A]=$kind_a [B]=$kind_b)

echo "== tap-lab $scenario: peers A $kind_a, B $kind_b$([ "$plaintext" = 1 ] && echo ' (plaintext)'); router A ${nat[A]}/${fw[A]} +${delay[A]} ms, router B ${nat[B]}/${fw[B]} +${delay[B]} ms; expect $expect (namespaces ${prefix}*)"

topology=(--relay --static-arp --nat-a "$nat_a" --fw-a "$fw_a" --nat-b "$nat_b" --fw-b "$fw_b")
[ "$same_lan" = 1 ] && topology+=(--same-lan)
netlab_topology "${topology[@]}"
# Where each peer lives: namespace, TAP, address (same-lan-race: B beside A in home A).
declare -A home=([A]=homeA [B]=homeB) tap=([A]=tap0 [B]=tap0) ip=([A]=$peer_ip [B]=$peer_ip)
if [ "$same_lan" = 1 ]; then
    home[B]=homeA tap[B]=tap1 ip[B]=$second_peer_ip
fi
labpeer_place
labpeer_neighbours || exit 2

# --- processes -----------------------------------------------------------------------------------------
netlab_start_relays "$host_sim" "$delay_a" "$delay_b"
netlab_start_mediator "$mediator_bin"
wait_for "the mediator to listen on $pub_ip:$port" 100 netlab_mediator_listening
kill -0 "$mediator_pid" 2>/dev/null || die "the mediator exited: $(cat "$logs/mediator.log")"
netlab_wait_relays

# Captures: each router's WAN and LAN (TCP); with same-lan-race also everything on peer A's TAP (the
# peer-to-peer frames and ARP, which the router never sees).
captures=()
if [ "$pcap" = 1 ]; then
    for side in "${netlab_sides[@]}"; do
        for dev in wan lan; do
            captures+=("nat$side-$dev")
            start_bg "$logs/tcpdump-nat$side-$dev.log" "nat$side" tcpdump -i "$dev" -n --immediate-mode -U -w "$logs/nat$side-$dev.pcap" tcp
        done
    done
    if [ "$same_lan" = 1 ]; then
        # Peer A's own port: its TAP, or its kernel host's interface.
        lan_port=(homeA tap0)
        [ "$kind_a" = kernel ] && lan_port=(hostA eth0)
        captures+=("${lan_port[0]}-${lan_port[1]}")
        start_bg "$logs/tcpdump-${captures[-1]}.log" "${lan_port[0]}" tcpdump -i "${lan_port[1]}" -n --immediate-mode -U -w "$logs/${captures[-1]}.pcap" tcp or arp
    fi
    wait_for "tcpdump" 50 sh -c "grep -l 'listening on' '$logs'/tcpdump-*.log | wc -l | grep -qx ${#captures[@]}"
fi

labpeer_identities || die "cannot make the peers' keys"
labpeer_message
t0=$(date +%s%N)
labpeer_start A
# A late kernel peer A is stopped once registered; B starts after that.
[ "$kind_a" = kernel ] && [ "$stall_a" != 0 ] && labpeer_stall_kernel_a
sleep "$(awk "BEGIN { print $stagger / 1000 }")"
labpeer_start B
[ "$kind_a" = kernel ] && [ "$stall_a" != 0 ] && labpeer_resume_kernel_a

rc_a=0 rc_b=0
wait "${peer_pid[A]}" || rc_a=$?
wait "${peer_pid[B]}" || rc_b=$?
t1=$(date +%s%N)
wall_ms=$(((t1 - t0) / 1000000))

# Router state before teardown (conntrack sees the punched connection).
if command -v conntrack >/dev/null; then
    for side in "${netlab_sides[@]}"; do
        nx "nat$side" conntrack -L -p tcp >"$logs/conntrack-$side.txt" 2>/dev/null || true
    done
fi
# Stop relays, mediator and captures gracefully (they print counters / flush) before the cleanup.
[ "$pcap" = 1 ] && sleep 0.3
netlab_stop_processes

# --- report --------------------------------------------------------------------------------------------
show() { sed 's/^/    /' "$1"; }
last_stamp() { grep -o '^\[ *[0-9.]*s\]' "$1" | tail -1 | tr -d '[] '; }
# A Rust panic in a peer's stderr: "LOCATION: MESSAGE" (the path shortened to crate/src/…), or nothing.
panic_of() {
    grep -A1 -m1 "panicked at" "$1" 2>/dev/null | sed -e 's/.*panicked at //' -e 's#^/.*/\([^/]*/src/\)#\1#' | paste -sd ' ' || true
}
declare -A rc_of=([A]=$rc_a [B]=$rc_b)
for side in A B; do
    log=$logs/peer-$side.log
    if [ "${kind[$side]}" = kernel ]; then
        echo "-- peer $side: exit ${rc_of[$side]} (kernel: p2psc pipe)"
    else
        echo "-- peer $side: exit ${rc_of[$side]}, last line at $(last_stamp "$log")"
    fi
    if [ "$quiet" = 0 ]; then
        show "$log"
        [ -s "$logs/peer-$side.err" ] && { echo "   stderr:"; tail -n 20 "$logs/peer-$side.err" | sed 's/^/    /'; }
    fi
done
[ "$quiet" = 0 ] && [ -s "$logs/stall.log" ] && show "$logs/stall.log"
if [ "$quiet" = 0 ]; then
    for side in "${netlab_sides[@]}"; do
        echo "-- relay $side"
        show "$logs/relay-$side.log"
        if [ -s "$logs/conntrack-$side.txt" ]; then
            echo "-- conntrack router $side"
            show "$logs/conntrack-$side.txt"
        fi
    done
    echo "-- mediator (last lines)"
    tail -n 8 "$logs/mediator.log" | sed 's/^/    /'
fi
for capture in "${captures[@]}"; do
    echo "-- tcpdump $capture (first 30 packets)"
    tcpdump -enr "$logs/$capture.pcap" -tt 2>/dev/null | head -30 | sed 's/^/    /'
done

# The set-up latency (see the header) when both peers connected through two routers. Relayed
# (protocol §14.7): from the mediator's second verified registration, the Match reaches each peer and
# each peer's first flight crosses the mediator to the other: max(2 dA + dB, 2 dB + dA), i.e. 1.5 RTT
# to the mediator when the delays are equal; the reference target is twice that.
setup_latency_line() {
    local am_a am_b
    am_a=$(labpeer_after_match A) am_b=$(labpeer_after_match B)
    [ "$same_lan" = 0 ] && [ "$stall_a" = 0 ] && [ "$stall_b" = 0 ] && [ -n "$am_a" ] && [ -n "$am_b" ] || return 0
    if [ "$(labpeer_path A)" = relayed ]; then
        awk -v da="$delay_a" -v db="$delay_b" -v a="$am_a" -v b="$am_b" 'BEGIN {
            sa = da + a; sb = db + b; setup = sa > sb ? sa : sb
            la = 2 * da + db; lb = 2 * db + da; limit = la > lb ? la : lb
            printf "SETUP %.0f ms, limit %.0f ms (%+.0f ms); mediator one-way A %d, B %d ms, relayed target %.0f ms; Match to authenticated A %d, B %d ms\n",
                setup, limit, setup - limit, da, db, 2 * limit, a, b
        }'
        return 0
    fi
    awk -v da="$delay_a" -v db="$delay_b" -v a="$am_a" -v b="$am_b" 'BEGIN {
        sa = da + a; sb = db + b; setup = sa > sb ? sa : sb
        far = da > db ? da : db; peer_rtt = 2 * (da + db); limit = far + 1.5 * peer_rtt
        printf "SETUP %.0f ms, limit %.0f ms (%+.0f ms); mediator one-way A %d, B %d ms, peer RTT %d ms; Match to authenticated A %d, B %d ms\n",
            setup, limit, setup - limit, da, db, peer_rtt, a, b
    }'
}

# --- verdict -------------------------------------------------------------------------------------------
fail=()
declare -A panicked=([A]=$(panic_of "$(labpeer_err A)") [B]=$(panic_of "$(labpeer_err B)"))
for side in A B; do
    [ -z "${panicked[$side]}" ] || fail+=("peer $side panicked")
    labpeer_check "$side" "$expect" "${rc_of[$side]}"
    if [ "$expect" = success ] && [ "$expect_path" != any ]; then
        path=$(labpeer_path "$side")
        [ "$path" = "$expect_path" ] || fail+=("peer $side path ${path:-unknown}, expected $expect_path")
    fi
done
# Two smoltcp peers print a tag of the session key; with a kernel peer, the secure channel's records
# opening at all shows that both derived the same key.
if [ "$expect" = success ] && [ "$kind_a" = smoltcp ] && [ "$kind_b" = smoltcp ]; then
    fp_a=$(grep -o 'session [0-9a-f]*' "$logs/peer-A.log" | head -1 || true)
    fp_b=$(grep -o 'session [0-9a-f]*' "$logs/peer-B.log" | head -1 || true)
    [ -n "$fp_a" ] && [ "$fp_a" = "$fp_b" ] || fail+=("session fingerprints differ or missing ('$fp_a' vs '$fp_b')")
fi
outcome() { # outcome SIDE: the peer's first verdict line, or its panic
    local line
    line=$(grep -E 'authenticated:|connect failed|^p2psc: authenticated in|^p2psc: error' "$logs/peer-$1.log" | head -1 | cut -c1-110 || true)
    if [ -n "${panicked[$1]}" ]; then line="${line:+$line; }PANIC ${panicked[$1]}"; fi
    echo "${line:-no outcome}"
}
echo "== $scenario: A $(outcome A)"
echo "   $scenario: B $(outcome B)"
echo "   SYN attempts A $(labpeer_attempts A), B $(labpeer_attempts B); wall $wall_ms ms"
labpeer_summary A
labpeer_summary B
setup_latency_line
[ "$keep_logs" = 1 ] && echo "   logs in $logs"
if [ ${#fail[@]} -eq 0 ]; then
    echo "RESULT: PASS $scenario (expected $expect)"
    exit 0
fi
printf 'RESULT: FAIL %s: %s\n' "$scenario" "$(IFS=';'; echo "${fail[*]}")"
exit 1
