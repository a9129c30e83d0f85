/* layout.h -- the partition ring: one shared-memory object per partition.
 *
 *   [ header page | producer slot page | offset index | data area ]
 *
 * Positions are absolute byte counts since the ring was created; a position's
 * place in the data area is position % data_bytes and its lap is
 * position / data_bytes + 1. Every frame starts with word0 = lap << 32 | length,
 * stored last with a release store (Aeron): a reader that sees its lap and a
 * non-zero length sees the whole frame; a stale word0 from an earlier lap, or
 * zero, means "not written yet".
 *
 * Claiming (position + offset) happens under a tiny lock whose word names the
 * owner's producer slot. The owner writes its claim into the slot before it
 * moves the tail, so whoever finds the owner dead (pid + create time, checked
 * in Python) can redo or finish the claim and turn it into an aborted frame
 * (Aeron's unblocker, Chronicle's dead-owner unlock). Copying happens outside
 * the lock.
 *
 * The ring's content is [head, tail). Producers advance head before they
 * overwrite, and never past `published` (every frame before it is complete)
 * nor, on durable rings, past `archived`: that is the write limit.
 *
 * One file per concept: ring.c (lifetime), claim.c (the lock, room, claims,
 * producer slots), unblock.c (a dead producer's claim), append.c, read.c,
 * wait.c (every futex wait and wake), archive.c, frame.c (frames outside a ring),
 * and atomics.h under all of them.
 */
#ifndef SHMBUS_LAYOUT_H
#define SHMBUS_LAYOUT_H
#include <stdint.h>
#include "atomics.h"
#include "frame.h"
#include "shmbus.h"

#define MAGIC 0x53484D4255535231ull /* "SHMBUSR1" */
#define HEADER_PAGE 4096
#define SLOT_PAGE 8192

/* A producer slot's state. A claim goes IDLE -> CLAIMED (under the lock, once its
 * place is recorded) -> PUBLISHING (a CAS, once every byte is copied: from then on
 * the records will be published) -> IDLE. The unblocker (unblock.c) may move a
 * stalled CLAIMED claim to REVOKED (its records will never be published: readers
 * step over it), and a stalled lock holder that had not claimed yet from IDLE to
 * CANCELLED (it will not claim in this ring). The owner sees either when its own
 * CAS fails. */
enum { IDLE = SB_CLAIM_IDLE, CLAIMED = SB_CLAIM_CLAIMED, PUBLISHING = SB_CLAIM_PUBLISHING,
       REVOKED = SB_CLAIM_REVOKED, CANCELLED = SB_CLAIM_CANCELLED };

struct header {
    /* immutable after creation */
    uint64_t magic, version, total_bytes, data_bytes, index_slots, created_ns, base_offset, reserved0;
    _Alignas(LINE) uint64_t flags;
    /* the claim: changed only by the lock holder */
    _Alignas(LINE) uint64_t lock;
    uint64_t tail;
    uint64_t next_offset;
    /* the oldest frame still in the ring */
    _Alignas(LINE) uint64_t head;
    uint64_t head_offset;
    _Alignas(LINE) uint64_t published;
    _Alignas(LINE) uint64_t archived;
    uint64_t synced;
    /* futex words: readers sleep on data_seq, blocked producers on space_seq */
    _Alignas(LINE) uint32_t data_seq;
    uint32_t data_waiters;
    uint32_t space_seq;
    uint32_t space_waiters;
    uint64_t waiter_lease;     /* CLOCK_MONOTONIC ns until which some waiter may sleep */
    /* the highest position a producer's flush() waits to see fsynced */
    _Alignas(LINE) uint64_t sync_request;
    /* a retired ring (SB_RING_RETIRED) ends here: its last position and the offset
     * the partition's next ring starts at */
    _Alignas(LINE) uint64_t retired_end;
    uint64_t retired_next_offset;
    /* zero-copy readers' leases (lease.c): how many are held, then one line each */
    _Alignas(LINE) uint64_t leases_held;
    _Alignas(LINE) struct lease {
        uint64_t state;        /* LEASE_FREE, LEASE_TAKING (being filled in), LEASE_HELD, LEASE_REVOKED */
        uint64_t position;     /* producers do not overwrite from here on while it is held */
        int64_t deadline_ns;   /* CLOCK_MONOTONIC: past it, a producer may revoke it */
        uint64_t token;        /* the holder's liveness lock (a dead holder's is dropped) */
        uint64_t pad[4];
    } leases[SB_MAX_LEASES];
    /* room for later control words */
    _Alignas(LINE) uint64_t reserved[8];
};

