/* What driftline's C parts (features/_fold.c, features/_check.c, features/_save.c, monitor/_sensors.c) share: reading
   a Python int as the double Python's arithmetic would use, taking an array's buffer, and keeping a spec's name
   interned. */
#ifndef DRIFTLINE_EXACT_H
#define DRIFTLINE_EXACT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define EXACT_INT (1LL << 53)

/* An int that a double holds exactly (|n| <= 2**53): 1 and *out that double. Any other int: 0, no error set (Python
   compares big ints exactly, not as doubles, so only Python may decide). */
static inline int exact_int_as_double(PyObject *x, double *out) {
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (overflow || (n == -1 && PyErr_Occurred()) || n > EXACT_INT || n < -EXACT_INT) {
        PyErr_Clear();
        return 0;
    }
    *out = (double)n;
    return 1;
}

/* The buffer of an array of 8-byte items of ``format`` ('d', 'q' or 'Q') with at least ``items`` of them, writable
   when asked: 0, or -1 with TypeError (nothing held). */
static inline int get_buffer(PyObject *obj, Py_buffer *view, char format, Py_ssize_t items, int writable) {
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->itemsize != 8 || !view->format || view->format[0] != format || view->format[1] != '\0'
        || view->len / 8 < items) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "expected an array of '%c' with at least %zd items", format, items);
        return -1;
    }
    return 0;
}

/* A new reference to the interned form of the str s (a name from a spec: dict lookups by it hit the fast path). */
static inline PyObject *interned(PyObject *s) {
    Py_INCREF(s);
    PyUnicode_InternInPlace(&s);
    return s;
}

#endif
