# shellcheck shell=bash
# The two peers of scripts/tap-lab.sh, each of one kind: sourced (not run) after scripts/lib/netlab.sh.
#
#   smoltcp  `host-sim tap peer`: a smoltcp stack on a TAP device in the home's bridge (the firmware's
#            code: the poll-API connector), by default at the home's `tap0`
#   kernel   the `p2psc` tool (p2psc-tokio on kernel sockets) in a Linux host of its own on the home's LAN
#            (netlab_kernel_host: namespace `host<SIDE>`), through the same router
#
# Peer A sends a message and expects it back; peer B echoes it. Both check the bytes: a smoltcp sender
# compares the echo itself (`--send`), a smoltcp echoer ends with its "echo ok" line once the sender has
# closed; a kernel sender is `p2psc pipe <message >received` and `cmp` checks what came back, a kernel
# echoer is the README's echo loop (`p2psc pipe <fifo | tee fifo`) and `cmp` checks what it echoed.
#
# The script sets, before labpeer_place: kind[A|B] (smoltcp|kernel), home[], tap[], ip[] (where each
# peer is), stall[] (ms), logs, host_sim, p2psc_bin, timeout_s, punch_timeout, peer_args (smoltcp only),
# plaintext (0|1), verbose (0|1), same_lan (0|1), announcer (A|B).
#
#   labpeer_place              the kernel hosts (after netlab_topology); sets peer_ns[SIDE]
#   labpeer_identities         a fresh identity per peer: pubkey[SIDE] (seeds or PEM files in $logs)
#   labpeer_message            writes $logs/message: what A sends (sets message_text for a smoltcp A)
#   labpeer_neighbours         same-LAN race: the peer that is not the announcer knows its MAC at start
#   labpeer_start SIDE         start the peer in the background (A sends, B echoes); sets peer_pid[SIDE]
#   labpeer_stall_kernel_a     a late kernel peer A: stopped (SIGSTOP) while it waits in the mediator's
#                              table, resumed stall[A] ms after B's Match (see below)
#   labpeer_check SIDE EXPECT RC   appends to fail[] what went wrong (EXPECT success or an error name)
#   labpeer_path SIDE          the path the peer reported (`path direct` / `path relayed` in its log)
#   labpeer_summary SIDE RC    one line `PEER SIDE KIND: connected C, data D, attempts N, after_match_ms M`
#                              that scripts/tap-late.sh and scripts/tap-latency.sh read
#
# A late kernel peer: the `p2psc` tool has no "stall" knob, so the lab stops the process itself. It can
# only do so while the process waits for its Match (before that nothing is in flight), i.e. for the peer
# that registers first: peer A, the leader. Stopped, the tool reads the Match only when resumed and
# starts its schedule then (protocol §8.3: a peer that gets to its start time late sends at once), while
# the other peer has been dialling since its own start time: the same as a slow device.

declare -gA peer_ns=() pubkey=() seed=() keyfile=() peer_pid=()
labpeer_hello=hello-from-A-through-two-NATs

# --- placing, identities, message ----------------------------------------------------------------------
labpeer_place() {
    local side
    for side in A B; do
        peer_ns[$side]=${home[$side]}
        if [ "${kind[$side]}" = kernel ]; then
            netlab_kernel_host "host$side" "${home[$side]}" "${ip[$side]}"
            peer_ns[$side]=host$side
        fi
    done
}

labpeer_identities() {
    local side
    for side in A B; do
        case "${kind[$side]}" in
            smoltcp)
                seed[$side]=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
                pubkey[$side]=$("$host_sim" tap pubkey --key-seed "${seed[$side]}") || return 1
                ;;
            kernel)
                keyfile[$side]=$logs/key-$side.pem
                pubkey[$side]=$("$p2psc_bin" -q keygen --out "${keyfile[$side]}") || return 1
                ;;
        esac
    done
}

# A smoltcp sender sends the hello (its --send takes text). A kernel sender sends the hello to a smoltcp
# echoer (whose log shows what it echoed), and 256 KiB of random bytes to a kernel echoer: many records,
# full TCP windows, through both NATs.
labpeer_message() {
    message_text=$labpeer_hello
    if [ "${kind[A]}" = kernel ] && [ "${kind[B]}" = kernel ]; then
        head -c 262144 /dev/urandom >"$logs/message"
    else
        printf '%s' "$labpeer_hello" >"$logs/message"
    fi
}

