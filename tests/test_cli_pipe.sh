#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_cli_pipe.sh POOLD POOLCTL: poolctl and a standard output that fails.
#   - the reader goes away (EPIPE): `poolctl stats --watch 1 | head -1`, and
#     every other mode, ends within 3 s with status 0 and no message;
#   - any other write error (stdout on /dev/full, or closed) is status 1
#     with a message, in every mode, `--watch` included.
# It starts its own poold on a temporary socket and segment, stops it by pid
# and removes both.
set -u
poold=$1
poolctl=$2
dir=$(mktemp -d /tmp/poold-t22-XXXXXX)
sock=$dir/poold.sock
shm=/poold-t22-$$
poold_pid=
fail=0

cleanup()
{
    if [[ -n $poold_pid ]]; then
        kill -TERM "$poold_pid" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$poold_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$poold_pid" 2>/dev/null
        wait "$poold_pid" 2>/dev/null
    fi
    rm -f "/dev/shm$shm"
    rm -rf "$dir"
}
trap cleanup EXIT

bad()
{
    echo "FAIL: $*"
    fail=1
}

ms() { echo $(($(date +%s%N) / 1000000)); }

if [[ -e /dev/shm$shm ]]; then
    echo "FAIL: /dev/shm$shm exists already; not ours to remove"
    trap - EXIT
    exit 1
fi
"$poold" --socket "$sock" --shm-name "$shm" --size 16M 2>"$dir/poold.log" &
poold_pid=$!
for _ in $(seq 500); do
    "$poolctl" -s "$sock" ping >/dev/null 2>&1 && break
    sleep 0.02
done
if ! "$poolctl" -s "$sock" ping >/dev/null; then
    echo "FAIL: poold did not answer within 10 s"
    cat "$dir/poold.log"
    exit 1
fi

# The reader leaves after its first line. `timeout 3` bounds poolctl: 124 if
# it still runs 3 s later.
pipe_case()
{
    local want_lines=$1
    shift
    local t0 t1 st
    t0=$(ms)
    timeout -k 1 3 "$poolctl" -s "$sock" "$@" 2>"$dir/err" | head -"$want_lines" >/dev/null
    st=("${PIPESTATUS[@]}")
    t1=$(ms)
    if [[ ${st[0]} != 0 ]]; then
        bad "poolctl $* | head -$want_lines: status ${st[0]} after $((t1 - t0)) ms, want 0" \
            "(124: still running after 3 s)"
    elif [[ -s $dir/err ]]; then
        bad "poolctl $* | head -$want_lines: a message on stderr: $(cat "$dir/err")"
    else
        echo "ok: poolctl $* | head -$want_lines: status 0, gone after $((t1 - t0)) ms"
    fi
}
pipe_case 1 stats --watch 1
pipe_case 3 stats --watch 1
pipe_case 1 stats --json --watch 1
pipe_case 1 stats --prometheus --watch 1
pipe_case 0 stats
pipe_case 0 procs
pipe_case 0 classes --json
pipe_case 0 ping

# Watching a poold that does not answer still notices the reader left.
t0=$(ms)
timeout -k 1 3 "$poolctl" -s "$dir/nobody.sock" stats --watch 1 2>/dev/null | head -c0
st=("${PIPESTATUS[@]}")
if [[ ${st[0]} != 0 ]]; then
    bad "poolctl stats --watch 1 (poold unreachable) | head -c0: status ${st[0]}, want 0"
else
    echo "ok: poolctl stats --watch 1 (poold unreachable) | head -c0: status 0," \
        "gone after $(($(ms) - t0)) ms"
fi

# Any other write error: status 1 and a message.
full_case()
{
    local how=$1 st
    shift
    if [[ $how == full ]]; then
        timeout -k 1 3 "$poolctl" -s "$sock" "$@" >/dev/full 2>"$dir/err"
    else
        timeout -k 1 3 "$poolctl" -s "$sock" "$@" >&- 2>"$dir/err"
    fi
    st=$?
    if [[ $st != 1 ]]; then
        bad "poolctl $* (stdout $how): status $st, want 1"
    elif ! grep -q "poolctl: cannot write the output: " "$dir/err"; then
        bad "poolctl $* (stdout $how): no message on stderr: $(cat "$dir/err")"
    else
        echo "ok: poolctl $* (stdout $how): status 1, $(cat "$dir/err")"
    fi
}
full_case full stats
full_case full stats --watch 1
full_case full stats --json
full_case full stats --prometheus --watch 1
full_case full procs
full_case full classes --json
full_case full ping
full_case full version
full_case full --help
full_case full --version
full_case closed ping
full_case closed stats --watch 1

exit $fail
