#!/usr/bin/env python3
"""Compiles every C++ snippet of README.md against the built library, and runs those
marked runnable, so the README cannot drift from the code.

Every ```cpp block must follow a marker, an HTML comment on the line before it (blank
lines between are allowed), saying how the fragment becomes a program:

  <!-- snippet: file -->        declarations at file scope: compiled and linked, not run
  <!-- snippet: body -->        statements: the body of a function; compiled and linked
  <!-- snippet: body; given: bokbok::connection& conn, bokbok::options& opts -->
                                the same, the function taking those parameters (for the
                                names the fragment uses but does not declare)
  <!-- snippet: run -->         statements: the body of main(), compiled, linked and run:
                                it must exit with status 0 within 30 s, in an empty
                                directory, with the directories of bokbok-demo-server and
                                bokbok first on PATH (so `exec:bokbok-demo-server --stdio`
                                works)
  <!-- snippet: run; fd 3,4: demo server -->
                                the same, with fd 3 reading from and fd 4 writing to a
                                `bokbok-demo-server --stdio` (so `fd:3,4` works)

Every snippet starts from this prelude: <bokbok/bokbok.hpp> (it includes the other
public headers) and the standard headers in PRELUDE below. A snippet's own `#include`
lines are moved to file scope. `#line` directives make the compiler's messages name
README.md lines; a failure is reported as "README.md:LINE: ...", LINE being the fence.

Usage: readme_snippets.py --readme README.md --include DIR --library LIBBOKBOK.so
         --demo-server PATH --tool PATH [--extra FLAG]... -- CXX...
"""
import argparse
import concurrent.futures
import fcntl
import os
import pathlib
import re
import subprocess
import sys
import tempfile

PRELUDE = """#include <any>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <bokbok/bokbok.hpp>
"""

MARKER = re.compile(r"^<!--\s*snippet:\s*(.*?)\s*-->\s*$")
FENCE_OPEN = re.compile(r"^```\s*(\S*)\s*$")
RUN_TIMEOUT = 30
COMPILE_TIMEOUT = 300


class Snippet:
    def __init__(self, line, code, kind, given, demo_fds):
        self.line = line          # the README line of the opening fence
        self.code = code          # the lines between the fences
        self.kind = kind          # file, body or run
        self.given = given        # the parameters of a body
        self.demo_fds = demo_fds  # run with fd 3,4 connected to a demo server

    @property
    def where(self):
        return f"README.md:{self.line}"


def parse_marker(text, where):
    parts = [p.strip() for p in text.split(";")]
    kind, given, demo_fds = parts[0], "", False
    if kind not in ("file", "body", "run"):
        raise ValueError(f"{where}: unknown snippet kind {kind!r} (file, body or run)")
    for part in parts[1:]:
        if part.startswith("given:") and kind == "body":
            given = part[len("given:"):].strip()
        elif re.fullmatch(r"fd 3,4:\s*demo server", part) and kind == "run":
            demo_fds = True
        else:
            raise ValueError(f"{where}: unknown snippet option {part!r} for kind {kind}")
    return kind, given, demo_fds


def read_snippets(readme):
    """The C++ blocks of the README, each with its marker; ValueError names a bad one."""
    lines = pathlib.Path(readme).read_text().splitlines()
    snippets, errors = [], []
    i = 0
    while i < len(lines):
        m = FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        end = start + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        if lang in ("cpp", "c++", "cxx"):
            where = f"README.md:{start + 1}"
            before = start - 1
            while before >= 0 and not lines[before].strip():
                before -= 1
            marker = MARKER.match(lines[before]) if before >= 0 else None
            if not marker:
                errors.append(f"{where}: a C++ block without a <!-- snippet: ... --> marker "
                              "on the line before it (see tests/docs/readme_snippets.py)")
            else:
                try:
                    kind, given, demo_fds = parse_marker(marker.group(1), where)
                    snippets.append(Snippet(start + 1, lines[start + 1:end], kind, given, demo_fds))
                except ValueError as e:
                    errors.append(str(e))
        i = end + 1
    return snippets, errors


def wrap(snippet, readme):
    """One snippet as C++ text: hoisted includes, then the fragment in its namespace."""
    includes, body = [], []
    for text in snippet.code:
        if text.lstrip().startswith("#include"):
            includes.append(text)
            body.append("")  # keeps the #line numbering
        else:
            body.append(text)
    first = f'#line {snippet.line + 1} "{readme}"'
    name = f"snippet_L{snippet.line}"
    if snippet.kind == "file":
        code = [f"namespace {name} {{", first] + body + ["}"]
    elif snippet.kind == "body":
        code = [f"namespace {name} {{", f"[[maybe_unused]] void body({snippet.given}) {{", first]
        code += body + ["}", "}"]
    else:
        code = ["int main() {", first] + body + ["  return 0;", "}"]
    return includes, code


