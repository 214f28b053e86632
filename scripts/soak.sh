#!/usr/bin/env bash
# Soak: everything a deployed proxy meets, at once, against one ringway for a while; then look
# for what it leaked.
#
#   scripts/soak.sh [--duration S] [--workers N] [--worker-mode thread|process] [--nginx]
#                   [--out DIR] [--no-build]
#
# Starts 4 wsecho backends (upstream `nodes`, location /), a fifth that this script kills
# (SIGKILL) every 4 s and restarts a second later (upstream `flaky`, location /flaky), a port
# nothing listens on (upstream `down`, location /down), and ringway in front (N workers ×
# 4,096 slots, default 2; client header and body timeouts of 2 s; `--metrics`). For S seconds
# (default 60), all at once, with `loadgen --strict` where nothing may go wrong:
#   - WebSocket echo, 64 B, 50 connections (copy mode under `auto`),
#   - WebSocket bulk, 1 MiB messages, 2 connections (`auto` moves them to splice),
#   - HTTP keep-alive GETs, 20 connections,
#   - churn: connect, upgrade, echo once, close, 4 workers,
#   - `loadgen hostile`, 8 workers: garbage, malformed, oversized and smuggling heads, stalled
#     heads and bodies, silent clients, resets in heads and tunnels, abandoned upgrades,
#     tunnels that never read, half-closed tunnels, GETs for the dead upstream — each must get
#     its clear status or a clean close;
#   - HTTP GETs on /flaky, 4 connections (its failures are expected and only counted);
# and every 10 s a reload (SIGHUP) with the file changed (upstream `keepalive` 32 <-> 16).
#
# Then it checks, and exits 1 if any check fails (2 on a setup error):
#   - every strict load saw no failure, error or stall, and every hostile client was answered
#     as it should be;
#   - ringway is left with no session but its pooled upstream connections, no pipe in use, no ring buffer held, only the current
#     generation's workers, and as many sockets as before the load plus the upstream
#     connections it pools (pipes: 2 fds per idle pipe in its pool);
#   - it still serves a fresh echo and fresh GETs, its error log has no panic, [alert] or
#     [emerg], and a graceful stop (SIGQUIT) exits 0 within 10 s.
# RSS before, during and after is printed. With --nginx, nginx then gets the same file, the
# same load and the same disturbances (reloads by SIGHUP), and its loads' summary lines, RSS,
# sockets before and after, and log lines by level are printed beside ringway's (for
# comparison; no check is made of nginx). With --out DIR, the JSON of every load, the confs,
# summary.txt and the logs are copied there (a log over 1 MiB as a digest). Loopback only;
# free ports; everything it starts is stopped by pid.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=60 WORKERS=2 MODE=thread NGINX=0 OUT="" BUILD=1
usage() { echo "usage: scripts/soak.sh [--duration S] [--workers N] [--worker-mode thread|process] [--nginx] [--out DIR] [--no-build]" >&2; }
while (($#)); do
    case $1 in
    --duration) DURATION=${2:-} && shift ;;
    --workers) WORKERS=${2:-} && shift ;;
    --worker-mode) MODE=${2:-} && shift ;;
    --nginx) NGINX=1 ;;
    --out) OUT=${2:-} && shift ;;
    --no-build) BUILD=0 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "soak: unknown argument $1" >&2
        usage
        exit 2
        ;;
    esac
    shift
done
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 10 && DURATION <= 86400)) ||
    { echo "soak: --duration must be 10..86400 seconds" >&2; exit 2; }
[[ $WORKERS =~ ^[0-9]+$ ]] && ((WORKERS >= 1 && WORKERS <= 64)) ||
    { echo "soak: --workers must be 1..64" >&2; exit 2; }
[[ $MODE == thread || $MODE == process ]] ||
    { echo "soak: --worker-mode is thread or process" >&2; exit 2; }

# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
log() { printf '[soak %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    printf '[soak] error: %s\n' "$*" >&2
    exit 2
}

BIN=$(release_dir "$ROOT")
if ((BUILD)); then
    log "building (release)"
    cargo build --release --workspace --quiet
