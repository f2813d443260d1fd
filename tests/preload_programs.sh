#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# preload_programs.sh CASE MODE PRELOAD POOLD POOLCTL
#
# Programs no one here wrote, run on libpoolclient-preload.so (test_preload_*
# in ctest, labels integration;preload):
#   python  Python's own regression tests (python3 -m test, a set of modules
#           from libpython3.11-testsuite), PYTHONMALLOC=malloc so that every
#           Python object goes through malloc, --fail-env-changed
#   sqlite  sqlite3: 200k rows inserted, indexed, updated, aggregated; the
#           output must equal the run without the preload
#   redis   redis-server driven by redis-benchmark on a unix socket, plus a
#           BGSAVE (a fork child that writes the dataset)
#   sigkill a preloaded process with ~100k blocks in use, SIGKILLed: poold
#           reclaims it and 0 blocks are left in use (poold mode only)
# MODE: embedded (no poold answers: an embedded pool) or poold (a poold of
# our own on a temporary socket and segment; while the program runs,
# `poolctl procs` must show it with its allocations).
#
# Exit 0 pass, 1 fail, 77 skipped (saying why). POOL_PRELOAD_LONG=1 runs the
# long form (more Python modules, more requests); the default is CI's short
# form, each case well under a minute.
set -euo pipefail
case_=$1 mode=$2
# Absolute: the programs run in a temporary directory.
preload=$(realpath "$3") poold=$(realpath "$4") poolctl=$(realpath "$5")
# tools/pool_check of the same build: walks the segment at rest.
pool_check=$(realpath -m "$(dirname "$poold")/../tools/pool_check")
long=${POOL_PRELOAD_LONG:-0}
PY=/usr/bin/python3.11

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed (bash scripts/deps.sh installs it)"; }

work=$(mktemp -d /tmp/poold-preload-XXXXXX)
shm=/poold-preload-$$
sock=$work/poold.sock
poold_pid=
bg_pids=()
cleanup() {
  for p in "${bg_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "$poold_pid" ]; then
    kill -TERM "$poold_pid" 2>/dev/null || true
    wait "$poold_pid" 2>/dev/null || true
  fi
  rm -f "/dev/shm$shm"
  rm -rf "$work"
}
trap cleanup EXIT

start_poold() {
  "$poold" --socket "$sock" --shm-name "$shm" --size "${1:-128M}" --log-level info \
    2>"$work/poold.log" &
  poold_pid=$!
  for _ in $(seq 200); do
    "$poolctl" --socket "$sock" ping >/dev/null 2>&1 && return 0
    kill -0 "$poold_pid" 2>/dev/null || { cat "$work/poold.log"; fail "poold exited at start"; }
    sleep 0.05
  done
  fail "poold did not answer within 10 s"
}

# The environment a preloaded program runs in, per mode.
if [ "$mode" = poold ]; then
  start_poold
  export POOLD_SOCKET=$sock
  mapped=$shm # /dev/shm<name> in the program's /proc/PID/maps
else
  export POOLD_SOCKET=$work/no-poold.sock # nothing answers: embedded
  export POOLD_PRELOAD_FALLBACK=embedded POOLD_EMBEDDED_BYTES=128M
  mapped=memfd:poold-embedded
fi
pre=(env LD_PRELOAD="$preload")

# check_mapped PID: the preload took effect in PID (the pool is mapped).
check_mapped() {
  grep -q -- "$mapped" "/proc/$1/maps" || fail "pid $1 does not map the pool ($mapped): the preload did not take effect"
}

# proc_field PID FIELD: FIELD of PID's row in `poolctl procs --json`, or "".
proc_field() {
  "$poolctl" --socket "$sock" procs --json 2>/dev/null |
    "$PY" -c 'import json,sys
for p in json.load(sys.stdin)["processes"]:
    if p["pid"] == int(sys.argv[1]): print(p[sys.argv[2]])' "$1" "$2"
}

# watch_live PID MIN: poolctl shows PID with at least MIN allocations while
# it runs (poold mode), and prints the table once.
watch_live() {
  local pid=$1 min=$2 n
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || fail "pid $pid ended before poolctl saw $min allocations"
    n=$(proc_field "$pid" allocs)
    if [ -n "$n" ] && [ "$n" -ge "$min" ]; then
      echo "--- poolctl stats while pid $pid runs:"
      "$poolctl" --socket "$sock" stats
      return 0
    fi
    sleep 0.1
  done
  fail "poolctl never showed pid $pid with $min allocations"
}

# books_idle WHAT: the segment's books at rest, by walking its lists, caches
# and owner bytes (pool_check --idle: pshm_check, then 0 in use, 0 in
# transit, none attached). poolctl's in-use figure is computed from the same
# counters a lost block would leave unchanged; the walk is not.
books_idle() {
  [ -x "$pool_check" ] || fail "$pool_check is not built"
  "$pool_check" --idle --wait 10 "$shm" >"$work/check.out" 2>&1 ||
    { cat "$work/check.out"; fail "books not exact or not idle after $1"; }
  echo "$1: $(tail -n 1 "$work/check.out")"
}

