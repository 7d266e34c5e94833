#!/usr/bin/env python3
"""The man pages as `meson install` installs them: installed (with the shell completions)
into a scratch DESTDIR, every page renders with `man -l` without a groff warning, there
is a page for every subcommand `bokbok --help` lists, and bokbok(1) names each of them.

Usage: man_pages.py BUILD_DIR TOOL
"""
import os
import pathlib
import re
import subprocess
import sys
import tempfile

build, tool = sys.argv[1:3]
failures = []

listed = []
on = False
for line in subprocess.run([tool, "--help"], capture_output=True, text=True,
                           check=True).stdout.splitlines():
    if line.startswith("commands:"):
        on = True
    elif on and not line.strip():
        break
    elif on and (m := re.match(r"  ([a-z][a-z0-9-]*)\s", line)) and m.group(1) != "help":
        listed.append(m.group(1))
if not listed:
    sys.exit("bokbok --help lists no commands")

with tempfile.TemporaryDirectory() as dest:
    r = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", dest,
                        "--tags", "man,completion"], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        sys.exit(f"meson install failed:\n{r.stdout}\n{r.stderr}")
    pages = {p.name: p for p in pathlib.Path(dest).rglob("man1/*.1")}
    completions = [p.name for p in pathlib.Path(dest).rglob("*") if p.is_file() and
                   p.parent.name in ("completions", "site-functions")]
    if sorted(completions) != ["_bokbok", "bokbok"]:
        failures.append(f"installed completions: {sorted(completions)}")
    want = ["bokbok.1"] + [f"bokbok-{c}.1" for c in listed]
    for name in want:
        if name not in pages:
            failures.append(f"no installed page {name} (installed: {sorted(pages)})")
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    rendered = {}
    for name, path in sorted(pages.items()):
        r = subprocess.run(["man", "-l", "-P", "cat", str(path)], capture_output=True,
                           text=True, env=env, timeout=60)
        if r.returncode != 0 or not r.stdout.strip():
            failures.append(f"man -l {name}: exit {r.returncode}: {r.stderr}")
        rendered[name] = re.sub(".\b", "", r.stdout)  # no overstrike (bold, underline)
        w = subprocess.run(["groff", "-man", "-ww", "-z", str(path)], capture_output=True,
                           text=True, timeout=60)
        if w.returncode != 0 or w.stderr:
            failures.append(f"groff warns on {name}: {w.stderr}")
    main = rendered.get("bokbok.1", "")
    for c in listed:
        if not re.search(rf"^\s+{re.escape(c)}\s", main, re.M):
            failures.append(f"bokbok(1) does not list {c}")
        if f"bokbok-{c}(1)" not in main:
            failures.append(f"bokbok(1) does not refer to bokbok-{c}(1)")
        page = rendered.get(f"bokbok-{c}.1", "")
        if f"bokbok {c}" not in page:
            failures.append(f"bokbok-{c}(1) does not show `bokbok {c}` usage")
    if "--trace" not in rendered.get("bokbok-call.1", ""):
        failures.append("bokbok-call(1) does not document --trace")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"ok: {len(pages)} pages")
