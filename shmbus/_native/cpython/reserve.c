/* reserve.c -- Producer.reserve's common case: ReservedView and FastReservation (see fastpath.h). */
#include "fastpath.h"

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

PyTypeObject ReservedViewType = {
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

PyTypeObject FastReservationType = {
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
PyObject *producer_reserve(ProducerBaseObject *self, PyObject *const *args, Py_ssize_t nargs,
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
