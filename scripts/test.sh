#!/usr/bin/env bash
# The test command (README): every test of the workspace, on real loopback sockets.
# Installs what the tests need when it is missing (nginx for the compare smoke run), so it
# works on a fresh machine. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null 2>&1 && [ -x scripts/compare.sh ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "test.sh: installing nginx (for the compare smoke run)"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
            || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
    else
        echo "test.sh: nginx is missing and we are not root: install it (apt-get install nginx-light)" >&2
        exit 1
    fi
fi

log=$(mktemp /tmp/ringway-test.XXXXXX)
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets 2>&1 | tee "$log"
cargo build --release -p ringway

# The seed's cluster: 4 socket.io nodes + Redis behind ringway with cookie stickiness,
# 100 real socket.io clients in each transport mode; without stickiness it must fail.
scripts/socketio-test.sh --no-build

if [ -x scripts/compare.sh ]; then
    # Every step of the side-by-side comparison, at tiny sizes (< 60 s).
    scripts/compare.sh --smoke --out "$(mktemp -d /tmp/ringway-smoke.XXXXXX)"
fi

# One closing line for the whole run (cargo's per-binary lines are above).
awk '/^test result:/ { p += $4; f += $6 } END { printf "Tests: %d passed, %d failed\n", p, f }' "$log"
