#!/bin/bash
# SPDX-License-Identifier: MIT
#
# systemd_boot.sh: boot a throw-away systemd as PID 1 of its own PID, mount,
# cgroup and UTS namespaces, over an overlayfs of the host's `/`, so a test
# can run `systemctl start poold` without touching the host's services.
#
# Sourced by systemd_e2e.sh (functions sdb_*); run directly for a self-test
# with a stand-in Type=notify unit:  bash tests/systemd_boot.sh selftest
#
# What it owns, and what it must never do:
#   - every mount it makes lives in the private mount namespace and dies with
#     it; the only host-visible state is the work directory (SDB_DIR) and one
#     cgroup (/sys/fs/cgroup/unified/poold-e2e.PID), both removed by sdb_stop;
#   - the guest never sees the host's /dev/shm (a fresh tmpfs), never writes
#     /proc/sys or /sys (read-only), and units that would reach the host
#     kernel or hardware (udev, sysctl, binfmt, modules, clock) are masked;
#   - sdb_stop kills only the PID 1 it started (SIGKILL: the kernel then
#     kills every process of that PID namespace) and the unshare parent.
#
# Requirements (sdb_check reports which one is missing): root, unshare with
# --cgroup, nsenter, overlayfs over `/`, a cgroup2 hierarchy, /lib/systemd/systemd.

SDB_DIR=""        # work directory: rw/ (tmpfs: upper+work), root/ (the overlay)
SDB_PID=""        # host pid of the guest's PID 1 (systemd)
SDB_UNSHARE=""    # host pid of the unshare parent
SDB_CGROUP=""     # host cgroup the guest lives in (removed on stop)
SDB_CG2=""        # where the host's cgroup2 hierarchy is mounted
SDB_BOOT_TIMEOUT=${SDB_BOOT_TIMEOUT:-60}
SDB_CMD_TIMEOUT=${SDB_CMD_TIMEOUT:-30}

sdb_log() { printf '[systemd_boot] %s\n' "$*" >&2; }

# sdb_check: 0 when this machine can boot a guest, else 1 with the reason in
# SDB_WHY (the caller turns it into a skip).  Sets SDB_CG2.
SDB_WHY=""
sdb_check() {
    SDB_WHY=$(sdb_check_) || return 1
    if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        SDB_CG2=/sys/fs/cgroup
    else
        SDB_CG2=/sys/fs/cgroup/unified
    fi
    return 0
}
sdb_check_() {
    if [ "$(id -u)" != 0 ]; then echo "not root"; return 1; fi
    local t
    for t in unshare nsenter chroot mount umount timeout; do
        command -v "$t" >/dev/null 2>&1 || { echo "no $t"; return 1; }
    done
    if ! unshare --help 2>&1 | grep -q -- '--cgroup'; then
        echo "unshare has no --cgroup"; return 1
    fi
    [ -x /lib/systemd/systemd ] || { echo "no /lib/systemd/systemd"; return 1; }
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null
    grep -qw overlay /proc/filesystems || { echo "no overlayfs in this kernel"; return 1; }
    SDB_CG2=""
    if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
        SDB_CG2=/sys/fs/cgroup
    elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
        SDB_CG2=/sys/fs/cgroup/unified
    fi
    [ -n "$SDB_CG2" ] || { echo "no cgroup2 hierarchy mounted"; return 1; }
    # Can we make namespaces here at all (containers often forbid it)?
    if ! timeout 10 unshare --fork --pid --mount --uts --cgroup --propagation private true 2>/dev/null; then
        echo "unshare --pid --mount --uts --cgroup is not permitted here"; return 1
    fi
    return 0
}

# The script PID 1's parent runs inside the new namespaces, before exec'ing
# systemd: mounts, masks, then chroot.  $1 = SDB_DIR.
# shellcheck disable=SC2016
SDB_INNER='
set -eu
D=$1
R=$D/root
mount -t tmpfs -o mode=0755 sdb-rw "$D/rw"
mkdir "$D/rw/upper" "$D/rw/work"
mount -t overlay sdb-root -o "lowerdir=/,upperdir=$D/rw/upper,workdir=$D/rw/work" "$R"
mount -t proc proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
mount --rbind /sys "$R/sys"
mount -o remount,bind,ro "$R/sys"
# Our cgroup namespace root, as a fresh cgroup2 view (unified mode).
mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev sdb-shm "$R/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev sdb-run "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev sdb-tmp "$R/tmp"
# Units that would reach the host kernel, hardware or clock: masked.
m=$R/etc/systemd/system
mkdir -p "$m"
for u in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
         systemd-udev-trigger.service systemd-udev-settle.service systemd-modules-load.service \
         systemd-sysctl.service systemd-binfmt.service proc-sys-fs-binfmt_misc.automount \
         proc-sys-fs-binfmt_misc.mount systemd-timesyncd.service systemd-hwdb-update.service \
         systemd-random-seed.service systemd-pstore.service systemd-firstboot.service \
         systemd-machine-id-commit.service getty.target console-getty.service \
         systemd-logind.service cron.service ssh.service dbus.service dbus.socket \
         sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount \
         sys-fs-fuse-connections.mount dev-hugepages.mount kmod-static-nodes.service \
         systemd-remount-fs.service systemd-fsck-root.service; do
    ln -sf /dev/null "$m/$u"
