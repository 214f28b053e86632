#!/usr/bin/env bash
# compare.sh: ringway vs nginx, side by side, from one generated nginx.conf per test.
#
#   scripts/compare.sh [--smoke | --quick | --full] [--tune] [--out DIR] [--no-build]
#                      [--baseline DIR] [--workers "1 2"] [--pin-compare | --no-pin-compare]
#                      [--only all|tls]
#
# Builds the workspace (release; binaries from $CARGO_TARGET_DIR/release, default
# target/release), installs nginx if it is missing (apt-get), starts four wsecho backends on
# fresh loopback ports, writes per-run copies of scripts/nginx.conf (the seed, never edited)
# with those ports and the budget under test, and runs ringway and nginx from the SAME file,
# one after the other:
#   1. ceiling at 1 x 1024 (smoke: 1 x 64): loadgen ceiling past the budget, excess
#      clients' failure kinds, the "worker_connections are not enough" log lines, and
#      the distribution over the four backends;
#   2. raised ceiling at 2 x 9700 (the largest that fits ringway's one process under this
#      machine's 20,000-fd limit) for both, plus nginx's own largest (2 x 19,990) as a
#      separate row; ramp time series, proxy RSS and MemFree before/while held;
#   3. at each worker count of --workers (worker_processes in the conf both proxies read;
#      default "1 2", smoke "1"), sessions perf__wW__rN__TARGET: echo 64 B at 100 and 1000
#      connections, bulk 1 MiB at 1 and 10 connections, for ringway (auto, the default relay
#      mode: the headline row), ringway (splice), ringway (copy), nginx and direct (loadgen
#      straight at one backend; it does not depend on workers, so it runs once per
#      repetition, at the first count); repetitions interleaved, the worker counts within
#      each; proxy CPU from /proc via loadgen --watch-pid. In the same sessions, for ringway
#      (its auto session only: plain HTTP and the accept rate never reach the relay), nginx
#      and direct: small keep-alive HTTP GETs at 50 (and 500) connections (requests/s,
#      proxy CPU per request; this conf has `keepalive 32;` upstream and an empty
#      Connection header for non-upgrade requests), in quick/full also 500 connections
#      open loop at 10,000 requests/s (`http-r10k-c500`: latency at the same offered load
#      for every target), and the accept rate `churn-c50`
#      (loadgen churn: 50 workers each cycling connect + upgrade + 101 + banner + one echo
#      + close for the same warm-up and duration, clients over 127.0.0.2-9 so TIME_WAIT
#      exhausts no ports: new tunnels/s, handshake latency p50/p99/p99.9, proxy CPU per
#      tunnel, failures). With --pin-compare (default in --full) also ringway-auto-nopin
#      (`--tunnel auto --no-pin`, right after ringway-auto) for the echo workloads: pinned vs
#      unpinned worker threads. A build whose --help lists no `--tunnel auto` runs without
#      ringway-auto (a warning; HTTP and churn then in ringway-splice, as before auto).
#   4. TLS (issue 15): `loadgen gen-cert` makes a fresh test CA and a `localhost` leaf per run
#      (tls/); conf/tls-*.conf is the same seed with `listen 127.0.0.1:PORT ssl;` and the
#      ssl_certificate / ssl_certificate_key / ssl_protocols TLSv1.2 TLSv1.3 /
#      ssl_session_timeout 5m / ssl_session_cache shared:SSL:10m / ssl_session_tickets on
#      lines, read by both proxies; loadgen offers ONE suite and group (TLS 1.3
#      TLS13_AES_128_GCM_SHA256, X25519), so both negotiate the same. Sessions tls__rN__TARGET
#      (1 worker; ringway, nginx, direct = a TLS wsecho), repetitions interleaved: handshakes/s
#      full and resumed (loadgen handshake, 50 workers, clients over 127.0.0.2-9) with CPU per
#      handshake, 64 B echo over wss at 100 connections, bulk 1 MiB over wss at 1 connection;
#      then tlsheld__{ringway,nginx}: 10,000 idle wss tunnels (2 workers; ringway with
#      --worker-mode process; loadgen --procs 2), proxy RSS before and while held, per tunnel.
#      Smoke: one tiny echo and one handshake run. ringway joins only when `ringway -t`
#      accepts the TLS conf; until then a warning, and the TLS rows have nginx and direct.
#      --only tls runs this step alone (backends, certificates, TLS rows, report).
# Results go to results/<UTC date>-<short sha>/ (or --out DIR): meta.json, raw/ (every
# loadgen JSON, proxy session facts, memory samples), logs/, conf/, then the report binary
# (bench/src/bin/report/) writes summary.md (sections 1-10, 10 = issue 11's targets, met or
# not) and plots/*.svg from raw/.
#
# Modes: --smoke (< 70 s, tiny sizes, 1 worker, CI), --quick (default, ~10 min, 2 reps of
# 3 s), --full (5 reps of 4 s, 30 s holds, ~30 min). --tune applies tuning/apply.sh for the
# run and reverts it on exit; without it no sysctl is changed. Loopback only; every port is
# probed fresh; everything started is killed by pid on exit. nginx runs as a private child
# (own prefix, pid file, error log, and, where `unshare -m` works, its temp directories
# bind-mounted into the run folder); the system nginx service is never touched.
#
# --baseline DIR measures a change before and after in one run: DIR holds a `ringway`
# binary built from an earlier commit (optionally a COMMIT file with its git sha). Step 3
# then also runs it as `baseline-auto` (only when its --help lists `--tunnel auto`),
# `baseline-splice` and `baseline-copy`, same conf, same workloads, each right after the
# current build's twin in the same repetitions (auto, baseline auto, splice, baseline
# splice, copy, baseline copy, nginx, direct); its HTTP and churn run in baseline-auto, or
# in baseline-splice when it has no auto. meta.json records its path, --version, COMMIT and
# the modes it ran; the report shows its rows next to ringway's and a before/after table
# of proxy CPU. Steps 1-2 use the current build only (its default relay mode). To make DIR:
#   git worktree add /tmp/base SHA && cargo build --release -p ringway \
#     --manifest-path /tmp/base/Cargo.toml --target-dir /tmp/base/target &&
#   mkdir -p DIR && cp /tmp/base/target/release/ringway DIR/ && echo SHA >DIR/COMMIT
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$here/lib/common.sh"

