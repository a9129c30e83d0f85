/* shmbus.h -- the C core's whole API.
 *
 * build.py hands this file, minus its preprocessor lines, to cffi's cdef, so it
 * is the single source of truth for every constant, struct and signature Python
 * sees: Python takes sizes and offsets from cffi (ffi.sizeof, ffi.offsetof),
 * never from a copy. Keep it to plain C types. The ring's own shared-memory
 * layout (header page, producer slots) is private to the C files (layout.h) and
 * reached only through these functions; the frame header is declared here
 * because segment files on disk hold the same frames.
 */
#ifndef SHMBUS_H
#define SHMBUS_H
#include <stdint.h>

enum {
    SB_VERSION = 3,
    SB_FRAME_ALIGN = 8,            /* every frame starts at a multiple of 8 */
    SB_FRAME_DATA = 1,
    SB_FRAME_PADDING = 2,          /* fills the end of the ring so no frame wraps */
    SB_FRAME_ABORTED = 3,          /* a claim whose producer died; covers record_count offsets */
    SB_MAX_SLOTS = 63,             /* producer (and reaper) slots per ring */
    SB_MAX_LEASES = 16,            /* zero-copy readers' leases per ring */
    SB_RING_DURABLE = 1,           /* ring flag: producers may not pass the archived position */
    SB_RING_DELETED = 2,           /* ring flag: the topic was deleted; clients must let go */
    SB_RING_ARCHIVE_ERROR = 4,     /* ring flag: the archiver cannot write (disk full?); see the supervisor */
    SB_RING_RETIRING = 8,          /* ring flag: no more claims here; the partition moves to a new ring */
    SB_RING_RETIRED = 16,          /* ring flag: and where this ring ends is final (sb_stats.retired_*) */
    SB_INDEX_STRIDE = 16,          /* the offset index keeps the position of every 16th offset */

    /* Return codes (negative; >= 0 means success). */
    SB_OK = 0,
    SB_EMPTY = -1,                 /* nothing to read yet */
    SB_FULL = -2,                  /* the write limit is reached: wait for space */
    SB_LOCK_BUSY = -3,             /* the claim lock stayed held: check its owner is alive */
    SB_TOO_LARGE = -4,             /* the frame can never fit this ring */
    SB_DELETED = -5,               /* the ring's topic was deleted */
    SB_LAPPED = -6,                /* the cursor's position left the ring (durable: read disk) */
    SB_OUT_OF_RANGE = -7,          /* seek: the offset is not in the ring */
    SB_BUFFER_SMALL = -8,          /* sb_read: the next record needs a bigger buffer */
    SB_BAD_RING = -9,              /* not a valid ring of this version, or a bad argument */
    SB_SYSTEM = -10,               /* a system call failed; errno says why */
    SB_CORRUPT = -11,              /* a frame failed its checks (CRC, offset, length) */
    SB_SLOT_BUSY = -12,            /* another thread of this process is appending with the slot */
    SB_MOVED = -13,                /* the ring is retired: the partition goes on in its new ring */
    SB_REVOKED = -14               /* the claim was revoked (it stalled): its records were not appended */
};

/* A producer slot's claim state (sb_slot_info.state; layout.h tells the story), and a
 * zero-copy reader's lease state (sb_lease_holder; lease.c). */
enum { SB_CLAIM_IDLE = 0, SB_CLAIM_CLAIMED = 1, SB_CLAIM_PUBLISHING = 2, SB_CLAIM_REVOKED = 3,
       SB_CLAIM_CANCELLED = 4 };
enum { SB_LEASE_FREE = 0, SB_LEASE_HELD = 1, SB_LEASE_REVOKED = 2, SB_LEASE_TAKING = 3 };

typedef struct sb_ring sb_ring;    /* a mapped ring; opaque */

/* ---- frames: the same bytes in a ring and in a segment file ---- */

/* Every frame is this header, then the key, headers and value bytes, padded
 * to SB_FRAME_ALIGN. In a ring, word0 = lap << 32 | length is stored last, with
 * a release store: a reader that sees it sees the whole frame. Segment files
 * keep the frames byte for byte; there only word0's low 32 bits (the length)
 * count. */
