#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/fuzz.sh [SECONDS]: build every libFuzzer harness with clang into
# build-fuzz (POOL_FUZZ=ON) and run each for SECONDS (default 60): the
# protocol codec (fuzz_pproto) and the segment (fuzz_segment, fuzz_reclaim,
# fuzz_stats, fuzz_verify, seeded by fuzz_seedgen). Corpora grow in
# build-fuzz/corpus/<target>; a crash leaves build-fuzz/crash-* and fails
# the script. Needs clang (Debian's clang carries libFuzzer).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
B=${FUZZ_BUILD:-build-fuzz}
command -v clang >/dev/null || { echo "fuzz.sh: clang not installed (scripts/deps.sh)" >&2; exit 2; }
CC=clang cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOOL_FUZZ=ON \
    -DPOOL_BUILD_BENCH=OFF -DBUILD_TESTING=OFF >/dev/null
targets=(fuzz_pproto fuzz_segment fuzz_reclaim fuzz_stats fuzz_verify)
cmake --build "$B" -j2 --target "${targets[@]}" fuzz_seedgen >/dev/null
C=$B/corpus
mkdir -p "$C"
"$B/fuzz/fuzz_seedgen" "$C/seeds" >/dev/null
for t in "${targets[@]}"; do
    mkdir -p "$C/$t"
    seeds=
    case $t in
    fuzz_segment) seeds=$C/seeds/segment ;;
    fuzz_reclaim) seeds=$C/seeds/reclaim ;;
    fuzz_stats) seeds=$C/seeds/stats ;;
    fuzz_verify) seeds=$C/seeds/verify ;;
    esac
    exe=$(find "$B" -type f -name "$t" -perm -u+x | head -n1)
    echo "== $t: ${SECONDS_EACH}s"
    # -timeout: an input that runs 10 s is a hang (a loop that never ends).
    (cd "$B" && "$OLDPWD/$exe" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 "$OLDPWD/$C/$t" ${seeds:+"$OLDPWD/$seeds"} \
        2>"$OLDPWD/$B/$t.log") || {
        tail -n 60 "$B/$t.log" >&2
        echo "fuzz.sh: $t failed (reproducer: $B/crash-* or $B/timeout-*)" >&2
        exit 1
    }
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$B/$t.log" | tr '\n' ' '
    echo
done
echo "fuzz.sh: every target ran ${SECONDS_EACH}s clean"
