"""Mints session cookies: GET BASE/login N times, write each Set-Cookie's name=value.

Usage: python3 bench/mint.py BASE_URL N OUT_FILE. A server that sets no cookie (bare
actix) gets one placeholder line, so every server is sent a Cookie header alike.
"""
import http.client
import sys
from urllib.parse import urlsplit

base, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host = urlsplit(base)
conn = http.client.HTTPConnection(host.hostname, host.port)
cookies = []
for _ in range(count):
    conn.request("GET", "/login")
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"/login answered {response.status}")
    header = response.getheader("Set-Cookie")
    if header is None:
        cookies = ["id=none"]
        break
    cookies.append(header.split(";", 1)[0])
with open(out, "w") as f:
    f.write("\n".join(cookies) + "\n")
