#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# run.sh [BUILD_DIR]: the benchmark report in one command (bench/README.md).
#
#   Installs what it needs from Debian (as root; otherwise says what to
#   install), configures and builds BUILD_DIR (default "build"; an existing
#   one is reused as it is configured), starts a poold of its own on a
#   temporary socket and segment, runs the whole suite, writes Google
#   Benchmark's raw JSON, the probes' JSON and a summary to
#   bench/results/<date>/, and regenerates docs/BENCHMARKS.md (between its
#   GENERATED markers only) and docs/img/*.png from that run.
#
#   POOL_BENCH_QUICK=1   CI smoke run (under a minute): every program once,
#                        short, glibc and poolclient only, no installs, no
#                        valgrind; results under bench/results/<date>-quick/,
#                        docs untouched.
#   POOL_BENCH_ROUNDS=N  rounds of the in-process programs (default 3; each
#                        round runs every allocator's process once, in a
#                        rotated order, with POOL_BENCH_REPS repetitions
#                        interleaved at random inside: medians are over
#                        ROUNDS x REPS repetitions)
#   POOL_BENCH_REPS=N    (default 3)
#   POOL_BENCH_DOCS=0    do not touch docs/ (default 1 in a full run)
#   POOL_BENCH_ARGS      extra Google Benchmark flags for pool_bench
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac

case ${POOL_BENCH_QUICK:-0} in
0 | "" | false | no) QUICK=0 ;;
*) QUICK=1 ;;
esac
ROUNDS=${POOL_BENCH_ROUNDS:-3}
REPS=${POOL_BENCH_REPS:-3}
DOCS=${POOL_BENCH_DOCS:-1}
if [ "$QUICK" = 1 ]; then
    ROUNDS=1
    REPS=1
    DOCS=${POOL_BENCH_DOCS:-0}
fi

STAMP=$(date -u +%Y-%m-%d_%H%M%S)
OUT=$ROOT/bench/results/$STAMP$([ "$QUICK" = 1 ] && echo -quick || true)
mkdir -p "$OUT/raw" "$OUT/logs" "$OUT/probe" "$OUT/cachegrind"
CMDS=$OUT/commands.txt
: >"$CMDS"
T0=$(date +%s)

say() { echo "run.sh: $*" >&2; }
die() {
    echo "run.sh: FATAL: $*" >&2
    exit 1
}
# run LOG CMD...: record the exact command, run it with its output to LOG.
run() {
    local log=$1
    shift
    printf '%q ' "$@" | sed "s|$BUILD/|\$BUILD/|g; s|${TMP:-//no-tmp-yet}/|\$TMP/|g; s|$ROOT/||g" >>"$CMDS"
    echo >>"$CMDS"
    "$@" >"$log" 2>&1 || {
        say "failed ($?): $* (log: $log)"
        tail -20 "$log" >&2
        return 1
    }
}

# ---- 1. packages -------------------------------------------------------------
# git: the commit the report names (machine.txt); a fresh Debian 12 may lack it.
BENCH_PKGS=(libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0 libboost-dev libzmq3-dev gnuplot-nox valgrind
    linux-perf python3 util-linux procps git)
if [ "$QUICK" = 0 ]; then
    bash "$ROOT/scripts/deps.sh"
    missing=()
    for p in "${BENCH_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    if [ ${#missing[@]} -ne 0 ]; then
        [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]}; run as root: apt-get install -y ${missing[*]}"
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# ---- 2. build ----------------------------------------------------------------
TARGETS=(poold pool_bench alloc_bench alloc_probe proc_bench chan_bench)
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    # A new build dir: only what the benchmarks need.
    run "$OUT/logs/configure.txt" cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_TESTING=OFF -DPOOL_BUILD_MAN=OFF || die "cmake configure failed"
elif [ "$QUICK" = 0 ]; then
    # Configure again: Boost may have just been installed (proc_bench).
    run "$OUT/logs/configure.txt" cmake "$BUILD" || die "cmake configure failed"
fi
if grep -q '^POOL_BOOST_INTERPROCESS:.*-NOTFOUND' "$BUILD/CMakeCache.txt"; then
    [ "$QUICK" = 1 ] || die "Boost.Interprocess not found after installing libboost-dev"
    say "proc_bench not built (no libboost-dev): processes and handoff skipped"
    TARGETS=(poold pool_bench alloc_bench alloc_probe)
elif grep -q '^POOL_ZMQ_\(INCLUDE\|LIB\):.*-NOTFOUND' "$BUILD/CMakeCache.txt"; then
    [ "$QUICK" = 1 ] || die "libzmq not found after installing libzmq3-dev"
    say "chan_bench not built (no libzmq3-dev): channels skipped"
    TARGETS=(poold pool_bench alloc_bench alloc_probe proc_bench)
