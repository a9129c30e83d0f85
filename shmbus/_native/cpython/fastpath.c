/* fastpath.c -- the per-record paths, in CPython's C API.
 *
 * cffi is the core's binding (shmbus/_backend), and a cffi call costs about 150 ns;
 * a send or a received record through it, with its RecordMetadata or Message built
 * in Python, cost 800+ ns, five times the work the core does. This module is the
 * part of each per-record path that runs once per record:
 *
 *   ProducerBase.send   the common sends (bytes value, a key or none, no headers,
 *                       the producer's clock, a partition whose writer exists) in C:
 *                       one core call (sb_append_now, never sleeps) and the
 *                       RecordMetadata; anything else goes to Producer._send_general.
 *   ProducerBase.linger_send  a lingering producer's common record: it joins its
 *                       partition's open batch; the rest goes to Producer._linger_record.
 *   ConsumerBase        `for msg in consumer` in C: hands out the buffered Messages,
 *                       calling Consumer._refill for more.
 *   decode, decode_plain  Messages built straight from a ring or segment read.
 *   ProducerBase.reserve  the common reservations (no key, no headers, now, a
 *                       partition whose writer exists): a FastReservation, whose
 *                       with-block claims (sb_reserve_now, never sleeps) and publishes
 *                       (sb_commit) in C; anything else is Producer._reserve_general's.
 *   ReservedView        the writable buffer a reservation hands out.
 *
 * The core's functions come from cffi (bind(), at import of _backend/fastpath.py),
 * so there is one copy of the core. Policy -- retries, waiting, errors -- stays in
 * Python: every case this file does not handle is passed on unchanged.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include "shmbus.h"

#if PY_VERSION_HEX < 0x030A0000   /* Python 3.9 */
static inline PyObject *Py_NewRef(PyObject *o) { Py_INCREF(o); return o; }
static inline PyObject *Py_XNewRef(PyObject *o) { Py_XINCREF(o); return o; }
static int PyModule_AddObjectRef(PyObject *m, const char *name, PyObject *o)
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

static append_now_fn append_now;            /* sb_append_now, from cffi */
static reserve_now_fn reserve_now;          /* sb_reserve_now */
static end_reserve_fn commit_reserved;      /* sb_commit */
static end_reserve_fn abort_reserved;       /* sb_abort */
static PyObject *shmbus_error;              /* shmbus.ShmbusError */
static PyTypeObject *record_metadata_type;  /* shmbus.RecordMetadata */
static PyTypeObject *message_type;          /* shmbus.Message */
static PyObject *empty_tuple;
static PyObject *str_key, *str_partition, *str_headers, *str_timestamp_ns, *str_timeout;
static PyObject *str_send_general, *str_raise_revoked, *str_refill, *str_reserve_general, *str_commit_failed;
static PyObject *str_enter, *str_exit;
/* Lingering producers (_linger.py): the future type, and the names linger_send reads. */
static PyObject *future_type;
static PyObject *str_future_batch, *str_future_index;
static PyObject *str_linger_general, *str_lingering, *str_data, *str_desc, *str_open, *str_limit, *str_lock,
    *str_acquire, *str_release;

/* A NamedTuple instance from n new references (stolen). */
static PyObject *new_record(PyTypeObject *type, PyObject **items, Py_ssize_t n)
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

static int check_bound(void)
{
    if (!append_now || !reserve_now || !record_metadata_type || !message_type) {
        PyErr_SetString(PyExc_RuntimeError, "shmbus._native._fastpath is not bound (import shmbus._backend)");
        return -1;
    }
    return 0;
}

/* ==== Route: a producer's fast view of one topic ==== */

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

static int route_init(RouteObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *topic;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "Un:Route", &topic, &count))
        return -1;
    if (count <= 0) {
        PyErr_SetString(PyExc_ValueError, "a route needs at least one partition");
        return -1;
    }
    if (self->writers) {
        PyErr_SetString(PyExc_RuntimeError, "Route is initialized already");
        return -1;
    }
    self->writers = PyMem_Calloc((size_t)count, sizeof(sb_writer *));
    self->owners = PyMem_Calloc((size_t)count, sizeof(PyObject *));
    self->keepers = PyMem_Calloc((size_t)count, sizeof(PyObject *));
    self->partition_numbers = PyTuple_New(count);
    self->key_partitions = PyDict_New();
    if (!self->writers || !self->owners || !self->keepers || !self->partition_numbers || !self->key_partitions) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *number = PyLong_FromSsize_t(i);
        if (!number)
            return -1;
        PyTuple_SET_ITEM(self->partition_numbers, i, number);
    }
    Py_INCREF(topic);
    Py_XSETREF(self->topic, topic);
    self->count = count;
    return 0;
}

