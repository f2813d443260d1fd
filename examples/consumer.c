/* SPDX-License-Identifier: MIT */
/*
 * consumer: receive messages from a channel of poold's pool until the
 * producer's end mark, checking their order and contents in place (no
 * copy was made), and free each one. Several consumers on one channel
 * share its messages (each goes to one of them): a consumer says how many
 * went to the others.
 *
 *     consumer [CHANNEL]              (default: example)
 */
#include <errno.h>
#include <poolclient.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "message.h"

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "example";
    pool_t *pool = pool_attach(NULL);
    if (!pool) {
        fprintf(stderr, "consumer: cannot attach to poold: %s\n", pool_last_error());
        return 1;
    }
    pool_chan_t *ch = pool_chan_open(pool, name, NULL);
    if (!ch) {
        fprintf(stderr, "consumer: channel %s: %s\n", name, strerror(errno));
        return 1;
    }
    unsigned long long bytes = 0;
    uint32_t expect = 0, received = 0, skipped = 0;
    for (;;) {
        size_t n;
        struct message *m = pool_chan_recv(ch, &n, -1);
        if (!m) {
            fprintf(stderr, "consumer: pool_chan_recv: %s\n", strerror(errno));
            return 1;
        }
        if (m->seq == MESSAGE_END) {
            pool_free(pool, m, 0);
            break;
        }
        size_t body = m->size - sizeof(*m);
        if (n < m->size || m->size != message_size(m->seq) ||
            (body &&
             (m->body[0] != (char)(m->seq & 0xff) || m->body[body - 1] != (char)(m->seq & 0xff)))) {
            fprintf(stderr, "consumer: message %u is not what was sent\n", m->seq);
            return 1;
        }
        if (m->seq < expect) {
            fprintf(stderr, "consumer: message %u came after %u\n", m->seq, expect - 1);
            return 1;
        }
        /* A queue gives each message to one receiver: messages before this
         * one went to another (or to one that died holding them). */
        skipped += m->seq - expect;
        bytes += m->size;
        expect = m->seq + 1;
        received++;
        pool_free(pool, m, 0);
    }
    printf("consumer: received %u messages (%llu bytes) on %s, in order and intact", received,
           bytes, name);
    if (skipped)
        printf("; %u earlier ones went to another receiver", skipped);
    printf("\n");
    pool_chan_close(ch);
    pool_detach(pool);
    return 0;
}