fi
# One invocation for all targets: each one re-reads the build graph.
run "$OUT/logs/build.txt" cmake --build "$BUILD" -j2 --target "${TARGETS[@]}" || die "build failed"
B=$BUILD/bench
PROBE=$B/alloc_probe

# ---- 3. the machine ----------------------------------------------------------
{
    echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full)"
    echo "rounds: $ROUNDS"
    echo "reps: $REPS"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -srvm)"
    echo "loadavg_start: $(cut -d' ' -f1-3 /proc/loadavg)"
    if commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
        echo "git: $commit$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    else
        echo "git: unknown"
    fi
    echo "compiler: $(c++ --version | head -1)"
} >"$OUT/machine.txt"
lscpu >"$OUT/lscpu.txt" 2>&1 || true
dpkg-query -W -f='${Package}\t${Version}\n' libc6 libstdc++6 libjemalloc2 libtcmalloc-minimal4 \
    libmimalloc2.0 libboost-dev libzmq5 libbenchmark1debian valgrind gnuplot-nox linux-perf \
    >"$OUT/versions.tsv" 2>/dev/null || true

# ---- 4. poold of our own -------------------------------------------------------
TMP=$(mktemp -d /tmp/poolbench.XXXXXX)
SHM=/poolbench-$$
POOLD_PID=
cleanup() {
    if [ -n "$POOLD_PID" ]; then
        kill "$POOLD_PID" 2>/dev/null || true
        wait "$POOLD_PID" 2>/dev/null || true
    fi
    rm -f "/dev/shm${SHM}"
    rm -rf "$TMP"
}
trap cleanup EXIT
echo 'TMP=$(mktemp -d)' >>"$CMDS"
printf '%q ' "$BUILD/daemon/poold" --socket "$TMP/poold.sock" --shm-name "$SHM" --size 512M \
    --log-level warning | sed "s|$BUILD/|\$BUILD/|g; s|$TMP/|\$TMP/|g" >>"$CMDS"
echo " &" >>"$CMDS"
"$BUILD/daemon/poold" --socket "$TMP/poold.sock" --shm-name "$SHM" --size 512M \
    --log-level warning >"$OUT/logs/poold.txt" 2>&1 &
POOLD_PID=$!
for _ in $(seq 100); do
    [ -S "$TMP/poold.sock" ] && break
    sleep 0.05
done
[ -S "$TMP/poold.sock" ] || die "poold did not start (log: $OUT/logs/poold.txt)"
export POOLD_SOCKET=$TMP/poold.sock

# ---- 5. preloads ---------------------------------------------------------------
LIBDIR=/usr/lib/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
declare -A PRELOAD=([jemalloc]=$LIBDIR/libjemalloc.so.2
    [tcmalloc]=$LIBDIR/libtcmalloc_minimal.so.4 [mimalloc]=$LIBDIR/libmimalloc.so.2)
MALLOCS=(glibc)
for m in jemalloc tcmalloc mimalloc; do
    if [ -f "${PRELOAD[$m]}" ]; then
        MALLOCS+=("$m")
    elif [ "$QUICK" = 0 ]; then
        die "${PRELOAD[$m]} missing"
    else
        say "$m not installed: skipped (quick run)"
    fi
done
[ "$QUICK" = 1 ] && MALLOCS=(glibc)
# with_malloc NAME CMD...: CMD under NAME's malloc (LD_PRELOAD), checked by
# the program itself (--expect-malloc, exit 3 if the preload did not take).
with_malloc() {
    local m=$1
    shift
    if [ "$m" = glibc ]; then
        "$@" --expect-malloc=glibc
    else
        LD_PRELOAD=${PRELOAD[$m]} "$@" --expect-malloc="$m"
    fi
}
logged_with_malloc() {
    local log=$1 m=$2
    shift 2
    if [ "$m" = glibc ]; then
        run "$log" "$@" --expect-malloc=glibc
    else
        run "$log" env LD_PRELOAD="${PRELOAD[$m]}" "$@" --expect-malloc="$m"
    fi
}

# ---- 6. in-process programs, in rounds ----------------------------------------
GB=(--benchmark_repetitions="$REPS" --benchmark_enable_random_interleaving=true
    --benchmark_report_aggregates_only=false --benchmark_out_format=json)
