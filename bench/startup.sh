#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/startup.sh [BUILD_DIR] [RUNS] [REPS]: what the preload library costs
# a process that poold does not serve (no poold answers at POOLD_SOCKET).
#
# Time: RUNS (default 100) runs of /bin/true, plain and with
# libpoolclient-preload.so, side by side in REPS (default 7) alternating
# repetitions; prints each repetition, the medians and their ratio.
# Memory: three preloaded `sleep 1` at once, Shmem (/proc/meminfo) before and
# while they run: what they reserve in /dev/shm.
# Then the same with POOLD_PRELOAD_FALLBACK=embedded, for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
RUNS=${2:-100}
REPS=${3:-7}
PRELOAD=$(realpath "$B/client/libpoolclient-preload.so")
[ -f "$PRELOAD" ] || { echo "startup.sh: build first (bash scripts/build.sh $B)" >&2; exit 2; }
export POOLD_SOCKET=/nonexistent/poold.sock

# runs ENV...: seconds for RUNS runs of /bin/true under env ENV.
runs() {
  local t0 t1
  t0=$(date +%s%N)
  for _ in $(seq "$RUNS"); do env "$@" /bin/true; done
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000))
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
shmem_kib() { awk '/^Shmem:/ { print $2 }' /proc/meminfo; }

echo "== $RUNS runs of /bin/true, no poold (POOLD_SOCKET=$POOLD_SOCKET), $REPS repetitions"
plain=() pre=() emb=()
for r in $(seq "$REPS"); do
  p=$(runs A=1)
  q=$(runs LD_PRELOAD="$PRELOAD")
  e=$(runs LD_PRELOAD="$PRELOAD" POOLD_PRELOAD_FALLBACK=embedded)
  plain+=("$p") pre+=("$q") emb+=("$e")
  awk -v r="$r" -v p="$p" -v q="$q" -v e="$e" 'BEGIN {
    printf "rep %d: plain %.3f s  preload %.3f s  preload, embedded fallback %.3f s\n",
      r, p / 1e6, q / 1e6, e / 1e6 }'
done
mp=$(printf '%s\n' "${plain[@]}" | median)
mq=$(printf '%s\n' "${pre[@]}" | median)
me=$(printf '%s\n' "${emb[@]}" | median)
awk -v p="$mp" -v q="$mq" -v e="$me" 'BEGIN {
  printf "median: plain %.3f s  preload %.3f s (x%.2f)  embedded fallback %.3f s (x%.2f)\n",
    p / 1e6, q / 1e6, q / p, e / 1e6, e / p }'

echo "== /dev/shm reserved by three preloaded 'sleep 1' at once"
for mode in glibc embedded; do
  before=$(shmem_kib)
  pids=()
  for _ in 1 2 3; do
    env LD_PRELOAD="$PRELOAD" POOLD_PRELOAD_FALLBACK=$mode sleep 1 &
    pids+=($!)
  done
  sleep 0.5
  during=$(shmem_kib)
  wait "${pids[@]}"
  echo "fallback $mode: Shmem $before KiB before, $during KiB while they run ($(((during - before) / 1024)) MiB more)"
done
