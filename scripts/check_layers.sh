#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/check_layers.sh: every #include "..." of a layer names a header of
# that layer or of a layer below it (docs/design.md, "Layers"):
#   shm     the segment            includes shm
#   proto   the control protocol   includes proto
#   client  libpoolclient          includes client, shm, proto
#   daemon  poold                  includes daemon, shm, proto
#   tools   poolctl, pool_worker,  includes client, shm, proto
#           pool_check
# A header is owned by the directory it lives in; include/ holds the
# client's installed headers. Prints each violation as file:line and exits
# 1 if there is any.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A allowed=(
    [shm]="shm"
    [proto]="proto"
    [client]="client shm proto"
    [daemon]="daemon shm proto"
    [tools]="client shm proto"
)
declare -A owner=()
for h in include/*.h include/*.hpp; do
    [ -e "$h" ] && owner[$(basename "$h")]=client
done
for layer in "${!allowed[@]}"; do
    for h in "$layer"/*.h "$layer"/*.hpp; do
        [ -e "$h" ] && owner[$(basename "$h")]=$layer
    done
done
bad=0
for layer in "${!allowed[@]}"; do
    for f in "$layer"/*.c "$layer"/*.h; do
        [ -e "$f" ] || continue
        while IFS=: read -r line inc; do
            h=$(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' <<<"$inc")
            [ -n "$h" ] || continue
            o=${owner[$(basename "$h")]:-}
            [ -n "$o" ] || continue # a header of no layer (generated, system-like)
            case " ${allowed[$layer]} " in
            *" $o "*) ;;
            *)
                echo "$f:$line: $layer includes $h, a header of $o (allowed: ${allowed[$layer]})" >&2
                bad=1
                ;;
            esac
        done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" || true)
    done
done
[ "$bad" -eq 0 ] && echo "layers: every include goes down" || exit 1
