/* features._save: the wire bytes of one save_state.lua call (features.save_wire), for the common case.

   pack_save(sha, offset_key, head, state_prefix, states, latest_prefix, latest, names, latest_head[, mark_saved])
       -> bytes | None

   The RESP array of EVALSHA sha numkeys KEYS... ARGV... exactly as hiredis packs what features.save_wire.save_call
   returns: the offset key and ``head`` (the four offset/TTL arguments) first; per entity state with changes, its
   key (state_prefix + the id's UTF-8), its counts, its dirty buckets (sorted; field = the bucket start in decimal,
   value = b"B", the row width as a little-endian uint16, the row's doubles) and its expired buckets (sorted); per
   latest vector, its key (latest_prefix + id), "-1", "0" and the LatestCodec value (latest_head, as_of as int64,
   the vector's doubles in ``names`` order). None, before anything is returned, for what only Python writes: a
   state with distinct-value sets, a vector that lacks a feature, has another or holds a non-float, anything not of
   the expected types, a big-endian machine. ``mark_saved`` true: once the bytes are made (not when None is
   returned), every state's dirty and expired marks are cleared (EntityState.mark_saved: _dirty = _deleted = None),
   in C, as a started save marks its states (a Python loop over 50,000 states cost ~0.9 us each, mostly cache
   misses). */
#include "_exact.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *p;
    Py_ssize_t len, cap;
    Py_ssize_t items; /* RESP bulk strings written */
} Buf;

