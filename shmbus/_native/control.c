/* control.c -- the control page: one small shared-memory object per bus,
 * created by the supervisor, holding what consumer group members must see
 * without a round trip to it.
 *
 *   [ header line | SB_CTL_GROUPS group lines | SB_CTL_MEMBERS member lines ]
 *
 * A group line holds the group's generation word. Only the supervisor writes
 * it (a release store); a member loads it once per poll and rejoins when it
 * differs from the generation it last synced: noticing a rebalance costs one
 * load, not a request.
 *
 * A member line holds an owner token and the member's last poll time
 * (CLOCK_MONOTONIC, which every process of the host shares). The member stores
 * the time on each poll; the supervisor reads it to remove members that stopped
 * polling (Kafka's max.poll.interval.ms). The token stops a member the
 * supervisor already removed from stamping a slot now given to someone else.
 * Every line is its own cache line, so members polling never share one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "atomics.h"
#include "shmbus.h"

#define CTL_MAGIC 0x53484D4255534331ull /* "SHMBUSC1" */

struct ctl_header {
    uint64_t magic, version, total_bytes, created_ns, groups, members;
};

struct ctl_group {
    _Alignas(LINE) uint64_t generation;
};

struct ctl_member {
    _Alignas(LINE) uint64_t token;   /* 0: free */
    int64_t last_poll_ns;            /* CLOCK_MONOTONIC */
};

struct sb_control {
    char *base;
    uint64_t map_bytes;
    struct ctl_header *h;
    struct ctl_group *groups;
    struct ctl_member *members;
};

_Static_assert(sizeof(struct ctl_header) <= LINE, "header fits its line");
_Static_assert(sizeof(struct ctl_group) == LINE, "one group per cache line");
_Static_assert(sizeof(struct ctl_member) == LINE, "one member per cache line");

uint64_t sb_ctl_total_bytes(void)
{
    uint64_t bytes = LINE + (uint64_t)SB_CTL_GROUPS * LINE + (uint64_t)SB_CTL_MEMBERS * LINE;
    return (bytes + 4095) & ~4095ull;
}

static sb_control *ctl_map(int fd, uint64_t map_bytes, int *err)
{
    void *base = mmap(NULL, map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (base == MAP_FAILED) {
        *err = errno;
        return NULL;
    }
    sb_control *c = calloc(1, sizeof *c);
    if (!c) {
        munmap(base, map_bytes);
        *err = ENOMEM;
        return NULL;
    }
    c->base = base;
    c->map_bytes = map_bytes;
    c->h = (struct ctl_header *)base;
    c->groups = (struct ctl_group *)(c->base + LINE);
    c->members = (struct ctl_member *)(c->base + LINE + (uint64_t)SB_CTL_GROUPS * LINE);
    return c;
}

sb_control *sb_ctl_create(int fd, int *err)
{
    *err = 0;
    sb_control *c = ctl_map(fd, sb_ctl_total_bytes(), err);
    if (!c)
        return NULL;
    c->h->version = SB_CTL_VERSION;
    c->h->total_bytes = c->map_bytes;
    c->h->created_ns = (uint64_t)now_ns(CLOCK_REALTIME);
    c->h->groups = SB_CTL_GROUPS;
    c->h->members = SB_CTL_MEMBERS;
    /* Magic last: an attacher that sees it sees a whole header. */
    STORE_REL(&c->h->magic, CTL_MAGIC);
    return c;
}

sb_control *sb_ctl_attach(int fd, uint64_t file_bytes, int *err)
{
    *err = 0;
    if (file_bytes != sb_ctl_total_bytes()) {
        *err = EINVAL;
        return NULL;
    }
    sb_control *c = ctl_map(fd, file_bytes, err);
    if (!c)
        return NULL;
    if (LOAD_ACQ(&c->h->magic) != CTL_MAGIC || c->h->version != SB_CTL_VERSION
        || c->h->total_bytes != file_bytes || c->h->groups != SB_CTL_GROUPS
        || c->h->members != SB_CTL_MEMBERS) {
        sb_ctl_close(c);
        *err = EINVAL;
        return NULL;
    }
    return c;
}

void sb_ctl_close(sb_control *c)
{
    if (!c)
        return;
    munmap(c->base, c->map_bytes);
    free(c);
}

uint64_t sb_ctl_id(sb_control *c)
{
    return c->h->created_ns;
}

/* Out-of-range slots read as 0 and ignore writes: a bad index from a reply
 * must never reach outside the mapping. */

uint64_t sb_ctl_generation(sb_control *c, uint32_t group)
{
    return group < SB_CTL_GROUPS ? LOAD_ACQ(&c->groups[group].generation) : 0;
}

void sb_ctl_set_generation(sb_control *c, uint32_t group, uint64_t generation)
{
    if (group < SB_CTL_GROUPS)
        STORE_REL(&c->groups[group].generation, generation);
}

void sb_ctl_member_set(sb_control *c, uint32_t member, uint64_t token)
{
    if (member >= SB_CTL_MEMBERS)
        return;
    /* The time first, so a new owner never looks idle since the last one. */
    STORE(&c->members[member].last_poll_ns, now_ns(CLOCK_MONOTONIC));
    STORE_REL(&c->members[member].token, token);
}

int64_t sb_ctl_member_idle_ns(sb_control *c, uint32_t member, uint64_t token)
{
    if (member >= SB_CTL_MEMBERS || LOAD_ACQ(&c->members[member].token) != token)
        return -1;
    return now_ns(CLOCK_MONOTONIC) - LOAD_ACQ(&c->members[member].last_poll_ns);
}

uint64_t sb_ctl_poll(sb_control *c, uint32_t group, uint32_t member, uint64_t token)
{
    if (member < SB_CTL_MEMBERS && LOAD_ACQ(&c->members[member].token) == token)
        STORE_REL(&c->members[member].last_poll_ns, now_ns(CLOCK_MONOTONIC));
    return group < SB_CTL_GROUPS ? LOAD_ACQ(&c->groups[group].generation) : 0;
}
