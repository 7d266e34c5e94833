#!/usr/bin/env python3
"""Checks that the build enforces the layers (src/README.md): base, io, wire, crypto,
transport, rpc, api, lowest first; a layer may use itself and the layers below it.

  check_layers.py includes --build-root DIR --source-root DIR
      For each layer but the top one, takes the compile command meson uses for one of
      its sources (compile_commands.json) and compiles a probe file with it
      (-fsyntax-only): the probe including a header of the layer just above must fail
      for want of that header; the same probe including a header of the layer itself and
      one of base must compile (so the failure is the layering, not the command). Then
      every header of every layer must compile alone with its layer's command, so a
      header that no source of its layer includes cannot include upward either.

  check_layers.py links --nm NM --cxxfilt CXXFILT ARCHIVE...
      The layer archives, lowest first: every bokbok symbol a layer's objects use must be
      defined in that layer or one below it, never only in a layer above.

  check_layers.py exports --nm NM --cxxfilt CXXFILT --include-dir DIR LIBRARY
      libbokbok.so exports only the public API: every dynamic symbol it defines is in
      namespace bokbok (or the vtable or typeinfo of a bokbok class) and none is internal
      (bokbok::detail, bokbok::io, ..., a class's hidden impl); and the typeinfo of
      every error class DIR/bokbok/*.hpp marks BOKBOK_API is exported.

Exits 0 on success; on failure prints what failed and exits 1.
"""
import argparse
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

LAYERS = ['base', 'io', 'wire', 'crypto', 'transport', 'rpc', 'api']
INTERNAL_NAMESPACES = ['detail'] + LAYERS


def fail(message):
    print('FAIL: ' + message, flush=True)
    sys.exit(1)


def run(cmd, timeout=120):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors='replace', timeout=timeout)
    return p.returncode, p.stdout


def layer_command(commands, source_root, layer):
    """The compile command (a list) meson uses for a source in src/<layer>/, with the
    source, the output and the dependency-file options taken out."""
    folder = (source_root / 'src' / layer).resolve()
    for entry in commands:
        src = pathlib.Path(entry['directory'], entry['file']).resolve()
        if src.parent != folder or src.suffix != '.cpp':
            continue
        args = entry['arguments'] if 'arguments' in entry else shlex.split(entry['command'])
        out, skip = [], False
        for a in args:
            if skip:
                skip = False
                continue
            if a in ('-o', '-MQ', '-MF', '-MT'):
                skip = True
                continue
            if a in ('-c', '-MD', '-MMD') or a == entry['file'] or \
               pathlib.Path(entry['directory'], a).resolve() == src:
                continue
            out.append(a)
        # ccache, if meson put it in front, would only get in the way of a syntax check.
        if out and os.path.basename(out[0]) == 'ccache':
            out = out[1:]
        return out, entry['directory']
    fail('no compile command for a source in src/%s/ in compile_commands.json' % layer)


def a_header(source_root, layer):
    """The smallest header of a layer (quick to compile), as it is included."""
    headers = sorted((source_root / 'src' / layer).glob('*.hpp'), key=lambda p: p.stat().st_size)
    if not headers:
        fail('no header in src/%s/' % layer)
    return '%s/%s' % (layer, headers[0].name)


def run_in(cmd, cwd, timeout=120):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors='replace', timeout=timeout)
    return p.returncode, p.stdout


def probe(cmd, cwd, includes, workdir):
    """Compiles a probe including `includes` with `cmd`, from meson's directory `cwd`."""
    source = pathlib.Path(workdir, 'probe.cpp')
    source.write_text(''.join('#include "%s"\n' % h for h in includes))
    return run_in(cmd + ['-fdiagnostics-color=never', '-fsyntax-only', str(source)], cwd)


def check_includes(build_root, source_root):
    commands = json.loads((build_root / 'compile_commands.json').read_text())
    with tempfile.TemporaryDirectory() as workdir:
        for below, above in zip(LAYERS, LAYERS[1:]):
            cmd, cwd = layer_command(commands, source_root, below)
            own = [a_header(source_root, below), a_header(source_root, 'base')]
            code, output = probe(cmd, cwd, own, workdir)
            if code != 0:
                fail('%s: a probe including %s does not compile with the layer\'s own '
                     'command:\n%s' % (below, ', '.join(own), output))
            upward = a_header(source_root, above)
            code, output = probe(cmd, cwd, [upward], workdir)
            if code == 0:
                fail('%s: a probe including %s (the layer above) compiles: the layer can '
                     'see upward' % (below, upward))
            if upward not in output or 'No such file' not in output:
                fail('%s: including %s failed, but not for want of the header:\n%s'
                     % (below, upward, output))
            print('ok: %s cannot include %s' % (below, upward), flush=True)
        # A header no source of its layer includes would escape the probes above: every
        # header compiles alone with its own layer's command.
        for layer in LAYERS:
            cmd, cwd = layer_command(commands, source_root, layer)
            for header in sorted((source_root / 'src' / layer).glob('*.hpp')):
                included = '%s/%s' % (layer, header.name)
                code, output = probe(cmd, cwd, [included], workdir)
                if code != 0:
                    fail('%s does not compile alone with its layer\'s command (an include '
                         'of a layer above, or a missing include):\n%s' % (included, output))
            print('ok: every header of %s compiles with only %s\'s include paths'
                  % (layer, layer), flush=True)


