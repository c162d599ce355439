"""Prints the benchmark table from RESULTS_TSV (server, route, round, server CPU clock
ticks over the run, req/s, p50 us,
p99 us, non-2xx, socket errors, requests; for /write also its 409s and memcached's
compare-and-swap hits and misses over the run): means over rounds, and each server's ratio to its
reference (the one-round-trip floor on /read, /incr and /login, the do-nothing middleware
on /plain) and to actix-session + Redis on the same route; then, round by round, this
crate against its targets and its variants (a server named <server>-baseline is <server>
built at the revision in $BASELINE). Exits 1 if any response was not 2xx.

With SVG=<file>, also draws the mean req/s of each server on each route as a bar chart
there. RESULTS_TSV may be a saved run from bench/results/: lines that are not results
(the build's, the report's) are skipped.
"""
import collections
import os
import statistics
import sys

import svg

SERVERS = {
    "floor": "floor: one round trip per read, two per write",
    "do-nothing": "bare actix-web inside a do-nothing middleware",
    "bare": "bare actix-web (no session)",
    "memcache": "**this crate, MemcacheStore**",
    "memcache-bound": "this crate, MemcacheStore, sessions bound to users",
    "memcache-3": "this crate, MemcacheStore over 3 memcached",
    "memcache-text": "this crate, MemcacheStore, text protocol",
    "memcache-proxy": "this crate, MemcacheStore, text protocol through nutcracker",
    "memcache-r2d2": "this crate, MemcacheStore::from_r2d2",
    "memcache-metrics": "this crate, MemcacheStore, metrics on (Prometheus)",
    "memcache-metrics-atomic": "this crate, MemcacheStore, metrics on (atomic recorder)",
    "memcache-exp": "this crate's middleware, memcache::exp::AsyncMetaClient",
    "actix-redis": "actix-session + Redis",
    "actix-cookie": "actix-session cookie store",
}
ROUTES = ["plain", "read", "incr", "login", "write"]
REFERENCE = {"plain": "do-nothing"}
# This crate's targets (issue 13): (route, reference, column, at least / at most, bound).
TARGETS = [
    ("plain", "do-nothing", 0, ">=", 0.98),
    ("read", "floor", 0, ">=", 0.90),
    ("incr", "floor", 0, ">=", 0.90),
    ("read", "floor", 2, "<=", 1.25),
    ("incr", "floor", 2, "<=", 1.25),
    ("read", "actix-redis", 0, ">=", 1.5),
    ("incr", "actix-redis", 0, ">=", 1.5),
]
# Variants of MemcacheStore against it: label, (numerator, denominator).
PAIRS = {
    "3 servers / 1 server": ("memcache-3", "memcache"),
    "bound / unbound": ("memcache-bound", "memcache"),
    "metrics on / off": ("memcache-metrics", "memcache"),
    "metrics on, atomic recorder / off": ("memcache-metrics-atomic", "memcache"),
    "this tree / baseline": ("memcache", "memcache-baseline"),
}
COLUMN = {0: "req/s", 2: "p99"}
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")

baseline = os.environ.get("BASELINE")
for server, name in list(SERVERS.items()):
    SERVERS[server + "-baseline"] = f"{name.strip('*')} at {baseline}"

runs = collections.defaultdict(list)
# Per server, round by round: (commits/s, share answered 409, share of compare-and-swaps
# that lost a race).
contention = collections.defaultdict(list)
bad = []
def is_result(fields):
    return len(fields) >= 10 and fields[1] in ROUTES and fields[2].isdigit()


for line in open(sys.argv[1]):
    if not is_result(line.split()):
        continue
    server, route, rnd, ticks, rps, p50, p99, non2xx, errors, requests, *write = line.split()
    cpu_us = int(ticks) * 1e6 / TICKS_PER_SECOND / int(requests)
    runs[server, route].append((float(rps), float(p50), float(p99), cpu_us))
    # On /write a 409 is an answer (the retry budget ran out), not a failure.
    conflicts = int(write[0]) if write else 0
    if int(non2xx) - conflicts or int(errors):
        bad.append(f"{server} /{route} round {rnd}: {non2xx} non-2xx, {errors} socket errors")
    if write:
        hits, misses = int(write[1]), int(write[2])
        contention[server].append((float(rps) * (1 - conflicts / int(requests)),
                                   conflicts / int(requests), misses / max(hits + misses, 1)))


def mean(server, route, i):
    return statistics.mean(r[i] for r in runs[server, route])


