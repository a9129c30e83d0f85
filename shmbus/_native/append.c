/* append.c -- writing records: one C call appends a record (sb_append and its short
 * forms) or a batch under one claim (sb_append_batch). The copy happens outside the
 * claim lock; word0 goes last (publish); readers and blocked producers are woken
 * only when someone sleeps.
 */
#define _GNU_SOURCE
#include <string.h>
#include "append.h"
#include "claim.h"
#include "layout.h"
#include "wait.h"

void publish(sb_ring *r, uint64_t pos, uint32_t length)
{
    STORE_REL(&frame_at(r, pos)->word0, (lap_of(r, pos) << 32) | length);
}

static void seal(sb_frame_header *f, uint64_t content_bytes)
{
    f->crc = sb_crc32c(0, (const char *)f + 12, content_bytes - 12);
}

/* Write a header-only frame: padding up to the ring's end, or an aborted claim. */
void write_filler(sb_ring *r, uint64_t pos, uint64_t length, uint16_t type,
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
    seal(f, FRAME_HEADER_BYTES);
    publish(r, pos, (uint32_t)length);
}

/* Write one record's frame at pos, all but its word0: returns the length word0 will
 * carry (*out_length) and the bytes the frame takes. */
static uint64_t write_record(sb_ring *r, uint64_t pos, uint64_t offset, int64_t timestamp_ns,
                             const char *key, int64_t key_len,
                             const char *headers, int64_t headers_len,
                             const char *value, int64_t value_len, uint64_t gap,
                             uint32_t *out_length)
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
    uint64_t content = FRAME_HEADER_BYTES + k + (uint64_t)headers_len + v;
    seal(f, content);
    if (offset % SB_INDEX_STRIDE == 0)
        STORE(&r->index[(offset / SB_INDEX_STRIDE) & (r->index_slots - 1)], pos);
    /* word0's length covers the gap, so readers step over it; the CRC and the
     * lengths above cover only the record. */
    *out_length = (uint32_t)(content + gap);
    return align8(content) + gap;
}

/* Every byte of the claim is written: decide, atomically against the unblocker,
 * that its records will be published (CLAIMED -> PUBLISHING), then publish its
 * first frame, which readers stop at until then. If the claim was revoked while
 * this producer stalled, nothing of it is published: being awake again, it owns the
 * claim's bytes, and turns them into an aborted frame that readers step over. */
