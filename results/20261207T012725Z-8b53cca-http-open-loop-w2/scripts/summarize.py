#!/usr/bin/env python3
"""Medians (and ranges) per workers x target x offered rate from raw/w*/<target>-r<rate>*.json."""
import glob, json, os, re, statistics, sys
raw = sys.argv[1]
rows = {}
for f in glob.glob(os.path.join(raw, "w*", "*.json")):
    w = os.path.basename(os.path.dirname(f))[1:]
    m = re.match(r"(ringway|nginx|direct)-r(\d+)(?:-(\d+))?\.json", os.path.basename(f))
    if not m:
        continue
    j = json.load(open(f))
    rows.setdefault((int(w), int(m.group(2)), m.group(1)), []).append(j)
def med(js, f):
    v = sorted(f(j) for j in js)
    return statistics.median(v), v[0], v[-1]
print("| workers | offered req/s | target | answered req/s | proxy CPU µs/req | p50 ms | p99 ms (range) | p99.9 ms | late | p99 vs nginx |")
print("|---|---|---|---|---|---|---|---|---|---|")
order = {"ringway": 0, "nginx": 1, "direct": 2}
for (w, rate, t) in sorted(rows, key=lambda k: (k[0], k[1], order[k[2]])):
    js = rows[(w, rate, t)]
    got = med(js, lambda j: j["requests_per_s"])[0]
    cpu = med(js, lambda j: j["watched"][0]["tree_cpu_us_per_req"] if j["watched"] else 0)[0]
    p50 = med(js, lambda j: j["latency_us"]["p50"] / 1000)[0]
    p99, lo, hi = med(js, lambda j: j["latency_us"]["p99"] / 1000)
    p999 = med(js, lambda j: j["latency_us"]["p999"] / 1000)[0]
    late = med(js, lambda j: j.get("late", 0))[0]
    ng = rows.get((w, rate, "nginx"))
    vs = ""
    if t != "nginx" and ng:
        vs = "%.2f×" % (p99 / med(ng, lambda j: j["latency_us"]["p99"] / 1000)[0])
    print(f"| {w} | {'closed loop' if rate == 0 else f'{rate:,}'} | {t} | {got:,.0f} | {cpu:.1f} | {p50:.2f} | {p99:.2f} ({lo:.2f}–{hi:.2f}) | {p999:.2f} | {late:.0f} | {vs} |")
print(f"\n{len([1 for v in rows.values() for _ in v])} runs, {len(rows)} cells.")