done
rm -f "$R/etc/machine-id"; : > "$R/etc/machine-id"
# A minimal target to boot into: the journal, nothing else until asked.
cat > "$m/sdb-boot.target" <<EOF
[Unit]
Description=systemd_boot.sh guest
Wants=systemd-journald.service
EOF
echo sdb-guest > "$R/etc/hostname"
hostname sdb-guest
cd "$R"
exec env -i container=poold-e2e PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    chroot "$R" /lib/systemd/systemd --system --unit=sdb-boot.target \
    --log-target=console --log-level=info --show-status=no
'

# shellcheck disable=SC2120
# sdb_boot [DIR]: boot the guest; sets SDB_DIR, SDB_PID.  Returns 1 (with the
# boot log on stderr) if it does not come up within SDB_BOOT_TIMEOUT seconds.
sdb_boot() {
    SDB_DIR=${1:-$(mktemp -d /tmp/poold-sdboot.XXXXXX)}
    mkdir -p "$SDB_DIR/rw" "$SDB_DIR/root"
    if [ -z "$SDB_CG2" ] && ! sdb_check; then
        sdb_log "cannot boot here: $SDB_WHY"; return 1
    fi
    SDB_CGROUP=$SDB_CG2/poold-e2e.$$
    mkdir -p "$SDB_CGROUP"
    sdb_log "booting systemd in $SDB_DIR (cgroup $SDB_CGROUP)"
    (
        echo "$BASHPID" > "$SDB_CGROUP/cgroup.procs"
        exec unshare --fork --kill-child=SIGKILL --pid --mount --uts --cgroup --propagation private \
            bash -c "$SDB_INNER" sdb-inner "$SDB_DIR"
    ) >"$SDB_DIR/boot.log" 2>&1 </dev/null &
    SDB_UNSHARE=$!
    # Watchdog, detached (setsid -f): if this shell dies without sdb_stop
    # (SIGKILL from a test driver's timeout), kill the guest through its
    # cgroup and remove the cgroup and the work directory.  It leaves on its
    # own once sdb_stop has removed the cgroup.
    setsid -f bash -c '
        while kill -0 "$1" 2>/dev/null && [ -d "$2" ]; do sleep 1; done
        [ -d "$2" ] || exit 0
        echo 1 > "$2/cgroup.kill"
        for i in 1 2 3 4 5 6 7 8 9 10; do
            find "$2" -depth -type d -exec rmdir {} \; 2>/dev/null
            [ -d "$2" ] || break
            sleep 0.5
        done
        rm -rf --one-file-system "$3"' sdb-watchdog "$$" "$SDB_CGROUP" "$SDB_DIR" \
        </dev/null >/dev/null 2>&1
    local i
    for ((i = 0; i < SDB_BOOT_TIMEOUT * 10; i++)); do
        if [ -z "$SDB_PID" ]; then
            SDB_PID=$(cat "/proc/$SDB_UNSHARE/task/$SDB_UNSHARE/children" 2>/dev/null | awk '{print $1}')
        fi
        if ! kill -0 "$SDB_UNSHARE" 2>/dev/null; then
            sdb_log "the guest exited during boot; boot log:"
            sed 's/^/    /' "$SDB_DIR/boot.log" >&2
            return 1
        fi
        # Ask only once PID 1 is systemd (the exe link shows the host path).
        if [ -n "$SDB_PID" ] && [ "$(basename "$(readlink "/proc/$SDB_PID/exe" 2>/dev/null)")" = systemd ]; then
            local st
            st=$(timeout 5 nsenter -t "$SDB_PID" -m -p -r -w systemctl is-system-running 2>/dev/null)
            case $st in
            running | degraded)
                sdb_log "systemd is up as PID 1 (host pid $SDB_PID): $st"
                return 0 ;;
            esac
        fi
        sleep 0.1
    done
    sdb_log "systemd did not come up within ${SDB_BOOT_TIMEOUT}s; boot log:"
    tail -n 40 "$SDB_DIR/boot.log" | sed 's/^/    /' >&2
    return 1
}

