#!/bin/bash
set -u
BIN=/work/main/target/release
W=${W:-1}; CONNS=${CONNS:-100}; DUR=${DUR:-4}
D=/tmp/exp/prof$W; rm -rf $D; mkdir -p $D
ports=()
for i in 1 2 3 4; do $BIN/wsecho --port 0 --procs 1 --lifetime 3600 >$D/ws$i.out 2>&1 & done
sleep 1
for i in 1 2 3 4; do ports+=(127.0.0.1:$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' $D/ws$i.out|head -1)); done
RP=$((20000 + RANDOM % 20000))
$BIN/ringway --listen 127.0.0.1:$RP --upstream $(IFS=,; echo "${ports[*]}") --worker-processes $W --worker-connections 4096 ${RWFLAGS:-} >$D/rw.out 2>&1 & RPID=$!
sleep 1
( sleep 1; perf record -q -e cpu-clock -F 4000 -o $D/perf.data -p $RPID -- sleep 2 >/dev/null 2>&1 ) &
$BIN/loadgen echo --target 127.0.0.1:$RP --conns $CONNS --size 64 --duration $DUR --warmup 0.5 --watch-pid $RPID > $D/l.json 2>$D/l.err
sleep 0.5
python3 -c "import json;j=json.load(open('$D/l.json'));print('W=$W msgs/s %.0f cpu/msg %.2f p99 %.0f' % (j['msgs_per_s'], j['watched'][0]['tree_cpu_us_per_msg'], j['latency_us']['p99']))"
kill $RPID; pkill -P $$ wsecho; wait
perf report -i $D/perf.data --sort sym --stdio 2>/dev/null | grep -v "^#" | grep -v "^$" | head -45 > $D/top.txt
