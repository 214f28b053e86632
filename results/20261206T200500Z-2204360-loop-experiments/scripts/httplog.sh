#!/bin/bash
set -u
BIN=/work/main/target/release
W=${W:-1}
D=/tmp/exp/hl; rm -rf $D; mkdir -p $D
ports=()
for i in 1 2 3 4; do $BIN/wsecho --port 0 --procs 1 --lifetime 3600 >$D/ws$i.out 2>&1 & done
sleep 1
for i in 1 2 3 4; do ports+=(127.0.0.1:$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' $D/ws$i.out|head -1)); done
RP=$((20000 + RANDOM % 20000))
$BIN/ringway --listen 127.0.0.1:0 --upstream $(IFS=,; echo "${ports[*]}") --worker-processes $W --worker-connections 4096 --keepalive 32 --access-log $D/access.log --access-log-format json ${RWFLAGS:-} >$D/rw.out 2>&1 & RPID=$!
sleep 1
RP=$(sed -n "s/.*listening on 127.0.0.1:\([0-9]*\) .*/\1/p" $D/rw.out)
$BIN/loadgen http --conns 500 --pipeline 1 --target 127.0.0.1:$RP --duration 4 --watch-pid $RPID > $D/l.json 2>$D/l.err
tail -2 $D/l.err
kill $RPID; pkill -P $$ wsecho; wait
python3 - $D/access.log <<'P'
import json,sys
rt=[];ut=[]
for line in open(sys.argv[1]):
    try: j=json.loads(line)
    except: continue
    rt.append(float(j["request_time"])); u=j["upstream_response_time"]
    try: ut.append(float(u))
    except: pass
def pct(a,p): a=sorted(a); return a[min(len(a)-1,int(len(a)*p))]
for n,a in (("request_time",rt),("upstream_response_time",ut)):
    print(n, len(a), "p50 %.3f p90 %.3f p99 %.3f p999 %.3f max %.3f" % (pct(a,.5),pct(a,.9),pct(a,.99),pct(a,.999),max(a)))
P
head -2 $D/access.log; grep -c . $D/rw.out; tail -3 $D/rw.out