typedef struct {
    uint64_t word0;                /* lap << 32 | length in bytes, before alignment */
    uint32_t crc;                  /* CRC32C of the bytes from `type` to the end of the value */
    uint16_t type;                 /* SB_FRAME_DATA, SB_FRAME_PADDING or SB_FRAME_ABORTED */
    uint16_t flags;
    uint64_t offset;               /* data: the record's offset; aborted: the first it covers */
    int64_t timestamp_ns;
    uint32_t record_count;         /* 1 for data, 0 for padding, n for an aborted claim */
    int32_t key_len;               /* -1: no key */
    uint32_t headers_len;
    int32_t value_len;             /* -1: no value (a tombstone) */
} sb_frame_header;

/* How sb_read and sb_parse describe each record they hand out: SB_DESC_WORDS
 * int64 words, at these indexes. "at" words are byte positions in the buffer the
 * call filled (sb_read) or parsed (sb_parse). When every record of an sb_read is
 * plain (no key, no headers, consecutive offsets) it uses SB_PLAIN_DESC_WORDS
 * words per record instead, values packed back to back. */
enum {
    SB_DESC_OFFSET = 0,
    SB_DESC_TIMESTAMP = 1,
    SB_DESC_KEY_AT = 2,
    SB_DESC_KEY_LEN = 3,           /* -1: no key */
    SB_DESC_HEADERS_AT = 4,
    SB_DESC_HEADERS_LEN = 5,
    SB_DESC_VALUE_AT = 6,
    SB_DESC_VALUE_LEN = 7,         /* -1: no value */
    SB_DESC_WORDS = 8,
    SB_PLAIN_TIMESTAMP = 0,
    SB_PLAIN_VALUE_LEN = 1,
    SB_PLAIN_DESC_WORDS = 2
};

/* A consumer's place in one ring: where the next frame starts and which offset it must carry. */
typedef struct {
    uint64_t position;
    uint64_t next_offset;
    uint64_t missed;               /* records skipped because the ring overwrote them (memory-only) */
    uint64_t aborted;              /* offsets skipped because their producer died mid-write */
} sb_cursor;

/* A snapshot of a ring header, for stats and for the supervisor. */
typedef struct {
    uint64_t total_bytes;
    uint64_t data_bytes;
    uint64_t flags;
    uint64_t created_ns;
    uint64_t tail;                 /* end of the last claimed frame */
    uint64_t next_offset;          /* offset the next claim gets */
    uint64_t head;                 /* start of the oldest frame still in the ring */
    uint64_t head_offset;          /* offset of that frame */
    uint64_t published;            /* every frame before this position is complete */
    uint64_t archived;             /* every frame before this position is on disk */
    uint64_t synced;               /* every frame before this position is fsynced */
    uint64_t data_waiters;
    uint64_t space_waiters;
    uint64_t base_offset;          /* offset of the ring's first frame */
    uint64_t lock;                 /* the claim lock's word: a sequence, and its owner's slot + 1 */
    uint64_t retired_end;          /* SB_RING_RETIRED: where the ring ends */
    uint64_t retired_next_offset;  /* ... and the offset the partition's next ring starts at */
    uint64_t leases_held;          /* zero-copy readers' leases not let go (lease.c) */
} sb_stats;

/* One producer slot in use, as the supervisor's reaper sees it. */
typedef struct {
    uint64_t slot;                 /* its index */
    uint64_t owner_pid;
    uint64_t owner_start;          /* the owner's process create time, in ms since the epoch */
    uint64_t owner_token;          /* its liveness lock's token */
    uint64_t claimed;              /* 1 while a claim is between reservation and publication */
    uint64_t state;                /* SB_CLAIM_* */
    uint64_t claim_pos;            /* where its claim (if any) starts */
    uint64_t claim_offset;         /* and the first offset it covers */
} sb_slot_info;