[ "$QUICK" = 1 ] && GB+=(--benchmark_min_time=0.01) || GB+=(--benchmark_min_time=0.1)
for ((r = 1; r <= ROUNDS; r++)); do
    # Rotate the order of the allocators' processes from round to round.
    order=("${MALLOCS[@]:$(((r - 1) % ${#MALLOCS[@]}))}" "${MALLOCS[@]:0:$(((r - 1) % ${#MALLOCS[@]}))}")
    for m in "${order[@]}"; do
        say "round $r/$ROUNDS: $m"
        for touch in first second; do
            filt=()
            [ "$m" = glibc ] || filt=(--benchmark_filter='benchmark_(malloc_work|paired_malloc|pair_malloc)')
            # shellcheck disable=SC2086 # POOL_BENCH_ARGS is split on purpose
            logged_with_malloc "$OUT/logs/pool_bench-$touch-$m-r$r.txt" "$m" "$B/pool_bench" \
                --touch=$touch "${GB[@]}" "${filt[@]}" \
                --benchmark_out="$OUT/raw/pool_bench-$touch-$m-r$r.json" ${POOL_BENCH_ARGS:-} ||
                die "pool_bench failed"
        done
        filt=()
        # pair_write: libpoolclient's rows run in every process, beside its malloc's.
        [ "$m" = glibc ] || filt=(--benchmark_filter='/malloc|^pair_write')
        [ "$QUICK" = 1 ] && filt+=(--quick)
        logged_with_malloc "$OUT/logs/alloc_bench-$m-r$r.txt" "$m" "$B/alloc_bench" "${GB[@]}" \
            "${filt[@]}" --benchmark_out="$OUT/raw/alloc_bench-$m-r$r.json" ||
            die "alloc_bench failed"
    done
done

# ---- 7. processes and handoff ---------------------------------------------------
if [ -x "$B/proc_bench" ]; then
    say "processes and handoff"
    # Two more repetitions than the in-process rows: two processes spinning
    # on 2 shared CPUs vary the most.
    preps=$((QUICK == 1 ? 1 : REPS + 2))
    qflag=()
    # quick: 1 and 2 processes, 64 B and 2000 B handoffs only
    [ "$QUICK" = 1 ] && qflag=(--quick '--benchmark_filter=procs(_lt)?/.*/[12]$|handoff/.*/(64|2000)$')
    run "$OUT/logs/proc_bench.txt" "$B/proc_bench" --socket="$POOLD_SOCKET" "${qflag[@]}" \
        --benchmark_repetitions="$preps" --benchmark_enable_random_interleaving=true \
        --benchmark_report_aggregates_only=false --benchmark_out_format=json \
        --benchmark_out="$OUT/raw/proc_bench.json" || die "proc_bench failed"
fi

# ---- 7b. channels against sockets, pipes, mqueue, ZeroMQ, Boost ----------------------
if [ -x "$B/chan_bench" ]; then
    say "channels"
    # Each run has a deadline (a peer that stops moving is reported n/a and
    # killed); the whole program one more, so that nothing here can hang.
    cflag=(--deadline=120)
    limit=5400
    [ "$QUICK" = 1 ] && cflag=(--quick --deadline=60) && limit=1200
    run "$OUT/logs/chan_bench.txt" timeout --kill-after=10 "$limit" "$B/chan_bench" "${cflag[@]}" ||
        die "chan_bench failed"
    grep '^chan ' "$OUT/logs/chan_bench.txt" >"$OUT/chan.txt" || true
    # A peer may stall (its line says so); poold's channels may not.
    if grep -E '^chan [a-z]+ poold[/0-9]* .*na="did not finish' "$OUT/chan.txt"; then
        die "a poold channel run did not finish (log: $OUT/logs/chan_bench.txt)"
    fi
fi

# ---- 8. probes: addresses, memory ------------------------------------------------
# probe NAME MALLOC ALLOC ARGS...: one alloc_probe run, its JSON line kept.
probe() {
    local name=$1 m=$2 alloc=$3
    shift 3
    logged_with_malloc "$OUT/probe/$name.json" "$m" "$PROBE" --alloc="$alloc" "$@" ||
        die "alloc_probe $name failed"
}
# Allocator configurations: label, malloc, --alloc.
CONFIGS=("poolclient glibc poolclient")
for m in "${MALLOCS[@]}"; do CONFIGS+=("$m $m malloc"); done
CONFIGS+=("vector glibc vector" "pmr glibc pmr" "seed_mutex_pool glibc seed_mutex_pool"
    "none glibc none" "null glibc null")
say "probes: addresses and memory"
for c in "${CONFIGS[@]}"; do
    read -r label m alloc <<<"$c"
    probe "addresses-$label" "$m" "$alloc" --workload=addresses
    probe "rss-first-$label" "$m" "$alloc" --workload=first --iterations="$((QUICK == 1 ? 1 : 20))"
    case $alloc in vector | none | null) continue ;; esac
    probe "mixed-$label" "$m" "$alloc" --workload=mixed --iterations="$((QUICK == 1 ? 1 : 5))"
done

