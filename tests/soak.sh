#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/soak.sh [DURATION_SECONDS] [BUILD_DIR]: a soak of poold (not in the
# default ctest run; CI runs a short form).
#
# For DURATION seconds (default 600): WORKERS pool_worker processes (default
# 4) at full speed, each run lasting 1-6 s, a third of them SIGKILLed at a
# random moment and all restarted; `poolctl stats --json` every 100 ms; poold
# itself restarted (SIGTERM or SIGKILL, alternately) every RESTART seconds
# (default DURATION/4). poold's VmRSS and open descriptors are sampled every
# 2 s. At the end every worker is killed, poold reclaims them, and
# tools/pool_check holds the segment's counters to a walk of its lists,
# caches and owner bytes: 0 in use, 0 in transit, books exact.
#
# Pass/fail: every worker lane made allocations (a soak whose workers never
# attached did no work and proves nothing); a worker that could not attach
# (exit 3) is an error unless a poold restart overlapped its run; the books
# are exact and idle; within the last poold's life the
# RSS grew by at most RSS_SLACK_KB (default 2048) from its sample after
# 10 s, and its descriptors never exceeded the first sample by more than
# 2*WORKERS+4 (connections and pidfds of live workers); no worker reported
# an error (a tag changed, an allocation failed); poolctl answered every
# poll made while poold was up.
set -u
DURATION=${1:-600}
BUILD=${2:-build}
WORKERS=${WORKERS:-4}
RESTART=${RESTART:-$((DURATION / 4))}
RSS_SLACK_KB=${RSS_SLACK_KB:-2048}
cd "$(dirname "$0")/.."
POOLD=$BUILD/daemon/poold
POOLCTL=$BUILD/tools/poolctl
WORKER=$BUILD/tools/pool_worker
CHECK=$BUILD/tools/pool_check
for b in "$POOLD" "$POOLCTL" "$WORKER" "$CHECK"; do
    [ -x "$b" ] || { echo "soak: $b not built (cmake --build $BUILD)" >&2; exit 2; }
done
DIR=$(mktemp -d /tmp/poold-soak-XXXXXX)
SOCK=$DIR/poold.sock
SHM=/poold-soak-$$
LOG=$DIR/poold.log
SAMPLES=$DIR/samples.csv
export POOLD_SOCKET=$SOCK
rm -f "/dev/shm${SHM}"

poold_pid=
start_poold() {
    "$POOLD" --socket "$SOCK" --shm-name "$SHM" --size 64M --log-level warn >>"$LOG" 2>&1 &
    poold_pid=$!
    for _ in $(seq 100); do
        "$POOLCTL" ping >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "soak: poold did not answer" >&2
    return 1
}

cleanup() {
    [ -n "${pids_file:-}" ] && [ -f "$pids_file" ] && while read -r p; do
        kill -9 "$p" 2>/dev/null
    done <"$pids_file"
    for j in $(jobs -p); do kill -9 "$j" 2>/dev/null; done
    [ -n "$poold_pid" ] && kill -9 "$poold_pid" 2>/dev/null
    wait 2>/dev/null
    rm -f "/dev/shm${SHM}"
}
trap cleanup EXIT

echo "soak: ${DURATION}s, $WORKERS workers, poold restarted every ${RESTART}s, in $DIR"
start_poold || exit 1
stop_at=$(($(date +%s) + DURATION))
pids_file=$DIR/pids
: >"$pids_file"

# One worker lane: run, sometimes kill, again; count runs, kills, errors.
lane() {
    local i=$1 runs=0 kills=0 errs=0
    while [ "$(date +%s)" -lt "$stop_at" ]; do
        local secs=$((1 + RANDOM % 6)) hold=$((RANDOM % 9)) t_start rc killed=0
        t_start=$(date +%s)
        "$WORKER" --socket "$SOCK" --seconds "$secs" --rounds 500 --hold "$hold" --no-detach \
            >>"$DIR/worker$i.out" 2>&1 &
        local w=$!
        echo "$w" >>"$pids_file"
        runs=$((runs + 1))
        if [ $((RANDOM % 3)) -eq 0 ]; then
            sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
            sleep $((RANDOM % secs))
            kill -9 "$w" 2>/dev/null && killed=1 && kills=$((kills + 1))
        fi
        wait "$w" 2>/dev/null
        rc=$?
        # The final SIGKILL of every worker is no error; a SIGKILL of ours
        # neither. 3: could not attach, judged at the end against the
        # restart windows (poold restarting has no socket for a moment).
        if [ "$killed" -eq 1 ] || [ -e "$DIR/ending" ] || [ "$rc" -eq 0 ]; then
            :
        elif [ "$rc" -eq 3 ]; then
            echo "$i $runs $t_start $(date +%s)" >>"$DIR/noattach"
        else
            errs=$((errs + 1))
            echo "soak: worker lane $i run $runs exit $rc" >>"$DIR/errors"
        fi
    done
    echo "$runs $kills $errs" >"$DIR/lane$i"
}
lane_pids=
for i in $(seq "$WORKERS"); do
    lane "$i" &
    lane_pids="$lane_pids $!"
