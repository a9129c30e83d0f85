/* ring.c -- the partition ring: one shared-memory object per partition.
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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "shmbus.h"

#define MAGIC 0x53484D4255535231ull /* "SHMBUSR1" */
#define LINE 64
#define HEADER_PAGE 4096
#define SLOT_PAGE 4096
#define CLAIMED 1
#define LOCK_OWNER_MASK 0xFFull
#define LOCK_SEQ_ONE 0x100ull
#define LOCK_SPIN_NS 20000000ll     /* 20 ms: far longer than any live holder needs */
#define KEY_NULL (-1)

/* ======================================================================
 * Layout
 * ====================================================================== */

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
    /* room for later control words */
    _Alignas(LINE) uint64_t reserved[8];
};

struct slot {
    _Alignas(LINE) uint64_t owner_pid;
    uint64_t owner_start;
    uint64_t state;
    uint64_t claim_pos;        /* where the claim starts (a padding frame, if it wrapped) */
    uint64_t claim_frame_pos;  /* where its first record frame starts */
    uint64_t claim_end;
    uint64_t claim_offset;
    uint64_t claim_count;
};

#define SB_FRAME_HEADER_BYTES sizeof(sb_frame_header)

_Static_assert(sizeof(struct header) <= HEADER_PAGE, "header fits its page");
_Static_assert(sizeof(struct slot) == LINE, "one slot per cache line");
_Static_assert(SB_MAX_SLOTS * sizeof(struct slot) <= SLOT_PAGE, "slots fit their page");
_Static_assert(sizeof(sb_frame_header) == 48, "frame header size");

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

/* ======================================================================
 * Small helpers
 * ====================================================================== */

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static inline uint64_t align8(uint64_t x) { return (x + 7) & ~7ull; }

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

static inline int64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

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

static inline uint64_t payload_bytes(const sb_frame_header *f)
{
    return (f->key_len > 0 ? (uint64_t)f->key_len : 0) + f->headers_len
         + (f->value_len > 0 ? (uint64_t)f->value_len : 0);
}

static void futex_wake_all(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* A waiter that is killed in its sleep cannot take itself off the count, and
 * producers would then make a wake-up syscall on every append. So every
 * sleeper first extends a lease to the end of its sleep; once the lease is
 * long over, no live waiter sleeps and the supervisor may zero the counts
 * (sb_expire_waiters). */
static void register_waiter(struct header *h, uint32_t *waiters, int64_t until_ns)
{
    uint64_t lease = LOAD(&h->waiter_lease);
    while (lease < (uint64_t)until_ns
           && !__atomic_compare_exchange_n(&h->waiter_lease, &lease, (uint64_t)until_ns, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
    __atomic_fetch_add(waiters, 1, __ATOMIC_SEQ_CST);
}

static void unregister_waiter(uint32_t *waiters)
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
static void wake_after_publish(sb_ring *r)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    wake_if_waiting(&r->h->data_waiters, &r->h->data_seq);
    wake_if_waiting(&r->h->space_waiters, &r->h->space_seq);
}

static void wake_writers(sb_ring *r)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    wake_if_waiting(&r->h->space_waiters, &r->h->space_seq);
}

/* ======================================================================
 * Layout and lifetime
 * ====================================================================== */

static uint64_t index_slots_for(uint64_t data_bytes)
{
    /* Enough entries that every 16th offset of a ring full of minimal frames
     * has one: seek stays O(1) however small the records are. */
    uint64_t want = data_bytes / (SB_FRAME_HEADER_BYTES * SB_INDEX_STRIDE) + 1;
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
    /* Half the ring: a frame that must wrap wastes at most the other half. */
    return (data_bytes / 2) & ~7ull;
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

/* ======================================================================
 * The claim lock
 * ====================================================================== */

static int lock_acquire(sb_ring *r, int slot)
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
            int64_t now = now_ns(CLOCK_MONOTONIC);
            if (!deadline)
                deadline = now + LOCK_SPIN_NS;
            else if (now > deadline)
                return SB_LOCK_BUSY;
        }
    }
}

static void lock_release(sb_ring *r)
{
    uint64_t word = LOAD(&r->h->lock);
    STORE_REL(&r->h->lock, (word & ~LOCK_OWNER_MASK) + LOCK_SEQ_ONE);
}

