#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_big_segment.sh POOLD POOLCTL [PING_MS]: poold answers at once with a
# large segment, whose prefault runs in the background.
#   1. poold creates a 2 GiB segment: `poolctl ping` answers within PING_MS
#      (1000) of the socket appearing; SIGTERM while the prefault runs stops poold
#      within 2 s, status 0, and the log says where the prefault stopped;
#   2. poold adopts that segment: ping within PING_MS again, then the log says
#      how long the prefault took; SIGTERM, status 0.
# It runs poold with --prefault all (with the default, none, only the
# tables are prefaulted, which takes no time): the segment is reserved at
# creation (posix_fallocate), so /dev/shm needs 2 GiB free: without them
# the test fails and says so, it never skips. It
# starts its own poold on a temporary socket and segment, stops it by pid
# and removes both.
set -u
poold=$1
poolctl=$2
ping_ms=${3:-1000}
size_gib=2
dir=$(mktemp -d /tmp/poold-t22-XXXXXX)
sock=$dir/poold.sock
shm=/poold-t22-$$
poold_pid=
fail=0

cleanup()
{
    if [[ -n $poold_pid ]]; then
        kill -KILL "$poold_pid" 2>/dev/null
        wait "$poold_pid" 2>/dev/null
    fi
    rm -f "/dev/shm$shm"
    rm -rf "$dir"
}
trap cleanup EXIT

ms() { echo $(($(date +%s%N) / 1000000)); }

if [[ -e /dev/shm$shm ]]; then
    echo "FAIL: /dev/shm$shm exists already; not ours to remove"
    trap - EXIT
    exit 1
fi
avail=$(df --output=avail -B1 /dev/shm | tail -1)
need=$(((size_gib << 30) + (64 << 20)))
if ((avail < need)); then
    echo "FAIL: /dev/shm has $((avail >> 20)) MiB free; this test needs $((need >> 20)) MiB" \
        "for a ${size_gib} GiB segment (enlarge it: mount -o remount,size=4G /dev/shm)"
    exit 1
fi

# Start poold; the socket appears; ping must answer within ping_ms of that.
start_and_ping()
{
    local what=$1 t0 ts t1
    rm -f "$sock"
    t0=$(ms)
    "$poold" --socket "$sock" --shm-name "$shm" --size "${size_gib}G" --prefault all \
        2>>"$dir/poold.log" &
    poold_pid=$!
    while [[ ! -S $sock ]] && (($(ms) - t0 < 10000)); do
        if ! kill -0 "$poold_pid" 2>/dev/null; then
            echo "FAIL: poold ($what) exited at start:"
            cat "$dir/poold.log"
            exit 1
        fi
        sleep 0.005
    done
    ts=$(ms)
    if [[ ! -S $sock ]]; then
        echo "FAIL: poold ($what): no socket after 10 s"
        cat "$dir/poold.log"
        exit 1
    fi
    timeout -k 1 10 "$poolctl" -s "$sock" ping >/dev/null
    local st=$?
    t1=$(ms)
    if [[ $st != 0 || $((t1 - ts)) -ge $ping_ms ]]; then
        echo "FAIL: poold ($what, ${size_gib} GiB): ping status $st $((t1 - ts)) ms after the" \
            "socket appeared ($((ts - t0)) ms after start); want 0 within $ping_ms ms"
        fail=1
    else
        echo "ok: poold ($what, ${size_gib} GiB): socket after $((ts - t0)) ms, ping answered" \
            "$((t1 - ts)) ms later"
    fi
}

# SIGTERM, then poold must be gone within `limit_ms` with status 0.
stop_poold()
{
    local what=$1 limit_ms=$2 t0 st
    t0=$(ms)
    kill -TERM "$poold_pid"
    while kill -0 "$poold_pid" 2>/dev/null && (($(ms) - t0 < limit_ms)); do
        sleep 0.01
    done
    if kill -0 "$poold_pid" 2>/dev/null; then
        echo "FAIL: poold ($what) still runs $limit_ms ms after SIGTERM"
        fail=1
        return
    fi
    wait "$poold_pid"
    st=$?
    poold_pid=
    if [[ $st != 0 ]]; then
        echo "FAIL: poold ($what) exit status $st, want 0"
        fail=1
    else
        echo "ok: poold ($what) stopped $(($(ms) - t0)) ms after SIGTERM"
    fi
}

# 1. Create; stop while the prefault runs.
start_and_ping created
if grep -q "prefaulted segment $shm" "$dir/poold.log"; then
    echo "note: the prefault was done before the first ping (a fast machine)"
fi
stop_poold "created, prefault running" 2000
grep -E "prefault|created segment" "$dir/poold.log"

# 2. Adopt; let the prefault finish and check the log says how long it took.
start_and_ping adopted
t0=$(ms)
while ! grep -q "prefaulted segment $shm: [0-9]* MiB in [0-9.]* s" "$dir/poold.log" &&
    (($(ms) - t0 < 60000)); do
    sleep 0.05
done
if ! line=$(grep "prefaulted segment $shm: " "$dir/poold.log"); then
    echo "FAIL: no 'prefaulted segment' line in poold's log within 60 s"
    fail=1
else
    echo "ok: the log says: ${line#* info  }"
fi
stop_poold adopted 5000

if ((fail)); then
    echo "--- poold's log"
    cat "$dir/poold.log"
fi
exit $fail