usage() {
    sed -n '2,74s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

cmdline="$0${*:+ $*}"
mode=quick
tune=0
build=1
out=""
baseline=""
workers=""
pin_compare=""
only=all
while (($#)); do
    case $1 in
        --smoke) mode=smoke ;;
        --quick) mode=quick ;;
        --full) mode=full ;;
        --tune) tune=1 ;;
        --no-build) build=0 ;;
        --out)
            (($# >= 2)) || die "--out needs a directory"
            out=$2
            shift
            ;;
        --out=*) out=${1#--out=} ;;
        --baseline)
            (($# >= 2)) || die "--baseline needs a directory (holding a ringway binary)"
            baseline=$2
            shift
            ;;
        --baseline=*) baseline=${1#--baseline=} ;;
        --workers)
            (($# >= 2)) || die "--workers needs a list of worker counts, e.g. \"1 2\""
            workers=$2
            shift
            ;;
        --workers=*) workers=${1#--workers=} ;;
        --only)
            (($# >= 2)) || die "--only needs all or tls"
            only=$2
            shift
            ;;
        --only=*) only=${1#--only=} ;;
        --pin-compare) pin_compare=1 ;;
        --no-pin-compare) pin_compare=0 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $1"
            ;;
    esac
    shift
done

[[ $only == all || $only == tls ]] || die "--only: '$only' is not all or tls"

# ---------------------------------------------------------------------------------------
# Mode parameters
# ---------------------------------------------------------------------------------------
case $mode in
    smoke)
        CEIL_WC=64 CEIL_CONNS=40 CEIL_HOLD=0.5
        RAISED_WP=2 RAISED_WC=128 RAISED_CONNS=150
        NGXMAX_WP=2 NGXMAX_WC=256 NGXMAX_CONNS=290
        RAISED_RATE=2000 RAISED_HOLD=1
        PERF_WC=4096 REPS=1 DURATION=1 WARMUP=0.2
        DEF_WORKERS="1" DEF_PIN=1
        ;;
    quick)
        CEIL_WC=1024 CEIL_CONNS=600 CEIL_HOLD=2
        RAISED_WP=2 RAISED_WC=9700 RAISED_CONNS=10200
        NGXMAX_WP=2 NGXMAX_WC=19990 NGXMAX_CONNS=21000
        RAISED_RATE=5000 RAISED_HOLD=5
        PERF_WC=4096 REPS=2 DURATION=3 WARMUP=0.5
        DEF_WORKERS="1 2" DEF_PIN=0
        ;;
    full)
        CEIL_WC=1024 CEIL_CONNS=600 CEIL_HOLD=5
        RAISED_WP=2 RAISED_WC=9700 RAISED_CONNS=10200
        NGXMAX_WP=2 NGXMAX_WC=19990 NGXMAX_CONNS=21000
        RAISED_RATE=5000 RAISED_HOLD=30
        PERF_WC=4096 REPS=5 DURATION=4 WARMUP=0.5
        DEF_WORKERS="1 2" DEF_PIN=1
        ;;
esac
CEIL_RATE=1000
SRC_IPS=127.0.0.2-127.0.0.9
# Step 4 (TLS): the workloads (same repetitions, duration and warm-up as step 3), their
# connection counts, and the held-tunnel row (TLS_HELD tunnels; 0 skips it). The held row's
# budget: 2 workers x 12,000 slots (each worker holds up to 5,999 tunnels, 12,000 fds: under
# this machine's 20,000 per process, with room for SO_REUSEPORT's uneven split).
TLS_HS_CONNS=50 TLS_ECHO_CONNS=100
TLS_WORKLOADS=(tls-hs-full tls-hs-resumed tls-echo64 tls-bulk1m)
TLS_HELD=10000 TLS_HELD_WP=2 TLS_HELD_WC=12000 TLS_HELD_RATE=1000 TLS_HELD_HOLD=$RAISED_HOLD
if [[ $mode == smoke ]]; then
    TLS_HS_CONNS=10 TLS_ECHO_CONNS=10
    TLS_WORKLOADS=(tls-echo64 tls-hs-full)
    TLS_HELD=0
fi
# TLS_RINGWAY (TLS_HELD_RINGWAY): whether ringway accepts the TLS conf (the held row's, in
# process mode) under `ringway -t`; until it does, the rows have nginx and direct only.
# TLS_NEG[target]: what loadgen negotiated there (meta.json).
TLS_RINGWAY=0 TLS_RINGWAY_WHY="" TLS_HELD_RINGWAY=0
TLS_DIRECT_PID="" TLS_DIRECT_PORT=""
TLS_ARGS=()
declare -A TLS_NEG=()
tls_workload_args() {
    case $1 in
        tls-hs-full) echo "handshake --conns $TLS_HS_CONNS --resume off --then close --src-ips $SRC_IPS" ;;
        tls-hs-resumed) echo "handshake --conns $TLS_HS_CONNS --resume on --then close --src-ips $SRC_IPS" ;;
        tls-echo64) echo "echo --conns $TLS_ECHO_CONNS --size 64" ;;
        tls-bulk1m) echo "bulk --conns 1 --bytes 1048576" ;;
    esac
}
# Step 3's worker counts (worker_processes, the same conf for both proxies) and whether
# ringway-auto-nopin (--no-pin) runs next to ringway-auto.
read -r -a PERF_WORKERS <<<"${workers:-$DEF_WORKERS}"
((${#PERF_WORKERS[@]} > 0)) || die "--workers: no worker count given"
for w in "${PERF_WORKERS[@]}"; do
    [[ $w =~ ^[1-9][0-9]?$ ]] || die "--workers: '$w' is not a worker count (1-99)"
done
PIN_COMPARE=${pin_compare:-$DEF_PIN}
# Echo, bulk and HTTP workloads: name, loadgen subcommand and options.
WORKLOADS=(echo64-c100 echo64-c1000 bulk1m-c1 bulk1m-c10 http-c50)
# http-r10k-c500: the same 500 connections open loop at 10,000 requests/s (about half what
# nginx's closed loop reaches at 1 worker), so both proxies' latency is read at one load.
[[ $mode == smoke ]] || WORKLOADS+=(http-c500 http-r10k-c500)
# The accept rate: new tunnels per second, 50 workers each cycling connect + upgrade + 101 +
# banner + one echo + close, clients spread over $SRC_IPS (TIME_WAIT stays per address).
WORKLOADS+=(churn-c50)
# The pinning comparison (ringway-auto-nopin) runs the echo workloads only.
PIN_WORKLOADS=(echo64-c100 echo64-c1000)
workload_args() {
    case $1 in
        echo64-c100) echo "echo --conns 100 --size 64" ;;
        echo64-c1000) echo "echo --conns 1000 --size 64" ;;
        bulk1m-c1) echo "bulk --conns 1 --bytes 1048576" ;;
        bulk1m-c10) echo "bulk --conns 10 --bytes 1048576" ;;
        http-c50) echo "http --conns 50 --pipeline 1" ;;
        http-c500) echo "http --conns 500 --pipeline 1" ;;
        http-r10k-c500) echo "http --conns 500 --pipeline 1 --rate 10000" ;;
        churn-c50) echo "churn --conns 50 --src-ips $SRC_IPS" ;;
    esac
}
# Plain HTTP never reaches the tunnel relay, so each ringway build runs it once: in its
# default (auto) session, or in splice where the binary has no `--tunnel auto`. Both are set
# with the targets, after the build (set_perf_targets).
HTTP_RINGWAY="" HTTP_BASELINE=""
# The accept rate is about accept + connect, not the relay mode: it runs in the same
# sessions as HTTP. ringway-auto-nopin runs only PIN_WORKLOADS.
workload_applies() {
    if [[ $1 == ringway-auto-nopin ]]; then
        [[ " ${PIN_WORKLOADS[*]} " == *" $2 "* ]]
        return
    fi
    [[ $2 != http-* && $2 != churn-* ]] && return 0
    [[ $1 == nginx || $1 == direct || $1 == "$HTTP_RINGWAY" || $1 == "$HTTP_BASELINE" ]]
}
# tunnel_has_auto BINARY: whether BINARY's --help lists `auto` for --tunnel (the --tunnel
# entry only: `auto` is also a value of --upstream-bind). Long help lists "- auto: ..."
# under "Possible values:", short help "[possible values: splice, copy, auto]".
tunnel_has_auto() {
    local help
    help=$("$1" --help 2>&1) || true
    awk '
        /^[[:space:]]*(-[[:alnum:]], )?--[[:alnum:]]/ { p = ($0 ~ /--tunnel[[:space:]=<[]/) }
        p && (/^[[:space:]]*- auto([:[:space:]]|$)/ || /possible values:[^]]*[[:space:],]auto([],[:space:]]|$)/) { found = 1 }
        END { exit !found }
    ' <<<"$help"
}
PERF_TARGETS=()
# --baseline: the earlier build's relay modes, each right after the current build's.
BASELINE_BIN="" BASELINE_DIR="" BASELINE_COMMIT="" BASELINE_VERSION="" BASELINE_MODES=()
if [[ -n $baseline ]]; then
    [[ -d $baseline ]] || die "--baseline $baseline: not a directory"
    BASELINE_DIR=$(cd "$baseline" && pwd)
    BASELINE_BIN=$BASELINE_DIR/ringway
    [[ -x $BASELINE_BIN ]] || die "--baseline: no executable $BASELINE_BIN (copy a release ringway built from the earlier commit there)"
    BASELINE_VERSION=$("$BASELINE_BIN" --version 2>&1 | head -n 1) ||
        die "--baseline: $BASELINE_BIN --version failed: $BASELINE_VERSION"
    base_help=$("$BASELINE_BIN" --help 2>&1) || true
    [[ $base_help == *--tunnel* ]] ||
        die "--baseline: $BASELINE_BIN has no --tunnel flag (too old for the splice/copy sessions)"
    if [[ -f $BASELINE_DIR/COMMIT ]]; then
        BASELINE_COMMIT=$(tr -d '[:space:]' <"$BASELINE_DIR/COMMIT")
    fi