int sb_lock_owner(sb_ring *r)
{
    return (int)(LOAD_ACQ(&r->h->lock) & LOCK_OWNER_MASK) - 1;
}

/* Read two words that change only under the lock, consistently: the lock's
 * sequence must be the same, and free, before and after. */
static void read_locked_pair(sb_ring *r, uint64_t *a, uint64_t *b, uint64_t *out_a, uint64_t *out_b)
{
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

/* ======================================================================
 * Space: head, published, the write limit
 * ====================================================================== */

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
        head_offset += f->type == SB_FRAME_PADDING ? 0 : f->record_count;
        head += align8(len);
    }
    /* head_offset first: a reaper that finds us dead in between re-derives it. */
    STORE_REL(&h->head_offset, head_offset);
    STORE_REL(&h->head, head);
    return head >= limit ? SB_OK : SB_FULL;
}

struct claim {
    uint64_t pos, frame_pos, end, offset;
    uint64_t gap;  /* bytes before the ring's end too few for a frame header: the last frame absorbs them */
};

/* Reserve `bytes` for `count` frames (the lock is held). The reservation is
 * written to the slot before the tail moves, so it can always be finished. */
static int claim(sb_ring *r, int slot, uint64_t bytes, uint32_t count, struct claim *c)
{
    struct header *h = r->h;
    uint64_t tail = LOAD(&h->tail);
    uint64_t room_before_end = r->data_bytes - tail % r->data_bytes;
    c->pos = tail;
    c->frame_pos = bytes > room_before_end ? tail + room_before_end : tail;
    c->end = c->frame_pos + bytes;
    /* Never leave the tail closer to the ring's end than a frame header: no
     * frame, not even padding, could start there. */
    c->gap = r->data_bytes - c->end % r->data_bytes;
    if (c->gap < SB_FRAME_HEADER_BYTES)
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
    STORE_REL(&s->state, CLAIMED);
    STORE(&h->tail, c->end);
    STORE(&h->next_offset, c->offset + count);
    return SB_OK;
}

static int futex_wait_one(uint32_t *word, uint32_t expected, int64_t timeout_ns)
{
    struct timespec ts = {timeout_ns / 1000000000ll, timeout_ns % 1000000000ll};
    return (int)syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0);
}

/* Claim under the lock; when the write limit is reached, sleep on space_seq
 * (read before the attempt, so a wake-up in between is never lost) for at
 * most wait_ns, then give SB_FULL back to Python to decide. */
static int claim_or_wait(sb_ring *r, int slot, uint64_t bytes, uint32_t count, int64_t wait_ns,
                         struct claim *c)
{
    struct header *h = r->h;
    int64_t deadline = 0;
    for (;;) {
        uint32_t seq = LOAD_ACQ(&h->space_seq);
        int rc = lock_acquire(r, slot);
        if (rc < 0)
            return rc;
        rc = claim(r, slot, bytes, count, c);
        lock_release(r);
        if (rc != SB_FULL || wait_ns <= 0)
            return rc;
        int64_t now = now_ns(CLOCK_MONOTONIC);
        if (!deadline)
            deadline = now + wait_ns;
        if (now >= deadline)
            return SB_FULL;
        register_waiter(h, &h->space_waiters, deadline);
        futex_wait_one(&h->space_seq, seq, deadline - now);
        unregister_waiter(&h->space_waiters);
        if (LOAD(&h->flags) & SB_RING_DELETED)
            return SB_DELETED;
    }
}

/* ======================================================================
 * Writing frames
 * ====================================================================== */

static void publish(sb_ring *r, uint64_t pos, uint32_t length)
{
    STORE_REL(&frame_at(r, pos)->word0, (lap_of(r, pos) << 32) | length);
}

static void seal(sb_frame_header *f, uint64_t content_bytes)
{
    f->crc = sb_crc32c(0, (const char *)f + 12, content_bytes - 12);
}

