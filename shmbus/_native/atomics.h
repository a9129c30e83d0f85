/* atomics.h -- the memory-ordering vocabulary every C file of the core speaks
 * (Aeron's aeron_atomic.h): loads and stores with their ordering made explicit,
 * a spin-wait hint, the clock, and the cache line that keeps hot words apart.
 * Words shared across processes are only ever touched through these.
 */
#ifndef SHMBUS_ATOMICS_H
#define SHMBUS_ATOMICS_H
#include <stdint.h>
#include <time.h>

#define LINE 64  /* bytes in a cache line: every hot word gets its own */

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

/* CLOCK_MONOTONIC (deadlines, leases, poll times: every process of the host shares
 * it) or CLOCK_REALTIME (record timestamps), in nanoseconds. */
static inline int64_t now_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

#endif
