/* module.c -- the _fastpath module: bind() and the names its files look up (see fastpath.h). */
#include "fastpath.h"

append_now_fn append_now;            /* sb_append_now, from cffi */
reserve_now_fn reserve_now;          /* sb_reserve_now */
end_reserve_fn commit_reserved;      /* sb_commit */
end_reserve_fn abort_reserved;       /* sb_abort */
PyObject *shmbus_error;              /* shmbus.ShmbusError */
PyTypeObject *record_metadata_type;  /* shmbus.RecordMetadata */
PyTypeObject *message_type;          /* shmbus.Message */
PyObject *empty_tuple;
PyObject *str_key, *str_partition, *str_headers, *str_timestamp_ns, *str_timeout;
PyObject *str_send_general, *str_raise_revoked, *str_refill, *str_reserve_general, *str_commit_failed;
PyObject *str_enter, *str_exit;
/* Lingering producers (_linger.py): the future type, and the names linger_send reads. */
PyObject *future_type;
PyObject *str_future_batch, *str_future_index;
PyObject *str_linger_general, *str_lingering, *str_data, *str_desc, *str_open, *str_limit, *str_lock,
    *str_acquire, *str_release;


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
