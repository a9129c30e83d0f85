/* frame.c -- frames outside a ring: CRC32C, which guards every frame in a ring and on
 * disk; the check of one frame of a segment file; parsing a chunk of a segment file
 * in place; and the descriptor words Python reads records by.
 *
 * CRC32C (Castagnoli): the SSE4.2 crc32 instruction does it at several GB/s;
 * machines without it fall back to a byte-wise table (slow but correct).
 */
#include <stdint.h>
#include <string.h>
#include "frame.h"

static uint32_t crc_table[256];
static int crc_table_ready;

static void crc_table_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[n] = c;
    }
    __atomic_store_n(&crc_table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc32c_table(uint32_t crc, const unsigned char *p, uint64_t n)
{
    if (!__atomic_load_n(&crc_table_ready, __ATOMIC_ACQUIRE))
        crc_table_init();
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* The crc32 instruction takes 3 cycles but can start one per cycle: three streams over
 * three blocks run at three times one stream's speed (8.4 GB/s for one, measured on the
 * 2-core test machine), and are combined by shifting a block's CRC over the zeros of
 * the next block's length, by table (Mark Adler's crc32c.c). A 64 KiB record's CRC was
 * as long as its copy. */
#define CRC_LONG 8192
#define CRC_SHORT 256
static uint32_t crc_zeros_long[4][256], crc_zeros_short[4][256];

static uint32_t gf2_times(const uint32_t *matrix, uint32_t vector)
{
    uint32_t sum = 0;
    for (; vector; vector >>= 1, matrix++)
        if (vector & 1)
            sum ^= *matrix;
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *matrix)
{
    for (int n = 0; n < 32; n++)
        square[n] = gf2_times(matrix, matrix[n]);
}

/* The operator that runs a CRC over `length` zero bytes (a power of two). */
static void crc_zeros_operator(uint32_t *even, uint64_t length)
{
    uint32_t odd[32];
    odd[0] = 0x82F63B78u;   /* one zero bit */
    for (int n = 1; n < 32; n++)
        odd[n] = 1u << (n - 1);
    gf2_square(even, odd);  /* two */
    gf2_square(odd, even);  /* four */
    for (;;) {
        gf2_square(even, odd);   /* 8, 32, ... zero bits */
        if ((length >>= 1) == 0)
            return;
        gf2_square(odd, even);   /* 16, 64, ... */
        if ((length >>= 1) == 0)
            break;
    }
    memcpy(even, odd, sizeof(odd));
}

static void crc_zeros_table(uint32_t zeros[4][256], uint64_t length)
{
    uint32_t op[32];
    crc_zeros_operator(op, length);
    for (uint32_t n = 0; n < 256; n++)
        for (int byte = 0; byte < 4; byte++)
            zeros[byte][n] = gf2_times(op, n << (8 * byte));
}

static inline uint32_t crc_shift(uint32_t zeros[4][256], uint32_t crc)
{
    return zeros[0][crc & 0xFF] ^ zeros[1][(crc >> 8) & 0xFF] ^ zeros[2][(crc >> 16) & 0xFF] ^ zeros[3][crc >> 24];
}

/* At load, before any thread can ask. */
__attribute__((constructor)) static void crc_tables_init(void)
{
    crc_zeros_table(crc_zeros_long, CRC_LONG);
    crc_zeros_table(crc_zeros_short, CRC_SHORT);
}

__attribute__((target("sse4.2")))
static uint64_t crc32c_hw_blocks(uint64_t c, const unsigned char **next, uint64_t *n, uint64_t block,
                                 uint32_t zeros[4][256])
{
    const unsigned char *p = *next;
    while (*n >= 3 * block) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + block;
        do {
            uint64_t w0, w1, w2;
            memcpy(&w0, p, 8);
            memcpy(&w1, p + block, 8);
            memcpy(&w2, p + 2 * block, 8);
            c = _mm_crc32_u64(c, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
            p += 8;
        } while (p < end);
        c = crc_shift(zeros, (uint32_t)c) ^ c1;
        c = crc_shift(zeros, (uint32_t)c) ^ c2;
        p += 2 * block;
        *n -= 3 * block;
    }
    *next = p;
    return c;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, uint64_t n)
{
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    c = crc32c_hw_blocks(c, &p, &n, CRC_LONG, crc_zeros_long);
    c = crc32c_hw_blocks(c, &p, &n, CRC_SHORT, crc_zeros_short);
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}

