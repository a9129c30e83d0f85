/* unblock.c -- finishing a dead producer's claim (Aeron's term unblocker). Whoever
 * finds a slot's owner dead (pid + create time, checked in Python) takes the claim
 * lock -- breaking it if the dead one held it --, redoes whatever half of its claim
 * the dead one had made, and turns what it had not published into an aborted frame
 * that readers step over (Chronicle's dead-owner unlock).
 */
#define _GNU_SOURCE
#include <sched.h>
#include "append.h"
#include "claim.h"
#include "layout.h"
#include "wait.h"

int sb_lock_owner(sb_ring *r)
{
    return (int)(LOAD_ACQ(&r->h->lock) & LOCK_OWNER_MASK) - 1;
}

/* Finish a dead producer's claim: the padding it owed, then one aborted frame
 * over whatever it had not published, so readers step over the gap. */
static void abort_claim(sb_ring *r, struct slot *s)
{
    if (s->claim_frame_pos != s->claim_pos && !published_length(r, s->claim_pos))
        write_filler(r, s->claim_pos, s->claim_frame_pos - s->claim_pos, SB_FRAME_PADDING,
                     s->claim_offset, 0);
    uint64_t pos = s->claim_frame_pos, offset = s->claim_offset;
    uint64_t remaining = s->claim_count;
    while (pos < s->claim_end) {
        uint32_t len = published_length(r, pos);
        if (!len) {
            write_filler(r, pos, s->claim_end - pos, SB_FRAME_ABORTED, offset, (uint32_t)remaining);
            break;
        }
        uint32_t records = frame_at(r, pos)->record_count;
        offset += records;
        remaining -= records;
        pos += align8(len);
    }
}

int sb_reap(sb_ring *r, int my_slot, int dead_slot)
{
    if (my_slot < 0 || my_slot >= SB_MAX_SLOTS || dead_slot < 0 || dead_slot >= SB_MAX_SLOTS)
        return SB_BAD_RING;
    struct header *h = r->h;
    struct slot *dead = &r->slots[dead_slot];
    uint64_t mine = (uint64_t)my_slot + 1, theirs = (uint64_t)dead_slot + 1;
    int broke = 0;
    int64_t deadline = now_ns(CLOCK_MONOTONIC) + LOCK_SPIN_NS;
    for (;;) {
        uint64_t word = LOAD(&h->lock), owner = word & LOCK_OWNER_MASK;
        if ((owner == 0 || owner == theirs)
            && __atomic_compare_exchange_n(&h->lock, &word, (word & ~LOCK_OWNER_MASK) | mine, 0,
                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            broke = owner == theirs;
            break;
        }
        if (now_ns(CLOCK_MONOTONIC) > deadline)
            return SB_LOCK_BUSY;
        sched_yield();
    }
    if (broke) {
        /* It died holding the lock: finish whatever half of its update it made. */
        if (LOAD(&dead->state) == CLAIMED) {
            STORE(&h->tail, dead->claim_end);
            STORE(&h->next_offset, dead->claim_offset + dead->claim_count);
        }
        uint64_t head = LOAD(&h->head);
        if (head < LOAD(&h->published) && published_length(r, head))
            STORE_REL(&h->head_offset, frame_at(r, head)->offset);
    }
    if (LOAD(&dead->state) == CLAIMED)
        abort_claim(r, dead);
    STORE(&dead->state, 0);
    STORE(&dead->owner_start, 0);
    STORE_REL(&dead->owner_pid, 0);
    lock_release(r);
    wake_after_publish(r);
    return SB_OK;
}
