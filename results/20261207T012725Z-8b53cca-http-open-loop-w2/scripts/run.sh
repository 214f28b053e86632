#!/bin/bash
# run.sh: 2 workers, 500 connections open loop at 10,000 req/s, 10 interleaved repetitions of
# 4 s (ringway, nginx, direct each repetition); then summarize.py.
set -eu
here=$(cd "$(dirname "$0")" && pwd); R=$(cd "$here/.." && pwd)
mkdir -p "$R/raw"
W=2 D=$R/raw/w2 REPS=10 DUR=4 RATES="10000" "$here/ol.sh" | tee "$R/raw/w2.txt"
python3 "$here/summarize.py" "$R/raw" > "$R/table.md"