# --- same-LAN race: who knows whose MAC ----------------------------------------------------------------
# The announcer must ARP for the other peer, while the other already knows the announcer's MAC. A kernel
# host that knows it gets a permanent neighbour entry; a smoltcp peer learns it from the announcer's
# unsolicited ARP replies (`--announce-to`, added in labpeer_start). A smoltcp peer cannot learn a kernel
# announcer's MAC that way (only a `host-sim tap peer` sends them; Linux does not take an unsolicited
# reply either, arp_accept=0), so that pairing is refused.
labpeer_neighbours() {
    [ "$same_lan" = 1 ] || return 0
    local knower=A
    [ "$announcer" = A ] && knower=B
    case "${kind[$knower]}/${kind[$announcer]}" in
        kernel/*)
            nx "${peer_ns[$knower]}" ip neigh replace "${ip[$announcer]%/*}" \
                lladdr "$(netlab_mac_of "${ip[$announcer]}")" dev eth0 nud permanent
            ;;
        smoltcp/kernel)
            echo "tap-lab: a smoltcp peer cannot be told a kernel peer's MAC (--announcer ${announcer,,})" >&2
            return 1
            ;;
    esac
}

# --- starting ------------------------------------------------------------------------------------------
labpeer_start() { # labpeer_start SIDE
    local side=$1 other=A
    [ "$side" = A ] && other=B
    case "${kind[$side]}" in
        smoltcp) labpeer_start_smoltcp "$side" "$other" ;;
        kernel) labpeer_start_kernel "$side" "$other" ;;
    esac
    peer_pid[$side]=$!
    pids+=("$!")
}

labpeer_start_smoltcp() {
    local side=$1 other=$2
    # A hard bound on top of the connector's own deadline and the exchange's. A backtrace if it panics.
    local cmd=(ip netns exec "$(ns "${peer_ns[$side]}")" env RUST_BACKTRACE=1 timeout -k 2 $((timeout_s + 15))
        "$host_sim" tap peer --tap "${tap[$side]}" --ip "${ip[$side]}" --gw "$lan_gw"
        --key-seed "${seed[$side]}" --peer-key "${pubkey[$other]}" --mediator "$pub_ip:$port"
        --timeout "$timeout_s")
    [ -n "$punch_timeout" ] && cmd+=(--punch-timeout "$punch_timeout")
    [ ${#peer_args[@]} -gt 0 ] && cmd+=("${peer_args[@]}")
    [ "${stall[$side]}" != 0 ] && cmd+=(--stall-after-match-ms "${stall[$side]}")
    [ "$plaintext" = 1 ] && cmd+=(--plaintext)
    [ "${relay:-fallback}" != fallback ] && cmd+=(--relay "$relay")
    [ "$verbose" = 1 ] && cmd+=(-vv)
    # same-lan-race: the announcer tells a smoltcp peer its MAC (and must ARP for the other itself).
    if [ "$same_lan" = 1 ] && [ "$side" = "$announcer" ] && [ "${kind[$other]}" = smoltcp ]; then
        cmd+=(--announce-to "${ip[$other]%/*}")
    fi
    if [ "$side" = A ]; then cmd+=(--send "$message_text"); else cmd+=(--echo); fi
    "${cmd[@]}" >"$logs/peer-$side.log" 2>"$logs/peer-$side.err" </dev/null &
}

# Progress (text) and errors go to peer-SIDE.log, the bytes from the peer to peer-SIDE.data. `timeout`
# bounds the whole of each (it must not sit inside the echo loop's pipeline: holding the pipe to tee
# open, it would keep tee from ever seeing the end).
labpeer_start_kernel() {
    local side=$1 other=$2
    local tool=("$p2psc_bin" pipe --key "${keyfile[$side]}" --peer "${pubkey[$other]}" --mediator "$pub_ip:$port"
        --timeout "${timeout_s}s")
    [ "$plaintext" = 1 ] && tool+=(--plaintext)
    [ "${relay:-fallback}" != fallback ] && tool+=(--relay "$relay")
    local run=(ip netns exec "$(ns "${peer_ns[$side]}")" env RUST_BACKTRACE=1 timeout -k 2 $((timeout_s + 15)) bash -c)
    local fifo=$logs/loop-$side
    rm -f "$fifo"
    mkfifo "$fifo"
    if [ "$side" = A ]; then
        # Send the message, keep our direction open until all of it has come back (an interactive
        # exchange: the echo must not wait for our end), then close. The tool's PID goes to a file
        # (a late peer A is stopped by PID). The data file exists before the tool starts: its shell opens
        # it only once the fifo has a writer, and the wait below must not find it missing and stop.
        "${run[@]}" 'msg=$1 data=$2 fifo=$3 pidfile=$4; shift 4
            : >"$data"
            "$@" <"$fifo" >"$data" &
            tool=$!
            echo "$tool" >"$pidfile"
            size=$(wc -c <"$msg")
            {
                cat "$msg"
                while kill -0 "$tool" 2>/dev/null && [ "$(wc -c <"$data")" -lt "$size" ]; do sleep 0.02; done
            } >"$fifo"
            wait "$tool"' sender "$logs/message" "$logs/peer-$side.data" "$fifo" "$logs/peer-$side.pid" "${tool[@]}" \
            2>"$logs/peer-$side.log" </dev/null &
    else
        # The echo loop: what arrives goes to stdout, through tee back into stdin (and to the data file).
        "${run[@]}" 'set -o pipefail; fifo=$1; shift; "$@" <"$fifo" | tee "$fifo"' echo-loop "$fifo" "${tool[@]}" \
            >"$logs/peer-$side.data" 2>"$logs/peer-$side.log" </dev/null &
    fi
}

# Stop kernel peer A once it is registered (before B starts); returns when it is stopped. Then
# labpeer_resume_kernel_a (in the background) resumes it stall[A] ms after B's Match.
labpeer_stall_kernel_a() {
    wait_for "peer A to register" 150 grep -q 'registered with the mediator' "$logs/peer-A.log"
    stalled_pid=$(cat "$logs/peer-A.pid")
    kill -STOP "$stalled_pid"
    echo "[stall] peer A (pid $stalled_pid) stopped while registered" >>"$logs/stall.log"
}

labpeer_resume_kernel_a() {
    (
        # B's Match is sent when B registers; B reports it at once.
        netlab_poll 300 grep -q 'matched as' "$logs/peer-B.log" || true
        sleep "$(awk "BEGIN { print ${stall[A]} / 1000 }")"
        kill -CONT "$stalled_pid"
        echo "[stall] peer A resumed ${stall[A]} ms after B's Match" >>"$logs/stall.log"
    ) &
    pids+=("$!")
}

# --- outcome -------------------------------------------------------------------------------------------
# The file a peer's panic would be in.
labpeer_err() { if [ "${kind[$1]}" = kernel ]; then echo "$logs/peer-$1.log"; else echo "$logs/peer-$1.err"; fi; }

labpeer_path() { # the path the peer reported when it connected: direct or relayed (nothing if it did not)
    grep -oE 'path (direct|relayed)' "$logs/peer-$1.log" | head -1 | cut -d' ' -f2 || true
}

labpeer_connected() { # the peer authenticated the other
    case "${kind[$1]}" in
        smoltcp) grep -q 'authenticated: ' "$logs/peer-$1.log" ;;
        kernel) grep -q '^p2psc: authenticated in ' "$logs/peer-$1.log" ;;
    esac
}

labpeer_data_ok() { # the peer checked the bytes
    local side=$1
    case "${kind[$side]}/$side" in
        smoltcp/A) grep -q '^\[.*\] echo ok' "$logs/peer-A.log" ;;
        smoltcp/B) grep -q '^\[.*\] peer closed; echo ok' "$logs/peer-B.log" ;;
        kernel/*) cmp -s "$logs/message" "$logs/peer-$side.data" ;;
    esac
}

# Milliseconds from the Match's arrival to the authenticated peer (empty if it did not connect).
labpeer_after_match() {
    local log=$logs/peer-$1.log
    case "${kind[$1]}" in
        smoltcp)
            awk -F'[][s]+' '/ matched as / && !m { m = $2 } / authenticated: / && !a { a = $2 }
                END { if (m != "" && a != "") printf "%.0f", (a - m) * 1000 }' "$log"
            ;;
        kernel) sed -n 's/^p2psc: authenticated in [0-9]* ms (\([0-9]*\) ms after the match).*/\1/p' "$log" | head -1 ;;
    esac
}

