/* SPDX-License-Identifier: MIT */
/*
 * pproto_socket.c: where poold's control socket is by default, and what to
 * tell a user whose connect(2) to it failed. Pure functions: the callers
 * (poold's settings, libpoolclient, poolctl) read the environment and the
 * path's stat(2) and pass them in, so that all three agree on the default
 * and on the words.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "pproto.h"

int pproto_default_socket(char *out, size_t cap, unsigned uid, const char *xdg)
{
    int n;
    if (uid == 0)
        n = snprintf(out, cap, "/run/poold/poold.sock");
    else if (xdg && xdg[0] == '/')
        n = snprintf(out, cap, "%s/poold/poold.sock", xdg);
    else
        n = snprintf(out, cap, "/tmp/poold-%u/poold.sock", uid);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int pproto_socket_to_try(char *out, size_t cap, unsigned uid, const char *xdg,
                         bool (*exists)(const char *path))
{
    int rc = pproto_default_socket(out, cap, uid, xdg);
    if (rc < 0 || uid == 0 || exists(out))
        return rc;
    /* A poold of the system (root, systemd) serves its group there. */
    if (exists("/run/poold/poold.sock"))
        return snprintf(out, cap, "/run/poold/poold.sock") < (int)cap ? 0 : -ENAMETOOLONG;
    return 0;
}

void pproto_path_info_of(pproto_path_info_t *info, const struct stat *st)
{
    *info = (pproto_path_info_t){0};
    if (!st)
        return;
    info->exists = true;
    info->is_socket = S_ISSOCK(st->st_mode);
    info->is_dir = S_ISDIR(st->st_mode);
    info->uid = (unsigned)st->st_uid;
    info->gid = (unsigned)st->st_gid;
    info->mode = (unsigned)st->st_mode;
}

int pproto_connect_error(char *out, size_t cap, int errnum, const pproto_path_info_t *info)
{
    int n;
    if (!info->exists && (errnum == ENOENT || errnum == ECONNREFUSED))
        n = snprintf(out, cap,
                     "no socket there: start poold ('poold', or 'systemctl start poold'), or "
                     "name its socket with --socket or POOLD_SOCKET");
    else if (info->exists && !info->is_socket)
        n = snprintf(out, cap,
                     "it is %s, not a socket: name poold's socket with --socket or POOLD_SOCKET",
                     info->is_dir ? "a directory" : "a file");
    else if ((errnum == EACCES || errnum == EPERM) && !info->exists)
        n = snprintf(out, cap,
                     "a directory on the way to it is closed to you: run as poold's user, or "
                     "join the group poold serves (--group)");
    else if (errnum == EACCES || errnum == EPERM)
        n = snprintf(out, cap,
                     "the socket belongs to uid %u, group %u, mode %03o: run as uid %u, or join "
                     "group %u if poold serves it (--group)",
                     info->uid, info->gid, info->mode & 0777u, info->uid, info->gid);
    else if (errnum == ECONNREFUSED)
        n = snprintf(out, cap,
                     "nothing listens there (a socket left by a poold that is gone): start poold");
    else
        n = snprintf(out, cap, "is poold running?");
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}