fi
# set_perf_targets: step 3's targets in session order, and which sessions run the HTTP
# workloads. ringway-auto first (the default mode) when the build has it; baseline-auto
# right after it when the baseline has it too.
set_perf_targets() {
    local cur_auto=0
    if tunnel_has_auto "$BIN/ringway"; then
        cur_auto=1
    else
        warn "$BIN/ringway --help lists no \`--tunnel auto\`: step 3 runs without ringway-auto (HTTP in ringway-splice)"
    fi
    PERF_TARGETS=() HTTP_RINGWAY="ringway-splice" HTTP_BASELINE=""
    if ((cur_auto)); then
        PERF_TARGETS+=(ringway-auto)
        HTTP_RINGWAY="ringway-auto"
        ((PIN_COMPARE)) && PERF_TARGETS+=(ringway-auto-nopin)
    elif ((PIN_COMPARE)); then
        warn "--pin-compare needs ringway-auto: no pinning comparison in this run"
    fi
    if [[ -n $BASELINE_BIN ]]; then
        BASELINE_MODES=(splice copy)
        HTTP_BASELINE="baseline-splice"
        if ((cur_auto)) && tunnel_has_auto "$BASELINE_BIN"; then
            BASELINE_MODES=(auto splice copy)
            HTTP_BASELINE="baseline-auto"
            PERF_TARGETS+=(baseline-auto)
        else
            log "baseline: $BASELINE_BIN has no \`--tunnel auto\` (or this build has none): its modes splice, copy"
        fi
        PERF_TARGETS+=(ringway-splice baseline-splice ringway-copy baseline-copy nginx direct)
    else
        PERF_TARGETS+=(ringway-splice ringway-copy nginx direct)
    fi
}
# Idle upstream connections each nginx worker keeps for the HTTP workloads (`keepalive N;`);
# ringway reads the same line (its --keepalive pool, sized the same).
HTTP_UPSTREAM_KEEPALIVE=32

# ---------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------
t_start=$(now_ms)
for tool in cargo git ss awk sed grep; do
    command -v "$tool" >/dev/null || die "missing tool: $tool (needed by compare.sh)"
done
[[ -f $root/scripts/nginx.conf ]] || die "missing seed configuration scripts/nginx.conf"
if ((tune)) && ((EUID != 0)); then
    die "--tune needs root (tuning/apply.sh writes /proc/sys)"
fi

cd "$root"
if ((build)); then
    log "building release binaries (cargo build --release --workspace)"
    if ! cargo build --release --workspace >&2; then
        die "cargo build --release --workspace failed; fix the build or rerun with --no-build to use the binaries already built"
    fi
fi
BIN=$(release_dir "$root") # $CARGO_TARGET_DIR/release, else target/release
for b in ringway wsecho loadgen report; do
    [[ -x $BIN/$b ]] || die "missing $BIN/$b (run cargo build --release --workspace)"
done
set_perf_targets

if ! command -v nginx >/dev/null; then
    ((EUID == 0)) || die "nginx is not installed and installing it needs root: apt-get install nginx-light"
    command -v apt-get >/dev/null || die "nginx is not installed and apt-get is not available"
    log "installing nginx-light (apt-get)"
    apt-get update -qq >&2 || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >&2 ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >&2 ||
        die "apt-get install nginx-light (and nginx) failed"
fi
NGINX=$(command -v nginx)

sha=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo nogit)
if [[ -z $out ]]; then
    out=$root/results/$(date -u +%Y%m%dT%H%M%SZ)-$sha
fi
mkdir -p "$out"
RUN=$(cd "$out" && pwd)
mkdir -p "$RUN/raw" "$RUN/logs" "$RUN/conf" "$RUN/nginx"
log "mode $mode; results in $RUN"

# ---------------------------------------------------------------------------------------
# Cleanup (trap): children by pid, then the sysctls if --tune applied them
# ---------------------------------------------------------------------------------------
TUNED=0
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    cleanup_children
    if ((TUNED)); then
        log "reverting sysctls (tuning/apply.sh --revert)"
        "$root/tuning/apply.sh" --revert --state-dir "$RUN/tuning-state" >&2 ||
            warn "revert failed: retry with tuning/apply.sh --revert --state-dir $RUN/tuning-state"
    fi
    if ((rc != 0)); then
        printf '[compare] failed (exit %s); partial results in %s\n' "$rc" "$RUN" >&2
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ((tune)); then
    log "applying tuning/apply.sh (reverted on exit)"
    TUNED=1
    "$root/tuning/apply.sh" --state-dir "$RUN/tuning-state" >"$RUN/logs/tuning-apply.log" 2>&1 ||
        die "tuning/apply.sh failed; see $RUN/logs/tuning-apply.log"
fi

# nginx's compiled-in temp paths (/var/lib/nginx/...) are absolute and sit in the http
# block, which ringway's parser refuses; so instead of adding *_temp_path lines to the
# shared conf we give nginx a private mount namespace with the run folder's temp dir
# bound over /var/lib/nginx. Without unshare, nginx uses the system paths (it only
# creates empty directories there; tunnels never buffer to disk).
NGX_ISOLATION="system temp paths (/var/lib/nginx)"
NGX_TEMP_DIR=$(sed -n 's/.*--http-proxy-temp-path=\([^ ]*\)\/proxy.*/\1/p' < <("$NGINX" -V 2>&1))
NGX_TEMP_DIR=${NGX_TEMP_DIR:-/var/lib/nginx}
mkdir -p "$RUN/nginx/temp" "$RUN/nginx/logs"
# shellcheck disable=SC2016  # $1/$2 belong to the inner sh
if [[ -d $NGX_TEMP_DIR ]] && command -v unshare >/dev/null &&
    unshare -m -- sh -c 'mount --bind "$1" "$2"' sh "$RUN/nginx/temp" "$NGX_TEMP_DIR" 2>/dev/null; then
    NGX_ISOLATION="private mount namespace: $RUN/nginx/temp bound over $NGX_TEMP_DIR"
