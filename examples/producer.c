/* SPDX-License-Identifier: MIT */
/*
 * producer: send COUNT messages on a channel of poold's pool, then an end
 * mark. Each message is a block the producer fills and gives away: the
 * consumer reads it in place and frees it. Every tenth is a 1 MiB frame.
 *
 *     producer [CHANNEL [COUNT]]      (defaults: example, 1000)
 *
 * Attaches to the poold at $POOLD_SOCKET (else /run/poold/poold.sock).
 */
#include <errno.h>
#include <poolclient.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "example";
    long count = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
    pool_t *pool = pool_attach(NULL);
    if (!pool) {
        fprintf(stderr, "producer: cannot attach to poold: %s\n", pool_last_error());
        return 1;
    }
    pool_chan_t *ch = pool_chan_open(pool, name, NULL);
    if (!ch) {
        fprintf(stderr, "producer: channel %s: %s\n", name, strerror(errno));
        return 1;
    }
    unsigned long long bytes = 0;
    for (long i = 0; i <= count; i++) {
        size_t size = i == count ? sizeof(struct message) : message_size((uint32_t)i);
        struct message *m = pool_malloc(pool, size);
        if (!m) {
            fprintf(stderr, "producer: pool_malloc(%zu): %s\n", size, strerror(errno));
            return 1;
        }
        m->seq = i == count ? MESSAGE_END : (uint32_t)i;
        m->size = (uint32_t)size;
        memset(m->body, (int)(i & 0xff), size - sizeof(*m));
        /* Waits while the channel is full: nothing is dropped. */
        if (pool_chan_send(ch, m, size, -1) != 0) {
            fprintf(stderr, "producer: pool_chan_send: %s\n", strerror(errno));
            return 1;
        }
        bytes += size;
    }
    printf("producer: sent %ld messages (%llu bytes) on %s\n", count, bytes, name);
    pool_chan_close(ch);
    pool_detach(pool);
    return 0;
}