done

# poolctl stats --json every 100 ms; a failure counts only while poold was up.
poller() {
    local ok=0 bad=0 down=0
    while [ "$(date +%s)" -lt "$stop_at" ]; do
        if "$POOLCTL" stats --json >"$DIR/last.json" 2>"$DIR/last.err"; then
            ok=$((ok + 1))
        elif [ -e "$DIR/restarting" ]; then
            down=$((down + 1))
        else
            bad=$((bad + 1))
            cp "$DIR/last.err" "$DIR/poll-fail.$bad" 2>/dev/null
        fi
        sleep 0.1
    done
    echo "$ok $bad $down" >"$DIR/poller"
}
poller &
lane_pids="$lane_pids $!"

# Sample poold's RSS and descriptors; restart it now and then.
echo "t_s,pid,vmrss_kb,fds" >"$SAMPLES"
t0=$(date +%s)
next_restart=$((t0 + RESTART))
restarts=0
while [ "$(date +%s)" -lt "$stop_at" ]; do
    now=$(date +%s)
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$poold_pid/status" 2>/dev/null)
    fds=$(ls "/proc/$poold_pid/fd" 2>/dev/null | wc -l)
    [ -n "$rss" ] && echo "$((now - t0)),$poold_pid,$rss,$fds" >>"$SAMPLES"
    if [ "$now" -ge "$next_restart" ] && [ $((stop_at - now)) -gt 20 ]; then
        touch "$DIR/restarting"
        restart_t0=$(date +%s)
        if [ $((restarts % 2)) -eq 0 ]; then kill -TERM "$poold_pid"; else kill -KILL "$poold_pid"; fi
        wait "$poold_pid" 2>/dev/null
        start_poold || exit 1
        rm -f "$DIR/restarting"
        echo "$restart_t0 $(date +%s)" >>"$DIR/restarts"
        restarts=$((restarts + 1))
        next_restart=$((now + RESTART))
    fi
    sleep 2
done

# The end: kill whatever still runs, let poold reclaim, check the books.
touch "$DIR/ending"
while read -r p; do kill -9 "$p" 2>/dev/null; done <"$pids_file"
wait $lane_pids 2>/dev/null
while read -r p; do kill -9 "$p" 2>/dev/null; done <"$pids_file"
sleep 0.5
"$CHECK" --idle --wait 20 "$SHM" >"$DIR/check.out" 2>&1
check_rc=$?
fds_end=$(ls "/proc/$poold_pid/fd" 2>/dev/null | wc -l)
rss_end=$(awk '/^VmRSS:/ {print $2}' "/proc/$poold_pid/status" 2>/dev/null)
kill -TERM "$poold_pid"
wait "$poold_pid" 2>/dev/null
poold_rc=$?
poold_pid=

runs=0 kills=0 errs=0
for i in $(seq "$WORKERS"); do
    read -r r k e <"$DIR/lane$i"
    runs=$((runs + r)) kills=$((kills + k)) errs=$((errs + e))
