#!/usr/bin/env bash
# ceiling.sh: how many idle WebSocket tunnels ringway and nginx hold on this box, side by side.
#
#   scripts/ceiling.sh [--tunnels N] [--hold S] [--rate R] [--only ringway|nginx] [--tune]
#                      [--out DIR] [--workers W] [--worker-connections C] [--floor-mib M]
#                      [--upstream-bind auto|none|RANGE] [--no-build] [--force]
#
# One run: four wsecho backends (each --procs K), one generated nginx.conf (W workers x C
# worker_connections, worker_rlimit_nofile 20000, four upstream servers, proxy_read_timeout
# 3600s), then for each proxy (ringway in process mode, then nginx): start it, sample the box
# every second (proxy tree RSS, MemFree, Slab, SUnreclaim, TCP sockets), run
# `loadgen ceiling --conns N` (ramp at R/s, hold S s, probe), stop the proxy with SIGTERM and
# wait for the box to recover before the next one.
#
# Defaults: N 100000, hold 60, rate 5000, W = ceil(1.08 N / 9000) (a process holds ~9,990
# tunnels under this machine's 20,000-fd cap; 8% spare for SO_REUSEPORT's uneven split),
# C 18000. Safety: usable memory (MemAvailable less SReclaimable, which with many sockets open
# is mostly their inodes and dentries) under --floor-mib (2048) stops the ramp (SIGUSR1 to the load
# generator: what it started is held and probed, so the run measures the highest count the box
# reached), under half of it stops the load generator (SIGTERM); either is written into the
# results. Every loadgen run has a hard time limit; everything started
# is killed by pid on exit. --tune applies tuning/apply.sh and reverts it on exit.
# Refuses to start (without --force) while scripts/compare.sh is running and N > 3000.
#
# Results: results/<UTC date>-<short sha>-ceiling-<N>/ (or --out DIR): meta.json, explain/,
# conf/, raw/ (loadgen JSON, session JSON, memory TSV), logs/; then ceiling_report (from
# $CARGO_TARGET_DIR/release, default target/release) writes summary.md, plots/ceiling-memory.svg.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=scripts/lib/ceiling.sh
source "$here/lib/ceiling.sh"

usage() { sed -n '2,25s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

cmdline="$0${*:+ $*}"
N=100000
HOLD=60
RATE=5000
ONLY=""
tune=0
build=1
force=0
out=""
W=""
C=18000
FLOOR_MIB=2048
UPSTREAM_BIND=auto
need_arg() { (($1 >= 2)) || die "$2 needs a value"; }
while (($#)); do
    case $1 in
        --tunnels) need_arg $# "$1"; N=$2; shift ;;
        --hold) need_arg $# "$1"; HOLD=$2; shift ;;
        --rate) need_arg $# "$1"; RATE=$2; shift ;;
        --only) need_arg $# "$1"; ONLY=$2; shift ;;
        --out) need_arg $# "$1"; out=$2; shift ;;
        --workers) need_arg $# "$1"; W=$2; shift ;;
        --worker-connections) need_arg $# "$1"; C=$2; shift ;;
        --floor-mib) need_arg $# "$1"; FLOOR_MIB=$2; shift ;;
        --upstream-bind) need_arg $# "$1"; UPSTREAM_BIND=$2; shift ;;
        --tune) tune=1 ;;
        --no-build) build=0 ;;
        --force) force=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
{ [[ $N =~ ^[0-9]+$ ]] && ((N > 0)); } || die "--tunnels must be a positive integer"
{ [[ $RATE =~ ^[0-9]+$ ]] && ((RATE > 0)); } || die "--rate must be a positive integer"
[[ $HOLD =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--hold must be a number of seconds"
{ [[ $C =~ ^[0-9]+$ ]] && ((C >= 16 && C <= 19500)); } || die "--worker-connections must be 16..19500 (20,000 fds per process here)"
[[ $FLOOR_MIB =~ ^[0-9]+$ ]] || die "--floor-mib must be an integer"
case $ONLY in
    "") PROXIES=(ringway nginx) ;;
    ringway | nginx) PROXIES=("$ONLY") ;;
    *) die "--only takes ringway or nginx" ;;
