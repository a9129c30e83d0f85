/* frame.h -- what every frame is, in a ring or in a segment file: the header
 * (sb_frame_header, declared in shmbus.h), its size and alignment, and the one
 * helper that describes a record for Python (sb_read and sb_parse both use it).
 */
#ifndef SHMBUS_FRAME_H
#define SHMBUS_FRAME_H
#include <stddef.h>
#include <stdint.h>
#include "shmbus.h"

#define FRAME_HEADER_BYTES sizeof(sb_frame_header)
#define KEY_NULL (-1)  /* a key or value length that means "none" */
#define MAX_CLAIM_BYTES (1ull << 31)  /* one claim, and so one record, at most: see sb_max_frame_bytes */

/* The frame format is on disk too: pin it. */
_Static_assert(sizeof(sb_frame_header) == 48, "frame header size");
_Static_assert(offsetof(sb_frame_header, crc) == 8, "the CRC after word0");
_Static_assert(offsetof(sb_frame_header, type) == 12, "the CRC covers from type on");
_Static_assert(offsetof(sb_frame_header, offset) == 16, "frame header layout");
_Static_assert(offsetof(sb_frame_header, timestamp_ns) == 24, "frame header layout");
_Static_assert(offsetof(sb_frame_header, record_count) == 32, "frame header layout");
_Static_assert(offsetof(sb_frame_header, value_len) == 44, "frame header layout");

static inline uint64_t align8(uint64_t x) { return (x + 7) & ~7ull; }

static inline uint64_t payload_bytes(const sb_frame_header *f)
{
    return (f->key_len > 0 ? (uint64_t)f->key_len : 0) + f->headers_len
         + (f->value_len > 0 ? (uint64_t)f->value_len : 0);
}

/* Fill one record's SB_DESC_WORDS descriptor words from its frame header; its key,
 * headers and value follow one another from payload_at. */
void describe_record(int64_t *desc, const sb_frame_header *f, int64_t payload_at);

#endif
