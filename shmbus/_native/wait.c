/* wait.c -- every futex wait and wake on a ring's header words: waiter counts and
 * their leases (so a waiter killed asleep is forgotten), the wake-ups producers make
 * only when someone sleeps, readers sleeping on many rings at once, and flush()
 * waiting for the archiver's fsync.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "layout.h"
#include "unblock.h"
#include "wait.h"
#include "claim.h"

static void futex_wake_all(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int futex_wait_one(uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts = {timeout_ns / 1000000000ll, timeout_ns % 1000000000ll};
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0);
}

/* A waiter that is killed in its sleep cannot take itself off the count, and
 * producers would then make a wake-up syscall on every append. So every
 * sleeper first extends a lease to the end of its sleep; once the lease is
 * long over, no live waiter sleeps and the supervisor may zero the counts
 * (sb_expire_waiters). */
void register_waiter(struct header *h, uint32_t *waiters, int64_t until_ns)
{
    uint64_t lease = LOAD(&h->waiter_lease);
    while (lease < (uint64_t)until_ns
           && !__atomic_compare_exchange_n(&h->waiter_lease, &lease, (uint64_t)until_ns, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
    __atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
}

void unregister_waiter(uint32_t *waiters)
{
    uint32_t n = LOAD(waiters);
    while (n && !__atomic_compare_exchange_n(waiters, &n, n - 1, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
}

static void wake_if_waiting(uint32_t *waiters, uint32_t *seq)
{
    if (LOAD(waiters)) {
        __atomic_fetch_add(seq, 1, __ATOMIC_RELEASE);
        futex_wake_all(seq);
    }
}

/* After publishing: wake sleeping readers, and producers blocked behind this
 * frame. The fence pairs with the waiter's increment-then-recheck: either it
 * sees our frame, or we see it waiting. No waiter, no syscall. */
void wake_after_publish(sb_ring *r)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    wake_if_waiting(&r->h->data_waiters, &r->h->data_seq);
    wake_if_waiting(&r->h->space_waiters, &r->h->space_seq);
}

void wake_writers(sb_ring *r)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    wake_if_waiting(&r->h->space_waiters, &r->h->space_seq);
}

void wake_everyone(sb_ring *r)
{
    __atomic_fetch_add(&r->h->data_seq, 1, __ATOMIC_RELEASE);
    futex_wake_all(&r->h->data_seq);
    __atomic_fetch_add(&r->h->space_seq, 1, __ATOMIC_RELEASE);
    futex_wake_all(&r->h->space_seq);
}

/* Zero waiter counts left by waiters that died asleep: only once the lease
 * every sleeper extends is grace_ns in the past, and only if no waiter came
 * meanwhile (it extends the lease before it counts itself). */
int sb_expire_waiters(sb_ring *r, int64_t grace_ns)
{
    struct header *h = r->h;
    uint32_t *counts[2] = {&h->data_waiters, &h->space_waiters};
    uint64_t lease = LOAD_ACQ(&h->waiter_lease);
    int zeroed = 0;
    if ((int64_t)lease + grace_ns > now_ns(CLOCK_MONOTONIC))
        return 0;
    for (int i = 0; i < 2; i++) {
        uint32_t n = LOAD_ACQ(counts[i]);
        if (!n)
            continue;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (LOAD_ACQ(&h->waiter_lease) != lease)
            break;
        zeroed |= __atomic_compare_exchange_n(counts[i], &n, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
    }
    return zeroed;
}

/* ---- readers: waiting for data on one ring or many ---- */

/* Anything for this cursor: a frame, a lap, a deletion? */
static int ready(sb_ring *r, const sb_cursor *cur)
{
    uint64_t word0 = LOAD_ACQ(&frame_at(r, cur->position)->word0);
    if ((word0 >> 32) >= (lap_of(r, cur->position) & 0xFFFFFFFFull) && (uint32_t)word0)
        return 1;
    uint64_t flags = LOAD(&r->h->flags);
    if ((flags & SB_RING_DELETED) || LOAD(&r->h->head) > cur->position)
        return 1;
    /* A retired ring: its end, or a revoked claim never to be written. */
    uint64_t end, first, count;
    return (flags & SB_RING_RETIRING)
           && (ring_end_reached(r, cur->position) || revoked_claim_at(r, cur->position, &end, &first, &count));
}

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
struct waitv_entry {
    uint64_t val, uaddr;
    uint32_t flags, reserved;
};
#define WAITV_MAX 128

/* The waits: on the rings' data words, and on a stop word of the waiter's own when
 * stop is not NULL (then always with futex_waitv, the stop word last). */
static int wait_data(sb_ring **rings, sb_cursor **cursors, uint32_t count, int64_t timeout_ns,
                     int64_t spin_ns, int yield_when_spinning, uint32_t *stop, uint32_t stop_seen)
{
    uint32_t limit = stop ? WAITV_MAX - 1 : WAITV_MAX;
    if (count > limit || (count == 0 && !stop))
        return SB_BAD_RING;
    int64_t start = now_ns(CLOCK_MONOTONIC);
    /* Spin first: on a busy bus the next frame arrives sooner than a futex
     * round trip (~25 us here). After a short pure spin, yield between checks
     * (the Disruptor's yielding strategy): when the cores are all taken, the
     * process we wait for may need ours, and pure spinning measured here
     * turned a 4 us round trip into 115 us. */
    for (uint32_t spins = 0;; spins++) {
        for (uint32_t i = 0; i < count; i++)
            if (ready(rings[i], cursors[i]))
                return 1;
        if (stop && LOAD_ACQ(stop) != stop_seen)
            return SB_WAIT_STOPPED;
        if (spin_ns <= 0 || ((spins & 15) == 0 && now_ns(CLOCK_MONOTONIC) - start >= spin_ns))
            break;
        if (spins < 256 || !yield_when_spinning)
            cpu_relax();
        else
            sched_yield();
    }
    if (timeout_ns <= spin_ns && spin_ns > 0)
        return 0;
    int64_t remaining = timeout_ns - (now_ns(CLOCK_MONOTONIC) - start);
    if (remaining <= 0)
        return 0;

    struct waitv_entry waits[WAITV_MAX];
    for (uint32_t i = 0; i < count; i++) {
        struct header *h = rings[i]->h;
        waits[i].val = LOAD_ACQ(&h->data_seq);
        waits[i].uaddr = (uint64_t)(uintptr_t)&h->data_seq;
        waits[i].flags = FUTEX_32;
        waits[i].reserved = 0;
        register_waiter(h, &h->data_waiters, start + timeout_ns);
    }
    uint32_t entries = count;
    if (stop) {
        waits[entries].val = stop_seen;
        waits[entries].uaddr = (uint64_t)(uintptr_t)stop;
        waits[entries].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
        waits[entries].reserved = 0;
        entries++;
    }
    int found = 0;
    for (uint32_t i = 0; i < count && !found; i++)
        found = ready(rings[i], cursors[i]);
    if (!found && stop && LOAD_ACQ(stop) != stop_seen)
        found = SB_WAIT_STOPPED;
    if (!found) {
        if (entries == 1) {
            /* One ring, or (stoppable, no rings yet) the stop word alone. */
            futex_wait_one((uint32_t *)(uintptr_t)waits[0].uaddr, (uint32_t)waits[0].val, remaining);
        } else {
            int64_t deadline = now_ns(CLOCK_MONOTONIC) + remaining;
            struct timespec ts = {deadline / 1000000000ll, deadline % 1000000000ll};
            long rc = syscall(SYS_futex_waitv, waits, entries, 0, &ts, CLOCK_MONOTONIC);
            if (rc < 0 && errno == ENOSYS && count) {
                /* Kernels before 5.16: wait on the first, in short slices. */
                int64_t slice = remaining < 1000000 ? remaining : 1000000;
                futex_wait_one(&rings[0]->h->data_seq, (uint32_t)waits[0].val, slice);
            }
        }
        for (uint32_t i = 0; i < count && !found; i++)
            found = ready(rings[i], cursors[i]);
        if (!found && stop && LOAD_ACQ(stop) != stop_seen)
            found = SB_WAIT_STOPPED;
    }
    for (uint32_t i = 0; i < count; i++)
        unregister_waiter(&rings[i]->h->data_waiters);
    return found;
}

int sb_wait_data(sb_ring **rings, sb_cursor **cursors, uint32_t count,
                 int64_t timeout_ns, int64_t spin_ns, int yield_when_spinning)
{
    return wait_data(rings, cursors, count, timeout_ns, spin_ns, yield_when_spinning, NULL, 0);
}

int sb_wait_data_or_stop(sb_ring **rings, sb_cursor **cursors, uint32_t count, int64_t timeout_ns,
                         uint32_t *stop, uint32_t stop_seen)
{
    return wait_data(rings, cursors, count, timeout_ns, 0, 0, stop, stop_seen);
}

void sb_stop_wait(uint32_t *stop)
{
    __atomic_fetch_add(stop, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, stop, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* ---- producers that wait for space off their own thread (asyncio) ---- */

uint32_t sb_space_wait_begin(sb_ring *r, int64_t deadline_ns)
{
    register_waiter(r->h, &r->h->space_waiters, deadline_ns);
    return LOAD_ACQ(&r->h->space_seq);
}

int sb_space_wait(sb_ring *r, uint32_t seen, int64_t timeout_ns, uint32_t *stop, uint32_t stop_seen)
{
    struct header *h = r->h;
    if (LOAD_ACQ(&h->space_seq) != seen)
        return 1;
    if (LOAD_ACQ(stop) != stop_seen)
        return SB_WAIT_STOPPED;
    /* A lease in the way is revoked at its deadline, which nobody wakes us for. */
    if (LOAD(&h->leases_held) && timeout_ns > LEASE_RECHECK_NS)
        timeout_ns = LEASE_RECHECK_NS;
    struct waitv_entry waits[2] = {
        {seen, (uint64_t)(uintptr_t)&h->space_seq, FUTEX_32, 0},
        {stop_seen, (uint64_t)(uintptr_t)stop, FUTEX_32 | FUTEX_PRIVATE_FLAG, 0},
    };
    int64_t deadline = now_ns(CLOCK_MONOTONIC) + timeout_ns;
    struct timespec ts = {deadline / 1000000000ll, deadline % 1000000000ll};
    long rc = syscall(SYS_futex_waitv, waits, 2, 0, &ts, CLOCK_MONOTONIC);
    if (rc < 0 && errno == ENOSYS)
        futex_wait_one(&h->space_seq, seen, timeout_ns < 1000000 ? timeout_ns : 1000000);
    if (LOAD_ACQ(stop) != stop_seen)
        return SB_WAIT_STOPPED;
    return LOAD_ACQ(&h->space_seq) != seen;
}

void sb_space_wait_end(sb_ring *r)
{
    unregister_waiter(&r->h->space_waiters);
}

/* ---- durability: flush requests ---- */

void sb_request_sync(sb_ring *r, uint64_t position)
{
    uint64_t seen = LOAD(&r->h->sync_request);
    while (seen < position
           && !__atomic_compare_exchange_n(&r->h->sync_request, &seen, position, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
    /* The archiver sleeps among the readers: wake it. */
    __atomic_fetch_add(&r->h->data_seq, 1, __ATOMIC_RELEASE);
    futex_wake_all(&r->h->data_seq);
}

uint64_t sb_sync_requested(sb_ring *r)
{
    return LOAD_ACQ(&r->h->sync_request);
}

int sb_wait_synced(sb_ring *r, uint64_t position, int64_t timeout_ns)
{
    struct header *h = r->h;
    int64_t deadline = now_ns(CLOCK_MONOTONIC) + timeout_ns;
    for (;;) {
        uint32_t seq = LOAD_ACQ(&h->space_seq);
        if (LOAD_ACQ(&h->synced) >= position)
            return 1;
        if (LOAD(&h->flags) & SB_RING_DELETED)
            return SB_DELETED;
        int64_t left = deadline - now_ns(CLOCK_MONOTONIC);
        if (left <= 0)
            return 0;
        register_waiter(h, &h->space_waiters, deadline);
        if (LOAD_ACQ(&h->synced) < position)
            futex_wait_one(&h->space_seq, seq, left);
        unregister_waiter(&h->space_waiters);
    }
}