in_use_total() {
  "$poolctl" --socket "$sock" stats --json |
    "$PY" -c 'import json,sys; print(sum(c["in_use"] for c in json.load(sys.stdin)["classes"]))'
}

run_python() {
  [ -d /usr/lib/python3.11/test/libregrtest ] ||
    skip "libpython3.11-testsuite is not installed (bash scripts/deps.sh installs it)"
  local mods=(test_list test_dict test_set test_threading)
  [ "$long" = 1 ] && mods+=(test_unicode test_json test_re test_collections test_itertools)
  [ -n "${POOL_PRELOAD_PY_MODULES:-}" ] && read -r -a mods <<<"$POOL_PRELOAD_PY_MODULES"
  # The preload is in effect in a Python of this environment.
  "${pre[@]}" PYTHONMALLOC=malloc "$PY" -c \
    "import sys; sys.exit(0 if '$mapped' in open('/proc/self/maps').read() else 1)" ||
    fail "python3 does not map the pool ($mapped)"
  (cd "$work" && exec "${pre[@]}" PYTHONMALLOC=malloc "$PY" -m test --fail-env-changed \
    "${mods[@]}" >"$work/py.log" 2>&1) &
  local pid=$!
  bg_pids+=("$pid")
  [ "$mode" = poold ] && watch_live "$pid" 100000
  local rc=0
  wait "$pid" || rc=$?
  tail -n 15 "$work/py.log"
  [ "$rc" -eq 0 ] || fail "python3 -m test ${mods[*]} exited $rc under the preload"
  grep -q "Tests result: SUCCESS" "$work/py.log" || fail "no SUCCESS from python3 -m test"
}

sqlite_script() {
  local rows=200000
  cat <<EOF
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT, r REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $rows)
INSERT INTO t SELECT x, (x * 7919) % 1000,
  printf('name-%08d-%s', (x * 104729) % $rows, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)),
  x * 0.25 FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
UPDATE t SET s = s || '-updated' WHERE k < 100;
DELETE FROM t WHERE k % 7 = 3;
SELECT count(*), count(DISTINCT s), sum(r), min(s), max(s) FROM t;
SELECT k, count(*), total(r), min(s), max(s), length(group_concat(s, ','))
  FROM t GROUP BY k ORDER BY k;
SELECT s FROM t WHERE s BETWEEN 'name-00100000' AND 'name-00100050' ORDER BY s;
SELECT a.k, count(*) FROM t a JOIN t b ON a.id = b.id + 1 AND a.k = b.k GROUP BY a.k ORDER BY 2 DESC, 1 LIMIT 5;
.system grep -c -- '$mapped' /proc/\$PPID/maps >/dev/null && echo POOL-MAPPED || echo POOL-NOT-MAPPED
EOF
}

run_sqlite() {
  need sqlite3
  sqlite_script >"$work/w.sql"
  sqlite3 :memory: <"$work/w.sql" >"$work/plain.out"
  local before=0
  [ "$mode" = poold ] && before=$("$poolctl" --socket "$sock" stats --json |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["pool"]["allocations_total"])')
  "${pre[@]}" sqlite3 :memory: <"$work/w.sql" >"$work/pre.out"
  grep -q POOL-NOT-MAPPED "$work/plain.out" || fail "the plain run maps a pool?"
  grep -q POOL-MAPPED "$work/pre.out" || fail "sqlite3 did not map the pool: the preload did not take effect"
  if ! diff <(grep -v POOL- "$work/plain.out") <(grep -v POOL- "$work/pre.out") >/dev/null; then
    diff <(grep -v POOL- "$work/plain.out") <(grep -v POOL- "$work/pre.out") | head -20
    fail "sqlite3's output differs under the preload"
  fi
  echo "sqlite3: $(wc -l <"$work/pre.out") lines, identical with and without the preload"
  if [ "$mode" = poold ]; then
    local after
    after=$("$poolctl" --socket "$sock" stats --json |
      "$PY" -c 'import json,sys; print(json.load(sys.stdin)["pool"]["allocations_total"])')
    echo "sqlite3: $((after - before)) allocations on poold's pool"
    [ $((after - before)) -ge 100000 ] || fail "only $((after - before)) allocations reached poold's pool"
    [ "$(in_use_total)" -eq 0 ] || fail "blocks left in use after sqlite3 exited"
    books_idle "sqlite3"
  fi
}

