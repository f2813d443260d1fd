#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# preload.sh [BUILD_DIR] [OUT.md]: an SQLite workload and redis-benchmark
# under glibc, jemalloc, tcmalloc, mimalloc (Debian's libraries, by
# LD_PRELOAD) and libpoolclient-preload.so (attached to a poold of its own,
# and embedded), side by side in one run. Builds nothing.
#
# Reports wall time and peak RSS (/usr/bin/time -v) of sqlite3, and
# redis-benchmark's requests per second with redis-server's peak RSS, as a
# markdown table on stdout and in OUT.md (default BUILD_DIR/preload-bench.md).
# Each allocator's preload is checked to have taken effect: its library (or
# the pool) is in the program's /proc/PID/maps.
#
#   ROWS=200000    SQLite rows            REPS=3   SQLite runs (median)
#   REQUESTS=100000 redis-benchmark -n     CLIENTS=50 redis-benchmark -c
#
# redis-server (Debian) links libjemalloc: its "glibc" row preloads
# libpoolclient-preload.so with POOLD_PRELOAD=off, a pass-through to glibc
# that comes before jemalloc in the lookup order.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=${2:-$BUILD/preload-bench.md}
ROWS=${ROWS:-200000} REPS=${REPS:-3} REQUESTS=${REQUESTS:-100000} CLIENTS=${CLIENTS:-50}
LIBDIR=/usr/lib/x86_64-linux-gnu
PRELOAD=$(realpath "$BUILD/client/libpoolclient-preload.so")
POOLD=$(realpath "$BUILD/daemon/poold")
POOLCTL=$(realpath "$BUILD/tools/poolctl")
for f in "$PRELOAD" "$POOLD" "$POOLCTL"; do
  [ -x "$f" ] || [ -f "$f" ] || { echo "preload.sh: $f not found; build first (cmake --build $BUILD -j2)" >&2; exit 1; }
done
for c in sqlite3 redis-server redis-benchmark redis-cli /usr/bin/time; do
  command -v "$c" >/dev/null || { echo "preload.sh: $c missing (bash scripts/deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/poold-bench-XXXXXX)
shm=/poold-bench-$$
poold_pid=
redis_pid=
rpid=
cleanup() {
  # redis-server itself (rpid) and /usr/bin/time above it (redis_pid).
  [ -n "$rpid" ] && kill -KILL "$rpid" 2>/dev/null || true
  [ -n "$redis_pid" ] && kill -KILL "$redis_pid" 2>/dev/null || true
  if [ -n "$poold_pid" ]; then kill -TERM "$poold_pid" 2>/dev/null || true; wait "$poold_pid" 2>/dev/null || true; fi
  rm -f "/dev/shm$shm"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$POOLD" --socket "$work/poold.sock" --shm-name "$shm" --size 512M --max-procs 64 \
  --log-level warn 2>"$work/poold.log" &
poold_pid=$!
for _ in $(seq 200); do "$POOLCTL" --socket "$work/poold.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done

# name | environment (env assignments) | what /proc/PID/maps must show
allocs=(
  "glibc|POOLD_PRELOAD=off LD_PRELOAD=$PRELOAD|"
  "jemalloc|LD_PRELOAD=$LIBDIR/libjemalloc.so.2|libjemalloc.so.2"
  "tcmalloc|LD_PRELOAD=$LIBDIR/libtcmalloc_minimal.so.4|libtcmalloc_minimal"
  "mimalloc|LD_PRELOAD=$LIBDIR/libmimalloc.so.2|libmimalloc"
  "poold (attached)|LD_PRELOAD=$PRELOAD POOLD_SOCKET=$work/poold.sock|$shm"
  "poold (embedded)|LD_PRELOAD=$PRELOAD POOLD_SOCKET=$work/none.sock POOLD_PRELOAD_FALLBACK=embedded POOL_EMBEDDED_BYTES=512M|memfd:poold-embedded"
)

cat >"$work/w.sql" <<EOF
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT, r REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $ROWS)
INSERT INTO t SELECT x, (x * 7919) % 1000,
  printf('name-%08d-%s', (x * 104729) % $ROWS, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)),
  x * 0.25 FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
