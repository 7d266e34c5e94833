#!/usr/bin/env python3
"""Prints, for each build folder given, the tests that did not pass in its last
`meson test` run and the lines of their output that say why (doctest's ERROR lines and
what follows them, sanitizer reports, or the log's last lines). run-all.sh calls it at
the end, so that the last lines of a long CI log name what failed."""
import json
import os
import sys

WHY = ("ERROR", "error:", "values:", "Sanitizer", "TIMEOUT", "terminate", "Assertion")


def why(stdout):
    lines = stdout.splitlines()
    picked = [l for l in lines if any(w in l for w in WHY)]
    return (picked or lines)[-12:]


for folder in sys.argv[1:]:
    log = os.path.join(folder, "meson-logs", "testlog.json")
    if not os.path.exists(log):
        continue
    with open(log) as f:
        for line in f:
            t = json.loads(line)
            if t.get("result") in ("OK", "SKIP", "EXPECTEDFAIL"):
                continue
            print(f"--- {folder}: {t['name']}: {t['result']} ({t.get('duration', 0):.1f} s)")
            for l in why(t.get("stdout") or ""):
                print("    " + l[:300])
