#!/bin/bash
# Count io_uring events per echoed message for ringway (default) at W workers, and syscalls for nginx.
set -u
BIN=${BIN:-$(cd "$(dirname "$0")/../../.." && pwd)/target/release}; W=${W:-1}; D=${D:-/tmp/uc/run}; rm -rf $D; mkdir -p $D/nginx/logs
pids=(); ports=()
for i in 1 2 3 4; do $BIN/wsecho --port 0 --procs 1 --lifetime 3600 >$D/ws$i.out 2>&1 & pids+=($!); done
sleep 1
for i in 1 2 3 4; do ports+=($(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' $D/ws$i.out|head -1)); done
fp() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mk() { cat <<C
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
RP=$(fp); NP=$(fp); mk $RP > $D/rw.conf; mk $NP > $D/ngx.conf
$BIN/ringway -c $D/rw.conf ${RWFLAGS:-} >$D/rw.out 2>&1 & RPID=$!
nginx -p $D/nginx -c $D/ngx.conf -g "daemon off; master_process on; pid $D/nginx/nginx.pid; error_log $D/nginx/logs/error.log info;" >$D/ngx.out 2>&1 & NPID=$!
sleep 1
$BIN/loadgen echo --conns 100 --size 64 --target 127.0.0.1:$RP --duration 6 --watch-pid $RPID > $D/rw.json 2>$D/rw.err &
L=$!; sleep 2
perf stat -e 'io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_cqring_wait,io_uring:io_uring_local_work_run,io_uring:io_uring_task_add,io_uring:io_uring_poll_arm,io_uring:io_uring_queue_async_work,raw_syscalls:sys_enter,context-switches' -p $RPID -- sleep 3 2>&1 | grep -E "io_uring|sys_enter|context" 
wait $L; grep -o '"msgs_per_s": [0-9.]*\|"messages": [0-9]*' $D/rw.json | head -3; tail -2 $D/rw.err
NW=$(pgrep -P $NPID | tr '\n' ',' | sed 's/,$//')
$BIN/loadgen echo --conns 100 --size 64 --target 127.0.0.1:$NP --duration 6 --watch-pid $NPID > $D/ng.json 2>$D/ng.err &
L=$!; sleep 2
perf stat -e 'raw_syscalls:sys_enter,context-switches' -p $NW -- sleep 3 2>&1 | grep -E "sys_enter|context"
wait $L; tail -2 $D/ng.err
kill $RPID "${pids[@]}"; kill -QUIT $NPID; wait