esac
per_worker=$(((C - 2) / 2))
if [[ -z $W ]]; then
    W=$(ceil_div $((N * 108 / 100)) "$per_worker")
fi
{ [[ $W =~ ^[0-9]+$ ]] && ((W >= 1)); } || die "--workers must be a positive integer"
BUDGET=$((W * per_worker))
# Backends: four wsecho instances, K processes each (~15,000 connections per process).
K=$(ceil_div "$N" 60000)
# Clients: P loadgen processes (~15,000 connections each), 59 loopback source addresses.
P=$(ceil_div "$N" 15000)
SRC_IPS=127.0.0.2-127.0.0.60
HOLD_INT=${HOLD%.*}
# Hard limit per loadgen run: 4x the nominal ramp, the hold, the probe and setup slack.
LG_LIMIT=$((N * 4 / RATE + HOLD_INT + 180))

# ---------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------
t_start=$(now_ms)
for tool in cargo git ss awk sed grep timeout; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
if ((tune)) && ((EUID != 0)); then
    die "--tune needs root (tuning/apply.sh writes /proc/sys)"
fi
if ((N > 3000 && !force)) && pgrep -f 'scripts/compare\.sh' >/dev/null; then
    die "scripts/compare.sh is running on this box; a ceiling run of $N tunnels would disturb it (wait, or --force)"
fi
cd "$root"
if ((build)); then
    log "building release binaries (cargo build --release --workspace)"
    cargo build --release --workspace >&2 || die "cargo build --release --workspace failed (or use --no-build)"
fi
BIN=$(release_dir "$root") # $CARGO_TARGET_DIR/release, else target/release
for b in ringway wsecho loadgen ceiling_report; do
    [[ -x $BIN/$b ]] || die "missing $BIN/$b (run cargo build --release --workspace)"
done
NGINX=""
if [[ " ${PROXIES[*]} " == *" nginx "* ]]; then
    NGINX=$(command -v nginx) || die "nginx is not installed (apt-get install nginx-light)"
fi

sha=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo nogit)
[[ -n $out ]] || out=$root/results/$(date -u +%Y%m%dT%H%M%SZ)-$sha-ceiling-$N
mkdir -p "$out"
RUN=$(cd "$out" && pwd)
mkdir -p "$RUN/raw" "$RUN/logs" "$RUN/conf" "$RUN/explain" "$RUN/nginx/temp" "$RUN/nginx/logs"
log "$N tunnels, ${PROXIES[*]}: $W workers x $C worker_connections (budget $BUDGET), backends 4 x $K procs, loadgen $P procs, rate $RATE/s, hold ${HOLD}s; results in $RUN"

TUNED=0
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    cleanup_children
    if ((TUNED)); then
        log "reverting sysctls (tuning/apply.sh --revert)"
        "$root/tuning/apply.sh" --revert --state-dir "$RUN/tuning-state" >>"$RUN/logs/tuning.log" 2>&1 ||
            warn "revert failed: retry with tuning/apply.sh --revert --state-dir $RUN/tuning-state"
    fi
    ((rc == 0)) || printf '[ceiling] failed (exit %s); partial results in %s\n' "$rc" "$RUN" >&2
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((tune)); then
    log "applying tuning/apply.sh (reverted on exit)"
    TUNED=1
    "$root/tuning/apply.sh" --state-dir "$RUN/tuning-state" >"$RUN/logs/tuning.log" 2>&1 ||
        die "tuning/apply.sh failed; see $RUN/logs/tuning.log"
fi

