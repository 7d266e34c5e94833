#!/usr/bin/env bash
# Installs what building and testing bokbok needs on Debian 12, from Debian's packages.
# Used by the README's two commands and by CI. Needs root (or sudo).
set -euo pipefail
packages=(
  g++ meson ninja-build pkg-config cmake          # build
  liburing-dev libsodium-dev libboost1.81-dev      # libraries
  doctest-dev                                      # tests
  clang libclang-rt-14-dev                         # fuzzers (libFuzzer) and sanitizers
)
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
