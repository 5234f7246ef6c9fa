/* monitor._sensors: the per-reading step of monitor.sensor_checks, compiled.

A Kernel holds one view's rules (per field: stuck_after, the values allowed to repeat, max_step, the allowance
per ms, the largest gap compared) and updates one entity's arrays for one reading exactly as
monitor.sensor_checks.observe_reading (the Python twin, kept as the reference) does:

    observe(last, state, marks, ts, values) -> bool (a mark set or still in a window), or None

``last``: array('d'), per field the last value; ``state``: array('q'), per field (run, pending, last_ts);
``marks``: array('Q'), per field (stuck, spike, drop) bit windows. None (nothing changed) when a value is one the
kernel cannot read as Python would (an int past 2**53, a timestamp that is not a small int, values that are not a
dict): the caller runs the Python twin instead. tests/monitor/test_sensor_kernel.py compares the two.
*/
#include "_exact.h"
#include <math.h>
#include <stdint.h>


typedef struct {
    PyObject *name;
    long long stuck_after;
    int nignore;
    double *ignore;
    double max_step, rate, gap_ms;
} Rule;

typedef struct {
    PyObject_HEAD
    int n;
    Rule *rules;
    uint64_t mask;
    double *xs;
    int *present;
} Kernel;

static void Kernel_dealloc(Kernel *k) {
    if (k->rules) {
        for (int i = 0; i < k->n; i++) { Py_XDECREF(k->rules[i].name); PyMem_Free(k->rules[i].ignore); }
        PyMem_Free(k->rules);
    }
    PyMem_Free(k->xs);
    PyMem_Free(k->present);
    Py_TYPE(k)->tp_free((PyObject *)k);
}

/* Kernel(rules, mask): rules ((name, stuck_after, (ignore, ...), max_step, rate_per_ms, gap_ms), ...) */
static int Kernel_init(Kernel *k, PyObject *args, PyObject *kwds) {
    PyObject *rules;
    unsigned long long mask;
    if (!PyArg_ParseTuple(args, "OK", &rules, &mask)) return -1;
    k->mask = mask;
    PyObject *fast = PySequence_Fast(rules, "rules");
    if (!fast) return -1;
    k->n = (int)PySequence_Fast_GET_SIZE(fast);
    k->rules = PyMem_Calloc(k->n + 1, sizeof(Rule));
    k->xs = PyMem_Calloc(k->n + 1, sizeof(double));
    k->present = PyMem_Calloc(k->n + 1, sizeof(int));
    for (int i = 0; i < k->n; i++) {
        Rule *r = &k->rules[i];
        PyObject *name, *ignore;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "ULOddd", &name, &r->stuck_after, &ignore,
                              &r->max_step, &r->rate, &r->gap_ms)) {
            Py_DECREF(fast);
            return -1;
        }
        r->name = interned(name);
        PyObject *ig = PySequence_Fast(ignore, "ignore");
        if (!ig) { Py_DECREF(fast); return -1; }
        r->nignore = (int)PySequence_Fast_GET_SIZE(ig);
        r->ignore = PyMem_Calloc(r->nignore + 1, sizeof(double));
        for (int j = 0; j < r->nignore; j++) r->ignore[j] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(ig, j));
        Py_DECREF(ig);
        if (PyErr_Occurred()) { Py_DECREF(fast); return -1; }
    }
    Py_DECREF(fast);
    return 0;
}

