#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/memcheck.sh [BUILD_DIR]: poold and poolctl under valgrind's
# memcheck (leaks and errors), across the daemon tests.
#
# 1. test_daemon_cmds under memcheck: every command handler, the registry,
#    crash reclaim, segment creation and adoption, in-process.
# 2. A real poold under memcheck: workers attach, one is SIGKILLed (crash
#    reclaim), every poolctl command and format (each poolctl run under
#    memcheck too), garbage and an over-long line on the socket, a HELLO
#    with a forged pid, SIGHUP, a corrupted segment (the integrity checks
#    and the pool-corrupt refusal), then SIGTERM (a clean exit frees all).
# Fails when any run reports an error or a definite/indirect leak.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
command -v valgrind >/dev/null || { echo "memcheck.sh: valgrind not installed" >&2; exit 2; }
for t in daemon/poold tools/poolctl tools/pool_worker tests/test_daemon_cmds tools/pool_check; do
    [ -x "$B/$t" ] || { echo "memcheck.sh: $B/$t not built" >&2; exit 2; }
done
D=$(mktemp -d /tmp/poold-memcheck-XXXXXX)
SOCK=$D/poold.sock
SHM=/poold-memcheck-$$
VG=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-fds=no
    --child-silent-after-fork=yes)
export POOLD_SOCKET=$SOCK
cleanup() {
    [ -n "${pd:-}" ] && kill -9 "$pd" 2>/dev/null
    rm -f "/dev/shm$SHM"
}
trap cleanup EXIT

echo "== memcheck: test_daemon_cmds"
# Valgrind has no pidfd_open: the test then leaves the sweep on for that case.
POOL_TEST_VALGRIND=1 "${VG[@]}" --log-file="$D/vg-cmds.log" "$B/tests/test_daemon_cmds" \
    >"$D/cmds.out" 2>&1 ||
    { tail -n 40 "$D/vg-cmds.log" "$D/cmds.out"; echo "memcheck: test_daemon_cmds failed" >&2; exit 1; }

echo "== memcheck: poold and poolctl"
"${VG[@]}" --log-file="$D/vg-poold.log" "$B/daemon/poold" --socket "$SOCK" --shm-name "$SHM" \
    --size 16M --log-level debug >"$D/poold.log" 2>&1 &
pd=$!
for _ in $(seq 300); do "$B/tools/poolctl" ping >/dev/null 2>&1 && break; sleep 0.1; done
ctl() { "${VG[@]}" --log-file="$D/vg-poolctl.%p.log" "$B/tools/poolctl" "$@" >/dev/null; }
"$B/tools/pool_worker" --seconds 4 --hold 4 >"$D/w1.out" 2>&1 &
w1=$!
"$B/tools/pool_worker" --seconds 30 --hold 4 --no-detach >"$D/w2.out" 2>&1 &
w2=$!
sleep 2
kill -9 "$w2"
for args in "stats" "stats --json" "stats --prometheus" "procs" "procs --json" "classes" \
    "classes --json" "ping" "version"; do
    # shellcheck disable=SC2086
    ctl $args || { echo "memcheck: poolctl $args failed" >&2; exit 1; }
done
python3 - "$SOCK" <<'PY'
import socket, sys, os
def talk(data):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(data)
    s.settimeout(3)
    try:
        s.recv(65536)
    except Exception:
        pass
    s.close()
talk(b"\x00\x01garbage\nFOO\n")
talk(b"A" * 5000 + b"\n")
talk(b"HELLO abi=5 pid=1 name=forged\n")
talk(b"STATS\nPROCS\nCLASSES\n")
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.close()
PY
wait "$w1" || { echo "memcheck: worker failed" >&2; cat "$D/w1.out"; exit 1; }
kill -HUP "$pd"
sleep 1
# Corrupt the segment: a class 0 head out of range (pool_check reads it).
python3 - "$SHM" <<'PY'
import mmap, os, struct, sys
fd = os.open("/dev/shm" + sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0)
classes_off = struct.unpack_from("<Q", m, 48)[0]  # struct pshm_header
struct.pack_into("<Q", m, classes_off + 64, (1 << 44) | 0xfffffff0)  # class 0 central head
m.close(); os.close(fd)
PY
for _ in $(seq 100); do
    "$B/tools/poolctl" stats 2>/dev/null | grep -q CORRUPT && break
    sleep 0.2
done
"$B/tools/poolctl" stats | grep -q CORRUPT || { echo "memcheck: corruption not reported" >&2; exit 1; }
"$B/tools/pool_worker" --iterations 1 >"$D/w3.out" 2>&1 && { echo "memcheck: corrupt pool served" >&2; exit 1; }
ctl stats
kill -TERM "$pd"
set +e
wait "$pd"
rc=$?
set -e
pd=
fail=0
for f in "$D"/vg-*.log; do
    errs=$(grep -Eo "ERROR SUMMARY: [0-9]+" "$f" | awk '{print $3}' | tail -n1 || true)
    lost=$(grep -Eo "definitely lost: [0-9,]+ bytes" "$f" | awk '{print $3}' | tr -d , | tail -n1 || true)
    echo "memcheck: $(basename "$f"): errors ${errs:-?}, definitely lost ${lost:-0} bytes"
    if [ "${errs:-1}" != 0 ] || [ "${lost:-0}" != 0 ]; then
        fail=1
        sed -n '/ERROR SUMMARY\|Invalid\|uninitialised\|definitely lost in/,+12p' "$f" | head -n 60
    fi
done
[ "$rc" -eq 0 ] || { echo "memcheck: poold exited $rc under memcheck" >&2; fail=1; }
[ "$fail" -eq 0 ] && echo "memcheck: poold and poolctl clean" && rm -rf "$D"
exit "$fail"
