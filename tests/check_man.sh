#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check_man.sh MAN_DIR POOLCLIENT_H [POOLD POOLCTL]: test_man (labels unit;docs).
#
# 1. Every generated man page renders with `groff -man -ww` without a single
#    warning or error.
# 2. The pages agree with the programs and the header: poold(8) names every
#    flag of `poold --help` and no flag poold lacks; poold.conf(5) names
#    every directive; poolctl(1) every command and option of
#    `poolctl --help`; poolclient(3) every function of poolclient.h, plus
#    pool_handoff and pool_adopt (DESIGN.md).
# Exit 77 (skipped) when the pages were not built (no pandoc) or groff is
# missing.
set -uo pipefail
dir=$1 header=$2 poold=${3:-} poolctl=${4:-}
pages=(poold.8 poolctl.1 poolclient.3 poold.conf.5)
fail=0
bad() { echo "FAIL: $*" >&2; fail=1; }

if ! command -v groff >/dev/null; then
    echo "SKIP: groff not installed (apt-get install groff-base)"
    exit 77
fi
for p in "${pages[@]}"; do
    if [ ! -f "$dir/$p" ]; then
        echo "SKIP: $dir/$p was not built (pandoc not found when cmake ran)"
        exit 77
    fi
done

# 1. groff -ww: all warnings on; -z: format, print nothing.
for p in "${pages[@]}"; do
    out=$(groff -man -Tutf8 -ww -z "$dir/$p" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
        bad "groff -ww $p (exit $rc):"
        printf '%s\n' "$out" >&2
    else
        echo "ok: groff -ww $p renders without a warning"
    fi
done

# The roff text with \- back to '-' and font escapes removed.
text() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\f\[[A-Z]*\]//g' "$dir/$1"; }
# has PAGE WORD: WORD appears in PAGE as a whole word (flags, names).
# (grep without -q reads all its input: no SIGPIPE to fail the pipeline.)
has() { text "$1" | grep -E -- "(^|[^A-Za-z0-9_-])$2([^A-Za-z0-9_-]|\$)" >/dev/null; }
# options PAGE: the flags named in PAGE's SYNOPSIS and OPTIONS sections.
options() {
    text "$1" | awk '/^\.SH /{on = ($2 == "SYNOPSIS" || $2 == "OPTIONS")} on' |
        grep -oE -- '--[a-z][a-z-]*' | sort -u
}

# 2. Flags, directives, commands, functions.
if [ -n "$poold" ]; then
    help=$("$poold" --help) || bad "poold --help failed"
    flags=$(grep -oE -- '--[a-z][a-z-]*' <<<"$help" | sort -u)
    for f in $flags; do
        has poold.8 "$f" || bad "poold.8 does not document $f (poold --help has it)"
    done
    # Flags documented in poold.8 must exist.
    for f in $(options poold.8); do
        grep -qx -- "$f" <<<"$flags" || bad "poold.8 documents $f, which poold --help lacks"
    done
    for f in $flags; do
        case $f in --config | --help | --version) continue ;; esac
        d=${f#--}
        d=${d//-/_}
        # a directive is documented as a term: "name = value" at a line start
        text poold.conf.5 | grep -E "^$d = " >/dev/null ||
            bad "poold.conf.5 does not document directive $d"
    done
    text poold.conf.5 | grep -E "^orphans = " >/dev/null ||
        bad "poold.conf.5 does not document directive orphans"
    echo "ok: poold.8 and poold.conf.5 against poold --help ($(wc -w <<<"$flags") flags)"
fi
if [ -n "$poolctl" ]; then
    help=$("$poolctl" --help) || bad "poolctl --help failed"
    cmds=$(sed -n '/^Commands:/,/^$/p' <<<"$help" | grep -oE '^  [a-z]+' | tr -d ' ')
    [ -n "$cmds" ] || bad "no commands found in poolctl --help"
    for c in $cmds; do
        has poolctl.1 "$c" || bad "poolctl.1 does not document command $c"
    done
    opts=$(grep -oE -- '(^|[ [])--?[a-zA-Z][a-z-]*' <<<"$help" | grep -oE -- '--?[a-zA-Z][a-z-]*' | sort -u)
    for o in $opts; do
        has poolctl.1 "$o" || bad "poolctl.1 does not document option $o"
    done
    for o in $(options poolctl.1); do
        grep -qx -- "$o" <<<"$opts" || bad "poolctl.1 documents $o, which poolctl --help lacks"
    done
    echo "ok: poolctl.1 against poolctl --help ($(wc -w <<<"$cmds") commands, $(wc -w <<<"$opts") options)"
fi
funcs=$(grep -oE '\bpool_[a-z_]+\(' "$header" | tr -d '(' | sort -u)
[ -n "$funcs" ] || bad "no functions found in $header"
for fn in $funcs pool_handoff pool_adopt; do
    has poolclient.3 "$fn" || bad "poolclient.3 does not document $fn"
    # each function is in the NAME section, so that man pool_xxx finds it
    sed -n '/^\.SH NAME/,/^\.SH SYNOPSIS/p' "$dir/poolclient.3" | grep -w -- "$fn" >/dev/null ||
        bad "poolclient.3: $fn is not in NAME"
done
echo "ok: poolclient.3 against $(basename "$header") ($(wc -w <<<"$funcs") functions + handoff, adopt)"
exit $fail
