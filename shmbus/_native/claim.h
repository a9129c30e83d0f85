/* claim.h -- the claim lock and claims (claim.c), for the files that append
 * (append.c), finish a dead producer's claim (unblock.c), or read words that change
 * only under the lock (read.c, ring.c). */
#ifndef SHMBUS_CLAIM_H
#define SHMBUS_CLAIM_H
#include <stdint.h>
#include "layout.h"

#define LOCK_OWNER_MASK 0xFFull
#define LOCK_SEQ_ONE 0x100ull
#define LOCK_SPIN_NS 20000000ll     /* 20 ms: far longer than any live holder needs */
#define LOCK_TRY_NS 200000ll        /* 0.2 ms: for a caller that must not block (sb_append_now) */
#define LEASE_RECHECK_NS 1000000ll  /* 1 ms: how often a producer held up by a lease looks at its deadline */

struct claim {
    uint64_t pos, frame_pos, end, offset;
    uint64_t gap;  /* bytes before the ring's end too few for a frame header: the last frame absorbs them */
};

/* Take the claim lock, spinning then yielding for up to patience_ns (SB_LOCK_BUSY). */
int lock_acquire(sb_ring *r, int slot, int64_t patience_ns);
void lock_release(sb_ring *r);
void read_locked_pair(sb_ring *r, uint64_t *a, uint64_t *b, uint64_t *out_a, uint64_t *out_b);
/* The lowest position a held zero-copy lease protects (UINT64_MAX: none); revokes
 * those past their deadline (lease.c). */
uint64_t lease_floor(sb_ring *r);
int claim_or_wait(sb_ring *r, int slot, uint64_t bytes, uint32_t count, int64_t wait_ns, struct claim *c);

#endif
