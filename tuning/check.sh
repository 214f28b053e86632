#!/usr/bin/env bash
# check.sh: can this machine hold N proxied WebSocket tunnels through ringway?
#
#   check.sh N [--backends B] [--src-ips K] [--procs P] [--proxy-only] [--peer-kb KB]
#
#   N             tunnels to hold (underscores and commas allowed: 500_000)
#   --backends B  backend address:port pairs the tunnels are spread over (default 1)
#   --src-ips K   source addresses each side connects from (ringway's proxy_bind list,
#                 and the load generator's client addresses on one box) (default 1)
#   --procs P     ringway processes sharing the tunnels, each with its own fd limit (default 1)
#   --proxy-only  clients and backends run on other machines: 2 sockets per tunnel here
#                 instead of 4, and no client/backend memory
#   --peer-kb KB  user-space memory of the client + backend per tunnel, one-box layout
#                 (default 5: measured here with the bundled tools, 25.1 KiB of MemFree
#                 per tunnel for the whole box at 700,000 tunnels, minus 4 sockets x 5 and
#                 ringway's 0.5; it was 15 before wsecho stopped carrying TLS state on
#                 plain connections)
#
# Prints current vs needed for each limit and exits 1 naming every shortfall and its fix,
# 0 when everything fits, 2 on a usage error. Reads only; root is not needed. The fd
# limits are this shell's (ulimit -Sn / -Hn): under systemd, LimitNOFILE= decides.
set -euo pipefail

prog=check.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
conf="$here/sysctl.conf"

usage_err() {
    printf '%s: %s\nusage: %s N [--backends B] [--src-ips K] [--procs P] [--proxy-only] [--peer-kb KB]\n' "$prog" "$*" "$prog" >&2
    exit 2
}