/* ---- a ring's lifetime and header (ring.c) ---- */
uint64_t sb_ring_total_bytes(uint64_t data_bytes);
uint64_t sb_max_frame_bytes(uint64_t data_bytes);
sb_ring *sb_ring_create(int fd, uint64_t data_bytes, uint64_t base_offset, uint64_t flags, int *err);
sb_ring *sb_ring_attach(int fd, uint64_t file_bytes, int *err);
void sb_ring_close(sb_ring *ring);
void sb_ring_stats(sb_ring *ring, sb_stats *out);
uint64_t sb_ring_tail(sb_ring *ring);   /* where the next claim starts: stats' tail, alone and cheap */
void sb_ring_set_flag(sb_ring *ring, uint64_t flag);
void sb_ring_clear_flag(sb_ring *ring, uint64_t flag);
void sb_ring_set_archived(sb_ring *ring, uint64_t archived, uint64_t synced);
/* Move a fresh, unwritten ring's first offset (a partition's next ring is made before
 * the offset it starts at is known). */
int sb_ring_rebase(sb_ring *ring, uint64_t base_offset);

/* ---- producer slots (claim.c) and a dead producer's claim (unblock.c) ---- */
int sb_slot_acquire(sb_ring *ring, uint64_t pid, uint64_t start_ms, uint64_t token);
void sb_slot_release(sb_ring *ring, int slot);
int sb_slots_get(sb_ring *ring, sb_slot_info *out);   /* the slots in use (out: SB_MAX_SLOTS entries); how many */
int sb_lock_owner(sb_ring *ring);
int sb_reap(sb_ring *ring, int my_slot, int dead_slot);
/* Retire a ring whose claims stalled: no more claims; the stalled slots (a bitmask)
 * are revoked (or, if they were already publishing, finished); where the ring ends
 * is then final. The caller creates the partition's next ring at out_next_offset. */
int sb_ring_retire(sb_ring *ring, int my_slot, uint64_t stalled_slots,
                   uint64_t *out_end, uint64_t *out_next_offset);

/* ---- append: one C call per record or per batch (append.c) ---- */

/* A producer's handle on one partition: its ring and slot, how long an append
 * may sleep for space, and the timestamp the last append used. */
typedef struct {
    sb_ring *ring;
    int32_t slot;
    int64_t wait_ns;
    int64_t timestamp_ns;
    uint64_t end_position;         /* where the last appended record ends: flush waits for synced >= it */
    int32_t reserved;              /* 1 while an sb_reserve waits for its sb_commit or sb_abort */
    uint64_t reserving_thread;     /* the thread whose reserve is open (so it is told, not left to wait) */
} sb_writer;

int64_t sb_append(sb_writer *writer,
                  const char *key, int64_t key_len,
                  const char *headers, int64_t headers_len,
                  const char *value, int64_t value_len, int64_t timestamp_ns);
/* The common record (a key or none, no headers, now) without ever sleeping: SB_FULL
 * at once when the ring is full, SB_LOCK_BUSY when the claim lock stays held for
 * more than a moment. For callers that hold Python's GIL (fastpath.c), which fall
 * back to sb_append without it. */
int64_t sb_append_now(sb_writer *writer, const char *key, int64_t key_len,
                      const char *value, int64_t value_len);
int64_t sb_append_batch(sb_writer *writer,
                        const char *key, int64_t key_len,
                        const char *headers, int64_t headers_len,
                        const char *values, const int64_t *value_lens, uint32_t count,
                        int64_t timestamp_ns, uint32_t *out_count);
/* Records of their own keys, headers and timestamps (a lingering producer's batch)
 * under one claim: record i is described by SB_RECORD_WORDS words of descriptors --
 * key at, key length, headers at, headers length, value at, value length (a length
 * of -1: none; "at": where in data), timestamp (-1: now). Appends the longest prefix
 * that fits one claim; *out_count says how many. Returns the first one's offset. */
enum { SB_RECORD_WORDS = 7 };
int64_t sb_append_records(sb_writer *writer, const char *data, const int64_t *descriptors,
                          uint32_t count, uint32_t *out_count);

/* ---- zero-copy writes: reserve, fill in place, commit or abort (append.c) ---- */

/* Reserve one record's place with its value's bytes left to fill (*out_value points
 * at them, in the ring); returns its offset. The writer's slot stays entered until
 * sb_commit publishes it or sb_abort turns it into an aborted frame. */
