#!/bin/bash
# at 2.40M and 2.64M established sockets (600k/660k tunnels), record 8 s of whole-box perf
for thr in 2400000 2640000; do
  while :; do
    e=$(ss -s | sed -n 2p | sed 's/.*estab \([0-9]*\).*/\1/')
    [[ ${e:-0} -ge $thr ]] && break
    pgrep -x loadgen >/dev/null || { [[ -f /tmp/diag/started ]] && exit 0; }
    pgrep -x loadgen >/dev/null && touch /tmp/diag/started
    sleep 2
  done
  date +%T > /tmp/diag/at-$thr
  cat /proc/loadavg >> /tmp/diag/at-$thr
  vmstat 1 3 >> /tmp/diag/at-$thr
  perf record -a -F 499 -o /tmp/diag/perf-$thr.data -- sleep 8 2>/tmp/diag/perf-$thr.err
done