done
read -r polls_ok polls_bad polls_down <"$DIR/poller"
# Attach failures no restart explains (a second of slack either side: the
# clock read here has whole seconds).
touch "$DIR/noattach" "$DIR/restarts"
noattach=$(wc -l <"$DIR/noattach")
noattach_bad=$(awk -v rf="$DIR/restarts" '
    BEGIN { n = 0; while ((getline l < rf) > 0) { split(l, x, " "); a[n] = x[1]; b[n] = x[2]; n++ } }
    { ok = 0; for (k = 0; k < n; k++) if ($3 <= b[k] + 1 && $4 >= a[k] - 1) ok = 1
      if (!ok) { bad++; print "soak: worker lane " $1 " run " $2 " could not attach" > "/dev/stderr" } }
    END { print bad + 0 }' "$DIR/noattach")
# The work done: allocations reported by the runs that finished, per lane.
allocs=0 idle_lanes=0
for i in $(seq "$WORKERS"); do
    a=$(grep -ho ' allocs=[0-9]*' "$DIR/worker$i.out" 2>/dev/null | awk -F= '{ s += $2 } END { print s + 0 }')
    [ "$a" -gt 0 ] || idle_lanes=$((idle_lanes + 1))
    allocs=$((allocs + a))
done
# The last poold's samples: from 10 s into its life.
last_pid=$(tail -n1 "$SAMPLES" | cut -d, -f2)
read -r first_t rss0 fds0 rss_min rss_max fds_max n <<<"$(awk -F, -v p="$last_pid" '
    $2 == p { if (!s) s = $1; if ($1 - s < 10) next;
              if (!n) { t = $1; r0 = $3; f0 = $4; rmin = $3 }
              n++; if ($3 > rmax) rmax = $3; if ($3 < rmin) rmin = $3; if ($4 > fmax) fmax = $4 }
    END { print t + 0, r0 + 0, f0 + 0, rmin + 0, rmax + 0, fmax + 0, n + 0 }' "$SAMPLES")"
all=$(awk -F, 'NR > 1 { n++; if ($3 > m) m = $3; if ($4 > f) f = $4 } END { print n + 0, m + 0, f + 0 }' "$SAMPLES")
log_lines=$(wc -l <"$LOG")

echo "soak: $(cat "$DIR/check.out" | tr '\n' ' ')"
echo "soak: worker runs $runs, SIGKILLed $kills, worker errors $errs, could not attach $noattach ($noattach_bad outside a restart), allocations $allocs; poold restarts $restarts (exit of the last: $poold_rc)"
echo "soak: poolctl stats --json polls ok $polls_ok, failed while up $polls_bad, while restarting $polls_down"
echo "soak: last poold (pid $last_pid), $n samples from t=${first_t}s: VmRSS ${rss0} kB at start, min ${rss_min}, max ${rss_max}, at end ${rss_end:-?} kB; fds ${fds0} at start, max ${fds_max}, at end ${fds_end}"
echo "soak: all samples (count, max VmRSS kB, max fds): $all; poold log lines $log_lines"
cp "$SAMPLES" "$BUILD/soak-samples.csv" 2>/dev/null && echo "soak: samples kept in $BUILD/soak-samples.csv"

fail=0
[ "$check_rc" -eq 0 ] || { echo "soak: FAIL: books not exact or not idle" >&2; fail=1; }
[ "$errs" -eq 0 ] || { echo "soak: FAIL: $errs worker runs reported errors" >&2; fail=1; }
[ "$noattach_bad" -eq 0 ] ||
    { echo "soak: FAIL: $noattach_bad worker runs could not attach while poold was up" >&2; fail=1; }
[ "$idle_lanes" -eq 0 ] && [ "$allocs" -gt 0 ] ||
    { echo "soak: FAIL: $idle_lanes of $WORKERS worker lanes made no allocation" >&2; fail=1; }
[ "$polls_bad" -eq 0 ] || { echo "soak: FAIL: poolctl failed $polls_bad times while poold was up" >&2; fail=1; }
[ "$poold_rc" -eq 0 ] || { echo "soak: FAIL: poold exited $poold_rc on SIGTERM" >&2; fail=1; }
if [ "$n" -ge 2 ]; then
    [ $((rss_max - rss0)) -le "$RSS_SLACK_KB" ] ||
        { echo "soak: FAIL: VmRSS grew by $((rss_max - rss0)) kB" >&2; fail=1; }
    [ "$fds_max" -le $((fds0 + 2 * WORKERS + 4)) ] ||
        { echo "soak: FAIL: descriptors grew from $fds0 to $fds_max" >&2; fail=1; }
fi
[ "$fail" -eq 0 ] && echo "soak: PASS" && rm -rf "$DIR"
exit "$fail"
