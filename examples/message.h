/* SPDX-License-Identifier: MIT */
/* message.h: what producer.c sends and consumer.c checks. */
#ifndef EXAMPLE_MESSAGE_H
#define EXAMPLE_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#define MESSAGE_END UINT32_MAX

struct message {
    uint32_t seq;  /* 0, 1, 2, ..., then MESSAGE_END */
    uint32_t size; /* bytes, this header included */
    char body[];   /* seq & 0xff, repeated */
};

/* Every tenth message is a 1 MiB frame, the others 64 B to 4 KiB. */
static inline size_t message_size(uint32_t seq)
{
    return seq % 10 == 9 ? (size_t)1 << 20 : 64 + (seq * 61) % 4032;
}

#endif
