"""Checks that every relative link in the README and docs/*.md names a file that exists
and, with an anchor, a heading in it (GitHub's anchors: lower case, punctuation dropped,
spaces as dashes), and that every code fence is on a line of its own and closed (a fence
with text after it does not close, and the rest of the page shows as code). Prints each
broken link or fence; exits 1 if there is one."""
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


def fences(page):
    """What is wrong with the code fences of `page`."""
    wrong, opened = [], None
    for number, line in enumerate(open(page), 1):
        if "```" not in line:
            continue
        if not line.lstrip().startswith("```"):
            wrong.append(f"{page}:{number}: a code fence not at the start of its line")
        elif opened is None:
            opened = number
        elif line.strip() != "```":
            wrong.append(f"{page}:{number}: text after the fence that closes line {opened}'s")
            opened = None
        else:
            opened = None
    if opened is not None:
        wrong.append(f"{page}:{opened}: a code fence never closed")
    return wrong


broken = []
for page in ["README.md", "CHANGELOG.md"] + sorted(glob.glob("docs/*.md")):
    broken += fences(page)
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
