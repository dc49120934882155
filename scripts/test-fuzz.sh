#!/usr/bin/env bash
# Build every fuzz target (stable toolchain, no sanitizer, with debug assertions and overflow checks)
# and give each a short run: its seeds (fuzz/seeds/TARGET, inputs that reach its deep states, replayed
# every time) and a scratch corpus. FUZZ_SECONDS (default 10) bounds each run, so the whole step takes
# about FUZZ_SECONDS × the number of targets after the build; 0 only builds. fuzz/README.md has the
# targets and how to fuzz for longer.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-10}
# FUZZ_RUNS=N: a target also stops after N executions (0: only the time bounds it).
runs=${FUZZ_RUNS:-0}
run_limit=-1
[ "$runs" -gt 0 ] && run_limit=$runs
# Invariants the targets found broken, reported and not fixed yet (fuzz/README.md, "Findings"): a break
# of one of these is counted, not fatal. Remove a name with its fix; P2PSC_FUZZ_ALLOW= makes all fatal.
export P2PSC_FUZZ_ALLOW=${P2PSC_FUZZ_ALLOW-}
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --quiet
fi
cargo fuzz build -s none --release --debug-assertions
if [ "$seconds" -gt 0 ]; then
    for target in $(cargo fuzz list); do
        mkdir -p "corpus/$target"
        seeds=()
        [ -d "seeds/$target" ] && seeds=("seeds/$target")
        echo "== $target"
        cargo fuzz run -s none --release --debug-assertions "$target" "corpus/$target" "${seeds[@]}" -- \
            -max_total_time="$seconds" -runs="$run_limit" -max_len=1024 -print_final_stats=1 2>&1 |
            grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|Done|INFO: exiting)|panicked|ERROR'
    done
fi
