"""Fails when a resolved dependency declares a newer rust-version than this crate.

Only one toolchain can be installed here, so the declared floor is checked against what
the dependency tree requires rather than by compiling with that older toolchain.
Reads `cargo metadata` JSON on stdin.
"""
import json
import sys


def version(text):
    return tuple(int(part) for part in text.split("."))


meta = json.load(sys.stdin)
root = next(p for p in meta["packages"] if p["id"] == meta["resolve"]["root"])
ours = version(root["rust_version"])
normal = {d["name"] for d in root["dependencies"] if d["kind"] is None}
used = {n["id"] for n in meta["resolve"]["nodes"]}
newer = [
    f'{p["name"]} {p["version"]} needs {p["rust_version"]}'
    for p in meta["packages"]
    if p["id"] in used and p.get("rust_version") and version(p["rust_version"]) > ours
]
if newer:
    sys.exit(f"rust-version {root['rust_version']} is too low:\n  " + "\n  ".join(newer))
print(f"rust-version {root['rust_version']}: every dependency fits ({len(used)} crates, {len(normal)} direct)")
