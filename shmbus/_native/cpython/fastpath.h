/* fastpath.h -- what the files of the _fastpath module share.
 *
 * cffi is the core's binding (shmbus/_backend), and a cffi call costs about 150 ns;
 * a send or a received record through it, with its RecordMetadata or Message built
 * in Python, cost 800+ ns, five times the work the core does. This module is the
 * part of each per-record path that runs once per record, one file per concept:
 *
 *   send.c      ProducerBase.send: the common sends (bytes value, a key or none, no
 *               headers, the producer's clock, a partition whose writer exists) in C:
 *               one core call (sb_append_now, never sleeps) and the RecordMetadata;
 *               anything else goes to Producer._send_general. ProducerBase.linger_send:
 *               a lingering producer's common record joins its partition's open batch;
 *               the rest goes to Producer._linger_record.
 *   route.c     Route: what those read per record of one topic (writers, sticky
 *               partition, key cache).
 *   reserve.c   ProducerBase.reserve: the common reservations (no key, no headers, now,
 *               a partition whose writer exists): a FastReservation, whose with-block
 *               claims (sb_reserve_now, never sleeps) and publishes (sb_commit) in C;
 *               anything else is Producer._reserve_general's. ReservedView: the
 *               writable buffer a reservation hands out.
 *   consume.c   ConsumerBase: `for msg in consumer` in C, handing out the buffered
 *               Messages and calling Consumer._refill for more; decode, decode_plain:
 *               Messages built straight from a ring or segment read.
 *   module.c    the module: bind() and the names the files look up.
 *
 * The core's functions come from cffi (bind(), at import of _backend/fastpath.py),
 * so there is one copy of the core. Policy -- retries, waiting, errors -- stays in
 * Python: every case these files do not handle is passed on unchanged.
 */
#ifndef SHMBUS_FASTPATH_H
#define SHMBUS_FASTPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include "shmbus.h"

#if PY_VERSION_HEX < 0x030A0000   /* Python 3.9 */
static inline PyObject *Py_NewRef(PyObject *o) { Py_INCREF(o); return o; }
static inline PyObject *Py_XNewRef(PyObject *o) { Py_XINCREF(o); return o; }
static inline int PyModule_AddObjectRef(PyObject *m, const char *name, PyObject *o)
{
    Py_INCREF(o);
    if (PyModule_AddObject(m, name, o) < 0) {
        Py_DECREF(o);
        return -1;
    }
    return 0;
}
#endif

typedef int64_t (*append_now_fn)(sb_writer *, const char *, int64_t, const char *, int64_t);
typedef int64_t (*reserve_now_fn)(sb_writer *, int64_t, char **);
typedef int (*end_reserve_fn)(sb_writer *);

/* Bound by module.c's bind() and interned at import. */
extern append_now_fn append_now;            /* sb_append_now, from cffi */
extern reserve_now_fn reserve_now;          /* sb_reserve_now */
extern end_reserve_fn commit_reserved;      /* sb_commit */
extern end_reserve_fn abort_reserved;       /* sb_abort */
extern PyObject *shmbus_error;              /* shmbus.ShmbusError */
extern PyTypeObject *record_metadata_type;  /* shmbus.RecordMetadata */
extern PyTypeObject *message_type;          /* shmbus.Message */
extern PyObject *empty_tuple;
extern PyObject *str_key, *str_partition, *str_headers, *str_timestamp_ns, *str_timeout;
extern PyObject *str_send_general, *str_raise_revoked, *str_refill, *str_reserve_general, *str_commit_failed;
extern PyObject *str_enter, *str_exit;
/* Lingering producers (_linger.py): the future type, and the names linger_send reads. */
extern PyObject *future_type;
extern PyObject *str_future_batch, *str_future_index;
extern PyObject *str_linger_general, *str_lingering, *str_data, *str_desc, *str_open, *str_limit, *str_lock,
    *str_acquire, *str_release;

extern PyTypeObject RouteType, ProducerBaseType, ConsumerBaseType, ReservedViewType, FastReservationType;

/* A NamedTuple instance from n new references (stolen). */
static inline PyObject *new_record(PyTypeObject *type, PyObject **items, Py_ssize_t n)
{
    PyObject *record = type->tp_alloc(type, n);
    if (!record) {
        for (Py_ssize_t i = 0; i < n; i++)
            Py_XDECREF(items[i]);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!items[i]) {
            for (Py_ssize_t j = i + 1; j < n; j++)
                Py_XDECREF(items[j]);
            Py_DECREF(record);
            return NULL;
        }
        PyTuple_SET_ITEM(record, i, items[i]);
    }
    return record;
}

/* route.c */
typedef struct {
    PyObject_HEAD
    PyObject *topic;             /* str */
    Py_ssize_t count;            /* partitions */
    Py_ssize_t sticky;           /* the sticky partition (records without key or partition) */
    Py_ssize_t sticky_left;      /* value bytes it takes before the producer picks another */
    sb_writer *sticky_writer;    /* its writer, NULL until one is chosen */
    sb_writer **writers;         /* per partition, NULL until made (owned by Python's Writer) */
    PyObject **owners;           /* per partition, the Writer whose memory *writers[p] is */
    PyObject **keepers;          /* per partition, what keeps its ring mapped (for reserve's views) */
    PyObject *partition_numbers; /* tuple of the ints 0..count-1, for RecordMetadata */
    PyObject *key_partitions;    /* dict: key -> partition (a cache Python fills) */
} RouteObject;

/* send.c */
typedef struct {
    PyObject_HEAD
    PyObject *routes;   /* dict: topic -> Route */
} ProducerBaseObject;

PyObject *call_general(PyObject *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames);
int find_route(ProducerBaseObject *self, PyObject *topic, RouteObject **route);
int pick_partition(RouteObject *route, PyObject *key, PyObject *partition, Py_ssize_t *p, int *sticky);

/* reserve.c */
PyObject *producer_reserve(ProducerBaseObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames);

/* consume.c */
PyObject *decode_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
