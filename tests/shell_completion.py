#!/usr/bin/env python3
"""The shell completions (tools/completions) in real shells, against the real tool:
bokbok.bash passes `bash -n`, and sourced in a bash, its completion function fills
COMPREPLY with a subcommand for a prefix, with options for an option prefix, with
nothing for a first FIELD when the server cannot be listed, and stops offering
`bokbok call` options after the first FIELD. _bokbok passes `zsh -n` where zsh exists.

Usage: shell_completion.py SOURCE_ROOT TOOL
"""
import shutil
import subprocess
import sys

root, tool = sys.argv[1:3]
bash_file = f"{root}/tools/completions/bokbok.bash"
failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def complete(*words):
    """COMPREPLY, sorted, for the words typed so far (the last one is being completed)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in (tool,) + words)
    script = (f"source '{bash_file}' || exit 9\n"
              f"COMP_WORDS=({quoted}); COMP_CWORD={len(words)}\n"
              '_bokbok || exit 8\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0 or r.stderr:
        failures.append(f"completing {words!r}: exit {r.returncode}, stderr {r.stderr!r}")
    return sorted(w for w in r.stdout.split("\n") if w)


r = subprocess.run(["bash", "-n", bash_file], capture_output=True, text=True)
check("bash -n", (r.returncode, r.stderr), (0, ""))

check("a subcommand", complete("ca"), ["call"])
check("subcommands by prefix", complete("b"), ["bench", "bridge"])
check("help COMMAND", complete("help", "k"), ["keygen"])
check("call options by prefix", complete("call", "--t"), ["--timeout", "--trace"])
check("call options after the address", complete("call", "tcp:127.0.0.1:1", "--j"), ["--json"])
check("call options before the address", complete("call", "--j"), ["--json"])
check("bridge options", complete("bridge", "--us"), ["--user", "--users"])
check("no option values", complete("call", "--timeout", ""), [])
# A first FIELD: method names from `bokbok list ADDRESS`; a port nobody listens on
# (or a tool without `list`) gives none, quietly.
check("methods of an unreachable server", complete("call", "tcp:127.0.0.1:1", ""), [])
check("no options after the first FIELD", complete("call", "tcp:127.0.0.1:1", "echo", "--"), [])

zsh = shutil.which("zsh")
if zsh:
    r = subprocess.run([zsh, "-n", f"{root}/tools/completions/_bokbok"], capture_output=True,
                       text=True)
    check("zsh -n", (r.returncode, r.stderr), (0, ""))

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("ok")
