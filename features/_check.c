/* features._check: the common case of features.records.parse_record, compiled.

A Parser is built once per view (features.records.record_parser) and, for one Kafka record, does what
parse_record's fast tests accept: bytes of at most MAX_RECORD_BYTES that orjson decodes to a dict whose entity
id is a str equal to the key, whose timestamp is an int epoch ms in range, and whose fields pass the same tests
as the generated checker's fast path (a float in range; an int up to 2**53 in range for a float field, made a
float; an int in range for an int field; a str for a str field; absent or null optional fields left out). It
returns the Event. Anything else (every error, every unusual value) goes to the Python parse_record it was
given, which decides, with the same message as before: the C path only ever accepts what Python accepts, with
the same Event (tests/features/test_records_fast_path.py; a batch: tests/features/test_batch_parse.py).

    parse(key, value) -> Event
    parse_batch(messages, future_ms) -> (events by partition, first offsets, last offsets, odd indices)

parse_batch runs a batch of Kafka messages (anything with key(), value(), partition(), offset()) through the same
common case without a Python step per record: the events it accepts, in message order per partition, with their
offset and partition set; the first and last offset of every partition seen (every message counts); and the
indices of every other message (no key, an event time past future_ms, anything the common case leaves to
Python), which the caller runs through parse as before.
*/
#include "_exact.h"
#include <float.h>
#include <limits.h>


enum { K_FLOAT, K_INT, K_STR };

typedef struct {
    PyObject *name;
    int kind, required;
    double lo, hi; /* -DBL_MAX / DBL_MAX when unbounded */
} Field;

typedef struct {
    PyObject_HEAD
    PyObject *entity_key, *ts_field, *event_type, *loads, *slow;
    long long max_ts;
    Py_ssize_t max_bytes, nknown;
    int reject_unknown, nfields;
    Field *fields;
} Parser;

static void Parser_dealloc(Parser *p) {
    if (p->fields) {
        for (int i = 0; i < p->nfields; i++) Py_XDECREF(p->fields[i].name);
        PyMem_Free(p->fields);
    }
    Py_XDECREF(p->entity_key); Py_XDECREF(p->ts_field); Py_XDECREF(p->event_type);
    Py_XDECREF(p->loads); Py_XDECREF(p->slow);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

/* Parser(entity_key, ts_field, max_ts, max_bytes, reject_unknown, fields, event_type, loads, slow)
   fields: ((name, kind, required, lo, hi), ...), kind 0 float / 1 int / 2 str, lo/hi floats */
static int Parser_init(Parser *p, PyObject *args, PyObject *kwds) {
    PyObject *ek, *tsf, *fields, *event_type, *loads, *slow;
    long long max_ts;
    Py_ssize_t max_bytes;
    int reject;
    if (!PyArg_ParseTuple(args, "UULnpOOOO", &ek, &tsf, &max_ts, &max_bytes, &reject, &fields, &event_type,
                          &loads, &slow))
        return -1;
    p->entity_key = interned(ek);
    p->ts_field = interned(tsf);
    p->max_ts = max_ts;
    p->max_bytes = max_bytes;
    p->reject_unknown = reject;
    Py_INCREF(event_type); p->event_type = event_type;
    Py_INCREF(loads); p->loads = loads;
    Py_INCREF(slow); p->slow = slow;
    PyObject *ff = PySequence_Fast(fields, "fields");
    if (!ff) return -1;
    p->nfields = (int)PySequence_Fast_GET_SIZE(ff);
    p->nknown = p->nfields + 2;
    p->fields = PyMem_Calloc(p->nfields + 1, sizeof(Field));
    for (int i = 0; i < p->nfields; i++) {
        PyObject *name;
        Field *f = &p->fields[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(ff, i), "Uipdd", &name, &f->kind, &f->required, &f->lo,
                              &f->hi)) {
            Py_DECREF(ff);
            return -1;
        }
        if (f->kind < K_FLOAT || f->kind > K_STR) {
            PyErr_SetString(PyExc_ValueError, "field kind");
            Py_DECREF(ff);
            return -1;
        }
        f->name = interned(name);
    }
    Py_DECREF(ff);
    return 0;
}

