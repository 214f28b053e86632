# shellcheck shell=bash
# scripts/lib/ceiling.sh: helpers for scripts/ceiling.sh (sourced after lib/common.sh).
#
# Whole-tree memory of a multi-process proxy (ringway's master + worker processes, nginx's
# master + workers), the box's kernel memory (Slab, SUnreclaim, TCP sockets in use), a
# 1-second sampler with a MemFree guard that stops the load generator before the box runs
# out of memory, and waiting for the box to recover between proxies.

# Our own log prefix (common.sh's say "compare").
log() { printf '[ceiling %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
warn() { printf '[ceiling %(%H:%M:%S)T] warning: %s\n' -1 "$*" >&2; }
die() {
    printf '[ceiling] error: %s\n' "$*" >&2
    exit 1
}

# Every pid in the tree rooted at $1 (itself first), via /proc/PID/task/*/children.
tree_pids() {
    local -a queue=("$1") kids
    local pid t
    while ((${#queue[@]})); do
        pid=${queue[0]}
        queue=("${queue[@]:1}")
        [[ -d /proc/$pid ]] || continue
        printf '%s\n' "$pid"
        for t in /proc/"$pid"/task/*/children; do
            [[ -r $t ]] || continue
            kids=()
            read -r -a kids <"$t" 2>/dev/null || true
            ((${#kids[@]})) && queue+=("${kids[@]}")
        done
    done
}

# "RSS_KB ANON_KB NPROCS" summed over the tree rooted at $1 (VmRSS and RssAnon of
# /proc/PID/status). VmRSS counts the shared text of every worker again; RssAnon does not
# include file pages, so it is the private heap/stack/mmap memory of the tree.
tree_mem() {
    local rss=0 anon=0 n=0 pid k v _u
    while read -r pid; do
        [[ -r /proc/$pid/status ]] || continue
        n=$((n + 1))
        while read -r k v _u; do
            case $k in
                VmRSS:) rss=$((rss + v)) ;;
                RssAnon:) anon=$((anon + v)) ;;
            esac
        done <"/proc/$pid/status" 2>/dev/null || true
    done < <(tree_pids "$1")
    printf '%s %s %s\n' "$rss" "$anon" "$n"
}

# "MEMFREE_KB SLAB_KB SUNRECLAIM_KB USABLE_KB" from /proc/meminfo. USABLE is MemAvailable
# less SReclaimable: the kernel counts reclaimable slab as available, but with hundreds of
# thousands of sockets open most of it is their inodes and dentries, which cannot be freed
# while the sockets are open (a 700,000-tunnel run reached MemFree 200 MiB with MemAvailable
# still above 2 GiB, and setups timed out while the kernel reclaimed).
meminfo_kb() {
    local k v _u free=0 slab=0 sun=0 avail=0 srec=0 usable
    while read -r k v _u; do
        case $k in
            MemFree:) free=$v ;;
            MemAvailable:) avail=$v ;;
            Slab:) slab=$v ;;
            SReclaimable:) srec=$v ;;
            SUnreclaim:) sun=$v ;;
        esac
    done </proc/meminfo
    usable=$((avail > srec ? avail - srec : 0))
    printf '%s %s %s %s\n' "$free" "$slab" "$sun" "$usable"
}

# "TCP_INUSE TCP_TW TCP_MEM_PAGES" from /proc/net/sockstat (whole box, this netns).
sockstat_tcp() {
    local line
    local -a f
    while read -r line; do
        if [[ $line == TCP:* ]]; then
            read -r -a f <<<"$line"
            # TCP: inuse N orphan N tw N alloc N mem N
            printf '%s %s %s\n' "${f[2]}" "${f[6]}" "${f[10]}"
            return
        fi
    done </proc/net/sockstat
    printf '0 0 0\n'
}

memfree_mib() {
    local free _s _u _a
    read -r free _s _u _a < <(meminfo_kb)
    printf '%s' $((free / 1024))
}

usable_mib() {
    local _f _s _u usable
    read -r _f _s _u usable < <(meminfo_kb)
    printf '%s' $((usable / 1024))
}

# sample_box PROXY_PID OUT_TSV FLOOR_KB GUARD_FILE ABORT_FILE USR1_FILE
#
# Every second: epoch_ms, the proxy tree's VmRSS/RssAnon/process count, MemFree, Slab,
# SUnreclaim, TCP sockets in use, TIME_WAIT and TCP buffer pages. Runs until killed.
#
# Guard: once GUARD_FILE holds a pid (the load generator's), usable memory (MemAvailable less
# SReclaimable, see meminfo_kb) under FLOOR_KB sends it SIGUSR1: the ramp stops where it is,
# and what it started is held and probed as usual (loadgen passes the signal to its
# children). Should it still fall under half of FLOOR_KB, SIGTERM stops it outright (its
# children die with it: PR_SET_PDEATHSIG). Each writes the reason to ABORT_FILE. Stats: if USR1_FILE is non-empty, the first time the TCP socket count has
# stopped growing for 5 samples after the ramp began, the proxy gets one SIGUSR2 (ringway
# prints its per-worker stats while the tunnels are held) and USR1_FILE gets the time.
sample_box() {
    local pid=$1 out=$2 floor=$3 guard=$4 abort=$5 usr1=$6
    local rss anon n free slab sun usable inuse tw tmem now lg="" aborted=0 stopped=0
    local best=0 still=0 sent=0 base_inuse=""
    printf 'epoch_ms\trss_kb\tanon_kb\tprocs\tmemfree_kb\tslab_kb\tsunreclaim_kb\ttcp_inuse\ttcp_tw\ttcp_mem_pages\n' >"$out"
    while :; do
        now=$(now_ms)
        read -r rss anon n < <(tree_mem "$pid")
        read -r free slab sun usable < <(meminfo_kb)
        read -r inuse tw tmem < <(sockstat_tcp)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$now" "$rss" "$anon" "$n" "$free" "$slab" "$sun" "$inuse" "$tw" "$tmem" >>"$out"
        if [[ -z $lg && -s $guard ]]; then
            lg=$(<"$guard")
            base_inuse=$inuse
        fi
        if [[ -n $lg ]] && ((!stopped && usable < floor)); then
            stopped=1
            printf 'usable memory (MemAvailable - SReclaimable) %s MiB < floor %s MiB at %s (%s TCP sockets): ramp stopped (SIGUSR1 to loadgen %s); what it started was held and probed\n' \
                $((usable / 1024)) $((floor / 1024)) "$now" "$inuse" "$lg" >>"$abort"
            # GUARD_FILE names `timeout`, which SIGUSR1 would kill: signal loadgen, its child.
            kill -USR1 "$(pgrep -P "$lg" -x loadgen || printf '%s' "$lg")" 2>/dev/null || true
        fi
        if [[ -n $lg ]] && ((!aborted && usable < floor / 2)); then
            aborted=1
            printf 'usable memory %s MiB < half the floor at %s: loadgen (pid %s) stopped by SIGTERM\n' \
                $((usable / 1024)) "$now" "$lg" >>"$abort"
            kill -TERM "$lg" 2>/dev/null || true
        fi
        # One SIGUSR2 (the stats) once the socket count has plateaued (the hold).
        if [[ -n $lg && -n $usr1 && ! -s $usr1 ]] && ((!sent)); then
            if ((inuse > best + best / 500 + 8)); then
                best=$inuse
                still=0
            else
                still=$((still + 1))
            fi
            if ((still >= 3 && best > base_inuse + 100)); then
                sent=1
                kill -USR2 "$pid" 2>/dev/null || true
                printf '%s\n' "$now" >"$usr1"
            fi
        fi
        sleep 1
    done
}

# wait_recover FLOOR_MIB BASE_INUSE LIMIT_S: after a proxy stops, wait until MemFree is at
# least FLOOR_MIB and the TCP socket count is back within 2,000 of BASE_INUSE (or LIMIT_S
# seconds pass). Prints what it saw.
wait_recover() {
    local floor=$1 base=$2 limit=$3 i free inuse _a _b
    for ((i = 0; i < limit; i++)); do
        free=$(memfree_mib)
        read -r inuse _a _b < <(sockstat_tcp)
        if ((free >= floor && inuse <= base + 2000)); then
            log "box recovered after ${i}s: MemFree $free MiB, TCP sockets in use $inuse"
            return 0
        fi
        sleep 1
    done
    warn "box not fully recovered after ${limit}s: MemFree $free MiB (wanted $floor), TCP sockets in use $inuse (base $base)"
    return 1
}

# ceil_div A B
ceil_div() { printf '%s' $((($1 + $2 - 1) / $2)); }
