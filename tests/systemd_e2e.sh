#!/bin/bash
# SPDX-License-Identifier: MIT
#
# systemd_e2e.sh BUILD_DIR SOURCE_DIR: poold as users run it, under a real
# systemd.  Boots systemd 252 as PID 1 of private namespaces over an overlay
# of `/` (tests/systemd_boot.sh), installs the build into it as a package
# would (cmake --install --prefix /usr, systemd-sysusers, daemon-reload), then:
#
#   systemctl start poold          -> active, READY=1 reached, STATUS= shown
#   socket and segment             -> 0660 and group poold, reachable by a
#                                     worker user in group poold, not by others
#   pool_worker as user "poolworker" (supplementary group poold) attaches and
#   allocates; `poolctl stats` / `poolctl procs` show it
#   systemctl restart poold        -> while a worker allocates: the worker
#                                     finishes with no error, the segment is
#                                     the same file (adopted, not recreated)
#   systemctl reload poold         -> after `metrics = 127.0.0.1:PORT` is
#                                     added to poold.conf: same main PID,
#                                     /metrics answers on loopback
#   systemctl stop poold           -> inactive, clean result, segment and
#                                     runtime directory kept
#   systemd-analyze security --offline=true systemd/poold.service <= 2.0
#
# Exit: 0 pass, 1 fail, 77 skip (not root, no unshare/overlayfs/cgroup2,
# systemd does not boot, poold not built, sanitizer build).  Always kills the
# guest it booted and removes its overlay, cgroup and temporary directory.
set -u

BUILD=${1:?usage: systemd_e2e.sh BUILD_DIR SOURCE_DIR}
SRC=${2:?usage: systemd_e2e.sh BUILD_DIR SOURCE_DIR}
BUILD=$(cd "$BUILD" && pwd) || exit 1
SRC=$(cd "$SRC" && pwd) || exit 1
UNIT=$SRC/systemd/poold.service
MAX_RATING=2.0
SOCK=/run/poold/poold.sock
WUSER=poolworker       # a worker: its own primary group, plus group poold
OUSER=poolother        # not in group poold: must be refused

say() { printf '\n== %s\n' "$*"; }
info() { printf '   %s\n' "$*"; }
skip() { printf '\nSKIP test_systemd: %s\n' "$*"; exit 77; }

# shellcheck source=tests/systemd_boot.sh
. "$SRC/tests/systemd_boot.sh"

# Run as a guest user (outside the unit): no login, no PAM, clean env.
as_user() {
    local u=$1; shift
    sdb_exec setpriv --reuid="$u" --regid="$u" --init-groups \
        env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/ "$@"
}

guest_journal() {
    info "--- journalctl -u poold (last 40 lines) ---"
    sdb_exec journalctl --no-pager -o short-monotonic -u poold.service 2>&1 | tail -n 40 | sed 's/^/   | /'
}

fail() {
    printf '\nFAIL test_systemd: %s\n' "$*"
    [ -n "$SDB_PID" ] && guest_journal
    exit 1
}