# nginx's temp dirs: a private mount namespace with the run folder bound over them (as compare.sh).
NGX_ISOLATION="system temp paths"
NGX_TEMP_DIR=/var/lib/nginx
if [[ -n $NGINX ]]; then
    NGX_TEMP_DIR=$(sed -n 's/.*--http-proxy-temp-path=\([^ ]*\)\/proxy.*/\1/p' < <("$NGINX" -V 2>&1))
    NGX_TEMP_DIR=${NGX_TEMP_DIR:-/var/lib/nginx}
    # shellcheck disable=SC2016
    if [[ -d $NGX_TEMP_DIR ]] && command -v unshare >/dev/null &&
        unshare -m -- sh -c 'mount --bind "$1" "$2"' sh "$RUN/nginx/temp" "$NGX_TEMP_DIR" 2>/dev/null; then
        NGX_ISOLATION="private mount namespace: $RUN/nginx/temp bound over $NGX_TEMP_DIR"
    fi
fi
nginx_cmd() {
    local how=$1 conf=$2 test=${3:-} prefix=$RUN/nginx
    local g="daemon off; master_process on; pid $prefix/nginx.pid; error_log $prefix/logs/error.log info;"
    local -a cmd=("$NGINX" -p "$prefix" -c "$conf" ${test:+"$test"} -g "$g")
    if [[ $NGX_ISOLATION == private* ]]; then
        # shellcheck disable=SC2016
        cmd=(unshare -m -- sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh
            "$prefix/temp" "$NGX_TEMP_DIR" "${cmd[@]}")
    fi
    [[ $how != exec ]] || exec "${cmd[@]}"
    "${cmd[@]}"
}

# ---------------------------------------------------------------------------------------
# meta.json
# ---------------------------------------------------------------------------------------
SYSCTLS=(net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.ipv4.ip_local_port_range
    net.ipv4.tcp_tw_reuse net.ipv4.tcp_fin_timeout net.ipv4.tcp_mem net.ipv4.tcp_rmem
    net.ipv4.tcp_wmem net.core.netdev_max_backlog net.ipv4.tcp_max_orphans fs.file-max fs.nr_open
    net.netfilter.nf_conntrack_max vm.max_map_count vm.overcommit_memory)
sysctl_json() {
    local p=/proc/sys/${1//.//} v
    if [[ -r $p ]]; then
        v=$(<"$p")
        json_str "${v//$'\t'/ }"
    else
        printf 'null'
    fi
}
NGINX_CONF_NOTE="same file for both proxies"
write_meta() {
    local duration=$1 commit dirty i sep=""
    commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
    dirty=false
    [[ -z $(git -C "$root" status --porcelain -- src bench Cargo.toml 2>/dev/null) ]] || dirty=true
    {
        printf '{\n  "tool": "scripts/ceiling.sh",\n'
        printf '  "command_line": %s,\n' "$(json_str "$cmdline")"
        printf '  "date_utc": %s,\n  "duration_s": %s,\n' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" "$duration"
        printf '  "commit": %s,\n  "short_sha": %s,\n  "source_dirty": %s,\n' "$(json_str "$commit")" "$(json_str "$sha")" "$dirty"
        printf '  "kernel": %s,\n' "$(json_str "$(uname -r)")"
        printf '  "cpu_model": %s,\n' "$(json_str "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)")"
        printf '  "cpu_count": %s,\n' "$(grep -c '^processor' /proc/cpuinfo)"
        printf '  "mem_total_kb": %s,\n' "$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)"
        printf '  "rustc": %s,\n' "$(json_str "$(rustc -V 2>/dev/null || echo unknown)")"
        printf '  "ringway": %s,\n' "$(json_str "$("$BIN/ringway" --version 2>&1 | head -n 1)")"
        printf '  "ringway_binary": %s,\n' "$(json_str "$(stat -c '%y' "$BIN/ringway") sha256 $(sha256sum "$BIN/ringway" | cut -c1-16)")"
        if [[ -n $NGINX ]]; then
            printf '  "nginx": %s,\n  "nginx_isolation": %s,\n' "$(json_str "$("$NGINX" -v 2>&1 | head -n 1)")" "$(json_str "$NGX_ISOLATION")"
        else
            printf '  "nginx": null,\n'
        fi
        printf '  "nginx_conf_note": %s,\n' "$(json_str "$NGINX_CONF_NOTE")"
        printf '  "ulimit_n_soft": %s,\n  "ulimit_n_hard": %s,\n' "$(json_str "$(ulimit -Sn)")" "$(json_str "$(ulimit -Hn)")"
        printf '  "tune": %s,\n  "sysctls": {' "$( ((tune)) && echo true || echo false)"
        for i in "${SYSCTLS[@]}"; do
            printf '%s\n    %s: %s' "$sep" "$(json_str "$i")" "$(sysctl_json "$i")"
            sep=,
        done
        printf '\n  },\n'
        printf '  "params": {"tunnels": %s, "hold_s": %s, "rate": %s, "proxies": [%s], "workers": %s, "worker_connections": %s, "budget": %s,' \
            "$N" "$HOLD" "$RATE" "$(printf '"%s",' "${PROXIES[@]}" | sed 's/,$//')" "$W" "$C" "$BUDGET"
        printf ' "backends": 4, "backend_procs_each": %s, "loadgen_procs": %s, "src_ips": %s, "floor_mib": %s, "loadgen_limit_s": %s},\n' \
            "$K" "$P" "$(json_str "$SRC_IPS")" "$FLOOR_MIB" "$LG_LIMIT"
        printf '  "commands": {"ringway": %s, "nginx": %s, "loadgen": %s, "wsecho": %s}\n}\n' \
            "$(json_str "${RINGWAY_CMD:-}")" "$(json_str "${NGINX_CMD:-}")" "$(json_str "${LOADGEN_CMD:-}")" "$(json_str "${WSECHO_CMD:-}")"
    } >"$RUN/meta.json"
}
write_meta null

