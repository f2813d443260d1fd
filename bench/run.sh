#!/bin/sh
# SPDX-License-Identifier: MIT
# run.sh [BUILD_DIR]: run pool_bench in both touch modes. Builds nothing.
#   BUILD_DIR defaults to "build"; the binary is $BUILD/bench/pool_bench.
#   POOL_BENCH_QUICK=1: CI smoke run (3 repetitions, short min time, < 30 s
#   per mode); otherwise pool_bench's defaults (15 repetitions of at least
#   0.2 s, interleaved at random), medians reported.
#   Extra Google Benchmark flags can be passed in POOL_BENCH_ARGS.
set -eu

BUILD=${1:-build}
BIN=$BUILD/bench/pool_bench
if [ ! -x "$BIN" ]; then
    echo "run.sh: $BIN not found; build it first:" >&2
    echo "  cmake --build $BUILD --target pool_bench" >&2
    exit 1
fi

case ${POOL_BENCH_QUICK:-0} in
0 | "" | false | no)
    set -- ;;
*)
    set -- --quick ;;
esac

for touch in first second; do
    # shellcheck disable=SC2086 # POOL_BENCH_ARGS is split on purpose
    "$BIN" --touch="$touch" "$@" ${POOL_BENCH_ARGS:-}
done
