#!/usr/bin/env python3
"""Builds tests/build/consumer.cpp the two ways another project uses bokbok, and runs it.

  consumer_builds.py subproject --source-root DIR --meson MESON -- CXX...
      A fresh meson project in a temporary directory with the bokbok source tree as
      subprojects/bokbok (a symlink): dependency('bokbok', fallback: 'bokbok') must find
      the library, bokbok's own tests must not be configured (tests=auto in a subproject),
      and only the consumer and the library are built.

  consumer_builds.py pkg-config --build-root DIR --meson MESON --pkg-config PKGCONFIG -- CXX...
      `meson install --destdir` of the already built tree into a temporary directory, then
      CXX -std=c++20 consumer.cpp $(pkg-config --cflags --libs bokbok); and the same with
      -std=c++17 must stop at the headers' #error that asks for C++20.

Exits 0 on success; on failure prints what failed and the command's output, exits 1.
"""
import argparse
import glob
import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
CXX20_ERROR = "bokbok needs C++20"


class Failure(Exception):
    pass


def run(cmd, timeout, env=None, cwd=None, expect_ok=True):
    """Runs cmd (bounded by timeout seconds); returns (returncode, combined output)."""
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    try:
        p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env=env, cwd=cwd, timeout=timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired as e:
        raise Failure(f"timed out after {timeout} s: {cmd}\n{e.output or ''}")
    if expect_ok and p.returncode != 0:
        raise Failure(f"exit status {p.returncode}: {' '.join(str(c) for c in cmd)}\n{p.stdout}")
    return p.returncode, p.stdout


def check_consumer_ran(exe, env=None):
    _, out = run([exe], timeout=30, env=env)
    if "consumer: ok" not in out:
        raise Failure(f"{exe} did not print 'consumer: ok':\n{out}")


def subproject(args, work):
    project = work / "consumer"
    (project / "subprojects").mkdir(parents=True)
    (project / "meson.build").write_text((HERE / "consumer.meson.build").read_text())
    (project / "consumer.cpp").write_text((HERE / "consumer.cpp").read_text())
    (project / "subprojects" / "bokbok").symlink_to(pathlib.Path(args.source_root).resolve())
    build = work / "build"
    env = dict(os.environ, CXX=" ".join(args.cxx))
    run([args.meson, "setup", "--force-fallback-for=bokbok", build, project], timeout=120, env=env)
    _, targets = run([args.meson, "introspect", "--targets", build], timeout=60)
    names = [t["name"] for t in json.loads(targets)]
    tests = sorted(n for n in names if n.endswith("_test"))
    if tests:
        raise Failure("bokbok's tests were configured in a subproject: " + ", ".join(tests))
    if "consumer" not in names:
        raise Failure("no consumer target: " + ", ".join(names))
    run(["ninja", "-C", build, "consumer"], timeout=600)
    check_consumer_ran(build / "consumer")


def pkg_config(args, work):
    destdir = work / "root"
    run([args.meson, "install", "-C", args.build_root, "--no-rebuild", "--quiet",
         "--destdir", destdir], timeout=120)
    pcs = glob.glob(str(destdir / "**" / "bokbok.pc"), recursive=True)
    if len(pcs) != 1:
        raise Failure(f"expected one installed bokbok.pc under {destdir}, found {pcs}")
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]), PKG_CONFIG_SYSROOT_DIR=str(destdir))
    env.pop("PKG_CONFIG_LIBDIR", None)
    _, flags = run([args.pkg_config, "--cflags", "--libs", "bokbok"], timeout=30, env=env)
    flags = flags.split()
    if not any(f.startswith("-I" + str(destdir)) for f in flags):
        raise Failure(f"pkg-config gave no include directory in the installed tree: {flags}")
    source = HERE / "consumer.cpp"
    exe = work / "consumer"
    run(args.cxx + ["-std=c++20", "-o", exe, source] + flags, timeout=300)
    libdirs = [f[2:] for f in flags if f.startswith("-L")]
    check_consumer_ran(exe, env=dict(os.environ, LD_LIBRARY_PATH=":".join(libdirs)))

    # g++ 12's default dialect is C++17: the headers must say what is wrong, first.
    code, out = run(args.cxx + ["-std=c++17", "-fsyntax-only", source] + flags, timeout=120,
                    expect_ok=False)
    if code == 0:
        raise Failure("consumer.cpp compiled with -std=c++17; expected the C++20 #error")
    first_error = next((line for line in out.splitlines() if "error" in line), "")
    if CXX20_ERROR not in first_error:
        raise Failure(f"with -std=c++17 the first error is not the C++20 one ({first_error!r}):\n{out}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["subproject", "pkg-config"])
    parser.add_argument("--source-root")
    parser.add_argument("--build-root")
    parser.add_argument("--meson", required=True)
    parser.add_argument("--pkg-config", default="pkg-config")
    parser.add_argument("cxx", nargs="+", help="the C++ compiler command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bokbok-consumer-") as tmp:
        try:
            (subproject if args.mode == "subproject" else pkg_config)(args, pathlib.Path(tmp))
        except Failure as e:
            print(f"FAILED ({args.mode}): {e}", flush=True)
            return 1
    print(f"{args.mode}: the consumer built and ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
