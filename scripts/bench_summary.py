#!/usr/bin/env python3
"""Medians of interleaved bench rounds and the ratios to the peers.

Input lines (any file): commitlog's `RESULT Commitlog Produce|Consume W1 ...` lines,
peerbench's `RESULT <System> Produce|Consume <topo>:W1:<rep> ...` lines, and
`PROBE ... N fsyncs/s` lines. Prints, per workload, our median records/s and p50/p99
µs, each peer's, the ratio ours/peer, and W1 against the median fsync probe.
"""
import collections
import statistics
import sys

runs = collections.defaultdict(list)  # (system, workload) -> [(rps, p50, p99)]
probes = []
for path in sys.argv[1:]:
    for line in open(path):
        f = line.split()
        if f and f[0] == "PROBE" and "fsyncs/s" in f:
            probes.append(float(f[f.index("fsyncs/s") - 1]))
            continue
        if len(f) < 12 or f[0] != "RESULT":
            continue
        system, label = f[1], f[3]
        workload = label.split(":")[1] if ":" in label else label
        name = system if ":" not in label else f"{system} {label.split(':')[0]}"
        runs[(name, workload)].append((float(f[6]), float(f[8]), float(f[9])))


def med(xs, k):
    return statistics.median(x[k] for x in xs)


workloads = sorted({w for (_, w) in runs})
peers = sorted({s for (s, _) in runs if s != "Commitlog"})
W = max([14] + [len(w) + 2 for w in workloads])
print(f"{'workload':<{W}}{'system':<26}{'runs':>5}{'records/s':>12}{'p50 us':>9}{'p99 us':>9}{'ours/peer':>11}")
for w in workloads:
    ours = runs.get(("Commitlog", w))
    if ours:
        print(f"{w:<{W}}{'commitlog':<26}{len(ours):>5}{med(ours, 0):>12,.0f}{med(ours, 1):>9,.0f}{med(ours, 2):>9,.0f}")
    for p in peers:
        theirs = runs.get((p, w))
        if not theirs:
            continue
        ratio = f"{med(ours, 0) / med(theirs, 0):.2f}x" if ours else "-"
        print(f"{'':<{W}}{p:<26}{len(theirs):>5}{med(theirs, 0):>12,.0f}{med(theirs, 1):>9,.0f}{med(theirs, 2):>9,.0f}{ratio:>11}")
if probes:
    p = statistics.median(probes)
    print(f"fsync probe: median {p:,.0f} fsyncs/s over {len(probes)} probes (min {min(probes):,.0f}, max {max(probes):,.0f})")
    ours = runs.get(("Commitlog", "W1"))
    if ours:
        print(f"W1 / fsync probe: {med(ours, 0) / p:.2f}")
