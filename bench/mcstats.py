"""Prints memcached's compare-and-swap counters: `cas_hits cas_badval` (swaps that landed,
swaps refused because the item changed since it was read).

Usage: python3 bench/mcstats.py PORT
"""
import socket
import sys

with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as s:
    s.sendall(b"stats\r\n")
    reply = b""
    while not reply.endswith(b"END\r\n"):
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("memcached closed the connection before END")
        reply += chunk
stats = dict(line.split()[1:3] for line in reply.decode().splitlines() if line.startswith("STAT "))
print(stats["cas_hits"], stats["cas_badval"])
