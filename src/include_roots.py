#!/usr/bin/env python3
"""Makes each layer's include root: OUT/<layer>/ holds one symlink per layer it may
include (itself and the layers below it), each pointing at that layer's folder in SRC.

    include_roots.py OUT SRC base io wire crypto transport rpc api

Layers are given lowest first. A layer compiled with -IOUT/<layer> (and no -Isrc) then
finds "io/loop.hpp" but not "rpc/connection_impl.hpp" from a layer below rpc. Run by
src/meson.build at configure time; it rebuilds OUT from scratch, so a layer dropped from
the list loses its links."""
import os
import shutil
import sys


def main(out, src, layers):
    shutil.rmtree(out, ignore_errors=True)
    for i, layer in enumerate(layers):
        root = os.path.join(out, layer)
        os.makedirs(root)
        for allowed in layers[: i + 1]:
            os.symlink(os.path.join(src, allowed), os.path.join(root, allowed))


if __name__ == '__main__':
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3:])
