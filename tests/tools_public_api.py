#!/usr/bin/env python3
"""Checks that the `bokbok` tool is written against the public API: no file in tools/
includes an internal header of the library (one under src/), so the tool is what any
user could build from include/bokbok/. The one exception is the raw baseline of
`bokbok bench` (tools/bench_raw.cpp), which may use the io layer (src/io/) it measures
bokbok against.

Usage: tools_public_api.py SOURCE_ROOT. Prints every offending line and exits 1 if there
is one; exits 0 otherwise.
"""
import pathlib
import re
import sys

# File name -> the src/ folders it may include from.
EXCEPTIONS = {"bench_raw.cpp": {"io"}}

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')


def offences(root: pathlib.Path):
    tools, src = root / "tools", root / "src"
    files = sorted(p for p in tools.iterdir() if p.suffix in (".cpp", ".hpp", ".h"))
    if not files:
        yield f"{tools}: no sources found (wrong SOURCE_ROOT?)"
    for path in files:
        allowed = EXCEPTIONS.get(path.name, set())
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            header = m.group(1)
            if (tools / header).is_file():
                continue  # the tool's own header
            if (src / header).is_file() and header.split("/")[0] not in allowed:
                yield (f"tools/{path.name}:{number}: includes the internal header "
                       f"{header} (src/{header}); use the public API (include/bokbok/)")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    bad = list(offences(pathlib.Path(sys.argv[1])))
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