enum { LEASE_FREE = SB_LEASE_FREE, LEASE_HELD = SB_LEASE_HELD, LEASE_REVOKED = SB_LEASE_REVOKED,
       LEASE_TAKING = SB_LEASE_TAKING };

struct slot {
    _Alignas(LINE) uint64_t owner_pid;  /* a hint: in another pid namespace it names nobody */
    uint64_t owner_start;
    uint64_t owner_token;      /* names the owner's liveness lock (shmbus/_liveness.py) */
    uint64_t state;            /* IDLE, CLAIMED, PUBLISHING, REVOKED or CANCELLED */
    uint64_t claim_pos;        /* where the claim starts (a padding frame, if it wrapped) */
    uint64_t claim_frame_pos;  /* where its first record frame starts */
    uint64_t claim_end;
    uint64_t claim_offset;
    uint64_t claim_count;
    uint64_t claim_gap;        /* bytes its last frame absorbs before the ring's end */
    uint64_t reserved[6];
};

_Static_assert(sizeof(struct header) <= HEADER_PAGE, "header fits its page");
_Static_assert(sizeof(struct slot) == 2 * LINE, "a slot takes two cache lines of its own");
_Static_assert(SB_MAX_SLOTS * sizeof(struct slot) <= SLOT_PAGE, "slots fit their page");

struct sb_ring {
    char *base;
    uint64_t map_bytes;
    struct header *h;
    struct slot *slots;
    uint64_t *index;
    char *data;
    uint64_t data_bytes;
    uint64_t index_slots;
    uint64_t max_frame;
    int durable;
    /* Per slot, set while one of this process's threads is inside an append
     * with it: a second thread gets SB_SLOT_BUSY instead of corrupting the claim. */
    uint8_t busy[SB_MAX_SLOTS];
};

static inline uint64_t lap_of(const sb_ring *r, uint64_t pos) { return pos / r->data_bytes + 1; }
static inline sb_frame_header *frame_at(const sb_ring *r, uint64_t pos)
{
    return (sb_frame_header *)(r->data + pos % r->data_bytes);
}

/* The frame at pos is complete when its word0 carries pos's lap and a length. */
static inline uint32_t published_length(const sb_ring *r, uint64_t pos)
{
    uint64_t word0 = LOAD_ACQ(&frame_at(r, pos)->word0);
    if ((word0 >> 32) != (lap_of(r, pos) & 0xFFFFFFFFull))
        return 0;
    return (uint32_t)word0;
}

/* A thread of this process enters a producer slot for the length of one append:
 * a second thread gets SB_SLOT_BUSY instead of corrupting the claim. */
static inline int enter_slot(sb_ring *r, int slot)
{
    if (slot < 0 || slot >= SB_MAX_SLOTS)
        return SB_BAD_RING;
    if (LOAD(&r->h->flags) & SB_RING_DELETED)
        return SB_DELETED;
    if (__atomic_exchange_n(&r->busy[slot], 1, __ATOMIC_ACQUIRE))
        return SB_SLOT_BUSY;
    return SB_OK;
}

static inline void leave_slot(sb_ring *r, int slot)
{
    __atomic_store_n(&r->busy[slot], 0, __ATOMIC_RELEASE);
}

#endif