def ratios(server, base, route, i):
    """Round by round (each round ran both back to back): server's figure over base's."""
    return [o[i] / b[i] for b, o in zip(runs[base, route], runs[server, route])]


def described(rs):
    return f"median {statistics.median(rs):.2f} over {len(rs)} rounds ({', '.join(f'{r:.2f}' for r in rs)})"


print("| server | route | req/s | p50 ms | p99 ms | server CPU µs/req | x reference | x actix-session+Redis |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for route in ROUTES:
    for server, name in SERVERS.items():
        if (server, route) not in runs:
            continue
        rps = mean(server, route, 0)
        row = [name, f"/{route}", f"{rps:,.0f}", f"{mean(server, route, 1) / 1000:.2f}",
               f"{mean(server, route, 2) / 1000:.2f}", f"{mean(server, route, 3):.1f}"]
        for base in (REFERENCE.get(route, "floor"), "actix-redis"):
            row.append(f"{rps / mean(base, route, 0):.2f}" if (base, route) in runs else "")
        print("| " + " | ".join(row) + " |")
rounds = max(len(v) for v in runs.values())

shown = False
for route, base, i, op, bound in TARGETS:
    if not (runs.get(("memcache", route)) and runs.get((base, route))):
        continue
    if not shown:
        print("\nThis crate against its targets, round by round:")
        shown = True
    rs = ratios("memcache", base, route, i)
    median = statistics.median(rs)
    met = median >= bound if op == ">=" else median <= bound
    print(f"  /{route} {COLUMN[i]} / {base}: {described(rs)}; target {op} {bound}:"
          f" {'met' if met else 'NOT MET'}")
for route in ROUTES:
    for label, (variant, base) in PAIRS.items():
        if not (runs.get((base, route)) and runs.get((variant, route))):
            continue
        print(f"\n{label}, /{route}: req/s {described(ratios(variant, base, route, 0))},"
              f" p50 median {statistics.median(ratios(variant, base, route, 1)):.2f},"
              f" CPU/req {described(ratios(variant, base, route, 3))}", end="")
for server, rows in contention.items():
    print(f"\n/write, {server}: commits/s median {statistics.median(r[0] for r in rows):,.0f},"
          f" 409s {statistics.median(r[1] for r in rows):.1%},"
          f" compare-and-swaps that lost a race {statistics.median(r[2] for r in rows):.1%}"
          f" ({len(rows)} rounds)", end="")
print()
print(f"\nMeans over {rounds} rounds; every server ran each route once per round, in turn.")


def chart(path):
    """Mean req/s per server, grouped by route, as an SVG bar chart."""
    routes = [r for r in ROUTES if any(route == r for _, route in runs)]
    servers = [s for s in SERVERS if any((s, r) in runs for r in routes)]
    colours = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
               "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]
    top = max(mean(s, r, 0) for s in servers for r in routes if (s, r) in runs)
    bar, gap, height, left, bottom = 18, 30, 300, 70, 40
    group = bar * len(servers) + gap
    width = left + group * len(routes) + 360
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height + bottom + 20}" font-family="sans-serif" font-size="12">',
           f'<text x="{left}" y="14">mean req/s over {rounds} rounds '
           f'({os.path.basename(sys.argv[1])})</text>']
    svg.axis(out, left, left + group * len(routes), height, top, lambda v: f"{v:,.0f}")
    for g, route in enumerate(routes):
        x0 = left + g * group + gap / 2
        for i, server in enumerate(servers):
            if (server, route) not in runs:
                continue
            h = height * mean(server, route, 0) / top
            out.append(f'<rect x="{x0 + i * bar:.0f}" y="{20 + height - h:.0f}" '
                       f'width="{bar - 2}" height="{h:.0f}" fill="{colours[i % len(colours)]}"/>')
        out.append(f'<text x="{x0 + bar * len(servers) / 2:.0f}" y="{height + 38}" '
                   f'text-anchor="middle">/{route}</text>')
    svg.legend(out, left + group * len(routes) + 10,
               [(colours[i % len(colours)], SERVERS[s].replace("*", "").replace("&", "&amp;"))
                for i, s in enumerate(servers)])
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if os.environ.get("SVG"):
    chart(os.environ["SVG"])
if bad:
    print("\nNOT ALL 2xx:\n  " + "\n  ".join(bad))
    sys.exit(1)
print("Every response was 2xx" + (", but the 409s of /write." if contention else "."))