else
    warn "unshare -m not available: nginx uses its system temp paths under $NGX_TEMP_DIR"
fi

# ---------------------------------------------------------------------------------------
# meta.json
# ---------------------------------------------------------------------------------------
sysctl_val() {
    local p=/proc/sys/${1//.//} v
    if [[ -r $p ]]; then
        v=$(<"$p")
        v=${v//$'\t'/ }
        json_str "$v"
    else
        printf 'null'
    fi
}
# meta.json's "tls" object (preceded by ",\n"): the certificate, what loadgen offered, whether
# ringway took part (and why not), and what each target negotiated.
write_meta_tls() {
    local neg="" t v a=() ring_why=null
    for t in "${!TLS_NEG[@]}"; do
        read -r -a a <<<"${TLS_NEG[$t]}"
        v=$(printf '{"version": %s, "suite": %s, "group": %s, "alpn": %s}' "$(json_str "${a[0]:-}")" \
            "$(json_str "${a[1]:-}")" "$(json_str "${a[2]:-}")" "$(json_str "${a[3]:-}")")
        neg+="${neg:+, }$(json_str "$t"): $v"
    done
    [[ -z $TLS_RINGWAY_WHY ]] || ring_why=$(json_str "$TLS_RINGWAY_WHY")
    printf ',\n  "tls": {"cert_dir": %s, "cert": "ECDSA P-256 leaf (localhost) signed by a fresh test CA (loadgen gen-cert)",' \
        "$(json_str "${TLS_DIR:+${TLS_DIR#"$RUN"/}}")"
    printf ' "offered_suite": "TLS13_AES_128_GCM_SHA256", "offered_group": "x25519", "offered_alpn": "http/1.1",'
    printf ' "ssl_lines": ["ssl_protocols TLSv1.2 TLSv1.3", "ssl_session_timeout 5m", "ssl_session_cache shared:SSL:10m", "ssl_session_tickets on"],'
    printf ' "ringway_accepts_tls_conf": %s, "ringway_held_row": %s, "ringway_refusal": %s,' \
        "$( ((TLS_RINGWAY)) && echo true || echo false)" "$( ((TLS_HELD_RINGWAY)) && echo true || echo false)" "$ring_why"
    printf ' "workloads": [%s], "hs_conns": %s, "echo_conns": %s, "held_tunnels": %s, "held_budget": [%s, %s],' \
        "$(json_list "${TLS_WORKLOADS[@]}")" "$TLS_HS_CONNS" "$TLS_ECHO_CONNS" "$TLS_HELD" "$TLS_HELD_WP" "$TLS_HELD_WC"
    printf ' "held_rate": %s, "held_hold_s": %s, "negotiated": {%s}}\n' "$TLS_HELD_RATE" "$TLS_HELD_HOLD" "$neg"
}
write_meta() {
    local duration=$1 commit dirty cpu_model cpu_count kernel rustc nginx_v ringway_v base_commit
    commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
    dirty=false
    # Only the code that was measured counts; the run's own (untracked) results folder does not.
    [[ -z $(git -C "$root" status --porcelain -- src bench Cargo.toml Cargo.lock scripts 2>/dev/null) ]] || dirty=true
    cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    cpu_count=$(grep -c '^processor' /proc/cpuinfo)
    kernel=$(uname -r)
    rustc=$(rustc -V 2>/dev/null || echo unknown)
    nginx_v=$("$NGINX" -v 2>&1 | head -n 1)
    ringway_v=$("$BIN/ringway" --version 2>&1 | head -n 1)
    {
        printf '{\n'
        printf '  "tool": "scripts/compare.sh",\n'
        printf '  "command_line": %s,\n' "$(json_str "$cmdline")"
        printf '  "mode": %s,\n  "tune": %s,\n' "$(json_str "$mode")" "$( ((tune)) && echo true || echo false)"
        printf '  "date_utc": %s,\n' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
        printf '  "duration_s": %s,\n' "$duration"
        printf '  "commit": %s,\n  "short_sha": %s,\n  "dirty": %s,\n' "$(json_str "$commit")" "$(json_str "$sha")" "$dirty"
        printf '  "kernel": %s,\n' "$(json_str "$kernel")"
        printf '  "cpu_model": %s,\n  "cpu_count": %s,\n' "$(json_str "$cpu_model")" "$cpu_count"
        printf '  "mem_total_kb": %s,\n' "$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)"
        printf '  "rustc": %s,\n' "$(json_str "$rustc")"
        printf '  "nginx": %s,\n  "nginx_path": %s,\n  "nginx_isolation": %s,\n' "$(json_str "$nginx_v")" "$(json_str "$NGINX")" "$(json_str "$NGX_ISOLATION")"
        printf '  "ringway": %s,\n' "$(json_str "$ringway_v")"
        if [[ -n $BASELINE_BIN ]]; then
            base_commit=null
            [[ -z $BASELINE_COMMIT ]] || base_commit=$(json_str "$BASELINE_COMMIT")
            printf '  "baseline": {"dir": %s, "binary": %s, "version": %s, "commit": %s, "modes": [%s]},\n' \
                "$(json_str "$BASELINE_DIR")" "$(json_str "$BASELINE_BIN")" \
                "$(json_str "$BASELINE_VERSION")" "$base_commit" "$(json_list "${BASELINE_MODES[@]}")"
        fi
        printf '  "ulimit_n_soft": %s,\n  "ulimit_n_hard": %s,\n' "$(json_str "$(ulimit -Sn)")" "$(json_str "$(ulimit -Hn)")"
        printf '  "sysctls": {\n'
        printf '    "net.core.somaxconn": %s,\n' "$(sysctl_val net.core.somaxconn)"
        printf '    "net.ipv4.ip_local_port_range": %s,\n' "$(sysctl_val net.ipv4.ip_local_port_range)"
        printf '    "net.ipv4.tcp_tw_reuse": %s,\n' "$(sysctl_val net.ipv4.tcp_tw_reuse)"
        printf '    "net.ipv4.tcp_max_syn_backlog": %s,\n' "$(sysctl_val net.ipv4.tcp_max_syn_backlog)"
        printf '    "fs.file-max": %s,\n' "$(sysctl_val fs.file-max)"
        printf '    "fs.nr_open": %s\n' "$(sysctl_val fs.nr_open)"
        printf '  },\n'
        printf '  "params": {"ceiling_budget": [1, %s], "ceiling_conns": %s, "ceiling_rate": %s, "ceiling_hold_s": %s,' \
            "$CEIL_WC" "$CEIL_CONNS" "$CEIL_RATE" "$CEIL_HOLD"
        printf ' "raised_budget": [%s, %s], "raised_conns": %s, "nginx_max_budget": [%s, %s], "nginx_max_conns": %s,' \
            "$RAISED_WP" "$RAISED_WC" "$RAISED_CONNS" "$NGXMAX_WP" "$NGXMAX_WC" "$NGXMAX_CONNS"
        printf ' "raised_rate": %s, "raised_hold_s": %s, "src_ips": %s,' "$RAISED_RATE" "$RAISED_HOLD" "$(json_str "$SRC_IPS")"
        printf ' "perf_budget": [%s, %s], "perf_workers": [%s], "pin_compare": %s,' "${PERF_WORKERS[0]}" "$PERF_WC" \
            "$(IFS=,; printf '%s' "${PERF_WORKERS[*]}")" "$( ((PIN_COMPARE)) && echo true || echo false)"
        printf ' "reps": %s, "duration_s": %s, "warmup_s": %s,' "$REPS" "$DURATION" "$WARMUP"
        printf ' "perf_targets": [%s],' "$(json_list "${PERF_TARGETS[@]}")"
        printf ' "workloads": [%s], "http_upstream_keepalive": %s,' "$(json_list "${WORKLOADS[@]}")" "$HTTP_UPSTREAM_KEEPALIVE"
        printf ' "only": %s}' "$(json_str "$only")"
        write_meta_tls
        printf '}\n'
    } >"$RUN/meta.json"
}
write_meta null

# ---------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------
BACKEND_PORTS=()
BACKEND_PIDS=()
start_backends() {
    local i pid port
    for i in 1 2 3 4; do
        "$BIN/wsecho" --port 0 --procs 1 --lifetime 7200 >"$RUN/logs/wsecho$i.out" 2>"$RUN/logs/wsecho$i.err" &
        pid=$!
        track_pid "$pid"
        wait_for_line "$RUN/logs/wsecho$i.out" '^listening ' 10 "$pid" ||
            die "wsecho $i did not start; see $RUN/logs/wsecho$i.err"
        port=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$RUN/logs/wsecho$i.out" | head -n 1)
        [[ -n $port ]] || die "wsecho $i printed no port: $(head -n 1 "$RUN/logs/wsecho$i.out")"
        BACKEND_PORTS+=("$port")
        BACKEND_PIDS+=("$pid")
    done
    log "backends on 127.0.0.1:${BACKEND_PORTS[*]} (pids ${BACKEND_PIDS[*]})"
}

# ---------------------------------------------------------------------------------------
# Configuration: the seed with our ports and budget (one file for both proxies)
# ---------------------------------------------------------------------------------------
# gen_conf NAME WORKERS WORKER_CONNECTIONS [KEEPALIVE] [tls]: writes conf/NAME.conf, prints its
# path. With KEEPALIVE (a number) the upstream block gets `keepalive KEEPALIVE;` and the
# $connection_upgrade map gives non-upgrade requests an empty Connection header instead of
# `close` (nginx's recipe for upstream keep-alive; the seed uses proxy_http_version 1.1).
# With `tls` the listen line gets `ssl` and the server block the run's certificate and nginx's
# usual session settings (TLS_SSL_LINES); only nginx -t is checked here (a TLS conf that
# ringway refuses is not fatal: tls_ringway_accepts decides in the main shell).
TLS_DIR="" # set by tls_setup: the run's certificates
gen_conf() {
    local name=$1 wp=$2 wc=$3 keepalive=${4:-} tls=${5:-} port file
    port=$(free_port)
    file=$RUN/conf/$name.conf
    awk -v wp="$wp" -v wc="$wc" -v port="$port" -v servers="${BACKEND_PORTS[*]}" -v ka="$keepalive" -v q="'" \
        -v tls="$tls" -v cert="$TLS_DIR/localhost.pem" -v key="$TLS_DIR/localhost.key" '
        BEGIN { n = split(servers, s, " ") }
        ka != "" && /^[[:space:]]*map[[:space:]].*\$connection_upgrade[[:space:]]*{/ { in_map = 1 }
        in_map && $0 ~ "^[[:space:]]*" q q "[[:space:]]+close;" {
            print "        # compare.sh: no Connection: close upstream, so nginx can keep the connection alive."
            sub(q q "[[:space:]]+close;", q q "      " q q ";")
            did_map = 1
        }
        in_map && /}/ { in_map = 0 }
        /^[[:space:]]*worker_processes[[:space:]]/ { sub(/worker_processes[[:space:]]+[^;]*;/, "worker_processes " wp ";"); did_wp = 1 }
        /^[[:space:]]*worker_connections[[:space:]]/ { sub(/worker_connections[[:space:]]+[^;]*;/, "worker_connections " wc ";"); did_wc = 1 }
        /^[[:space:]]*listen[[:space:]]/ {
            sub(/listen[[:space:]]+[^;]*;/, "listen 127.0.0.1:" port (tls != "" ? " ssl" : "") ";")
            did_listen = 1
            if (tls != "") {
                print
                print "        # compare.sh: TLS termination, the same certificate and session settings for both proxies."
                printf "        ssl_certificate %s;\n", cert
                printf "        ssl_certificate_key %s;\n", key
                print "        ssl_protocols TLSv1.2 TLSv1.3;"
                print "        ssl_session_timeout 5m;"
                print "        ssl_session_cache shared:SSL:10m;"
                print "        ssl_session_tickets on;"
                next
            }
        }
        in_up && /^[[:space:]]*server[[:space:]]/ { next }
        in_up && ka != "" && /^[[:space:]]*keepalive[[:space:]]/ { next }
        in_up && /}/ {
            in_up = 0
            if (ka != "") {
                print "        # compare.sh: idle upstream connections kept per worker (HTTP workloads)."
                printf "        keepalive %s;\n", ka
            }
        }
        { print }
        /^[[:space:]]*upstream[[:space:]].*{/ {
            in_up = 1
            for (i = 1; i <= n; i++) printf "        server 127.0.0.1:%s;\n", s[i]
        }
        /^[[:space:]]*http[[:space:]]*{/ {
            print "    # compare.sh: no access log (nginx would write one per request; ringway has none)."
            print "    access_log off;"
        }
        /proxy_set_header[[:space:]]+Host[[:space:]]/ {
            print "            # compare.sh: idle tunnels stay open through the holds (nginx default 60s)."
            print "            proxy_read_timeout 3600s;"
        }
        END { if (!did_wp || !did_wc || !did_listen) exit 3; if (ka != "" && !did_map) exit 4 }
    ' "$root/scripts/nginx.conf" >"$file" || case $? in
        4) die "scripts/nginx.conf has no \`'' close;\` line in its \$connection_upgrade map (needed for upstream keepalive)" ;;
        *) die "scripts/nginx.conf lacks worker_processes, worker_connections or listen" ;;
    esac
    grep -q 'proxy_read_timeout 3600s' "$file" || die "could not add proxy_read_timeout to $file (no 'proxy_set_header Host' line)"
    if [[ -n $keepalive ]]; then
        grep -Eq '^[[:space:]]*proxy_http_version[[:space:]]+1\.1;' "$file" ||
            die "scripts/nginx.conf has no 'proxy_http_version 1.1;' (nginx needs it for upstream keepalive)"
    fi
    if [[ -z $tls ]]; then
        "$BIN/ringway" -t -c "$file" >"$RUN/logs/$name.ringway-t.out" 2>&1 ||
            die "ringway -t -c $file failed: $(tail -n 3 "$RUN/logs/$name.ringway-t.out")"
    fi
    nginx_cmd run "$file" -t >"$RUN/logs/$name.nginx-t.out" 2>&1 ||
        die "nginx -t -c $file failed: $(tail -n 3 "$RUN/logs/$name.nginx-t.out")"
    printf '%s' "$file"
}

# nginx_cmd run|exec CONF [-t]: nginx as a private child (own prefix, pid file, error log).
# "exec" replaces the calling (background) subshell, so $! is nginx's master pid.
nginx_cmd() {
    local how=$1 conf=$2 test=${3:-} prefix=$RUN/nginx
    local g="daemon off; master_process on; pid $prefix/nginx.pid; error_log $prefix/logs/error.log info;"
    local -a cmd=("$NGINX" -p "$prefix" -c "$conf" ${test:+"$test"} -g "$g")
    if [[ $NGX_ISOLATION == private* ]]; then
        # unshare and sh both exec, so the pid stays nginx's.
        # shellcheck disable=SC2016  # $1.. are expanded by the inner sh
        cmd=(unshare -m -- sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh
            "$prefix/temp" "$NGX_TEMP_DIR" "${cmd[@]}")
    fi
    if [[ $how == exec ]]; then
        exec "${cmd[@]}"
    fi
    "${cmd[@]}"
}

# ---------------------------------------------------------------------------------------
# Proxy sessions
# ---------------------------------------------------------------------------------------
SESSION=""      # label, e.g. ceiling__nginx
SESSION_KIND="" # ringway | nginx | direct
SESSION_CONF=""
SESSION_ARGS=""
PROXY_PID=""
PROXY_PORT=""
SESSION_T0=""   # epoch ms when the session's main loadgen started (ceiling runs)
SESSION_NOTES=()

conf_port() { sed -n 's/^[[:space:]]*listen[[:space:]]*127\.0\.0\.1:\([0-9]*\)\( ssl\)\{0,1\};.*/\1/p' "$1" | head -n 1; }

# start_session LABEL KIND CONF [ringway flags...]
start_session() {
    SESSION=$1 SESSION_KIND=$2 SESSION_CONF=$3
    shift 3
    SESSION_ARGS="$*"
    SESSION_T0=""
    SESSION_NOTES=()
    PROXY_PID=""
    case $SESSION_KIND in
        direct)
            PROXY_PORT=${BACKEND_PORTS[0]}
            return 0
            ;;
        ringway | baseline)
            local exe=$BIN/ringway
            [[ $SESSION_KIND == ringway ]] || exe=$BASELINE_BIN
            PROXY_PORT=$(conf_port "$SESSION_CONF")
            "$exe" -c "$SESSION_CONF" "$@" >"$RUN/logs/$SESSION.out" 2>"$RUN/logs/$SESSION.err" &
            PROXY_PID=$!
            track_pid "$PROXY_PID"
            wait_for_line "$RUN/logs/$SESSION.out" 'listening on' 15 "$PROXY_PID" ||
                die "$exe did not start ($SESSION): $(tail -n 5 "$RUN/logs/$SESSION.err")"
            ;;
        nginx)
            PROXY_PORT=$(conf_port "$SESSION_CONF")
            : >"$RUN/nginx/logs/error.log"
            rm -f "$RUN/nginx/nginx.pid"
            nginx_cmd exec "$SESSION_CONF" >"$RUN/logs/$SESSION.out" 2>"$RUN/logs/$SESSION.err" &
            PROXY_PID=$!
            track_pid "$PROXY_PID"
            wait_for_line "$RUN/nginx/nginx.pid" '^[0-9]+' 15 "$PROXY_PID" ||
                die "nginx did not start ($SESSION): $(tail -n 5 "$RUN/logs/$SESSION.err" "$RUN/nginx/logs/error.log")"
            [[ $(<"$RUN/nginx/nginx.pid") == "$PROXY_PID" ]] ||
                die "nginx pid file says $(<"$RUN/nginx/nginx.pid"), expected our child $PROXY_PID"
            ;;
    esac
    wait_port "$PROXY_PORT" 10 || die "$SESSION: nothing listens on 127.0.0.1:$PROXY_PORT"
}