static int have_sse42(void)
{
    static int cached = -1;
    if (cached < 0)
        cached = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    return cached;
}
#endif

uint32_t sb_crc32c(uint32_t crc, const char *data, uint64_t length)
{
    const unsigned char *p = (const unsigned char *)data;
    crc = ~crc;
#if defined(__x86_64__)
    if (have_sse42())
        return ~crc32c_hw(crc, p, length);
#endif
    return ~crc32c_table(crc, p, length);
}

void describe_record(int64_t *d, const sb_frame_header *f, int64_t payload_at)
{
    int64_t key_bytes = f->key_len > 0 ? f->key_len : 0;
    d[SB_DESC_OFFSET] = (int64_t)f->offset;
    d[SB_DESC_TIMESTAMP] = f->timestamp_ns;
    d[SB_DESC_KEY_AT] = payload_at;
    d[SB_DESC_KEY_LEN] = f->key_len;
    d[SB_DESC_HEADERS_AT] = payload_at + key_bytes;
    d[SB_DESC_HEADERS_LEN] = f->headers_len;
    d[SB_DESC_VALUE_AT] = payload_at + key_bytes + f->headers_len;
    d[SB_DESC_VALUE_LEN] = f->value_len;
}

/* Validate one frame outside a ring (a segment file): returns its aligned
 * length, or SB_EMPTY when it is cut short, or SB_CORRUPT.
 *
 * The CRC does not cover the length word, but the lengths it does cover bound it:
 * a data frame's length is its content plus at most the gap a frame absorbs before
 * the ring's end, which is shorter than a frame header (claim.c). A longer one is a
 * damaged length word, caught here instead of swallowing the frames after it. */
int64_t sb_frame_check(const char *frame, uint64_t available)
{
    if (available < FRAME_HEADER_BYTES)
        return SB_EMPTY;
    const sb_frame_header *f = (const sb_frame_header *)frame;
    uint32_t len = (uint32_t)f->word0;
    if (len == 0)
        return SB_EMPTY;
    if (len < FRAME_HEADER_BYTES || f->type < SB_FRAME_DATA || f->type > SB_FRAME_ABORTED
        || f->key_len < -1 || f->value_len < -1)
        return SB_CORRUPT;
    uint64_t content = FRAME_HEADER_BYTES + payload_bytes(f);
    if (content > len || (f->type == SB_FRAME_DATA && len - content >= FRAME_HEADER_BYTES))
        return SB_CORRUPT;
    if (align8(len) > available)
        return SB_EMPTY;
    if (sb_crc32c(0, frame + 12, content - 12) != f->crc)
        return SB_CORRUPT;
    return (int64_t)align8(len);
}

int64_t sb_parse(const char *buf, uint64_t start, uint64_t length, uint64_t skip_below,
                 uint32_t max_records, int64_t *desc, sb_parse_result *res)
{
    uint64_t pos = start;
    int64_t n = 0;
    res->bad_position = 0;
    res->consumed = 0;
    if (start > length)
        return SB_BAD_RING; /* a bad argument */
    while ((uint32_t)n < max_records) {
        int64_t size = sb_frame_check(buf + pos, length - pos);
        if (size == SB_EMPTY)
            break;
        const sb_frame_header *f = (const sb_frame_header *)(buf + pos);
        /* A log's offsets run on from frame to frame (an aborted claim covers its
         * record_count): a frame that passes its check at another offset follows a
         * hole, which is damage too. */
        if (size < 0 || (f->type != SB_FRAME_PADDING && f->offset != res->next_offset)) {
            res->bad_position = pos;
            res->consumed = pos - start;
            return SB_CORRUPT;
        }
        if (f->type != SB_FRAME_PADDING)
            res->next_offset = f->offset + f->record_count;
        if (f->type == SB_FRAME_DATA && f->offset >= skip_below) {
            describe_record(desc + n * SB_DESC_WORDS, f, (int64_t)(pos + FRAME_HEADER_BYTES));
            n++;
        }
        pos += (uint64_t)size;
    }
    res->consumed = pos - start;
    return n;
}