# ---- 9. cache misses: cachegrind, callgrind, perf -----------------------------------
if [ "$QUICK" = 0 ]; then
    say "cachegrind (deterministic counts), 2 at a time"
    jobs_file=$TMP/cg-jobs
    : >"$jobs_file"
    for c in "${CONFIGS[@]}"; do
        read -r label m alloc <<<"$c"
        # K=1 is the baseline subtracted from K=3 (FIRST) and K=6 (pairs):
        # process start, first use (lazy binding, the pool's first spans)
        # cancel out; each thread's start and exit stay in, as in the seed.
        for w in "first 1" "first 3" "pair-64 1" "pair-64 6" "pair-2000 1" "pair-2000 6"; do
            read -r wl k <<<"$w"
            size=64
            case $wl in pair-*) size=${wl#pair-} ;; esac
            echo "$label $m $alloc $wl ${wl%%-*} $size $k" >>"$jobs_file"
        done
    done
    cg_one() {
        local label=$1 m=$2 alloc=$3 wl=$4 workload=$5 size=$6 k=$7
        local env=()
        local expect=glibc
        if [ "$m" != glibc ]; then
            env=(env LD_PRELOAD="${PRELOAD[$m]}")
            expect=$m
        fi
        "${env[@]}" valgrind --tool=cachegrind --cache-sim=yes \
            --cachegrind-out-file="$OUT/cachegrind/$label-$wl-$k.out" \
            "$PROBE" --alloc="$alloc" --workload="$workload" --size="$size" --iterations="$k" \
            --expect-malloc="$expect" >"$OUT/cachegrind/$label-$wl-$k.log" 2>&1
    }
    export -f cg_one
    export OUT PROBE
    export PRELOAD_jemalloc=${PRELOAD[jemalloc]} PRELOAD_tcmalloc=${PRELOAD[tcmalloc]}
    export PRELOAD_mimalloc=${PRELOAD[mimalloc]}
    echo "valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=OUT \$BUILD/bench/alloc_probe --alloc=A --workload=first|pair --size=S --iterations=K  (each allocator; K=1 is the baseline subtracted from K=3 or K=6; LD_PRELOAD for jemalloc/tcmalloc/mimalloc)" >>"$CMDS"
    # xargs -P2: two valgrinds at once on 2 CPUs; the counts do not depend on it.
    xargs -P2 -L1 bash -c 'declare -A PRELOAD=([jemalloc]=$PRELOAD_jemalloc [tcmalloc]=$PRELOAD_tcmalloc [mimalloc]=$PRELOAD_mimalloc); cg_one "$@" || echo "cachegrind failed: $*" >&2' _ <"$jobs_file"
    say "callgrind: where libpoolclient's instructions go"
    for w in "first 3" "first 1" "pair 6" "pair 1"; do
        read -r wl k <<<"$w"
        run "$OUT/logs/callgrind-$wl-$k.txt" valgrind --tool=callgrind \
            --callgrind-out-file="$OUT/cachegrind/callgrind-$wl-$k.out" \
            "$PROBE" --alloc=poolclient --workload="$wl" --size=64 --iterations="$k" ||
            die "callgrind failed"
        callgrind_annotate --threshold=100 "$OUT/cachegrind/callgrind-$wl-$k.out" \
            >"$OUT/cachegrind/callgrind-$wl-$k.txt" 2>&1 || true
    done
fi
say "perf stat"
{
    echo "# perf stat -e cache-references,cache-misses -x, \$BUILD/bench/alloc_probe --alloc=A --workload=first --iterations=5"
    for c in "poolclient glibc poolclient" "glibc glibc malloc"; do
        read -r label m alloc <<<"$c"
        echo "== $label"
        perf stat -e cache-references,cache-misses -x, "$PROBE" --alloc="$alloc" --workload=first \
            --iterations=5 2>&1 >/dev/null || true
    done
} >"$OUT/perf-stat.txt" 2>&1
echo "perf stat -e cache-references,cache-misses -x, \$BUILD/bench/alloc_probe --alloc=poolclient|malloc --workload=first --iterations=5" >>"$CMDS"

# ---- 10. summary, docs, charts ---------------------------------------------------------
echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
echo "seconds: $(($(date +%s) - T0))" >>"$OUT/machine.txt"
args=("$OUT")
[ "$DOCS" = 1 ] && args+=(--docs "$ROOT/docs")
echo "python3 bench/report.py bench/results/$(basename "$OUT")$([ "$DOCS" = 1 ] && echo ' --docs docs')" >>"$CMDS"
/usr/bin/env python3 "$ROOT/bench/report.py" "${args[@]}" || die "report.py failed"
cat "$OUT/summary.md"
say "done in $(($(date +%s) - T0)) s: $OUT/summary.md$([ "$DOCS" = 1 ] && echo ", docs/BENCHMARKS.md, docs/img/")"