# The highest "(attempt N)" the peer dialled (both kinds print the protocol's own event lines).
labpeer_attempts() { grep -o '(attempt [0-9]*)' "$logs/peer-$1.log" | tr -dc '0-9\n' | sort -n | tail -1 || true; }

# The kernel tool's exit code of each error the lab expects (`p2psc --help`).
labpeer_exit_code_of() {
    case "$1" in
        PeerNeverCame) echo 5 ;;
        PunchFailed) echo 6 ;;
        AuthFailed) echo 7 ;;
        *) echo '' ;;
    esac
}

labpeer_check() { # labpeer_check SIDE EXPECT RC
    local side=$1 expect=$2 rc=$3 code
    if [ "$expect" = success ]; then
        [ "$rc" = 0 ] || fail+=("peer $side exited $rc")
        labpeer_connected "$side" || fail+=("peer $side did not authenticate")
        labpeer_data_ok "$side" || fail+=("peer $side: the bytes do not match ($(labpeer_data_problem "$side"))")
        return 0
    fi
    case "${kind[$side]}" in
        smoltcp)
            [ "$rc" = 1 ] || fail+=("peer $side exited $rc, expected 1 (connect failed)")
            grep -q "connect failed: $expect " "$logs/peer-$side.log" || fail+=("peer $side did not fail with $expect")
            ;;
        kernel)
            code=$(labpeer_exit_code_of "$expect")
            [ -n "$code" ] && [ "$rc" = "$code" ] || fail+=("peer $side exited $rc, expected ${code:-?} ($expect)")
            ;;
    esac
}

labpeer_data_problem() {
    local side=$1
    if [ "${kind[$side]}" = smoltcp ]; then echo "no echo ok line"; return; fi
    echo "sent $(wc -c <"$logs/message") bytes, $( [ "$side" = A ] && echo got back || echo echoed) $(wc -c <"$logs/peer-$side.data" 2>/dev/null || echo 0)"
}

labpeer_summary() { # labpeer_summary SIDE
    local side=$1 connected=0 data=0
    labpeer_connected "$side" && connected=1
    labpeer_data_ok "$side" && data=1
    echo "PEER $side ${kind[$side]}: connected $connected, data $data, attempts $(labpeer_attempts "$side"), after_match_ms $(labpeer_after_match "$side")"
}