run_redis() {
  need redis-server
  need redis-benchmark
  need redis-cli
  local rsock=$work/redis.sock n=20000
  [ "$long" = 1 ] && n=200000
  (cd "$work" && exec "${pre[@]}" redis-server --port 0 --unixsocket "$rsock" --unixsocketperm 700 \
    --save '' --appendonly no --dir "$work" --dbfilename dump.rdb --daemonize no \
    --logfile "$work/redis.log") &
  local rpid=$!
  bg_pids+=("$rpid")
  for _ in $(seq 200); do
    redis-cli -s "$rsock" ping >/dev/null 2>&1 && break
    kill -0 "$rpid" 2>/dev/null || { cat "$work/redis.log"; fail "redis-server exited at start"; }
    sleep 0.05
  done
  redis-cli -s "$rsock" ping | grep -q PONG || fail "redis-server does not answer"
  check_mapped "$rpid"
  redis-benchmark -s "$rsock" -n "$n" -r 100000 -c 20 -d 64 -q \
    -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset >"$work/bench.out" 2>&1 &
  local bpid=$!
  bg_pids+=("$bpid")
  [ "$mode" = poold ] && watch_live "$rpid" 50000
  wait "$bpid" || { cat "$work/bench.out"; fail "redis-benchmark failed"; }
  tr '\r' '\n' <"$work/bench.out" | grep -E "requests per second" | tail -n 13
  [ "$(tr '\r' '\n' <"$work/bench.out" | grep -c "requests per second")" -ge 13 ] ||
    fail "redis-benchmark did not finish every test"
  # A fork child (BGSAVE) writes the dataset while the parent serves.
  local keys
  keys=$(redis-cli -s "$rsock" dbsize)
  [ "$keys" -gt 1000 ] || fail "only $keys keys after the benchmark"
  redis-cli -s "$rsock" bgsave >/dev/null
  redis-cli -s "$rsock" set during-bgsave 1 >/dev/null
  for _ in $(seq 300); do
    redis-cli -s "$rsock" info persistence | grep -q "rdb_bgsave_in_progress:0" && break
    sleep 0.1
  done
  redis-cli -s "$rsock" info persistence | grep -q "rdb_last_bgsave_status:ok" ||
    { cat "$work/redis.log"; fail "BGSAVE failed under the preload"; }
  redis-check-rdb "$work/dump.rdb" >"$work/check.out" 2>&1 ||
    { cat "$work/check.out"; fail "the RDB the preloaded fork child wrote is corrupt"; }
  grep -q "RDB looks OK" "$work/check.out" || fail "redis-check-rdb did not say OK"
  echo "redis: $keys keys, BGSAVE ok, RDB checked"
  redis-cli -s "$rsock" shutdown nosave >/dev/null 2>&1 || true
  local rc=0
  wait "$rpid" || rc=$?
  [ "$rc" -eq 0 ] || { tail "$work/redis.log"; fail "redis-server exited $rc"; }
  if [ "$mode" = poold ]; then
    sleep 0.3 # poold reclaims at EOF
    [ "$(in_use_total)" -eq 0 ] || fail "blocks left in use after redis-server exited"
    books_idle "redis-server"
  fi
}

run_sigkill() {
  [ "$mode" = poold ] || skip "sigkill needs poold to reclaim (run it in poold mode)"
  # Keeps allocating and freeing (two threads) with ~100k blocks in use.
  "${pre[@]}" PYTHONMALLOC=malloc "$PY" -c '
import threading, time
keep = {}
def churn(tag):
    i = 0
    while True:
        keep[(tag, i % 60000)] = ("x" * (i % 300), [i])
        i += 1
for t in ("a", "b"):
    threading.Thread(target=churn, args=(t,), daemon=True).start()
time.sleep(600)' &
  local pid=$!
  bg_pids+=("$pid")
  local inuse=0
  for _ in $(seq 300); do
    inuse=$(proc_field "$pid" in_use)
    [ -n "$inuse" ] && [ "$inuse" -ge 100000 ] && break
    sleep 0.1
  done
  [ -n "$inuse" ] && [ "$inuse" -ge 100000 ] || fail "the victim never had 100k blocks in use ($inuse)"
  check_mapped "$pid"
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  echo "SIGKILLed pid $pid with $inuse blocks in use"
  local left=
  for _ in $(seq 100); do
    if [ -z "$(proc_field "$pid" pid)" ]; then
      left=$(in_use_total)
      [ "$left" -eq 0 ] && break
    fi
    sleep 0.1
  done
  "$poolctl" --socket "$sock" stats | tail -n 4
  [ "$left" = 0 ] || fail "$left blocks still in use after poold reclaimed pid $pid"
  books_idle "the reclaim of pid $pid"
  echo "poold reclaimed it: 0 blocks in use"
}

case "$case_" in
python) run_python ;;
sqlite) run_sqlite ;;
redis) run_redis ;;
sigkill) run_sigkill ;;
*) echo "usage: $0 python|sqlite|redis|sigkill embedded|poold PRELOAD POOLD POOLCTL" >&2; exit 2 ;;
esac
echo "PASS: $case_ ($mode)"
