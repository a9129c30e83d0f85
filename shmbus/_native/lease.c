/* lease.c -- zero-copy readers' leases: a reader that hands out views into the ring
 * (not copies) holds producers back from overwriting them, for a bounded time.
 *
 * A lease names a ring position; make_room (claim.c) never moves head past a held
 * lease -- the producer waits, as for a full ring -- unless the lease is past its
 * deadline: then the producer revokes it and goes on. The reader learns that when it
 * lets go (sb_lease_release returns 0): its views may have been overwritten, and it
 * says so. A dead reader's lease is dropped by the supervisor (sb_lease_drop), or at
 * its deadline by the next producer. So a slow or dead zero-copy reader can hold a
 * producer up for at most the lease time, and its views are never silently garbage.
 * A reader whose unread records fill more than three quarters of the ring gets no
 * lease (SB_LAPPED: read with a copy): producers would meet it within a quarter ring.
 */
#define _GNU_SOURCE
#include <sched.h>
#include "claim.h"
#include "layout.h"
#include "wait.h"

int sb_lease_acquire(sb_ring *r, uint64_t position, int64_t hold_ns, uint64_t token)
{
    struct header *h = r->h;
    int i;
    /* FREE -> TAKING: ours, but producers ignore it until its fields are written. */
    for (i = 0; i < SB_MAX_LEASES; i++) {
        uint64_t free_state = LEASE_FREE;
        if (__atomic_compare_exchange_n(&h->leases[i].state, &free_state, LEASE_TAKING, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            break;
    }
    if (i == SB_MAX_LEASES)
        return SB_FULL;
    struct lease *l = &h->leases[i];
    STORE(&l->position, position);
    STORE(&l->deadline_ns, now_ns(CLOCK_MONOTONIC) + hold_ns);
    STORE(&l->token, token);
    __atomic_fetch_add(&h->leases_held, 1, __ATOMIC_SEQ_CST);
    STORE_REL(&l->state, LEASE_HELD);
    /* Producers read the leases under the claim lock. Once the lock is seen free (and
     * unchanged across reading head), every producer that takes it from now on sees
     * this lease; and whoever moved head before is seen in head. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (int attempt = 0;; attempt++) {
        uint64_t before = LOAD_ACQ(&h->lock);
        uint64_t head = LOAD_ACQ(&h->head), tail = LOAD_ACQ(&h->tail);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        uint64_t after = LOAD_ACQ(&h->lock);
        if (before == after && (before & LOCK_OWNER_MASK) == 0) {
            /* Gone already, or so far behind that producers would meet the lease
             * within a quarter ring: not worth holding them up for. */
            if (head > position || tail > position + r->data_bytes / 4 * 3) {
                sb_lease_release(r, i);
                return SB_LAPPED;
            }
            return i;
        }
        if (attempt > 1000) {
            sb_lease_release(r, i);
            return SB_LOCK_BUSY;
        }
        if (attempt > 64)
            sched_yield();
        else
            cpu_relax();
    }
}

int sb_lease_release(sb_ring *r, int lease)
{
    if (lease < 0 || lease >= SB_MAX_LEASES)
        return SB_BAD_RING;
    uint64_t was = __atomic_exchange_n(&r->h->leases[lease].state, LEASE_FREE, __ATOMIC_ACQ_REL);
    if (was == LEASE_HELD || was == LEASE_REVOKED)
        __atomic_fetch_sub(&r->h->leases_held, 1, __ATOMIC_SEQ_CST);
    wake_writers(r);   /* a producer may be waiting behind it */
    return was == LEASE_HELD;
}

int sb_lease_drop(sb_ring *r, uint64_t token)
{
    /* The holder is dead: free its leases, held or already revoked (nobody will
     * release them). */
    int dropped = 0;
    for (int i = 0; i < SB_MAX_LEASES; i++) {
        struct lease *l = &r->h->leases[i];
        uint64_t state = LOAD_ACQ(&l->state);
        if ((state == LEASE_HELD || state == LEASE_REVOKED) && LOAD(&l->token) == token
            && __atomic_compare_exchange_n(&l->state, &state, LEASE_FREE, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            __atomic_fetch_sub(&r->h->leases_held, 1, __ATOMIC_SEQ_CST);
            dropped++;
        }
    }
    if (dropped)
        wake_writers(r);
    return dropped;
}

int sb_lease_holder(sb_ring *r, int lease, uint64_t *out_token)
{
    if (lease < 0 || lease >= SB_MAX_LEASES)
        return SB_BAD_RING;
    *out_token = LOAD(&r->h->leases[lease].token);
    return (int)LOAD_ACQ(&r->h->leases[lease].state);
}

uint64_t lease_floor(sb_ring *r)
{
    struct header *h = r->h;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);   /* pairs with sb_lease_acquire's */
    if (!LOAD(&h->leases_held))
        return UINT64_MAX;
    uint64_t floor = UINT64_MAX;
    int64_t now = now_ns(CLOCK_MONOTONIC);
    for (int i = 0; i < SB_MAX_LEASES; i++) {
        struct lease *l = &h->leases[i];
        uint64_t state = LOAD_ACQ(&l->state);
        if (state != LEASE_HELD)
            continue;
        if (LOAD(&l->deadline_ns) < now) {
            /* It overstayed: revoke it (its holder is told when it lets go). */
            __atomic_compare_exchange_n(&l->state, &state, LEASE_REVOKED, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
            continue;
        }
        uint64_t position = LOAD(&l->position);
        if (position < floor)
            floor = position;
    }
    return floor;
}