static void route_dealloc(RouteObject *self)
{
    for (Py_ssize_t i = 0; self->owners && self->keepers && i < self->count; i++) {
        Py_XDECREF(self->owners[i]);
        Py_XDECREF(self->keepers[i]);
    }
    PyMem_Free(self->owners);
    PyMem_Free(self->keepers);
    PyMem_Free(self->writers);
    Py_XDECREF(self->topic);
    Py_XDECREF(self->partition_numbers);
    Py_XDECREF(self->key_partitions);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int route_partition(RouteObject *self, Py_ssize_t partition)
{
    if (!self->writers || partition < 0 || partition >= self->count) {
        PyErr_Format(PyExc_IndexError, "partition %zd is not in [0, %zd)", partition, self->count);
        return -1;
    }
    return 0;
}

static PyObject *route_set_writer(RouteObject *self, PyObject *args)
{
    Py_ssize_t partition;
    PyObject *address, *owner = Py_None, *keeper = Py_None;
    if (!PyArg_ParseTuple(args, "nO|OO:set_writer", &partition, &address, &owner, &keeper)
        || route_partition(self, partition) < 0)
        return NULL;
    sb_writer *writer = address == Py_None ? NULL : PyLong_AsVoidPtr(address);
    if (PyErr_Occurred())
        return NULL;
    if (self->sticky_writer && self->sticky_writer == self->writers[partition]) {
        self->sticky_writer = writer;
        if (!writer)
            self->sticky_left = 0;
    }
    self->writers[partition] = writer;
    Py_XSETREF(self->owners[partition], writer && owner != Py_None ? Py_NewRef(owner) : NULL);
    Py_XSETREF(self->keepers[partition], writer && keeper != Py_None ? Py_NewRef(keeper) : NULL);
    Py_RETURN_NONE;
}

static PyObject *route_stick(RouteObject *self, PyObject *args)
{
    Py_ssize_t partition, budget;
    if (!PyArg_ParseTuple(args, "nn:stick", &partition, &budget) || route_partition(self, partition) < 0)
        return NULL;
    if (!self->writers[partition]) {
        PyErr_Format(PyExc_ValueError, "partition %zd has no writer yet", partition);
        return NULL;
    }
    self->sticky = partition;
    self->sticky_left = budget;
    self->sticky_writer = self->writers[partition];
    Py_RETURN_NONE;
}

static PyObject *route_has_sticky(RouteObject *self, void *closure)
{
    return PyBool_FromLong(self->sticky_writer != NULL);
}

static PyObject *route_has_writer(RouteObject *self, PyObject *arg)
{
    Py_ssize_t partition = PyLong_AsSsize_t(arg);
    if ((partition == -1 && PyErr_Occurred()) || route_partition(self, partition) < 0)
        return NULL;
    return PyBool_FromLong(self->writers[partition] != NULL);
}

static PyMemberDef route_members[] = {
    {"topic", T_OBJECT, offsetof(RouteObject, topic), READONLY, "The topic's name."},
    {"count", T_PYSSIZET, offsetof(RouteObject, count), READONLY, "How many partitions it has."},
    {"sticky", T_PYSSIZET, offsetof(RouteObject, sticky), READONLY, "The sticky partition."},
    {"sticky_left", T_PYSSIZET, offsetof(RouteObject, sticky_left), 0,
     "Value bytes the sticky partition takes before another is picked."},
    {"key_partitions", T_OBJECT, offsetof(RouteObject, key_partitions), READONLY,
     "A cache: key -> partition, filled by the producer."},
    {NULL},
};

static PyGetSetDef route_getset[] = {
    {"has_sticky", (getter)route_has_sticky, NULL, "A sticky partition (and its writer) is chosen.", NULL},
    {NULL},
};

static PyMethodDef route_methods[] = {
    {"set_writer", (PyCFunction)route_set_writer, METH_VARARGS,
     "set_writer(partition, address, owner=None, keeper=None)\n--\n\nThe sb_writer address of a partition's "
     "writer (None: gone),\nthe object that owns its memory, and its ring's view keeper (for reserve)."},
    {"stick", (PyCFunction)route_stick, METH_VARARGS,
     "stick(partition, budget)\n--\n\nMake partition the sticky one, for budget value bytes."},
    {"has_writer", (PyCFunction)route_has_writer, METH_O,
     "has_writer(partition)\n--\n\nWhether the partition's writer is made."},
    {NULL},
};

static PyTypeObject RouteType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmbus._native._fastpath.Route",
    .tp_doc = "Route(topic, count)\n--\n\nWhat ProducerBase.send needs of one topic.",
    .tp_basicsize = sizeof(RouteObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)route_init,
    .tp_dealloc = (destructor)route_dealloc,
    .tp_members = route_members,
    .tp_getset = route_getset,
    .tp_methods = route_methods,
};

/* ==== ProducerBase: send ==== */

typedef struct {
    PyObject_HEAD
    PyObject *routes;   /* dict: topic -> Route */
} ProducerBaseObject;

static PyObject *producer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    ProducerBaseObject *self = (ProducerBaseObject *)type->tp_alloc(type, 0);
    if (self && !(self->routes = PyDict_New()))
        Py_CLEAR(self);
    return (PyObject *)self;
}

static int producer_traverse(ProducerBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->routes);
    return 0;
}

static int producer_clear(ProducerBaseObject *self)
{
    Py_CLEAR(self->routes);
    return 0;
}

static void producer_dealloc(ProducerBaseObject *self)
{
    PyObject_GC_UnTrack(self);
    producer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Hand a call the fast path does not take to the Python method `name`, unchanged. */
static PyObject *call_general(PyObject *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    PyObject *general = PyObject_GetAttr(self, name);
    if (!general)
        return NULL;
    PyObject *result = PyObject_Vectorcall(general, args, (size_t)nargs, kwnames);
    Py_DECREF(general);
    return result;
}

/* send's and linger_send's arguments (topic, value, key=None, headers=None, partition=None,
 * timestamp_ns=None, timeout=None) when they are the common record's: 1 with the key and
 * partition given (or None), 0 for anything else (headers, a timestamp, a timeout, a
 * duplicate or misspelt keyword: the general path says so). */
static int common_send_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **key,
                            PyObject **partition)
{
    *key = *partition = Py_None;
    if (nargs < 2 || nargs > 7)
        return 0;
    if ((nargs > 3 && args[3] != Py_None) || (nargs > 5 && args[5] != Py_None) || (nargs > 6 && args[6] != Py_None))
        return 0;
    if (nargs > 2)
        *key = args[2];
    if (nargs > 4)
        *partition = args[4];
    for (Py_ssize_t i = 0; kwnames && i < PyTuple_GET_SIZE(kwnames); i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i), *arg = args[nargs + i];
        if (name == str_key && nargs <= 2)
            *key = arg;
        else if (name == str_partition && nargs <= 4)
            *partition = arg;
        else if (!((name == str_headers || name == str_timestamp_ns || name == str_timeout) && arg == Py_None))
            return 0;
    }
    return 1;
}

/* The producer's Route for topic: 1 (in *route), 0 if there is none yet (the general
 * path resolves it), -1 on error. */
static int find_route(ProducerBaseObject *self, PyObject *topic, RouteObject **route)
{
    if (!self->routes || !PyUnicode_CheckExact(topic))
        return 0;
    PyObject *found = PyDict_GetItemWithError(self->routes, topic);
    if (!found)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyObject_TypeCheck(found, &RouteType))
        return 0;
    *route = (RouteObject *)found;
    return 1;
}

/* The partition of a record as the producer picks it -- the sticky one (no key, no
 * partition), the one given, or the cached one of its bytes key --, when that needs no
 * Python: 1 (*sticky says which case), 0 when the general path must pick (a new sticky
 * partition, a key the partitioner has not seen), -1 on error. */
