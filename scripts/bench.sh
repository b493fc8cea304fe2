#!/usr/bin/env bash
# The scale benchmark (e2e/bench.rs), run on demand, never in CI: starts the
# e2e suite's local control plane per size, rolls N gated Deployments at
# once and prints a table (see docs/operations.md, "Scale"). Sizes default to 100 500:
#   bash scripts/bench.sh          # N = 100 and 500
#   bash scripts/bench.sh 50       # one quick size
set -euo pipefail
cd "$(dirname "$0")/.."
export BELLOWS_CACHE="${BELLOWS_CACHE:-$HOME/.cache/bellows}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BELLOWS_CACHE/target}"
# Release build (the bench profile), like the image's binary.
cargo bench --locked --bench scale -- "$@"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
