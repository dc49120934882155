#!/usr/bin/env bash
# Build every fuzz target (stable toolchain, no sanitizer) and give each a short run on its corpus.
# FUZZ_SECONDS (default 10) sets the run per target; 0 only builds.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-10}
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --quiet
fi
for target in $(cargo fuzz list); do
    cargo fuzz build -s none --release "$target"
    if [ "$seconds" -gt 0 ]; then
        mkdir -p "corpus/$target"
        cargo fuzz run -s none --release "$target" "corpus/$target" -- \
            -max_total_time="$seconds" -max_len=512 2>&1 | tail -n 2
    fi
done