/* the fast test of one field: 1 accepted (*out: a new reference, or NULL for a left-out optional), 0 not */
static int check_field(Field *f, PyObject *v, PyObject **out) {
    *out = NULL;
    if (v == NULL || v == Py_None) return !f->required;
    if (f->kind == K_STR) {
        if (!PyUnicode_CheckExact(v)) return 0;
        Py_INCREF(v);
        *out = v;
        return 1;
    }
    if (PyFloat_CheckExact(v)) {
        if (f->kind != K_FLOAT) return 0;
        double x = PyFloat_AS_DOUBLE(v);
        if (!(f->lo <= x && x <= f->hi)) return 0; /* a NaN fails too */
        Py_INCREF(v);
        *out = v;
        return 1;
    }
    if (PyLong_CheckExact(v)) {
        double x;
        if (!exact_int_as_double(v, &x)) return 0; /* Python decides: exact comparisons of big ints */
        if (!(f->lo <= x && x <= f->hi)) return 0;
        if (f->kind == K_INT) {
            Py_INCREF(v);
            *out = v;
        } else {
            *out = PyFloat_FromDouble(x);
            if (!*out) { PyErr_Clear(); return 0; }
        }
        return 1;
    }
    return 0;
}

static PyObject *fast_event(Parser *p, PyObject *key, PyObject *obj, long long future) {
    /* the Event for obj, or NULL (no exception set) when Python must decide (an event time past future too) */
    PyObject *entity = PyDict_GetItemWithError(obj, p->entity_key);
    if (!entity || !PyUnicode_CheckExact(entity)) return NULL;
    if (key != Py_None) {
        Py_ssize_t size;
        const char *utf8 = PyUnicode_AsUTF8AndSize(entity, &size);
        if (!utf8 || !PyBytes_CheckExact(key) || PyBytes_GET_SIZE(key) != size
            || memcmp(PyBytes_AS_STRING(key), utf8, size) != 0)
            return NULL;
    }
    PyObject *ts = PyDict_GetItemWithError(obj, p->ts_field);
    if (!ts || !PyLong_CheckExact(ts)) return NULL;
    int overflow = 0;
    long long t = PyLong_AsLongLongAndOverflow(ts, &overflow);
    if (overflow || (t == -1 && PyErr_Occurred()) || t < 0 || t >= p->max_ts || t > future) return NULL;
    PyObject *values = PyDict_New();
    if (!values) return NULL;
    for (int i = 0; i < p->nfields; i++) {
        Field *f = &p->fields[i];
        PyObject *v = PyDict_GetItemWithError(obj, f->name), *out;
        if (!v && PyErr_Occurred()) { Py_DECREF(values); return NULL; }
        if (!check_field(f, v, &out)) { Py_DECREF(values); return NULL; }
        if (out) {
            int rc = PyDict_SetItem(values, f->name, out);
            Py_DECREF(out);
            if (rc < 0) { Py_DECREF(values); return NULL; }
        }
    }
    if (p->reject_unknown && PyDict_GET_SIZE(obj) > PyDict_GET_SIZE(values) + 2) {
        Py_DECREF(values); /* an unknown field, or a null optional one: Python looks */
        return NULL;
    }
    PyObject *argv[3] = {entity, ts, values};
    PyObject *event = PyObject_Vectorcall(p->event_type, argv, 3, NULL);
    Py_DECREF(values);
    return event;
}

static PyObject *Parser_parse(Parser *p, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "parse(key, value)"); return NULL; }
    PyObject *value = args[1];
    if (PyBytes_CheckExact(value) && PyBytes_GET_SIZE(value) <= p->max_bytes) {
        PyObject *obj = PyObject_Vectorcall(p->loads, &args[1], 1, NULL);
        if (obj && PyDict_CheckExact(obj)) {
            PyObject *event = fast_event(p, args[0], obj, LLONG_MAX);
            Py_DECREF(obj);
            if (event) return event;
        } else {
            Py_XDECREF(obj);
        }
        PyErr_Clear();
    }
    return PyObject_Vectorcall(p->slow, args, 2, NULL);
}

static PyObject *s_key, *s_value, *s_partition, *s_offset; /* interned method (and Event attribute) names */

/* dict[partition] = offset when there is none yet or when `more` says the new one is further (last) / earlier */
static int keep_offset(PyObject *dict, PyObject *part, PyObject *off, long long o, int larger) {
    PyObject *cur = PyDict_GetItemWithError(dict, part);
    if (!cur && PyErr_Occurred()) return -1;
    if (cur) {
        long long c = PyLong_AsLongLong(cur);
        if (c == -1 && PyErr_Occurred()) return -1;
        if (larger ? o <= c : o >= c) return 0;
    }
    return PyDict_SetItem(dict, part, off);
}

