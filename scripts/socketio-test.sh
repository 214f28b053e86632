#!/usr/bin/env bash
# The seed cluster, end to end: four node.js socket.io v4 nodes sharing state through Redis
# (@socket.io/redis-adapter) behind ringway, driven by 100 real socket.io-client clients.
#
#   scripts/socketio-test.sh [--no-build]
#
# 1. Installs what is missing: redis-server (apt), the node packages (npm ci in
#    tests/socketio); builds ringway (release) unless --no-build.
# 2. Starts a private redis-server on a free loopback port (a child of this script, never the
#    system service), 4 × tests/socketio/server.js on free ports, ringway in front of them with
#    --sticky-cookie io_srv (round robin for the first request of each client).
# 3. Runs tests/socketio/client.js with 100 clients in each mode -- default (polling, then
#    upgrade to WebSocket), websocket, polling -- and asserts (tests/socketio/check.js):
#    all 100 connect, every echo is acknowledged, every client receives the one broadcast
#    (sent by one node, delivered through Redis by all), no client error and no
#    "Session ID unknown" on any node, the sticky cookie is sent back, the final transport is
#    websocket (default/websocket) or polling (polling), and the spread over the 4 nodes is
#    within ±10 % of even: each node gets floor(0.9 × 25) = 22 to ceil(1.1 × 25) = 28 clients.
# 4. Restarts ringway WITHOUT --sticky-cookie (plain round robin) and asserts that default and
#    polling mode FAIL (fewer than half of the clients complete, and the nodes answer
#    "Session ID unknown"): stickiness is what makes polling work. Websocket mode, one
#    connection per client, must still pass there (control).
# 5. The same cluster over TLS: ringway --tls-cert/--tls-key (a CA and a leaf for localhost
#    and 127.0.0.1 made by openssl for this run, trusted by the clients through
#    NODE_EXTRA_CA_CERTS) with --sticky-cookie; the three modes over https:// and wss://
#    must pass exactly as in 3.
#
# Prints a short summary; exits non-zero if any assertion fails (1) or the setup fails (2).
# Everything it starts is stopped on exit (by pid). Loopback only; no fixed ports.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
APP=$ROOT/tests/socketio
CLIENTS=100
CLIENT_TIMEOUT=20 # seconds, per client.js run (it bounds itself)

BUILD=1
for a in "$@"; do
    case $a in
    --no-build) BUILD=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "socketio-test: unknown argument $a (usage: scripts/socketio-test.sh [--no-build])" >&2
        exit 2
        ;;
    esac
done

# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
log() { printf '[socketio %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    printf '[socketio] error: %s\n' "$*" >&2
    exit 2
}

WORK=$(mktemp -d /tmp/ringway-socketio.XXXXXX)
FAILED=0

