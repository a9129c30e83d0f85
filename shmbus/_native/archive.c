/* archive.c -- the archiver's copy of complete frames from a ring into its segment
 * file, straight from shared memory, with the sparse index entries it makes on the way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <unistd.h>
#include "frame.h"
#include "layout.h"
#include "unblock.h"

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

/* Write a header-only aborted frame covering count offsets from offset. */
static int write_aborted(int fd, uint64_t offset, uint64_t count)
{
    sb_frame_header f = {0};
    f.word0 = FRAME_HEADER_BYTES;
    f.type = SB_FRAME_ABORTED;
    f.offset = offset;
    f.record_count = (uint32_t)count;
    f.key_len = KEY_NULL;
    f.value_len = KEY_NULL;
    f.crc = sb_crc32c(0, (const char *)&f + 12, FRAME_HEADER_BYTES - 12);
    return write_all(fd, (const char *)&f, sizeof f);
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
        if (!len) {
            /* In a retired ring, a revoked claim is never written: archive it as an
             * aborted frame (as a dead producer's) and go on past it. */
            uint64_t end, first, count;
            if (!revoked_claim_at(r, pos, &end, &first, &count))
                break;
            if ((rc = flush_run(r, fd, run_start, pos)) < 0 || (rc = write_aborted(fd, first, count)) < 0)
                return rc;
            if (st->since_index >= index_interval || st->segment_bytes == 0) {
                entries[n_entries].offset = first;
                entries[n_entries].position = st->segment_bytes;
                entries[n_entries].max_timestamp = st->max_timestamp;
                n_entries++;
                st->since_index = 0;
            }
            st->next_offset = first + count;
            st->segment_bytes += FRAME_HEADER_BYTES;
            st->since_index += FRAME_HEADER_BYTES;
            written += FRAME_HEADER_BYTES;
            run_start = pos = end;
            continue;
        }
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
        if (f->type == SB_FRAME_ABORTED && size > FRAME_HEADER_BYTES) {
            if ((rc = flush_run(r, fd, run_start, pos)) < 0)
                return rc;
            sb_frame_header header = *f;
            header.word0 = FRAME_HEADER_BYTES;
            if ((rc = write_all(fd, (const char *)&header, sizeof header)) < 0)
                return rc;
            size = FRAME_HEADER_BYTES;
            run_start = pos + align8(len);
        }
        if (f->type == SB_FRAME_DATA && f->timestamp_ns > st->max_timestamp)
            st->max_timestamp = f->timestamp_ns;
        st->next_offset = f->offset + f->record_count;
        st->segment_bytes += size;
        st->since_index += size;
        written += size;
        pos += align8(len);
        /* Runs must not wrap: the next frame starts a new lap's run. Every frame
         * type counts, a header-only aborted frame included (it stays in the run). */
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