static int pick_partition(RouteObject *route, PyObject *key, PyObject *partition, Py_ssize_t *p, int *sticky)
{
    *sticky = 0;
    if (key == Py_None && partition == Py_None) {
        if (route->sticky_left <= 0 || !route->sticky_writer)
            return 0;   /* time to pick another sticky partition */
        *p = route->sticky;
        *sticky = 1;
        return 1;
    }
    PyObject *number;
    if (key == Py_None && PyLong_CheckExact(partition))
        number = partition;
    else if (PyBytes_CheckExact(key) && partition == Py_None) {
        if (!(number = PyDict_GetItemWithError(route->key_partitions, key)))
            return PyErr_Occurred() ? -1 : 0;
    } else
        return 0;
    *p = PyLong_AsSsize_t(number);
    if (*p == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return *p >= 0 && *p < route->count;
}

/* send(topic, value, key=None, headers=None, partition=None, timestamp_ns=None, timeout=None) */
static PyObject *producer_send(ProducerBaseObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *key, *partition;
    RouteObject *route;
    Py_ssize_t p;
    int sticky, found;
    if (!append_now || !common_send_args(args, nargs, kwnames, &key, &partition) || !PyBytes_CheckExact(args[1]))
        goto general;
    found = find_route(self, args[0], &route);
    if (found > 0)
        found = pick_partition(route, key, partition, &p, &sticky);
    if (found < 0)
        return NULL;
    if (!found)
        goto general;
    sb_writer *writer = route->writers[p];
    if (!writer)
        goto general;
    PyObject *topic = args[0], *value = args[1];
    const char *key_bytes = key == Py_None ? NULL : PyBytes_AS_STRING(key);
    Py_ssize_t key_len = key == Py_None ? -1 : PyBytes_GET_SIZE(key), value_len = PyBytes_GET_SIZE(value);
    int64_t offset = append_now(writer, key_bytes, key_len, PyBytes_AS_STRING(value), value_len);
    if (offset >= 0) {
        if (sticky)
            route->sticky_left -= value_len;
        PyObject *items[4] = {Py_NewRef(topic), Py_NewRef(PyTuple_GET_ITEM(route->partition_numbers, p)),
                              PyLong_FromLongLong(offset), PyLong_FromLongLong(writer->timestamp_ns)};
        return new_record(record_metadata_type, items, 4);
    }
    if (offset == SB_REVOKED) {
        /* Not sent, and not to be sent again behind the caller's back: it decides. */
        PyObject *number = PyTuple_GET_ITEM(route->partition_numbers, p);
        return PyObject_CallMethodObjArgs((PyObject *)self, str_raise_revoked, (PyObject *)route, number, NULL);
    }
    /* Full, busy, deleted, moved, too large: nothing was written; the general path
     * waits, retries or raises. */
general:
    return call_general((PyObject *)self, str_send_general, args, nargs, kwnames);
}

static PyObject *producer_reserve(ProducerBaseObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames);   /* below, with FastReservation */
/* linger_send(topic, value, key=None, headers=None, partition=None, timestamp_ns=None,
 * timeout=None): a lingering producer's send, for the common record (as send's: a bytes
 * value, a cached key or none, no headers, the producer's clock) whose partition has an
 * open batch (route.lingering[p]) that it does not fill: the record joins the batch's
 * bytes and descriptor words (SB_RECORD_WORDS int64s, in a bytearray) under the batch's
 * lock, and its FutureRecordMetadata(batch, index) is returned. Everything else -- a new
 * batch, a full one, a busy lock -- goes to Producer._linger_record, unchanged. */
static int grow_bytearray(PyObject *array, Py_ssize_t extra, char **at)
{
    Py_ssize_t size = PyByteArray_GET_SIZE(array);
    if (PyByteArray_Resize(array, size + extra) < 0)
        return -1;
    *at = PyByteArray_AS_STRING(array) + size;
    return 0;
}

static PyObject *producer_linger_send(ProducerBaseObject *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames)
{
    PyObject *key, *partition;
    RouteObject *route;
    Py_ssize_t p;
    int sticky, found;
    if (!future_type || !common_send_args(args, nargs, kwnames, &key, &partition) || !PyBytes_CheckExact(args[1]))
        goto general;
    found = find_route(self, args[0], &route);
    if (found > 0)
        found = pick_partition(route, key, partition, &p, &sticky);
    if (found < 0)
        return NULL;
    if (!found)
        goto general;
    PyObject *value = args[1];
    Py_ssize_t key_len = key == Py_None ? -1 : PyBytes_GET_SIZE(key), value_len = PyBytes_GET_SIZE(value);

    PyObject *lingering = PyObject_GetAttr((PyObject *)route, str_lingering);
    if (!lingering)
        return NULL;
    if (!PyList_CheckExact(lingering) || p >= PyList_GET_SIZE(lingering)) {
        Py_DECREF(lingering);
        goto general;
    }
    PyObject *batch = Py_NewRef(PyList_GET_ITEM(lingering, p));
    Py_DECREF(lingering);
    PyObject *data = NULL, *desc = NULL, *open = NULL, *limit = NULL, *lock = NULL, *got = NULL;
    PyObject *result = NULL;
    int locked = 0;
    if (batch == Py_None)
        goto batch_general;
    if (!(lock = PyObject_GetAttr(batch, str_lock)))
        goto fail;
    /* Another thread may be adding to this batch, or closing it: take its lock, or leave it to Python. */
    if (!(got = PyObject_CallMethodOneArg(lock, str_acquire, Py_False)))
        goto fail;
    locked = got == Py_True;
    if (!locked)
        goto batch_general;
    if (!(open = PyObject_GetAttr(batch, str_open)) || !(data = PyObject_GetAttr(batch, str_data))
        || !(desc = PyObject_GetAttr(batch, str_desc)) || !(limit = PyObject_GetAttr(batch, str_limit)))
        goto fail;
    if (open != Py_True || !PyByteArray_CheckExact(data) || !PyByteArray_CheckExact(desc) || !PyLong_CheckExact(limit))
        goto batch_general;
    Py_ssize_t at = PyByteArray_GET_SIZE(data), record = (key_len > 0 ? key_len : 0) + value_len;
    Py_ssize_t room = PyLong_AsSsize_t(limit);
    if (room == -1 && PyErr_Occurred())
        goto fail;
    if (at + record >= room)
        goto batch_general;   /* it fills the batch: Python closes and sends it */
    char *bytes;
    if (grow_bytearray(data, record, &bytes) < 0)
        goto fail;
    if (key_len > 0)
        memcpy(bytes, PyBytes_AS_STRING(key), (size_t)key_len);
    memcpy(bytes + (key_len > 0 ? key_len : 0), PyBytes_AS_STRING(value), (size_t)value_len);
    Py_ssize_t index = PyByteArray_GET_SIZE(desc) / (Py_ssize_t)(SB_RECORD_WORDS * sizeof(int64_t));
    char *words_at;
    if (grow_bytearray(desc, SB_RECORD_WORDS * sizeof(int64_t), &words_at) < 0)
        goto fail;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    Py_ssize_t value_at = at + (key_len > 0 ? key_len : 0);
    int64_t words[SB_RECORD_WORDS] = {at, key_len, value_at, 0, value_at, value_len,
                                      (int64_t)now.tv_sec * 1000000000ll + now.tv_nsec};
    memcpy(words_at, words, sizeof(words));
    if (sticky)
        route->sticky_left -= value_len;
    PyObject *number = PyLong_FromSsize_t(index);
    if (!number)
        goto fail;
    /* FutureRecordMetadata(batch, index) without running its __init__ (a Python call,
     * a fifth of this path): a bare instance with its two slots set. */
    PyTypeObject *type = (PyTypeObject *)future_type;
    result = type->tp_new(type, empty_tuple, NULL);
    if (result && (PyObject_SetAttr(result, str_future_batch, batch) < 0
                   || PyObject_SetAttr(result, str_future_index, number) < 0))
        Py_CLEAR(result);
    Py_DECREF(number);
    goto done;
batch_general:
    result = NULL;
    goto done_general;
fail:
    result = NULL;
done:
    if (locked) {
        PyObject *err_type, *err_value, *err_tb;
        PyErr_Fetch(&err_type, &err_value, &err_tb);
        PyObject *released = PyObject_CallMethodNoArgs(lock, str_release);
        Py_XDECREF(released);
        PyErr_Restore(err_type, err_value, err_tb);
    }
    Py_XDECREF(got);
    Py_XDECREF(lock);
    Py_XDECREF(open);
    Py_XDECREF(data);
    Py_XDECREF(desc);
    Py_XDECREF(limit);
    Py_DECREF(batch);
    return result;
done_general:
    if (locked) {
        PyObject *released = PyObject_CallMethodNoArgs(lock, str_release);
        if (!released) {
            Py_XDECREF(got); Py_XDECREF(lock); Py_XDECREF(open); Py_XDECREF(data); Py_XDECREF(desc);
            Py_XDECREF(limit); Py_DECREF(batch);
            return NULL;
        }
        Py_DECREF(released);
    }
    Py_XDECREF(got);
    Py_XDECREF(lock);
    Py_XDECREF(open);
    Py_XDECREF(data);
    Py_XDECREF(desc);
    Py_XDECREF(limit);
    Py_DECREF(batch);
general:
    return call_general((PyObject *)self, str_linger_general, args, nargs, kwnames);
}

static PyMethodDef producer_methods[] = {
    {"reserve", (PyCFunction)(void (*)(void))producer_reserve, METH_FASTCALL | METH_KEYWORDS,
     "reserve($self, topic, nbytes, key=None, partition=None, headers=None, timestamp_ns=None, timeout=None)\n--\n\n"
     "Write one record's value in place, in the ring: a context manager whose value is a\n"
     "writable buffer of nbytes (index it, slice-assign it, np.frombuffer it). The record\n"
     "is published when the block ends -- then buf.metadata is its RecordMetadata -- and\n"
     "aborted if the block raises (consumers skip it; so they do if this process dies in\n"
     "the block). The buffer must not be used after the block. Hold it for less than the\n"
     "supervisor's unblock timeout (1 s by default): past it, the partition moves on\n"
     "without the record, and the block's end raises ClaimRevoked."},
    {"send", (PyCFunction)(void (*)(void))producer_send, METH_FASTCALL | METH_KEYWORDS,
     "send($self, topic, value, key=None, headers=None, partition=None, timestamp_ns=None, timeout=None)\n--\n\n"
     "Append one record; returns RecordMetadata(topic, partition, offset, timestamp_ns)\n"
     "once it is in shared memory and visible to consumers. Blocks up to timeout\n"
     "(default: the producer's) for ring space, then raises BufferFull."},
    {"linger_send", (PyCFunction)(void (*)(void))producer_linger_send, METH_FASTCALL | METH_KEYWORDS,
     "linger_send($self, topic, value, key=None, headers=None, partition=None, timestamp_ns=None, timeout=None)\n"
     "--\n\nA lingering producer's send: the record joins its partition's batch; returns its\n"
     "FutureRecordMetadata (see _linger.py)."},
    {NULL},
};

static PyMemberDef producer_members[] = {
    {"_routes", T_OBJECT, offsetof(ProducerBaseObject, routes), READONLY, "topic -> Route"},
    {NULL},
};

static PyTypeObject ProducerBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmbus._native._fastpath.ProducerBase",
    .tp_doc = "The C half of Producer: send's and reserve's common cases.",
    .tp_basicsize = sizeof(ProducerBaseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = producer_new,
    .tp_traverse = (traverseproc)producer_traverse,
    .tp_clear = (inquiry)producer_clear,
    .tp_dealloc = (destructor)producer_dealloc,
    .tp_methods = producer_methods,
    .tp_members = producer_members,
};

/* ==== ConsumerBase: iteration ==== */

typedef struct {
    PyObject_HEAD
    PyObject *buffer;          /* list of Messages fetched for iteration */
    Py_ssize_t buffer_index;   /* the next one to hand out */
} ConsumerBaseObject;

static PyObject *consumer_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    ConsumerBaseObject *self = (ConsumerBaseObject *)type->tp_alloc(type, 0);
    if (self && !(self->buffer = PyList_New(0)))
        Py_CLEAR(self);
    return (PyObject *)self;
}

