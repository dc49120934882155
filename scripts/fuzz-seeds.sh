#!/usr/bin/env bash
# Rebuild fuzz/seeds/TARGET from a corpus (default fuzz/corpus/TARGET): for each state of interest the
# corpus reaches (the target's `reach` labels), the smallest input that reaches it. Run it after a long
# fuzzing run, and again whenever a harness changes how it reads its input.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target=$1
corpus=${2:-corpus/$target}
# Inputs that break a reported, unfixed invariant are kept too: they become regression tests with the fix.
export P2PSC_FUZZ_ALLOW=${P2PSC_FUZZ_ALLOW-}
cargo fuzz build -s none --release --debug-assertions "$target"
bin=target/$(rustc -vV | sed -n 's/^host: //p')/release/$target
declare -A best
# Smallest first, so the first input to reach a state is the smallest that does.
while read -r input; do
    while read -r label; do
        [ -n "$label" ] && [ -z "${best[$label]:-}" ] && best[$label]=$input
    done < <(P2PSC_FUZZ_REACH=1 "$bin" "$corpus/$input" 2>&1 | sed -n 's/^reach: //p')
done < <(ls -Sr "$corpus")
rm -rf "seeds/$target"
mkdir -p "seeds/$target"
for label in "${!best[@]}"; do
    cp "$corpus/${best[$label]}" "seeds/$target/"
    echo "$label: ${best[$label]}"
done | sort