int64_t sb_reserve(sb_writer *writer, const char *key, int64_t key_len,
                   const char *headers, int64_t headers_len, int64_t value_len, int64_t timestamp_ns,
                   char **out_value);
/* The common reservation (no key, no headers, now) without ever sleeping, as
 * sb_append_now: for fastpath.c, which falls back to sb_reserve without the GIL. */
int64_t sb_reserve_now(sb_writer *writer, int64_t value_len, char **out_value);
int sb_commit(sb_writer *writer);    /* SB_REVOKED if it stalled past the unblock timeout */
int sb_abort(sb_writer *writer);

/* ---- zero-copy reads: a bounded lease on a ring position (lease.c) ---- */

/* Hold producers back from overwriting the ring from position on, for at most hold_ns:
 * a lease index, or SB_LAPPED (the position is gone, or about to be), SB_FULL (no
 * free lease), SB_LOCK_BUSY (the claim lock stayed held): then read with a copy. */
int sb_lease_acquire(sb_ring *ring, uint64_t position, int64_t hold_ns, uint64_t token);
/* Let go: 1 if it held to the end, 0 if it was revoked (it overstayed, and a producer
 * may have written over what it protected). */
int sb_lease_release(sb_ring *ring, int lease);
/* Drop the leases of a dead holder (its liveness token); returns how many. */
int sb_lease_drop(sb_ring *ring, uint64_t token);
/* A lease's state (SB_LEASE_*) and its holder's liveness token. */
int sb_lease_holder(sb_ring *ring, int lease, uint64_t *out_token);
char *sb_ring_data(sb_ring *ring);   /* the data area, which sb_read_views' positions index */

/* ---- read: seek, and every available record up to a limit in one call (read.c) ---- */
int sb_seek(sb_ring *ring, sb_cursor *cursor, uint64_t offset);
void sb_seek_end(sb_ring *ring, sb_cursor *cursor);
void sb_seek_head(sb_ring *ring, sb_cursor *cursor);
int64_t sb_read(sb_ring *ring, sb_cursor *cursor, uint32_t max_records,
                char *out, uint64_t out_capacity, int64_t *descriptors, uint64_t *out_used,
                int *out_plain);
/* Like sb_read without the copy: the descriptors' positions are in the data area. */
int64_t sb_read_views(sb_ring *ring, sb_cursor *cursor, uint32_t max_records, int64_t *descriptors,
                      uint64_t *out_bytes);

/* ---- waiting: readers, flush(), and waiters that died asleep (wait.c) ---- */
int sb_wait_data(sb_ring **rings, sb_cursor **cursors, uint32_t count,
                 int64_t timeout_ns, int64_t spin_ns, int yield_when_spinning);
/* Waits another thread can end at once (asyncio's helper threads: a cancelled task, a
 * closing consumer): they also sleep on a stop word of the waiter's own, which
 * sb_stop_wait bumps and wakes. They return SB_WAIT_STOPPED once it differs from
 * stop_seen. At most SB_WAIT_MAX_RINGS - 1 rings (the stop word takes a place). */
enum { SB_WAIT_STOPPED = 2, SB_WAIT_MAX_RINGS = 128 };
int sb_wait_data_or_stop(sb_ring **rings, sb_cursor **cursors, uint32_t count, int64_t timeout_ns,
                         uint32_t *stop, uint32_t stop_seen);
void sb_stop_wait(uint32_t *stop);
/* A producer that must not sleep in its append (asyncio) waits for space on another
 * thread: sb_space_wait_begin counts it among the space waiters until deadline_ns
 * (CLOCK_MONOTONIC) and returns the word's value to wait on -- call it BEFORE the
 * append that found the ring full is retried, so no space freed in between is
 * missed; sb_space_wait sleeps until the word moves (1), timeout (0) or stop (2);
 * sb_space_wait_end uncounts it. */