UPDATE t SET s = s || '-updated' WHERE k < 100;
DELETE FROM t WHERE k % 7 = 3;
SELECT count(*), count(DISTINCT s), sum(r), min(s), max(s) FROM t;
SELECT k, count(*), total(r), min(s), max(s), length(group_concat(s, ',')) FROM t GROUP BY k ORDER BY k;
.system cat /proc/\$PPID/maps > $work/maps
EOF

# field NAME FILE: a /usr/bin/time -v field.
field() { sed -n "s/^[[:space:]]*$1: //p" "$2"; }
secs() { # h:mm:ss or m:ss.cc -> seconds
  awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }' <<<"$1"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

check_maps() { # NAME MUST FILE
  [ -z "$2" ] && return 0
  grep -q -- "$2" "$3" || { echo "preload.sh: $1: '$2' not in the program's maps: the preload did not take effect" >&2; exit 1; }
}

rows=()
ref=
for a in "${allocs[@]}"; do
  IFS='|' read -r name envs must <<<"$a"
  # shellcheck disable=SC2086 # envs is a list of assignments
  read -r -a envv <<<"$envs"
  # SQLite
  times=() rss=()
  for _ in $(seq "$REPS"); do
    /usr/bin/time -v -o "$work/t" env "${envv[@]}" sqlite3 :memory: <"$work/w.sql" >"$work/out"
    check_maps "$name" "$must" "$work/maps"
    if [ -z "$ref" ]; then cp "$work/out" "$work/ref"; ref=1; fi
    cmp -s "$work/out" "$work/ref" || { echo "preload.sh: $name: SQLite output differs" >&2; exit 1; }
    times+=("$(secs "$(field 'Elapsed (wall clock) time (h:mm:ss or m:ss)' "$work/t")")")
    rss+=("$(field 'Maximum resident set size (kbytes)' "$work/t")")
  done
  sq_t=$(printf '%s\n' "${times[@]}" | median)
  sq_rss=$(printf '%s\n' "${rss[@]}" | median)
  # redis
  rsock=$work/redis.sock
  rm -f "$rsock"
  /usr/bin/time -v -o "$work/rt" env "${envv[@]}" redis-server --port 0 --unixsocket "$rsock" \
    --save '' --appendonly no --daemonize no --logfile "$work/redis.log" &
  redis_pid=$!
  for _ in $(seq 200); do redis-cli -s "$rsock" ping >/dev/null 2>&1 && break; sleep 0.05; done
  rpid=$(redis-cli -s "$rsock" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
  cp "/proc/$rpid/maps" "$work/maps"
  check_maps "$name" "$must" "$work/maps"
  redis-benchmark -s "$rsock" -n "$REQUESTS" -c "$CLIENTS" -r 100000 -d 64 -q --csv \
    -t set,get,lpush,lpop,sadd,hset,zadd,lrange_100,mset >"$work/bench.csv"
  redis-cli -s "$rsock" shutdown nosave >/dev/null 2>&1 || true
  wait "$redis_pid" || true
  redis_pid= rpid=
  rps() { awk -F, -v t="\"$1\"" '$1 == t { gsub(/"/, "", $2); printf "%.0f", $2 }' "$work/bench.csv"; }
  r_rss=$(field 'Maximum resident set size (kbytes)' "$work/rt")
  rows+=("| $name | $sq_t | $((sq_rss / 1024)) | $(rps SET) | $(rps GET) | $(rps LPUSH) | $(rps HSET) | $(rps ZADD) | $(rps 'LRANGE_100 (first 100 elements)') | $(rps 'MSET (10 keys)') | $((r_rss / 1024)) |")
  echo "preload.sh: $name done" >&2
done

{
  echo "SQLite: \`sqlite3 :memory:\`, $ROWS rows inserted, 2 indexes, update, delete, aggregates (median of $REPS runs; output identical under every allocator)."
  echo "redis: \`redis-benchmark -n $REQUESTS -c $CLIENTS -r 100000 -d 64\` on a unix socket, requests per second."
  echo "Peak RSS from \`/usr/bin/time -v\`. $(nproc) CPUs, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg). $(date -u +%Y-%m-%d)."
  echo
  echo "| allocator | SQLite s | SQLite peak RSS MiB | SET | GET | LPUSH | HSET | ZADD | LRANGE_100 | MSET | redis peak RSS MiB |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$OUT"
