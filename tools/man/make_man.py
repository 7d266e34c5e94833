#!/usr/bin/env python3
"""Writes the man page of `bokbok` or of one of its subcommands, from the tool's own help
(`bokbok --help`, `bokbok help COMMAND`), so the pages say what the built tool says.

  make_man.py TOOL VERSION OUTPUT            bokbok(1): the command list, with SEE ALSO
  make_man.py TOOL VERSION OUTPUT COMMAND    bokbok-COMMAND(1)

The help text goes in as it is printed (no fill, no adjust), under NAME (from the
command's summary line in `bokbok --help`), SYNOPSIS (its usage lines) and DESCRIPTION
(the rest); roff's special characters are escaped.
"""
import re
import subprocess
import sys


def run(tool, *args):
    return subprocess.run([tool, *args], check=True, capture_output=True, text=True).stdout


def commands(main_help):
    """(name, summary) for each line of the "commands:" section."""
    out, on = [], False
    for line in main_help.splitlines():
        if line.startswith("commands:"):
            on = True
        elif on and not line.strip():
            break
        elif on:
            m = re.match(r"  ([a-z][a-z0-9-]*)\s+(.*)", line)
            if m:
                out.append((m.group(1), m.group(2)))
    return out


def roff_line(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def page(name, section_title, version, summary, help_text, see_also):
    lines = help_text.rstrip("\n").splitlines()
    usage = []
    while lines and (lines[0].startswith("usage:") or (usage and lines[0].startswith("  "))):
        usage.append(lines.pop(0).replace("usage: ", "", 1).strip())
    while lines and not lines[0].strip():
        lines.pop(0)
    out = [
        f'.TH {name.upper()} 1 "" "bokbok {version}" "{section_title}"',
        ".SH NAME",
        f"{roff_line(name)} \\- {roff_line(summary)}",
        ".SH SYNOPSIS",
        ".nf",
        *[roff_line(u) for u in usage],
        ".fi",
        ".SH DESCRIPTION",
        ".nf",
        ".ad l",
        *[roff_line(l) for l in lines],
        ".fi",
    ]
    if see_also:
        out += [".SH SEE ALSO", ",\n".join(f".BR {roff_line(n)} (1)" for n in see_also)]
    return "\n".join(out) + "\n"


def main():
    tool, version, output = sys.argv[1:4]
    command = sys.argv[4] if len(sys.argv) > 4 else None
    main_help = run(tool, "--help")
    listed = commands(main_help)
    if command is None:
        text = page("bokbok", "bokbok", version, "secure, symmetric RPC between processes",
                    main_help, [f"bokbok-{n}" for n, _ in listed if n != "help"])
    else:
        summary = dict(listed).get(command)
        if summary is None:
            sys.exit(f"make_man.py: `bokbok --help` lists no command {command!r}")
        text = page(f"bokbok-{command}", "bokbok", version, summary,
                    run(tool, "help", command), ["bokbok"])
    with open(output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
