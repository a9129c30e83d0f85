/* route.c -- Route: a producer's fast view of one topic (see fastpath.h). */
#include "fastpath.h"

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

PyTypeObject RouteType = {
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

