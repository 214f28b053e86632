#!/usr/bin/env bash
# observe-cost.sh: what observability costs the data path, measured as interleaved A/B
# runs on this box (issue 14). Two pairs, each run REPS times in alternation:
#   echo 64 B, 100 connections: ringway alone  vs  ringway --metrics with a scraper
#                                                  fetching /metrics 10 times a second
#   HTTP keep-alive GETs, 50 connections: --access-log off  vs  --access-log FILE
# The figure is the proxy's CPU per message / per request from /proc (loadgen
# --watch-pid: every thread of the ringway process, the metrics thread included).
# Prints one line per run and the medians. Needs release builds of ringway and
# ringway-bench (cargo build --release -p ringway -p ringway-bench). Loopback only;
# everything it starts is stopped and its temp folder removed when it ends.
# Env: REPS (3), DUR seconds per run (4), WORKERS (1); BASELINE=PATH adds the same two
# workloads run by another ringway binary (say, a build of the commit before issue 14), to
# see what the always-on counters cost.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
REPS=${REPS:-3} DUR=${DUR:-4} WORKERS=${WORKERS:-1}
for b in ringway wsecho loadgen; do
    [[ -x $BIN/$b ]] || { echo "observe-cost.sh: $BIN/$b missing: cargo build --release -p ringway -p ringway-bench" >&2; exit 2; }
done
tmp=$(mktemp -d /tmp/ringway-observe.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# wait_line FILE REGEX: the first matching line (10 s at most).
wait_line() {
    local i
    for i in $(seq 200); do
        if grep -Eo "$2" "$1" 2>/dev/null | head -n 1 | grep .; then return 0; fi
        sleep 0.05
    done
    echo "observe-cost.sh: no line like '$2' in $1" >&2
    exit 1
}

"$BIN/wsecho" --port 0 --procs 1 >"$tmp/wsecho.out" 2>/dev/null &
pids+=($!)
backend=$(wait_line "$tmp/wsecho.out" '127\.0\.0\.1:[0-9]+')

# run CASE WORKLOAD FIELD [ringway flags...]: one run; prints "CASE VALUE".
run() {
    local case=$1 wl=$2 field=$3
    shift 3
    local out="$tmp/$case.out" scraper=""
    "${RW:-$BIN/ringway}" --listen 127.0.0.1:0 --upstream "$backend" --worker-processes "$WORKERS" \
        --no-pin "$@" >"$out" 2>"$tmp/$case.err" &
    local rw=$!
    pids+=($rw)
    local addr
    addr=$(wait_line "$out" 'listening on 127\.0\.0\.1:[0-9]+' | awk '{print $3}')
    if [[ $case == *scraped* ]]; then
        local m
        m=$(wait_line "$out" 'http://127\.0\.0\.1:[0-9]+/metrics')
        (while :; do curl -s -o /dev/null "$m" || true; sleep 0.1; done) &
        scraper=$!
        pids+=($scraper)
    fi
    local args=(--conns 100 --size 64)
    [[ $wl == http ]] && args=(--conns 50)
    "$BIN/loadgen" "$wl" --target "$addr" "${args[@]}" --duration "$DUR" --warmup 0.5 \
        --watch-pid "$rw" 2>/dev/null | tail -n 1 >"$tmp/$case.json"
    [[ -z $scraper ]] || kill "$scraper" 2>/dev/null || true
    kill "$rw"
    wait "$rw" 2>/dev/null || true
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); w=d["watched"][0]; print(sys.argv[2], round(w[sys.argv[3]],2), round(d.get("msgs_per_s", d.get("requests_per_s",0))))' \
        "$tmp/$case.json" "$case" "$field"
}

: >"$tmp/results"
for rep in $(seq "$REPS"); do
    if [[ -n ${BASELINE:-} ]]; then
        RW=$BASELINE run echo-baseline echo cpu_us_per_msg | tee -a "$tmp/results"
        RW=$BASELINE run http-baseline http cpu_us_per_req | tee -a "$tmp/results"
    fi
    run echo-plain echo cpu_us_per_msg | tee -a "$tmp/results"
    run echo-scraped echo cpu_us_per_msg --metrics 127.0.0.1:0 | tee -a "$tmp/results"
    run http-log-off http cpu_us_per_req | tee -a "$tmp/results"
    run http-log-on http cpu_us_per_req --access-log "$tmp/access.log" | tee -a "$tmp/results"
    rm -f "$tmp/access.log"
done
echo "median over $REPS runs of ${DUR}s ($WORKERS worker(s)): case, proxy CPU µs per message/request (min–max), rate"
python3 - "$tmp/results" <<'PY'
import sys, statistics
rows = {}
for l in open(sys.argv[1]):
    c, v, r = l.split()
    rows.setdefault(c, []).append((float(v), float(r)))
for c, vs in rows.items():
    cpu = [v for v, _ in vs]
    print(f"{c:14} {statistics.median(cpu):7.2f} ({min(cpu):.2f}–{max(cpu):.2f})  {statistics.median([r for _, r in vs]):9.0f}/s")
PY