# Run a guest command, echo it and its output; fail on non-zero.
run() {
    info "\$ $*"
    local out rc
    out=$(sdb_exec "$@" 2>&1); rc=$?
    [ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/   | /'
    [ "$rc" = 0 ] || fail "'$*' exited $rc"
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD (host side) until it succeeds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local i
    for ((i = 0; i < secs * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    fail "$what: not within ${secs}s"
}

is_active() { [ "$(sdb_exec systemctl is-active poold.service)" = active ]; }
is_inactive() { [ "$(sdb_exec systemctl is-active poold.service)" = inactive ]; }
prop() { sdb_exec systemctl show -P "$1" poold.service; }

START=$(date +%s)
printf 'test_systemd: poold under a real systemd (build %s)\n' "$BUILD"

# ---------------------------------------------------------------- rating --
say "systemd-analyze security --offline=true $UNIT (must be <= $MAX_RATING)"
command -v systemd-analyze >/dev/null || skip "no systemd-analyze"
RATING_LINE=$(systemd-analyze security --offline=true --no-pager "$UNIT" 2>&1 | grep 'Overall exposure level')
[ -n "$RATING_LINE" ] || fail "systemd-analyze printed no rating"
info "$RATING_LINE"
RATING=$(printf '%s\n' "$RATING_LINE" | sed -n 's/.*: \([0-9][0-9]*\.[0-9]\).*/\1/p')
awk -v r="$RATING" -v m="$MAX_RATING" 'BEGIN { exit !(r != "" && r + 0 <= m + 0) }' ||
    fail "exposure $RATING is above $MAX_RATING"

# ---------------------------------------------------------------- can we? --
say "can this machine boot systemd in a namespace?"
sdb_check || skip "cannot boot systemd here: $SDB_WHY"
info "yes: root, unshare, overlayfs, cgroup2 at $SDB_CG2"
POOLD=$BUILD/daemon/poold
POOLCTL=$BUILD/client/poolctl
for t in cmake setpriv useradd systemd-sysusers ldconfig; do
    command -v "$t" >/dev/null || skip "no $t on this machine"
done
[ -x "$POOLD" ] || skip "$POOLD is not built"
[ -x "$POOLCTL" ] || skip "$POOLCTL is not built"
if grep -qE '^POOL_SANITIZE:[A-Z]*=.+' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    skip "sanitizer build: LeakSanitizer cannot stop the world under the unit's seccomp filter (no ptrace); the release build runs this test"
fi
WORKER=""
for w in "$BUILD/tools/pool_worker" "$BUILD/bench/pool_worker" "$BUILD/tests/pool_worker"; do
    [ -x "$w" ] && { WORKER=$w; break; }
done

# ---------------------------------------------------------------- boot ----
say "boot systemd as PID 1 (unshare --pid --mount --uts --cgroup, overlay of /)"
trap 'sdb_stop' EXIT
trap 'exit 1' INT TERM
sdb_boot || skip "systemd did not boot here (see the log above)"
ROOT=$(sdb_root)
run systemctl --version

# ---------------------------------------------------------------- install --
say "install the build into the guest: cmake --install --prefix /usr"
info "\$ DESTDIR=<guest /> cmake --install $BUILD --prefix /usr"
DESTDIR=$ROOT timeout 120 cmake --install "$BUILD" --prefix /usr >"$SDB_DIR/install.log" 2>&1 ||
    { sed 's/^/   | /' "$SDB_DIR/install.log"; fail "cmake --install failed"; }
grep -E 'Installing|Keeping' "$SDB_DIR/install.log" | sed 's/^/   | /'
# What the install rules do not (yet) put down, copy as a package would.
[ -x "$ROOT/usr/sbin/poold" ] || { info "no install rule for poold: copying it to /usr/sbin"; install -m 0755 "$POOLD" "$ROOT/usr/sbin/poold"; }
[ -x "$ROOT/usr/bin/poolctl" ] || { info "no install rule for poolctl: copying it to /usr/bin"; install -m 0755 "$POOLCTL" "$ROOT/usr/bin/poolctl"; }
[ -f "$ROOT/lib/systemd/system/poold.service" ] || fail "poold.service was not installed"
[ -f "$ROOT/usr/lib/sysusers.d/poold.conf" ] || fail "sysusers entry was not installed"
[ -f "$ROOT/etc/poold/poold.conf" ] || fail "/etc/poold/poold.conf was not installed"
if [ -n "$WORKER" ]; then
    install -m 0755 "$WORKER" "$ROOT/usr/local/bin/pool_worker"
    info "worker: $WORKER -> /usr/local/bin/pool_worker"
else
    info "no pool_worker built: the worker steps are skipped"
fi
run ldconfig

say "users: systemd-sysusers, then $WUSER (in group poold) and $OUSER (not)"
run systemd-sysusers
run getent passwd poold
run useradd --system --no-create-home --shell /usr/sbin/nologin -U -G poold "$WUSER"
run useradd --system --no-create-home --shell /usr/sbin/nologin -U "$OUSER"
run id "$WUSER"

# ---------------------------------------------------------------- start ---
say "systemctl start poold"
run systemctl daemon-reload
SDB_CMD_TIMEOUT=60 run systemctl start poold.service
wait_for 30 "poold active" is_active
MAINPID=$(prop MainPID)
info "active, main PID $MAINPID (guest), NRestarts=$(prop NRestarts)"
run systemctl --no-pager --lines=0 status poold.service
STATUS_TEXT=$(prop StatusText)
[ -n "$STATUS_TEXT" ] || fail "no STATUS= from poold (StatusText is empty)"
sdb_exec systemctl --no-pager --lines=0 status poold.service | grep -q 'Status: "' ||
    fail "systemctl status shows no Status: line"
info "STATUS= '$STATUS_TEXT'"

say "socket and segment: group poold, mode 0660"
run ls -ld /run/poold "$SOCK" /dev/shm/poold
[ "$(sdb_exec stat -c '%a %U %G' /run/poold)" = "750 poold poold" ] || fail "/run/poold is not 0750 poold:poold"
sdb_exec stat -c '%a %G' "$SOCK" | grep -qE '^6[67]0 poold$' || fail "$SOCK is not 0660 group poold"
sdb_exec stat -c '%a %G' /dev/shm/poold | grep -qE '^660 poold$' || fail "/dev/shm/poold is not 0660 group poold"
SEG_INODE=$(sdb_exec stat -c %i /dev/shm/poold)

say "poolctl as $WUSER (group poold) and as $OUSER (refused)"
info "\$ [$WUSER] poolctl --socket $SOCK ping"
as_user "$WUSER" poolctl --socket "$SOCK" ping 2>&1 | sed 's/^/   | /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "poolctl ping as $WUSER failed"
info "\$ [$OUSER] poolctl --socket $SOCK ping   (must fail)"
if as_user "$OUSER" poolctl --socket "$SOCK" ping >"$SDB_DIR/other.out" 2>&1; then
    sed 's/^/   | /' "$SDB_DIR/other.out"
    fail "$OUSER, not in group poold, reached poold"
fi
sed 's/^/   | /' "$SDB_DIR/other.out"

# ---------------------------------------------------------------- worker --
# run_worker SECONDS: start pool_worker as $WUSER in the background; sets WPID
# (host pid of the nsenter wrapper) and prints its guest pid file.
run_worker() {
    sdb_exec setpriv --reuid="$WUSER" --regid="$WUSER" --init-groups \
        env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/ \
        sh -c 'echo $$ > /tmp/worker.pid; exec pool_worker --socket '"$SOCK"' --seconds '"$1" \
        >"$SDB_DIR/worker.out" 2>&1 &
    WPID=$!
}

if [ -n "$WORKER" ]; then
    say "a worker outside the unit: pool_worker as $WUSER, 5 s"
    run_worker 5
    wait_for 10 "worker pid file" sdb_exec test -s /tmp/worker.pid
    GPID=$(sdb_exec cat /tmp/worker.pid)
    info "worker runs as guest pid $GPID"
    sleep 1
    info "\$ poolctl --socket $SOCK procs"
    PROCS=$(sdb_exec poolctl --socket "$SOCK" procs 2>&1) || fail "poolctl procs failed: $PROCS"
    printf '%s\n' "$PROCS" | sed 's/^/   | /'
    printf '%s\n' "$PROCS" | grep -qw "$GPID" || fail "poolctl procs does not list the worker (pid $GPID)"
    info "\$ poolctl --socket $SOCK stats"
    STATS=$(sdb_exec poolctl --socket "$SOCK" stats 2>&1) || fail "poolctl stats failed: $STATS"
    printf '%s\n' "$STATS" | sed 's/^/   | /'
    printf '%s\n' "$STATS" | grep -qw "$GPID" || fail "poolctl stats does not show the worker (pid $GPID)"

    say "systemctl restart poold while the worker allocates"
    SDB_CMD_TIMEOUT=60 run systemctl restart poold.service
    wait_for 30 "poold active after restart" is_active
    NEWPID=$(prop MainPID)
    [ "$NEWPID" != "$MAINPID" ] || fail "restart kept main PID $MAINPID"
    MAINPID=$NEWPID
    [ "$(sdb_exec stat -c %i /dev/shm/poold)" = "$SEG_INODE" ] ||
        fail "the segment was recreated by the restart (inode changed): workers lost their pool"
    info "new main PID $MAINPID, same segment (inode $SEG_INODE): adopted"
    wait "$WPID"; wrc=$?    # bounded: --seconds 5, and sdb_exec's timeout
    sed 's/^/   | /' "$SDB_DIR/worker.out"
    [ "$wrc" = 0 ] || fail "pool_worker exited $wrc across the restart"
    grep -q 'errors=0' "$SDB_DIR/worker.out" || fail "pool_worker reported errors"
    info "\$ poolctl --socket $SOCK stats   (after the worker)"
    sdb_exec poolctl --socket "$SOCK" stats 2>&1 | sed 's/^/   | /'
else
    info "(no pool_worker: attach/allocate steps not run)"
    info "\$ poolctl --socket $SOCK stats"
    STATS=$(sdb_exec poolctl --socket "$SOCK" stats 2>&1) || fail "poolctl stats failed: $STATS"
    printf '%s\n' "$STATS" | sed 's/^/   | /'
fi

# ---------------------------------------------------------------- reload --
say "systemctl reload poold (SIGHUP): turn on metrics in /etc/poold/poold.conf"
MPORT=$((20000 + RANDOM % 20000))
printf '\nmetrics = 127.0.0.1:%s\n' "$MPORT" >> "$ROOT/etc/poold/poold.conf"
info "appended 'metrics = 127.0.0.1:$MPORT' to /etc/poold/poold.conf"
run systemctl reload poold.service
sleep 0.5
is_active || fail "poold not active after reload"
[ "$(prop MainPID)" = "$MAINPID" ] || fail "reload changed the main PID"
info "still active, same main PID $MAINPID"
if sdb_exec sh -c 'command -v curl' >/dev/null; then
    info "\$ curl http://127.0.0.1:$MPORT/metrics   (loopback, allowed by IPAddressAllow=localhost)"
    for ((i = 0; i < 25; i++)); do
        M=$(sdb_exec curl -sS --max-time 2 "http://127.0.0.1:$MPORT/metrics" 2>&1) && break
        sleep 0.2
    done
    printf '%s\n' "$M" | grep -E '^poold_' | head -n 5 | sed 's/^/   | /'
    printf '%s\n' "$M" | grep -q '^poold_' || fail "no poold_ metrics on 127.0.0.1:$MPORT after reload: $M"
else
    info "(no curl in the guest: metrics endpoint not fetched)"
fi

# ---------------------------------------------------------------- stop ----
say "systemctl stop poold"
SDB_CMD_TIMEOUT=60 run systemctl stop poold.service
wait_for 30 "poold inactive" is_inactive
RESULT=$(prop Result)
[ "$RESULT" = success ] || fail "stop result is '$RESULT', not success"
sdb_exec test -e /dev/shm/poold || fail "the segment was removed on stop (RemoveIPC?)"
sdb_exec test -d /run/poold || fail "/run/poold was removed on stop (RuntimeDirectoryPreserve)"
info "inactive (result: success); /dev/shm/poold and /run/poold kept for the next start"
guest_journal

printf '\nPASS test_systemd (%ss): %s\n' "$(($(date +%s) - START))" "$RATING_LINE"
exit 0
