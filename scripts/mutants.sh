#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/mutants.sh: do the tests catch a broken poold? Copies the
# committed tree (git archive HEAD) to a scratch directory, builds it once,
# runs the tests named below unchanged (they must pass), then applies each
# mutant alone, rebuilds, runs the tests that should catch it and puts the
# source back. Prints mutant -> failing tests; exits 1 if any mutant
# survives (every named test passed) or no longer applies (the code it
# changes moved: update the mutant). The working tree is never touched.
#
# Usage: scripts/mutants.sh [NAME...]   (default: every mutant)
# MUTANTS_KEEP=1 keeps the scratch directory. About 1-2 min per mutant on
# 2 cores, plus the first build.
set -euo pipefail
cd "$(dirname "$0")/.."

# name#file#from#to#tests: `from` is replaced by `to` (literally, first
# match) in file; tests is a ctest -R alternation of the tests that must
# catch it.
MUTANTS=(
  # HELLO accepts every 20th forged pid.
  "forged-pid#daemon/commands.c#if (req->pid != (int32_t)c->peer_pid) {#if (req->pid != (int32_t)c->peer_pid && req->pid % 20 != 0) {#test_hostile|test_daemon_cmds"
  # No pidfd: deaths are seen by EOF and the backstop sweep only.
  "no-pidfd#daemon/registry.c#long fd = syscall(SYS_pidfd_open, pid, 0);#long fd = ((void)pid, errno = ENOSYS, -1);#test_daemon_cmds"
  # A reclaim drops the dead thread's hot cached block.
  "reclaim-drops-hot#shm/pshm_slots.c#    if (hi != PSHM_IDX_NONE && n < cap) {#    if (hi != PSHM_IDX_NONE && n < cap && 0) {#test_owners|test_shm|test_client_malloc"
  # A free of a block that is already free is taken (no owner check).
  "free-skips-owner#client/slow.c#if (v == PSHM_OWN_FREE || (v > s->max_procs && v != PSHM_OWN_TRANSIT))#if (v > s->max_procs && v != PSHM_OWN_TRANSIT)#test_client_malloc|test_owners"
  # Recovery ignores a torn flush's journal (PUSH).
  "journal-push-ignored#shm/pshm_central.c#    case PSHM_PEND_PUSH:#    case PSHM_PEND_PUSH + 100:#test_recovery|test_shm|test_owners"
)

want=("$@")
selected() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w
  for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
  return 1
}

work=$(mktemp -d /tmp/poold-mutants-XXXXXX)
cleanup() { [ "${MUTANTS_KEEP:-0}" = 1 ] && echo "mutants: kept $work" || rm -rf "$work"; }
trap cleanup EXIT
src=$work/src
build=$work/build
mkdir -p "$src"
git archive HEAD | tar -x -C "$src"
echo "mutants: $(git rev-parse --short HEAD) copied to $src"

build_tree() {
  cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPOOL_BUILD_BENCH=OFF \
    -DPOOL_BUILD_MAN=OFF >"$work/cmake.log" 2>&1 &&
    cmake --build "$build" -j"$(nproc)" >"$work/build.log" 2>&1
}

# run_tests REGEX: the names of the tests that failed (empty: all passed).
run_tests() {
  (cd "$build" && ctest -R "^($1)\$" --timeout 300 >"$work/ctest.log" 2>&1) || true
  grep -q "tests passed\|No tests were found" "$work/ctest.log" ||
    { tail -20 "$work/ctest.log" >&2; echo "mutants: ctest did not run" >&2; exit 1; }
  grep -q "No tests were found" "$work/ctest.log" &&
    { echo "mutants: no test matches $1" >&2; exit 1; }
  sed -n 's/^[[:space:]]*[0-9][0-9]* - \([^ ]*\) (.*)$/\1/p' "$work/ctest.log" | sort -u | paste -sd, -
}

build_tree || { tail -30 "$work/build.log" >&2; echo "mutants: the unmutated tree does not build" >&2; exit 1; }
all_tests=$(for m in "${MUTANTS[@]}"; do
  IFS='#' read -r name _ _ _ tests <<<"$m"
  if selected "$name"; then echo "$tests"; fi
done | tr '|' '\n' | sort -u | paste -sd'|' -)
echo "mutants: baseline run of $all_tests"
failed=$(run_tests "$all_tests")
[ -z "$failed" ] || { echo "mutants: fails before any mutant: $failed" >&2; exit 1; }

survived=0
report=()
for m in "${MUTANTS[@]}"; do
  IFS='#' read -r name file from to tests <<<"$m"
  selected "$name" || continue
  f=$src/$file
  cp "$f" "$work/orig"
  FROM=$from TO=$to perl -0pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/ or exit 3' "$f" || {
    echo "mutants: $name no longer applies to $file" >&2
    report+=("$name#$file#-#DOES NOT APPLY")
    survived=1
    continue
  }
  # A mutant the compiler rejects tests nothing: that is an error too.
  if ! build_tree; then
    tail -20 "$work/build.log" >&2
    report+=("$name#$file#-#DOES NOT BUILD")
    survived=1
  else
    echo "mutants: $name ($file): running $tests"
    failed=$(run_tests "$tests")
    if [ -n "$failed" ]; then
      report+=("$name#$file#$tests#killed by $failed")
    else
      report+=("$name#$file#$tests#SURVIVED")
      survived=1
    fi
  fi
  cp "$work/orig" "$f"
  touch "$f"
done

echo
printf '%-22s %-22s %-40s %s\n' MUTANT FILE "TESTS RUN" RESULT
for r in "${report[@]}"; do
  IFS="#" read -r name file tests result <<<"$r"
  printf '%-22s %-22s %-40s %s\n' "$name" "$file" "$tests" "$result"
done
[ "$survived" -eq 0 ] && echo "mutants: every mutant was killed" || echo "mutants: FAIL" >&2
exit "$survived"