# sdb_exec CMD...: run CMD inside the guest (its root, mounts, PIDs), bounded
# by SDB_CMD_TIMEOUT seconds.
sdb_exec() {
    timeout -k 5 "$SDB_CMD_TIMEOUT" nsenter -t "$SDB_PID" -m -p -u -r -w -- "$@"
}

# sdb_root: the guest's `/` as a host path (to copy files in).
sdb_root() { echo "/proc/$SDB_PID/root"; }

# sdb_stop: kill the guest and remove everything it left.  Idempotent.
sdb_stop() {
    if [ -z "$SDB_PID" ] && [ -n "$SDB_UNSHARE" ]; then
        SDB_PID=$(cat "/proc/$SDB_UNSHARE/task/$SDB_UNSHARE/children" 2>/dev/null | awk '{print $1}')
    fi
    if [ -n "$SDB_PID" ] && kill -0 "$SDB_PID" 2>/dev/null; then
        sdb_log "stopping the guest: SIGKILL to its PID 1 (host pid $SDB_PID)"
        kill -9 "$SDB_PID" 2>/dev/null
    fi
    if [ -n "$SDB_UNSHARE" ]; then
        local i
        {   # (stderr: no "Killed" job notice from bash)
            for ((i = 0; i < 100; i++)); do
                kill -0 "$SDB_UNSHARE" || break
                [ "$i" = 50 ] && kill -9 "$SDB_UNSHARE"
                sleep 0.1
            done
            wait "$SDB_UNSHARE"
        } 2>/dev/null
    fi
    if [ -n "$SDB_CGROUP" ] && [ -d "$SDB_CGROUP" ]; then
        # Every process of the namespace is gone once its PID 1 is.  As a
        # backstop (PID 1 not found yet), kill what is left in OUR cgroup,
        # which holds the guest and nothing else.  Then the cgroups systemd
        # made are empty and go bottom-up.
        if [ -e "$SDB_CGROUP/cgroup.kill" ]; then
            echo 1 > "$SDB_CGROUP/cgroup.kill" 2>/dev/null
        else
            find "$SDB_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null |
                while read -r p; do kill -9 "$p" 2>/dev/null; done
        fi
        local i
        for ((i = 0; i < 50; i++)); do
            find "$SDB_CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null
            [ -d "$SDB_CGROUP" ] || break
            sleep 0.1
        done
        [ -d "$SDB_CGROUP" ] && sdb_log "warning: could not remove cgroup $SDB_CGROUP"
    fi
    # The mounts lived in the dead namespace; only plain directories remain.
    if [ -n "$SDB_DIR" ] && [ -d "$SDB_DIR" ]; then
        if grep -q " $SDB_DIR/" /proc/self/mountinfo; then
            sdb_log "warning: mounts under $SDB_DIR visible on the host; unmounting"
            grep " $SDB_DIR/" /proc/self/mountinfo | awk '{print $5}' | sort -r |
                while read -r mp; do umount -l "$mp"; done
        fi
        rm -rf --one-file-system "$SDB_DIR"
    fi
    SDB_PID="" SDB_UNSHARE="" SDB_CGROUP="" SDB_DIR=""
}

# Self-test with a stand-in for poold: a Type=notify shell loop.
sdb_selftest() {
    sdb_check || { sdb_log "SKIP: $SDB_WHY"; return 77; }
    trap sdb_stop EXIT
    sdb_boot || return 1
    local r
    r=$(sdb_root)
    cat > "$r/etc/systemd/system/sdb-standin.service" <<'EOF'
[Unit]
Description=stand-in notify service
[Service]
Type=notify
NotifyAccess=all
RuntimeDirectory=sdb-standin
ExecStart=/bin/sh -c 'sleep 0.2; systemd-notify --ready --status="stand-in: 0 procs"; while :; do sleep 1; done'
ExecReload=/bin/kill -HUP $MAINPID
EOF
    sdb_exec systemctl daemon-reload &&
        sdb_exec systemctl start sdb-standin.service &&
        sdb_exec systemctl --no-pager status sdb-standin.service &&
        sdb_exec systemctl stop sdb-standin.service &&
        sdb_log "selftest: OK"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case ${1:-} in
    selftest) sdb_selftest; exit $? ;;
    *) echo "usage: $0 selftest   (or source it)" >&2; exit 2 ;;
    esac
fi