static int commit_claim(sb_ring *r, int slot, const struct claim *c, uint32_t count, uint32_t first_length)
{
    struct slot *s = &r->slots[slot];
    uint64_t claimed = CLAIMED;
    if (!__atomic_compare_exchange_n(&s->state, &claimed, PUBLISHING, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        write_filler(r, c->frame_pos, c->end - c->frame_pos, SB_FRAME_ABORTED, c->offset, count);
        STORE_REL(&s->state, IDLE);
        wake_after_publish(r);
        return SB_REVOKED;
    }
    publish(r, c->frame_pos, first_length);
    STORE_REL(&s->state, IDLE);
    wake_after_publish(r);
    return SB_OK;
}

static int64_t resolve_timestamp(int64_t timestamp_ns, int64_t *out_timestamp)
{
    if (timestamp_ns < 0)
        timestamp_ns = now_ns(CLOCK_REALTIME);
    *out_timestamp = timestamp_ns;
    return timestamp_ns;
}

static int64_t append_one(sb_ring *r, int slot,
                          const char *key, int64_t key_len,
                          const char *headers, int64_t headers_len,
                          const char *value, int64_t value_len,
                          int64_t timestamp_ns, int64_t *out_timestamp, int64_t wait_ns,
                          uint64_t *out_end)
{
    uint64_t bytes = align8(FRAME_HEADER_BYTES + (key_len > 0 ? key_len : 0) + headers_len
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
    uint32_t length;
    write_record(r, c.frame_pos, c.offset, timestamp_ns, key, key_len, headers, headers_len,
                 value, value_len, c.gap, &length);
    if ((rc = commit_claim(r, slot, &c, 1, length)) < 0)
        return rc;
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

int64_t sb_append_now(sb_writer *w, const char *key, int64_t key_len,
                      const char *value, int64_t value_len)
{
    int rc = enter_slot(w->ring, w->slot);
    if (rc < 0)
        return rc;
    int64_t offset = append_one(w->ring, w->slot, key, key_len, NULL, 0, value, value_len, -1,
                                &w->timestamp_ns, 0, &w->end_position);
    leave_slot(w->ring, w->slot);
    return offset;
}

static int64_t append_batch(sb_ring *r, int slot,
                            const char *key, int64_t key_len,
                            const char *headers, int64_t headers_len,
                            const char *values, const int64_t *value_lens, uint32_t count,
                            int64_t timestamp_ns, int64_t *out_timestamp, int64_t wait_ns,
                            uint32_t *out_count, uint64_t *out_end)
{
    int rc;
    uint64_t fixed = FRAME_HEADER_BYTES + (key_len > 0 ? key_len : 0) + headers_len;
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
    /* Frames after the first are published as they are written: readers stop at
     * the first, which commit_claim publishes once the whole batch is there. */
    uint64_t pos = c.frame_pos;
    const char *value = values;
    uint32_t first_length = 0;
    for (uint32_t i = 0; i < count; i++) {
        int64_t value_len = value_lens[i];
        uint32_t length;
        uint64_t size = write_record(r, pos, c.offset + i, timestamp_ns, key, key_len, headers,
                                     headers_len, value, value_len, i + 1 == count ? c.gap : 0, &length);
        if (i == 0)
            first_length = length;
        else
            publish(r, pos, length);
        pos += size;
        value += value_len > 0 ? value_len : 0;
    }
    if ((rc = commit_claim(r, slot, &c, count, first_length)) < 0)
        return rc;
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

/* ---- zero-copy writes ----
 *
 * sb_reserve claims one record's place and writes all of its frame but the value,
 * which the caller fills in place; sb_commit seals and publishes it, sb_abort turns
 * it into an aborted frame. In between the writer's slot stays entered (another
 * thread of this process gets SB_SLOT_BUSY) and the claim stays in the slot, so a
 * producer killed in between is finished like any dead producer's claim (aborted),
 * and one that holds it past the unblock timeout is revoked like any stalled one. */

static int64_t reserve_one(sb_writer *w, const char *key, int64_t key_len,
                           const char *headers, int64_t headers_len, int64_t value_len, int64_t timestamp_ns,
                           int64_t wait_ns, char **out_value)
{
    sb_ring *r = w->ring;
    if (value_len < 0)
        return SB_BAD_RING;
    int rc = enter_slot(r, w->slot);
    if (rc < 0)
        return rc;
    uint64_t k = key_len > 0 ? (uint64_t)key_len : 0;
    uint64_t content = FRAME_HEADER_BYTES + k + (uint64_t)headers_len + (uint64_t)value_len;
    if (align8(content) > r->max_frame) {
        leave_slot(r, w->slot);
        return SB_TOO_LARGE;
    }
    timestamp_ns = resolve_timestamp(timestamp_ns, &w->timestamp_ns);
    struct claim c;
    if ((rc = claim_or_wait(r, w->slot, align8(content), 1, wait_ns, &c)) < 0) {
        leave_slot(r, w->slot);
        return rc;
    }
    if (c.frame_pos != c.pos)
        write_filler(r, c.pos, c.frame_pos - c.pos, SB_FRAME_PADDING, c.offset, 0);
    sb_frame_header *f = frame_at(r, c.frame_pos);
    char *payload = (char *)(f + 1);
    f->type = SB_FRAME_DATA;
    f->flags = 0;
    f->offset = c.offset;
    f->timestamp_ns = timestamp_ns;
    f->record_count = 1;
    f->key_len = (int32_t)key_len;
    f->headers_len = (uint32_t)headers_len;
    f->value_len = (int32_t)value_len;
    if (k)
        memcpy(payload, key, k);
    if (headers_len)
        memcpy(payload + k, headers, (size_t)headers_len);
    w->reserved = 1;
    *out_value = payload + k + headers_len;
    return (int64_t)c.offset;
}

int64_t sb_reserve(sb_writer *w, const char *key, int64_t key_len,
                   const char *headers, int64_t headers_len, int64_t value_len, int64_t timestamp_ns,
                   char **out_value)
{
    return reserve_one(w, key, key_len, headers, headers_len, value_len, timestamp_ns, w->wait_ns, out_value);
}

int64_t sb_reserve_now(sb_writer *w, int64_t value_len, char **out_value)
{
    return reserve_one(w, NULL, -1, NULL, 0, value_len, -1, 0, out_value);
}

/* The reserved claim, as the slot holds it. */
static void reserved_claim(sb_writer *w, struct claim *c)
{
    const struct slot *s = &w->ring->slots[w->slot];
    c->pos = s->claim_pos;
    c->frame_pos = s->claim_frame_pos;
    c->end = s->claim_end;
    c->offset = s->claim_offset;
    c->gap = s->claim_gap;
}

int sb_commit(sb_writer *w)
{
    if (!w->reserved)
        return SB_BAD_RING;
    sb_ring *r = w->ring;
    struct claim c;
    reserved_claim(w, &c);
    sb_frame_header *f = frame_at(r, c.frame_pos);
    uint64_t content = FRAME_HEADER_BYTES + payload_bytes(f);
    seal(f, content);
    if (c.offset % SB_INDEX_STRIDE == 0)
        STORE(&r->index[(c.offset / SB_INDEX_STRIDE) & (r->index_slots - 1)], c.frame_pos);
    int rc = commit_claim(r, w->slot, &c, 1, (uint32_t)(content + c.gap));
    if (rc == SB_OK)
        w->end_position = c.end;
    w->reserved = 0;
    leave_slot(r, w->slot);
    return rc;
}

int sb_abort(sb_writer *w)
{
    if (!w->reserved)
        return SB_BAD_RING;
    sb_ring *r = w->ring;
    struct claim c;
    reserved_claim(w, &c);
    /* Whether or not the unblocker revoked the claim meanwhile, its bytes become an
     * aborted frame (as commit_claim makes a revoked one): never PUBLISHING, which
     * would tell the unblocker there is a finished record to publish. */
    write_filler(r, c.frame_pos, c.end - c.frame_pos, SB_FRAME_ABORTED, c.offset, 1);
    uint64_t was = __atomic_exchange_n(&r->slots[w->slot].state, IDLE, __ATOMIC_ACQ_REL);
    wake_after_publish(r);
    w->reserved = 0;
    leave_slot(r, w->slot);
    return was == CLAIMED ? SB_OK : SB_REVOKED;
}

/* ---- a lingering producer's batch: records of their own keys, headers, timestamps ---- */

int64_t sb_append_records(sb_writer *w, const char *data, const int64_t *desc, uint32_t count,
                          uint32_t *out_count)
{
    *out_count = 0;
    sb_ring *r = w->ring;
    uint64_t bytes = 0;
    uint32_t fits = 0;
    while (fits < count) {
        const int64_t *d = desc + (uint64_t)fits * SB_RECORD_WORDS;
        uint64_t frame = align8(FRAME_HEADER_BYTES + (d[1] > 0 ? d[1] : 0) + (uint64_t)d[3] + (d[5] > 0 ? d[5] : 0));
        if (bytes + frame > r->max_frame)
            break;
        bytes += frame;
        fits++;
    }
    if (fits == 0)
        return SB_TOO_LARGE;
    int rc = enter_slot(r, w->slot);
    if (rc < 0)
        return rc;
    struct claim c;
    if ((rc = claim_or_wait(r, w->slot, bytes, fits, w->wait_ns, &c)) < 0) {
        leave_slot(r, w->slot);
        return rc;
    }
    if (c.frame_pos != c.pos)
        write_filler(r, c.pos, c.frame_pos - c.pos, SB_FRAME_PADDING, c.offset, 0);
    /* As in append_batch: readers stop at the first frame until commit_claim. */
    int64_t now = -1;
    uint64_t pos = c.frame_pos;
    uint32_t first_length = 0;
    for (uint32_t i = 0; i < fits; i++) {
        const int64_t *d = desc + (uint64_t)i * SB_RECORD_WORDS;
        int64_t timestamp_ns = d[6];
        if (timestamp_ns < 0) {
            if (now < 0)
                now = now_ns(CLOCK_REALTIME);
            timestamp_ns = now;
        }
        w->timestamp_ns = timestamp_ns;
        uint32_t length;
        uint64_t size = write_record(r, pos, c.offset + i, timestamp_ns, d[1] >= 0 ? data + d[0] : NULL, d[1],
                                     d[3] ? data + d[2] : NULL, d[3], d[5] >= 0 ? data + d[4] : NULL, d[5],
                                     i + 1 == fits ? c.gap : 0, &length);
        if (i == 0)
            first_length = length;
        else
            publish(r, pos, length);
        pos += size;
    }
    rc = commit_claim(r, w->slot, &c, fits, first_length);
    leave_slot(r, w->slot);
    if (rc < 0)
        return rc;
    *out_count = fits;
    w->end_position = c.end;
    return (int64_t)c.offset;
}
