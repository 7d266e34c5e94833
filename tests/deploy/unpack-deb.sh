#!/usr/bin/env bash
# unpack-deb.sh PACKAGE DESTDIR: unpacks Debian's PACKAGE into DESTDIR/root without
# installing it (no maintainer scripts, no service started), so a test can run its
# programs from there. The .deb comes from the cache that tools/install-deps.sh fills
# ($BOKBOK_DEB_CACHE, default /var/cache/bokbok-test), else from `apt-get download`
# into DESTDIR. Prints the unpacked root; exits non-zero, saying why, when neither works.
set -euo pipefail
pkg=$1
dest=$2
cache=${BOKBOK_DEB_CACHE:-/var/cache/bokbok-test}
root=$dest/root
if [ -f "$dest/.unpacked" ]; then
  echo "$root"
  exit 0
fi
mkdir -p "$dest"
deb=$(ls "$cache/${pkg}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  deb=$(ls "$dest/${pkg}"_*.deb 2>/dev/null | head -n1 || true)
fi
if [ -z "$deb" ]; then
  if ! (cd "$dest" && apt-get download "$pkg") >"$dest/download.log" 2>&1; then
    echo "unpack-deb: cannot get the Debian package $pkg: it is not in $cache (tools/install-deps.sh" \
         "puts it there) and 'apt-get download $pkg' failed:" >&2
    cat "$dest/download.log" >&2
    exit 1
  fi
  deb=$(ls "$dest/${pkg}"_*.deb | head -n1)
fi
rm -rf "$root"
dpkg-deb -x "$deb" "$root"
touch "$dest/.unpacked"
echo "$root"
