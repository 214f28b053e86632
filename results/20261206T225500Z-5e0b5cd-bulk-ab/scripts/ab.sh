#!/bin/bash
# seg.sh: segments and CPU per 64 B echo message, ringway vs nginx, 1 worker, 100 conns.
set -u
BIN=/work/main/target/release
W=${W:-1}; CONNS=${CONNS:-100}; DUR=${DUR:-4}; REPS=${REPS:-2}
D=/tmp/exp/run; rm -rf $D; mkdir -p $D/nginx/logs $D/nginx/temp
ports=()
for i in 1 2 3 4; do
  $BIN/wsecho --port 0 --procs 1 --lifetime 3600 >$D/ws$i.out 2>&1 &
done
sleep 1
for i in 1 2 3 4; do ports+=($(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' $D/ws$i.out|head -1)); done
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
RP=$((10000 + RANDOM % 10000)); NP=$((RP+1)); BP=$((RP+2))
mk $RP > $D/rw.conf; mk $NP > $D/ngx.conf; mk $BP > $D/rwb.conf
$BIN/ringway -c $D/rw.conf ${RWFLAGS:-} >$D/rw.out 2>&1 & RPID=$!
env ${BENV:-X=1} ${BBIN:-$BIN/ringway} -c $D/rwb.conf ${BFLAGS:-} >$D/rwb.out 2>&1 & BPID=$!
nginx -p $D/nginx -c $D/ngx.conf -g "daemon off; master_process on; pid $D/nginx/nginx.pid; error_log $D/nginx/logs/error.log info;" >$D/ngx.out 2>&1 & NPID=$!
sleep 1
run() { # name port pid
  nstat -n >/dev/null
  $BIN/loadgen ${WL:-echo --conns $CONNS --size 64} --target 127.0.0.1:$2 --duration $DUR --watch-pid $3 > $D/$1.json 2>$D/$1.err
  local segs=$(nstat -z TcpActiveOpens | awk '/TcpActiveOpens/{print $2}')
  local all=$(nstat -z | awk '$2>0{printf "%s=%s ", $1, $2}')
  python3 - "$D/$1.json" "$1" "$segs" <<'P'
import json,sys
j=json.load(open(sys.argv[1])); n=j.get("messages") or j.get("msgs") 
keys=list(j.keys())
m=j.get("messages", None)
rate=[v for k,v in j.items() if k.endswith("_per_s")][0]
w=j["watched"][0]; cpu=[v for k,v in w.items() if k.startswith("tree_cpu_") and "_per_" in k][0]
lat=j.get("latency_us",{}); print("%-8s rate %8.1f cpu/op %7.3f  p99 %s" % (sys.argv[2], rate, cpu, lat.get("p99")))
P
}
for r in $(seq $REPS); do run ringway $RP $RPID; run rw-bw $BP $BPID; run nginx $NP $NPID; done
kill $RPID $BPID; kill -QUIT $NPID; pkill -P $$ wsecho 2>/dev/null; wait