fi
((NGINX == 0)) || command -v nginx >/dev/null || die "--nginx: nginx is not installed (apt-get install nginx-light)"
for b in ringway wsecho loadgen; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run without --no-build (or cargo build --release --workspace)"
done

WORK=$(mktemp -d /tmp/ringway-soak.XXXXXX)
FAILED=0
finish() {
    local rc=$?
    cleanup_children
    if ((rc == 0)); then
        rm -rf "$WORK"
    else
        echo "soak: kept $WORK (logs and JSON) for this failure" >&2
    fi
}
trap finish EXIT

# --- backends -------------------------------------------------------------------------------
# They outlive the run (ringway's and, with --nginx, nginx's) and then exit by themselves.
LIFETIME=$(((NGINX + 1) * (DURATION + 60) + 300))
ports=()
for i in 1 2 3 4; do
    "$BIN"/wsecho --port 0 --procs 1 --lifetime "$LIFETIME" >"$WORK/wsecho$i.out" 2>&1 &
    track_pid $!
    wait_for_line "$WORK/wsecho$i.out" '^listening 127\.0\.0\.1:[0-9]+' 10 $! || die "wsecho $i did not start"
    ports+=("$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/wsecho$i.out" | head -1)")
done
FLAKY=$(free_port)
FLAKY_PID=""
start_flaky() {
    "$BIN"/wsecho --port "$FLAKY" --procs 1 --lifetime "$LIFETIME" >>"$WORK/flaky.out" 2>&1 &
    FLAKY_PID=$!
    track_pid "$FLAKY_PID"
}
start_flaky
DOWN=$(free_port)
LISTEN=$(free_port)
METRICS=$(free_port)

