#!/usr/bin/env bash
# Render and lint the Helm chart under charts/bellows without a helm binary:
# scripts/chart.py drives Helm's Go SDK through PyPI's helm-python-sdk, kept
# in a venv under ${BELLOWS_CACHE:-~/.cache/bellows}/venv-helm (created on
# first use, reused after). `bash scripts/chart.sh --help` lists the commands.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${BELLOWS_CACHE:-$HOME/.cache/bellows}/venv-helm"
sdk_version=0.2.2

# The venv counts as ready only once the pinned SDK imports from it, so an
# interrupted install is redone on the next run.
ready() {
  "$venv/bin/python" -c "import sys, helm_python; sys.exit(helm_python.__version__ != '$sdk_version')" 2>/dev/null
}
if ! ready; then
  # Concurrent first runs (parallel tests) install once, one after another.
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
  if ! ready; then
    echo "chart.sh: installing helm-python-sdk==$sdk_version into $venv" >&2
    python3 -m venv --clear "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "helm-python-sdk==$sdk_version" >&2
  fi
  exec 9>&-
fi
exec "$venv/bin/python" "$root/scripts/chart.py" --chart "$root/charts/bellows" "$@"
