#!/usr/bin/env bash
# Late peers and the same-LAN race through real Linux NATs: many scripts/tap-lab.sh runs at once, each in
# its own namespaces, and one pass table. CI runs it as root (host-sim/tests/tap.rs). Run as root.
#
#   scripts/tap-late.sh [GROUP…] [OPTIONS]
#
# Groups (default: the first three; the kernel-* groups pair the `p2psc` tool, p2psc-tokio on kernel
# sockets, with a smoltcp peer or another tool: tap-lab.sh --peer-a/--peer-b kernel):
#   late-drop      one peer stops polling 1.5 s or 4 s after the Match (a slow device): A late, then B
#                  late; both routers drop unsolicited inbound (conntrack). The early side's SYNs wait in
#                  the routers' SYN_SENT entries; when it re-dials the same 5-tuple with a fresh ISN, the
#                  late side's SYN can make conntrack judge it out of window.
#   late-rst       the same four, behind routers without a filter: a router's own stack answers the early
#                  SYNs with RST until the late peer dials.
#   same-lan-race  tap-lab.sh same-lan-race: both peers on one LAN behind one router, and one already
#                  knows the other's MAC when the punch starts while the other still has to ARP: the
#                  leader has to ARP (same-lan-race-leader, --announcer a), or the follower (-follower).
#   kernel-late-drop, kernel-late-rst
#                  the late peers with a kernel peer (1.5 s and 4 s, or --delays): ks-A (kernel A late: the
#                  lab stops the tool while it waits for its Match), ks-B (smoltcp B late, kernel A early),
#                  sk-A (smoltcp A late, kernel B early), kk-A (two tools, A late). A kernel B cannot be
#                  made late.
#   kernel-same-lan
#                  the same-LAN race with a kernel peer: the smoltcp peer has to ARP while the tool knows
#                  its MAC (ks-follower: kernel leader; sk-leader: smoltcp leader); two tools, either
#                  one having to ARP (kk-leader, kk-follower)
# These matrices test the punch itself, so every run is protocol version 1 (`tap-lab.sh --relay off`):
# with the relay as fallback (protocol §14.3) a peer later than the fallback deadline the mediator sets
# (about 3.2 s in this lab) is relayed instead of punched, which is what an application wants but not
# what these scenarios are for; `tap-lab.sh symmetric` and `symmetric-both` test the relay.
# Every run must connect and move its bytes both ways (checked at both ends). 2 delays x 2 sides x 2
# router kinds + 2 races = 10 scenarios; with --runs 5, 50 runs. The kernel groups: 4 per delay and
# router kind + 4 races = 20 scenarios.
#
# Options:
#   --runs N                 runs per scenario (default 5)
#   --jobs N                 runs at a time (default 8; each is 2 peers, 1-2 relays, 1 mediator, mostly idle)
#   --only NAME              only the scenarios whose name contains NAME (repeatable), e.g. late-drop-B4000
#   --delays MS,MS,…         how late the late peer is, in ms (default 1500,4000; the full table of
#                            issue-level claims: --delays 500,1500,2000,4000,8000)
#   --logs DIR               keep every run's logs in DIR/SCENARIO.RUN (default: a temp dir, removed)
#   --host-sim PATH | --mediator-bin PATH | --p2psc PATH
#                            binaries (default: $CARGO_TARGET_DIR or target/, debug)
#   --build                  cargo build -p host-sim -p p2psc-mediator -p p2psc-tokio first
#   --prefix P               namespace prefix; run K uses PK- (default p2k<PID>-)
#
# Prints one line per finished run, then the table: scenario, runs, connected, echo ok, SYN attempts
# (range over runs, each peer's highest attempt number), wall time per run (range), and every failure
# (connect error, exchange error, panic message). Each row names the tap-lab.sh command that reproduces
# one run alone. Exit: 0 every run passed; 1 a run failed; 2 usage; 3 cannot run (not root, tool missing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
lab=$here/tap-lab.sh

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "tap-late: $*" >&2; exit 3; }

