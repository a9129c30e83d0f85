/* frame.c -- the per-record arithmetic Kafka defines: CRC32C and murmur2.
 *
 * CRC32C (Castagnoli) guards every frame, in the ring and on disk. The SSE4.2
 * crc32 instruction does it at several GB/s; machines without it fall back
 * to a byte-wise table (slow but correct).
 */
#include <stdint.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include "shmbus.h"

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

__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, uint64_t n)
{
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
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

/* Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), bit for bit:
 * the same key lands in the same partition number as in Kafka. */
int32_t sb_murmur2(const char *data, int64_t length)
{
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    const unsigned char *p = (const unsigned char *)data;
    uint32_t h = 0x9747b28cu ^ (uint32_t)length;
    int64_t words = length / 4;
    for (int64_t i = 0; i < words; i++) {
        uint32_t k = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16
                   | (uint32_t)p[4 * i + 3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const unsigned char *tail = p + words * 4;
    switch (length % 4) {
    case 3: h ^= (uint32_t)tail[2] << 16; /* fall through */
    case 2: h ^= (uint32_t)tail[1] << 8;  /* fall through */
    case 1: h ^= (uint32_t)tail[0];
            h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

/* A consumer turns every record into a new bytes object. With glibc's default
 * trimming, freeing a batch of 64 KiB values hands the heap top back to the
 * kernel and the next batch faults every page in again: measured here, 11.7 us
 * per 64 KiB value instead of 1.2 us. Keep up to 64 MiB of freed heap. */
void sb_keep_freed_heap(void)
{
#if defined(__GLIBC__)
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
#endif
}
