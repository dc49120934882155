# shellcheck shell=bash
# The NAT lab of scripts/tap-lab.sh and scripts/board-e2e.sh, in network namespaces: sourced (not run) by
# bash scripts that run as root with `set -euo pipefail`. Only the peers are left to the script.
#
#   ns pub (bridge `pub`, $pub_ip/24: the mediator's address)
#     `wanA` in bridge `pub` directly, or with --relay in bridge `segA` <-relay-> TAP `rA0` in bridge `pub`
#   ns natA (router: `wan` $wan_ip[A]/24 on the public segment, `lan` $lan_gw/24, forwarding, nftables
#     masquerade on `wan` and an optional "drop unsolicited inbound" firewall)
#   ns homeA (bridge `lan`: the router's veth `uplink` and TAP `tap0`, for the peer at $peer_ip)
#   and the same for B. Both homes are the same /24 on purpose.
#   With --same-lan there is no B side: both peers share home A, on TAPs `tap0` ($peer_ip) and `tap1`
#   ($second_peer_ip) in its bridge `lan`, behind router A.
#
# Use:
#   prefix=P logs=DIR      namespace prefix, unique per run; log dir ('' for a temp dir, removed on exit)
#   netlab_init NAME [DIE] make the log dir (keep_logs=1 if it was given), set the traps: on EXIT, INT
#                          ("NAME: interrupted", exit 130) and TERM ("NAME: terminated", exit 143) every
#                          process in $pids and in the namespaces is killed and the namespaces deleted.
#                          DIE: a function called with a message when a lab step fails (it should exit);
#                          without it the script exits with the failed step's status, as errexit would.
#   netlab_topology [--relay] [--static-arp] [--same-lan] [--nat-a|--nat-b FLAVOUR] [--fw-a|--fw-b drop|none]
#                          build it; FLAVOUR port-preserving (default), random, fully-random or symmetric;
#                          firewall default drop; --static-arp: fixed MACs and permanent neighbours on the
#                          public segment (no ARP delay through relays, the same timing every run);
#                          --same-lan: only side A, with two peer TAPs (netlab_sides is then (A))
#   netlab_kernel_host NAME HOME CIDR
#                          a Linux host with its own kernel TCP/IP stack on home HOME's LAN: namespace NAME,
#                          veth `eth0` (MAC: netlab_mac_of CIDR) in HOME's bridge `lan`, default route via
#                          the home router; after netlab_topology
#   netlab_start_relays HOST_SIM DELAY_A_MS DELAY_B_MS, then netlab_wait_relays (after --relay)
#   netlab_start_mediator BIN (sets mediator_pid), netlab_mediator_listening (a test for netlab_poll)
#   ns NAME, add_ns NAME, nx NAME CMD…, start_bg LOG NS CMD…, netlab_poll TENTHS CMD…,
#   wait_for WHAT TENTHS CMD…, netlab_stop_processes
# Source it before starting anything (it empties pids). A process the script starts itself goes into
# pids+=(PID) so that the cleanup stops it.

# The lab's addresses (those of the board firmware's defaults too).
# shellcheck disable=SC2034 # used by the scripts that source this
{
    pub_ip=203.0.113.10
    port=7777
    mac_pub=02:00:cb:00:71:0a
    declare -gA wan_ip=([A]=203.0.113.1 [B]=203.0.113.2)
    declare -gA wan_mac=([A]=02:00:cb:00:71:01 [B]=02:00:cb:00:71:02)
    lan_gw=192.168.1.1
    peer_ip=192.168.1.2/24
    # The second peer of a --same-lan topology (TAP `tap1` in home A).
    second_peer_ip=192.168.1.3/24
}

pids=()
netlab_namespaces=()
netlab_cleaned=0
netlab_name=netlab
netlab_die=''
# The routers (and homes) the topology has: A and B, or only A with --same-lan.
netlab_sides=(A B)

# --- bookkeeping and cleanup ---------------------------------------------------------------------------
netlab_init() {
    netlab_name=$1 netlab_die=${2:-}
    keep_logs=1
    if [ -z "$logs" ]; then
        logs=$(mktemp -d "${TMPDIR:-/tmp}/$netlab_name.XXXXXX")
        keep_logs=0
    else
        mkdir -p "$logs"
    fi
    trap netlab_cleanup EXIT
    trap 'netlab_signal interrupted 130' INT
    trap 'netlab_signal terminated 143' TERM
}

# shellcheck disable=SC2317 # called from the traps
netlab_signal() {
    echo "$netlab_name: $1" >&2
    netlab_cleanup
    exit "$2"
}