static int consumer_traverse(ConsumerBaseObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buffer);
    return 0;
}

static int consumer_clear(ConsumerBaseObject *self)
{
    Py_CLEAR(self->buffer);
    return 0;
}

static void consumer_dealloc(ConsumerBaseObject *self)
{
    PyObject_GC_UnTrack(self);
    consumer_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *consumer_next(ConsumerBaseObject *self)
{
    for (;;) {
        PyObject *buffer = self->buffer;
        if (buffer && PyList_CheckExact(buffer) && self->buffer_index >= 0
            && self->buffer_index < PyList_GET_SIZE(buffer))
            return Py_NewRef(PyList_GET_ITEM(buffer, self->buffer_index++));
        /* Waits (without end) for records and puts them in _buffer; raises when closed. */
        PyObject *result = PyObject_CallMethodNoArgs((PyObject *)self, str_refill);
        if (!result)
            return NULL;
        Py_DECREF(result);
    }
}

static PyMemberDef consumer_members[] = {
    {"_buffer", T_OBJECT_EX, offsetof(ConsumerBaseObject, buffer), 0, "Messages fetched for iteration."},
    {"_buffer_index", T_PYSSIZET, offsetof(ConsumerBaseObject, buffer_index), 0, "The next one to hand out."},
    {NULL},
};

static PyTypeObject ConsumerBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmbus._native._fastpath.ConsumerBase",
    .tp_doc = "The C half of Consumer: iteration over fetched Messages.",
    .tp_basicsize = sizeof(ConsumerBaseObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = consumer_new,
    .tp_traverse = (traverseproc)consumer_traverse,
    .tp_clear = (inquiry)consumer_clear,
    .tp_dealloc = (destructor)consumer_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)consumer_next,
    .tp_members = consumer_members,
};