# Positive integer from $2 (commas/underscores allowed), named $1 in errors.
posint() {
    local v=${2//[,_]/}
    if ! [[ $v =~ ^[0-9]+$ ]] || ((${#v} > 13)) || ((10#$v == 0)); then
        usage_err "$1 must be a positive integer (got '$2')"
    fi
    printf '%d' "$((10#$v))"
}

n=""
backends=1
src_ips=1
procs=1
proxy_only=0
peer_kb=5
while (($#)); do
    case $1 in
        --backends) (($# >= 2)) || usage_err "--backends needs a number"; backends=$(posint --backends "$2"); shift ;;
        --src-ips) (($# >= 2)) || usage_err "--src-ips needs a number"; src_ips=$(posint --src-ips "$2"); shift ;;
        --procs) (($# >= 2)) || usage_err "--procs needs a number"; procs=$(posint --procs "$2"); shift ;;
        --peer-kb) (($# >= 2)) || usage_err "--peer-kb needs a number"; peer_kb=$(posint --peer-kb "$2"); shift ;;
        --proxy-only) proxy_only=1 ;;
        -h | --help) sed -n '2,19s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) usage_err "unknown option: $1" ;;
        *) [[ -z $n ]] || usage_err "N given twice ($n and $1)"; n=$(posint N "$1") ;;
    esac
    shift
done
[[ -n $n ]] || usage_err "missing N (number of tunnels)"

BIG=9223372036854775807
ceil_div() { printf '%d' "$((($1 + $2 - 1) / $2))"; }
min() { printf '%d' "$(($1 < $2 ? $1 : $2))"; }
max() { printf '%d' "$(($1 > $2 ? $1 : $2))"; }

# 1234567 -> 1,234,567
commas() {
    local s=$1 out=""
    while ((${#s} > 3)); do
        out=",${s: -3}$out"
        s=${s:0:${#s}-3}
    done
    printf '%s%s' "$s" "$out"
}

# kB -> "12.3 GiB"
gib() { printf '%d.%d GiB' "$(($1 / 1048576))" "$(($1 % 1048576 * 10 / 1048576))"; }

sysctl_read() {
    local p=/proc/sys/${1//.//} v
    [[ -r $p ]] || return 1
    v=$(<"$p") || return 1
    printf '%s' "$v"
}

# Value tuning/sysctl.conf sets for key $1 (empty if none).
conf_value() {
    [[ -r $conf ]] || return 0
    sed -n "s/^[[:space:]]*-\{0,1\}${1//./\\.}[[:space:]]*=[[:space:]]*//p" "$conf" | tail -n 1 | tr -s ' \t' '  '
}

limit_num() {
    if [[ $1 == unlimited ]]; then printf '%s' "$BIG"; else printf '%s' "$1"; fi
}

SHORT=()
row() { printf '%-44s %16s %16s  %s\n' "$@"; }
check_row() { # label current needed ok(0/1) [current shown as]
    local shown=${5:-$(commas "$2")}
    if (($4)); then row "$1" "$shown" "$(commas "$3")" ok; else row "$1" "$shown" "$(commas "$3")" SHORT; fi
}

# Fix text for a scalar sysctl that must be at least $2.
sysctl_fix() {
    local key=$1 need=$2 cv
    cv=$(conf_value "$key")
    if [[ $cv =~ ^[0-9]+$ ]] && ((cv >= need)); then
        printf 'run sudo tuning/apply.sh (it sets %s = %s), or sysctl -w %s=%s' "$key" "$(commas "$cv")" "$key" "$need"
    else
        printf 'run sudo sysctl -w %s=%s (more than tuning/sysctl.conf sets)' "$key" "$need"
    fi
}

sockets=$((proxy_only ? 2 : 4))
per_proc=$(ceil_div "$n" "$procs")
# 2 sockets per tunnel + 1,024 for listeners, rings, logs and pipes of tunnels with bytes in flight.
fds_need=$((2 * per_proc + 1024))
soft=$(limit_num "$(ulimit -Sn)")
hard=$(limit_num "$(ulimit -Hn)")

if ((proxy_only)); then layout="clients and backends elsewhere (2 sockets per tunnel here)"; else layout="clients, ringway and backends on this box (4 sockets per tunnel)"; fi
printf 'ringway capacity check: %s tunnels, %s process(es), %s backend(s), %s source address(es); %s\n\n' \
    "$(commas "$n")" "$(commas "$procs")" "$(commas "$backends")" "$(commas "$src_ips")" "$layout"
row CHECK CURRENT NEEDED STATUS

# --- descriptors per process ---------------------------------------------------------
procs_fix=""
if ((hard > 1024 + 2)); then
    procs_fix="; or spread the tunnels over $(commas "$(ceil_div $((2 * n)) $((hard - 1024)))") ringway processes (--procs) so each fits in $(commas "$hard")"
fi
ok=$((soft >= fds_need))
check_row "fds per process, soft (ulimit -Sn)" "$soft" "$fds_need" "$ok"
if ((!ok && hard >= fds_need)); then
    SHORT+=("fds per process (soft limit $(commas "$soft") < $(commas "$fds_need")): raise it before starting ringway with ulimit -Sn $fds_need, or LimitNOFILE=$fds_need in ringway.service")
fi
ok=$((hard >= fds_need))
check_row "fds per process, hard (ulimit -Hn)" "$hard" "$fds_need" "$ok"
if ((!ok)); then
    SHORT+=("fds per process (soft and hard limits $(commas "$soft") / $(commas "$hard") < $(commas "$fds_need"), 2 per tunnel + 1,024 spare): raising the hard limit needs root with CAP_SYS_RESOURCE: LimitNOFILE=$fds_need in ringway.service, or ulimit -Hn $fds_need as root$procs_fix")
fi

# --- kernel descriptor ceilings ------------------------------------------------------
if nr_open=$(sysctl_read fs.nr_open); then
    ok=$((nr_open >= fds_need))
    check_row "fs.nr_open (max fds for one process)" "$nr_open" "$fds_need" "$ok"
    ((ok)) || SHORT+=("fs.nr_open $(commas "$nr_open") is below the $(commas "$fds_need") fds one process needs, and no limit can exceed it: $(sysctl_fix fs.nr_open "$fds_need")")
fi
if file_max=$(sysctl_read fs.file-max); then
    ((${#file_max} < 19)) || file_max=$BIG # LONG_MAX or more: unlimited in practice
    in_use=0
    if file_nr=$(sysctl_read fs.file-nr); then read -r in_use _ <<<"$file_nr"; fi
    fm_need=$((n * sockets + in_use))
    ok=$((file_max >= fm_need))
    check_row "fs.file-max (open files, whole machine)" "$file_max" "$fm_need" "$ok"
    ((ok)) || SHORT+=("fs.file-max $(commas "$file_max") < $(commas "$fm_need") ($sockets sockets per tunnel + $(commas "$in_use") files open now): $(sysctl_fix fs.file-max "$fm_need")")
fi

# --- accept queues (a reconnect storm after a restart) ----------------------------------
q_need=$(min 65535 "$(max 128 "$(ceil_div "$n" 10)")")
if somax=$(sysctl_read net.core.somaxconn); then
    ok=$((somax >= q_need))
    check_row "net.core.somaxconn (accept queue)" "$somax" "$q_need" "$ok"
    ((ok)) || SHORT+=("net.core.somaxconn $(commas "$somax") < $(commas "$q_need"): when all $(commas "$n") clients reconnect at once, a tenth should wait in the accept queue instead of timing out in SYN retries: $(sysctl_fix net.core.somaxconn "$q_need")")
fi
if synq=$(sysctl_read net.ipv4.tcp_max_syn_backlog); then
    ok=$((synq >= q_need))
    check_row "net.ipv4.tcp_max_syn_backlog" "$synq" "$q_need" "$ok"
    ((ok)) || SHORT+=("net.ipv4.tcp_max_syn_backlog $(commas "$synq") < $(commas "$q_need") for the same reconnect storm: $(sysctl_fix net.ipv4.tcp_max_syn_backlog "$q_need")")
fi

# --- ephemeral ports -------------------------------------------------------------------
if range=$(sysctl_read net.ipv4.ip_local_port_range); then
    read -r lo hi <<<"$range"
    ports=$((hi - lo + 1))
    conf_range=$(conf_value net.ipv4.ip_local_port_range)
    conf_ports=0
    if [[ $conf_range =~ ^([0-9]+)\ ([0-9]+)$ ]]; then conf_ports=$((BASH_REMATCH[2] - BASH_REMATCH[1] + 1)); fi
    per_backend=$(ceil_div "$n" "$backends")
    avail=$((ports * src_ips))
    ok=$((avail >= per_backend))
    check_row "upstream ports per backend ($(commas "$ports") x $src_ips src)" "$avail" "$per_backend" "$ok"
    if ((!ok)); then
        fix="each backend gets $(commas "$per_backend") upstream connections but one source address has only $(commas "$ports") ports ($lo-$hi) per backend: give ringway $(ceil_div "$per_backend" "$ports") source addresses (proxy_bind; --src-ips), or use more backends"
        if ((conf_ports > ports)); then fix+=", or widen the range with sudo tuning/apply.sh ($conf_range: then $(ceil_div "$per_backend" "$conf_ports") source addresses suffice)"; fi
        SHORT+=("upstream ports: $fix")
    fi
    if ((!proxy_only)); then
        ok=$((avail >= n))
        check_row "client ports to ringway ($(commas "$ports") x $src_ips src)" "$avail" "$n" "$ok"
        if ((!ok)); then
            fix="all $(commas "$n") clients connect to ringway's one address:port, $(commas "$ports") ports per client source address: bind the load generator's clients to $(ceil_div "$n" "$ports") addresses in 127.0.0.0/8 (--src-ips), or run clients on other machines (--proxy-only)"
            if ((conf_ports > ports)); then fix+=", or widen the range with sudo tuning/apply.sh ($conf_range)"; fi
            SHORT+=("client ports: $fix")
        fi
    fi
fi

# --- connection tracking (only when nf_conntrack is loaded) -----------------------------
if ct_max=$(sysctl_read net.netfilter.nf_conntrack_max); then
    ct_need=$((2 * n))
    ok=$((ct_max >= ct_need))
    check_row "net.netfilter.nf_conntrack_max" "$ct_max" "$ct_need" "$ok"
    ((ok)) || SHORT+=("nf_conntrack_max $(commas "$ct_max") < $(commas "$ct_need") (2 tracked connections per tunnel; when full the kernel drops new connections' packets): $(sysctl_fix net.netfilter.nf_conntrack_max "$ct_need")")
fi

# --- io_uring allowed? ---------------------------------------------------------------------
if iou=$(sysctl_read kernel.io_uring_disabled); then
    case $iou in
        0) row "kernel.io_uring_disabled" "0" "0" ok ;;
        1) row "kernel.io_uring_disabled" "1" "0" "ok only for root / kernel.io_uring_group" ;;
        *)
            row "kernel.io_uring_disabled" "$iou" "0" SHORT
            SHORT+=("io_uring is disabled (kernel.io_uring_disabled=$iou) and ringway is built on it: sudo sysctl -w kernel.io_uring_disabled=0")
            ;;
    esac
fi

# --- reloads (not a capacity limit: never a shortfall) --------------------------------------
if migrate=$(sysctl_read net.ipv4.tcp_migrate_req); then
    if ((migrate == 1)); then
        row "net.ipv4.tcp_migrate_req (reloads)" "1" "1" ok
    else
        row "net.ipv4.tcp_migrate_req (reloads)" "$migrate" "1" "note: a reload to new listeners can reset a client caught in an old backlog; sudo tuning/apply.sh sets it"
    fi
fi

# --- memory --------------------------------------------------------------------------------
mem_free=$(awk '$1 == "MemFree:" { print $2 }' /proc/meminfo)
peer=$((proxy_only ? 0 : peer_kb))
per_tunnel=$((sockets * 5 + 1 + peer))
mem_need=$((n * per_tunnel))
ok=$((mem_free >= mem_need))
check_row "memory, kB (MemFree vs ${per_tunnel} kB/tunnel)" "$mem_free" "$mem_need" "$ok"
if ((!ok)); then
    fit=$((mem_free / per_tunnel))
    what="$sockets sockets x 5 kB kernel + 1 kB ringway"
    ((proxy_only)) || what+=" + $peer kB clients/backends"
    SHORT+=("memory: $(commas "$n") tunnels need about $(gib "$mem_need") ($what per tunnel) but MemFree is $(gib "$mem_free"): this box fits about $(commas "$fit"); add memory, free some, or run clients and backends on other machines (--proxy-only)")
fi

echo
if ((${#SHORT[@]} == 0)); then
    echo "all checks pass: this machine can hold $(commas "$n") tunnels"
    exit 0
fi
printf '%d shortfall(s) for %s tunnels:\n' "${#SHORT[@]}" "$(commas "$n")"
for s in "${SHORT[@]}"; do printf '  - %s\n' "$s"; done
exit 1
