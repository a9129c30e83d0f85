/* read.c -- reading a ring (Aeron's term scanner): seeking to an offset through the
 * ring's index, copying every available record up to a limit in one call, and what
 * happens to a reader that fell off the ring (lapped).
 */
#define _GNU_SOURCE
#include <string.h>
#include "claim.h"
#include "frame.h"
#include "layout.h"
#include "unblock.h"

/* The end of what the ring holds: the tail, or where a retired ring ends. */
static void ring_end(sb_ring *r, uint64_t *out_position, uint64_t *out_offset)
{
    if (LOAD_ACQ(&r->h->flags) & SB_RING_RETIRED) {
        *out_position = LOAD_ACQ(&r->h->retired_end);
        *out_offset = LOAD_ACQ(&r->h->retired_next_offset);
        return;
    }
    read_locked_pair(r, &r->h->tail, &r->h->next_offset, out_position, out_offset);
}

void sb_seek_end(sb_ring *r, sb_cursor *cur)
{
    ring_end(r, &cur->position, &cur->next_offset);
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
    ring_end(r, &tail, &end_offset);
    if (offset > end_offset && (LOAD_ACQ(&r->h->flags) & SB_RING_RETIRED))
        return SB_MOVED; /* it is in the partition's next ring */
    if (offset < head_offset || offset > end_offset)
        return SB_OUT_OF_RANGE;
    if (offset == end_offset) {
        cur->position = tail;
        cur->next_offset = end_offset;
        return SB_OK;
    }
    /* Start from the index entry at or below the offset, if it still holds. */
    uint64_t pos = head, at = head_offset, revoked_first = 0;
    int inside_revoked = 0;
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
        if (!len) {
            uint64_t end, first, count;
            if (revoked_claim_at(r, pos, &end, &first, &count)) {
                if (first + count > offset) {
                    inside_revoked = 1;
                    revoked_first = first;
                    break; /* the cursor sits on it; sb_read steps over it */
                }
                at = first + count;
                pos = end;
                continue;
            }
            return SB_EMPTY; /* a frame before it is still being written: try again */
        }
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
    /* Inside an aborted frame (or a revoked claim) the cursor sits on it; sb_read skips it. */
    if (inside_revoked)
        cur->next_offset = revoked_first;
    else if (pos < tail) {
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

/* A frame that fails its checks: torn by a producer that lapped us since we
 * started at start_pos (then the copy is discarded), or corrupt. */
static int64_t lapped_or_corrupt(sb_ring *r, sb_cursor *cur, uint64_t start_pos, uint64_t start_offset)
{
    if (!still_in_ring(r, start_pos))
        return lapped(r, cur, start_offset);
    return SB_CORRUPT;
}

/* The one read loop: describe up to max_records available records with
 * SB_DESC_WORDS words each. With out, their bytes are copied there and the "at"
 * words are positions in out; without (views), nothing is copied and the "at" words
 * are positions in the ring's data area (sb_ring_data). */
static int64_t read_records(sb_ring *r, sb_cursor *cur, uint32_t max_records,
                            char *out, uint64_t out_capacity, int64_t *desc, uint64_t *out_used,
                            int *out_plain)
{
    uint64_t start_pos = cur->position, start_offset = cur->next_offset;
    uint64_t pos = start_pos, offset = start_offset, used = 0;
    uint64_t skipped_aborted = 0;
    int64_t n = 0;
    int plain = 1, moved = 0;
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
            /* A retired ring: a revoked claim, never to be written, or its end. */
            uint64_t end, first, count;
            if (revoked_claim_at(r, pos, &end, &first, &count)) {
                skipped_aborted += first + count > offset ? first + count - offset : 0;
                if (first + count > offset)
                    offset = first + count;
                pos = end;
                continue;
            }
            moved = ring_end_reached(r, pos);
            break;
        }
        const sb_frame_header *f = frame_at(r, pos);
        /* A frame never crosses the ring's end, and its lengths fit inside it. A
         * producer lapping a memory-only ring may be rewriting these very bytes:
         * check before trusting them with a copy, then tell lapped from corrupt. */
        if (len < FRAME_HEADER_BYTES || pos % r->data_bytes + align8(len) > r->data_bytes)
            return lapped_or_corrupt(r, cur, start_pos, start_offset);
        if (f->type == SB_FRAME_PADDING) {
            pos += align8(len);
            continue;
        }
        if (f->offset != offset && f->type == SB_FRAME_DATA)
            return lapped_or_corrupt(r, cur, start_pos, start_offset);
        if (f->type == SB_FRAME_ABORTED) {
            skipped_aborted += f->offset + f->record_count - offset;
            offset = f->offset + f->record_count;
            pos += align8(len);
            continue;
        }
        uint64_t payload = payload_bytes(f);
        if (FRAME_HEADER_BYTES + payload > len)
            return lapped_or_corrupt(r, cur, start_pos, start_offset);
        if (used + payload > out_capacity) {
            if (n == 0) {
                *out_used = payload;
                return SB_BUFFER_SMALL;
            }
            break;
        }
        const char *src = (const char *)(f + 1);
        if (out) {
            memcpy(out + used, src, payload);
            describe_record(desc + n * SB_DESC_WORDS, f, (int64_t)used);
        } else {
            describe_record(desc + n * SB_DESC_WORDS, f, (int64_t)(src - r->data));
        }
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
    if (moved && n == 0)
        return SB_MOVED;
    if (plain && n > 0 && out) {
        for (int64_t i = 0; i < n; i++) {
            const int64_t *d = desc + i * SB_DESC_WORDS;
            desc[i * SB_PLAIN_DESC_WORDS + SB_PLAIN_TIMESTAMP] = d[SB_DESC_TIMESTAMP];
            desc[i * SB_PLAIN_DESC_WORDS + SB_PLAIN_VALUE_LEN] = d[SB_DESC_VALUE_LEN];
        }
        *out_plain = 1;
    }
    return n;
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
    return read_records(r, cur, max_records, out, out_capacity, desc, out_used, out_plain);
}

int64_t sb_read_views(sb_ring *r, sb_cursor *cur, uint32_t max_records, int64_t *desc, uint64_t *out_bytes)
{
    int plain;
    return read_records(r, cur, max_records, NULL, UINT64_MAX, desc, out_bytes, &plain);
}

char *sb_ring_data(sb_ring *r)
{
    return r->data;
}
