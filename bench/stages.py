"""Tabulates the stage timings of a `STAGES_DIR=dir bash scripts/bench.sh` run: for each
route, stage and server, the median over the rounds of each percentile, in microseconds,
and this crate's ratio to the floor's.

    python3 bench/stages.py dir
"""
import collections
import pathlib
import statistics
import sys

STAGES = ["service", "before store", "store", "after store"]

runs = collections.defaultdict(list)  # (route, stage, server) -> [(p50, p90, p99, p999)]
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.txt")):
    server = path.stem.rsplit("-", 1)[0]
    for line in path.read_text().splitlines():
        route, stage, _count, *percentiles = line.split("\t")
        runs[(route, stage, server)].append([float(p) for p in percentiles])

servers = sorted({server for (_, _, server) in runs}, key=lambda s: (s != "floor", s))
routes = sorted({route for (route, _, _) in runs} - {"/login"})
print("| route | stage | server | rounds | p50 µs | p90 µs | p99 µs | p99.9 µs | p99 / floor's |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|")
for route in routes:
    for stage in STAGES:
        floor_p99 = None
        for server in servers:
            rounds = runs.get((route, stage, server))
            if not rounds:
                continue
            medians = [statistics.median(r[i] for r in rounds) for i in range(4)]
            if server == "floor":
                floor_p99 = medians[2]
            ratio = f"{medians[2] / floor_p99:.2f}" if floor_p99 and server != "floor" else ""
            cells = " | ".join(f"{m:,.1f}" for m in medians)
            print(f"| {route} | {stage} | {server} | {len(rounds)} | {cells} | {ratio} |")