# shellcheck disable=SC2317 # called from the traps
netlab_cleanup() {
    [ "$netlab_cleaned" = 1 ] && return
    netlab_cleaned=1
    # A signal now (a parent stopping us as we finish) must not cut the cleanup short.
    trap '' INT TERM
    local pid ns left
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for ns in "${netlab_namespaces[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    done
    # Give processes up to 2 s to go, then force.
    for _ in $(seq 20); do
        left=0
        for ns in "${netlab_namespaces[@]}"; do
            [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && left=1
        done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for ns in "${netlab_namespaces[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "${netlab_namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    if [ "$keep_logs" = 0 ]; then rm -rf "$logs"; fi
}

# netlab_fail STATUS MESSAGE: a lab step failed with STATUS; the script's DIE, else exit STATUS.
netlab_fail() {
    if [ -n "$netlab_die" ]; then "$netlab_die" "$2"; fi
    exit "$1"
}

# Stop every started process (SIGTERM: they print counters, flush captures) and reap it.
netlab_stop_processes() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# --- namespaces and processes --------------------------------------------------------------------------
# shellcheck disable=SC2154 # prefix: set by the script
ns() { echo "${prefix}$1"; }
add_ns() {
    local name
    name=$(ns "$1")
    # Recorded before it exists: a signal handled just after `ip netns add` must not leave it behind.
    netlab_namespaces+=("$name")
    if ! ip netns add "$name"; then
        unset 'netlab_namespaces[-1]' # not ours
        netlab_fail 1 "cannot create namespace $name (does it exist? pick another --prefix)"
    fi
    ip -n "$name" link set lo up
    # No IPv6 chatter (router solicitations, DAD) in the captures.
    ip netns exec "$name" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}
# Run a command in a namespace.
nx() { local n; n=$(ns "$1"); shift; ip netns exec "$n" "$@"; }

start_bg() { # start_bg LOG NS CMD…: run CMD in namespace NS in the background, remember its PID
    local log=$1 n=$2
    shift 2
    ip netns exec "$(ns "$n")" "$@" >"$log" 2>&1 &
    pids+=("$!")
}

# Run the command in $2… every 0.1 s until it succeeds (return 0), at most $1 times (return 1).
netlab_poll() {
    local tenths=$1
    shift
    for _ in $(seq "$tenths"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
# Wait (at most $2 tenths of a second) until the command in $3… succeeds.
wait_for() {
    local what=$1
    shift
    netlab_poll "$@" || netlab_fail 1 "timed out waiting for $what"
}

# --- topology ------------------------------------------------------------------------------------------
netlab_topology() {
    local relay=0 static_arp=0 side other masq filter pubns natns homens uplink_br tap
    local -a taps=(tap0)
    local -a mac
    local -A nat=([A]=port-preserving [B]=port-preserving) fw=([A]=drop [B]=drop)
    while [ $# -gt 0 ]; do
        case "$1" in
            --relay) relay=1; shift ;;
            --static-arp) static_arp=1; shift ;;
            --same-lan) netlab_sides=(A); taps=(tap0 tap1); shift ;;
            --nat-a) nat[A]=$2; shift 2 ;;
            --nat-b) nat[B]=$2; shift 2 ;;
            --fw-a) fw[A]=$2; shift 2 ;;
            --fw-b) fw[B]=$2; shift 2 ;;
            *) netlab_fail 2 "netlab_topology: unknown option $1" ;;
        esac
    done

    # The public segment: bridge `pub` with the mediator's address.
    add_ns pub
    pubns=$(ns pub)
    mac=()
    if [ "$static_arp" = 1 ]; then mac=(address "$mac_pub"); fi
    ip -n "$pubns" link add pub "${mac[@]}" type bridge stp_state 0
    ip -n "$pubns" addr add "$pub_ip/24" dev pub
    ip -n "$pubns" link set pub up

    for side in "${netlab_sides[@]}"; do
        add_ns "nat$side"
        add_ns "home$side"
        natns=$(ns "nat$side") homens=$(ns "home$side")

        # Uplink: router `wan` <-veth-> pub `wan$side`, in bridge `pub`, or with a relay in bridge `seg$side`
        # <-relay-> `r${side}0` in bridge `pub`.
        uplink_br=pub
        if [ "$relay" = 1 ]; then
            uplink_br=seg$side
            ip -n "$pubns" link add "$uplink_br" type bridge stp_state 0
            ip -n "$pubns" link set "$uplink_br" up
        fi
        mac=()
        if [ "$static_arp" = 1 ]; then mac=(address "${wan_mac[$side]}"); fi
        ip -n "$natns" link add wan "${mac[@]}" type veth peer name "wan$side" netns "$pubns"
        ip -n "$pubns" link set "wan$side" master "$uplink_br" up
        if [ "$relay" = 1 ]; then
            ip -n "$pubns" tuntap add dev "r${side}0" mode tap
            ip -n "$pubns" tuntap add dev "r${side}1" mode tap
            ip -n "$pubns" link set "r${side}0" master pub up
            ip -n "$pubns" link set "r${side}1" master "$uplink_br" up
        fi

        # Router: wan on the public segment, lan to the home, forwarding, NAT and firewall.
        ip -n "$natns" addr add "${wan_ip[$side]}/24" dev wan
        ip -n "$natns" link set wan up
        ip -n "$natns" link add lan type veth peer name uplink netns "$homens"
        ip -n "$natns" addr add "$lan_gw/24" dev lan
        ip -n "$natns" link set lan up
        nx "nat$side" sysctl -qw net.ipv4.ip_forward=1
        case "${nat[$side]}" in
            port-preserving) masq=masquerade ;;
            random) masq='masquerade random' ;;
            fully-random|symmetric) masq='masquerade fully-random' ;;
            *) netlab_fail 2 "netlab_topology: bad NAT ${nat[$side]}" ;;
        esac
        case "${fw[$side]}" in
            # A home router that drops unsolicited inbound traffic.
            drop) filter='iifname "wan" ct state established,related accept
                iifname "wan" drop' ;;
            none) filter='' ;;
            *) netlab_fail 2 "netlab_topology: bad firewall ${fw[$side]}" ;;
        esac
        nx "nat$side" nft -f - <<EOF || netlab_fail $? "nft rules for router $side"
