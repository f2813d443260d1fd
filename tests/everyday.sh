#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# everyday.sh PRELOAD POOLD POOLCTL POOL_WORKER POOL_CHECK [ROUNDS]
#
# Everyday programs on a live poold, as a shell user runs them with the
# preload library (ctest: test_everyday, labels integration;preload):
# wrapper scripts that exec (a chain of bash scripts with readlink and env,
# ending in an exec of python3, as version managers install), pipelines,
# subshells, background forks, python3 with threads, perl, sort, sed, awk,
# gzip, a program ending in _exit, a failed spawn (its child's _exit). Every case runs ROUNDS times (default 20) preloaded; each output
# must equal the plain run's. Then the pool must show what a healthy pool
# shows after clean exits and execs:
#   - no corruption reported (corrupt:0, no finding in poold's log),
#   - a new worker attaches and runs (pool_worker, errors 0),
#   - procs_reclaimed_total 0 (no crash counted), procs_exited_total at
#     least the number of preloaded runs, 0 processes attached,
#   - 0 bytes in use and exact books (pool_check --idle),
# and, while an exec chain's last program runs, `poolctl procs` shows it
# with its own thread only (the images before it gave theirs back).
# Exit 0 pass, 1 fail.
set -euo pipefail
preload=$(realpath "$1") poold=$(realpath "$2") poolctl=$(realpath "$3")
worker=$(realpath "$4") check=$(realpath "$5")
rounds=${6:-20}

fail() {
  echo "FAIL: $*" >&2
  if [ -f "${work:-}/poold.log" ]; then tail -20 "$work/poold.log" >&2; fi
  exit 1
}
trap 'fail "line $LINENO: a command failed"' ERR
# Debian's python3 by its path: a version manager's shim earlier in PATH
# would add seconds per run (the wrapper below plays that part).
PY=/usr/bin/python3
for p in $PY perl gzip sort awk sed; do
  command -v "$p" >/dev/null || fail "$p is not installed (bash scripts/deps.sh installs it)"
done

work=$(mktemp -d /tmp/poold-everyday-XXXXXX)
shm=/poold-everyday-$$
sock=$work/poold.sock
poold_pid=
cleanup() {
  if [ -n "$poold_pid" ]; then
    kill -TERM "$poold_pid" 2>/dev/null || true
    wait "$poold_pid" 2>/dev/null || true
  fi
  rm -f "/dev/shm$shm"
  rm -rf "$work"
}
trap cleanup EXIT

"$poold" --socket "$sock" --shm-name "$shm" --size 64M --log-level info 2>"$work/poold.log" &
poold_pid=$!
for _ in $(seq 200); do
  "$poolctl" --socket "$sock" ping >/dev/null 2>&1 && break
  kill -0 "$poold_pid" 2>/dev/null || fail "poold exited at start"
  sleep 0.05
done
"$poolctl" --socket "$sock" ping >/dev/null || fail "poold did not answer within 10 s"

# A version manager's wrapper: bash scripts, readlink and env on the way,
# then an exec of the interpreter.
mkdir -p "$work/bin"
cat >"$work/bin/python3" <<EOF
#!/usr/bin/env bash
set -e
here=\$(readlink -f "\${BASH_SOURCE[0]}")
exec env WRAPPED=1 "\${here%/*}/python3-inner" "\$@"
EOF
cat >"$work/bin/python3-inner" <<EOF
#!/usr/bin/env bash
set -e
[ -n "\${WRAPPED:-}" ] || exit 3
exec env env $PY "\$@"
EOF
chmod +x "$work/bin/python3" "$work/bin/python3-inner"
W=$work/bin/python3
printf '%s\n' "the quick brown fox" "jumps over" "the lazy dog" >"$work/words"