static int reserve(Buf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) { PyErr_NoMemory(); return -1; }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* the decimal form of v at out (at least 21 bytes); its length (sprintf's "%lld", without its cost) */
static int decimal(char *out, long long v) {
    char tmp[24];
    int n = 0, neg = v < 0;
    unsigned long long u = neg ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    int len = 0;
    if (neg) out[len++] = '-';
    while (n) out[len++] = tmp[--n];
    return len;
}

/* one bulk string: $<n1 + n2>\r\n s1 s2 \r\n */
static int bulk2(Buf *b, const char *s1, Py_ssize_t n1, const char *s2, Py_ssize_t n2) {
    if (reserve(b, n1 + n2 + 32) < 0) return -1;
    b->p[b->len++] = '$';
    b->len += decimal(b->p + b->len, n1 + n2);
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
    if (n1) memcpy(b->p + b->len, s1, n1);
    b->len += n1;
    if (n2) memcpy(b->p + b->len, s2, n2);
    b->len += n2;
    b->p[b->len++] = '\r';
    b->p[b->len++] = '\n';
    b->items++;
    return 0;
}

static int bulk_ll(Buf *b, long long v) {
    char digits[32];
    return bulk2(b, digits, decimal(digits, v), NULL, 0);
}

/* 1 and the bytes of a bytes or str argument, or of an int's decimal form (in ``digits``); 0 for anything else */
static int arg_bytes(PyObject *obj, const char **s, Py_ssize_t *n, char *digits) {
    if (PyBytes_CheckExact(obj)) {
        *s = PyBytes_AS_STRING(obj);
        *n = PyBytes_GET_SIZE(obj);
        return 1;
    }
    if (PyUnicode_CheckExact(obj)) {
        *s = PyUnicode_AsUTF8AndSize(obj, n);
        if (!*s) { PyErr_Clear(); return 0; }
        return 1;
    }
    if (PyLong_CheckExact(obj)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) { PyErr_Clear(); return 0; }
        *n = decimal(digits, v);
        *s = digits;
        return 1;
    }
    return 0;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* the ints of a set (or None: none) into a new sorted array; 1, 0 when not a set of exact ints, -1 on error */
static int sorted_ints(PyObject *set, long long **out, Py_ssize_t *n) {
    *out = NULL;
    *n = 0;
    if (set == Py_None) return 1;
    if (!PySet_CheckExact(set)) return 0;
    Py_ssize_t size = PySet_GET_SIZE(set);
    long long *xs = PyMem_Malloc((size + 1) * sizeof(long long));
    if (!xs) { PyErr_NoMemory(); return -1; }
    Py_ssize_t pos = 0, k = 0;
    PyObject *item;
    Py_hash_t hash;
    while (_PySet_NextEntry(set, &pos, &item, &hash)) {
        int overflow = 0;
        long long v = PyLong_CheckExact(item) ? PyLong_AsLongLongAndOverflow(item, &overflow) : 0;
        if (!PyLong_CheckExact(item) || overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            PyMem_Free(xs);
            return 0;
        }
        xs[k++] = v;
    }
    qsort(xs, k, sizeof(long long), cmp_ll);
    *out = xs;
    *n = k;
    return 1;
}

/* Python's bisect_left(O[:n], x) */
static Py_ssize_t bisect_left(const long long *O, Py_ssize_t n, long long x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (O[mid] < x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static PyObject *s_order, *s_data, *s_w, *s_dirty, *s_deleted, *s_sets;

/* one entity state's KEYS and ARGV entries: 1 written (or nothing to write), 0 for Python, -1 on error */
static int put_state(Buf *keys, Buf *args, PyObject *prefix, PyObject *entity, PyObject *state) {
    PyObject *order = NULL, *data = NULL, *w = NULL, *dirty = NULL, *deleted = NULL, *sets = NULL;
    long long *dirty_b = NULL, *deleted_b = NULL;
    Py_ssize_t *rows = NULL;
    Py_ssize_t ndirty = 0, ndeleted = 0;
    Py_buffer ov = {0}, dv = {0};
    int have_o = 0, have_d = 0, rc = -1;
    Py_ssize_t id_len;
    const char *id = PyUnicode_CheckExact(entity) ? PyUnicode_AsUTF8AndSize(entity, &id_len) : NULL;
    if (!id) { PyErr_Clear(); return 0; }
    if (!(order = PyObject_GetAttr(state, s_order)) || !(data = PyObject_GetAttr(state, s_data))
        || !(w = PyObject_GetAttr(state, s_w)) || !(dirty = PyObject_GetAttr(state, s_dirty))
        || !(deleted = PyObject_GetAttr(state, s_deleted)) || !(sets = PyObject_GetAttr(state, s_sets)))
        goto done;
    rc = 0;
    if (sets != Py_None && (!PyDict_CheckExact(sets) || PyDict_GET_SIZE(sets) > 0)) goto done; /* distinct values */
    if (!PyLong_CheckExact(w)) goto done;
    Py_ssize_t width = PyLong_AsSsize_t(w);
    if (width < 0 || width > 0xFFFF) { PyErr_Clear(); goto done; }
    int ok = sorted_ints(dirty, &dirty_b, &ndirty);
    if (ok <= 0) { rc = ok; goto done; }
    ok = sorted_ints(deleted, &deleted_b, &ndeleted);
    if (ok <= 0) { rc = ok; goto done; }
    rc = 1;
    if (ndirty == 0 && ndeleted == 0) goto done; /* nothing changed: no key, as save_call */
    rc = 0; /* not arrays of 'q' and 'd' (as EntityState keeps them): Python */
    if (get_buffer(order, &ov, 'q', 0, 0) < 0) { PyErr_Clear(); goto done; }
    have_o = 1;
    if (get_buffer(data, &dv, 'd', 0, 0) < 0) { PyErr_Clear(); goto done; }
    have_d = 1;
    rc = -1;
    const long long *O = ov.buf;
    Py_ssize_t n = ov.len / 8, ndata = dv.len / 8;
    rows = PyMem_Malloc((ndirty + 1) * sizeof(Py_ssize_t));
    if (!rows) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t j = 0; j < ndirty; j++) { /* each bucket's row (bisect_left), whole: else Python slices it */
        rows[j] = bisect_left(O, n, dirty_b[j]);
        if ((rows[j] + 1) * width > ndata) { rc = 0; goto done; }
    }
    if (bulk2(keys, PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix), id, id_len) < 0
        || bulk_ll(args, ndirty) < 0 || bulk_ll(args, ndeleted) < 0)
        goto done;
    char *row = PyMem_Malloc(3 + 8 * width + 1);
    if (!row) { PyErr_NoMemory(); goto done; }
    row[0] = 'B';
    row[1] = (char)(width & 0xFF);
    row[2] = (char)((width >> 8) & 0xFF);
    for (Py_ssize_t j = 0; j < ndirty; j++) {
        memcpy(row + 3, (const double *)dv.buf + rows[j] * width, 8 * width);
        if (bulk_ll(args, dirty_b[j]) < 0 || bulk2(args, row, 3 + 8 * width, NULL, 0) < 0) {
            PyMem_Free(row);
            goto done;
        }
    }
    PyMem_Free(row);
    for (Py_ssize_t j = 0; j < ndeleted; j++)
        if (bulk_ll(args, deleted_b[j]) < 0) goto done;
    rc = 1;
done:
    if (have_o) PyBuffer_Release(&ov);
    if (have_d) PyBuffer_Release(&dv);
    PyMem_Free(dirty_b);
    PyMem_Free(deleted_b);
    PyMem_Free(rows);
    Py_XDECREF(order); Py_XDECREF(data); Py_XDECREF(w); Py_XDECREF(dirty); Py_XDECREF(deleted); Py_XDECREF(sets);
    return rc;
}

/* one latest vector's KEYS and ARGV entries: 1 written, 0 for Python, -1 on error */
static int put_latest(Buf *keys, Buf *args, PyObject *prefix, PyObject *entity, PyObject *value, PyObject *names,
                      PyObject *head, double *xs) {
    Py_ssize_t id_len, nf = PyTuple_GET_SIZE(names);
    const char *id = PyUnicode_CheckExact(entity) ? PyUnicode_AsUTF8AndSize(entity, &id_len) : NULL;
    if (!id) { PyErr_Clear(); return 0; }
    if (!PyTuple_CheckExact(value) || PyTuple_GET_SIZE(value) != 2) return 0;
    PyObject *as_of = PyTuple_GET_ITEM(value, 0), *vector = PyTuple_GET_ITEM(value, 1);
    if (!PyLong_CheckExact(as_of) || !PyDict_CheckExact(vector) || PyDict_GET_SIZE(vector) != nf) return 0;
    int overflow = 0;
    long long ts = PyLong_AsLongLongAndOverflow(as_of, &overflow);
    if (overflow || (ts == -1 && PyErr_Occurred())) { PyErr_Clear(); return 0; }
    for (Py_ssize_t i = 0; i < nf; i++) { /* every name found, as many as the vector holds: the same keys */
        PyObject *x = PyDict_GetItemWithError(vector, PyTuple_GET_ITEM(names, i));
        if (!x) { if (PyErr_Occurred()) return -1; return 0; }
        if (!PyFloat_CheckExact(x)) return 0;
        xs[i] = PyFloat_AS_DOUBLE(x);
    }
    Py_ssize_t hn = PyBytes_GET_SIZE(head), size = hn + 8 + 8 * nf;
    char *val = PyMem_Malloc(size + 1);
    if (!val) { PyErr_NoMemory(); return -1; }
    memcpy(val, PyBytes_AS_STRING(head), hn);
    memcpy(val + hn, &ts, 8);
    memcpy(val + hn + 8, xs, 8 * nf);
    int bad = bulk2(keys, PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix), id, id_len) < 0
              || bulk2(args, "-1", 2, NULL, 0) < 0 || bulk2(args, "0", 1, NULL, 0) < 0
              || bulk2(args, val, size, NULL, 0) < 0;
    PyMem_Free(val);
    return bad ? -1 : 1;
}