table ip lab {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" $masq
    }
    chain input {
        type filter hook input priority filter; policy accept;
        $filter
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        $filter
    }
}
EOF

        # Home: bridge `lan` joining the router's veth and the peers' TAPs.
        ip -n "$homens" link add lan type bridge stp_state 0
        ip -n "$homens" link set lan up
        ip -n "$homens" link set uplink master lan up
        for tap in "${taps[@]}"; do
            ip -n "$homens" tuntap add dev "$tap" mode tap
            ip -n "$homens" link set "$tap" master lan up
        done
    done

    if [ "$static_arp" = 1 ]; then
        for side in "${netlab_sides[@]}"; do
            ip -n "$pubns" neigh replace "${wan_ip[$side]}" lladdr "${wan_mac[$side]}" dev pub nud permanent
            ip -n "$(ns "nat$side")" neigh replace "$pub_ip" lladdr "$mac_pub" dev wan nud permanent
            for other in "${netlab_sides[@]}"; do
                if [ "$other" = "$side" ]; then continue; fi
                ip -n "$(ns "nat$side")" neigh replace "${wan_ip[$other]}" lladdr "${wan_mac[$other]}" dev wan nud permanent
            done
        done
    fi
}

# --- kernel hosts --------------------------------------------------------------------------------------
# The MAC of a peer at CIDR's address: 02:00 and the four bytes of the address (`host-sim tap peer`'s default).
netlab_mac_of() { # netlab_mac_of CIDR
    local a b c d
    IFS=. read -r a b c d <<<"${1%/*}"
    printf '02:00:%02x:%02x:%02x:%02x' "$a" "$b" "$c" "$d"
}
# A host whose own kernel stack is the peer (the `p2psc` tool runs there): behind the home's router, as a
# laptop on a home LAN. Its side of the veth is `eth0`; the home's is `v` + NAME, in bridge `lan`.
netlab_kernel_host() { # netlab_kernel_host NAME HOME CIDR
    local name=$1 home=$2 cidr=$3 hostns homens
    add_ns "$name"
    hostns=$(ns "$name") homens=$(ns "$home")
    ip -n "$hostns" link add eth0 address "$(netlab_mac_of "$cidr")" type veth peer name "v$name" netns "$homens"
    ip -n "$homens" link set "v$name" master lan up
    ip -n "$hostns" addr add "$cidr" dev eth0
    ip -n "$hostns" link set eth0 up
    ip -n "$hostns" route add default via "$lan_gw"
}

# --- relays and mediator -------------------------------------------------------------------------------
# The userspace delaying relays (`host-sim tap relay`) on the uplinks of a --relay topology.
netlab_start_relays() { # netlab_start_relays HOST_SIM DELAY_A_MS DELAY_B_MS
    local -A delay=([A]=$2 [B]=$3)
    local side
    for side in "${netlab_sides[@]}"; do
        start_bg "$logs/relay-$side.log" pub "$1" tap relay --a "r${side}0" --b "r${side}1" --delay-ms "${delay[$side]}"
    done
}
# A relay has attached (its TAP in `pub` has carrier).
netlab_relay_up() { [[ $(ip -n "$(ns pub)" link show "r${1}0" 2>/dev/null) != *NO-CARRIER* ]]; }
# The relays attach within milliseconds; the uplinks carry traffic once they have.
netlab_wait_relays() {
    local side
    for side in "${netlab_sides[@]}"; do wait_for "relay $side" 50 netlab_relay_up "$side"; done
}

# The real mediator on $pub_ip:$port in `pub`, logging to $logs/mediator.log.
netlab_start_mediator() { # netlab_start_mediator BIN
    start_bg "$logs/mediator.log" pub "$1" --listen "$pub_ip:$port" --stats-interval 0 --log-level info
    mediator_pid=${pids[-1]}
}
netlab_mediator_listening() { [ -n "$(ip netns exec "$(ns pub)" ss -Hltn "sport = :$port" 2>/dev/null)" ]; }
