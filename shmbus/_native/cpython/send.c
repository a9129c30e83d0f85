/* send.c -- ProducerBase: send and linger_send, the common records in C (see fastpath.h). */
#include "fastpath.h"

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
PyObject *call_general(PyObject *self, PyObject *name, PyObject *const *args, Py_ssize_t nargs,
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
int find_route(ProducerBaseObject *self, PyObject *topic, RouteObject **route)
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
int pick_partition(RouteObject *route, PyObject *key, PyObject *partition, Py_ssize_t *p, int *sticky)
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

/* The common record's route and partition, as send and linger_send take it: 1 (key,
 * route, partition and sticky set), 0 when the general path must take the call, -1 on
 * error. */
static int common_record(ProducerBaseObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                         PyObject **key, RouteObject **route, Py_ssize_t *p, int *sticky)
{
    PyObject *partition;
    if (!common_send_args(args, nargs, kwnames, key, &partition) || !PyBytes_CheckExact(args[1]))
        return 0;
    int found = find_route(self, args[0], route);
    return found > 0 ? pick_partition(*route, *key, partition, p, sticky) : found;
}

/* send(topic, value, key=None, headers=None, partition=None, timestamp_ns=None, timeout=None) */
static PyObject *producer_send(ProducerBaseObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    PyObject *key;
    RouteObject *route;
    Py_ssize_t p;
    int sticky, found = append_now ? common_record(self, args, nargs, kwnames, &key, &route, &p, &sticky) : 0;
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
    PyObject *key;
    RouteObject *route;
    Py_ssize_t p;
    int sticky, found = future_type ? common_record(self, args, nargs, kwnames, &key, &route, &p, &sticky) : 0;
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
    int locked = 0, to_general = 0;
    if (batch == Py_None)
        goto batch_general;
    if (!(lock = PyObject_GetAttr(batch, str_lock)))
        goto finish;
    /* Another thread may be adding to this batch, or closing it: take its lock, or leave it to Python. */
    if (!(got = PyObject_CallMethodOneArg(lock, str_acquire, Py_False)))
        goto finish;
    locked = got == Py_True;
    if (!locked)
        goto batch_general;
    if (!(open = PyObject_GetAttr(batch, str_open)) || !(data = PyObject_GetAttr(batch, str_data))
        || !(desc = PyObject_GetAttr(batch, str_desc)) || !(limit = PyObject_GetAttr(batch, str_limit)))
        goto finish;
    if (open != Py_True || !PyByteArray_CheckExact(data) || !PyByteArray_CheckExact(desc) || !PyLong_CheckExact(limit))
        goto batch_general;
    Py_ssize_t at = PyByteArray_GET_SIZE(data), record = (key_len > 0 ? key_len : 0) + value_len;
    Py_ssize_t room = PyLong_AsSsize_t(limit);
    if (room == -1 && PyErr_Occurred())
        goto finish;
    if (at + record >= room)
        goto batch_general;   /* it fills the batch: Python closes and sends it */
    char *bytes;
    if (grow_bytearray(data, record, &bytes) < 0)
        goto finish;
    if (key_len > 0)
        memcpy(bytes, PyBytes_AS_STRING(key), (size_t)key_len);
    memcpy(bytes + (key_len > 0 ? key_len : 0), PyBytes_AS_STRING(value), (size_t)value_len);
    Py_ssize_t index = PyByteArray_GET_SIZE(desc) / (Py_ssize_t)(SB_RECORD_WORDS * sizeof(int64_t));
    char *words_at;
    if (grow_bytearray(desc, SB_RECORD_WORDS * sizeof(int64_t), &words_at) < 0)
        goto finish;
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
        goto finish;
    /* FutureRecordMetadata(batch, index) without running its __init__ (a Python call,
     * a fifth of this path): a bare instance with its two slots set. */
    PyTypeObject *type = (PyTypeObject *)future_type;
    result = type->tp_new(type, empty_tuple, NULL);
    if (result && (PyObject_SetAttr(result, str_future_batch, batch) < 0
                   || PyObject_SetAttr(result, str_future_index, number) < 0))
        Py_CLEAR(result);
    Py_DECREF(number);
    goto finish;
batch_general:
    to_general = 1;
finish:   /* the lock released, the references dropped */
    if (locked) {
        /* An error above is the one to raise; release's own only when there is none. */
        PyObject *err_type, *err_value, *err_tb;
        PyErr_Fetch(&err_type, &err_value, &err_tb);
        PyObject *released = PyObject_CallMethodNoArgs(lock, str_release);
        if (released)
            Py_DECREF(released);
        else if (!err_type) {
            Py_CLEAR(result);
            to_general = 0;
        }
        if (err_type)
            PyErr_Restore(err_type, err_value, err_tb);
    }
    Py_XDECREF(got);
    Py_XDECREF(lock);
    Py_XDECREF(open);
    Py_XDECREF(data);
    Py_XDECREF(desc);
    Py_XDECREF(limit);
    Py_DECREF(batch);
    if (!to_general)
        return result;
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

PyTypeObject ProducerBaseType = {
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