cases=(
  "$W -c 'import sys, json; print(json.dumps(sorted({str(i): i * i for i in range(3000)}.items())[:5]))'"
  "$W -c 'import threading, hashlib
out = [None] * 4
def work(k): out[k] = hashlib.sha256(str(list(range(k * 5000))).encode()).hexdigest()
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]; print(out)'"
  "bash -c 'exec env env $PY -c \"print(sum(range(100000)))\"'"
  "seq 1 20000 | sort -r | uniq | gzip -c | gunzip -c | md5sum"
  "( cd / && ls ) | sort | head -5; ( echo sub; ( echo subsub ) )"
  "{ for i in 1 2 3 4; do ( echo fork \$i ) & done; wait; } | sort"
  "perl -e 'my %h; \$h{\$_} = \$_ * 2 for 1 .. 20000; my @k = sort { \$a <=> \$b } keys %h; print scalar(@k), \" \$k[-1]\\n\"'"
  "awk '{ n += NF } END { print n }' $work/words; sed -e 's/o/0/g' $work/words | tr a-z A-Z"
  "sh -c 'ls /usr/bin | sort | wc -l' | cat"
  "bash -c 'x=\$(echo inner); echo \"\$x\" | rev'"
  "$PY -c 'import os, subprocess, sys
print(subprocess.run([\"echo\", \"spawned\"], capture_output=True, text=True).stdout.strip())
try: subprocess.run([\"/nonexistent/program\"])
except OSError as e: print(\"spawn failed:\", e.errno)
sys.stdout.flush(); os._exit(0)'"
)

n=0
for c in "${cases[@]}"; do
  plain=$(env -u LD_PRELOAD bash -c "$c" 2>&1) || fail "plain run failed: $c"
  for _ in $(seq "$rounds"); do
    out=$(POOLD_SOCKET=$sock LD_PRELOAD=$preload bash -c "$c" 2>&1) ||
      fail "preloaded run failed: $c"
    [ "$out" = "$plain" ] || fail "output differs from the plain run: $c
plain:     $plain
preloaded: $out"
    n=$((n + 1))
  done
done
echo "$n preloaded runs of ${#cases[@]} cases, outputs identical to the plain runs"

# The last program of an exec chain, seen live: its own thread only.
fifo=$work/ready
mkfifo "$fifo"
POOLD_SOCKET=$sock LD_PRELOAD=$preload bash -c \
  "ls >/dev/null; exec env env $PY -c 'import time; open(\"$fifo\", \"w\").write(\"ready\\n\"); time.sleep(3)'" &
chain=$!
read -r _ <"$fifo"
row=$("$poolctl" --socket "$sock" procs --json | $PY -c '
import json, sys
for p in json.load(sys.stdin)["processes"]:
    if p["pid"] == int(sys.argv[1]): print(p["name"], p["threads"])' "$chain")
wait "$chain"
[ "$row" = "python3 1" ] || fail "exec chain: poolctl procs shows '$row' for pid $chain, not 'python3 1'"
echo "exec chain: poolctl procs shows the final python3 with 1 thread"

# A new worker is served.
POOLD_SOCKET=$sock "$worker" --socket "$sock" --iterations 2 >"$work/worker.out" 2>&1 ||
  fail "a new worker after the runs: $(cat "$work/worker.out")"
grep -q 'errors=0' "$work/worker.out" || fail "worker: $(cat "$work/worker.out")"

stat() {
  "$poolctl" --socket "$sock" stats --json |
    $PY -c 'import json, sys; print(json.load(sys.stdin)["pool"][sys.argv[1]])' "$1"
}
# Reclaims follow the deaths by pidfd, at once; allow the sweep's period.
for _ in $(seq 100); do
  [ "$(stat procs_attached)" = 0 ] && break
  sleep 0.1
done
corrupt=$(stat corrupt) reclaimed=$(stat procs_reclaimed_total) exited=$(stat procs_exited_total)
attached=$(stat procs_attached) in_use=$(stat bytes_in_use)
echo "corrupt=$corrupt procs_reclaimed_total=$reclaimed procs_exited_total=$exited" \
  "procs_attached=$attached bytes_in_use=$in_use"
[ "$corrupt" = 0 ] || fail "poold reports the segment corrupt"
! grep -q "is corrupt" "$work/poold.log" || fail "poold logged a corruption finding"
[ "$reclaimed" = 0 ] || fail "$reclaimed processes counted as crashed after clean exits and execs"
[ "$exited" -ge "$n" ] || fail "procs_exited_total $exited is below the $n preloaded runs"
[ "$attached" = 0 ] || fail "$attached processes still attached"
[ "$in_use" = 0 ] || fail "$in_use bytes still in use"
"$check" --idle "$shm" || fail "pool_check: the books are not exact at rest"
echo "PASS"
