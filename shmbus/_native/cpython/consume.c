/* consume.c -- ConsumerBase (iteration) and decode: Messages from a read (see fastpath.h). */
#include "fastpath.h"

static int check_bound(void)
{
    if (!append_now || !reserve_now || !record_metadata_type || !message_type) {
        PyErr_SetString(PyExc_RuntimeError, "shmbus._native._fastpath is not bound (import shmbus._backend)");
        return -1;
    }
    return 0;
}


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

PyTypeObject ConsumerBaseType = {
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

/* Append the Message of items (7 new references, stolen) to messages: 0, or -1 on error. */
static int append_message(PyObject *messages, PyObject **items)
{
    PyObject *message = new_record(message_type, items, 7);
    if (!message)
        return -1;
    int rc = PyList_Append(messages, message);
    Py_DECREF(message);
    return rc;
}

/* decode_plain(messages, topic, partition, data, descriptors, n, first_offset) */
PyObject *decode_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
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
        if (append_message(messages, items) < 0) {
            result = NULL;
            break;
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&desc);
    return Py_XNewRef(result);
}

/* decode(messages, topic, partition, data, descriptors, n, decode_headers) */
PyObject *decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
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
        if (append_message(messages, items) < 0) {
            result = NULL;
            break;
        }
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&desc);
    return Py_XNewRef(result);
}
