/* wait.h -- sleeping and waking on a ring's futex words (wait.c), for the files
 * that block (a claim waiting for space) or wake (appends, flags, archiving). */
#ifndef SHMBUS_WAIT_H
#define SHMBUS_WAIT_H
#include <stdint.h>
#include "layout.h"

int futex_wait_one(uint32_t *word, uint32_t expected, int64_t timeout_ns);
void register_waiter(struct header *h, uint32_t *waiters, int64_t until_ns);
void unregister_waiter(uint32_t *waiters);
void wake_after_publish(sb_ring *r);
void wake_writers(sb_ring *r);
/* Wake every sleeper of both kinds: a flag changed (a deletion), or a producer asks
 * the archiver (asleep among the readers) for an fsync. */
void wake_everyone(sb_ring *r);

#endif
