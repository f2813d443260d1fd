#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_completion.sh COMPLETION_FILE POOLCTL: the bash completion of poolctl
# (tools/poolctl.bash) offers what poolctl accepts.
#   - completions at each position (commands, global options, per-command
#     options, a path after --socket);
#   - the commands it offers are exactly those `poolctl --help` lists;
#   - every option it offers for a command is one poolctl's parser takes
#     (poolctl answers it with "cannot reach poold", exit 3, not a usage
#     error, exit 2).
set -u
comp_file=$1
poolctl=$2
# shellcheck source=/dev/null
source "$comp_file"
fail=0

comp()
{
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _poolctl
    echo "${COMPREPLY[*]}"
}

expect()
{
    local want=$1 got
    shift
    got=$(comp "$@")
    if [[ $got != "$want" ]]; then
        echo "FAIL: '$*<TAB>' completes to '$got', want '$want'"
        fail=1
    else
        echo "ok: '$*<TAB>' -> '$got'"
    fi
}

expect "stats top procs show warnings classes chans ping version help" poolctl ""
expect "stats" poolctl st
expect "procs ping" poolctl p
expect "--delay --sort --iterations --help" poolctl top ""
expect "--json --sort --help" poolctl procs ""
expect "inuse growth pid" poolctl procs --sort ""
expect "inuse growth allocs pid" poolctl top --sort ""
expect "--json --help" poolctl procs --sort growth ""
expect "--help" poolctl warnings ""
expect "--socket --help --version" poolctl -
expect "--json --prometheus --watch --help" poolctl stats ""
expect "--json --prometheus --watch --help" poolctl stats -
expect "--json --sort --help" poolctl procs --
expect "--json --help" poolctl --socket /tmp/x.sock classes ""
expect "--json --sort --help" poolctl -s /tmp/x.sock procs ""
expect "--watch --help" poolctl stats --json ""
expect "--json --prometheus --help" poolctl stats --watch 2 ""
expect "1 2 5 10" poolctl stats --watch ""
expect "--help" poolctl classes --json ""
expect "" poolctl ping ""
expect "" poolctl version -

# A path after --socket.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
touch "$dir/poold.sock" "$dir/other"
expect "$dir/poold.sock" poolctl --socket "$dir/poold"
expect "$dir/poold.sock" poolctl -s "$dir/poold"

# The commands are those of `poolctl --help`.
want=$("$poolctl" --help | sed -n '/^Commands:/,/^$/p' | awk '/^  [a-z]/ {print $1}' | sort | tr '\n' ' ')
got=$(comp poolctl "" | tr ' ' '\n' | sort | tr '\n' ' ')
if [[ $want != "$got" ]]; then
    echo "FAIL: poolctl --help lists commands '$want', the completion offers '$got'"
    fail=1
fi

# Every option offered is accepted by poolctl (no poold at this socket:
# exit 3 once the arguments parsed; 2 would be a usage error). --watch
# keeps trying an unreachable poold until stopped: killed by timeout (124).
for cmd in stats top procs classes warnings; do
    for opt in $(comp poolctl "$cmd" -); do
        [[ $opt == --help ]] && continue
        args=("$opt")
        want=3
        case $opt in
        --watch) args=(--watch 1) want=124 ;;
        --delay) args=(--delay 1 --iterations 1) ;;
        --iterations) args=(--iterations 1) ;;
        --sort) args=(--sort growth) ;;
        esac
        POOLD_SOCKET=$dir/none timeout -k 1 2 "$poolctl" "$cmd" "${args[@]}" </dev/null >/dev/null 2>&1
        rc=$?
        if [[ $rc != "$want" ]]; then
            echo "FAIL: poolctl $cmd ${args[*]} exits $rc, want $want (parsed, poold unreachable)"
            fail=1
        fi
    done
    "$poolctl" "$cmd" --help >/dev/null 2>&1 || { echo "FAIL: poolctl $cmd --help"; fail=1; }
done
POOLD_SOCKET=$dir/none "$poolctl" procs --prometheus >/dev/null 2>&1
[[ $? == 2 ]] || { echo "FAIL: poolctl procs --prometheus is not a usage error"; fail=1; }
POOLD_SOCKET=$dir/none "$poolctl" show 123 >/dev/null 2>&1
[[ $? == 3 ]] || { echo "FAIL: poolctl show 123 does not parse (poold unreachable: 3)"; fail=1; }

[[ $fail == 0 ]] && echo "all completion checks passed"
exit $fail