/* ==== decode: Messages from a read ==== */

/* A slice of the read's data as bytes, after checking it lies inside (the
 * descriptors come from the core, but the data may be a file's). */
static PyObject *slice_bytes(const Py_buffer *data, int64_t at, int64_t len)
{
    if (len < 0)
        Py_RETURN_NONE;
    if (at < 0 || at > data->len || len > data->len - at) {
        PyErr_Format(PyExc_ValueError, "a record's bytes [%lld, +%lld) lie outside the read's %zd",
                     (long long)at, (long long)len, data->len);
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)data->buf + at, (Py_ssize_t)len);
}

static int get_read(PyObject *data_obj, PyObject *desc_obj, Py_ssize_t n, Py_ssize_t words,
                    Py_buffer *data, Py_buffer *desc)
{
    if (PyObject_GetBuffer(data_obj, data, PyBUF_SIMPLE) < 0)
        return -1;
    if (PyObject_GetBuffer(desc_obj, desc, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(data);
        return -1;
    }
    if (n < 0 || desc->len / (Py_ssize_t)sizeof(int64_t) / words < n) {
        PyErr_Format(PyExc_ValueError, "%zd records need %zd descriptor words, the buffer has %zd",
                     n, n * words, desc->len / (Py_ssize_t)sizeof(int64_t));
        PyBuffer_Release(data);
        PyBuffer_Release(desc);
        return -1;
    }
    return 0;
}

/* decode_plain(messages, topic, partition, data, descriptors, n, first_offset) */
static PyObject *decode_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "decode_plain(messages: list, topic, partition, data, descriptors, n, offset)");
        return NULL;
    }
    if (check_bound() < 0)
        return NULL;
    PyObject *messages = args[0], *topic = args[1], *partition = args[2];
    Py_ssize_t n = PyLong_AsSsize_t(args[5]);
    long long offset = PyLong_AsLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer data, desc;
    if (get_read(args[3], args[4], n, SB_PLAIN_DESC_WORDS, &data, &desc) < 0)
        return NULL;
    const int64_t *words = desc.buf;
    int64_t at = 0;
    PyObject *result = Py_None;
    for (Py_ssize_t i = 0; i < n; i++, words += SB_PLAIN_DESC_WORDS) {
        int64_t value_len = words[SB_PLAIN_VALUE_LEN];
        PyObject *items[7] = {Py_NewRef(topic), Py_NewRef(partition), PyLong_FromLongLong(offset + i),
                              PyLong_FromLongLong(words[SB_PLAIN_TIMESTAMP]), Py_NewRef(Py_None),
                              slice_bytes(&data, at, value_len), Py_NewRef(empty_tuple)};
        if (value_len > 0)
            at += value_len;
        PyObject *message = new_record(message_type, items, 7);
        if (!message || PyList_Append(messages, message) < 0) {
            Py_XDECREF(message);
            result = NULL;
            break;
        }
        Py_DECREF(message);
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&desc);
    return Py_XNewRef(result);
}

/* decode(messages, topic, partition, data, descriptors, n, decode_headers) */
static PyObject *decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "decode(messages: list, topic, partition, data, descriptors, n, decode_headers)");
        return NULL;
    }
    if (check_bound() < 0)
        return NULL;
    PyObject *messages = args[0], *topic = args[1], *partition = args[2], *decode_headers = args[6];
    Py_ssize_t n = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer data, desc;
    if (get_read(args[3], args[4], n, SB_DESC_WORDS, &data, &desc) < 0)
        return NULL;
    const int64_t *words = desc.buf;
    PyObject *result = Py_None;
    for (Py_ssize_t i = 0; i < n; i++, words += SB_DESC_WORDS) {
        PyObject *headers;
        if (words[SB_DESC_HEADERS_LEN] > 0) {
            PyObject *blob = slice_bytes(&data, words[SB_DESC_HEADERS_AT], words[SB_DESC_HEADERS_LEN]);
            headers = blob ? PyObject_CallOneArg(decode_headers, blob) : NULL;
            Py_XDECREF(blob);
        } else {
            headers = Py_NewRef(empty_tuple);
        }
        PyObject *items[7] = {Py_NewRef(topic), Py_NewRef(partition), PyLong_FromLongLong(words[SB_DESC_OFFSET]),
                              PyLong_FromLongLong(words[SB_DESC_TIMESTAMP]),
                              slice_bytes(&data, words[SB_DESC_KEY_AT], words[SB_DESC_KEY_LEN]),
                              slice_bytes(&data, words[SB_DESC_VALUE_AT], words[SB_DESC_VALUE_LEN]), headers};
        PyObject *message = new_record(message_type, items, 7);
        if (!message || PyList_Append(messages, message) < 0) {
            Py_XDECREF(message);
            result = NULL;
            break;
        }
        Py_DECREF(message);
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&desc);
    return Py_XNewRef(result);
}

/* ==== ReservedView: the buffer of Producer.reserve ==== */

typedef struct {
    PyObject_HEAD
    char *at;
    Py_ssize_t length;
    PyObject *keeper;      /* keeps the ring mapped while the view or anything made from it lives */
    PyObject *metadata;    /* RecordMetadata, once published */
    Py_ssize_t exports;
    int finished;          /* published or aborted: no more writes through it */
} ReservedViewObject;

static int reserved_init(ReservedViewObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *keeper, *address;
    Py_ssize_t length;
    if (!PyArg_ParseTuple(args, "OOn:ReservedView", &keeper, &address, &length))
        return -1;
    char *at = PyLong_AsVoidPtr(address);
    if (PyErr_Occurred())
        return -1;
    if (length < 0) {
        PyErr_SetString(PyExc_ValueError, "length must be >= 0");
        return -1;
    }
    self->at = at;
    self->length = length;
    Py_INCREF(keeper);
    Py_XSETREF(self->keeper, keeper);
    return 0;
}

static int reserved_traverse(ReservedViewObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keeper);
    Py_VISIT(self->metadata);
    return 0;
}

static int reserved_clear(ReservedViewObject *self)
{
    Py_CLEAR(self->keeper);
    Py_CLEAR(self->metadata);
    return 0;
}

