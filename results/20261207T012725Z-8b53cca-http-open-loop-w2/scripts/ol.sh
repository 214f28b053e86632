#!/bin/bash
# ol.sh: HTTP keep-alive at 500 connections, closed loop and open loop at fixed rates,
# ringway (default) vs nginx vs direct, same conf shape as compare.sh (keepalive 32 upstream).
# W workers, RATES list (0 = closed loop), REPS interleaved repetitions of DUR s.
set -u
BIN=${BIN:-$(cd "$(dirname "$0")/../../.." && pwd)/target/release}
W=${W:-1}; CONNS=${CONNS:-500}; DUR=${DUR:-4}; REPS=${REPS:-2}; RATES=${RATES:-"0 10000"}
D=${D:?D=output folder}; mkdir -p $D/nginx/logs $D/nginx/temp
pids=(); ports=()
for i in 1 2 3 4; do
  $BIN/wsecho --port 0 --procs 1 --lifetime 3600 >$D/ws$i.out 2>&1 & pids+=($!)
done
sleep 1
for i in 1 2 3 4; do ports+=($(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' $D/ws$i.out|head -1)); done
freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mk() { # port
cat <<C
worker_processes $W;
events { worker_connections 4096; }
http {
  access_log off;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }
  upstream nodes { server 127.0.0.1:${ports[0]}; server 127.0.0.1:${ports[1]}; server 127.0.0.1:${ports[2]}; server 127.0.0.1:${ports[3]}; keepalive 32; }
  server { listen 127.0.0.1:$1;
    location / { proxy_pass http://nodes; proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade; proxy_set_header Host \$host; proxy_read_timeout 3600s; } }
}
C
}
RP=$(freeport); NP=$(freeport)
mk $RP > $D/rw.conf; mk $NP > $D/ngx.conf
$BIN/ringway -c $D/rw.conf >$D/rw.out 2>&1 & RPID=$!
nginx -p $D/nginx -c $D/ngx.conf -g "daemon off; master_process on; pid $D/nginx/nginx.pid; error_log $D/nginx/logs/error.log info;" >$D/ngx.out 2>&1 & NPID=$!
sleep 1
run() { # name port pid rate rep
  $BIN/loadgen http --conns $CONNS --rate $4 --target 127.0.0.1:$2 --duration $DUR ${3:+--watch-pid $3} > $D/$1-r$4-$5.json 2>$D/$1-r$4-$5.err
  python3 - "$D/$1-r$4-$5.json" "$1" "$4" <<'P'
import json,sys
j=json.load(open(sys.argv[1]))
w=j["watched"][0]["tree_cpu_us_per_req"] if j["watched"] else 0
l=j["latency_us"]
print("%-8s rate %6s got %7.0f/s cpu/req %5.1f us  p50 %7.0f p90 %7.0f p99 %7.0f p99.9 %7.0f late %d maxlag %d us" % (sys.argv[2], sys.argv[3], j["requests_per_s"], w, l["p50"], l["p90"], l["p99"], l["p999"], j.get("late",0), j.get("max_lag_us",0)))
P
}
for r in $(seq $REPS); do for rate in $RATES; do
  run ringway $RP $RPID $rate $r; run nginx $NP $NPID $rate $r; run direct ${ports[0]} "" $rate $r
done; done
kill $RPID; kill -QUIT $NPID; kill "${pids[@]}"; wait
