#!/usr/bin/env bash
# cluster.sh: several ringway instances behind the kernel's L4 balancer, on one machine: a
# whole multi-host layout in network namespaces, brought up, measured and removed.
#
#   scripts/cluster.sh [--no-build] [--clients N] [--out DIR] [--worker-connections C]
#                      [--ceiling-clients M] [--nginx]
#
#   client ──▶ balancer ──▶ proxy 1..3 (ringway) ──▶ backend (4 socket.io nodes + Redis)
#   198.18.0.2  198.18.0.1:80   198.18.{1,2,3}.2:80    198.18.100.1 (bridge 198.18.100.0/24)
#   + .10-.250  nftables dnat, jhash of the client address over 12 buckets
#
# Six namespaces (rwc<pid>-client, -lb, -p1, -p2, -p3, -be) joined by veth pairs, addresses
# from 198.18.0.0/15 (set aside for benchmarking), all created by this script and deleted on
# exit, even on failure (trap): nothing is added to the machine's own namespace, no
# machine-wide sysctl is touched (ip_forward is the balancer namespace's own). The balancer
# is nftables (installed from the system packages when missing): `dnat to jhash ip saddr mod
# 12 map @buckets`, each bucket naming an instance, so draining one instance re-points only
# its own buckets, in one atomic transaction. IPVS (ipvsadm, scheduler sh) is used instead
# where the kernel has ip_vs (this one does not; the script says which it uses). Proxies
# reach the backends over one bridge, so every instance has the same backend list and so the
# same sticky cookie ids and ketama ring. Each ringway: 1 worker x C slots (default 1024,
# the seed's budget), --sticky-cookie io_srv, --shutdown-timeout 2s. Fixed ports (80 on the
# proxies) are safe: each namespace has its own port space.
#
# Steps, each asserted (tests/socketio/check.js and the checks below):
#  1. spread: N (100) socket.io clients per transport mode (default: polling then upgrade;
#     websocket; polling) from 241 client addresses through the balancer: all connect, ack
#     and get the broadcast, no "Session ID unknown", spread over the 4 nodes within ±10 %,
#     every instance used and each client address always through one instance, the same one
#     in every mode (as the balancer hashes). Instance 3 lists the backends in reverse order.
#  2. stickiness across instances: N polling clients whose every connection comes from the
#     next of 3 addresses that hash to the 3 instances (client.js --rotate-src), 4 echoes
#     each: every session crosses all 3 instances and one node answers it all -- with the
#     sticky cookie, then with `--balance hash --hash-key http_x_client_key` (the ketama
#     ring) and no cookie. Control: instance 2 names the same backends by the backend
#     host's second address (other ids), and then the sessions must break.
#  3. rolling restart: 90 clients (a third per mode) send an acknowledged message every
#     100 ms with socket.io's retries; instance 1's buckets go to the others, then it gets
#     SIGQUIT (graceful stop; it must exit 0 within its 2 s + grace); exactly its clients
#     move to instances 2 and 3 (polling ones keep their sessions), 0 messages lost, all
#     connected at the end; then it is started again, gets its buckets back, and N new
#     websocket clients are spread exactly as in step 1.
#  4. capacity, on freshly started instances: idle websocket clients through 1 instance
#     (every bucket on it), then M (2000) through 3: held = 1 x 511 and 3 x 511 at
#     1 x 1024 each (instances x floor((C - 2) / 2)), every held one answers a probe, none
#     dropped; and
#     `ringway explain --instances 3` says the same. With --nginx, the 3-instance ceiling
#     again with nginx in place of ringway on each proxy host (the seed's nginx.conf with
#     these backends, 1 x C, proxy_read_timeout 3600s; apt-get install nginx-light when
#     missing), reported and not asserted: nginx's arithmetic is the same, but at its limit
#     it closes connections still waiting for their request ("reusing connections").
#
# Prints each step's line and a summary; with --out DIR also writes meta.json, raw/ (every
# client's JSON), logs/ and summary.md there. Exit 0: all passed; 1: an assertion failed;
# 2: setup failed; 3: cannot run here (not root, no network namespaces): one line says why.
# Every process is started by this script, bounded in time and stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
APP=$ROOT/tests/socketio
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/netns.sh
source scripts/lib/netns.sh
log() { printf '[cluster %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    printf '[cluster] error: %s\n' "$*" >&2
    exit 2
}