proxy_alive() { [[ -z $PROXY_PID ]] || kill -0 "$PROXY_PID" 2>/dev/null; }

# end_session: stop the proxy and write raw/SESSION.session.json.
end_session() {
    local alive=true rc=null log_file budget="" not_enough=0 first="" note notes="" tail_err=""
    if [[ -n $PROXY_PID ]]; then
        proxy_alive || alive=false
        if [[ $SESSION_KIND == ringway || $SESSION_KIND == baseline ]]; then
            log_file=$RUN/logs/$SESSION.err
        else
            log_file=$RUN/nginx/logs/error.log
        fi
        stop_pid "$PROXY_PID"
        rc=$STOP_RC
        if [[ $SESSION_KIND == nginx ]]; then
            cp "$RUN/nginx/logs/error.log" "$RUN/logs/$SESSION.error.log"
            log_file=$RUN/logs/$SESSION.error.log
        fi
        not_enough=$(grep -c 'worker_connections are not enough' "$log_file" || true)
        first=$(grep -m 1 'worker_connections are not enough' "$log_file" || true)
        budget=$(grep -m 1 '^budget:' "$RUN/logs/$SESSION.out" 2>/dev/null || true)
        # Real trouble only: ringway's panics and "error:" lines, nginx's [error] and worse.
        tail_err=$(grep -E 'panicked|ringway: error|\[(error|crit|alert|emerg)\]' "$log_file" |
            grep -v 'worker_connections are not enough' | tail -n 5 || true)
        if [[ $alive == false ]]; then
            warn "$SESSION: the proxy had died before the stop (exit $rc); see $log_file"
            SESSION_NOTES+=("proxy died before the stop (exit status $rc)")
        elif [[ $rc != 0 ]]; then
            warn "$SESSION: the proxy exited with status $rc on SIGTERM"
            SESSION_NOTES+=("exit status $rc on SIGTERM")
        fi
    fi
    for note in "${SESSION_NOTES[@]}"; do
        notes+="${notes:+, }$(json_str "$note")"
    done
    {
        printf '{"session": %s, "kind": %s, "conf": %s, "args": %s, "pid": %s, "port": %s,' \
            "$(json_str "$SESSION")" "$(json_str "$SESSION_KIND")" "$(json_str "${SESSION_CONF#"$RUN"/}")" \
            "$(json_str "$SESSION_ARGS")" "${PROXY_PID:-null}" "${PROXY_PORT:-null}"
        printf ' "alive_at_stop": %s, "exit_status": %s, "budget_line": %s,' "$alive" "$rc" "$(json_str "$budget")"
        printf ' "not_enough_lines": %s, "not_enough_first": %s, "log_errors": %s,' "${not_enough:-0}" "$(json_str "$first")" "$(json_str "$tail_err")"
        printf ' "loadgen_t0_ms": %s, "notes": [%s]}\n' "${SESSION_T0:-null}" "$notes"
    } >"$RUN/raw/$SESSION.session.json"
    PROXY_PID=""
}

# run_loadgen WORKLOAD SUBCOMMAND ARGS...: raw/SESSION__WORKLOAD.json (last stdout line).
run_loadgen() {
    local wl=$1 rc=0 base
    shift
    base=${SESSION}__$wl
    if ! proxy_alive; then
        warn "$base: skipped, the proxy is not running"
        SESSION_NOTES+=("$wl skipped: proxy not running")
        return 0
    fi
    # In the background and waited for, so SIGINT/SIGTERM reach the trap at once (bash defers
    # traps until a foreground child ends) and the cleanup kills loadgen too.
    local lp
    "$BIN/loadgen" "$@" >"$RUN/logs/$base.stdout" 2>"$RUN/logs/$base.stderr" &
    lp=$!
    track_pid "$lp"
    wait "$lp" || rc=$?
    forget_pid "$lp"
    if ((rc != 0)) || ! tail -n 1 "$RUN/logs/$base.stdout" | grep -q '^{'; then
        warn "$base: loadgen exit $rc: $(tail -n 2 "$RUN/logs/$base.stderr")"
        SESSION_NOTES+=("$wl: loadgen exit status $rc")
        return 0
    fi
    tail -n 1 "$RUN/logs/$base.stdout" >"$RUN/raw/$base.json"
    rm -f "$RUN/logs/$base.stdout"
    if ! proxy_alive; then
        warn "$base: THE PROXY DIED during this run"
        SESSION_NOTES+=("proxy died during $wl")
    fi
}

# loadgen processes for N connections (each process keeps under ~9,000 fds here).
procs_for() { echo $((($1 + 8999) / 9000)); }

# ceiling_run WORKLOAD CONNS RATE HOLD [--mem]: loadgen ceiling against the session's proxy
# (with CEIL_EXTRA's options too: the TLS ones in step 4).
CEIL_EXTRA=()
ceiling_run() {
    local wl=$1 conns=$2 rate=$3 hold=$4 mem=${5:-} sampler=""
    if [[ $mem == --mem && -n $PROXY_PID ]]; then
        sample_mem "$PROXY_PID" "$RUN/raw/${SESSION}.mem.tsv" &
        sampler=$!
        track_pid "$sampler"
        sleep 1 # baseline samples before the ramp
    fi
    SESSION_T0=$(now_ms)
    run_loadgen "$wl" ceiling --target "127.0.0.1:$PROXY_PORT" --conns "$conns" --rate "$rate" \
        --hold "$hold" --procs "$(procs_for "$conns")" --src-ips "$SRC_IPS" --sample-ms 100 \
        "${CEIL_EXTRA[@]}"
    if [[ -n $sampler ]]; then
        sleep 0.5 # a few samples after the clients closed
        stop_pid "$sampler"
    fi
}

summary_line() {
    local f=$RUN/raw/$1.json
    if [[ -f $f ]]; then
        grep -o '"ok":[0-9]*' "$f" | head -n 1
    else
        echo "no result"
    fi
}

# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------
start_backends

# Steps 1-3 (skipped with --only tls).
if [[ $only == all ]]; then
    # 1. Ceiling at 1 x CEIL_WC, both proxies from one conf.
    conf=$(gen_conf ceiling 1 "$CEIL_WC")
    log "ceiling: 1 x $CEIL_WC ($(grep -m 1 '^budget' "$RUN/logs/ceiling.ringway-t.out")), $CEIL_CONNS clients"
    for p in ringway nginx; do
        start_session "ceiling__$p" "$p" "$conf"
        ceiling_run ceiling "$CEIL_CONNS" "$CEIL_RATE" "$CEIL_HOLD"
        end_session
        log "  $p: $(summary_line "ceiling__${p}__ceiling")"
    done

    # 2. Raised ceiling at the budget that fits ringway's one process, then nginx's own largest.
    conf=$(gen_conf raised "$RAISED_WP" "$RAISED_WC")
    log "raised: $RAISED_WP x $RAISED_WC, $RAISED_CONNS clients at $RAISED_RATE/s, hold ${RAISED_HOLD}s"
    for p in ringway nginx; do
        start_session "raised__$p" "$p" "$conf"
        ceiling_run ceiling "$RAISED_CONNS" "$RAISED_RATE" "$RAISED_HOLD" --mem
        end_session
        log "  $p: $(summary_line "raised__${p}__ceiling")"
        sleep 1
    done
    conf=$(gen_conf nginxmax "$NGXMAX_WP" "$NGXMAX_WC")
    log "nginx's largest: $NGXMAX_WP x $NGXMAX_WC, $NGXMAX_CONNS clients"
    start_session nginxmax__nginx nginx "$conf"
    ceiling_run ceiling "$NGXMAX_CONNS" "$RAISED_RATE" "$RAISED_HOLD" --mem
    end_session
    log "  nginx: $(summary_line "nginxmax__nginx__ceiling")"
    sleep 1

    # 3. Echo, bulk, HTTP and the accept rate at each worker count (one conf per count, the same
    # for both proxies, upstream keepalive for HTTP); repetitions interleaved, and within each
    # repetition the worker counts, so slow drift of the box hits every target alike. direct
    # (loadgen straight at a backend) does not depend on the proxy's workers: it runs once per
    # repetition, at the first worker count, and the report shows it in every table.
    declare -A PERF_CONF=()
    for w in "${PERF_WORKERS[@]}"; do
        PERF_CONF[$w]=$(gen_conf "perf-w$w" "$w" "$PERF_WC" "$HTTP_UPSTREAM_KEEPALIVE")
    done
    log "echo/bulk/http/churn: workers ${PERF_WORKERS[*]} x $PERF_WC, $REPS rep(s) of ${DURATION}s per workload, targets ${PERF_TARGETS[*]}"
    for ((rep = 1; rep <= REPS; rep++)); do
        for w in "${PERF_WORKERS[@]}"; do
            conf=${PERF_CONF[$w]}
            for target in "${PERF_TARGETS[@]}"; do
                [[ $target != direct || $w == "${PERF_WORKERS[0]}" ]] || continue
                label=perf__w${w}__r${rep}__$target
                case $target in
                    ringway-auto) start_session "$label" ringway "$conf" --tunnel auto ;;
                    ringway-auto-nopin) start_session "$label" ringway "$conf" --tunnel auto --no-pin ;;
                    ringway-splice) start_session "$label" ringway "$conf" --tunnel splice ;;
                    ringway-copy) start_session "$label" ringway "$conf" --tunnel copy ;;
                    baseline-auto) start_session "$label" baseline "$conf" --tunnel auto ;;
                    baseline-splice) start_session "$label" baseline "$conf" --tunnel splice ;;
                    baseline-copy) start_session "$label" baseline "$conf" --tunnel copy ;;
                    nginx) start_session "$label" nginx "$conf" ;;
                    direct) start_session "$label" direct "" ;;
                esac
                if [[ $target == direct ]]; then
                    watch=("${BACKEND_PIDS[0]}")
                else
                    watch=("$PROXY_PID" "${BACKEND_PIDS[@]}")
                fi
                for wl in "${WORKLOADS[@]}"; do
                    workload_applies "$target" "$wl" || continue
                    read -r -a wargs <<<"$(workload_args "$wl")"
                    run_loadgen "$wl" "${wargs[@]}" --target "127.0.0.1:$PROXY_PORT" --duration "$DURATION" \
                        --warmup "$WARMUP" --watch-pid "${watch[@]}"
                done
                end_session
                log "  rep $rep, $w worker(s): $target done"
            done
        done
    done