/* Write a header-only frame: padding up to the ring's end, or an aborted claim. */
static void write_filler(sb_ring *r, uint64_t pos, uint64_t length, uint16_t type,
                         uint64_t offset, uint32_t record_count)
{
    sb_frame_header *f = frame_at(r, pos);
    f->type = type;
    f->flags = 0;
    f->offset = offset;
    f->timestamp_ns = 0;
    f->record_count = record_count;
    f->key_len = KEY_NULL;
    f->headers_len = 0;
    f->value_len = KEY_NULL;
    seal(f, SB_FRAME_HEADER_BYTES);
    publish(r, pos, (uint32_t)length);
}

static uint64_t write_record(sb_ring *r, uint64_t pos, uint64_t offset, int64_t timestamp_ns,
                             const char *key, int64_t key_len,
                             const char *headers, int64_t headers_len,
                             const char *value, int64_t value_len, uint64_t gap)
{
    sb_frame_header *f = frame_at(r, pos);
    char *payload = (char *)(f + 1);
    uint64_t k = key_len > 0 ? (uint64_t)key_len : 0, v = value_len > 0 ? (uint64_t)value_len : 0;
    f->type = SB_FRAME_DATA;
    f->flags = 0;
    f->offset = offset;
    f->timestamp_ns = timestamp_ns;
    f->record_count = 1;
    f->key_len = (int32_t)key_len;
    f->headers_len = (uint32_t)headers_len;
    f->value_len = (int32_t)value_len;
    if (k)
        memcpy(payload, key, k);
    if (headers_len)
        memcpy(payload + k, headers, (size_t)headers_len);
    if (v)
        memcpy(payload + k + headers_len, value, v);
    uint64_t content = SB_FRAME_HEADER_BYTES + k + (uint64_t)headers_len + v;
    seal(f, content);
    if (offset % SB_INDEX_STRIDE == 0)
        STORE(&r->index[(offset / SB_INDEX_STRIDE) & (r->index_slots - 1)], pos);
    /* word0's length covers the gap, so readers step over it; the CRC and the
     * lengths above cover only the record. */
    publish(r, pos, (uint32_t)(content + gap));
    return align8(content) + gap;
}

static int64_t resolve_timestamp(int64_t timestamp_ns, int64_t *out_timestamp)
{
    if (timestamp_ns < 0)
        timestamp_ns = now_ns(CLOCK_REALTIME);
    *out_timestamp = timestamp_ns;
    return timestamp_ns;
}

static int enter_slot(sb_ring *r, int slot)
{
    if (slot < 0 || slot >= SB_MAX_SLOTS)
        return SB_BAD_RING;
    if (LOAD(&r->h->flags) & SB_RING_DELETED)
        return SB_DELETED;
    if (__atomic_exchange_n(&r->busy[slot], 1, __ATOMIC_ACQUIRE))
        return SB_SLOT_BUSY;
    return SB_OK;
}

static void leave_slot(sb_ring *r, int slot)
{
    __atomic_store_n(&r->busy[slot], 0, __ATOMIC_RELEASE);
}

static int64_t append_one(sb_ring *r, int slot,
                          const char *key, int64_t key_len,
                          const char *headers, int64_t headers_len,
                          const char *value, int64_t value_len,
                          int64_t timestamp_ns, int64_t *out_timestamp, int64_t wait_ns,
                          uint64_t *out_end)
{
    uint64_t bytes = align8(SB_FRAME_HEADER_BYTES + (key_len > 0 ? key_len : 0) + headers_len
                            + (value_len > 0 ? value_len : 0));
    if (bytes > r->max_frame)
        return SB_TOO_LARGE;
    timestamp_ns = resolve_timestamp(timestamp_ns, out_timestamp);

    struct claim c;
    int rc = claim_or_wait(r, slot, bytes, 1, wait_ns, &c);
    if (rc < 0)
        return rc;
    if (c.frame_pos != c.pos)
        write_filler(r, c.pos, c.frame_pos - c.pos, SB_FRAME_PADDING, c.offset, 0);
    write_record(r, c.frame_pos, c.offset, timestamp_ns, key, key_len, headers, headers_len,
                 value, value_len, c.gap);
    STORE_REL(&r->slots[slot].state, 0);
    wake_after_publish(r);
    *out_end = c.end;
    return (int64_t)c.offset;
}