def nm_symbols(nm, path, args):
    code, output = run([nm] + args + [str(path)])
    if code != 0:
        fail('%s %s failed:\n%s' % (nm, path, output))
    return output.splitlines()


def check_links(nm, cxxfilt, archives):
    if len(archives) != len(LAYERS):
        fail('expected %d archives (%s), got %d' % (len(LAYERS), ', '.join(LAYERS), len(archives)))
    defined, used = [], []
    for archive in archives:
        d, u = set(), set()
        for line in nm_symbols(nm, archive, ['--format=posix']):
            fields = line.split()
            if len(fields) < 2 or fields[0].endswith(':'):
                continue
            name, kind = fields[0], fields[1]
            if kind == 'U':
                u.add(name)
            elif kind not in ('w', 'v'):
                d.add(name)
        defined.append(d)
        used.append(u)
    problems = []
    for i, layer in enumerate(LAYERS):
        below = set().union(*defined[:i + 1])
        for name in sorted(used[i] - below):
            for j in range(i + 1, len(LAYERS)):
                if name in defined[j]:
                    problems.append((layer, name, LAYERS[j]))
    if problems:
        demangled = run([cxxfilt] + [name for _, name, _ in problems])[1].splitlines()
        fail('upward references between layer archives:\n' + '\n'.join(
            '  %s uses %s, defined in %s above it' % (layer, d, above)
            for (layer, _, above), d in zip(problems, demangled)))
    print('ok: no layer archive uses a symbol defined only above it', flush=True)


PUBLIC = re.compile(r'^(?:(?:typeinfo name for|typeinfo for|vtable for|non-virtual thunk to|'
                    r'virtual thunk to) )?bokbok::(\w+)')


def check_exports(nm, cxxfilt, library, include_dir):
    lines = nm_symbols(nm, library, ['-D', '--defined-only', '--format=posix'])
    names = [l.split()[0] for l in lines if len(l.split()) >= 2]
    code, output = run([cxxfilt] + names)
    if code != 0:
        fail('c++filt failed:\n' + output)
    bad, public = [], 0
    for mangled, name in zip(names, output.splitlines()):
        m = PUBLIC.match(name)
        scope = name.split('(')[0]
        if not m or m.group(1) in INTERNAL_NAMESPACES or '::impl::' in scope or \
           any('::%s::' % ns in scope for ns in INTERNAL_NAMESPACES):
            bad.append(name)
        else:
            public += 1
    if bad:
        fail('%s exports %d symbols that are not the public API, e.g.:\n  %s'
             % (library, len(bad), '\n  '.join(bad[:40])))
    if public == 0:
        fail('%s exports nothing of bokbok' % library)
    # The error types are thrown out of the library: their typeinfo must be exported, or
    # an application could not catch them by type.
    exported = set(output.splitlines())
    errors = set()
    for header in pathlib.Path(include_dir, 'bokbok').glob('*.hpp'):
        errors.update(re.findall(r'^class BOKBOK_API (\w+) : public', header.read_text(), re.M))
    if 'error' not in errors or 'transport_error' not in errors:
        fail('no error classes marked BOKBOK_API found in %s/bokbok' % include_dir)
    missing = sorted(e for e in errors if 'typeinfo for bokbok::' + e not in exported)
    if missing:
        fail('%s does not export the typeinfo of %s' % (library, ', '.join(missing)))
    print('ok: %s exports %d symbols, all public bokbok API' % (library, public), flush=True)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest='check', required=True)
    p = sub.add_parser('includes')
    p.add_argument('--build-root', required=True, type=pathlib.Path)
    p.add_argument('--source-root', required=True, type=pathlib.Path)
    p = sub.add_parser('links')
    p.add_argument('--nm', required=True)
    p.add_argument('--cxxfilt', required=True)
    p.add_argument('archives', nargs='+')
    p = sub.add_parser('exports')
    p.add_argument('--nm', required=True)
    p.add_argument('--cxxfilt', required=True)
    p.add_argument('--include-dir', required=True)
    p.add_argument('library')
    a = parser.parse_args()
    if a.check == 'includes':
        check_includes(a.build_root, a.source_root)
    elif a.check == 'links':
        check_links(a.nm, a.cxxfilt, a.archives)
    else:
        check_exports(a.nm, a.cxxfilt, a.library, a.include_dir)


if __name__ == '__main__':
    main()
