/* ring.c -- a ring's lifetime: its size, mapping, creation and attachment, its
 * header flags, and the snapshot of its header (stats). The layout and its
 * invariants are in layout.h; claiming, appending, reading, waiting and archiving
 * each have a file of their own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "claim.h"
#include "layout.h"
#include "wait.h"

static uint64_t index_slots_for(uint64_t data_bytes)
{
    /* Enough entries that every 16th offset of a ring full of minimal frames
     * has one: seek stays O(1) however small the records are. */
    uint64_t want = data_bytes / (FRAME_HEADER_BYTES * SB_INDEX_STRIDE) + 1;
    uint64_t slots = 1024;
    while (slots < want)
        slots <<= 1;
    return slots;
}

static uint64_t index_bytes_for(uint64_t data_bytes)
{
    return (index_slots_for(data_bytes) * 8 + 4095) & ~4095ull;
}

uint64_t sb_ring_total_bytes(uint64_t data_bytes)
{
    return HEADER_PAGE + SLOT_PAGE + index_bytes_for(data_bytes) + data_bytes;
}

uint64_t sb_max_frame_bytes(uint64_t data_bytes)
{
    /* Half the ring: a frame that must wrap wastes at most the other half. And at
     * most 2 GiB: a frame's length is 32 bits in word0 (an aborted frame covers a
     * whole claim), and key and value lengths are int32 in its header. */
    uint64_t half = data_bytes / 2;
    return (half < MAX_CLAIM_BYTES ? half : MAX_CLAIM_BYTES) & ~7ull;
}

static sb_ring *ring_map(int fd, uint64_t map_bytes, int *err)
{
    /* MAP_POPULATE: fault every page in now, not one by one on the hot path. */
    void *base = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) {
        *err = errno;
        return NULL;
    }
    sb_ring *r = calloc(1, sizeof *r);
    if (!r) {
        munmap(base, map_bytes);
        *err = ENOMEM;
        return NULL;
    }
    r->base = base;
    r->map_bytes = map_bytes;
    r->h = (struct header *)base;
    r->slots = (struct slot *)((char *)base + HEADER_PAGE);
    return r;
}

static void ring_bind_layout(sb_ring *r)
{
    r->data_bytes = r->h->data_bytes;
    r->index_slots = r->h->index_slots;
    r->index = (uint64_t *)(r->base + HEADER_PAGE + SLOT_PAGE);
    r->data = r->base + HEADER_PAGE + SLOT_PAGE + index_bytes_for(r->data_bytes);
    r->max_frame = sb_max_frame_bytes(r->data_bytes);
    r->durable = (LOAD(&r->h->flags) & SB_RING_DURABLE) != 0;
}

sb_ring *sb_ring_create(int fd, uint64_t data_bytes, uint64_t base_offset, uint64_t flags, int *err)
{
    *err = 0;
    if (data_bytes < 4096 || data_bytes % 4096) {
        *err = EINVAL;
        return NULL;
    }
    sb_ring *r = ring_map(fd, sb_ring_total_bytes(data_bytes), err);
    if (!r)
        return NULL;
    struct header *h = r->h;
    h->version = SB_VERSION;
    h->total_bytes = r->map_bytes;
    h->data_bytes = data_bytes;
    h->index_slots = index_slots_for(data_bytes);
    h->created_ns = (uint64_t)now_ns(CLOCK_REALTIME);
    h->base_offset = base_offset;
    h->flags = flags;
    h->next_offset = base_offset;
    h->head_offset = base_offset;
    STORE_REL(&h->magic, MAGIC);
    ring_bind_layout(r);
    return r;
}

sb_ring *sb_ring_attach(int fd, uint64_t file_bytes, int *err)
{
    *err = 0;
    if (file_bytes < HEADER_PAGE + SLOT_PAGE) {
        *err = EINVAL;
        return NULL;
    }
    sb_ring *r = ring_map(fd, file_bytes, err);
    if (!r)
        return NULL;
    struct header *h = r->h;
    if (LOAD_ACQ(&h->magic) != MAGIC || h->version != SB_VERSION || h->total_bytes != file_bytes
        || h->data_bytes < 4096 || h->data_bytes % 4096
        || h->index_slots != index_slots_for(h->data_bytes)
        || sb_ring_total_bytes(h->data_bytes) != file_bytes) {
        sb_ring_close(r);
        *err = EINVAL;
        return NULL;
    }
    ring_bind_layout(r);
    return r;
}

void sb_ring_close(sb_ring *r)
{
    if (!r)
        return;
    munmap(r->base, r->map_bytes);
    free(r);
}

void sb_ring_set_flag(sb_ring *r, uint64_t flag)
{
    __atomic_fetch_or(&r->h->flags, flag, __ATOMIC_SEQ_CST);
    /* A deleted ring must wake everyone so they notice. */
    wake_everyone(r);
}

int sb_ring_rebase(sb_ring *r, uint64_t base_offset)
{
    struct header *h = r->h;
    if (LOAD(&h->tail) != 0 || LOAD(&h->lock) & LOCK_OWNER_MASK)
        return SB_BAD_RING; /* only a ring nobody has written to */
    h->base_offset = base_offset;
    STORE(&h->head_offset, base_offset);
    STORE_REL(&h->next_offset, base_offset);
    return SB_OK;
}

void sb_ring_clear_flag(sb_ring *r, uint64_t flag)
{
    __atomic_fetch_and(&r->h->flags, ~flag, __ATOMIC_SEQ_CST);
}

void sb_ring_set_archived(sb_ring *r, uint64_t archived, uint64_t synced)
{
    STORE_REL(&r->h->synced, synced);
    STORE_REL(&r->h->archived, archived);
    wake_writers(r);
}

uint64_t sb_ring_tail(sb_ring *r)
{
    return LOAD_ACQ(&r->h->tail);
}

void sb_ring_stats(sb_ring *r, sb_stats *out)
{
    struct header *h = r->h;
    out->total_bytes = h->total_bytes;
    out->data_bytes = h->data_bytes;
    out->flags = LOAD(&h->flags);
    out->created_ns = h->created_ns;
    out->base_offset = h->base_offset;
    out->lock = LOAD_ACQ(&h->lock);
    out->retired_end = LOAD_ACQ(&h->retired_end);
    out->retired_next_offset = LOAD_ACQ(&h->retired_next_offset);
    if (out->flags & SB_RING_RETIRED) {
        /* Its lock may be held for good by the stalled producer it was retired for. */
        out->tail = out->retired_end;
        out->next_offset = out->retired_next_offset;
        out->head = LOAD_ACQ(&h->head);
        out->head_offset = LOAD_ACQ(&h->head_offset);
    } else {
        read_locked_pair(r, &h->tail, &h->next_offset, &out->tail, &out->next_offset);
        read_locked_pair(r, &h->head, &h->head_offset, &out->head, &out->head_offset);
    }
    out->published = LOAD_ACQ(&h->published);
    out->archived = LOAD_ACQ(&h->archived);
    out->synced = LOAD_ACQ(&h->synced);
    out->data_waiters = LOAD(&h->data_waiters);
    out->space_waiters = LOAD(&h->space_waiters);
    out->leases_held = LOAD(&h->leases_held);
}
