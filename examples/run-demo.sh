#!/usr/bin/env bash
# The README's demo command: installs what is needed, builds, and runs the demo client,
# which spawns bokbok-demo-server as its child and calls it both ways.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
[ -d build ] || meson setup build
ninja -C build
./build/examples/bokbok-demo-client
