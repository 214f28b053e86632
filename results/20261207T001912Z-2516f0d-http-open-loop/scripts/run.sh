#!/bin/bash
# run.sh: the whole experiment — ol.sh at 1 and 2 workers, closed loop and open loop at
# 5k-25k requests/s, 3 interleaved repetitions of 4 s; then summarize.py.
set -eu
here=$(cd "$(dirname "$0")" && pwd); R=$(cd "$here/.." && pwd)
mkdir -p "$R/raw"
for W in ${WS:-1 2}; do
  W=$W D=$R/raw/w$W REPS=3 DUR=4 RATES="0 5000 10000 15000 20000 25000" "$here/ol.sh" | tee "$R/raw/w$W.txt"
done
python3 "$here/summarize.py" "$R/raw" > "$R/table.md"