static void reserved_dealloc(ReservedViewObject *self)
{
    PyObject_GC_UnTrack(self);
    reserved_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int reserved_check(ReservedViewObject *self)
{
    if (self->finished) {
        PyErr_SetString(PyExc_ValueError, "the reserved record was published (or aborted) when its block ended: "
                                          "its buffer can no longer be used");
        return -1;
    }
    if (!self->at && self->length) {
        PyErr_SetString(PyExc_ValueError, "ReservedView is not initialized");
        return -1;
    }
    return 0;
}

static int reserved_getbuffer(ReservedViewObject *self, Py_buffer *view, int flags)
{
    if (reserved_check(self) < 0) {
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->at, self->length, 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void reserved_releasebuffer(ReservedViewObject *self, Py_buffer *view)
{
    self->exports--;
}

static Py_ssize_t reserved_length(ReservedViewObject *self)
{
    return self->length;
}

/* Indexing and slicing as a memoryview's (bounds checked: nothing is written outside). */
static PyObject *reserved_subscript(ReservedViewObject *self, PyObject *key)
{
    PyObject *view = PyMemoryView_FromObject((PyObject *)self);
    if (!view)
        return NULL;
    PyObject *result = PyObject_GetItem(view, key);
    Py_DECREF(view);
    return result;
}

/* buf[i] = byte and buf[a:b] = bytes-like of the same length straight into the ring (the
 * common writes: a memoryview made and released per write cost ~1.5 us); every other
 * form through a memoryview, which checks and raises as a memoryview does. */
static int reserved_ass_direct(ReservedViewObject *self, PyObject *key, PyObject *value)
{
    if (PyLong_CheckExact(key) && PyLong_CheckExact(value)) {
        Py_ssize_t i = PyLong_AsSsize_t(key);
        long byte = PyLong_AsLong(value);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return 1;
        }
        if (i < 0)
            i += self->length;
        if (i < 0 || i >= self->length || byte < 0 || byte > 255)
            return 1;
        self->at[i] = (char)byte;
        return 0;
    }
    if (PySlice_Check(key) && PyObject_CheckBuffer(value)) {
        Py_ssize_t start, stop, step;
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) {
            PyErr_Clear();
            return 1;
        }
        Py_ssize_t count = PySlice_AdjustIndices(self->length, &start, &stop, step);
        if (step != 1)
            return 1;
        Py_buffer source;
        if (PyObject_GetBuffer(value, &source, PyBUF_C_CONTIGUOUS) < 0) {
            PyErr_Clear();
            return 1;
        }
        int done = source.len == count && source.itemsize == 1 ? (memmove(self->at + start, source.buf, (size_t)count), 0)
                                                              : 1;
        PyBuffer_Release(&source);
        return done;
    }
    return 1;
}

static int reserved_ass_subscript(ReservedViewObject *self, PyObject *key, PyObject *value)
{
    if (!value) {
        PyErr_SetString(PyExc_TypeError, "cannot delete from a reserved record's buffer");
        return -1;
    }
    if (reserved_check(self) < 0)
        return -1;
    int direct = reserved_ass_direct(self, key, value);
    if (direct <= 0)
        return direct;
    PyObject *view = PyMemoryView_FromObject((PyObject *)self);
    if (!view)
        return -1;
    int rc = PyObject_SetItem(view, key, value);
    PyObject *type, *error, *traceback;
    PyErr_Fetch(&type, &error, &traceback);   /* the assignment's error, if any, is the one to raise */
    PyObject *released = PyObject_CallMethod(view, "release", NULL);
    if (released)
        Py_DECREF(released);
    else
        PyErr_Clear();   /* still exported by a slice the caller kept: it goes with it */
    PyErr_Restore(type, error, traceback);
    Py_DECREF(view);
    return rc;
}

static PyObject *reserved_finish(ReservedViewObject *self, PyObject *metadata)
{
    self->finished = 1;
    if (metadata != Py_None) {
        Py_INCREF(metadata);
        Py_XSETREF(self->metadata, metadata);
    }
    Py_RETURN_NONE;
}

static PyObject *reserved_tobytes(ReservedViewObject *self, PyObject *unused)
{
    if (reserved_check(self) < 0)
        return NULL;
    return PyBytes_FromStringAndSize(self->at, self->length);
}

static PyObject *reserved_get_metadata(ReservedViewObject *self, void *closure)
{
    return Py_NewRef(self->metadata ? self->metadata : Py_None);
}

static PyObject *reserved_get_finished(ReservedViewObject *self, void *closure)
{
    return PyBool_FromLong(self->finished);
}

static PyObject *reserved_get_exports(ReservedViewObject *self, void *closure)
{
    return PyLong_FromSsize_t(self->exports);
}

static PyObject *reserved_get_nbytes(ReservedViewObject *self, void *closure)
{
    return PyLong_FromSsize_t(self->length);
}

static PyMethodDef reserved_methods[] = {
    {"_finish", (PyCFunction)reserved_finish, METH_O,
     "_finish(metadata)\n--\n\nThe record was published (with its RecordMetadata) or aborted (None)."},
    {"tobytes", (PyCFunction)reserved_tobytes, METH_NOARGS, "tobytes($self)\n--\n\nA copy of what is written so far."},
    {NULL},
};

static PyGetSetDef reserved_getset[] = {
    {"metadata", (getter)reserved_get_metadata, NULL, "RecordMetadata once the block published it, else None.", NULL},
    {"finished", (getter)reserved_get_finished, NULL, "True once the record was published or aborted.", NULL},
    {"exports", (getter)reserved_get_exports, NULL, "Buffers made from it that are still alive.", NULL},
    {"nbytes", (getter)reserved_get_nbytes, NULL, "Its size in bytes.", NULL},
    {NULL},
};

static PyMappingMethods reserved_mapping = {
    .mp_length = (lenfunc)reserved_length,
    .mp_subscript = (binaryfunc)reserved_subscript,
    .mp_ass_subscript = (objobjargproc)reserved_ass_subscript,
};

static PyBufferProcs reserved_buffer = {
    .bf_getbuffer = (getbufferproc)reserved_getbuffer,
    .bf_releasebuffer = (releasebufferproc)reserved_releasebuffer,
};

static PyTypeObject ReservedViewType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmbus.ReservedView",
    .tp_doc = "The value of a reserved record, in the ring: a writable buffer (like a memoryview of\n"
              "bytes) until the `with` block ends; then `metadata` says where it was published.",
    .tp_basicsize = sizeof(ReservedViewObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reserved_init,
    .tp_traverse = (traverseproc)reserved_traverse,
    .tp_clear = (inquiry)reserved_clear,
    .tp_dealloc = (destructor)reserved_dealloc,
    .tp_as_mapping = &reserved_mapping,
    .tp_as_buffer = &reserved_buffer,
    .tp_methods = reserved_methods,
    .tp_getset = reserved_getset,
};

/* ==== FastReservation: Producer.reserve's common case ==== */

enum { RESERVATION_NEW, RESERVATION_OPEN, RESERVATION_DELEGATED, RESERVATION_DONE };

typedef struct {
    PyObject_HEAD
    PyObject *producer;
    RouteObject *route;
    Py_ssize_t partition;
    Py_ssize_t nbytes;
    int state;
    sb_writer *writer;        /* while OPEN: the claim's writer ... */
    PyObject *owner;          /* ... and the Writer that owns its memory */
    ReservedViewObject *view;
    PyObject *general;        /* DELEGATED: the Python reservation doing the work */
    int64_t offset;
} FastReservationObject;

static PyTypeObject FastReservationType;

static int fast_reservation_traverse(FastReservationObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->producer);
    Py_VISIT(self->route);
    Py_VISIT(self->owner);
    Py_VISIT(self->view);
    Py_VISIT(self->general);
    return 0;
}

