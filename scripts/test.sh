#!/usr/bin/env bash
# The one test command: unit, mocked-API and CRD tests, then the end-to-end
# suite on a real local control plane (see e2e/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export BELLOWS_CACHE="${BELLOWS_CACHE:-$HOME/.cache/bellows}"
# Build outside the clone so a fresh checkout reuses the slow build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BELLOWS_CACHE/target}"

# --all-targets: every unit, integration and e2e test (no doc tests: the
# docs hold no runnable examples).
cargo test --locked --workspace --all-targets
