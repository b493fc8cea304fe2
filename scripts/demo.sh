#!/usr/bin/env bash
# The first command: bellows renaming a column under live traffic, on this
# machine, without Docker or a cluster of your own.
#
#   scripts/demo.sh            bring everything up, run the rename, show a
#                              summary, keep the cluster up until Ctrl-C
#   scripts/demo.sh --no-wait  the same, then stop (what CI-like runs want)
#   scripts/demo.sh down       stop a demo left running in another shell
#
# It installs what it needs like the tests do (Debian packages as root,
# Kubernetes 1.20 built once; slow builds cached in ~/.cache/bellows), then
# starts etcd, kube-apiserver and kube-controller-manager on loopback, a
# throwaway PostgreSQL, a stand-in kubelet that runs the pods' processes,
# and bellows as the Helm chart runs it (e2e/README.md has the details).
# Needs the README's set-up: a Rust toolchain and python3 with venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export BELLOWS_CACHE="${BELLOWS_CACHE:-$HOME/.cache/bellows}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BELLOWS_CACHE/target}"
pidfile="$BELLOWS_CACHE/demo.pid"

case "${1:-}" in
  down)
    if [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null; then
      echo "bellows demo: stopped"
    else
      echo "bellows demo: none running"
    fi
    rm -f "$pidfile"
    exit 0
    ;;
  "" | --no-wait) ;;
  *)
    echo "usage: scripts/demo.sh [--no-wait | down]" >&2
    exit 2
    ;;
esac

mkdir -p "$BELLOWS_CACHE"
echo "==> installing what the demo needs and building (cached in $BELLOWS_CACHE; a first run takes ~15 minutes)"
bash e2e/scripts/prepare.sh >/dev/null
cargo build --locked --quiet --profile test --example traffic
# The demo runs inside the e2e runner, which owns every process it starts
# (they all stop with it) and writes its pid for `down`.
export BELLOWS_DEMO_PIDFILE="$pidfile"
exec cargo test --locked --quiet --test e2e -- --demo ${1:+"$1"}
