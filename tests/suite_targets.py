#!/usr/bin/env python3
"""Prints the ninja targets that the tests of one suite need, a line each, so that a
build folder used for one suite only compiles what that suite runs:

    ninja -C DIR $(python3 tests/suite_targets.py DIR SUITE)

run-all.sh uses it for the TSan build, which runs the concurrency suite alone: building
every test under TSan cost minutes of CI for binaries it never ran. A test's needs come
from meson's own record of it (`depends`: its executable and every program it is given,
such as the demo server and the bokbok tool), so a test added to the suite brings its
targets with it. Exits 1, naming the suite, if no test is in it: an empty list would
otherwise make ninja build everything, silently."""
import json
import os
import subprocess
import sys


def introspect(folder, what):
    out = subprocess.check_output(["meson", "introspect", folder, what])
    return json.loads(out)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: suite_targets.py BUILD_DIR SUITE")
    folder, suite = sys.argv[1], sys.argv[2]
    wanted = set()
    for test in introspect(folder, "--tests"):
        # meson names a suite "project:suite"; accept either spelling.
        if any(s == suite or s.endswith(":" + suite) for s in test["suite"]):
            wanted.update(test["depends"])
    if not wanted:
        sys.exit(f"suite_targets.py: no test in suite {suite!r} of {folder}")
    root = os.path.abspath(folder)
    for target in introspect(folder, "--targets"):
        if target["id"] in wanted:
            for path in target["filename"]:
                print(os.path.relpath(path, root))


if __name__ == "__main__":
    main()
