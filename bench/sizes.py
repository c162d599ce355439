"""Prints the session-size table from saved runs of scripts/bench.sh, one run per session
size (each with SESSION_BYTES=<n> in its Command line, and the servers floor and memcache
on /read and /incr): per size, each route's mean req/s, its ratio to the floor's and the
server CPU per request of both; then the CPU each extra KB costs a request, from the
smallest size to 64 KB. With SVG=<file>, also draws the ratios to the floor as a bar
chart there.

    python3 bench/sizes.py bench/results/15-size-*.txt
"""
import os
import re
import statistics
import sys

import svg

ROUTES = ["read", "incr"]
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def read(path):
    """(session bytes, {(server, route): [(req/s, CPU us per request)]}) of one saved run."""
    size, runs = None, {}
    for line in open(path):
        found = re.search(r"SESSION_BYTES=(\d+)", line)
        if line.startswith("Command:") and found:
            size = int(found.group(1))
        fields = line.split()
        # A result line: server, route, round, CPU ticks, req/s, p50, p99, non-2xx, socket
        # errors, requests.
        if len(fields) >= 10 and fields[1] in ROUTES and fields[2].isdigit():
            ticks, rps, requests = int(fields[3]), float(fields[4]), int(fields[9])
            cpu_us = ticks * 1e6 / TICKS_PER_SECOND / requests
            runs.setdefault((fields[0], fields[1]), []).append((rps, cpu_us))
    if size is None:
        sys.exit(f"{path}: no SESSION_BYTES in its Command line")
    return size, runs


def mean(runs, server, route, i):
    return statistics.mean(r[i] for r in runs[server, route])


def label(size):
    return f"{size // 1024} KB" if size >= 1024 else f"{size} B"


def per_kb(table, server, route):
    """CPU us per request per extra KB, from the smallest size to 64 KB (least squares)."""
    points = [(size / 1024, mean(runs, server, route, 1)) for size, runs in table
              if size <= 65536]
    xs, ys = zip(*points)
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)


def chart(path, table):
    """The ratio of this crate's req/s to the floor's, per size, /read and /incr side by side."""
    colours = {"read": "#4e79a7", "incr": "#f28e2b"}
    bar, gap, height, left, bottom = 26, 34, 240, 50, 40
    group = bar * len(ROUTES) + gap
    width = left + group * len(table) + 120
    top = max(1.2, max(mean(r, "memcache", route, 0) / mean(r, "floor", route, 0)
                       for _, r in table for route in ROUTES))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height + bottom + 20}" font-family="sans-serif" font-size="12">',
           '<text x="50" y="14">this crate\'s req/s x the floor\'s, by session size</text>']
    svg.axis(out, left, left + group * len(table), height, top, lambda v: f"{v:.2f}")
    one = 20 + height - height / top
    out.append(f'<line x1="{left}" x2="{left + group * len(table)}" y1="{one:.0f}" '
               f'y2="{one:.0f}" stroke="#888" stroke-dasharray="4"/>')
    for g, (size, runs) in enumerate(table):
        x0 = left + g * group + gap / 2
        for i, route in enumerate(ROUTES):
            ratio = mean(runs, "memcache", route, 0) / mean(runs, "floor", route, 0)
            h = height * ratio / top
            out.append(f'<rect x="{x0 + i * bar:.0f}" y="{20 + height - h:.0f}" '
                       f'width="{bar - 2}" height="{h:.0f}" fill="{colours[route]}"/>')
            out.append(f'<text x="{x0 + i * bar + bar / 2 - 1:.0f}" y="{16 + height - h:.0f}" '
                       f'text-anchor="middle" font-size="10">{ratio:.2f}</text>')
        out.append(f'<text x="{x0 + bar * len(ROUTES) / 2:.0f}" y="{height + 38}" '
                   f'text-anchor="middle">{label(size)}</text>')
    svg.legend(out, left + group * len(table) + 10, [(colours[r], f"/{r}") for r in ROUTES])
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    table = sorted(read(path) for path in sys.argv[1:])
    print("| session | /read req/s (x floor) | /incr req/s (x floor) "
          "| CPU µs/req /read: crate, floor | /incr: crate, floor |")
    print("|---:|---:|---:|---:|---:|")
    for size, runs in table:
        row = [label(size)]
        for route in ROUTES:
            rps = mean(runs, "memcache", route, 0)
            row.append(f"{rps:,.0f} ({rps / mean(runs, 'floor', route, 0):.2f})")
        for route in ROUTES:
            row.append(f"{mean(runs, 'memcache', route, 1):.1f}, "
                       f"{mean(runs, 'floor', route, 1):.1f}")
        print("| " + " | ".join(row) + " |")
    print()
    for route in ROUTES:
        print(f"/{route}: CPU per request grows by {per_kb(table, 'memcache', route):.2f} µs per "
              f"KB (the floor's by {per_kb(table, 'floor', route):.2f}), up to 64 KB")
    if os.environ.get("SVG"):
        chart(os.environ["SVG"], table)


main()