static PyObject *Kernel_observe(Kernel *k, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) { PyErr_SetString(PyExc_TypeError, "observe(last, state, marks, ts, values)"); return NULL; }
    PyObject *values = args[4];
    if (!PyDict_CheckExact(values) || !PyLong_CheckExact(args[3])) Py_RETURN_NONE;
    int overflow = 0;
    long long ts = PyLong_AsLongLongAndOverflow(args[3], &overflow);
    if (overflow || ts > EXACT_INT || ts < -EXACT_INT) { PyErr_Clear(); Py_RETURN_NONE; }
    for (int i = 0; i < k->n; i++) { /* every value read before anything changes */
        PyObject *x = PyDict_GetItemWithError(values, k->rules[i].name);
        k->present[i] = 0;
        if (!x) {
            if (PyErr_Occurred()) return NULL;
            continue;
        }
        if (PyFloat_CheckExact(x)) {
            k->xs[i] = PyFloat_AS_DOUBLE(x);
        } else if (PyLong_CheckExact(x)) {
            if (!exact_int_as_double(x, &k->xs[i])) Py_RETURN_NONE;
        } else {
            continue; /* not a number (None, a bool, a str): the reading does not count for this field */
        }
        k->present[i] = 1;
    }
    Py_buffer lb, sb, mb;
    if (get_buffer(args[0], &lb, 'd', k->n, 1) < 0) return NULL;
    if (get_buffer(args[1], &sb, 'q', 3 * k->n, 1) < 0) { PyBuffer_Release(&lb); return NULL; }
    if (get_buffer(args[2], &mb, 'Q', 3 * k->n, 1) < 0) { PyBuffer_Release(&lb); PyBuffer_Release(&sb); return NULL; }
    double *last = lb.buf;
    long long *state = sb.buf;
    uint64_t *marks = mb.buf, mask = k->mask;
    int flagged = 0;
    for (int i = 0; i < k->n; i++) {
        Rule *r = &k->rules[i];
        long long *run = &state[3 * i], *pending = &state[3 * i + 1], *last_ts = &state[3 * i + 2];
        uint64_t *stuck = &marks[3 * i], *spike = &marks[3 * i + 1], *drop = &marks[3 * i + 2];
        if (*stuck || *spike || *drop) { /* age the window */
            *stuck = (*stuck << 1) & mask;
            *spike = (*spike << 1) & mask;
            *drop = (*drop << 1) & mask;
            flagged = flagged || *stuck || *spike || *drop;
        }
        if (!k->present[i]) continue;
        double x = k->xs[i];
        if (*run == 0) { /* the field's first reading */
            last[i] = x;
            *last_ts = ts;
            *run = 1;
            continue;
        }
        if (x == last[i]) {
            *run += 1;
            if (r->stuck_after && *run >= r->stuck_after) {
                int ignored = 0;
                for (int j = 0; j < r->nignore; j++) ignored = ignored || x == r->ignore[j];
                if (!ignored) { *stuck |= 1; flagged = 1; }
            }
        } else {
            *run = 1;
        }
        long long dt = ts - *last_ts;
        if (r->max_step && 0 < dt && (double)dt <= r->gap_ms) {
            double step = x - last[i];
            if (fabs(step) > r->max_step + r->rate * (double)dt) {
                if (*pending && (step > 0) != (*pending > 0)) {
                    *spike |= 1;
                    *pending = 0;
                    flagged = 1;
                } else {
                    *pending = step > 0 ? 1 : -1;
                }
            } else {
                *pending = 0;
            }
        } else {
            *pending = 0;
        }
        last[i] = x;
        *last_ts = ts;
    }
    PyBuffer_Release(&lb);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&mb);
    return PyBool_FromLong(flagged);
}

static PyMethodDef Kernel_methods[] = {
    {"observe", (PyCFunction)(void (*)(void))Kernel_observe, METH_FASTCALL,
     "observe(last, state, marks, ts, values) -> bool | None: monitor.sensor_checks.observe_reading, compiled"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitor._sensors.Kernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The sensor checks' per-reading step for one set of rules (monitor.sensor_checks).",
    .tp_methods = Kernel_methods,
    .tp_init = (initproc)Kernel_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef sensors_module = {
    PyModuleDef_HEAD_INIT, "monitor._sensors", "The sensor checks' per-reading step, compiled.", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sensors(void) {
    if (PyType_Ready(&KernelType) < 0) return NULL;
    PyObject *m = PyModule_Create(&sensors_module);
    if (!m) return NULL;
    Py_INCREF(&KernelType);
    if (PyModule_AddObject(m, "Kernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(&KernelType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