uint32_t sb_space_wait_begin(sb_ring *ring, int64_t deadline_ns);
int sb_space_wait(sb_ring *ring, uint32_t seen, int64_t timeout_ns, uint32_t *stop, uint32_t stop_seen);
void sb_space_wait_end(sb_ring *ring);
/* Durability: a producer asks the archiver to fsync up to a position, and waits for it. */
void sb_request_sync(sb_ring *ring, uint64_t position);
int sb_wait_synced(sb_ring *ring, uint64_t position, int64_t timeout_ns);
uint64_t sb_sync_requested(sb_ring *ring);
int sb_expire_waiters(sb_ring *ring, int64_t grace_ns);

/* ---- the archiver: ring -> segment file (archive.c) ---- */

/* Where the archiver is in one ring, and in the segment it writes. */
typedef struct {
    uint64_t position;             /* next ring position to archive */
    uint64_t next_offset;          /* offset the next archived frame carries (or starts at) */
    uint64_t segment_bytes;        /* bytes in the current segment file */
    uint64_t since_index;          /* segment bytes since the last index entry */
    int64_t max_timestamp;         /* largest timestamp archived in this segment */
} sb_archive_state;

/* One sparse index entry: this offset starts at this segment position. */
typedef struct {
    uint64_t offset;
    uint64_t position;
    int64_t max_timestamp;
} sb_index_entry;

int64_t sb_archive(sb_ring *ring, int fd, sb_archive_state *state, uint64_t max_bytes,
                   uint64_t index_interval, sb_index_entry *entries, uint32_t max_entries,
                   uint32_t *out_entries);

/* ---- frames outside a ring: CRC, check, parse (frame.c) ---- */
uint32_t sb_crc32c(uint32_t crc, const char *data, uint64_t length);
int64_t sb_frame_check(const char *frame, uint64_t available);

/* Parse frames from buffer[start, length): checks every frame (CRC, and that its
 * offset is the one the frame before it leads to), skips records below skip_below,
 * and describes up to max_records records like sb_read, with positions counted
 * from the buffer's start. */
typedef struct {
    uint64_t consumed;             /* bytes of whole frames parsed */
    uint64_t next_offset;          /* in: the offset the frame at start must carry;
                                      out: the offset after the last frame parsed */
    uint64_t bad_position;         /* where a corrupt frame starts (SB_CORRUPT) */
} sb_parse_result;

int64_t sb_parse(const char *buffer, uint64_t start, uint64_t length, uint64_t skip_below,
                 uint32_t max_records, int64_t *descriptors, sb_parse_result *result);

/* ---- Kafka's murmur2 (partitioner.c), the consumer's heap setting (heap.c) ---- */
int32_t sb_murmur2(const char *data, int64_t length);
void sb_keep_freed_heap(void);

/* ---- control page: consumer group generations (control.c) ---- */

/* One small shared-memory object per bus (control.c): a generation word per
 * group, written by the supervisor, loaded by members on each poll; and a
 * last-poll time per member, for max_poll_interval. */
enum {
    SB_CTL_VERSION = 1,
    SB_CTL_GROUPS = 256,           /* groups with live members at once */
    SB_CTL_MEMBERS = 1024          /* live group members at once */
};

typedef struct sb_control sb_control;   /* a mapped control page; opaque */

uint64_t sb_ctl_total_bytes(void);
sb_control *sb_ctl_create(int fd, int *err);
sb_control *sb_ctl_attach(int fd, uint64_t file_bytes, int *err);
void sb_ctl_close(sb_control *ctl);
uint64_t sb_ctl_id(sb_control *ctl);   /* creation time (ns): tells a replaced page from this one */
uint64_t sb_ctl_generation(sb_control *ctl, uint32_t group);
void sb_ctl_set_generation(sb_control *ctl, uint32_t group, uint64_t generation);
/* Give a member slot to token (0 frees it) and stamp its last poll now. */
void sb_ctl_member_set(sb_control *ctl, uint32_t member, uint64_t token);
/* Nanoseconds since the member last polled; -1 if the slot is not token's. */
int64_t sb_ctl_member_idle_ns(sb_control *ctl, uint32_t member, uint64_t token);
/* A member's per-poll call: stamp its poll time (if the slot is still its
 * own) and return its group's generation word. */
uint64_t sb_ctl_poll(sb_control *ctl, uint32_t group, uint32_t member, uint64_t token);

#endif
