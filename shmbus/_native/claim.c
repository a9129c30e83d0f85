/* claim.c -- claiming a place in the ring: the claim lock, moving head to make room
 * (never past what is unpublished nor, on durable rings, past what is unarchived),
 * the claim itself, and the producer slots in which every claim is written before
 * the tail moves, so it can be finished if its producer dies (unblock.c).
 */
#define _GNU_SOURCE
#include <sched.h>
#include "claim.h"
#include "layout.h"
#include "wait.h"

/* ---- the claim lock ---- */

int lock_acquire(sb_ring *r, int slot, int64_t patience_ns)
{
    uint64_t *lock = &r->h->lock;
    uint64_t token = (uint64_t)slot + 1;
    int64_t deadline = 0;
    for (uint32_t spins = 0;; spins++) {
        uint64_t word = LOAD(lock);
        if ((word & LOCK_OWNER_MASK) == 0
            && __atomic_compare_exchange_n(lock, &word, word | token, 0,
                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return SB_OK;
        if (spins < 64) {
            cpu_relax();
            continue;
        }
        /* The holder may be descheduled (two cores): let it run. */
        sched_yield();
        if ((spins & 63) == 0) {
            /* A retired ring's lock may stay held by the stalled producer it was
             * retired for: nothing is claimed here any more. */
            if (LOAD_ACQ(&r->h->flags) & SB_RING_RETIRING)
                return SB_MOVED;
            int64_t now = now_ns(CLOCK_MONOTONIC);
            if (!deadline)
                deadline = now + patience_ns;
            else if (now > deadline)
                return SB_LOCK_BUSY;
        }
    }
}

void lock_release(sb_ring *r)
{
    uint64_t word = LOAD(&r->h->lock);
    STORE_REL(&r->h->lock, (word & ~LOCK_OWNER_MASK) + LOCK_SEQ_ONE);
}

/* Read two words that change only under the lock, consistently: the lock's
 * sequence must be the same, and free, before and after. */
void read_locked_pair(sb_ring *r, uint64_t *a, uint64_t *b, uint64_t *out_a, uint64_t *out_b)
{
    if (LOAD_ACQ(&r->h->flags) & SB_RING_RETIRED) {
        /* Nobody claims in a retired ring; its lock may be held for good by the
         * stalled producer it was retired for. */
        *out_a = LOAD_ACQ(a);
        *out_b = LOAD_ACQ(b);
        return;
    }
    for (int attempt = 0;; attempt++) {
        uint64_t before = LOAD_ACQ(&r->h->lock);
        uint64_t va = LOAD_ACQ(a), vb = LOAD_ACQ(b);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        uint64_t after = LOAD(&r->h->lock);
        if ((before == after && (before & LOCK_OWNER_MASK) == 0) || attempt > 100000) {
            /* After many tries the holder is likely dead; its reaper repairs
             * both words, and the caller re-validates what it reads. */
            *out_a = va;
            *out_b = vb;
            return;
        }
        if (attempt > 64)
            sched_yield();
        else
            cpu_relax();
    }
}

/* ---- space: head, published, the write limit ---- */

static void advance_published(sb_ring *r)
{
    uint64_t pos = LOAD(&r->h->published), tail = LOAD(&r->h->tail);
    while (pos < tail) {
        uint32_t len = published_length(r, pos);
        if (!len)
            break;
        pos += align8(len);
    }
    STORE_REL(&r->h->published, pos);
}

/* Move head forward (under the lock) until a claim ending at `needed_end`
 * fits. Head also runs a little further, so the cold read of old frame
 * headers happens in sequential bursts rather than once per append. */
static int make_room(sb_ring *r, uint64_t needed_end)
{
    struct header *h = r->h;
    uint64_t head = LOAD(&h->head);
    if (needed_end <= head + r->data_bytes)
        return SB_OK;
    uint64_t limit = needed_end - r->data_bytes;
    uint64_t target = limit + r->data_bytes / 16;
    uint64_t head_offset = LOAD(&h->head_offset);
    uint64_t published = LOAD(&h->published);
    uint64_t archived = r->durable ? LOAD_ACQ(&h->archived) : UINT64_MAX;
    uint64_t leased = lease_floor(r);   /* zero-copy readers' views: not to be overwritten */
    if (leased < archived)
        archived = leased;
    while (head < target) {
        if (head >= published) {
            advance_published(r);
            published = LOAD(&h->published);
            if (head >= published)
                break;
        }
        if (head >= archived)
            break;
        sb_frame_header *f = frame_at(r, head);
        uint32_t len = published_length(r, head);
        if (!len)
            break; /* only a corrupt ring has a hole below `published`: full, never a spin */
        head_offset += f->type == SB_FRAME_PADDING ? 0 : f->record_count;
        head += align8(len);
    }
    /* head_offset first: a reaper that finds us dead in between re-derives it. */
    STORE_REL(&h->head_offset, head_offset);
    STORE_REL(&h->head, head);
    return head >= limit ? SB_OK : SB_FULL;
}

/* Reserve `bytes` for `count` frames (the lock is held). The reservation is
 * written to the slot before the tail moves, so it can always be finished. */
static int claim(sb_ring *r, int slot, uint64_t bytes, uint32_t count, struct claim *c)
{
    struct header *h = r->h;
    /* Under the lock: a retirer sets RETIRING before it takes the lock. */
    if (LOAD_ACQ(&h->flags) & SB_RING_RETIRING)
        return SB_MOVED;
    uint64_t tail = LOAD(&h->tail);
    uint64_t room_before_end = r->data_bytes - tail % r->data_bytes;
    c->pos = tail;
    c->frame_pos = bytes > room_before_end ? tail + room_before_end : tail;
    c->end = c->frame_pos + bytes;
    /* Never leave the tail closer to the ring's end than a frame header: no
     * frame, not even padding, could start there. */
    c->gap = r->data_bytes - c->end % r->data_bytes;
    if (c->gap < FRAME_HEADER_BYTES)
        c->end += c->gap;
    else
        c->gap = 0;
    c->offset = LOAD(&h->next_offset);
    /* The word after the claim is where the next frame's word0 will go. Until
     * then it holds whatever an older lap left there, maybe the middle of a
     * record: zero it (Aeron cleans ahead too), so a reader waiting there sees
     * "not yet" and never a stale length. The 8 bytes need room of their own. */
    int wraps_exactly = c->end % r->data_bytes == 0;
    int rc = make_room(r, c->end + (wraps_exactly ? 0 : 8));
    if (rc < 0)
        return rc;
    if (!wraps_exactly)
        STORE(&frame_at(r, c->end)->word0, 0);
    struct slot *s = &r->slots[slot];
    s->claim_pos = c->pos;
    s->claim_frame_pos = c->frame_pos;
    s->claim_end = c->end;
    s->claim_offset = c->offset;
    s->claim_count = count;
    s->claim_gap = c->gap;
    /* A CAS, not a store: the unblocker may have CANCELLED us while we were stalled
     * holding the lock (sb_ring_retire); then this ring is not ours to claim in. */
    uint64_t idle = IDLE;
    if (!__atomic_compare_exchange_n(&s->state, &idle, CLAIMED, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        STORE_REL(&s->state, IDLE);
        return SB_MOVED;
    }
    STORE(&h->tail, c->end);
    STORE(&h->next_offset, c->offset + count);
    return SB_OK;
}

static int claim_under_lock(sb_ring *r, int slot, uint64_t bytes, uint32_t count, int64_t wait_ns,
                            struct claim *c)
{
    /* A caller that may not wait for space may not wait long for the lock either. */
    int rc = lock_acquire(r, slot, wait_ns > 0 ? LOCK_SPIN_NS : LOCK_TRY_NS);
    if (rc < 0)
        return rc;
    rc = claim(r, slot, bytes, count, c);
    lock_release(r);
    return rc;
}

/* Claim under the lock; when the write limit is reached, sleep on space_seq for
 * at most wait_ns, then give SB_FULL back to Python to decide. */
int claim_or_wait(sb_ring *r, int slot, uint64_t bytes, uint32_t count, int64_t wait_ns,
                  struct claim *c)
{
    struct header *h = r->h;
    int64_t deadline = 0;
    for (;;) {
        int rc = claim_under_lock(r, slot, bytes, count, wait_ns, c);
        if (rc != SB_FULL || wait_ns <= 0)
            return rc;
        int64_t now = now_ns(CLOCK_MONOTONIC);
        if (!deadline)
            deadline = now + wait_ns;
        if (now >= deadline)
            return SB_FULL;
        /* Count ourselves as a waiter first, then look again: whoever frees space
         * after that sees us and bumps space_seq; whoever freed it before, we see
         * now. (Looking only before counting lost such a wake-up: the space came,
         * nobody woke us, and we slept the whole slice.) */
        register_waiter(h, &h->space_waiters, deadline);
        uint32_t seq = LOAD_ACQ(&h->space_seq);
        rc = claim_under_lock(r, slot, bytes, count, wait_ns, c);
        if (rc == SB_FULL) {
            /* A lease in the way is revoked at its deadline, which nobody wakes us for. */
            int64_t sleep_ns = deadline - now;
            if (LOAD(&h->leases_held) && sleep_ns > LEASE_RECHECK_NS)
                sleep_ns = LEASE_RECHECK_NS;
            futex_wait_one(&h->space_seq, seq, sleep_ns);
        }
        unregister_waiter(&h->space_waiters);
        if (rc != SB_FULL)
            return rc;
        uint64_t flags = LOAD(&h->flags);
        if (flags & SB_RING_DELETED)
            return SB_DELETED;
        if (flags & SB_RING_RETIRING)
            return SB_MOVED;
    }
}

/* ---- producer slots ---- */

int sb_slot_acquire(sb_ring *r, uint64_t pid, uint64_t start_ms, uint64_t token)
{
    for (int i = 0; i < SB_MAX_SLOTS; i++) {
        struct slot *s = &r->slots[i];
        uint64_t expected = 0;
        if (LOAD(&s->owner_pid) == 0
            && __atomic_compare_exchange_n(&s->owner_pid, &expected, pid, 0,
                                           __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            STORE(&s->state, IDLE);
            STORE(&s->owner_token, token);
            STORE_REL(&s->owner_start, start_ms);
            return i;
        }
    }
    return SB_FULL;
}

void sb_slot_release(sb_ring *r, int slot)
{
    if (slot < 0 || slot >= SB_MAX_SLOTS)
        return;
    /* Another thread of ours may still be appending with it: let it finish. */
    while (__atomic_exchange_n(&r->busy[slot], 1, __ATOMIC_ACQUIRE))
        sched_yield();
    struct slot *s = &r->slots[slot];
    STORE(&s->owner_start, 0);
    STORE(&s->owner_token, 0);
    STORE_REL(&s->owner_pid, 0);
    leave_slot(r, slot);
}

int sb_slots_get(sb_ring *r, sb_slot_info *out)
{
    int used = 0;
    for (int i = 0; i < SB_MAX_SLOTS; i++) {
        struct slot *s = &r->slots[i];
        sb_slot_info *info = &out[used];
        info->owner_pid = LOAD_ACQ(&s->owner_pid);
        if (!info->owner_pid)
            continue;
        info->slot = (uint64_t)i;
        info->owner_start = LOAD_ACQ(&s->owner_start);
        info->owner_token = LOAD_ACQ(&s->owner_token);
        info->state = LOAD_ACQ(&s->state);
        info->claimed = info->state == CLAIMED || info->state == PUBLISHING;
        info->claim_pos = LOAD(&s->claim_pos);
        info->claim_offset = LOAD(&s->claim_offset);
        used++;
    }
    return used;
}