fi

# 4. TLS: the same seed with `listen ... ssl` and the run's certificate, read by both proxies.
tls_setup() {
    TLS_DIR=$RUN/tls
    "$BIN/loadgen" gen-cert --out "$TLS_DIR" --names localhost >"$RUN/logs/gen-cert.out" 2>&1 ||
        die "loadgen gen-cert failed: $(tail -n 2 "$RUN/logs/gen-cert.out")"
    TLS_ARGS=(--tls --tls-ca "$TLS_DIR/ca.pem" --sni localhost)
    # direct: a TLS wsecho (rustls), one process so its ticket key covers every connection.
    "$BIN/wsecho" --port 0 --procs 1 --lifetime 7200 --tls-cert "$TLS_DIR/localhost.pem" \
        --tls-key "$TLS_DIR/localhost.key" >"$RUN/logs/wsecho-tls.out" 2>"$RUN/logs/wsecho-tls.err" &
    TLS_DIRECT_PID=$!
    track_pid "$TLS_DIRECT_PID"
    wait_for_line "$RUN/logs/wsecho-tls.out" '^listening ' 10 "$TLS_DIRECT_PID" ||
        die "wsecho --tls-cert did not start; see $RUN/logs/wsecho-tls.err"
    TLS_DIRECT_PORT=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$RUN/logs/wsecho-tls.out" | head -n 1)
    BACKEND_PIDS+=("$TLS_DIRECT_PID")
    log "tls: CA and localhost certificate in $TLS_DIR; direct TLS backend on 127.0.0.1:$TLS_DIRECT_PORT"
}
# tls_ringway_accepts CONF NAME [ringway flags...]: 0 when `ringway -t` accepts the TLS conf;
# else a warning naming ringway's first error line (kept in TLS_RINGWAY_WHY).
tls_ringway_accepts() {
    local conf=$1 name=$2 out
    shift 2
    out=$RUN/logs/$name.ringway-t.out
    if "$BIN/ringway" -t -c "$conf" "$@" >"$out" 2>&1; then
        return 0
    fi
    TLS_RINGWAY_WHY=$(grep -m 1 -iE 'error|ssl|unknown|not ' "$out" || head -n 1 "$out")
    warn "ringway refuses $conf (${TLS_RINGWAY_WHY}): the TLS rows run for nginx and direct only"
    return 1
}
# tls_note_negotiated TARGET FILE: "version suite group alpn" from a loadgen result's tls object.
tls_note_negotiated() {
    local t=$1 f=$2 sv ag
    [[ -f $f && -z ${TLS_NEG[$t]:-} ]] || return 0
    sv=$(grep -o '"suite":"[^"]*","version":"[^"]*"' "$f" | tail -n 1 |
        sed 's/"suite":"\([^"]*\)","version":"\([^"]*\)"/\2 \1/')
    ag=$(grep -o '"alpn":"[^"]*","group":"[^"]*"' "$f" | tail -n 1 |
        sed 's/"alpn":"\([^"]*\)","group":"\([^"]*\)"/\2 \1/')
    [[ -z $sv ]] || TLS_NEG[$t]="$sv $ag"
}

