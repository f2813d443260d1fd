#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# build-deb.sh [OUT_DIR]: build the Debian package poold from this source
# tree (debian/, debhelper over the CMake build), check it with lintian
# (fails on errors), and put poold_VERSION_ARCH.deb into OUT_DIR (default
# build/).  Installs what it needs with scripts/deps.sh.
#
# dpkg-buildpackage writes its results beside the tree it builds, so it
# builds a copy of the sources in OUT_DIR/deb/ (never the parent of this
# checkout).  Then: apt install ./build/poold_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
# Without root deps.sh can only list what is missing; dpkg-buildpackage
# checks the build dependencies itself.
bash scripts/deps.sh || echo "build-deb.sh: going on; dpkg-buildpackage checks its build dependencies" >&2
out=${1:-build}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$out/deb
rm -rf "$work" "$out"/poold_*.deb
mkdir -p "$work/poold"

# The sources without VCS data or build trees (any directory holding a
# CMakeCache.txt, the build* directories, OUT_DIR itself).
excl=(--exclude-vcs --exclude-tag-all=CMakeCache.txt --exclude='./build*' --exclude='./obj-*')
case $out/ in "$src"/*) excl+=(--exclude="./${out#"$src"/}") ;; esac
tar -C "$src" "${excl[@]}" -cf - . | tar -C "$work/poold" -xf -

echo "== dpkg-buildpackage (log: $work/build.log)"
if ! (cd "$work/poold" && dpkg-buildpackage -b -us -uc -j2) >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  echo "build-deb.sh: dpkg-buildpackage failed (log: $work/build.log)" >&2
  exit 1
fi
debs=("$work"/poold_*.deb)
[ -f "${debs[0]}" ] || { echo "build-deb.sh: no poold_*.deb was built" >&2; exit 1; }
cp "${debs[0]}" "$out/"
deb=$out/$(basename "${debs[0]}")
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb" | awk '{print "  " $1, $6, $7, $8}'

echo "== lintian $(basename "$deb")"
lintian --fail-on error --display-info "$deb" || {
  echo "build-deb.sh: lintian reports errors" >&2
  exit 1
}
echo "== built $deb"