static int fast_reservation_clear(FastReservationObject *self)
{
    Py_CLEAR(self->producer);
    Py_CLEAR(self->route);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->view);
    Py_CLEAR(self->general);
    return 0;
}

static void fast_reservation_dealloc(FastReservationObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->state == RESERVATION_OPEN) {
        /* Entered and never left (__enter__ called by hand): abort rather than leave the
         * partition to wait for the unblocker. */
        self->writer->reserving_thread = 0;
        abort_reserved(self->writer);
        if (self->view)
            self->view->finished = 1;
    }
    fast_reservation_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *new_reserved_view(PyObject *keeper, char *at, Py_ssize_t length)
{
    ReservedViewObject *view = (ReservedViewObject *)ReservedViewType.tp_alloc(&ReservedViewType, 0);
    if (!view)
        return NULL;
    view->at = at;
    view->length = length;
    view->keeper = Py_NewRef(keeper);
    return (PyObject *)view;
}

static PyObject *fast_reservation_enter(FastReservationObject *self, PyObject *unused)
{
    if (self->state != RESERVATION_NEW) {
        PyErr_SetString(shmbus_error, "a reservation is entered once: call reserve() again for the next record");
        return NULL;
    }
    RouteObject *route = self->route;
    Py_ssize_t p = self->partition;
    sb_writer *writer = route->writers[p];   /* read again: the writer may have gone since reserve() */
    if (writer && !writer->reserved && route->owners[p] && route->keepers[p]) {
        char *at = NULL;
        int64_t offset = reserve_now(writer, self->nbytes, &at);
        if (offset >= 0) {
            PyObject *view = new_reserved_view(route->keepers[p], at, self->nbytes);
            if (!view) {
                abort_reserved(writer);
                return NULL;
            }
            writer->reserving_thread = PyThread_get_thread_ident();
            self->writer = writer;
            self->owner = Py_NewRef(route->owners[p]);
            self->view = (ReservedViewObject *)Py_NewRef(view);
            self->offset = offset;
            self->state = RESERVATION_OPEN;
            return view;
        }
    }
    /* Full, busy, deleted, moved, too large, a reserve already open: nothing was
     * claimed; the general path waits, retries or raises, as for send. */
    PyObject *general = PyObject_CallMethod(self->producer, "_reserve_general", "OnOn", route->topic, self->nbytes,
                                            Py_None, p);
    if (!general)
        return NULL;
    PyObject *view = PyObject_CallMethodNoArgs(general, str_enter);
    if (!view) {
        Py_DECREF(general);
        return NULL;
    }
    self->general = general;
    self->state = RESERVATION_DELEGATED;
    return view;
}

static PyObject *fast_reservation_exit(FastReservationObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "__exit__ takes (exc_type, exc, traceback)");
        return NULL;
    }
    if (self->state == RESERVATION_DELEGATED) {
        self->state = RESERVATION_DONE;
        return PyObject_CallMethodObjArgs(self->general, str_exit, args[0], args[1], args[2], NULL);
    }
    if (self->state != RESERVATION_OPEN) {
        PyErr_SetString(shmbus_error, "reservation exited without being entered");
        return NULL;
    }
    sb_writer *writer = self->writer;
    self->state = RESERVATION_DONE;
    self->view->finished = 1;
    writer->reserving_thread = 0;
    if (args[0] != Py_None) {
        abort_reserved(writer);   /* revoked meanwhile or not, it is not published: the block's error goes on */
        Py_RETURN_FALSE;
    }
    int rc = commit_reserved(writer);
    PyObject *number = PyTuple_GET_ITEM(self->route->partition_numbers, self->partition);
    if (rc < 0) {
        PyObject *rc_object = PyLong_FromLong(rc);
        if (!rc_object)
            return NULL;
        PyObject *raised = PyObject_CallMethodObjArgs(self->producer, str_commit_failed, (PyObject *)self->route,
                                                      number, rc_object, NULL);
        Py_DECREF(rc_object);
        Py_XDECREF(raised);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "Producer._commit_failed returned");
        return NULL;
    }
    PyObject *items[4] = {Py_NewRef(self->route->topic), Py_NewRef(number), PyLong_FromLongLong(self->offset),
                          PyLong_FromLongLong(writer->timestamp_ns)};
    PyObject *metadata = new_record(record_metadata_type, items, 4);
    if (!metadata)
        return NULL;
    Py_XSETREF(self->view->metadata, metadata);
    Py_RETURN_FALSE;
}

static PyMethodDef fast_reservation_methods[] = {
    {"__enter__", (PyCFunction)fast_reservation_enter, METH_NOARGS,
     "Claim the record's place in the ring: its ReservedView."},
    {"__exit__", (PyCFunction)(void (*)(void))fast_reservation_exit, METH_FASTCALL,
     "Publish the record, or abort it if the block raised."},
    {NULL},
};

static PyTypeObject FastReservationType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmbus._native._fastpath.FastReservation",
    .tp_doc = "What Producer.reserve returns in its common case: a context manager over a ReservedView.",
    .tp_basicsize = sizeof(FastReservationObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)fast_reservation_traverse,
    .tp_clear = (inquiry)fast_reservation_clear,
    .tp_dealloc = (destructor)fast_reservation_dealloc,
    .tp_methods = fast_reservation_methods,
};