CLIENTS=100
CEILING_CLIENTS=2000
WC=1024
NGINX_TOO=0
BUILD=1
OUT=""
CMDLINE="$0${*:+ $*}"
need_arg() { (($1 >= 2)) || die "$2 needs a value"; }
while (($#)); do
    case $1 in
        --no-build) BUILD=0 ;;
        --nginx) NGINX_TOO=1 ;;
        --clients) need_arg $# "$1"; CLIENTS=$2; shift ;;
        --ceiling-clients) need_arg $# "$1"; CEILING_CLIENTS=$2; shift ;;
        --worker-connections) need_arg $# "$1"; WC=$2; shift ;;
        --out) need_arg $# "$1"; OUT=$2; shift ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument $1 (see scripts/cluster.sh --help)" ;;
    esac
    shift
done
{ [[ $CLIENTS =~ ^[0-9]+$ ]] && ((CLIENTS >= 12 && CLIENTS <= 1000)); } || die "--clients must be 12..1000"
{ [[ $WC =~ ^[0-9]+$ ]] && ((WC >= 16 && WC <= 4096)); } || die "--worker-connections must be 16..4096"
PER=$(((WC - 2) / 2))
{ [[ $CEILING_CLIENTS =~ ^[0-9]+$ ]] && ((CEILING_CLIENTS > 3 * PER && CEILING_CLIENTS <= 10000)); } ||
    die "--ceiling-clients must be more than 3 x $PER (the 3 instances' ceiling) and at most 10000"

# ---- 0. can we, and what we need ------------------------------------------------------------
if ! why=$(netns_probe); then
    echo "cluster.sh: cannot run here: $why"
    exit 3
fi
T0=$SECONDS
WORK=$(mktemp -d /tmp/ringway-cluster.XXXXXX)
NS=rwc$$
C=$NS-client LB=$NS-lb BE=$NS-be
P=("$NS-p1" "$NS-p2" "$NS-p3")
INST=(198.18.1.2 198.18.2.2 198.18.3.2)        # the proxies, as the balancer sees them
VIA=(198.18.100.11 198.18.100.12 198.18.100.13) # ... and as the nodes see them
BACKEND_ADDR=198.18.100.1
BACKEND_ALT=198.18.100.2 # the same host's second address (step 2's control)
VIP=198.18.0.1
SRC_RANGE=198.18.0.10-198.18.0.250 # the client host's addresses (241)
BUCKETS=12
SEED=0x52494e47
RW_PID=("" "" "") # everything started is in CHILD_PIDS (lib/common.sh), in start order
FAILED=0

