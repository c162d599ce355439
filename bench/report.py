"""Prints the benchmark table from RESULTS_TSV (server, route, round, req/s, p50 us,
p99 us, non-2xx, socket errors): means over rounds, and each server's ratio to bare actix
and to actix-session + Redis on the same route. Exits 1 if any response was not 2xx.
"""
import collections
import statistics
import sys

SERVERS = {
    "bare": "bare actix-web (no session)",
    "memcache": "**this crate, MemcacheStore**",
    "memcache-bound": "this crate, MemcacheStore, sessions bound to users",
    "memcache-3": "this crate, MemcacheStore over 3 memcached",
    "memcache-text": "this crate, MemcacheStore, text protocol",
    "memcache-proxy": "this crate, MemcacheStore, text protocol through nutcracker",
    "memcache-r2d2": "this crate, MemcacheStore::from_r2d2",
    "memcache-exp": "this crate's middleware, memcache::exp::AsyncMetaClient",
    "actix-redis": "actix-session + Redis",
    "actix-cookie": "actix-session cookie store",
}
ROUTES = ["plain", "read", "incr", "login"]

runs = collections.defaultdict(list)
bad = []
for line in open(sys.argv[1]):
    server, route, rnd, rps, p50, p99, non2xx, errors = line.split()
    runs[server, route].append((float(rps), float(p50), float(p99)))
    if int(non2xx) or int(errors):
        bad.append(f"{server} /{route} round {rnd}: {non2xx} non-2xx, {errors} socket errors")

def mean(server, route, i):
    return statistics.mean(r[i] for r in runs[server, route])

print("| server | route | req/s | p50 ms | p99 ms | x bare | x actix-session+Redis |")
print("|---|---|---:|---:|---:|---:|---:|")
for route in ROUTES:
    for server, name in SERVERS.items():
        if (server, route) not in runs:
            continue
        rps = mean(server, route, 0)
        row = [name, f"/{route}", f"{rps:,.0f}", f"{mean(server, route, 1) / 1000:.2f}",
               f"{mean(server, route, 2) / 1000:.2f}"]
        for base in ("bare", "actix-redis"):
            row.append(f"{rps / mean(base, route, 0):.2f}" if (base, route) in runs else "")
        print("| " + " | ".join(row) + " |")
rounds = max(len(v) for v in runs.values())
# Variants of MemcacheStore against it, round by round (each round ran both back to back):
# medians of the req/s and p50 ratios.
PAIRS = {
    "memcache-3": "3 servers / 1 server",
    "memcache-bound": "bound / unbound",
    "memcache-metrics": "metrics on / off",
}
for route in ROUTES:
    for variant, label in PAIRS.items():
        base, other = runs.get(("memcache", route)), runs.get((variant, route))
        if not (base and other):
            continue
        ratios = [o[0] / b[0] for b, o in zip(base, other)]
        p50s = [o[1] / b[1] for b, o in zip(base, other)]
        print(f"\n{label}, /{route}: req/s median {statistics.median(ratios):.2f}"
              f" over {len(ratios)} rounds ({', '.join(f'{r:.2f}' for r in ratios)}),"
              f" p50 median {statistics.median(p50s):.2f}", end="")
print()
print(f"\nMeans over {rounds} rounds; every server ran each route once per round, in turn.")
if bad:
    print("\nNOT ALL 2xx:\n  " + "\n  ".join(bad))
    sys.exit(1)
print("Every response was 2xx.")
