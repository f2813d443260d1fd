#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# check_docs.sh SRC_DIR POOLD POOLCTL: test_docs (labels unit;docs).
#
# One truth for every option and setting, besides the man pages
# (check_man.sh):
#   1. every setting of `poold --help` is a flag in README.md's synopsis,
#      a `key` of its settings table, and a line `key = ...` (or `;key =`)
#      of daemon/poold.conf.example;
#   2. every command and option of `poolctl --help` is in README.md;
#   3. every environment variable the programs and the library read
#      (getenv("POOLD_...")) is in README.md and in a man page; an older
#      POOL_ name still read is documented as such ("still read");
#   4. the example config loads: poold accepts it (with its comments).
set -uo pipefail
src=$1 poold=$2 poolctl=$3
readme=$src/README.md example=$src/daemon/poold.conf.example man=$src/docs/man
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# 1. poold's settings.
help=$("$poold" --help) || bad "poold --help failed"
flags=$(grep -oE -- '^  --[a-z][a-z-]*' <<<"$help" | tr -d ' ' | sort -u)
[ -n "$flags" ] || bad "no flags in poold --help"
n=0
for f in $flags; do
    case $f in --help | --version) continue ;; esac
    grep -qE -- "\[$f( |\])" "$readme" || bad "README.md: the poold synopsis lacks $f"
    [[ $f == --config ]] && continue
    key=${f#--}
    key=${key//-/_}
    grep -qE "\`$key\`" "$readme" || bad "README.md: the settings table lacks \`$key\`"
    grep -qE "^;?$key = " "$example" || bad "poold.conf.example lacks a line '$key = ...'"
    n=$((n + 1))
done
echo "ok: $n poold settings in README.md and poold.conf.example"

# 2. poolctl's commands and options.
help=$("$poolctl" --help) || bad "poolctl --help failed"
cmds=$(sed -n '/^Commands:/,/^$/p' <<<"$help" | grep -oE '^  [a-z]+' | tr -d ' ')
[ -n "$cmds" ] || bad "no commands in poolctl --help"
for c in $cmds; do
    [[ $c == help ]] && continue
    grep -qE "poolctl( \[--socket PATH\])? $c\b|\`poolctl $c|\| $c( |\b)" "$readme" ||
        bad "README.md does not show poolctl $c"
done
opts=$(grep -oE -- '(^|[ [])--[a-z][a-z-]*' <<<"$help" | grep -oE -- '--[a-z][a-z-]*' | sort -u)
for o in $opts; do
    grep -qE -- "$o\b" "$readme" || bad "README.md does not mention poolctl's $o"
done
echo "ok: poolctl's $(wc -w <<<"$cmds") commands and $(wc -w <<<"$opts") options in README.md"

# 3. Environment variables.
# (Every such string in the C sources names a variable: getenv or
# pool_env_size_ read it.)
vars=$(grep -rhoE '"POOLD?_[A-Z_]+"' "$src/client" "$src/daemon" "$src/proto" "$src/tools" |
    grep -oE 'POOLD?_[A-Z_]+' | sort -u)
[ -n "$vars" ] || bad "no environment variable found in the sources"
for v in $vars; do
    if [[ $v == POOLD_* ]]; then
        grep -q "\`$v" "$readme" || bad "README.md does not document \$$v"
        grep -qE "\*\*$v(\*\*|=)" "$man"/*.md || bad "no man page documents \$$v"
    else
        # An older name: documented as still read, next to its POOLD_ name.
        grep -qE "$v\`? is still read|$v\*\* is still read" "$readme" "$man"/*.md ||
            bad "$v is read but not documented as the older name still read"
    fi
done
echo "ok: environment $(tr '\n' ' ' <<<"$vars")documented"

# 4. The example config is one poold reads: its values and comments parse.
#    The file is read before the flags, so a bad flag after it (--size 1)
#    stops poold before it touches anything, and only once the file passed.
out=$("$poold" --config "$example" --size 1 2>&1)
if grep -q "poold: --size: '1' is too small" <<<"$out"; then
    echo "ok: poold reads poold.conf.example"
else
    bad "poold refuses the example config: $out"
fi
exit $fail
