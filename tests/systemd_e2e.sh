#!/bin/bash
# SPDX-License-Identifier: MIT
#
# systemd_e2e.sh BUILD_DIR SOURCE_DIR [--deb]: poold as users run it, under a
# real systemd.  Boots systemd 252 as PID 1 of private namespaces over an
# overlay of `/` (tests/systemd_boot.sh) and installs poold into it:
#   --deb: the package BUILD_DIR/poold_*.deb (scripts/build-deb.sh) with
#          `dpkg -i`, whose postinst must create the user, enable and start
#          poold.socket and poold.service;
#   else:  the build, as README says (cmake --install --prefix /usr,
#          systemd-sysusers, systemd-tmpfiles, daemon-reload, enable).
# Then:
#
#   systemctl start poold          -> active, READY=1 reached, STATUS= shown
#                                     (socket from poold.socket, handed over)
#   socket and segment             -> 0660 and group poold, reachable by a
#                                     worker user in group poold, not by others
#   pool_worker as user "poolworker" (supplementary group poold) attaches and
#   allocates; `poolctl stats` / `poolctl procs` show it
#   systemctl restart poold        -> while a worker allocates: the worker
#                                     finishes with no error, the segment is
#                                     the same file (adopted, not recreated)
#   attaches during a restart      -> a loop of pool_worker attaches across
#                                     `systemctl restart poold`: none fails
#                                     (queued on poold.socket)
#   attach while poold is stopped  -> the connection starts poold (socket
#                                     activation) and the worker attaches
#   watchdog (drop-in WatchdogSec=2s) -> poold SIGSTOPped: systemd kills it,
#                                     a new main PID serves, poolctl answers
#   systemctl reload poold         -> after `metrics = 127.0.0.1:PORT` is
#                                     added to poold.conf: same main PID,
#                                     /metrics answers on loopback
#   systemctl stop poold           -> inactive, clean result, segment and
#                                     runtime directory kept
#   systemd-analyze security --offline=true systemd/poold.service <= 2.0
#   --deb: dpkg -r poold           -> service and socket stopped, files gone,
#                                     conffile kept, segment kept; dpkg --purge
#                                     removes /etc/poold
#
# Exit: 0 pass, 1 fail, 77 skip (not root, no unshare/overlayfs/cgroup2,
# systemd does not boot, poold not built, sanitizer build).  Always kills the
# guest it booted and removes its overlay, cgroup and temporary directory.
set -u

BUILD=${1:?usage: systemd_e2e.sh BUILD_DIR SOURCE_DIR}
SRC=${2:?usage: systemd_e2e.sh BUILD_DIR SOURCE_DIR [--deb]}
DEB_MODE=0
[ "${3:-}" = --deb ] && DEB_MODE=1
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
POOLCTL=$BUILD/tools/poolctl
for t in cmake setpriv useradd systemd-sysusers systemd-tmpfiles ldconfig; do
    command -v "$t" >/dev/null || skip "no $t on this machine"
