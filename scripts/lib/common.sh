# shellcheck shell=bash
# scripts/lib/common.sh: helpers shared by scripts/compare.sh, ceiling.sh, routing-cost.sh,
# cluster.sh, socketio-test.sh and soak.sh (sourced, not run).
#
# Process bookkeeping (every child is started through start_bg and killed by pid on exit,
# never by name), free-port probing on loopback, JSON string and list escaping, the memory
# sampler used during the raised-ceiling runs, and a digest of a log too big to keep. Needs bash >= 5 ($EPOCHREALTIME).

# Pids of everything we started, in start order; cleanup_children kills them newest first.
CHILD_PIDS=()

log() { printf '[compare %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
warn() { printf '[compare %(%H:%M:%S)T] warning: %s\n' -1 "$*" >&2; }
die() {
    printf '[compare] error: %s\n' "$*" >&2
    exit 1
}

# The last word of a run: a results folder inside the repository is untracked until someone
# decides. Commit it only if a figure in README.md or results/README.md comes from it (and
# give it a row in results/README.md's "Folders here"); otherwise delete it. A folder given
# with --out outside results/ is not the repository's business.
results_advice() {
    local run=$1 root=$2 rel
    case $run in
        "$root"/results/*) rel=${run#"$root"/} ;;
        *) return 0 ;;
    esac
    log "$rel is new and untracked: commit it (git add $rel, plus a row in results/README.md) only if a README figure comes from it; otherwise delete it: rm -r $rel"
}

# The release binaries' folder: $CARGO_TARGET_DIR/release when it is set (relative to the
# project root $1, as cargo, run from there, reads it), else $1/target/release.
release_dir() {
    local root=$1 dir=${CARGO_TARGET_DIR:-}
    [[ -n $dir ]] || dir=$root/target
    [[ $dir == /* ]] || dir=$root/$dir
    printf '%s/release' "${dir%/}"
}

# Milliseconds since the epoch, without forking.
now_ms() {
    local t=${EPOCHREALTIME/./}
    printf '%s' "${t:0:-3}"
}

# Escape $1 as a JSON string (with the quotes).
json_str() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\r'/\\r}
    s=${s//$'\t'/\\t}
    # Remaining control characters are dropped: none of our values should contain them.
    s=$(printf '%s' "$s" | tr -d '\000-\037')
    printf '"%s"' "$s"
}

# The arguments as a JSON list of strings, without the brackets: "a", "b".
json_list() {
    local x out=""
    for x in "$@"; do
        out+="${out:+, }$(json_str "$x")"
    done
    printf '%s' "$out"
}

# Remember a pid so cleanup_children kills it.
track_pid() { CHILD_PIDS+=("$1"); }

forget_pid() {
    local p i
    for i in "${!CHILD_PIDS[@]}"; do
        p=${CHILD_PIDS[i]}
        [[ $p != "$1" ]] || unset 'CHILD_PIDS[i]'
    done
    # Re-pack: cleanup_children walks indices 0..count-1, which a hole would cut short.
    CHILD_PIDS=("${CHILD_PIDS[@]}")
}

# Wait up to $2 seconds (default 5) for pid $1 to exit; 0 if it exited.
wait_gone() {
    local pid=$1 limit=${2:-5} i
    for ((i = 0; i < limit * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    return 1
}

# stop_pid PID [SIGNAL]: stop one child we started and forget it: SIGNAL (default TERM),
# wait up to 10 s, SIGKILL if needed. Sets STOP_RC to its exit status (from `wait`, so only
# for our own children; call it in this shell, not in $(...)).
# shellcheck disable=SC2034  # read by the scripts that source this file
STOP_RC=0
stop_pid() {
    local pid=$1 sig=${2:-TERM} rc=0
    if kill -0 "$pid" 2>/dev/null; then
        kill -"$sig" "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" 10; then
            warn "pid $pid ignored SIG$sig for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    forget_pid "$pid"
    # shellcheck disable=SC2034
    STOP_RC=$rc
}

# Kill every tracked child, newest first (trap EXIT).
cleanup_children() {
    local i pid
    for ((i = ${#CHILD_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${CHILD_PIDS[i]:-}
        [[ -n $pid ]] || continue
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = ${#CHILD_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${CHILD_PIDS[i]:-}
        [[ -n $pid ]] || continue
        if ! wait_gone "$pid" 5; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    CHILD_PIDS=()
}

# A TCP port on 127.0.0.1 that nothing listens on, chosen below the ephemeral range so no
# client socket can hold it by chance. Probed with ss; fresh at every call.
free_port() {
    local lo hi p tries
    read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
    hi=$((lo - 1))
    lo=10000
    ((hi > lo + 100)) || { lo=$((hi + 1)); hi=65000; }
    for ((tries = 0; tries < 200; tries++)); do
        p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
        if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then
            printf '%s' "$p"
            return 0
        fi
    done
    die "no free port found in $lo-$hi"
}

# Wait until file $1 has a line matching regex $2 (up to $3 s) while pid $4 lives.
wait_for_line() {
    local file=$1 re=$2 limit=$3 pid=$4 i
    for ((i = 0; i < limit * 20; i++)); do
        if [[ -f $file ]] && grep -Eq -- "$re" "$file"; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# Wait until something accepts on 127.0.0.1:$1 (up to $2 s).
wait_port() {
    local port=$1 limit=$2 i
    for ((i = 0; i < limit * 20; i++)); do
        if [[ -n $(ss -Htln "( sport = :$port )" 2>/dev/null) ]]; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# VmRSS in KiB of pid $1 plus its direct children (nginx master + workers).
rss_tree_kb() {
    local pid=$1 total=0 k v _u kid
    local -a kids=()
    if [[ -r /proc/$pid/status ]]; then
        while read -r k v _u; do
            [[ $k == VmRSS: ]] && total=$((total + v))
        done </proc/"$pid"/status 2>/dev/null || true
    fi
    if [[ -r /proc/$pid/task/$pid/children ]]; then
        read -r -a kids </proc/"$pid"/task/"$pid"/children || true
    fi
    for kid in "${kids[@]}"; do
        [[ -r /proc/$kid/status ]] || continue
        while read -r k v _u; do
            [[ $k == VmRSS: ]] && total=$((total + v))
        done </proc/"$kid"/status 2>/dev/null || true
    done
    printf '%s' "$total"
}

memfree_kb() {
    local k v _u
    while read -r k v _u; do
        if [[ $k == MemFree: ]]; then
            printf '%s' "$v"
            return
        fi
    done </proc/meminfo
}

# Sample "epoch_ms rss_kb memfree_kb" of pid $1's tree every 100 ms into $2 until the pid
# exits or we are killed. Run in the background.
sample_mem() {
    local pid=$1 out=$2
    printf 'epoch_ms\trss_kb\tmemfree_kb\n' >"$out"
    while kill -0 "$pid" 2>/dev/null; do
        printf '%s\t%s\t%s\n' "$(now_ms)" "$(rss_tree_kb "$pid")" "$(memfree_kb)" >>"$out"
        sleep 0.1
    done
}

# A digest of log file $1 for a results folder, when the log itself is too big to keep: its
# line count, first and last 10 lines, and its 30 most frequent messages with the time
# stamp dropped and every number written N (each cut at 200 characters).
log_digest() {
    local f=$1
    printf '%s: %s lines, %s bytes\n\n--- first 10 lines\n' "${f##*/}" "$(wc -l <"$f")" "$(wc -c <"$f")"
    head -10 "$f" | cut -c1-200
    printf '\n--- the 30 most frequent messages (count, message with numbers as N)\n'
    sed -E 's/^[0-9]{4}\/[0-9]{2}\/[0-9]{2} [0-9:]+ //; s/[0-9]+/N/g' "$f" | cut -c1-200 |
        LC_ALL=C sort | uniq -c | sort -rn | head -30
    printf '\n--- last 10 lines\n'
    tail -10 "$f" | cut -c1-200
}