/* one message: its event appended to its partition's list (1), or left to Python (0); -1 on an error */
static int batch_one(Parser *p, PyObject *m, long long future, PyObject *by_part, PyObject *first, PyObject *last) {
    PyObject *part = PyObject_CallMethodNoArgs(m, s_partition);
    if (!part) return -1;
    PyObject *off = PyObject_CallMethodNoArgs(m, s_offset);
    if (!off) { Py_DECREF(part); return -1; }
    int rc = -1;
    PyObject *key = NULL, *value = NULL, *event = NULL;
    if (!PyLong_CheckExact(part) || !PyLong_CheckExact(off)) {
        PyErr_SetString(PyExc_TypeError, "parse_batch: a message without an int partition and offset");
        goto done;
    }
    long long o = PyLong_AsLongLong(off);
    if (o == -1 && PyErr_Occurred()) goto done;
    if (keep_offset(last, part, off, o, 1) < 0 || keep_offset(first, part, off, o, 0) < 0) goto done;
    if (!(key = PyObject_CallMethodNoArgs(m, s_key)) || !(value = PyObject_CallMethodNoArgs(m, s_value))) goto done;
    rc = 0;
    if (key == Py_None || !PyBytes_CheckExact(value) || PyBytes_GET_SIZE(value) > p->max_bytes) goto done;
    PyObject *obj = PyObject_Vectorcall(p->loads, &value, 1, NULL);
    if (obj && PyDict_CheckExact(obj)) event = fast_event(p, key, obj, future);
    Py_XDECREF(obj);
    if (!event) { PyErr_Clear(); goto done; }
    rc = -1;
    if (PyObject_SetAttr(event, s_offset, off) < 0 || PyObject_SetAttr(event, s_partition, part) < 0) goto done;
    PyObject *events = PyDict_GetItemWithError(by_part, part);
    if (!events) {
        if (PyErr_Occurred() || !(events = PyList_New(0))) goto done;
        int set = PyDict_SetItem(by_part, part, events);
        Py_DECREF(events); /* the dict holds it */
        if (set < 0) goto done;
    }
    rc = PyList_Append(events, event) < 0 ? -1 : 1;
done:
    Py_DECREF(part); Py_DECREF(off);
    Py_XDECREF(key); Py_XDECREF(value); Py_XDECREF(event);
    return rc;
}

static PyObject *Parser_parse_batch(Parser *p, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "parse_batch(messages, future_ms)"); return NULL; }
    long long future = PyLong_AsLongLong(args[1]);
    if (future == -1 && PyErr_Occurred()) return NULL;
    PyObject *seq = PySequence_Fast(args[0], "messages: a sequence");
    if (!seq) return NULL;
    PyObject *by_part = PyDict_New(), *first = PyDict_New(), *last = PyDict_New(), *odd = PyList_New(0);
    PyObject *out = NULL;
    if (!by_part || !first || !last || !odd) goto fail;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        int rc = batch_one(p, PySequence_Fast_GET_ITEM(seq, i), future, by_part, first, last);
        if (rc < 0) goto fail;
        if (rc == 0) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (!index || PyList_Append(odd, index) < 0) { Py_XDECREF(index); goto fail; }
            Py_DECREF(index);
        }
    }
    out = PyTuple_Pack(4, by_part, first, last, odd);
fail:
    Py_DECREF(seq);
    Py_XDECREF(by_part); Py_XDECREF(first); Py_XDECREF(last); Py_XDECREF(odd);
    return out;
}

static PyMethodDef Parser_methods[] = {
    {"parse_batch", (PyCFunction)(void (*)(void))Parser_parse_batch, METH_FASTCALL,
     "parse_batch(messages, future_ms) -> (events by partition, first offsets, last offsets, odd indices)"},
    {"parse", (PyCFunction)(void (*)(void))Parser_parse, METH_FASTCALL,
     "parse(key, value) -> Event: features.records.parse_record's common case, compiled"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ParserType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "features._check.Parser",
    .tp_basicsize = sizeof(Parser),
    .tp_dealloc = (destructor)Parser_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A view's record parser: the common case in C, everything else by parse_record (features.records).",
    .tp_methods = Parser_methods,
    .tp_init = (initproc)Parser_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef check_module = {
    PyModuleDef_HEAD_INIT, "features._check", "The common case of parse_record, compiled (features.records).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__check(void) {
    if (!(s_key = PyUnicode_InternFromString("key")) || !(s_value = PyUnicode_InternFromString("value"))
        || !(s_partition = PyUnicode_InternFromString("partition"))
        || !(s_offset = PyUnicode_InternFromString("offset")))
        return NULL;
    if (PyType_Ready(&ParserType) < 0) return NULL;
    PyObject *m = PyModule_Create(&check_module);
    if (!m) return NULL;
    Py_INCREF(&ParserType);
    if (PyModule_AddObject(m, "Parser", (PyObject *)&ParserType) < 0) {
        Py_DECREF(&ParserType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
