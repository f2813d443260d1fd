#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run-main.sh: install dependencies, build, then the main job:
#   1. start poold on its defaults (as root: /run/poold/poold.sock and the
#      segment /poold; otherwise a temporary runtime directory),
#   2. run the seed's burn-after-reading workload in several worker processes
#      attached through pool_attach (tools/pool_worker),
#   3. show `poolctl stats` while they run and after they finish,
#   4. stop poold (SIGTERM) and remove the segment if this run created it.
# Options: WORKERS=N (default 4), ITERATIONS=N per worker (default 200),
#          BENCH=1 also runs the benchmark suite (bench/run.sh) afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build

WORKERS=${WORKERS:-4}
ITERATIONS=${ITERATIONS:-200}
POOLD=build/daemon/poold
POOLCTL=build/tools/poolctl
WORKER=build/tools/pool_worker

args=()
if [ "$(id -u)" -eq 0 ]; then
  sock=/run/poold/poold.sock
  shm=/poold
else
  rundir=$(mktemp -d /tmp/poold-main.XXXXXX)
  sock=$rundir/poold.sock
  shm=/poold-main-$$
  args=(--socket "$sock" --shm-name "$shm")
fi
export POOLD_SOCKET=$sock
created_shm=0
[ -e "/dev/shm${shm}" ] || created_shm=1

log=$(mktemp /tmp/poold-main-log.XXXXXX)
echo "== starting poold ${args[*]:-(defaults)}; its log: $log"
"$POOLD" "${args[@]}" >"$log" 2>&1 &
poold_pid=$!
cleanup() {
  if kill -0 "$poold_pid" 2>/dev/null; then
    kill -TERM "$poold_pid" 2>/dev/null || true
    wait "$poold_pid" 2>/dev/null || true
  fi
  if [ "$created_shm" -eq 1 ]; then rm -f "/dev/shm${shm}"; fi
  [ -n "${rundir:-}" ] && rm -rf "$rundir"
  return 0
}
trap cleanup EXIT

for _ in $(seq 100); do
  "$POOLCTL" ping >/dev/null 2>&1 && break
  kill -0 "$poold_pid" 2>/dev/null || { cat "$log"; echo "poold exited" >&2; exit 1; }
  sleep 0.1
done
"$POOLCTL" ping
"$POOLCTL" version
sed -n '1,40p' "$log"

echo
echo "== $WORKERS worker processes, each $ITERATIONS iterations of the seed workload"
echo "   (10 threads, sizes 50..2000 B, 2000 allocate-touch-free rounds per thread)"
pids=()
outs=()
for i in $(seq "$WORKERS"); do
  out=$(mktemp /tmp/poold-worker.XXXXXX)
  outs+=("$out")
  # Every other worker holds 16 blocks per thread, so blocks also travel
  # between threads and processes through the central lists.
  hold=$(( (i % 2) * 16 ))
  "$WORKER" --iterations "$ITERATIONS" --hold "$hold" >"$out" &
  pids+=($!)
done
sleep 1
echo
echo "== poolctl stats, while the workers run"
"$POOLCTL" stats
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
echo
echo "== the workers said"
cat "${outs[@]}"
rm -f "${outs[@]}"
echo
echo "== poolctl stats, after they finished"
"$POOLCTL" stats
echo
echo "== poolctl stats --prometheus (first lines)"
"$POOLCTL" stats --prometheus | head -20
echo
echo "== stopping poold"
kill -TERM "$poold_pid"
wait "$poold_pid" || true
tail -3 "$log"
if [ "${BENCH:-0}" = 1 ]; then
  bash bench/run.sh build
fi
exit "$status"