cleanup() {
    local rc=$? i
    # Newest first, one at a time (stop_pid forgets each: the indices below stay valid).
    for ((i = ${#CHILD_PIDS[@]} - 1; i >= 0; i--)); do
        [[ -n ${CHILD_PIDS[i]:-} ]] && stop_pid "${CHILD_PIDS[i]}"
    done
    netns_cleanup
    if [[ -n $OUT ]]; then
        mkdir -p "$OUT/logs"
        cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
    fi
    if ((rc == 0)); then
        rm -rf "$WORK"
    else
        log "logs kept in $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v redis-server >/dev/null 2>&1 || ! command -v nft >/dev/null 2>&1; then
    log "installing redis-server and nftables"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server nftables >/dev/null ||
        die "apt-get install redis-server nftables failed"
fi
if ((NGINX_TOO)) && ! command -v nginx >/dev/null 2>&1; then
    log "installing nginx-light"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null || die "apt-get install nginx-light failed"
fi
command -v node >/dev/null 2>&1 || die "node is missing"
if [[ ! -f $APP/node_modules/.package-lock.json || $APP/package-lock.json -nt $APP/node_modules/.package-lock.json ]]; then
    log "npm ci in tests/socketio"
    (cd "$APP" && npm ci --no-audit --no-fund --loglevel=error >"$WORK/npm.log" 2>&1) ||
        {
            cat "$WORK/npm.log" >&2
            die "npm ci failed"
        }
fi
RINGWAY=$(release_dir "$ROOT")/ringway
if ((BUILD)); then
    log "cargo build --release -p ringway"
    cargo build --release -p ringway >"$WORK/build.log" 2>&1 || {
        tail -30 "$WORK/build.log" >&2
        die "build failed"
    }
fi
[[ -x $RINGWAY ]] || die "$RINGWAY is missing (run without --no-build)"

BALANCER=nftables
if ipvs_in_kernel; then
    if ! command -v ipvsadm >/dev/null 2>&1; then
        log "installing ipvsadm"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ipvsadm >/dev/null || die "apt-get install ipvsadm failed"
    fi
    BALANCER=ipvs
    log "balancer: IPVS (the kernel has ip_vs; scheduler sh = source hashing)"
else
    log "balancer: nftables (this kernel has no ip_vs: no /proc/net/ip_vs; IPVS would be used where present)"
fi

# ---- 1. the hosts -----------------------------------------------------------------------------
log "namespaces $NS-{client,lb,p1,p2,p3,be}"
for ns in "$C" "$LB" "${P[@]}" "$BE"; do netns_add "$ns"; done
netns_veth "$C" eth0 "$LB" c0
ip -n "$C" addr add 198.18.0.2/24 dev eth0
{
    lo=10 hi=250
    for ((a = lo; a <= hi; a++)); do echo "addr add 198.18.0.$a/24 dev eth0"; done
    echo "route add 198.18.0.0/15 via $VIP"
} | ip -n "$C" -batch -
ip -n "$LB" addr add $VIP/24 dev c0
nsx "$LB" sysctl -qw net.ipv4.ip_forward=1 # this namespace's own
ip netns exec "$BE" ip link add br0 type bridge
ip -n "$BE" link set br0 up
ip -n "$BE" addr add $BACKEND_ADDR/24 dev br0
ip -n "$BE" addr add $BACKEND_ALT/24 dev br0
for i in 1 2 3; do
    p=${P[i - 1]}
    netns_veth "$LB" "p$i" "$p" eth0
    ip -n "$LB" addr add "198.18.$i.1/24" dev "p$i"
    ip -n "$p" addr add "198.18.$i.2/24" dev eth0
    ip -n "$p" route add default via "198.18.$i.1"
    netns_veth "$p" be "$BE" "p$i"
    ip -n "$BE" link set "p$i" master br0
    ip -n "$p" addr add "198.18.100.$((10 + i))/24" dev be
done
# The backend answers the proxies on the bridge; the client host only ever sees the balancer.

# ---- 2. the backend host: Redis + 4 socket.io nodes -----------------------------------------
ip netns exec "$BE" redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$WORK" >"$WORK/redis.log" 2>&1 &
track_pid $!
wait_for_line "$WORK/redis.log" 'Ready to accept connections' 10 "${CHILD_PIDS[-1]}" || {
    cat "$WORK/redis.log" >&2
    die "redis-server did not start"
}
NODE_PIDS=() NODE_PORTS=() NODE_LOGS=()
for i in 1 2 3 4; do
    ip netns exec "$BE" node "$APP/server.js" 0 6379 --host 0.0.0.0 >"$WORK/node$i.log" 2>&1 &
    track_pid $!
    NODE_PIDS+=($!)
    NODE_LOGS+=("$WORK/node$i.log")
done
for i in 0 1 2 3; do
    wait_for_line "${NODE_LOGS[i]}" '^listening [0-9]+$' 20 "${NODE_PIDS[i]}" || {
        cat "${NODE_LOGS[i]}" >&2
        die "socket.io node $((i + 1)) did not start"
    }
    NODE_PORTS+=("$(awk '/^listening [0-9]+$/ { print $2; exit }' "${NODE_LOGS[i]}")")
done
PORT_LIST=$(IFS=,; echo "${NODE_PORTS[*]}")
UPSTREAMS=""
for p in "${NODE_PORTS[@]}"; do UPSTREAMS+="${UPSTREAMS:+,}$BACKEND_ADDR:$p"; done
log "backend: redis + socket.io nodes on $BACKEND_ADDR:{${PORT_LIST}}"

# ---- 3. the proxy hosts ---------------------------------------------------------------------
# Instance 3 lists the backends in the reverse order: sticky ids and the ketama ring are
# functions of the addresses, not of their order, and steps 1-3 show it.
REVERSED=""
for ((i = ${#NODE_PORTS[@]} - 1; i >= 0; i--)); do REVERSED+="${REVERSED:+,}$BACKEND_ADDR:${NODE_PORTS[i]}"; done
UPS=("$UPSTREAMS" "$UPSTREAMS" "$REVERSED")
RW_RUN=(0 0 0)
STICKY=(--sticky-cookie io_srv)
start_ringway() { # instance index 0..2, then the flags that pick backends (default: $STICKY)
    local k=$1 f
    shift
    (($#)) || set -- "${STICKY[@]}"
    RW_RUN[k]=$((RW_RUN[k] + 1))
    f=$WORK/ringway-p$((k + 1))-${RW_RUN[k]}.log
    ip netns exec "${P[k]}" "$RINGWAY" --listen "${INST[k]}:80" --upstream "${UPS[k]}" \
        --worker-processes 1 --worker-connections "$WC" --no-pin --shutdown-timeout 2s \
        "$@" >"$f" 2>&1 &
    RW_PID[k]=$!
    track_pid $!
    wait_for_line "$f" "^ringway: listening on ${INST[k]//./\\.}:80 " 20 "${RW_PID[k]}" || {
        cat "$f" >&2
        die "ringway on proxy $((k + 1)) did not start"
    }
}
stop_ringway() { # instance index: graceful stop (nothing is connected when we call it)
    stop_pid "${RW_PID[$1]}"
}
for k in 0 1 2; do start_ringway "$k"; done
BUDGET_LINE=$(grep -m1 '^budget:' "$WORK/ringway-p1-1.log" || true)
log "proxies: ringway on ${INST[*]} (port 80), ${BUDGET_LINE:-budget line not found}"

# ---- 4. the balancer --------------------------------------------------------------------------
# Bucket b belongs to instance b mod 3; a drain gives a drained instance's buckets to the
# others in turn. One `nft -f` is one transaction: no packet sees a half-updated map.
BUCKET_OWNER=()
for ((b = 0; b < BUCKETS; b++)); do BUCKET_OWNER[b]=$((b % 3)); done
lb_apply() { # write the bucket map (or the IPVS weights) from BUCKET_OWNER / $1 = live set
    local b elems=""
    if [[ $BALANCER == ipvs ]]; then
        local k w
        for k in 0 1 2; do
            w=0
            for ((b = 0; b < BUCKETS; b++)); do ((BUCKET_OWNER[b] == k)) && w=1; done
            nsx "$LB" ipvsadm -e -t $VIP:80 -r "${INST[k]}:80" -m -w "$w"
        done
        return
    fi
    for ((b = 0; b < BUCKETS; b++)); do elems+="${elems:+, }$b : ${INST[BUCKET_OWNER[b]]}"; done
    printf 'flush map ip ringway buckets\nadd element ip ringway buckets { %s }\n' "$elems" >"$WORK/lb-update.nft"
    nsx "$LB" nft -f "$WORK/lb-update.nft"
}
if [[ $BALANCER == ipvs ]]; then
    nsx "$LB" ipvsadm -A -t $VIP:80 -s sh
    for k in 0 1 2; do nsx "$LB" ipvsadm -a -t $VIP:80 -r "${INST[k]}:80" -m -w 1; done
else
    cat >"$WORK/lb.nft" <<EOF
table ip ringway {
    map buckets {
        typeof numgen inc mod $BUCKETS : ip daddr
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP tcp dport 80 dnat to jhash ip saddr mod $BUCKETS seed $SEED map @buckets
    }
}
EOF
    nsx "$LB" nft -f "$WORK/lb.nft"
    lb_apply
fi
nsx "$LB" nft list ruleset >"$WORK/lb-ruleset.log" 2>&1 || true
log "balancer: $VIP:80 -> $BUCKETS buckets by jhash(client address) -> ${INST[*]}"

# ---- steps ------------------------------------------------------------------------------------
URL=http://$VIP
RAW=$WORK/raw
mkdir -p "$RAW"
SUMMARY=()
note() { # $1 ok|FAIL|info (a measurement, not asserted), rest: the line
    local v=$1
    shift
    SUMMARY+=("$(printf '%-5s %s' "$v" "$*")")
    printf '%s\n' "${SUMMARY[-1]}" >&2
    [[ $v != FAIL ]] || FAILED=1
}
session_unknown_total() { cat "${NODE_LOGS[@]}" | grep -c 'Session ID unknown' || true; }
jq_node() { # $1 JSON file, $2 JS expression over r: prints it
    node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").pop()); console.log(eval(process.argv[2]))' "$1" "$2"
}

# $1 label, then client.js flags; judged by check.js (--expect $EXPECT, --sticky $STICKY_CHECK,
# plus $CHECK_EXTRA).
EXPECT=pass STICKY_CHECK=yes CHECK_EXTRA=""
run_client() {
    local label=$1 out rc before verdict
    shift
    out=$RAW/$label.json
    before=$(session_unknown_total)
    rc=0
    timeout 60 ip netns exec "$C" node "$APP/client.js" --url "$URL" --clients "$CLIENTS" --timeout 25 "$@" \
        >"$out" 2>"$WORK/client-$label.log" || rc=$?
    if ((rc != 0)); then
        cat "$WORK/client-$label.log" >&2
        note FAIL "$label: client.js exited $rc"
        return
    fi
    sleep 0.2
    rc=0
    # shellcheck disable=SC2086
    verdict=$(node "$APP/check.js" --result "$out" --expect "$EXPECT" --ports "$PORT_LIST" \
        --session-unknown $(($(session_unknown_total) - before)) --sticky "$STICKY_CHECK" \
        --instances "$(IFS=,; echo "${VIA[*]}")" $CHECK_EXTRA) || rc=$?
    if ((rc == 0)); then note ok "$label: $verdict"; else note FAIL "$label: $verdict"; fi
}

# 1. spread, every mode
SRC_MAP=$WORK/src-map.json
CHECK_EXTRA="--src-map $SRC_MAP"
for mode in default websocket polling; do
    run_client "spread-$mode" --transport "$mode" --src-ips $SRC_RANGE
done
cp "$RAW/spread-websocket.json" "$WORK/spread-websocket.ref"

# 2. one session over all three instances
ROT=()
if [[ -f $SRC_MAP ]]; then
    for k in 0 1 2; do
        a=$(node -e 'const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(Object.keys(m).find((s) => m[s] === process.argv[2]) || "")' "$SRC_MAP" "${VIA[k]}")
        [[ -n $a ]] && ROT+=("$a")
    done
fi
if ((${#ROT[@]} == 3)); then
    ROT_LIST=$(IFS=,; echo "${ROT[*]}")
    CHECK_EXTRA="--rotated yes"
    run_client sticky-rotated --transport polling --rotate-src --echoes 4 --src-ips "$ROT_LIST"

    # The ketama ring agrees too: no cookie, a consistent hash of a header of the client's.
    for k in 0 1 2; do
        stop_ringway "$k"
        start_ringway "$k" --balance hash --hash-key http_x_client_key
    done
    STICKY_CHECK=no CHECK_EXTRA="--rotated yes --spread no"
    run_client ketama-rotated --transport polling --rotate-src --echoes 4 --src-ips "$ROT_LIST" \
        --header X-Client-Key

    # Control: instance 2 names the same backends by another address (the backend host's
    # second one), so its ids differ and it cannot honour the others' cookies: sessions that
    # cross it break (what this test would show if ids were not a function of the list).
    for k in 0 1 2; do stop_ringway "$k"; done
    UPS[1]=${UPSTREAMS//$BACKEND_ADDR/$BACKEND_ALT}
    for k in 0 1 2; do start_ringway "$k"; done
    EXPECT=fail STICKY_CHECK=yes CHECK_EXTRA=""
    run_client control-ids-differ --transport polling --rotate-src --echoes 4 --src-ips "$ROT_LIST"
    EXPECT=pass
    stop_ringway 1
    UPS[1]=$UPSTREAMS
    start_ringway 1
else
    note FAIL "sticky-rotated: no client address for each instance in step 1's map (${ROT[*]:-none})"
fi
STICKY_CHECK=yes CHECK_EXTRA=""

# 3. rolling restart of instance 1
ROLL=$RAW/rolling.json
ROLL_ERR=$WORK/rolling.log
ip netns exec "$C" node "$APP/rolling.js" --url "$URL" --clients 90 --src-ips $SRC_RANGE \
    --interval 100 --timeout 40 >"$ROLL" 2>"$ROLL_ERR" &
ROLL_PID=$!
track_pid "$ROLL_PID"
if wait_for_line "$ROLL_ERR" '^ready ' 20 "$ROLL_PID"; then
    sleep 1
    for ((b = 0; b < BUCKETS; b++)); do
        ((BUCKET_OWNER[b] == 0)) && BUCKET_OWNER[b]=$((1 + (b / 3) % 2))
    done
    lb_apply
    t_drain=$(now_ms)
    kill -QUIT "${RW_PID[0]}"
    drain_rc=0
    if wait_gone "${RW_PID[0]}" 10; then
        wait "${RW_PID[0]}" || drain_rc=$?
    else
        drain_rc=timeout
        stop_pid "${RW_PID[0]}" KILL
    fi
    drain_ms=$(($(now_ms) - t_drain))
    forget_pid "${RW_PID[0]}"
    [[ $drain_rc == 0 ]] && note ok "drain: instance 1 (${INST[0]}) got SIGQUIT after its buckets moved; exit 0 in $drain_ms ms" ||
        note FAIL "drain: instance 1 exit status $drain_rc after $drain_ms ms"
    sleep 3 # its websocket clients reconnect through the others and send what they buffered
    kill -USR2 "$ROLL_PID"
    # After SIGUSR2 rolling.js waits at most 2 x --ack-timeout x 10 retries (40 s) for the
    # acks still due, then prints its line and exits; a hung one is stopped here.
    roll_hung=no
    if wait_gone "$ROLL_PID" 50; then
        wait "$ROLL_PID" || true
    else
        roll_hung=yes
        stop_pid "$ROLL_PID" KILL
    fi
    forget_pid "$ROLL_PID"
    rc=0
    if [[ $roll_hung == yes ]]; then
        rc=1 verdict="rolling.js was still running 50 s after SIGUSR2: stopped (its result: $ROLL)"
    else
        verdict=$(node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").trim());
const gone = process.argv[2];
const p = [];
const onGone = r.first_via[gone] || 0;
if (r.lost !== 0) p.push(`${r.lost} message(s) lost`);
if (r.pending_at_end !== 0) p.push(`${r.pending_at_end} message(s) never acknowledged`);
if (r.acked !== r.sent) p.push(`acked ${r.acked} of ${r.sent}`);
if (r.connected_at_end !== r.clients) p.push(`connected at the end ${r.connected_at_end}/${r.clients}`);
if (!onGone) p.push(`no client was on ${gone} to begin with`);
if (r.moved_total !== onGone) p.push(`${r.moved_total} clients moved, ${onGone} were on ${gone}: ${JSON.stringify(r.moved)}`);
for (const k of Object.keys(r.moved)) if (!k.startsWith(gone + ">")) p.push(`a client moved ${k} (only ${gone}'"'"'s should)`);
if ((r.sessions_changed_by_mode.polling || 0) !== 0) p.push(`${r.sessions_changed_by_mode.polling} polling session(s) changed`);
console.log(`${r.clients} clients (${onGone} on ${gone}): sent ${r.sent}, acked ${r.acked}, lost ${r.lost}; moved ${JSON.stringify(r.moved_by_mode)}, new sessions ${JSON.stringify(r.sessions_changed_by_mode)}, reconnects ${r.reconnects}, connected at end ${r.connected_at_end}` + (p.length ? "\nFAIL: " + p.join("; ") : ""));
process.exit(p.length ? 1 : 0);
' "$ROLL" "${VIA[0]}") || rc=$?
    fi
    ((rc == 0)) && note ok "rolling: $verdict" || note FAIL "rolling: $verdict"
else
    cat "$ROLL_ERR" >&2
    note FAIL "rolling: the clients did not all connect"
    stop_pid "$ROLL_PID"
fi
# ...and back: the instance takes new clients again, exactly as the balancer hashes them.
start_ringway 0
for ((b = 0; b < BUCKETS; b++)); do BUCKET_OWNER[b]=$((b % 3)); done
lb_apply
CHECK_EXTRA="--src-map $SRC_MAP"
run_client back-websocket --transport websocket --src-ips $SRC_RANGE
CHECK_EXTRA=""
if [[ -f $RAW/back-websocket.json ]]; then
    before_n=$(jq_node "$WORK/spread-websocket.ref" "(r.per_via['${VIA[0]}'] || 0)")
    after_n=$(jq_node "$RAW/back-websocket.json" "(r.per_via['${VIA[0]}'] || 0)")
    if ((after_n > 0 && after_n == before_n)); then
        note ok "back: restarted instance 1 took $after_n of $CLIENTS new clients (step 1: $before_n)"
    else
        note FAIL "back: restarted instance 1 took $after_n of $CLIENTS new clients, step 1 gave it $before_n"
    fi
fi

# 4. capacity: 1 instance, then 3
# $1 label, $2 instances expected, $3 clients, $4 "measure": only report (nginx's line).
ceiling() {
    local label=$1 n=$2 m=$3 measure=${4:-} out=$RAW/ceiling-$1.json rc=0 verdict
    timeout 120 ip netns exec "$C" node "$APP/ceiling.js" --url "$URL" --clients "$m" \
        --src-ips $SRC_RANGE --in-flight 200 --hold 2 --timeout 15 >"$out" 2>"$WORK/ceiling-$label.log" || rc=$?
    if ((rc != 0)); then
        cat "$WORK/ceiling-$label.log" >&2
        note FAIL "ceiling-$label: ceiling.js exited $rc"
        return
    fi
    verdict=$(node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").trim());
const [n, per] = [Number(process.argv[2]), Number(process.argv[3])];
const inst = process.argv.slice(4);
const p = [];
if (r.held !== n * per) p.push(`held ${r.held}, expected ${n} x ${per} = ${n * per}`);
if (r.probe_ok !== r.held) p.push(`${r.probe_ok} of ${r.held} answered the probe`);
if (r.dropped) p.push(`${r.dropped} dropped while held`);
for (const v of inst) if ((r.per_via[v] || 0) !== per) p.push(`${v} held ${r.per_via[v] || 0}, expected ${per}`);
const refused = Object.entries(r.refused).map(([k, v]) => `${v}x ${k}`).join(", ");
console.log(`${r.attempted} attempted: held ${r.held} = ${inst.map((v) => r.per_via[v] || 0).join(" + ")} (${n} x ${per} expected), probe ok ${r.probe_ok}, dropped ${r.dropped}, refused ${refused || "none"}, ${r.duration_ms} ms` + (p.length ? "\nFAIL: " + p.join("; ") : ""));
process.exit(p.length ? 1 : 0);
' "$out" "$n" "$PER" "${VIA[@]:0:n}") || rc=$?
    if [[ $measure == measure ]]; then
        note info "ceiling-$label: ${verdict//FAIL: /differs: }"
    elif ((rc == 0)); then
        note ok "ceiling-$label: $verdict"
    else
        note FAIL "ceiling-$label: $verdict"
    fi
}
for k in 0 1 2; do kill -USR2 "${RW_PID[k]}"; done # their stats, into their logs
sleep 0.3
for k in 0 1 2; do
    f=$(ls -t "$WORK"/ringway-p$((k + 1))-*.log | head -1)
    log "before the ceilings, proxy $((k + 1)): $(grep '^stats: worker' "$f" | tail -1 | grep -o 'slots [0-9]* used\|sessions [0-9]*\|pooled upstream [0-9]*' | paste -sd, -)"
done
# The ceilings start on fresh instances, as scripts/ceiling.sh's do: a request whose client
# has gone while it waits for the backend (such as a long-poll abandoned in step 2's control) keeps
# its session and 2 slots until the node answers it (its next ping, up to 25 s), and would
# take its share of a budget measured to the slot. The line above shows what was left.
for k in 0 1 2; do
    stop_pid "${RW_PID[k]}" INT
    start_ringway "$k"
done
for ((b = 0; b < BUCKETS; b++)); do BUCKET_OWNER[b]=0; done
lb_apply
ceiling 1-instance 1 $((PER + CEILING_CLIENTS / 6))
for ((b = 0; b < BUCKETS; b++)); do BUCKET_OWNER[b]=$((b % 3)); done
lb_apply
sleep 1 # the first run's refused and closed connections finish on every instance
ceiling 3-instances 3 "$CEILING_CLIENTS"
# What explain says such a cluster holds, beside what it held.
EXPLAIN=$("$RINGWAY" explain --upstream "$UPSTREAMS" --worker-processes 1 --worker-connections "$WC" \
    --instances 3 2>&1 | grep -o 'The cluster holds [^(]*' || true)
held3=$(jq_node "$RAW/ceiling-3-instances.json" "r.held" 2>/dev/null || echo "?")
want3=$(sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<$((3 * PER))) # 1533 -> 1,533, as explain writes it
if [[ $EXPLAIN == "The cluster holds 3 × $PER = $want3 " ]]; then
    note ok "explain --instances 3: \"${EXPLAIN% }\"; held $held3"
else
    note FAIL "explain --instances 3 said \"${EXPLAIN:-nothing}\", expected 3 × $PER = $want3"
fi

# The same ceiling with nginx on each proxy host.
if ((NGINX_TOO)); then
    for k in 0 1 2; do stop_ringway "$k"; done
    NGX_TEMP=$(sed -n 's/.*--http-proxy-temp-path=\([^ ]*\)\/proxy.*/\1/p' < <(nginx -V 2>&1))
    NGX_TEMP=${NGX_TEMP:-/var/lib/nginx}
    for k in 0 1 2; do
        pre=$WORK/nginx-p$((k + 1))
        mkdir -p "$pre/logs" "$pre/temp"
        servers=""
        for p in "${NODE_PORTS[@]}"; do servers+="        server $BACKEND_ADDR:$p;"$'\n'; done
        cat >"$pre/nginx.conf" <<EOF
worker_processes 1;
events {
    worker_connections $WC;
}
http {
    access_log off;
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        ''      close;
    }
    upstream nodes {
$servers    }
    server {
        listen ${INST[k]}:80;
        location / {
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$host;
            proxy_read_timeout 3600s;
        }
    }
}
EOF
        # ip netns exec runs its command in a mount namespace of its own: nginx's compiled-in
        # temp path gets the run's folder bound over it there, and nowhere else. sh execs
        # nginx, so $! is nginx's master.
        # shellcheck disable=SC2016  # $1.. belong to the inner sh
        ip netns exec "${P[k]}" sh -c '[ -d "$2" ] && mount --bind "$1" "$2"; shift 2; exec "$@"' sh \
            "$pre/temp" "$NGX_TEMP" nginx -p "$pre" -c "$pre/nginx.conf" \
            -g "daemon off; master_process on; pid $pre/nginx.pid; error_log $pre/logs/error.log notice;" \
            >"$WORK/nginx-p$((k + 1)).log" 2>&1 &
        RW_PID[k]=$!
        track_pid $!
    done
    sleep 1
    for k in 0 1 2; do
        kill -0 "${RW_PID[k]}" 2>/dev/null ||
            die "nginx on proxy $((k + 1)) did not start: $(cat "$WORK/nginx-p$((k + 1)).log" "$WORK/nginx-p$((k + 1))/logs/error.log" 2>/dev/null | tail -3)"
    done
    log "proxies: nginx $(nginx -v 2>&1 | sed 's/.*\///') on ${INST[*]}, 1 x $WC each"
    ceiling nginx-3-instances 3 "$CEILING_CLIENTS" measure
    n_reuse=$(cat "$WORK"/nginx-p*/logs/error.log 2>/dev/null | grep -c 'worker_connections are not enough' || true)
    note info "nginx: $n_reuse 'worker_connections are not enough, reusing connections' lines over the 3 instances"
    for k in 0 1 2; do
        cp "$WORK/nginx-p$((k + 1))/logs/error.log" "$WORK/nginx-p$((k + 1))-error.log" 2>/dev/null || true
        stop_pid "${RW_PID[k]}" QUIT
    done
fi

# ---- summary ----------------------------------------------------------------------------------
DUR=$((SECONDS - T0))
echo
echo "ringway cluster: 3 instances (1 x $WC each) behind $BALANCER, 4 socket.io nodes + redis, $CLIENTS clients per run ($DUR s)"
printf '  %s\n' "${SUMMARY[@]}"
if [[ -n $OUT ]]; then
    mkdir -p "$OUT/raw"
    cp "$RAW"/*.json "$OUT/raw/"
    cp "$WORK/lb-ruleset.log" "$OUT/raw/lb-ruleset.txt" 2>/dev/null || true
    sha=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=false
    # The code under test only (the results folder itself is new and untracked).
    [[ -z $(git status --porcelain -- src bench tests scripts Cargo.toml Cargo.lock 2>/dev/null) ]] || dirty=true
    cat >"$OUT/meta.json" <<EOF
{
  "command": $(json_str "$CMDLINE"),
  "commit": $(json_str "$sha"),
  "dirty": $dirty,
  "date_utc": $(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)"),
  "kernel": $(json_str "$(uname -r)"),
  "cpu": $(json_str "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"),
  "cpus": $(nproc),
  "node": $(json_str "$(node --version)"),
  "redis": $(json_str "$(redis-server --version | head -1)"),
  "nft": $(json_str "$(nft --version 2>/dev/null || echo none)"),
  "nginx": $( ((NGINX_TOO)) && json_str "$(nginx -v 2>&1)" || echo null),
  "balancer": $(json_str "$BALANCER"),
  "ip_vs_in_kernel": $(ipvs_in_kernel && echo true || echo false),
  "budget_per_instance": $(json_str "1 x $WC"),
  "clients_per_run": $CLIENTS,
  "ceiling_clients": $CEILING_CLIENTS,
  "duration_s": $DUR
}
EOF
    {
        echo "# Cluster run: 3 ringway instances behind the kernel's L4 balancer"
        echo
        echo "\`$CMDLINE\` at $sha (dirty: $dirty), $(date -u +%Y-%m-%d), Linux $(uname -r),"
        echo "$(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo); balancer: $BALANCER"
        echo "(ip_vs in kernel: $(ipvs_in_kernel && echo yes || echo no)); each instance 1 x $WC slots; $DUR s."
        echo
        echo '```'
        printf '%s\n' "${SUMMARY[@]}"
        echo '```'
    } >"$OUT/summary.md"
    log "wrote $OUT"
fi
if ((FAILED)); then
    echo "cluster.sh: FAILED (logs in $WORK)"
    exit 1
fi
echo "cluster.sh: all passed"
