/* unblock.c -- producers that hold a partition up (Aeron's term unblocker).
 *
 * A dead one (its liveness lock released, checked in Python): whoever finds it takes
 * the claim lock -- breaking it if the dead one held it --, redoes whatever half of
 * its claim it had made, and turns what it had not published into an aborted frame
 * that readers step over (Chronicle's dead-owner unlock). It can write there: the
 * dead write nothing more.
 *
 * A stalled one (alive, but its claim or the lock held past the unblock timeout:
 * SIGSTOP, a debugger, swapping): its copy may still be in flight and cannot be
 * stopped from outside, so nobody may write where it may write, now or in a later
 * lap. The ring is retired instead (sb_ring_retire): no more claims in it, the
 * stalled claim revoked -- the stalled producer sees that in its CAS before it
 * publishes, and aborts its own claim when it wakes --, and where the ring ends made
 * final, so its readers and the archiver finish it and the partition goes on in a
 * new ring at the next offset (the supervisor makes it). The old ring stays mapped
 * by whoever still maps it, and is never written to again but by the stalled claim.
 */
#define _GNU_SOURCE
#include <sched.h>
#include "append.h"
#include "claim.h"
#include "layout.h"
#include "unblock.h"
#include "wait.h"

int sb_lock_owner(sb_ring *r)
{
    return (int)(LOAD_ACQ(&r->h->lock) & LOCK_OWNER_MASK) - 1;
}

/* A slot state that holds a claim (whose fields are valid). */
static int holds_claim(uint64_t state)
{
    return state == CLAIMED || state == PUBLISHING || state == REVOKED;
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
        if (holds_claim(LOAD(&dead->state))) {
            STORE(&h->tail, dead->claim_end);
            STORE(&h->next_offset, dead->claim_offset + dead->claim_count);
        }
        uint64_t head = LOAD(&h->head);
        if (head < LOAD(&h->published) && published_length(r, head))
            STORE_REL(&h->head_offset, frame_at(r, head)->offset);
    }
    if (holds_claim(LOAD(&dead->state)))
        abort_claim(r, dead);
    STORE(&dead->state, IDLE);
    STORE(&dead->owner_start, 0);
    STORE_REL(&dead->owner_pid, 0);
    lock_release(r);
    wake_after_publish(r);
    return SB_OK;
}

/* A stalled producer had finished copying (PUBLISHING) but not published: publish
 * its frames for it. Their headers are complete, so each word0 is known; the
 * producer, when it wakes, only stores the same words again -- harmless, since the
 * ring is retired and these bytes are never reused. */
static void finish_publishing(sb_ring *r, const struct slot *s)
{
    uint64_t pos = s->claim_frame_pos;
    while (pos < s->claim_end) {
        uint32_t len = published_length(r, pos);
        if (len) {
            pos += align8(len);
            continue;
        }
        const sb_frame_header *f = frame_at(r, pos);
        uint64_t content = FRAME_HEADER_BYTES + payload_bytes(f);
        uint64_t size = align8(content);
        uint64_t gap = pos + size + s->claim_gap == s->claim_end ? s->claim_gap : 0;
        if (size < FRAME_HEADER_BYTES || pos + size + gap > s->claim_end)
            return; /* not a frame of this claim: leave it to its owner */
        publish(r, pos, (uint32_t)(content + gap));
        pos += size + gap;
    }
}

int sb_ring_retire(sb_ring *r, int my_slot, uint64_t stalled, uint64_t *out_end, uint64_t *out_next_offset)
{
    if (my_slot < 0 || my_slot >= SB_MAX_SLOTS)
        return SB_BAD_RING;
    struct header *h = r->h;
    /* No new claims: claimers check the flag under the lock, and lock waiters as
     * they wait. */
    __atomic_fetch_or(&h->flags, SB_RING_RETIRING, __ATOMIC_SEQ_CST);
    wake_everyone(r);
    /* Take the lock, so no claim is half made -- unless a stalled producer holds
     * it: then it cannot claim any more (cancel it), and what it may have claimed
     * is in its slot. */
    uint64_t mine = (uint64_t)my_slot + 1;
    int locked = 0;
    int64_t deadline = now_ns(CLOCK_MONOTONIC) + LOCK_SPIN_NS;
    for (;;) {
        uint64_t word = LOAD(&h->lock), owner = word & LOCK_OWNER_MASK;
        if (owner == 0 && __atomic_compare_exchange_n(&h->lock, &word, word | mine, 0,
                                                      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            locked = 1;
            break;
        }
        if (owner && (stalled >> (owner - 1)) & 1) {
            uint64_t idle = IDLE;
            __atomic_compare_exchange_n(&r->slots[owner - 1].state, &idle, CANCELLED, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
            break;
        }
        if (now_ns(CLOCK_MONOTONIC) > deadline)
            return SB_LOCK_BUSY; /* a live holder that is not stalled: try again */
        sched_yield();
    }
    uint64_t end = LOAD(&h->tail), next_offset = LOAD(&h->next_offset);
    for (int i = 0; i < SB_MAX_SLOTS; i++) {
        struct slot *s = &r->slots[i];
        uint64_t state = LOAD_ACQ(&s->state);
        if ((stalled >> i) & 1) {
            /* On failure the CAS leaves in `state` what it moved on to (PUBLISHING,
             * or IDLE: done after all). */
            if (state == CLAIMED
                && __atomic_compare_exchange_n(&s->state, &state, REVOKED, 0, __ATOMIC_ACQ_REL,
                                               __ATOMIC_ACQUIRE))
                state = REVOKED;
            if (state == PUBLISHING)
                finish_publishing(r, s);
        }
        if (holds_claim(state)) {
            if (s->claim_end > end)
                end = s->claim_end;
            if (s->claim_offset + s->claim_count > next_offset)
                next_offset = s->claim_offset + s->claim_count;
        }
    }
    STORE(&h->retired_next_offset, next_offset);
    STORE_REL(&h->retired_end, end);
    __atomic_fetch_or(&h->flags, SB_RING_RETIRED, __ATOMIC_SEQ_CST);
    if (locked)
        lock_release(r);
    wake_everyone(r);
    *out_end = end;
    *out_next_offset = next_offset;
    return SB_OK;
}

int revoked_claim_at(sb_ring *r, uint64_t pos, uint64_t *out_end, uint64_t *out_offset, uint64_t *out_count)
{
    if (!(LOAD_ACQ(&r->h->flags) & SB_RING_RETIRING))
        return 0;
    for (int i = 0; i < SB_MAX_SLOTS; i++) {
        const struct slot *s = &r->slots[i];
        if (LOAD_ACQ(&s->state) != REVOKED)
            continue;
        uint64_t claim_pos = LOAD(&s->claim_pos), frame_pos = LOAD(&s->claim_frame_pos);
        uint64_t end = LOAD(&s->claim_end), offset = LOAD(&s->claim_offset), count = LOAD(&s->claim_count);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (LOAD(&s->state) != REVOKED)
            continue; /* its owner woke and aborted it itself: the frame is there now */
        if (pos == claim_pos || pos == frame_pos) {
            *out_end = end;
            *out_offset = offset;
            *out_count = count;
            return 1;
        }
    }
    return 0;
}

int ring_end_reached(sb_ring *r, uint64_t pos)
{
    return (LOAD_ACQ(&r->h->flags) & SB_RING_RETIRED) && pos >= LOAD_ACQ(&r->h->retired_end);
}
