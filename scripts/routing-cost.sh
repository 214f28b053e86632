#!/usr/bin/env bash
# routing-cost.sh: what nginx.conf routing costs, measured. The same ringway build, the
# same four wsecho backends, two configurations interleaved in one run:
#   simple  one server, one `location /` (no routing table: no matching per request);
#   routed  three server blocks by server_name, seven locations each (=, ^~, two regexes,
#           prefixes), the requests matching the last-tried prefix after both regexes fail.
# Workloads: echo 64 B over 100 WebSocket tunnels (matching happens once, at the upgrade;
# the tunnel path must not change) and small keep-alive HTTP GETs over 50 connections
# (one match per request head). Proxy CPU per message / per request from /proc; and the
# routing table alone, timed by bench's route_cost on the routed conf.
#
#   scripts/routing-cost.sh [--reps N] [--duration S] [--out DIR] [--no-build]
#
# Writes DIR (default results/<UTC date>-<sha>-routing-cost/): meta.json, conf/, raw/, logs/,
# summary.md. Loopback only; everything started is stopped by pid on exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$here/lib/common.sh"

cmdline="$0${*:+ $*}"
reps=3 duration=5 out="" build=1
while (($#)); do
    case $1 in
        --reps) reps=$2; shift ;;
        --duration) duration=$2; shift ;;
        --out) out=$2; shift ;;
        --no-build) build=0 ;;
        -h | --help)
            sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done

cd "$root"
if ((build)); then
    cargo build --release --workspace >&2 || die "cargo build --release --workspace failed"
fi
BIN=$(release_dir "$root") # $CARGO_TARGET_DIR/release, else target/release
for b in ringway wsecho loadgen route_cost; do
    [[ -x $BIN/$b ]] || die "missing $BIN/$b (run cargo build --release --workspace)"
done
sha=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
out=${out:-$root/results/$(date -u +%Y%m%dT%H%M%SZ)-$sha-routing-cost}
mkdir -p "$out/conf" "$out/raw" "$out/logs"
RUN=$(cd "$out" && pwd)

trap 'cleanup_children' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ports=()
pids=()
for i in 1 2 3 4; do
    "$BIN/wsecho" --port 0 --procs 1 --lifetime 3600 >"$RUN/logs/wsecho$i.out" 2>&1 &
    pids+=("$!")
    track_pid "$!"
    wait_for_line "$RUN/logs/wsecho$i.out" '^listening ' 10 "$!" || die "wsecho $i did not start"
    ports+=("$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$RUN/logs/wsecho$i.out" | head -n 1)")
done
servers=""
for p in "${ports[@]}"; do servers+="server 127.0.0.1:$p; "; done

write_conf() { # NAME PORT
    local name=$1 port=$2 f=$RUN/conf/$1.conf
    {
        echo "worker_processes 1;"
        echo "events { worker_connections 4096; }"
        echo "http {"
        echo "  upstream a { $servers keepalive 32; }"
        echo "  upstream b { $servers keepalive 32; }"
        if [[ $name == simple ]]; then
            echo "  server { listen 127.0.0.1:$port; location / { proxy_pass http://a; proxy_read_timeout 3600s; } }"
        else
            for host in api.example static.example; do
                echo "  server { listen 127.0.0.1:$port; server_name $host; location / { proxy_pass http://b; } }"
            done
            echo "  server { listen 127.0.0.1:$port default_server; server_name app.example *.app.example;"
            echo "    location = /health { proxy_pass http://b; }"
            echo "    location ^~ /static/ { proxy_pass http://b; }"
            echo "    location ~* \\.(png|jpe?g|gif|css|js)\$ { proxy_pass http://b; }"
            echo "    location ~ ^/api/v[0-9]+/ { proxy_pass http://b; }"
            echo "    location /socket.io/ { proxy_pass http://a; proxy_read_timeout 3600s; }"
            echo "    location /admin/ { proxy_pass http://b; }"
            echo "    location / { proxy_pass http://a; proxy_read_timeout 3600s; }"
            echo "  }"
        fi
        echo "}"
    } >"$f"
    "$BIN/ringway" -t -c "$f" >"$RUN/logs/$name.t.out" 2>&1 || die "ringway -t -c $f failed: $(tail -n 2 "$RUN/logs/$name.t.out")"
    printf '%s' "$f"
}

port_simple=$(free_port)
port_routed=$(free_port)
write_conf simple "$port_simple" >/dev/null
write_conf routed "$port_routed" >/dev/null