groups=() only=() runs=5 jobs=8 logs='' build=0 prefix="p2k$$-" delays=1500,4000
target_dir=${CARGO_TARGET_DIR:-$root/target}
host_sim=${HOST_SIM:-$target_dir/debug/host-sim}
mediator_bin=${P2PSC_MEDIATOR_BIN:-$target_dir/debug/p2psc-mediator}
p2psc_bin=${P2PSC_BIN:-$target_dir/debug/p2psc}
while [ $# -gt 0 ]; do
    case "$1" in
        late-drop|late-rst|same-lan-race|kernel-late-drop|kernel-late-rst|kernel-same-lan) groups+=("$1"); shift; continue ;;
        --build) build=1; shift; continue ;;
        -h|--help) usage; exit 0 ;;
    esac
    [ $# -ge 2 ] || { echo "tap-late: unknown argument or missing value: $1" >&2; usage >&2; exit 2; }
    case "$1" in
        --runs) runs=$2 ;;
        --jobs) jobs=$2 ;;
        --only) only+=("$2") ;;
        --delays) delays=$2 ;;
        --logs) logs=$2 ;;
        --host-sim) host_sim=$2 ;;
        --mediator-bin) mediator_bin=$2 ;;
        --p2psc) p2psc_bin=$2 ;;
        --prefix) prefix=$2 ;;
        *) echo "tap-late: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
for v in "$runs" "$jobs"; do
    case "$v" in ''|0|*[!0-9]*) echo "tap-late: not a positive number: $v" >&2; exit 2 ;; esac