def program(snippets, readme):
    includes, code = [], []
    for s in snippets:
        inc, c = wrap(s, readme)
        includes += inc
        code += c
    if all(s.kind != "run" for s in snippets):
        code.append("int main() { return 0; }")
    return PRELUDE + "\n".join(includes) + "\n\n" + "\n".join(code) + "\n"


def compile_program(name, snippets, args, work):
    """Compiles and links one program; returns (exe, None) or (None, compiler output)."""
    source = work / (name + ".cpp")
    exe = work / name
    source.write_text(program(snippets, args.readme))
    library = pathlib.Path(args.library).resolve()
    cmd = args.cxx + ["-std=c++20", "-O0", "-I", args.include, "-o", str(exe), str(source),
                      str(library), "-Wl,-rpath," + str(library.parent), "-pthread"] + args.extra
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace", timeout=COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"compiling timed out after {COMPILE_TIMEOUT} s"
    if p.returncode != 0:
        return None, " ".join(cmd) + "\n" + p.stdout
    return exe, None


def blame(snippets, output, readme):
    """The snippets the compiler's messages point into (README lines), else all of them."""
    lines = {int(n) for n in re.findall(re.escape(readme) + r":(\d+)", output)}
    lines |= {int(n) for n in re.findall(r"snippet_L(\d+)", output)}
    hit = [s for s in snippets
           if s.line in lines or any(s.line < n <= s.line + len(s.code) for n in lines)]
    return hit or snippets


def run_program(snippet, exe, args, work):
    """Runs a runnable snippet; returns None or what went wrong."""
    env = dict(os.environ)
    dirs = [os.path.dirname(os.path.abspath(p)) for p in (args.demo_server, args.tool)]
    env["PATH"] = os.pathsep.join(dirs + [env.get("PATH", "")])
    cwd = tempfile.mkdtemp(dir=work)
    server = None
    to_server = from_server = None
    try:
        if snippet.demo_fds:
            to_server = os.pipe()
            from_server = os.pipe()
            server = subprocess.Popen([args.demo_server, "--stdio"], stdin=to_server[0],
                                      stdout=from_server[1])
            os.close(to_server[0])
            os.close(from_server[1])
            read_fd, write_fd = from_server[0], to_server[1]

            def place_fds():  # in the child: fd 3 reads the server, fd 4 writes to it
                high_r = fcntl.fcntl(read_fd, fcntl.F_DUPFD_CLOEXEC, 10)
                high_w = fcntl.fcntl(write_fd, fcntl.F_DUPFD_CLOEXEC, 10)
                os.dup2(high_r, 3)  # dup2 to another number: 3 and 4 are inherited
                os.dup2(high_w, 4)
        p = subprocess.run([str(exe)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, errors="replace",
                           timeout=RUN_TIMEOUT,
                           preexec_fn=place_fds if snippet.demo_fds else None,
                           close_fds=not snippet.demo_fds)
        if p.returncode != 0:
            return f"exited with status {p.returncode}:\n{p.stdout}"
        return None
    except subprocess.TimeoutExpired as e:
        return f"still running after {RUN_TIMEOUT} s:\n{e.output or ''}"
    finally:
        for pair in (to_server, from_server):
            if pair:
                for fd in pair:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        if server:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--readme", required=True)
    parser.add_argument("--include", required=True)
    parser.add_argument("--library", required=True, help="the built shared libbokbok")
    parser.add_argument("--demo-server", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--extra", action="append", default=[],
                        help="one more compile and link flag (the build's sanitizers)")
    parser.add_argument("cxx", nargs="+", help="the C++ compiler command")
    args = parser.parse_args()
    args.readme = str(pathlib.Path(args.readme).resolve())

    snippets, failures = read_snippets(args.readme)
    if not snippets and not failures:
        failures.append("README.md: no C++ snippet found")
    runnable = [s for s in snippets if s.kind == "run"]
    others = [s for s in snippets if s.kind != "run"]
    print(f"{len(snippets)} C++ snippets: {len(runnable)} to run, {len(others)} to compile",
          flush=True)

    with tempfile.TemporaryDirectory(prefix="bokbok-readme-") as tmp:
        work = pathlib.Path(tmp)
        jobs = [("compiled", others)] if others else []
        jobs += [(f"run_L{s.line}", [s]) for s in runnable]
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            built = list(pool.map(lambda job: compile_program(job[0], job[1], args, work), jobs))
        for (name, group), (exe, output) in zip(jobs, built):
            if output is not None:
                for s in blame(group, output, args.readme):
                    failures.append(f"{s.where}: the snippet does not compile or link")
                failures.append(output)
            elif group and group[0].kind == "run":
                problem = run_program(group[0], exe, args, work)
                if problem:
                    failures.append(f"{group[0].where}: the snippet {problem}")
                else:
                    print(f"{group[0].where}: ran", flush=True)
    if failures:
        print("\n".join(failures))
        return 1
    print("every README.md C++ snippet compiles; the runnable ones ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