tls_setup
conf=$(gen_conf tls-w1 1 "$PERF_WC" "" tls)
TLS_TARGETS=(nginx direct)
if tls_ringway_accepts "$conf" tls-w1; then
    TLS_RINGWAY=1
    TLS_TARGETS=(ringway nginx direct)
fi
log "tls: ${TLS_WORKLOADS[*]}, $REPS rep(s) of ${DURATION}s, targets ${TLS_TARGETS[*]} (1 worker)"
for ((rep = 1; rep <= REPS; rep++)); do
    for target in "${TLS_TARGETS[@]}"; do
        label=tls__r${rep}__$target
        start_session "$label" "$target" "$conf"
        if [[ $target == direct ]]; then
            PROXY_PORT=$TLS_DIRECT_PORT
            watch=("$TLS_DIRECT_PID")
        else
            watch=("$PROXY_PID" "${BACKEND_PIDS[@]:0:4}")
        fi
        for wl in "${TLS_WORKLOADS[@]}"; do
            read -r -a wargs <<<"$(tls_workload_args "$wl")"
            run_loadgen "$wl" "${wargs[@]}" --target "127.0.0.1:$PROXY_PORT" --duration "$DURATION" \
                --warmup "$WARMUP" --watch-pid "${watch[@]}" "${TLS_ARGS[@]}"
            tls_note_negotiated "$target" "$RUN/raw/${label}__$wl.json"
        done
        end_session
        log "  tls rep $rep: $target done"
    done