int64_t sb_append(sb_writer *w,
                  const char *key, int64_t key_len,
                  const char *headers, int64_t headers_len,
                  const char *value, int64_t value_len, int64_t timestamp_ns)
{
    int rc = enter_slot(w->ring, w->slot);
    if (rc < 0)
        return rc;
    int64_t offset = append_one(w->ring, w->slot, key, key_len, headers, headers_len, value, value_len,
                                timestamp_ns, &w->timestamp_ns, w->wait_ns, &w->end_position);
    leave_slot(w->ring, w->slot);
    return offset;
}

/* The common records, with the fewest arguments (each costs Python time). */
int64_t sb_append_value(sb_writer *w, const char *value, int64_t value_len)
{
    return sb_append(w, NULL, -1, NULL, 0, value, value_len, -1);
}

int64_t sb_append_keyed(sb_writer *w, const char *key, int64_t key_len,
                        const char *value, int64_t value_len)
{
    return sb_append(w, key, key_len, NULL, 0, value, value_len, -1);
}

static int64_t append_batch(sb_ring *r, int slot,
                            const char *key, int64_t key_len,
                            const char *headers, int64_t headers_len,
                            const char *values, const int64_t *value_lens, uint32_t count,
                            int64_t timestamp_ns, int64_t *out_timestamp, int64_t wait_ns,
                            uint32_t *out_count, uint64_t *out_end)
{
    int rc;
    uint64_t fixed = SB_FRAME_HEADER_BYTES + (key_len > 0 ? key_len : 0) + headers_len;
    uint64_t bytes = 0;
    uint32_t fits = 0;
    while (fits < count) {
        uint64_t frame = align8(fixed + (value_lens[fits] > 0 ? value_lens[fits] : 0));
        if (bytes + frame > r->max_frame)
            break;
        bytes += frame;
        fits++;
    }
    if (fits == 0)
        return SB_TOO_LARGE;
    count = fits;
    timestamp_ns = resolve_timestamp(timestamp_ns, out_timestamp);

    struct claim c;
    if ((rc = claim_or_wait(r, slot, bytes, count, wait_ns, &c)) < 0)
        return rc;
    if (c.frame_pos != c.pos)
        write_filler(r, c.pos, c.frame_pos - c.pos, SB_FRAME_PADDING, c.offset, 0);
    uint64_t pos = c.frame_pos;
    const char *value = values;
    for (uint32_t i = 0; i < count; i++) {
        int64_t value_len = value_lens[i];
        pos += write_record(r, pos, c.offset + i, timestamp_ns, key, key_len, headers, headers_len,
                            value, value_len, i + 1 == count ? c.gap : 0);
        value += value_len > 0 ? value_len : 0;
    }
    STORE_REL(&r->slots[slot].state, 0);
    wake_after_publish(r);
    *out_count = count;
    *out_end = c.end;
    return (int64_t)c.offset;
}

int64_t sb_append_batch(sb_writer *w,
                        const char *key, int64_t key_len,
                        const char *headers, int64_t headers_len,
                        const char *values, const int64_t *value_lens, uint32_t count,
                        int64_t timestamp_ns, uint32_t *out_count)
{
    /* Appends the longest prefix of the batch that fits one claim (half the
     * ring); *out_count says how many, the caller sends the rest next. */
    *out_count = 0;
    int rc = enter_slot(w->ring, w->slot);
    if (rc < 0)
        return rc;
    int64_t offset = append_batch(w->ring, w->slot, key, key_len, headers, headers_len, values,
                                  value_lens, count, timestamp_ns, &w->timestamp_ns, w->wait_ns,
                                  out_count, &w->end_position);
    leave_slot(w->ring, w->slot);
    return offset;
}

/* ======================================================================
 * Producer slots and the reaper
 * ====================================================================== */