static PyObject *pack_save(PyObject *self, PyObject *const *a, Py_ssize_t nargs) {
    if (nargs != 9 && nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "pack_save(sha, offset_key, head, state_prefix, states, latest_prefix, "
                                         "latest, names, latest_head[, mark_saved])");
        return NULL;
    }
    int mark_saved = nargs == 10 ? PyObject_IsTrue(a[9]) : 0;
    if (mark_saved < 0) return NULL;
    PyObject *sha = a[0], *offset_key = a[1], *head = a[2], *state_prefix = a[3], *states = a[4];
    PyObject *latest_prefix = a[5], *latest = a[6], *names = a[7], *latest_head = a[8];
#if PY_BIG_ENDIAN
    Py_RETURN_NONE; /* the rows and vectors are written little-endian: Python byteswaps them */
#endif
    if (!PyBytes_CheckExact(offset_key) || !PyTuple_CheckExact(head) || !PyBytes_CheckExact(state_prefix)
        || !PyDict_CheckExact(states) || !PyBytes_CheckExact(latest_prefix)
        || (latest != Py_None && !PyDict_CheckExact(latest)) || !PyTuple_CheckExact(names)
        || !PyBytes_CheckExact(latest_head))
        Py_RETURN_NONE;
    Buf keys = {0}, args = {0}, out = {0};
    PyObject *result = NULL;
    double *xs = PyMem_Malloc((PyTuple_GET_SIZE(names) + 1) * sizeof(double));
    if (!xs) return PyErr_NoMemory();
    char digits[32];
    const char *s;
    Py_ssize_t n;
    int rc = 1;
    Py_ssize_t entities = PyDict_GET_SIZE(states) + (latest == Py_None ? 0 : PyDict_GET_SIZE(latest));
    if (reserve(&keys, entities * (PyBytes_GET_SIZE(state_prefix) + 32) + 256) < 0
        || reserve(&args, entities * (8 * PyTuple_GET_SIZE(names) + 256) + 256) < 0)
        goto fail;
    if (bulk2(&keys, PyBytes_AS_STRING(offset_key), PyBytes_GET_SIZE(offset_key), NULL, 0) < 0) goto fail;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(head); i++) {
        if (!arg_bytes(PyTuple_GET_ITEM(head, i), &s, &n, digits)) { rc = 0; goto done; }
        if (bulk2(&args, s, n, NULL, 0) < 0) goto fail;
    }
    Py_ssize_t pos = 0;
    PyObject *entity, *value;
    while (PyDict_Next(states, &pos, &entity, &value)) {
        rc = put_state(&keys, &args, state_prefix, entity, value);
        if (rc < 0) goto fail;
        if (rc == 0) goto done;
    }
    pos = 0;
    while (latest != Py_None && PyDict_Next(latest, &pos, &entity, &value)) {
        rc = put_latest(&keys, &args, latest_prefix, entity, value, names, latest_head, xs);
        if (rc < 0) goto fail;
        if (rc == 0) goto done;
    }
    /* *<items>\r\n EVALSHA sha numkeys, then the keys, then the args: one bytes object, written in place */
    if (!arg_bytes(sha, &s, &n, digits)) { rc = 0; goto done; }
    if (reserve(&out, 64 + n) < 0) goto fail;
    out.p[out.len++] = '*';
    out.len += decimal(out.p + out.len, 3 + keys.items + args.items);
    out.p[out.len++] = '\r';
    out.p[out.len++] = '\n';
    if (bulk2(&out, "EVALSHA", 7, NULL, 0) < 0 || bulk2(&out, s, n, NULL, 0) < 0 || bulk_ll(&out, keys.items) < 0)
        goto fail;
    result = PyBytes_FromStringAndSize(NULL, out.len + keys.len + args.len);
    if (!result) goto fail;
    char *w = PyBytes_AS_STRING(result);
    memcpy(w, out.p, out.len);
    memcpy(w + out.len, keys.p, keys.len);
    memcpy(w + out.len + keys.len, args.p, args.len);
    pos = 0;
    while (mark_saved && PyDict_Next(states, &pos, &entity, &value)) {
        if (PyObject_SetAttr(value, s_dirty, Py_None) < 0 || PyObject_SetAttr(value, s_deleted, Py_None) < 0) {
            Py_CLEAR(result);
            goto fail;
        }
    }
    goto free;
done:
    if (rc == 0) { result = Py_None; Py_INCREF(result); }
    goto free;
fail:
    result = NULL;
free:
    PyMem_Free(keys.p); PyMem_Free(args.p); PyMem_Free(out.p); PyMem_Free(xs);
    return result;
}

static PyMethodDef methods[] = {
    {"pack_save", (PyCFunction)(void (*)(void))pack_save, METH_FASTCALL,
     "pack_save(sha, offset_key, head, state_prefix, states, latest_prefix, latest, names, latest_head[, mark_saved])"
     " -> bytes | None: the wire bytes of one save_state.lua call, or None for what only Python writes; mark_saved: "
     "the states' marks cleared once the bytes are made"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "features._save", NULL, -1, methods};

PyMODINIT_FUNC PyInit__save(void) {
    if (!(s_order = PyUnicode_InternFromString("_order")) || !(s_data = PyUnicode_InternFromString("_data"))
        || !(s_w = PyUnicode_InternFromString("_w")) || !(s_dirty = PyUnicode_InternFromString("_dirty"))
        || !(s_deleted = PyUnicode_InternFromString("_deleted")) || !(s_sets = PyUnicode_InternFromString("_sets")))
        return NULL;
    return PyModule_Create(&module);
}