done
if ((TLS_HELD > 0)); then
    # Idle TLS tunnels: proxy RSS (summed over its processes) before the ramp and while held.
    conf=$(gen_conf tls-held "$TLS_HELD_WP" "$TLS_HELD_WC" "" tls)
    held_targets=(nginx)
    if ((TLS_RINGWAY)) && tls_ringway_accepts "$conf" tls-held --worker-mode process; then
        TLS_HELD_RINGWAY=1
        held_targets=(ringway nginx)
    fi
    log "tls held: $TLS_HELD idle wss tunnels at $TLS_HELD_RATE/s, $TLS_HELD_WP x $TLS_HELD_WC, hold ${TLS_HELD_HOLD}s: ${held_targets[*]}"
    CEIL_EXTRA=("${TLS_ARGS[@]}" --timeout 30)
    for p in "${held_targets[@]}"; do
        if [[ $p == ringway ]]; then
            start_session "tlsheld__$p" "$p" "$conf" --worker-mode process
        else
            start_session "tlsheld__$p" "$p" "$conf"
        fi
        ceiling_run ceiling "$TLS_HELD" "$TLS_HELD_RATE" "$TLS_HELD_HOLD" --mem
        end_session
        log "  $p: $(summary_line "tlsheld__${p}__ceiling")"
        sleep 1
    done
    CEIL_EXTRA=()
fi

stop_pids_backends() {
    local p
    for p in "${BACKEND_PIDS[@]}"; do
        stop_pid "$p"
    done
}
stop_pids_backends

t_end=$(now_ms)
dur=$(((t_end - t_start) / 1000))
write_meta "$dur"
log "writing summary.md and plots ($BIN/report $RUN)"
"$BIN/report" "$RUN" || die "report failed; rerun: $BIN/report $RUN"
log "done in ${dur}s: $RUN/summary.md"
# On the terminal: the ceiling comparison (section 1 of the summary), the HTTP table, with
# --baseline the before/after table (section 7), the accept rate (8), pinning (9) and the
# issue 11 targets (10); the TLS rows (11) always.
sections=(11)
if [[ $only == all ]]; then
    awk '/^## 1\./{p=1} /^## 2\./{p=0} p' "$RUN/summary.md"
    sections=(6 7 8 9 10 11)
fi
for n in "${sections[@]}"; do
    awk -v h="## $n." '/^## /{p=0} index($0, h) == 1 {p=1} p' "$RUN/summary.md"
done
results_advice "$RUN" "$root"