# ---------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------
BACKEND_PORTS=()
WSECHO_CMD="$BIN/wsecho --port 0 --procs $K --lifetime 7200   (x4)"
for i in 1 2 3 4; do
    "$BIN/wsecho" --port 0 --procs "$K" --lifetime 7200 >"$RUN/logs/wsecho$i.out" 2>"$RUN/logs/wsecho$i.err" &
    pid=$!
    track_pid "$pid"
    wait_for_line "$RUN/logs/wsecho$i.out" '^listening ' 20 "$pid" || die "wsecho $i did not start; see $RUN/logs/wsecho$i.err"
    port=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$RUN/logs/wsecho$i.out" | head -n 1)
    [[ -n $port ]] || die "wsecho $i printed no port"
    BACKEND_PORTS+=("$port")
done
log "backends on 127.0.0.1:${BACKEND_PORTS[*]} ($K procs each)"

# ---------------------------------------------------------------------------------------
# Configuration: the seed with our ports and budget; nginx gets proxy_bind over several
# source addresses only when one address's ports cannot carry N/4 tunnels per backend.
# ---------------------------------------------------------------------------------------
PROXY_PORT=$(free_port)
CONF=$RUN/conf/ceiling.conf
awk -v wp="$W" -v wc="$C" -v port="$PROXY_PORT" -v servers="${BACKEND_PORTS[*]}" '
    BEGIN { n = split(servers, s, " ") }
    /^[[:space:]]*worker_processes[[:space:]]/ {
        sub(/worker_processes[[:space:]]+[^;]*;/, "worker_processes " wp ";"); print
        print "# ceiling.sh: this machine caps RLIMIT_NOFILE at 20,000 per process."
        print "worker_rlimit_nofile 20000;"
        did_wp = 1; next
    }
    /^[[:space:]]*worker_connections[[:space:]]/ { sub(/worker_connections[[:space:]]+[^;]*;/, "worker_connections " wc ";"); did_wc = 1 }
    /^[[:space:]]*listen[[:space:]]/ { sub(/listen[[:space:]]+[^;]*;/, "listen 127.0.0.1:" port ";"); did_listen = 1 }
    in_up && /^[[:space:]]*server[[:space:]]/ { next }
    in_up && /}/ { in_up = 0 }
    { print }
    /^[[:space:]]*upstream[[:space:]].*{/ { in_up = 1; for (i = 1; i <= n; i++) printf "        server 127.0.0.1:%s;\n", s[i] }
    /^[[:space:]]*http[[:space:]]*{/ { print "    access_log off;" }
    /proxy_set_header[[:space:]]+Host[[:space:]]/ { print "            proxy_read_timeout 3600s;" }
    END { if (!did_wp || !did_wc || !did_listen) exit 3 }
' "$root/scripts/nginx.conf" >"$CONF" || die "scripts/nginx.conf lacks worker_processes, worker_connections or listen"

read -r plo phi </proc/sys/net/ipv4/ip_local_port_range
PORT_RANGE=$((phi - plo + 1))
NGX_CONF=$CONF
per_backend=$(ceil_div "$N" 4)
if [[ -n $NGINX ]] && ((per_backend > PORT_RANGE * 9 / 10)); then
    nsrc=$(ceil_div "$per_backend" $((PORT_RANGE * 8 / 10)))
    NGX_CONF=$RUN/conf/ceiling.nginx.conf
    NGINX_CONF_NOTE="nginx: ceiling.conf plus proxy_bind over $nsrc source addresses (split_clients on \$remote_port), which ringway's parser does not take; ringway used --upstream-bind auto"
    awk -v nsrc="$nsrc" '
        { print }
        /^[[:space:]]*http[[:space:]]*{/ {
            print "    split_clients \"$remote_port\" $ceiling_src {"
            pct = sprintf("%.2f", 100 / nsrc)
            for (i = 1; i < nsrc; i++) printf "        %s%% 127.0.0.%d;\n", pct, i + 1
            printf "        * 127.0.0.%d;\n    }\n", nsrc + 1
        }
        /proxy_read_timeout 3600s;/ { print "            proxy_bind $ceiling_src;" }
    ' "$CONF" >"$NGX_CONF"
fi
"$BIN/ringway" -t -c "$CONF" >"$RUN/logs/ringway-t.out" 2>&1 || die "ringway -t -c $CONF failed: $(tail -n 3 "$RUN/logs/ringway-t.out")"
if [[ -n $NGINX ]]; then
    nginx_cmd run "$NGX_CONF" -t >"$RUN/logs/nginx-t.out" 2>&1 || die "nginx -t failed: $(tail -n 3 "$RUN/logs/nginx-t.out")"
fi

# The default relay mode (auto): headline figures are for the default configuration.
RINGWAY_FLAGS=(--worker-mode process --at-limit 503 --no-pin --upstream-bind "$UPSTREAM_BIND")
RINGWAY_CMD="$BIN/ringway -c $CONF ${RINGWAY_FLAGS[*]}"
NGINX_CMD="${NGINX:-nginx} -p $RUN/nginx -c $NGX_CONF -g 'daemon off; master_process on; ...'"
LOADGEN_CMD="timeout $LG_LIMIT $BIN/loadgen ceiling --target 127.0.0.1:$PROXY_PORT --conns $N --rate $RATE --hold $HOLD --procs $P --src-ips $SRC_IPS --timeout 30 --sample-ms 250"

# explain: what ringway says binds, for N and for the configuration as run.
"$BIN/ringway" explain --tunnels "$N" -c "$CONF" "${RINGWAY_FLAGS[@]}" >"$RUN/explain/ringway-explain-$N.txt" 2>&1 || true
"$BIN/ringway" -t -c "$CONF" "${RINGWAY_FLAGS[@]}" >"$RUN/explain/ringway-t.txt" 2>&1 || true
log "explain: $(grep -m 1 '^ *→ ' "$RUN/explain/ringway-explain-$N.txt" || echo '(no verdict line)')"
write_meta null

# ---------------------------------------------------------------------------------------
# One proxy: start, sample, load, stop, recover
# ---------------------------------------------------------------------------------------
run_proxy() {
    local p=$1 pid sampler lg rc=0 t0 t_end alive=true exit_rc=null base_free base_usable base_inuse _a _b
    local abort=$RUN/raw/$p.abort.txt guard=$RUN/raw/$p.guard usr1=$RUN/raw/$p.usr1
    : >"$abort"
    : >"$guard"
    : >"$usr1"
    base_free=$(memfree_mib)
    base_usable=$(usable_mib)
    read -r base_inuse _a _b < <(sockstat_tcp)
    if ((base_usable < FLOOR_MIB + 1024)); then
        warn "$p skipped: usable memory (MemAvailable - SReclaimable) $base_usable MiB before the start"
        printf 'skipped: usable memory %s MiB before the start\n' "$base_usable" >"$abort"
        return 0
    fi
    log "$p: starting (MemFree $base_free MiB, TCP sockets in use $base_inuse)"
    case $p in
        ringway)
            "$BIN/ringway" -c "$CONF" "${RINGWAY_FLAGS[@]}" >"$RUN/logs/$p.out" 2>"$RUN/logs/$p.err" &
            pid=$!
            track_pid "$pid"
            wait_for_line "$RUN/logs/$p.out" 'listening on' 30 "$pid" || die "ringway did not start: $(tail -n 5 "$RUN/logs/$p.err")"
            ;;
        nginx)
            : >"$RUN/nginx/logs/error.log"
            rm -f "$RUN/nginx/nginx.pid"
            nginx_cmd exec "$NGX_CONF" >"$RUN/logs/$p.out" 2>"$RUN/logs/$p.err" &
            pid=$!
            track_pid "$pid"
            wait_for_line "$RUN/nginx/nginx.pid" '^[0-9]+' 30 "$pid" || die "nginx did not start: $(tail -n 5 "$RUN/nginx/logs/error.log")"
            ;;
    esac
    wait_port "$PROXY_PORT" 20 || die "$p: nothing listens on 127.0.0.1:$PROXY_PORT"
    sleep 2 # let every worker process start and settle
    sample_box "$pid" "$RUN/raw/$p.mem.tsv" $((FLOOR_MIB * 1024)) "$guard" "$abort" \
        "$([[ $p == ringway ]] && printf '%s' "$usr1")" &
    sampler=$!
    track_pid "$sampler"
    sleep 3 # baseline samples
    # The kernel's TCP counters before and after (whole box, absolute): accept-queue
    # overflows, SYN retransmits, drops name what slowed a ramp down (the report's deltas).
    nstat -asz >"$RUN/raw/$p.nstat.before" 2>/dev/null || true
    t0=$(now_ms)
    # shellcheck disable=SC2086
    timeout "$LG_LIMIT" "$BIN/loadgen" ceiling --target "127.0.0.1:$PROXY_PORT" --conns "$N" --rate "$RATE" \
        --hold "$HOLD" --procs "$P" --src-ips "$SRC_IPS" --timeout 30 --sample-ms 250 \
        >"$RUN/logs/$p.loadgen.stdout" 2>"$RUN/logs/$p.loadgen.stderr" &
    lg=$!
    track_pid "$lg"
    printf '%s' "$lg" >"$guard"
    wait "$lg" || rc=$?
    forget_pid "$lg"
    t_end=$(now_ms)
    nstat -asz >"$RUN/raw/$p.nstat.after" 2>/dev/null || true
    if ((rc == 124)); then
        printf 'loadgen hit the hard limit of %ss and was stopped\n' "$LG_LIMIT" >>"$abort"
    fi
    if tail -n 1 "$RUN/logs/$p.loadgen.stdout" | grep -q '^{'; then
        tail -n 1 "$RUN/logs/$p.loadgen.stdout" >"$RUN/raw/$p.loadgen.json"
    else
        warn "$p: loadgen exit $rc, no JSON: $(tail -n 2 "$RUN/logs/$p.loadgen.stderr")"
    fi
    log "$p: loadgen exit $rc: $(grep -m 1 '^ceiling:' "$RUN/logs/$p.loadgen.stderr" || tail -n 1 "$RUN/logs/$p.loadgen.stderr")"
    [[ ! -s $abort ]] || warn "$p: $(cat "$abort")"
    # Let the proxy close every tunnel before the SIGTERM (up to 90 s): a clean stop, and the
    # time it took is recorded (drain_s).
    local drain_t0 drain_s inuse
    drain_t0=$(now_ms)
    while :; do
        read -r inuse _a _b < <(sockstat_tcp)
        ((inuse > base_inuse + 2000)) || break
        (($(now_ms) - drain_t0 < 90000)) || break
        sleep 0.5
    done
    drain_s=$((($(now_ms) - drain_t0) / 1000))
    log "$p: TCP sockets in use back to $inuse after ${drain_s}s; stopping the proxy (SIGTERM)"
    sleep 2 # samples after the clients closed
    kill -0 "$pid" 2>/dev/null || alive=false
    stop_pid "$pid"
    exit_rc=$STOP_RC
    stop_pid "$sampler"
    [[ $alive == true ]] || warn "$p: THE PROXY HAD DIED before the stop (exit $exit_rc)"
    if [[ $p == nginx ]]; then
        cp "$RUN/nginx/logs/error.log" "$RUN/logs/nginx.error.log"
    fi
    {
        printf '{"proxy": %s, "pid": %s, "port": %s, "loadgen_t0_ms": %s, "loadgen_end_ms": %s, "loadgen_exit": %s,' \
            "$(json_str "$p")" "$pid" "$PROXY_PORT" "$t0" "$t_end" "$rc"
        printf ' "alive_at_stop": %s, "exit_status": %s, "usr1_ms": %s, "abort": %s,' "$alive" "$exit_rc" \
            "$(if [[ -s $usr1 ]]; then cat "$usr1"; else printf null; fi)" "$(json_str "$(cat "$abort")")"
        printf ' "budget_line": %s, "listening_line": %s, "upstream_bind_line": %s,' \
            "$(json_str "$(grep -m 1 '^budget:' "$RUN/logs/$p.out" 2>/dev/null || true)")" \
            "$(json_str "$(grep -m 1 'listening on' "$RUN/logs/$p.out" 2>/dev/null || true)")" \
            "$(json_str "$(grep -h -m 1 'upstream connections bind' "$RUN/logs/$p.out" "$RUN/logs/$p.err" 2>/dev/null | head -n 1 || true)")"
        printf ' "memfree_before_mib": %s, "tcp_inuse_before": %s, "drain_s": %s, "tcp_inuse_at_stop": %s}\n' \
            "$base_free" "$base_inuse" "$drain_s" "$inuse"
    } >"$RUN/raw/$p.session.json"
    rm -f "$guard"
    # Page cache and reclaimable slab grow over a run, so MemFree is only asked to come within 2 GiB.
    wait_recover $((base_free - 2048)) "$base_inuse" 120 || true
}

for p in "${PROXIES[@]}"; do
    if ((N > 3000 && !force)) && pgrep -f 'scripts/compare\.sh' >/dev/null; then
        warn "$p skipped: scripts/compare.sh started meanwhile"
        continue
    fi
    run_proxy "$p"
done

# Backends down; then the report.
cleanup_children
t_end=$(now_ms)
write_meta $(((t_end - t_start) / 1000))
log "writing summary.md and plots ($BIN/ceiling_report $RUN)"
"$BIN/ceiling_report" "$RUN" || die "ceiling_report failed; rerun: $BIN/ceiling_report $RUN"
log "done in $(((t_end - t_start) / 1000))s: $RUN/summary.md"
results_advice "$RUN" "$root"
