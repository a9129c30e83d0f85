/* unblock.h -- what readers of a retired ring need from the unblocker (unblock.c):
 * where a revoked claim is, and whether the ring's end is reached. */
#ifndef SHMBUS_UNBLOCK_H
#define SHMBUS_UNBLOCK_H
#include <stdint.h>
#include "layout.h"

/* Is a revoked claim at pos (in a retiring ring)? Then where it ends, and the offsets
 * it covers, which readers and the archiver step over as an aborted frame. */
int revoked_claim_at(sb_ring *r, uint64_t pos, uint64_t *out_end, uint64_t *out_offset, uint64_t *out_count);
/* Is pos the end of a retired ring, where its readers move to the partition's next ring? */
int ring_end_reached(sb_ring *r, uint64_t pos);

#endif
