#!/usr/bin/env bash
# The one test command: unit, mocked-API, CRD and real-database tests, then
# the end-to-end suite on a real local control plane (see e2e/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export BELLOWS_CACHE="${BELLOWS_CACHE:-$HOME/.cache/bellows}"
# Build outside the clone so a fresh checkout reuses the slow build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BELLOWS_CACHE/target}"

# The Debian packages the database and e2e tests need (PostgreSQL, MariaDB,
# etcd, ...) and the Kubernetes build, before any test binary runs
# (tests/database.rs runs before the e2e suite, which would install them).
bash e2e/scripts/prepare.sh >/dev/null

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# --all-targets: every unit, integration and e2e test (no doc tests: the
# docs hold no runnable examples).
cargo test --locked --workspace --all-targets 2>&1 | tee "$log"

# Invariant I7: the passwords the tests hand to bellows never show up in the
# whole run's output (e2e scenario 10 also checks operator logs, events and
# status). Keep in sync with e2e/scenarios/inline_sql.rs, tests/database.rs
# and testkit/src/mariadb.rs.
if grep -n -F -e e2e-inline-pw-5150 -e pg-test-pw-91c2 -e mariadb-test-pw-7f3a "$log"; then
  echo "a test password appears in the test output" >&2
  exit 1
fi
echo "no test password in $(wc -l < "$log") lines of test output"
# One closing tally over cargo's test binaries and the e2e runner.
awk '/^test result:/ { p += $4; f += $6 } /^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3 }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