done
[ -x "$POOLD" ] || skip "$POOLD is not built"
[ -x "$POOLCTL" ] || skip "$POOLCTL is not built"
if grep -qE '^POOL_SANITIZE:[A-Z]*=.+' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    skip "sanitizer build: LeakSanitizer cannot stop the world under the unit's seccomp filter (no ptrace); the release build runs this test"
fi
DEB=""
if [ "$DEB_MODE" = 1 ]; then
    debs=("$BUILD"/poold_*.deb)
    [ ${#debs[@]} = 1 ] && [ -f "${debs[0]}" ] ||
        fail "--deb: expected one $BUILD/poold_*.deb (scripts/build-deb.sh $BUILD), found: ${debs[*]}"
    DEB=${debs[0]}
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
if [ -n "$DEB" ]; then
    say "install the package into the guest: dpkg -i $(basename "$DEB")"
    # The host is a container image whose policy-rc.d forbids starting
    # services; the guest is a booted system, where the package must start
    # them.  (The overlay hides the file from the guest only.)
    if [ -e "$ROOT/usr/sbin/policy-rc.d" ]; then
        rm -f "$ROOT/usr/sbin/policy-rc.d"
        info "removed /usr/sbin/policy-rc.d in the guest (the host's container policy)"
    fi
    cp "$DEB" "$ROOT/tmp/"
    SDB_CMD_TIMEOUT=120 run dpkg -i "/tmp/$(basename "$DEB")"
    run dpkg -L poold
    for f in /usr/sbin/poold /usr/bin/poolctl /lib/systemd/system/poold.service \
             /lib/systemd/system/poold.socket /usr/lib/sysusers.d/poold.conf \
             /usr/lib/tmpfiles.d/poold.conf /etc/poold/poold.conf; do
        sdb_exec test -f "$f" || fail "the package did not install $f"
    done
    sdb_exec dpkg-query -W -f='${Conffiles}\n' poold | grep -q '/etc/poold/poold.conf' ||
        fail "/etc/poold/poold.conf is not a conffile"
    say "the package's postinst: user poold, units enabled and started"
    run getent passwd poold
    [ "$(sdb_exec systemctl is-enabled poold.service)" = enabled ] || fail "poold.service not enabled by postinst"
    [ "$(sdb_exec systemctl is-enabled poold.socket)" = enabled ] || fail "poold.socket not enabled by postinst"
    wait_for 30 "poold active after dpkg -i" is_active
    [ "$(sdb_exec systemctl is-active poold.socket)" = active ] || fail "poold.socket not active after dpkg -i"
    info "poold.socket and poold.service enabled and active"
else
    say "install the build into the guest: cmake --install --prefix /usr"
    info "\$ DESTDIR=<guest /> cmake --install $BUILD --prefix /usr"
    DESTDIR=$ROOT timeout 120 cmake --install "$BUILD" --prefix /usr >"$SDB_DIR/install.log" 2>&1 ||
        { sed 's/^/   | /' "$SDB_DIR/install.log"; fail "cmake --install failed"; }
    grep -E 'Installing|Keeping' "$SDB_DIR/install.log" | sed 's/^/   | /'
    for f in /usr/sbin/poold /usr/bin/poolctl /lib/systemd/system/poold.service \
             /lib/systemd/system/poold.socket /usr/lib/sysusers.d/poold.conf \
             /usr/lib/tmpfiles.d/poold.conf /etc/poold/poold.conf; do
        [ -f "$ROOT$f" ] || fail "cmake --install did not install $f"
    done
    run ldconfig
    say "systemd-sysusers, systemd-tmpfiles, daemon-reload, enable (as README says)"
    run systemd-sysusers
    run systemd-tmpfiles --create poold.conf
    run getent passwd poold
    run systemctl daemon-reload
    run systemctl enable poold.service
    [ "$(sdb_exec systemctl is-enabled poold.socket)" = enabled ] || fail "enable poold did not enable poold.socket (Also=)"
fi
if [ -n "$WORKER" ]; then
    install -m 0755 "$WORKER" "$ROOT/usr/local/bin/pool_worker"
    info "worker: $WORKER -> /usr/local/bin/pool_worker"
else
    info "no pool_worker built: the worker steps are skipped"
fi

say "users: $WUSER (in group poold) and $OUSER (not)"
run useradd --system --no-create-home --shell /usr/sbin/nologin -U -G poold "$WUSER"
run useradd --system --no-create-home --shell /usr/sbin/nologin -U "$OUSER"
run id "$WUSER"

# ---------------------------------------------------------------- start ---
say "systemctl start poold"
SDB_CMD_TIMEOUT=60 run systemctl start poold.service
wait_for 30 "poold active" is_active
[ "$(sdb_exec systemctl is-active poold.socket)" = active ] || fail "poold.socket is not active (Requires=)"
MAINPID=$(prop MainPID)
sdb_exec journalctl --no-pager -u poold.service | grep -q 'handed over by systemd' ||
    fail "poold did not take the socket from poold.socket (no 'handed over by systemd' in its log)"
info "poold took /run/poold/poold.sock from poold.socket"
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
# Refused by the file modes (/run/poold is 0750 poold:poold), not failing
# for any other reason (no such user, poolctl not found, poold down).
grep -q "poolctl: cannot reach poold at $SOCK: Permission denied" "$SDB_DIR/other.out" ||
    fail "$OUSER's poolctl failed, but not with 'Permission denied' on $SOCK"

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

# ------------------------------------------------------ socket activation --
is_socket_active() { [ "$(sdb_exec systemctl is-active poold.socket)" = active ]; }
new_mainpid() { is_active && [ "$(prop MainPID)" != "$1" ] && [ "$(prop MainPID)" != 0 ]; }

if [ -n "$WORKER" ]; then
    say "attaches across systemctl restart poold: a loop of pool_worker --iterations 1 as $WUSER"
    sdb_exec rm -f /tmp/attach.stop
    sdb_exec setpriv --reuid="$WUSER" --regid="$WUSER" --init-groups \
        env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/ sh -c '
            n=0; bad=0
            while [ ! -e /tmp/attach.stop ]; do
                pool_worker --socket '"$SOCK"' --iterations 1 >/tmp/attach.last 2>&1 ||
                    { bad=$((bad + 1)); sed "s/^/failed: /" /tmp/attach.last; }
                n=$((n + 1))
            done
            echo "attaches=$n failures=$bad"' >"$SDB_DIR/attach.out" 2>&1 &
    APID=$!
    sleep 1
    SDB_CMD_TIMEOUT=60 run systemctl restart poold.service
    wait_for 30 "poold active after restart" is_active
    sleep 1
    sdb_exec touch /tmp/attach.stop
    wait "$APID"
    sed 's/^/   | /' "$SDB_DIR/attach.out"
    grep -q 'attaches=[1-9][0-9]* failures=0$' "$SDB_DIR/attach.out" ||
        fail "attaches failed across the restart (socket activation should queue them)"
    NEWPID=$(prop MainPID)
    [ "$NEWPID" != "$MAINPID" ] || fail "restart kept main PID $MAINPID"
    MAINPID=$NEWPID

    say "poold stopped, poold.socket listening: a worker's attach starts poold"
    SDB_CMD_TIMEOUT=60 run systemctl stop poold.service
    is_inactive || fail "poold.service not inactive after stop"
    is_socket_active || fail "poold.socket stopped with poold.service"
    info "\$ [$WUSER] pool_worker --socket $SOCK --iterations 1"
    as_user "$WUSER" pool_worker --socket "$SOCK" --iterations 1 >"$SDB_DIR/act.out" 2>&1 ||
        { sed 's/^/   | /' "$SDB_DIR/act.out"; fail "pool_worker could not attach through the socket while poold was stopped"; }
    sed 's/^/   | /' "$SDB_DIR/act.out"
    grep -q 'errors=0' "$SDB_DIR/act.out" || fail "pool_worker reported errors"
    wait_for 30 "poold started by its socket" new_mainpid "$MAINPID"
    MAINPID=$(prop MainPID)
    info "the connection started poold (main PID $MAINPID), the worker attached and finished"
fi

# ---------------------------------------------------------------- watchdog --
say "watchdog: WatchdogSec=2s in a drop-in, then poold stopped with SIGSTOP"
DROPIN=$ROOT/etc/systemd/system/poold.service.d
mkdir -p "$DROPIN"
printf '[Service]\nWatchdogSec=2s\nLimitCORE=0\n' > "$DROPIN/test-watchdog.conf"
info "drop-in poold.service.d/test-watchdog.conf: WatchdogSec=2s, LimitCORE=0"
run systemctl daemon-reload
# PID 1 logs to the console (systemd_boot.sh); its watchdog message goes to
# the journal from here on.
run systemd-analyze log-target journal
SDB_CMD_TIMEOUT=60 run systemctl restart poold.service
wait_for 30 "poold active" is_active
MAINPID=$(prop MainPID)
NR0=$(prop NRestarts)
[ "$(prop WatchdogUSec)" = 2s ] || fail "WatchdogUSec is $(prop WatchdogUSec), not 2s"
sleep 3
is_active && [ "$(prop MainPID)" = "$MAINPID" ] ||
    fail "poold did not survive 3 s under WatchdogSec=2s: its WATCHDOG=1 pings do not reach systemd"
info "3 s later still main PID $MAINPID: the pings (every 1 s) reach systemd"
run kill -STOP "$MAINPID"
wait_for 20 "a new poold after the watchdog timeout" new_mainpid "$MAINPID"
NR1=$(prop NRestarts)
[ "$NR1" -gt "$NR0" ] || fail "NRestarts did not grow ($NR0 -> $NR1)"
sdb_exec journalctl --no-pager -u poold.service | grep 'poold.service: Watchdog timeout' |
    sed 's/^/   | /' | grep . || fail "systemd logged no 'poold.service: Watchdog timeout'"
MAINPID=$(prop MainPID)
info "watchdog timeout: restarted (NRestarts $NR0 -> $NR1), new main PID $MAINPID"
wait_for 10 "poolctl ping after the watchdog restart" sdb_exec poolctl --socket "$SOCK" ping
run poolctl --socket "$SOCK" stats
rm -f "$DROPIN/test-watchdog.conf"
run systemctl daemon-reload

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

# ---------------------------------------------------------------- remove --
if [ -n "$DEB" ]; then
    say "dpkg -r poold: stopped and removed; conffile and segment kept"
    SDB_CMD_TIMEOUT=60 run dpkg -r poold
    for u in poold.service poold.socket; do
        st=$(sdb_exec systemctl is-active "$u")
        [ "$st" != active ] || fail "$u still active after dpkg -r"
    done
    sdb_exec pgrep -x poold >/dev/null && fail "a poold process runs after dpkg -r"
    for f in /usr/sbin/poold /usr/bin/poolctl /lib/systemd/system/poold.service \
             /lib/systemd/system/poold.socket "$SOCK"; do
        sdb_exec test -e "$f" && fail "$f is still there after dpkg -r"
    done
    sdb_exec test -f /etc/poold/poold.conf || fail "dpkg -r removed the conffile /etc/poold/poold.conf"
    sdb_exec test -e /dev/shm/poold || fail "dpkg -r removed the segment"
    info "units inactive, no poold process, files gone; /etc/poold/poold.conf and /dev/shm/poold kept"
    SDB_CMD_TIMEOUT=60 run dpkg --purge poold
    sdb_exec test -e /etc/poold/poold.conf && fail "dpkg --purge left /etc/poold/poold.conf"
    info "dpkg --purge removed /etc/poold/poold.conf"
fi
guest_journal

printf '\nPASS test_systemd (%ss): %s\n' "$(($(date +%s) - START))" "$RATING_LINE"
exit 0
