/* append.h -- writing frames (append.c), for the unblocker, which writes padding and
 * an aborted frame over what a dead producer left unpublished, and publishes what a
 * stalled one had finished. */
#ifndef SHMBUS_APPEND_H
#define SHMBUS_APPEND_H
#include <stdint.h>
#include "layout.h"

void write_filler(sb_ring *r, uint64_t pos, uint64_t length, uint16_t type,
                  uint64_t offset, uint32_t record_count);
/* Store a frame's word0: lap and length, last, with a release store. */
void publish(sb_ring *r, uint64_t pos, uint32_t length);

#endif