/* reserve(topic, nbytes, key=None, partition=None, headers=None, timestamp_ns=None, timeout=None) */
static PyObject *producer_reserve(ProducerBaseObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    PyObject *partition = Py_None;
    if (nargs < 2 || nargs > 7 || !reserve_now)
        goto general;
    for (Py_ssize_t i = 2; i < nargs; i++)
        if (i != 3 && args[i] != Py_None)
            goto general;   /* a key, headers, a timestamp, a timeout */
    if (nargs > 3)
        partition = args[3];
    if (kwnames) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i), *arg = args[nargs + i];
            if (name == str_partition && nargs <= 3)
                partition = arg;
            else if (!((name == str_key || name == str_headers || name == str_timestamp_ns || name == str_timeout)
                       && arg == Py_None))
                goto general;
        }
    }
    PyObject *topic = args[0], *nbytes_object = args[1];
    if (!PyLong_CheckExact(nbytes_object))
        goto general;
    Py_ssize_t nbytes = PyLong_AsSsize_t(nbytes_object);
    if (nbytes < 0) {
        PyErr_Clear();
        goto general;
    }
    RouteObject *route;
    Py_ssize_t p;
    int sticky, found;
    found = find_route(self, topic, &route);
    if (found > 0)
        found = pick_partition(route, Py_None, partition, &p, &sticky);
    if (found < 0)
        return NULL;
    if (!found)
        goto general;
    if (!route->writers[p])
        goto general;
    if (sticky)
        route->sticky_left -= nbytes;
    FastReservationObject *reservation = PyObject_GC_New(FastReservationObject, &FastReservationType);
    if (!reservation)
        return NULL;
    reservation->producer = Py_NewRef((PyObject *)self);
    reservation->route = (RouteObject *)Py_NewRef((PyObject *)route);
    reservation->partition = p;
    reservation->nbytes = nbytes;
    reservation->state = RESERVATION_NEW;
    reservation->writer = NULL;
    reservation->owner = NULL;
    reservation->view = NULL;
    reservation->general = NULL;
    reservation->offset = -1;
    PyObject_GC_Track(reservation);
    return (PyObject *)reservation;
general:
    return call_general((PyObject *)self, str_reserve_general, args, nargs, kwnames);
}

/* ==== the module ==== */

/* bind(append_now, reserve_now, commit, abort, RecordMetadata, Message, ShmbusError):
 * the core's functions (their addresses) and the types the records and errors are. */
static PyObject *bind(PyObject *module, PyObject *args)
{
    PyObject *addresses[4], *error;
    PyTypeObject *metadata, *message;
    if (!PyArg_ParseTuple(args, "OOOOO!O!O:bind", &addresses[0], &addresses[1], &addresses[2], &addresses[3],
                          &PyType_Type, &metadata, &PyType_Type, &message, &error))
        return NULL;
    if (!PyType_IsSubtype(metadata, &PyTuple_Type) || !PyType_IsSubtype(message, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "RecordMetadata and Message must be tuple types");
        return NULL;
    }
    if (!PyExceptionClass_Check(error)) {
        PyErr_SetString(PyExc_TypeError, "ShmbusError must be an exception class");
        return NULL;
    }
    void *functions[4];
    for (int i = 0; i < 4; i++) {
        functions[i] = PyLong_AsVoidPtr(addresses[i]);
        if (!functions[i]) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "a NULL function");
            return NULL;
        }
    }
    append_now = (append_now_fn)functions[0];
    reserve_now = (reserve_now_fn)functions[1];
    commit_reserved = (end_reserve_fn)functions[2];
    abort_reserved = (end_reserve_fn)functions[3];
    Py_INCREF(metadata);
    Py_XSETREF(record_metadata_type, metadata);
    Py_INCREF(message);
    Py_XSETREF(message_type, message);
    Py_INCREF(error);
    Py_XSETREF(shmbus_error, error);
    Py_RETURN_NONE;
}

static PyObject *bind_linger(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "bind_linger takes the FutureRecordMetadata class");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(future_type, cls);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"bind_linger", bind_linger, METH_O,
     "bind_linger(FutureRecordMetadata)\n--\n\nThe future type ProducerBase.linger_send returns."},
    {"bind", bind, METH_VARARGS,
     "bind(append_now, reserve_now, commit, abort, RecordMetadata, Message, ShmbusError)\n--\n\n"
     "The core's sb_append_now, sb_reserve_now, sb_commit and sb_abort (addresses), the record types\n"
     "and the error class."},
    {"decode_plain", (PyCFunction)(void (*)(void))decode_plain, METH_FASTCALL,
     "decode_plain(messages, topic, partition, data, descriptors, n, first_offset)\n--\n\n"
     "Append n Messages described by plain (timestamp, value length) words, values back to back."},
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL,
     "decode(messages, topic, partition, data, descriptors, n, decode_headers)\n--\n\n"
     "Append n Messages described by SB_DESC_WORDS words each."},
    {NULL},
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmbus._native._fastpath",
    .m_doc = "The per-record paths in CPython's C API (see fastpath.c).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int intern(PyObject **slot, const char *text)
{
    return (*slot = PyUnicode_InternFromString(text)) ? 0 : -1;
}

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (intern(&str_key, "key") < 0 || intern(&str_partition, "partition") < 0
        || intern(&str_headers, "headers") < 0 || intern(&str_timestamp_ns, "timestamp_ns") < 0
        || intern(&str_timeout, "timeout") < 0 || intern(&str_send_general, "_send_general") < 0
        || intern(&str_raise_revoked, "_raise_revoked") < 0 || intern(&str_refill, "_refill") < 0
        || intern(&str_reserve_general, "_reserve_general") < 0 || intern(&str_commit_failed, "_commit_failed") < 0
        || intern(&str_enter, "__enter__") < 0 || intern(&str_exit, "__exit__") < 0
        || intern(&str_linger_general, "_linger_record") < 0 || intern(&str_lingering, "lingering") < 0
        || intern(&str_data, "data") < 0 || intern(&str_desc, "desc") < 0 || intern(&str_open, "open") < 0
        || intern(&str_limit, "limit") < 0 || intern(&str_lock, "lock") < 0 || intern(&str_acquire, "acquire") < 0
        || intern(&str_release, "release") < 0 || intern(&str_future_batch, "_batch") < 0
        || intern(&str_future_index, "_index") < 0)
        return NULL;
    if (!(empty_tuple = PyTuple_New(0)))
        return NULL;
    PyTypeObject *types[] = {&RouteType, &ProducerBaseType, &ConsumerBaseType, &ReservedViewType,
                             &FastReservationType};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *module = PyModule_Create(&fastpath_module);
    if (!module)
        return NULL;
    if (PyModule_AddObjectRef(module, "Route", (PyObject *)&RouteType) < 0
        || PyModule_AddObjectRef(module, "ProducerBase", (PyObject *)&ProducerBaseType) < 0
        || PyModule_AddObjectRef(module, "ConsumerBase", (PyObject *)&ConsumerBaseType) < 0
        || PyModule_AddObjectRef(module, "ReservedView", (PyObject *)&ReservedViewType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
