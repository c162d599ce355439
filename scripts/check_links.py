"""Checks that every relative link in the README and docs/*.md names a file that exists
and, with an anchor, a heading in it (GitHub's anchors: lower case, punctuation dropped,
spaces as dashes). Prints each broken link; exits 1 if there is one."""
import glob
import os
import re
import sys


def anchors(path):
    found = set()
    for line in open(path):
        m = re.match(r"^#+ (.*)$", line)
        if m:
            found.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return found


broken = []
for page in ["README.md", "CHANGELOG.md"] + sorted(glob.glob("docs/*.md")):
    text = re.sub(r"```.*?```", "", open(page).read(), flags=re.S)
    for m in re.finditer(r"\]\(([^)\s#]*)(#[\w\-]+)?\)", text):
        target, anchor = m.group(1), m.group(2)
        if re.match(r"[a-z]+:", target):
            continue
        path = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else page
        if not os.path.exists(path):
            broken.append(f"{page}: {m.group(0)}: no such file")
        elif anchor and path.endswith(".md") and anchor[1:] not in anchors(path):
            broken.append(f"{page}: {m.group(0)}: no such heading")
print("\n".join(broken) or "every relative link resolves")
sys.exit(1 if broken else 0)
