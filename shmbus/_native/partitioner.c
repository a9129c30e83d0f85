/* partitioner.c -- Kafka's default partitioner hashes keys with murmur2; shmbus
 * uses the same function, so a key lands in the same partition number as in Kafka
 * (and through the Kafka bridge).
 */
#include <stdint.h>
#include "shmbus.h"

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