write_conf() { # FILE LISTEN-PORT KEEPALIVE [EXTRA-TOP-LEVEL]
    cat >"$1.new" <<EOF
${4:-}
worker_processes $WORKERS;
events { worker_connections 4096; }
http {
    access_log off;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
    client_header_timeout 2s;
    client_body_timeout 2s;
    upstream nodes {
        server 127.0.0.1:${ports[0]}; server 127.0.0.1:${ports[1]};
        server 127.0.0.1:${ports[2]}; server 127.0.0.1:${ports[3]};
        keepalive $3;
    }
    upstream flaky { server 127.0.0.1:$FLAKY max_fails=0; keepalive 8; }
    upstream down { server 127.0.0.1:$DOWN; }
    server {
        listen 127.0.0.1:$2;
        proxy_http_version 1.1;
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection \$connection_upgrade;
        proxy_set_header Host \$host;
        location / { proxy_pass http://nodes; }
        location /flaky { proxy_pass http://flaky; }
        location /down { proxy_pass http://down; }
    }
}
EOF
    mv "$1.new" "$1"
}
write_conf "$WORK/ringway.conf" "$LISTEN" 32

# --- ringway --------------------------------------------------------------------------------
"$BIN"/ringway -c "$WORK/ringway.conf" --worker-mode "$MODE" --metrics "127.0.0.1:$METRICS" >"$WORK/ringway.log" 2>&1 &
RPID=$!
track_pid "$RPID"
wait_port "$LISTEN" 10 || die "ringway did not listen on 127.0.0.1:$LISTEN (log: $WORK/ringway.log)"
wait_port "$METRICS" 10 || die "ringway's metrics did not listen on 127.0.0.1:$METRICS"

# GET /metrics over bash's /dev/tcp (no curl needed).
scrape() {
    local out
    exec 3<>"/dev/tcp/127.0.0.1/$METRICS" || return 1
    printf 'GET /metrics HTTP/1.0\r\nHost: soak\r\n\r\n' >&3
    out=$(cat <&3)
    exec 3<&-
    printf '%s\n' "$out"
}
# metric NAME [LABEL-REGEX]: the sum over every series of family NAME (every worker and
# generation) whose labels match.
metric() {
    scrape | awk -v name="$1" -v re="${2:-}" '
        $1 ~ "^" name "([{]|$)" && (re == "" || $1 ~ re) { s += $2 }
        END { printf "%d", s }'
}
count_fds() { # PID socket|pipe: the process's, and its children's (worker processes)
    local pids=("$1") kids=()
    read -r -a kids <"/proc/$1/task/$1/children" 2>/dev/null || true
    pids+=("${kids[@]}")
    local p n=0
    for p in "${pids[@]}"; do
        n=$((n + $(find "/proc/$p/fd" -lname "$2:*" 2>/dev/null | wc -l)))
    done
    printf '%s' "$n"
}
rss_kb() { rss_tree_kb "$RPID"; }

SOCKETS0=$(count_fds "$RPID" socket)
POOLED0=$(metric ringway_upstream_pooled)
# Pipes that are not the pools' (stdin, when this script runs in a pipeline).
OTHER_PIPES=$(($(count_fds "$RPID" pipe) - 2 * $(metric ringway_pipes 'state="idle"')))
RSS0=$(rss_kb)
log "ringway pid $RPID on 127.0.0.1:$LISTEN ($WORKERS workers, $MODE mode), $SOCKETS0 sockets, RSS $((RSS0 / 1024)) MiB; ${DURATION}s of load"

# --- load -----------------------------------------------------------------------------------
LG=("$BIN/loadgen")
declare -A LOAD_PID=() LOAD_RC=()
load() { # name strict(0|1) args...
    local name=$1 strict=$2
    shift 2
    local s=()
    ((strict)) && s=(--strict)
    "${LG[@]}" "${s[@]}" "$@" >"$WORK/$name.json" 2>"$WORK/$name.err" &
    LOAD_PID[$name]=$!
    track_pid $!
}
LOADS=(echo bulk http churn hostile flaky)
# soak PREFIX PID PORT RELOAD-FUNCTION: the loads against 127.0.0.1:PORT for DURATION seconds
# while the flaky backend dies every 4 s (back 1 s later) and the file changes and the proxy
# reloads every 10 s (the first at 5 s). Sets RELOADS, KILLS, PEAK_RSS and LOAD_RC[PREFIX-x];
# prints each load's exit status and summary line.
soak() {
    local p=$1 pid=$2 port=$3 reload=$4 name line rc el r
    local t=(--target "127.0.0.1:$port")
    load "$p-echo" 1 echo "${t[@]}" --conns 50 --size 64 --duration "$DURATION" --warmup 0
    load "$p-bulk" 1 bulk "${t[@]}" --conns 2 --duration "$DURATION" --warmup 0
    load "$p-http" 1 http "${t[@]}" --conns 20 --duration "$DURATION" --warmup 0
    load "$p-churn" 1 churn "${t[@]}" --conns 4 --duration "$DURATION"
    load "$p-hostile" 1 hostile "${t[@]}" --conns 8 --duration "$DURATION" --timeout 5 --down-path /down
    load "$p-flaky" 0 http "${t[@]}" --path /flaky --conns 4 --duration "$DURATION" --warmup 0
    local start=$SECONDS keep=32 next_kill=4 next_reload=5
    RELOADS=0 KILLS=0 PEAK_RSS=$(rss_tree_kb "$pid")
    while ((SECONDS - start < DURATION)); do
        sleep 0.5
        el=$((SECONDS - start))
        if ((el >= next_kill)) && [[ -n $FLAKY_PID ]]; then
            # (bash reports the SIGKILL on stderr; it is the point here)
            { stop_pid "$FLAKY_PID" KILL; } 2>/dev/null
            FLAKY_PID=""
            KILLS=$((KILLS + 1))
            next_kill=$((el + 4))
        elif ((el >= next_kill - 3)) && [[ -z $FLAKY_PID ]]; then
            start_flaky
        fi
        if ((el >= next_reload)); then
            keep=$((keep == 32 ? 16 : 32))
            "$reload" "$keep"
            RELOADS=$((RELOADS + 1))
            next_reload=$((el + 10))
        fi
        r=$(rss_tree_kb "$pid")
        ((r > PEAK_RSS)) && PEAK_RSS=$r
    done
    [[ -n $FLAKY_PID ]] || start_flaky
    echo "loads (loadgen's own summary lines):"
    for name in "${LOADS[@]}"; do
        rc=0
        wait "${LOAD_PID[$p-$name]}" || rc=$?
        forget_pid "${LOAD_PID[$p-$name]}"
        line=$(grep -E '^(echo|bulk|http|churn|hostile):' "$WORK/$p-$name.err" | tail -1 || true)
        printf '  %-8s exit %s  %s\n' "$name" "$rc" "${line:-(no summary line)}"
        grep -E '^  unexpected:' "$WORK/$p-$name.err" | head -5 || true
        LOAD_RC[$p-$name]=$rc
    done
}
reload_ringway() {
    write_conf "$WORK/ringway.conf" "$LISTEN" "$1"
    kill -HUP "$RPID"
}
log_levels() { grep -aoE '\[(debug|info|notice|warn|error|crit|alert|emerg)\]' "$1" | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}' | sed 's/, $//'; }

# --- results of the load ----------------------------------------------------------------------
check() { # ok(0|1) what
    if (($1)); then
        printf '  ok    %s\n' "$2"
    else
        printf '  FAIL  %s\n' "$2"
        FAILED=1
    fi
}
SUMMARY=$WORK/summary.txt
# Blocks written to summary.txt (not a pipeline: `wait` needs this shell), shown after each.
{
    soak rw "$RPID" "$LISTEN" reload_ringway
    echo "ringway: ${DURATION}s, $WORKERS workers ($MODE mode), $RELOADS reloads, flaky backend killed $KILLS times"
    echo "checks:"
    for name in echo bulk http churn; do
        check $((LOAD_RC[rw-$name] == 0)) "$name: no failure, error or stall (loadgen --strict)"
    done
    check $((LOAD_RC[rw-hostile] == 0)) "hostile: every bad client got its status or a clean close"
    check $((LOAD_RC[rw-flaky] == 0)) "flaky: the run completed (its failures are expected and counted)"

    # Drained: wait up to 15 s for the sessions of the load to end everywhere.
    # A pooled upstream connection is a session of its own (state Pooled): those may stay.
    sessions=-1 pooled=0 pipes_busy=-1 bufs=-1 workers=-1
    for ((i = 0; i < 150; i++)); do
        sessions=$(metric ringway_sessions)
        pooled=$(metric ringway_upstream_pooled)
        pipes_busy=$(metric ringway_pipes 'state="in_use"')
        bufs=$(metric ringway_relay_buffers_held)
        workers=$(scrape | grep -c '^ringway_worker_slots{' || true)
        ((sessions == pooled && pipes_busy == 0 && bufs == 0 && workers == WORKERS)) && break
        sleep 0.1
    done
    check $((sessions == pooled)) "no session left but the $pooled pooled upstream connections (ringway_sessions = $sessions)"
    check $((pipes_busy == 0)) "no pipe in use (ringway_pipes in_use = $pipes_busy)"
    check $((bufs == 0)) "no ring buffer held (ringway_relay_buffers_held = $bufs)"
    check $((workers == WORKERS)) "only the current generation's workers ($workers of $WORKERS)"
    # The connection of the last scrape may still be closing: look again for up to 5 s.
    for ((i = 0; i < 50; i++)); do
        pooled=$(metric ringway_upstream_pooled)
        idle_pipes=$(metric ringway_pipes 'state="idle"')
        sleep 0.1
        sockets=$(count_fds "$RPID" socket)
        pipe_fds=$(count_fds "$RPID" pipe)
        ((sockets == SOCKETS0 - POOLED0 + pooled && pipe_fds == OTHER_PIPES + 2 * idle_pipes)) && break
    done
    check $((sockets == SOCKETS0 - POOLED0 + pooled)) \
        "sockets: $sockets = $SOCKETS0 before the load - $POOLED0 pooled then + $pooled pooled now"
    check $((pipe_fds == OTHER_PIPES + 2 * idle_pipes)) "pipe fds: $pipe_fds = 2 × $idle_pipes idle pipes in the pools + $OTHER_PIPES not the pools' (stdio)"

    T=(--target "127.0.0.1:$LISTEN")
    rc=0
    "${LG[@]}" --strict echo "${T[@]}" --conns 10 --size 64 --duration 1 --warmup 0 >/dev/null 2>"$WORK/after-echo.err" || rc=$?
    check $((rc == 0)) "a fresh echo after the soak"
    rc=0
    "${LG[@]}" --strict http "${T[@]}" --conns 5 --duration 1 --warmup 0 >/dev/null 2>"$WORK/after-http.err" || rc=$?
    check $((rc == 0)) "fresh GETs after the soak"
    bad_log=$(grep -aEc 'panic|\[alert\]|\[emerg\]' "$WORK/ringway.log" || true)
    check $((bad_log == 0)) "no panic, [alert] or [emerg] in ringway's log ($(wc -l <"$WORK/ringway.log") lines)"
    RSS1=$(rss_kb)
    stop_pid "$RPID" QUIT
    check $((STOP_RC == 0)) "graceful stop (SIGQUIT) exits 0 (exit $STOP_RC)"
    echo "log lines by level: $(log_levels "$WORK/ringway.log")"
    echo "RSS: $((RSS0 / 1024)) MiB before, $((PEAK_RSS / 1024)) MiB at most during, $((RSS1 / 1024)) MiB after"
} >"$SUMMARY"
cat "$SUMMARY"

# --- nginx, the same file, load and disturbances (for comparison; nothing is checked) ------
if ((NGINX)); then
    NLISTEN=$(free_port)
    mkdir -p "$WORK/nginx/logs"
    NG_TOP="pid $WORK/nginx/nginx.pid; error_log $WORK/nginx.log info;"
    write_conf "$WORK/nginx.conf" "$NLISTEN" 32 "$NG_TOP"
    nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" -g "daemon off; master_process on;" >"$WORK/nginx.out" 2>&1 &
    NPID=$!
    track_pid "$NPID"
    wait_port "$NLISTEN" 10 || die "nginx did not listen on 127.0.0.1:$NLISTEN (log: $WORK/nginx.log)"
    NSOCK0=$(count_fds "$NPID" socket)
    NRSS0=$(rss_tree_kb "$NPID")
    reload_nginx() {
        write_conf "$WORK/nginx.conf" "$NLISTEN" "$1" "$NG_TOP"
        kill -HUP "$NPID"
    }
    log "nginx pid $NPID on 127.0.0.1:$NLISTEN, the same ${DURATION}s"
    {
        echo
        soak ng "$NPID" "$NLISTEN" reload_nginx
        echo "nginx: ${DURATION}s, $WORKERS workers, $RELOADS reloads, flaky backend killed $KILLS times"
        for name in echo bulk http churn hostile; do
            printf '  %-8s %s\n' "$name" "$( ((LOAD_RC[ng-$name] == 0)) && echo "no failure, error, stall or unexpected answer" || echo "exit ${LOAD_RC[ng-$name]}: see above")"
        done
        sleep 5
        echo "sockets: $NSOCK0 before the load, $(count_fds "$NPID" socket) 5 s after it (master and workers; pooled upstream connections included)"
        NRSS1=$(rss_tree_kb "$NPID")
        stop_pid "$NPID" QUIT
        echo "graceful stop (SIGQUIT): exit $STOP_RC"
        echo "log lines by level: $(log_levels "$WORK/nginx.log")"
        echo "RSS (master and workers): $((NRSS0 / 1024)) MiB before, $((PEAK_RSS / 1024)) MiB at most during, $((NRSS1 / 1024)) MiB after"
    } >"$WORK/nginx-summary.txt"
    cat "$WORK/nginx-summary.txt"
    cat "$WORK/nginx-summary.txt" >>"$SUMMARY"
fi

if [[ -n $OUT ]]; then
    mkdir -p "$OUT"
    cp "$WORK"/*.json "$WORK"/*.err "$WORK"/*.conf "$SUMMARY" "$OUT"/
    # Logs of up to 1 MiB as they are; bigger ones (a long run logs every refused connect to
    # the flaky backend) as a digest.
    for f in "$WORK"/*.log; do
        if (($(wc -c <"$f") <= 1048576)); then
            cp "$f" "$OUT"/
        else
            log_digest "$f" >"$OUT/${f##*/}.digest.txt"
        fi
    done
    log "wrote $OUT"
fi
if ((FAILED)); then
    log "soak FAILED (above)"
    exit 1
fi
log "soak passed"
