#!/usr/bin/env bash
# Installs what building and testing bokbok needs on Debian 12, from Debian's packages.
# Used by the README's two commands and by CI. Needs root (or sudo).
set -euo pipefail
packages=(
  g++ meson ninja-build pkg-config cmake          # build
  liburing-dev libsodium-dev libboost1.81-dev      # libraries
  doctest-dev                                      # tests
  clang libclang-rt-14-dev                         # fuzzers (libFuzzer) and sanitizers
  strace                                           # tests/syscalls: syscalls per round trip
  man-db groff-base zsh                            # tests: man pages rendered, zsh completion parsed
  systemd                                          # deploy tests: systemd-socket-activate, systemd-analyze
  haproxy                                          # haproxy_test: PROXY protocol and tcp-check behind real HAProxy
  python3-yaml                                     # kubernetes-manifests: examples/kubernetes/ parsed
  openssh-client openssh-server                    # ssh: addresses, tested against sshd on loopback
  libwrap0 libevent-2.1-7 libbsd0 libtirpc3 libselinux1  # what the unpacked openbsd-inetd and xinetd load
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
  # The tests run their own sshd on a loopback port; installing openssh-server must not
  # start the system's (policy-rc.d 101 = "do not start services"), unless the machine
  # already has a policy of its own.
  policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
  fi
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    { [ -z "$own_policy" ] || $sudo rm -f "$policy"; exit 1; }
  [ -z "$own_policy" ] || $sudo rm -f "$policy"
fi

# Deploy tests (tests/deploy): openbsd-inetd and xinetd run from their .deb files unpacked
# into the build tree, never installed (no service started). Fetch the .debs once into a
# cache the tests read; a test without them tries `apt-get download` itself, and fails
# saying why when that cannot work either.
deb_cache=/var/cache/bokbok-test
for p in openbsd-inetd xinetd; do
  if ! ls "$deb_cache/${p}"_*.deb >/dev/null 2>&1; then
    echo "install-deps: downloading ${p}'s .deb into $deb_cache"
    $sudo mkdir -p "$deb_cache"
    get() { (cd "$deb_cache" && $sudo apt-get -q -o APT::Sandbox::User=root download "$p"); }
    get || { $sudo apt-get update -q && get; } ||
      echo "install-deps: WARNING: cannot download $p; the deploy tests will fail" >&2
  fi
done