# Everything started is in CHILD_PIDS (lib/common.sh, track_pid / forget_pid), in start
# order. This script's stop_pid waits 3 s for SIGTERM (the library's: 10 s) and leaves the
# bookkeeping to its callers.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$? i
    for ((i = ${#CHILD_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${CHILD_PIDS[i]}"
    done
    if ((rc == 0)); then
        rm -rf "$WORK"
    else
        log "logs kept in $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port and wait_for_line are the comparison scripts' (their log/die/stop_pid are
# replaced by this script's own definitions, which bash resolves at call time).
# ---- 1. what we need ------------------------------------------------------------------------
T0=$SECONDS
if ! command -v redis-server >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "redis-server is missing and we are not root: apt-get install redis-server"
    log "installing redis-server"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! command -v openssl >/dev/null 2>&1; then
    [[ $(id -u) == 0 ]] || die "openssl is missing and we are not root: apt-get install openssl"
    log "installing openssl"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi
command -v node >/dev/null 2>&1 || die "node is missing"
command -v npm >/dev/null 2>&1 || die "npm is missing"
if [[ ! -f $APP/node_modules/.package-lock.json || $APP/package-lock.json -nt $APP/node_modules/.package-lock.json ]]; then
    log "npm ci in tests/socketio"
    (cd "$APP" && npm ci --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1) ||
        {
            cat "$WORK/npm.log" >&2
            die "npm ci failed"
        }
fi
RINGWAY=$ROOT/target/release/ringway
if ((BUILD)); then
    log "cargo build --release -p ringway"
    cargo build --release -p ringway >"$WORK/build.log" 2>&1 || {
        tail -30 "$WORK/build.log" >&2
        die "build failed"
    }
fi
[[ -x $RINGWAY ]] || die "$RINGWAY is missing (run without --no-build)"

# ---- 2. the cluster ---------------------------------------------------------------------------
REDIS_PORT=
for ((try = 0; try < 5; try++)); do
    p=$(free_port)
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "$WORK" >"$WORK/redis.log" 2>&1 &
    pid=$!
    if wait_for_line "$WORK/redis.log" 'Ready to accept connections' 10 "$pid"; then
        track_pid "$pid"
        REDIS_PORT=$p
        break
    fi
    stop_pid "$pid" # lost a race for the port: try another
done
[[ -n $REDIS_PORT ]] || {
    cat "$WORK/redis.log" >&2
    die "redis-server did not start"
}
log "redis on 127.0.0.1:$REDIS_PORT"

NODE_PORTS=()
NODE_LOGS=()
for i in 1 2 3 4; do
    node "$APP/server.js" 0 "$REDIS_PORT" >"$WORK/node$i.log" 2>&1 &
    pid=$!
    track_pid "$pid"
    NODE_LOGS+=("$WORK/node$i.log")
done
for i in 1 2 3 4; do
    f=$WORK/node$i.log
    wait_for_line "$f" '^listening [0-9]+$' 20 "${CHILD_PIDS[i]}" || {
        cat "$f" >&2
        die "socket.io node $i did not start"
    }
    NODE_PORTS+=("$(awk '/^listening [0-9]+$/ { print $2; exit }' "$f")")
done
PORT_LIST=$(IFS=,; echo "${NODE_PORTS[*]}")
UPSTREAMS=$(printf '127.0.0.1:%s,' "${NODE_PORTS[@]}")
UPSTREAMS=${UPSTREAMS%,}
log "socket.io nodes on ${NODE_PORTS[*]}"

RW_PID=
RW_PORT=
start_ringway() { # $1: label; rest: extra flags
    local label=$1
    shift
    local f=$WORK/ringway-$label.log
    "$RINGWAY" --listen 127.0.0.1:0 --upstream "$UPSTREAMS" --worker-processes 1 --no-pin "$@" >"$f" 2>&1 &
    RW_PID=$!
    track_pid "$RW_PID"
    wait_for_line "$f" '^ringway: listening on 127\.0\.0\.1:[0-9]+ ' 20 "$RW_PID" || {
        cat "$f" >&2
        die "ringway ($label) did not start"
    }
    RW_PORT=$(sed -nE 's/^ringway: listening on 127\.0\.0\.1:([0-9]+) .*/\1/p' "$f" | head -1)
    log "ringway ($label) on 127.0.0.1:$RW_PORT: $*"
}
stop_ringway() {
    stop_pid "$RW_PID"
    forget_pid "$RW_PID"
}

session_unknown_total() {
    cat "${NODE_LOGS[@]}" | grep -c 'Session ID unknown' || true
}

SUMMARY=()
SCHEME=http
run_case() { # $1: label (sticky|nosticky|tls), $2: transport, $3: expect pass|fail
    local label=$1 mode=$2 expect=$3 out rc before after verdict
    out=$WORK/result-$label-$mode.json
    before=$(session_unknown_total)
    rc=0
    node "$APP/client.js" --url "$SCHEME://127.0.0.1:$RW_PORT" --clients "$CLIENTS" \
        --transport "$mode" --timeout "$CLIENT_TIMEOUT" >"$out" 2>"$WORK/client-$label-$mode.err" || rc=$?
    if ((rc != 0)); then
        cat "$WORK/client-$label-$mode.err" >&2
        SUMMARY+=("FAIL  $label/$mode: client.js exited $rc")
        FAILED=1
        return
    fi
    sleep 0.2 # let the nodes' logs catch up with the last refused request
    after=$(session_unknown_total)
    local sticky=no
    [[ $label == nosticky ]] || sticky=yes
    rc=0
    verdict=$(node "$APP/check.js" --result "$out" --expect "$expect" --ports "$PORT_LIST" \
        --session-unknown $((after - before)) --sticky "$sticky") || rc=$?
    if ((rc == 0)); then
        SUMMARY+=("ok    $(printf '%-9s' "$label") expect $expect  $verdict")
    else
        SUMMARY+=("FAIL  $(printf '%-9s' "$label") expect $expect  $verdict")
        FAILED=1
    fi
    printf '%s\n' "${SUMMARY[-1]}" >&2
    log "raw: $(cat "$out")"
}

# ---- 3. sticky: everything must work ---------------------------------------------------------
start_ringway sticky --sticky-cookie io_srv
for mode in default websocket polling; do
    run_case sticky "$mode" pass
done
stop_ringway

# ---- 4. no stickiness: polling sessions must break ---------------------------------------------
start_ringway nosticky --balance round-robin
run_case nosticky default fail
run_case nosticky polling fail
run_case nosticky websocket pass # control: one connection per client needs no stickiness
stop_ringway

# ---- 5. over TLS: https:// and wss://, sticky ---------------------------------------------------
TLS=$WORK/tls
mkdir -p "$TLS"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
{
    openssl req -x509 "${ec[@]}" -keyout "$TLS/ca.key" -out "$TLS/ca.pem" -days 2 \
        -subj /CN=ringway-socketio-test-ca &&
        openssl req "${ec[@]}" -keyout "$TLS/leaf.key" -out "$TLS/leaf.csr" -subj /CN=localhost &&
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$TLS/ext.cnf" &&
        openssl x509 -req -in "$TLS/leaf.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
            -CAcreateserial -out "$TLS/leaf.pem" -days 2 -extfile "$TLS/ext.cnf"
} >"$TLS/openssl.log" 2>&1 || {
    cat "$TLS/openssl.log" >&2
    die "openssl could not make the test certificates"
}
export NODE_EXTRA_CA_CERTS=$TLS/ca.pem
SCHEME=https
start_ringway tls --sticky-cookie io_srv --tls-cert "$TLS/leaf.pem" --tls-key "$TLS/leaf.key"
for mode in default websocket polling; do
    run_case tls "$mode" pass
done
stop_ringway

echo
echo "socket.io seed cluster: 4 nodes + redis behind ringway, $CLIENTS clients per run ($((SECONDS - T0)) s)"
printf '  %s\n' "${SUMMARY[@]}"
if ((FAILED)); then
    echo "socketio-test: FAILED (logs in $WORK)"
    exit 1
fi
echo "socketio-test: all passed"
