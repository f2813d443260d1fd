#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what poold needs to build and test, from Debian's archive.
# Root runs apt-get; anyone else is told the command to run.
set -euo pipefail
PKGS=(build-essential cmake pkg-config libevent-dev libcmocka-dev libinih-dev
      libsystemd-dev libbenchmark-dev systemd procps util-linux iproute2 passwd curl clang-format
      prometheus python3 pandoc groff-base dpkg-dev debhelper lintian
      sqlite3 redis-server redis-tools libpython3.11-testsuite time
      libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0 clang valgrind libboost-dev libzmq3-dev)
# prometheus: for promtool, which the tests run on the metrics output
# (`promtool check metrics`); python3: the tests check poolctl's --json
# with `python3 -m json.tool`; pandoc and groff-base: the man pages;
# dpkg-dev, debhelper, lintian: the Debian package and its test;
# sqlite3, redis-server, redis-tools, libpython3.11-testsuite: programs the
# preload library is tested on (test_preload); time (/usr/bin/time -v) and
# libjemalloc2, libtcmalloc-minimal4, libmimalloc2.0: the allocators
# bench/preload.sh compares it with; libboost-dev, libzmq3-dev: the peers
# bench's proc_bench and chan_bench measure (built and run, short, by CI's
# bench smoke run).
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "poold: missing packages: ${missing[*]}" >&2
  echo "poold: run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "poold: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