int sb_slot_acquire(sb_ring *r, uint64_t pid, uint64_t start_ms)
{
    for (int i = 0; i < SB_MAX_SLOTS; i++) {
        struct slot *s = &r->slots[i];
        uint64_t expected = 0;
        if (LOAD(&s->owner_pid) == 0
            && __atomic_compare_exchange_n(&s->owner_pid, &expected, pid, 0,
                                           __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            STORE(&s->state, 0);
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
    STORE_REL(&s->owner_pid, 0);
    leave_slot(r, slot);
}

void sb_slots_get(sb_ring *r, sb_slot_info *out)
{
    for (int i = 0; i < SB_MAX_SLOTS; i++) {
        struct slot *s = &r->slots[i];
        out[i].owner_pid = LOAD_ACQ(&s->owner_pid);
        out[i].owner_start = LOAD_ACQ(&s->owner_start);
        out[i].claimed = LOAD_ACQ(&s->state) == CLAIMED;
    }
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

/* ======================================================================
 * Reading
 * ====================================================================== */

void sb_seek_end(sb_ring *r, sb_cursor *cur)
{
    read_locked_pair(r, &r->h->tail, &r->h->next_offset, &cur->position, &cur->next_offset);
}

void sb_seek_head(sb_ring *r, sb_cursor *cur)
{
    read_locked_pair(r, &r->h->head, &r->h->head_offset, &cur->position, &cur->next_offset);
}

/* Is position still the start of a frame the ring holds (not yet overwritten)? */
static int still_in_ring(sb_ring *r, uint64_t pos)
{
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return LOAD_ACQ(&r->h->head) <= pos;
}

int sb_seek(sb_ring *r, sb_cursor *cur, uint64_t offset)
{
    uint64_t head, head_offset, tail, end_offset;
    sb_seek_head(r, cur);
    head = cur->position;
    head_offset = cur->next_offset;
    read_locked_pair(r, &r->h->tail, &r->h->next_offset, &tail, &end_offset);
    if (offset < head_offset || offset > end_offset)
        return SB_OUT_OF_RANGE;
    if (offset == end_offset) {
        cur->position = tail;
        cur->next_offset = end_offset;
        return SB_OK;
    }
    /* Start from the index entry at or below the offset, if it still holds. */
    uint64_t pos = head, at = head_offset;
    uint64_t indexed_offset = offset - offset % SB_INDEX_STRIDE;
    uint64_t indexed = LOAD(&r->index[(indexed_offset / SB_INDEX_STRIDE) & (r->index_slots - 1)]);
    if (indexed >= head && indexed < tail && indexed % 8 == 0 && indexed_offset >= head_offset
        && published_length(r, indexed)) {
        sb_frame_header *f = frame_at(r, indexed);
        if (f->type == SB_FRAME_DATA && f->offset == indexed_offset) {
            pos = indexed;
            at = indexed_offset;
        }
    }
    while (pos < tail) {
        uint32_t len = published_length(r, pos);
        if (!len)
            return SB_EMPTY; /* a frame before it is still being written: try again */
        sb_frame_header *f = frame_at(r, pos);
        uint64_t records = f->type == SB_FRAME_PADDING ? 0 : f->record_count;
        if (f->type != SB_FRAME_PADDING && f->offset + records > offset)
            break;
        at = f->offset + records;
        pos += align8(len);
    }
    if (!still_in_ring(r, pos))
        return SB_OUT_OF_RANGE;
    cur->position = pos;
    cur->next_offset = at > offset ? at : offset;
    /* Inside an aborted frame the cursor sits on the frame; sb_read skips it. */
    if (pos < tail) {
        sb_frame_header *f = frame_at(r, pos);
        if (f->type == SB_FRAME_ABORTED)
            cur->next_offset = f->offset;
    }
    return SB_OK;
}

/* The reader fell off the ring: on a memory-only ring skip to the oldest
 * record and count what was lost; a durable ring's reader goes to disk. */
static int64_t lapped(sb_ring *r, sb_cursor *cur, uint64_t resume_offset)
{
    if (still_in_ring(r, cur->position))
        return 0; /* a word0 from a later lap, seen before head moved: not yet */
    if (r->durable) {
        cur->next_offset = resume_offset;
        return SB_LAPPED;
    }
    uint64_t head, head_offset;
    read_locked_pair(r, &r->h->head, &r->h->head_offset, &head, &head_offset);
    if (head_offset > resume_offset)
        cur->missed += head_offset - resume_offset;
    cur->position = head;
    cur->next_offset = head_offset;
    return 0;
}

/* Copy up to max_records records into out and describe each with SB_DESC_WORDS
 * words: offset, timestamp, key at/len, headers at/len, value at/len. When all of
 * them are plain -- no key, no headers, consecutive offsets from the cursor's,
 * the common case -- *out_plain is set and each is described with just
 * (timestamp, value length), values packed back to back: less for Python to
 * unpack per record. */
int64_t sb_read(sb_ring *r, sb_cursor *cur, uint32_t max_records,
                char *out, uint64_t out_capacity, int64_t *desc, uint64_t *out_used,
                int *out_plain)
{
    uint64_t start_pos = cur->position, start_offset = cur->next_offset;
    uint64_t pos = start_pos, offset = start_offset, used = 0;
    uint64_t skipped_aborted = 0;
    int64_t n = 0;
    int plain = 1;
    *out_used = 0;
    *out_plain = 0;
    if (LOAD(&r->h->flags) & SB_RING_DELETED)
        return SB_DELETED;
    if (!still_in_ring(r, pos))
        return lapped(r, cur, offset);
    while ((uint32_t)n < max_records) {
        uint64_t word0 = LOAD_ACQ(&frame_at(r, pos)->word0);
        uint64_t lap = word0 >> 32, expected_lap = lap_of(r, pos) & 0xFFFFFFFFull;
        uint32_t len = (uint32_t)word0;
        if (lap != expected_lap || len == 0) {
            /* Not written yet, unless producers already went past: then what we
             * copied so far is checked below, and the next call skips ahead. */
            if (n == 0 && !still_in_ring(r, pos))
                return lapped(r, cur, offset);
            break;
        }
        const sb_frame_header *f = frame_at(r, pos);
        if (len < SB_FRAME_HEADER_BYTES || len > r->data_bytes)
            return SB_CORRUPT;
        if (f->type == SB_FRAME_PADDING) {
            pos += align8(len);
            continue;
        }
        if (f->offset != offset && f->type == SB_FRAME_DATA) {
            if (!still_in_ring(r, start_pos))
                return lapped(r, cur, start_offset);
            return SB_CORRUPT;
        }
        if (f->type == SB_FRAME_ABORTED) {
            skipped_aborted += f->offset + f->record_count - offset;
            offset = f->offset + f->record_count;
            pos += align8(len);
            continue;
        }
        uint64_t payload = payload_bytes(f);
        if (used + payload > out_capacity) {
            if (n == 0) {
                *out_used = payload;
                return SB_BUFFER_SMALL;
            }
            break;
        }
        const char *src = (const char *)(f + 1);
        memcpy(out + used, src, payload);
        int64_t *d = desc + n * SB_DESC_WORDS;
        int64_t k = f->key_len > 0 ? f->key_len : 0;
        d[0] = (int64_t)f->offset;
        d[1] = f->timestamp_ns;
        d[2] = (int64_t)used;
        d[3] = f->key_len;
        d[4] = (int64_t)used + k;
        d[5] = f->headers_len;
        d[6] = (int64_t)used + k + f->headers_len;
        d[7] = f->value_len;
        plain &= f->key_len < 0 && f->headers_len == 0 && skipped_aborted == 0;
        used += payload;
        offset++;
        pos += align8(len);
        n++;
    }
    /* Seqlock check: if head passed where we started, what we copied may be torn. */
    if (!still_in_ring(r, start_pos))
        return lapped(r, cur, start_offset);
    cur->position = pos;
    cur->next_offset = offset;
    cur->aborted += skipped_aborted;
    *out_used = used;
    if (plain && n > 0) {
        for (int64_t i = 0; i < n; i++) {
            desc[2 * i] = desc[i * SB_DESC_WORDS + 1];
            desc[2 * i + 1] = desc[i * SB_DESC_WORDS + 7];
        }
        *out_plain = 1;
    }
    return n;
}

/* Anything for this cursor: a frame, a lap, a deletion? */
static int ready(sb_ring *r, const sb_cursor *cur)
{
    uint64_t word0 = LOAD_ACQ(&frame_at(r, cur->position)->word0);
    if ((word0 >> 32) >= (lap_of(r, cur->position) & 0xFFFFFFFFull) && (uint32_t)word0)
        return 1;
    return (LOAD(&r->h->flags) & SB_RING_DELETED) || LOAD(&r->h->head) > cur->position;
}

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
struct waitv_entry {
    uint64_t val, uaddr;
    uint32_t flags, reserved;
};
#define WAITV_MAX 128

int sb_wait_data(sb_ring **rings, sb_cursor **cursors, uint32_t count,
                 int64_t timeout_ns, int64_t spin_ns, int yield_when_spinning)
{
    if (count == 0 || count > WAITV_MAX)
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
    int found = 0;
    for (uint32_t i = 0; i < count && !found; i++)
        found = ready(rings[i], cursors[i]);
    if (!found) {
        if (count == 1) {
            futex_wait_one(&rings[0]->h->data_seq, (uint32_t)waits[0].val, remaining);
        } else {
            int64_t deadline = now_ns(CLOCK_MONOTONIC) + remaining;
            struct timespec ts = {deadline / 1000000000ll, deadline % 1000000000ll};
            long rc = syscall(SYS_futex_waitv, waits, count, 0, &ts, CLOCK_MONOTONIC);
            if (rc < 0 && errno == ENOSYS) {
                /* Kernels before 5.16: wait on the first, in short slices. */
                int64_t slice = remaining < 1000000 ? remaining : 1000000;
                futex_wait_one(&rings[0]->h->data_seq, (uint32_t)waits[0].val, slice);
            }
        }
        for (uint32_t i = 0; i < count && !found; i++)
            found = ready(rings[i], cursors[i]);
    }
    for (uint32_t i = 0; i < count; i++)
        unregister_waiter(&rings[i]->h->data_waiters);
    return found;
}

/* ======================================================================
 * Durability: flush requests
 * ====================================================================== */

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

/* ======================================================================
 * The archiver: copy complete frames from the ring to a segment file
 * ====================================================================== */

/* At most 1 MiB per write(): measured here, 16 MiB writes into the page cache
 * ran at a seventh of the speed of 1 MiB ones. */
#define WRITE_CHUNK (1u << 20)

static int write_all(int fd, const char *p, uint64_t n)
{
    while (n) {
        ssize_t done = write(fd, p, n < WRITE_CHUNK ? n : WRITE_CHUNK);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += done;
        n -= (uint64_t)done;
    }
    return 0;
}

/* Write the run [run_start, pos) of the ring, which never crosses its end. */
static int flush_run(sb_ring *r, int fd, uint64_t run_start, uint64_t pos)
{
    if (pos == run_start)
        return 0;
    return write_all(fd, r->data + run_start % r->data_bytes, pos - run_start);
}

int64_t sb_archive(sb_ring *r, int fd, sb_archive_state *st, uint64_t max_bytes,
                   uint64_t index_interval, sb_index_entry *entries, uint32_t max_entries,
                   uint32_t *out_entries)
{
    /* Frames go to disk byte for byte as they are in the ring (one parser
     * reads both); runs of whole frames are written straight from shared
     * memory, padding is skipped, and an aborted claim is cut to its header. */
    uint64_t pos = st->position, run_start = pos, written = 0;
    uint32_t n_entries = 0;
    int rc;
    *out_entries = 0;
    while (written < max_bytes && n_entries < max_entries) {
        uint32_t len = published_length(r, pos);
        if (!len)
            break;
        sb_frame_header *f = frame_at(r, pos);
        uint64_t size = align8(len);
        if (f->type == SB_FRAME_PADDING) {
            if ((rc = flush_run(r, fd, run_start, pos)) < 0)
                return rc;
            st->position = pos + size;
            run_start = pos = st->position;
            continue;
        }
        if (st->since_index >= index_interval || st->segment_bytes == 0) {
            entries[n_entries].offset = f->offset;
            entries[n_entries].position = st->segment_bytes;
            entries[n_entries].max_timestamp = st->max_timestamp;
            n_entries++;
            st->since_index = 0;
        }
        if (f->type == SB_FRAME_ABORTED && size > SB_FRAME_HEADER_BYTES) {
            if ((rc = flush_run(r, fd, run_start, pos)) < 0)
                return rc;
            sb_frame_header header = *f;
            header.word0 = SB_FRAME_HEADER_BYTES;
            if ((rc = write_all(fd, (const char *)&header, sizeof header)) < 0)
                return rc;
            size = SB_FRAME_HEADER_BYTES;
            run_start = pos + align8(len);
        }
        if (f->type == SB_FRAME_DATA && f->timestamp_ns > st->max_timestamp)
            st->max_timestamp = f->timestamp_ns;
        st->next_offset = f->offset + f->record_count;
        st->segment_bytes += size;
        st->since_index += size;
        written += size;
        pos += align8(len);
        if (f->type == SB_FRAME_ABORTED)
            continue;
        /* Runs must not wrap: the next frame starts a new lap's run. */
        if (pos % r->data_bytes == 0) {
            if ((rc = flush_run(r, fd, run_start, pos)) < 0)
                return rc;
            run_start = pos;
        }
    }
    if ((rc = flush_run(r, fd, run_start, pos)) < 0)
        return rc;
    st->position = pos;
    *out_entries = n_entries;
    return (int64_t)written;
}

int64_t sb_parse(const char *buf, uint64_t start, uint64_t length, uint64_t skip_below,
                 uint32_t max_records, int64_t *desc, sb_parse_result *res)
{
    uint64_t pos = start;
    int64_t n = 0;
    res->bad_position = 0;
    while ((uint32_t)n < max_records) {
        int64_t size = sb_frame_check(buf + pos, length - pos);
        if (size == SB_EMPTY)
            break;
        if (size < 0) {
            res->bad_position = pos;
            res->consumed = pos - start;
            return SB_CORRUPT;
        }
        const sb_frame_header *f = (const sb_frame_header *)(buf + pos);
        if (f->type != SB_FRAME_PADDING)
            res->next_offset = f->offset + f->record_count;
        if (f->type == SB_FRAME_DATA && f->offset >= skip_below) {
            int64_t k = f->key_len > 0 ? f->key_len : 0;
            int64_t at = (int64_t)pos + SB_FRAME_HEADER_BYTES;
            int64_t *d = desc + n * SB_DESC_WORDS;
            d[0] = (int64_t)f->offset;
            d[1] = f->timestamp_ns;
            d[2] = at;
            d[3] = f->key_len;
            d[4] = at + k;
            d[5] = f->headers_len;
            d[6] = at + k + f->headers_len;
            d[7] = f->value_len;
            n++;
        }
        pos += (uint64_t)size;
    }
    res->consumed = pos - start;
    return n;
}

/* ======================================================================
 * Stats and frame checks
 * ====================================================================== */

void sb_ring_stats(sb_ring *r, sb_stats *out)
{
    struct header *h = r->h;
    out->total_bytes = h->total_bytes;
    out->data_bytes = h->data_bytes;
    out->flags = LOAD(&h->flags);
    out->created_ns = h->created_ns;
    out->base_offset = h->base_offset;
    read_locked_pair(r, &h->tail, &h->next_offset, &out->tail, &out->next_offset);
    read_locked_pair(r, &h->head, &h->head_offset, &out->head, &out->head_offset);
    out->published = LOAD_ACQ(&h->published);
    out->archived = LOAD_ACQ(&h->archived);
    out->synced = LOAD_ACQ(&h->synced);
    out->data_waiters = LOAD(&h->data_waiters);
    out->space_waiters = LOAD(&h->space_waiters);
}

/* Validate one frame outside a ring (a segment file): returns its aligned
 * length, or SB_EMPTY when it is cut short, or SB_CORRUPT. */
int64_t sb_frame_check(const char *frame, uint64_t available)
{
    if (available < SB_FRAME_HEADER_BYTES)
        return SB_EMPTY;
    const sb_frame_header *f = (const sb_frame_header *)frame;
    uint32_t len = (uint32_t)f->word0;
    if (len == 0)
        return SB_EMPTY;
    if (len < SB_FRAME_HEADER_BYTES || f->type < SB_FRAME_DATA || f->type > SB_FRAME_ABORTED
        || f->key_len < -1 || f->value_len < -1)
        return SB_CORRUPT;
    uint64_t content = SB_FRAME_HEADER_BYTES + payload_bytes(f);
    if (content > len)
        return SB_CORRUPT;
    if (align8(len) > available)
        return SB_EMPTY;
    if (sb_crc32c(0, frame + 12, content - 12) != f->crc)
        return SB_CORRUPT;
    return (int64_t)align8(len);
}
