#!/usr/bin/env python3
"""Fails when the crate's source files import each other in a circle.

Reads every `crate::` and `super::` path in src/ (in `use` lines, braces expanded, and in
code), resolves each to the file that defines the module it names, and looks for strongly
connected groups of files. A folder's face (`mod.rs`) counts as a file of its own, so a
file that imports its siblings through the face, and the face that re-exports them, form a
circle too: inside a folder, import the sibling by file.

    python3 scripts/check_circles.py [SRC]     # default: src
"""
import re
import sys
from pathlib import Path

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "src")


def module_of(path):
    """The module path of a file: src/a/b.rs -> ['a', 'b'], src/a/mod.rs -> ['a']."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


FILES = {tuple(module_of(p)): p for p in SRC.rglob("*.rs")}


def file_for(parts):
    """The file defining the longest module prefix of `parts`."""
    for end in range(len(parts), -1, -1):
        found = FILES.get(tuple(parts[:end]))
        if found is not None:
            return found
    return None


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner = tree[:start], tree[start + 1 : i]
                items, depth2, last = [], 0, 0
                for j, c in enumerate(inner):
                    if c == "{":
                        depth2 += 1
                    elif c == "}":
                        depth2 -= 1
                    elif c == "," and depth2 == 0:
                        items.append(inner[last:j])
                        last = j + 1
                items.append(inner[last:])
                return [p for item in items if item.strip() for p in expand(prefix + item.strip())]
    return [tree]


def paths_in(text):
    text = strip_comments(text)
    found = []
    for tree in re.findall(r"\buse\s+([^;]+);", text):
        found.extend(expand(tree))
    found.extend(re.findall(r"\b(?:crate|super)(?:::\w+)+", text))
    return found


def resolve(path, here):
    """The file a `crate::`/`super::` path points into, from module `here`."""
    parts = [p.strip() for p in re.split(r"::", path) if p.strip()]
    parts = [p.split(" as ")[0].strip() for p in parts]
    if not parts:
        return None
    if parts[0] == "crate":
        return file_for(parts[1:])
    if parts[0] == "self":
        return file_for(list(here) + parts[1:])
    if parts[0] != "super":
        # A `use` of a child module by its bare name (a face's `pub use child::Item`).
        if tuple(list(here) + parts[:1]) in FILES:
            return file_for(list(here) + parts)
        return None
    base = list(here)
    while parts and parts[0] == "super":
        base = base[:-1]
        parts = parts[1:]
    return file_for(base + parts)


def graph():
    edges = {}
    for parts, path in FILES.items():
        text = path.read_text()
        # A file's own unit tests (`mod tests` inline or beside it) are not its imports.
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests\b", text)[0]
        here = list(parts)
        targets = set()
        for used in paths_in(text):
            target = resolve(used, here)
            if target is not None and target != path:
                targets.add(target)
        edges[path] = targets
    return edges


def circles(edges):
    """Tarjan's strongly connected components with more than one file."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    edges = graph()
    found = circles(edges)
    if not found:
        print(f"no import circle among {len(edges)} source files")
        return 0
    for group in found:
        members = set(group)
        print(f"import circle of {len(group)} files:", file=sys.stderr)
        for a in group:
            for b in sorted(edges[a] & members):
                print(f"  {a} -> {b}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