done
case "$delays" in ''|,*|*,|*,,*|*[!0-9,]*) echo "tap-late: bad --delays $delays" >&2; exit 2 ;; esac
case "$prefix" in ''|*[!A-Za-z0-9_.-]*) echo "tap-late: bad prefix $prefix" >&2; exit 2 ;; esac
[ ${#groups[@]} -gt 0 ] || groups=(late-drop late-rst same-lan-race)

[ "$(id -u)" = 0 ] || die "must run as root (network namespaces, nftables, TAP devices)"
# `wait -n -p` (which run finished) is bash 5.1.
((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))) || die "needs bash 5.1 or later (wait -n -p)"
if [ "$build" = 1 ]; then
    (cd "$root" && cargo build -q -p host-sim -p p2psc-mediator -p p2psc-tokio) || die "build failed"
fi
[ -x "$host_sim" ] || die "no host-sim binary at $host_sim (--build, or cargo build -p host-sim)"
[ -x "$mediator_bin" ] || die "no p2psc-mediator binary at $mediator_bin (--build, or cargo build -p p2psc-mediator)"
if [[ " ${groups[*]} " == *" kernel-"* ]]; then
    [ -x "$p2psc_bin" ] || die "no p2psc binary at $p2psc_bin (--build, or cargo build -p p2psc-tokio)"
fi

# --- the scenarios: name and tap-lab.sh arguments ------------------------------------------------------
names=()
declare -A lab_args=()
add_scenario() { # add_scenario NAME TAP-LAB-ARGS…
    local name=$1 pattern
    shift
    if [ ${#only[@]} -gt 0 ]; then
        for pattern in "${only[@]}"; do [[ $name == *"$pattern"* ]] && break; pattern=''; done
        [ -n "$pattern" ] || return 0
    fi
    names+=("$name")
    lab_args[$name]="$* --relay off"
}
for group in "${groups[@]}"; do
    case "$group" in
        late-drop | late-rst)
            for late in A B; do
                for ms in ${delays//,/ }; do
                    stall=(--stall-a-ms 0 --stall-b-ms 0)
                    if [ "$late" = A ]; then stall[1]=$ms; else stall[3]=$ms; fi
                    if [ "$group" = late-drop ]; then
                        add_scenario "$group-$late$ms" port-preserving-drop "${stall[@]}"
                    else
                        add_scenario "$group-$late$ms" port-preserving-rst "${stall[@]}"
                    fi
                done
            done
            ;;
        same-lan-race)
            add_scenario same-lan-race-leader same-lan-race --announcer a
            add_scenario same-lan-race-follower same-lan-race --announcer b
            ;;
        kernel-late-drop | kernel-late-rst)
            base=port-preserving-drop
            [ "$group" = kernel-late-rst ] && base=port-preserving-rst
            for ms in ${delays//,/ }; do
                add_scenario "${group#kernel-}-ks-A$ms" "$base" --peer-a kernel --stall-a-ms "$ms" --stall-b-ms 0
                add_scenario "${group#kernel-}-ks-B$ms" "$base" --peer-a kernel --stall-a-ms 0 --stall-b-ms "$ms"
                add_scenario "${group#kernel-}-sk-A$ms" "$base" --peer-b kernel --stall-a-ms "$ms" --stall-b-ms 0
                add_scenario "${group#kernel-}-kk-A$ms" "$base" --peer-a kernel --peer-b kernel --stall-a-ms "$ms" --stall-b-ms 0
            done
            ;;
        kernel-same-lan)
            add_scenario same-lan-ks-follower same-lan-race --peer-a kernel --announcer b
            add_scenario same-lan-sk-leader same-lan-race --peer-b kernel --announcer a
            add_scenario same-lan-kk-leader same-lan-race --peer-a kernel --peer-b kernel --announcer a
            add_scenario same-lan-kk-follower same-lan-race --peer-a kernel --peer-b kernel --announcer b
            ;;
    esac
done
[ ${#names[@]} -gt 0 ] || { echo "tap-late: no scenario matches --only ${only[*]}" >&2; exit 2; }

keep_logs=1
if [ -z "$logs" ]; then
    logs=$(mktemp -d "${TMPDIR:-/tmp}/tap-late.XXXXXX")
    keep_logs=0
fi
mkdir -p "$logs"

# --- runs, at most $jobs at a time ---------------------------------------------------------------------
# Each run is one tap-lab.sh process; stopping it (SIGTERM) makes it remove its namespaces and processes.
declare -A running=() # PID -> run id (SCENARIO.RUN)
# shellcheck disable=SC2317 # called from the traps
stop_runs() {
    local pid
    for pid in "${!running[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${!running[@]}"; do wait "$pid" 2>/dev/null || true; done
    running=()
}
# Each run removes its own namespaces; anything left under our prefix (a run stopped while it built its
# lab, or a lab bug) is removed here, by name, with whatever runs in it.
# shellcheck disable=SC2317 # called from cleanup
sweep_namespaces() {
    local left pid
    for left in $(ip netns list | awk -v p="$prefix" 'index($1, p) == 1 { print $1 }'); do
        echo "tap-late: namespace $left was left behind; removing it" >&2
        for pid in $(ip netns pids "$left"); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$left" || true
    done
}
# shellcheck disable=SC2317 # called from the trap
cleanup() {
    stop_runs
    sweep_namespaces
    if [ "$keep_logs" = 0 ]; then rm -rf "$logs"; fi
}
trap cleanup EXIT
trap 'echo "tap-late: interrupted" >&2; exit 130' INT
trap 'echo "tap-late: terminated" >&2; exit 143' TERM

ids=()
for name in "${names[@]}"; do
    for run in $(seq "$runs"); do ids+=("$name.$run"); done
done
total=${#ids[@]}
done_count=0

# Reap one finished run: record its exit status, print its result line.
reap_one() {
    local pid='' rc=0 id
    wait -n -p pid "${!running[@]}" || rc=$?
    [ -n "$pid" ] || return 0
    id=${running[$pid]}
    unset "running[$pid]"
    echo "$rc" >"$logs/$id.rc"
    done_count=$((done_count + 1))
    printf '[%2d/%d] %-25s %s\n' "$done_count" "$total" "$id" \
        "$(grep -h '^RESULT:' "$logs/$id.out" | cut -c1-60 || echo "exit $rc, no result (see $logs/$id.out)")"
}

echo "== tap-late: ${#names[@]} scenarios x $runs runs = $total runs, $jobs at a time (namespaces ${prefix}*)"
t0=$(date +%s%N)
k=0
for id in "${ids[@]}"; do
    while [ ${#running[@]} -ge "$jobs" ]; do reap_one; done
    name=${id%.*}
    # shellcheck disable=SC2086 # lab_args holds words without spaces
    "$lab" ${lab_args[$name]} -q --prefix "${prefix}$k-" --logs "$logs/$id" \
        --host-sim "$host_sim" --mediator-bin "$mediator_bin" --p2psc "$p2psc_bin" >"$logs/$id.out" 2>&1 </dev/null &
    running[$!]=$id
    k=$((k + 1))
done
while [ ${#running[@]} -gt 0 ]; do reap_one; done
t1=$(date +%s%N)
sweep_namespaces
wall_s=$(awk "BEGIN { printf \"%.1f\", ($t1 - $t0) / 1e9 }")

# --- the table -----------------------------------------------------------------------------------------
# The outcome of one run, from the `PEER` lines tap-lab.sh printed and its peers' logs: sets connected,
# echoed (0/1), syn_a, syn_b, wall_ms and appends its failures to `problems` ("A PunchFailed",
# "B panicked: …", "A p2psc: error: …").
inspect_run() {
    local dir=$logs/$1 out=$logs/$1.out side log line
    # peer_field SIDE FIELD: a number from the side's PEER line.
    peer_field() { sed -n "s/^PEER $1 [a-z]*: .*$2 \([0-9]*\).*/\1/p" "$out" | head -1; }
    connected=0 echoed=0
    [ "$(peer_field A connected)" = 1 ] && [ "$(peer_field B connected)" = 1 ] && connected=1
    [ "$(peer_field A data)" = 1 ] && [ "$(peer_field B data)" = 1 ] && echoed=1
    syn_a=$(peer_field A attempts) syn_b=$(peer_field B attempts)
    syn_a=${syn_a:-0} syn_b=${syn_b:-0}
    wall_ms=$(grep -o 'wall [0-9]* ms' "$out" | tr -dc '0-9' || true)
    for side in A B; do
        log=$dir/peer-$side.log
        line=$(grep -o 'connect failed: [A-Za-z]*\(([A-Za-z]*)\)\{0,1\}' "$log" 2>/dev/null | head -1 || true)
        [ -n "$line" ] && problems+=("$side ${line#connect failed: }")
        line=$(grep -o 'exchange failed: .*\|^p2psc: error: .*' "$log" 2>/dev/null | head -1 | cut -c1-90 || true)
        [ -n "$line" ] && problems+=("$side $line")
        line=$(cat "$dir/peer-$side.err" "$log" 2>/dev/null | grep -A1 -m1 'panicked at' | sed -e 's/.*panicked at //' \
            -e 's#^/.*/\([^/]*/src/\)#\1#' | paste -sd ' ' || true)
        [ -n "$line" ] && problems+=("$side panicked at $line")
    done
    if [ "$(cat "$logs/$1.rc")" != 0 ] && [ ${#problems[@]} -eq 0 ]; then
        line=$(grep -h 'RESULT:\|tap-lab:' "$out" | head -1 || true)
        problems+=("tap-lab.sh exited $(cat "$logs/$1.rc"): ${line:-no verdict (see its .out)}")
    fi
    return 0
}
range() { sort -n | sed -n '1p;$p' | paste -sd ' ' | awk '{ print ($1 == $2 || $2 == "") ? $1 : $1 "-" $2 }'; }

failed_runs=0
rows=() details=()
for name in "${names[@]}"; do
    n_conn=0 n_echo=0 n_pass=0
    syns_a=() syns_b=() walls=() all_problems=()
    for run in $(seq "$runs"); do
        problems=()
        inspect_run "$name.$run"
        n_conn=$((n_conn + connected)) n_echo=$((n_echo + echoed))
        syns_a+=("$syn_a") syns_b+=("$syn_b")
        [ -n "$wall_ms" ] && walls+=("$(awk "BEGIN { printf \"%.1f\", $wall_ms / 1000 }")")
        if [ "$(cat "$logs/$name.$run.rc")" = 0 ]; then
            n_pass=$((n_pass + 1))
        else
            failed_runs=$((failed_runs + 1))
            for p in "${problems[@]}"; do all_problems+=("run $run: $p"); done
        fi
    done
    verdict=PASS
    [ "$n_pass" = "$runs" ] || verdict=FAIL
    rows+=("$(printf '%-23s %4s %9s %8s %-18s %-11s %s' "$name" "$runs" "$n_conn/$runs" "$n_echo/$runs" \
        "A $(printf '%s\n' "${syns_a[@]}" | range), B $(printf '%s\n' "${syns_b[@]}" | range)" \
        "$(printf '%s\n' "${walls[@]}" | range) s" "$verdict")")
    if [ ${#all_problems[@]} -gt 0 ]; then
        details+=("$name (scripts/tap-lab.sh ${lab_args[$name]}):")
        for p in "${all_problems[@]}"; do details+=("    $p"); done
    fi
done

printf '\n== tap-late: pass table (%s runs in %s s wall, %s at a time)\n' "$total" "$wall_s" "$jobs"
printf '%-23s %4s %9s %8s %-18s %-11s %s\n' scenario runs connected "echo ok" "SYN attempts" "time/run" verdict
printf '%s\n' "${rows[@]}"
if [ ${#details[@]} -gt 0 ]; then
    printf '\n== failures\n'
    printf '  %s\n' "${details[@]}"
fi
printf '\nreproduce one run: scripts/tap-lab.sh ARGS (the ARGS of each scenario:)\n'
for name in "${names[@]}"; do printf '  %-23s %s\n' "$name" "${lab_args[$name]}"; done
[ "$keep_logs" = 1 ] && echo "logs in $logs"
if [ "$failed_runs" -gt 0 ]; then
    echo "RESULT: FAIL tap-late: $failed_runs of $total runs failed"
    exit 1
fi
echo "RESULT: PASS tap-late: all $total runs connected and echoed"