# loadgen's requests go to "/", Host 127.0.0.1:PORT: in the routed conf that is the default
# server, where `=` fails, the longest prefix is `/`, and both regexes are tried and fail.
for ((rep = 1; rep <= reps; rep++)); do
    for name in simple routed; do
        conf=$RUN/conf/$name.conf
        port=$port_simple
        [[ $name == routed ]] && port=$port_routed
        "$BIN/ringway" -c "$conf" >"$RUN/logs/r$rep-$name.out" 2>"$RUN/logs/r$rep-$name.err" &
        pp=$!
        track_pid "$pp"
        wait_for_line "$RUN/logs/r$rep-$name.out" 'listening on' 15 "$pp" || die "ringway ($name) did not start"
        wait_port "$port" 10 || die "ringway ($name) does not listen on $port"
        for wl in echo http; do
            if [[ $wl == echo ]]; then
                args=(echo --conns 100 --size 64)
            else
                args=(http --conns 50 --pipeline 1)
            fi
            "$BIN/loadgen" "${args[@]}" --target "127.0.0.1:$port" --duration "$duration" --warmup 0.5 \
                --watch-pid "$pp" >"$RUN/logs/r$rep-$name-$wl.stdout" 2>"$RUN/logs/r$rep-$name-$wl.stderr" ||
                die "loadgen $wl ($name) failed: $(tail -n 2 "$RUN/logs/r$rep-$name-$wl.stderr")"
            tail -n 1 "$RUN/logs/r$rep-$name-$wl.stdout" >"$RUN/raw/r$rep-$name-$wl.json"
        done
        stop_pid "$pp"
        log "rep $rep $name done"
    done
done

# The table lookup alone, on the routed conf (end-to-end CPU is too noisy to show it).
"$BIN/route_cost" "$RUN/conf/routed.conf" >"$RUN/raw/route_cost.json" || die "route_cost failed"

# The proxy's CPU per unit: the first watched process's cpu_us_per_msg / cpu_us_per_req.
cpu_of() { # FILE FIELD
    grep -o "\"$2\":[0-9.]*" "$1" | head -n 1 | cut -d: -f2
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print (NR % 2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
{
    echo "# Routing cost: one location vs a routed nginx.conf, same build, one run"
    echo
    echo "Command: \`scripts/routing-cost.sh${cmdline#"$0"}\` · commit $(git rev-parse HEAD) · $(uname -r) · $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1) × $(nproc) · $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "Configurations: [conf/simple.conf](conf/simple.conf) (no routing table) and"
    echo "[conf/routed.conf](conf/routed.conf) (3 servers by server_name; the requests reach the"
    echo "default server's \`location /\` after \`=\`, the prefixes and both regexes are tried)."
    echo "$reps interleaved repetitions of ${duration} s; proxy CPU (user + system, /proc) per unit; median (min–max)."
    echo "nginx is not part of this run: it measures ringway against itself (the nginx comparison is compare.sh's)."
    echo
    echo "| workload | simple | routed | routed / simple |"
    echo "|---|---|---|---|"
    for wl in echo http; do
        field=cpu_us_per_msg unit="µs/msg"
        [[ $wl == http ]] && field=cpu_us_per_req unit="µs/req"
        s=$(for f in "$RUN"/raw/r*-simple-"$wl".json; do cpu_of "$f" "$field"; done)
        r=$(for f in "$RUN"/raw/r*-routed-"$wl".json; do cpu_of "$f" "$field"; done)
        ms=$(median <<<"$s") mr=$(median <<<"$r")
        rs=$(sort -g <<<"$s" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }')
        rr=$(sort -g <<<"$r" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "–" hi }')
        ratio=$(awk -v a="$mr" -v b="$ms" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "–" }')
        label="echo 64 B, 100 tunnels"
        [[ $wl == http ]] && label="HTTP GET, 50 keep-alive conns"
        echo "| $label | $ms $unit ($rs) | $mr $unit ($rr) | $ratio |"
    done
    echo
    echo "The routing table alone (\`route_cost\`, one thread, 5,000,000 calls per request shape on"
    echo "conf/routed.conf), nanoseconds per request head:"
    echo
    echo "| request target | ns per route |"
    echo "|---|---|"
    # shellcheck disable=SC2016  # the backquotes are Markdown, not a command
    grep -o '"target": "[^"]*", "ns_per_route": [0-9.]*' "$RUN/raw/route_cost.json" |
        sed 's/"target": "\([^"]*\)", "ns_per_route": \(.*\)/| `\1` | \2 |/'
} >"$RUN/summary.md"
printf '{"tool": "scripts/routing-cost.sh", "command_line": %s, "commit": %s, "kernel": %s, "date_utc": %s, "reps": %s, "duration_s": %s}\n' \
    "$(json_str "$cmdline")" "$(json_str "$(git rev-parse HEAD)")" "$(json_str "$(uname -r)")" \
    "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")" "$reps" "$duration" >"$RUN/meta.json"
cat "$RUN/summary.md"
