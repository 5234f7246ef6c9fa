/* features._fold: the compiled form of a feature view's plan (features.plan), ``apply`` and ``fold``.

A Kernel is built once per view from a spec (features/kernel.py) and does exactly what the Python code that
features.plan generates does, the same IEEE 754 operations in the same order (built with -ffp-contract=off:
no fused multiply-add), so the results are the same bits; tests/features/test_kernel.py checks that on
random views and streams. What it does not cover (distinct values, a value that is neither a float nor an
int a double holds exactly, a values mapping that is not a dict), it hands to the Python ``apply`` it was
given, before touching the row.

    fold(acc, data, order, lo, hi, origins, sets) -> tuple   (``sets`` is ignored: no distinct values here)
    apply(data, base, bucket, ts, values) -> None
    emit(acc) -> dict   (the feature vector of a fold, with the result expressions of features.plan._RESULT)
*/
#include "_exact.h"
#include <math.h>
#include <string.h>

/* partial row slots in features.plan.SLOTS order, then the accumulator-only ewma */
enum { S_N, S_S, S_M2, S_MN, S_MX, S_FTS, S_FV, S_LTS, S_LV, S_ST, S_STT, S_STY, S_ANG, S_EW, NSLOT };
#define NROW 13

typedef struct {
    int wi;    /* window index (its origin) */
    int check; /* the field's groups span several windows: test this one's origin too */
    int angle; /* the field is an angle (angle_change_rate) */
    int acc[NSLOT]; /* accumulator index per slot, -1 when the group does not keep it */
} Group;

typedef struct {
    int nwins;
    int *wins;     /* windows of the field's groups: a bucket before all their origins is skipped */
    int row[NROW]; /* row offset per partial slot, -1 when not stored */
    int ngroups;
    Group *groups;
} FoldField;

typedef struct {
    PyObject *name; /* the field's name (the values dict's key) */
    int is_str;
    int angle;
    int row[NROW];
} ApplyField;

/* the result kinds of features.plan._RESULT (features.kernel.EMIT_KINDS, same order) */
enum { K_COUNT, K_SUM, K_MEAN, K_MIN, K_MAX, K_STD, K_FIRST, K_LAST, K_DELTA, K_SLOPE, K_EWMA, K_ANGLE, K_INTEGRAL,
       NKIND };

typedef struct {
    PyObject *name; /* the feature's name (the vector's key) */
    int kind;
    int acc[NSLOT]; /* accumulator index per slot, -1 when its group does not keep it */
} EmitFeature;

typedef struct {
    PyObject_HEAD
    Py_ssize_t width;
    int nwin, nacc, nfold, napply;
    double alpha, one_minus_alpha;
    double *init, *acc, *xs;
    long long *origins, *thresholds;
    FoldField *fold;
    ApplyField *apply;
    PyObject *py_apply; /* the generated Python apply: what the kernel does not cover */
    int nemit;
    EmitFeature *emits;
    long long bucket_ms; /* > 0: ``step`` serves (every window is sliding, so a bucket's start fixes its origins) */
    PyObject *py_emit; /* the generated Python emit: an accumulator the kernel does not cover */
} Kernel;

static double angle_diff(double a, double b) {
    /* features.aggregations.angle_diff: abs(a - b) % 360.0 (a non-negative dividend: Python's % is fmod) */
    double d = fmod(fabs(a - b), 360.0);
    return d > 180.0 ? 360.0 - d : d;
}

static int ints_of(PyObject *seq, int *out, Py_ssize_t n, const char *what) {
    PyObject *fast = PySequence_Fast(seq, what);
    if (!fast) return -1;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items", what, n);
        Py_DECREF(fast);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1 && PyErr_Occurred()) { Py_DECREF(fast); return -1; }
        out[i] = (int)v;
    }
    Py_DECREF(fast);
    return 0;
}

static void Kernel_dealloc(Kernel *k) {
    if (k->fold) {
        for (int i = 0; i < k->nfold; i++) { PyMem_Free(k->fold[i].wins); PyMem_Free(k->fold[i].groups); }
        PyMem_Free(k->fold);
    }
    if (k->apply) {
        for (int i = 0; i < k->napply; i++) Py_XDECREF(k->apply[i].name);
        PyMem_Free(k->apply);
    }
    if (k->emits) {
        for (int i = 0; i < k->nemit; i++) Py_XDECREF(k->emits[i].name);
        PyMem_Free(k->emits);
    }
    PyMem_Free(k->init); PyMem_Free(k->acc); PyMem_Free(k->xs);
    PyMem_Free(k->origins); PyMem_Free(k->thresholds);
    Py_XDECREF(k->py_apply);
    Py_XDECREF(k->py_emit);
    Py_TYPE(k)->tp_free((PyObject *)k);
}

/* the accumulator slots each result kind reads (besides the count, which every kind reads) */
static const int KIND_NEEDS[NKIND][4] = {
    [K_COUNT] = {-1}, [K_SUM] = {S_S, -1}, [K_MEAN] = {S_S, -1}, [K_MIN] = {S_MN, -1}, [K_MAX] = {S_MX, -1},
    [K_STD] = {S_M2, -1}, [K_FIRST] = {S_FV, -1}, [K_LAST] = {S_LV, -1}, [K_DELTA] = {S_FV, S_LV, -1},
    [K_SLOPE] = {S_S, S_FTS, S_LTS, -1}, [K_EWMA] = {S_EW, -1}, [K_ANGLE] = {S_ANG, S_FTS, S_LTS, -1},
    [K_INTEGRAL] = {S_S, S_FTS, S_LTS, -1},
};

/* emit_features: ((name, kind, acc14), ...) in definition order; py_emit: the generated Python emit */
static int emit_init(Kernel *k, PyObject *emit_features, PyObject *py_emit) {
    Py_INCREF(py_emit);
    k->py_emit = py_emit;
    PyObject *ef = PySequence_Fast(emit_features, "emit_features");
    if (!ef) return -1;
    k->nemit = (int)PySequence_Fast_GET_SIZE(ef);
    k->emits = PyMem_Calloc(k->nemit + 1, sizeof(EmitFeature));
    for (int i = 0; i < k->nemit; i++) {
        PyObject *name, *acc;
        EmitFeature *e = &k->emits[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(ef, i), "UiO", &name, &e->kind, &acc)
            || ints_of(acc, e->acc, NSLOT, "acc")) {
            Py_DECREF(ef);
            return -1;
        }
        e->name = interned(name);
        int bad = e->kind < 0 || e->kind >= NKIND || e->acc[S_N] < 0;
        for (int s = 0; s < NSLOT && !bad; s++) bad = e->acc[s] >= k->nacc;
        for (int j = 0; !bad && KIND_NEEDS[e->kind][j] >= 0; j++) bad = e->acc[KIND_NEEDS[e->kind][j]] < 0;
        if (bad && !PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "emit: a kind or an accumulator index");
        if (bad) { Py_DECREF(ef); return -1; }
        if (e->kind == K_SLOPE && (e->acc[S_ST] < 0 || e->acc[S_STT] < 0 || e->acc[S_STY] < 0)) {
            PyErr_SetString(PyExc_ValueError, "emit: a slope without its sums");
            Py_DECREF(ef);
            return -1;
        }
    }
    Py_DECREF(ef);
    return 0;
}

/* Kernel(width, nwin, init, alpha, fold_fields, apply_fields, py_apply[, emit_features, py_emit[, bucket_ms]])
   fold_fields: ((wins, row13, ((wi, check, angle, acc14), ...)), ...); apply_fields: ((name, is_str, angle, row13), ...) */
static int Kernel_init(Kernel *k, PyObject *args, PyObject *kwds) {
    Py_ssize_t width;
    int nwin;
    double alpha;
    PyObject *init, *fold_fields, *apply_fields, *py_apply, *emit_features = NULL, *py_emit = NULL;
    long long bucket_ms = 0;
    if (!PyArg_ParseTuple(args, "niOdOOO|OOL", &width, &nwin, &init, &alpha, &fold_fields, &apply_fields, &py_apply,
                          &emit_features, &py_emit, &bucket_ms))
        return -1;
    k->bucket_ms = bucket_ms;
    if ((emit_features == NULL) != (py_emit == NULL)) {
        PyErr_SetString(PyExc_TypeError, "emit_features and py_emit come together");
        return -1;
    }
    if (width <= 0 || nwin < 0) { PyErr_SetString(PyExc_ValueError, "bad width or window count"); return -1; }
    k->width = width; k->nwin = nwin; k->alpha = alpha; k->one_minus_alpha = 1.0 - alpha;
    Py_INCREF(py_apply); k->py_apply = py_apply;
    PyObject *fi = PySequence_Fast(init, "init");
    if (!fi) return -1;
    k->nacc = (int)PySequence_Fast_GET_SIZE(fi);
    k->init = PyMem_Calloc(k->nacc + 1, sizeof(double));
    k->acc = PyMem_Calloc(k->nacc + 1, sizeof(double));
    k->origins = PyMem_Calloc(nwin + 1, sizeof(long long));
    for (int i = 0; i < k->nacc; i++) k->init[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fi, i));
    Py_DECREF(fi);
    if (PyErr_Occurred()) return -1;

    PyObject *ff = PySequence_Fast(fold_fields, "fold_fields");
    if (!ff) return -1;
    k->nfold = (int)PySequence_Fast_GET_SIZE(ff);
    k->fold = PyMem_Calloc(k->nfold + 1, sizeof(FoldField));
    k->thresholds = PyMem_Calloc(k->nfold + 1, sizeof(long long));
    for (int i = 0; i < k->nfold; i++) {
        PyObject *wins, *row, *groups;
        FoldField *f = &k->fold[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(ff, i), "OOO", &wins, &row, &groups)) goto fail_ff;
        f->nwins = (int)PySequence_Size(wins);
        f->wins = PyMem_Calloc(f->nwins + 1, sizeof(int));
        if (f->nwins < 1 || ints_of(wins, f->wins, f->nwins, "wins") || ints_of(row, f->row, NROW, "row"))
            goto fail_ff;
        f->ngroups = (int)PySequence_Size(groups);
        f->groups = PyMem_Calloc(f->ngroups + 1, sizeof(Group));
        for (int g = 0; g < f->ngroups; g++) {
            PyObject *acc;
            Group *gr = &f->groups[g];
            PyObject *item = PySequence_GetItem(groups, g);
            if (!item) goto fail_ff;
            int ok = PyArg_ParseTuple(item, "iiiO", &gr->wi, &gr->check, &gr->angle, &acc);
            Py_DECREF(item);
            if (!ok || ints_of(acc, gr->acc, NSLOT, "acc")) goto fail_ff;
            if (gr->wi < 0 || gr->wi >= nwin) { PyErr_SetString(PyExc_ValueError, "window index"); goto fail_ff; }
            if ((gr->acc[S_M2] >= 0 || gr->acc[S_EW] >= 0 || gr->acc[S_STY] >= 0) && f->row[S_S] < 0) {
                PyErr_SetString(PyExc_ValueError, "a group reads a bucket's sum the row does not keep");
                goto fail_ff;
            }
            if ((gr->acc[S_ST] >= 0) != (gr->acc[S_STT] >= 0) || (gr->acc[S_ST] >= 0) != (gr->acc[S_STY] >= 0)) {
                PyErr_SetString(PyExc_ValueError, "the least-squares sums come together");
                goto fail_ff;
            }
            for (int s = 0; s < NSLOT; s++) {
                if (gr->acc[s] >= k->nacc) { PyErr_SetString(PyExc_ValueError, "acc index"); goto fail_ff; }
                if (s < NROW && gr->acc[s] >= 0 && f->row[s] < 0) {
                    PyErr_SetString(PyExc_ValueError, "a group reads a slot the row does not keep");
                    goto fail_ff;
                }
            }
        }
        for (int w = 0; w < f->nwins; w++)
            if (f->wins[w] < 0 || f->wins[w] >= nwin) { PyErr_SetString(PyExc_ValueError, "wins"); goto fail_ff; }
        for (int s = 0; s < NROW; s++)
            if (f->row[s] >= width) { PyErr_SetString(PyExc_ValueError, "row offset"); goto fail_ff; }
    }
    Py_DECREF(ff);

    PyObject *af = PySequence_Fast(apply_fields, "apply_fields");
    if (!af) return -1;
    k->napply = (int)PySequence_Fast_GET_SIZE(af);
    k->apply = PyMem_Calloc(k->napply + 1, sizeof(ApplyField));
    k->xs = PyMem_Calloc(k->napply + 1, sizeof(double));
    for (int i = 0; i < k->napply; i++) {
        PyObject *name, *row;
        ApplyField *a = &k->apply[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(af, i), "UppO", &name, &a->is_str, &a->angle, &row)
            || ints_of(row, a->row, NROW, "row")) {
            Py_DECREF(af);
            return -1;
        }
        a->name = interned(name);
        for (int s = 0; s < NROW; s++)
            if (a->row[s] >= width) { PyErr_SetString(PyExc_ValueError, "row offset"); Py_DECREF(af); return -1; }
        if (a->row[S_N] < 0) { PyErr_SetString(PyExc_ValueError, "a field without a count"); Py_DECREF(af); return -1; }
    }
    Py_DECREF(af);
    if (emit_features && emit_init(k, emit_features, py_emit) < 0) return -1;
    return 0;
fail_ff:
    Py_DECREF(ff);
    return -1;
}

#define P(slot) D[base + f->row[slot]]
#define A(slot) acc[gr->acc[slot]]
#define HAS(slot) (gr->acc[slot] >= 0)

/* the fold of rows lo..hi (bucket starts in O) into acc, windows starting at the origins o */
static void fold_rows(Kernel *k, double *acc, const double *D, const long long *O, Py_ssize_t lo, Py_ssize_t hi,
                      const long long *o) {
    Py_ssize_t width = k->width;
    long long *thr = k->thresholds;
    for (int fi = 0; fi < k->nfold; fi++) {
        FoldField *f = &k->fold[fi];
        long long t = o[f->wins[0]];
        for (int w = 1; w < f->nwins; w++) if (o[f->wins[w]] < t) t = o[f->wins[w]];
        thr[fi] = t;
    }
    for (Py_ssize_t j = lo; j < hi; j++) {
        long long b = O[j];
        Py_ssize_t base = j * width;
        for (int fi = 0; fi < k->nfold; fi++) {
            if (b < thr[fi]) continue;
            FoldField *f = &k->fold[fi];
            double nb = P(S_N);
            if (nb == 0.0) continue; /* Python's `if nb:` (a NaN is true) */
            for (int g = 0; g < f->ngroups; g++) {
                Group *gr = &f->groups[g];
                if (gr->check && b < o[gr->wi]) continue;
                double sb = 0.0, mean_b = 0.0, pst = 0.0, d = 0.0;
                if (HAS(S_S) || HAS(S_M2) || HAS(S_EW) || HAS(S_STY)) sb = P(S_S);
                if (HAS(S_M2) || HAS(S_EW)) mean_b = sb / nb;
                if (HAS(S_ST)) { d = (double)(b - o[gr->wi]) / 1000.0; pst = P(S_ST); }
                if (A(S_N) == 0.0) {
                    A(S_N) = nb;
                    if (HAS(S_S)) A(S_S) = sb;
                    if (HAS(S_M2)) A(S_M2) = P(S_M2);
                    if (HAS(S_MN)) A(S_MN) = P(S_MN);
                    if (HAS(S_MX)) A(S_MX) = P(S_MX);
                    if (HAS(S_FTS)) A(S_FTS) = P(S_FTS);
                    if (HAS(S_FV)) A(S_FV) = P(S_FV);
                    if (HAS(S_LTS)) A(S_LTS) = P(S_LTS);
                    if (HAS(S_LV)) A(S_LV) = P(S_LV);
                    if (HAS(S_ST)) {
                        A(S_ST) = pst + nb * d;
                        A(S_STT) = P(S_STT) + 2.0 * d * pst + nb * d * d;
                        A(S_STY) = P(S_STY) + d * sb;
                    }
                    if (HAS(S_ANG)) A(S_ANG) = P(S_ANG);
                    if (HAS(S_EW)) A(S_EW) = mean_b;
                } else {
                    if (HAS(S_M2)) {
                        double n = A(S_N), n_new = n + nb;
                        double delta = mean_b - A(S_S) / n;
                        A(S_M2) += P(S_M2) + delta * delta * n * nb / n_new;
                        A(S_N) = n_new;
                    } else {
                        A(S_N) += nb;
                    }
                    if (HAS(S_S)) A(S_S) += sb;
                    if (HAS(S_MN) && P(S_MN) < A(S_MN)) A(S_MN) = P(S_MN);
                    if (HAS(S_MX) && P(S_MX) > A(S_MX)) A(S_MX) = P(S_MX);
                    if (HAS(S_ANG) && gr->angle) A(S_ANG) += P(S_ANG) + angle_diff(A(S_LV), P(S_FV));
                    if (HAS(S_FTS) && P(S_FTS) < A(S_FTS)) {
                        A(S_FTS) = P(S_FTS);
                        if (HAS(S_FV)) A(S_FV) = P(S_FV);
                    }
                    if (HAS(S_LTS) && P(S_LTS) >= A(S_LTS)) {
                        A(S_LTS) = P(S_LTS);
                        if (HAS(S_LV)) A(S_LV) = P(S_LV);
                    }
                    if (HAS(S_ST)) {
                        A(S_ST) += pst + nb * d;
                        A(S_STT) += P(S_STT) + 2.0 * d * pst + nb * d * d;
                        A(S_STY) += P(S_STY) + d * sb;
                    }
                    if (HAS(S_EW)) A(S_EW) = k->alpha * mean_b + k->one_minus_alpha * A(S_EW);
                }
            }
        }
    }
}

static PyObject *Kernel_fold(Kernel *k, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) { PyErr_SetString(PyExc_TypeError, "fold(acc, data, order, lo, hi, origins, sets)"); return NULL; }
    PyObject *acc_in = args[0], *origins = args[5];
    Py_ssize_t lo = PyLong_AsSsize_t(args[3]), hi = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) return NULL;
    if (!PyTuple_Check(origins) || PyTuple_GET_SIZE(origins) != k->nwin) {
        PyErr_SetString(PyExc_TypeError, "origins: a tuple of one start per window");
        return NULL;
    }
    double *acc = k->acc;
    int nacc = k->nacc;
    /* the result tuple first: its allocation may run the garbage collector, and so finalizers, and so let another
       thread in; from here to the end nothing runs Python code, so the kernel's scratch stays this call's */
    PyObject *out = PyTuple_New(nacc);
    if (!out) return NULL;
    long long *o = k->origins;
    for (int w = 0; w < k->nwin; w++) {
        PyObject *v = PyTuple_GET_ITEM(origins, w);
        o[w] = PyLong_CheckExact(v) ? PyLong_AsLongLong(v) : -1;
        if (!PyLong_CheckExact(v) || (o[w] == -1 && PyErr_Occurred())) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "origins: ints");
            Py_DECREF(out);
            return NULL;
        }
    }
    if (acc_in == Py_None) {
        memcpy(acc, k->init, nacc * sizeof(double));
    } else {
        if (!PyTuple_Check(acc_in) || PyTuple_GET_SIZE(acc_in) != nacc) {
            PyErr_SetString(PyExc_TypeError, "acc: None or a tuple from fold");
            Py_DECREF(out);
            return NULL;
        }
        for (int i = 0; i < nacc; i++) {
            PyObject *v = PyTuple_GET_ITEM(acc_in, i);
            if (PyFloat_CheckExact(v)) {
                acc[i] = PyFloat_AS_DOUBLE(v);
            } else if (PyLong_CheckExact(v)) {
                acc[i] = PyLong_AsDouble(v);
                if (acc[i] == -1.0 && PyErr_Occurred()) { Py_DECREF(out); return NULL; }
            } else {
                PyErr_SetString(PyExc_TypeError, "acc: floats from fold");
                Py_DECREF(out);
                return NULL;
            }
        }
    }
    Py_buffer dv, ov;
    if (get_buffer(args[1], &dv, 'd', 0, 0) < 0) { Py_DECREF(out); return NULL; }
    if (get_buffer(args[2], &ov, 'q', 0, 0) < 0) { PyBuffer_Release(&dv); Py_DECREF(out); return NULL; }
    Py_ssize_t width = k->width;
    if (lo < 0 || hi > ov.len / 8 || (hi > lo && hi * width > dv.len / 8)) {
        PyBuffer_Release(&dv); PyBuffer_Release(&ov); Py_DECREF(out);
        PyErr_SetString(PyExc_IndexError, "fold: rows out of range");
        return NULL;
    }
    const double *D = dv.buf;
    const long long *O = ov.buf;
    fold_rows(k, acc, D, O, lo, hi, o);
    PyBuffer_Release(&dv);
    PyBuffer_Release(&ov);
    for (int i = 0; i < nacc; i++) { /* floats are not tracked by the collector: no collection here */
        PyObject *v = PyFloat_FromDouble(acc[i]);
        if (!v) { Py_DECREF(out); return NULL; }
        PyTuple_SET_ITEM(out, i, v);
    }
    return out;
}

#undef P
#define P(slot) D[base + a->row[slot]]
#define KEEPS(slot) (a->row[slot] >= 0)

/* a value as the double Python's arithmetic would use, or -1 when only the Python apply can say */
static int as_double(PyObject *x, double *out) {
    if (PyFloat_Check(x)) { *out = PyFloat_AS_DOUBLE(x); return 0; }
    if (PyLong_Check(x)) return exact_int_as_double(x, out) ? 0 : -1;
    return -1;
}

/* every value ``apply`` folds read into xs (a NaN for absent or null) before any row is touched: 0, 1 when only the
   Python apply can say (a value that is not a double exactly), -1 on an error */
static int read_values(Kernel *k, PyObject *values, double *xs) {
    for (int i = 0; i < k->napply; i++) {
        PyObject *x = PyDict_GetItemWithError(values, k->apply[i].name);
        if (!x) {
            if (PyErr_Occurred()) return -1;
            xs[i] = NAN;
            continue;
        }
        if (x == Py_None) { xs[i] = NAN; continue; }
        if (!k->apply[i].is_str && as_double(x, &xs[i]) < 0) return 1;
    }
    return 0;
}

/* the event (values read by read_values into xs) folded into the row at base of bucket b */
static void apply_row(Kernel *k, double *D, Py_ssize_t base, long long b, long long ts, PyObject *values,
                      const double *xs) {
    double tsd = (double)ts;
    for (int i = 0; i < k->napply; i++) {
        ApplyField *a = &k->apply[i];
        PyObject *x = PyDict_GetItemWithError(values, a->name); /* borrowed; present iff it was above */
        if (!x || x == Py_None) continue;
        double n = P(S_N);
        if (a->is_str) { P(S_N) = n + 1.0; continue; }
        double xd = xs[i];
        if (n == 0.0) {
            P(S_N) = 1.0;
            if (KEEPS(S_S)) P(S_S) = xd;
            if (KEEPS(S_M2)) P(S_M2) = 0.0;
            if (KEEPS(S_MN)) P(S_MN) = xd;
            if (KEEPS(S_MX)) P(S_MX) = xd;
            if (KEEPS(S_FTS)) P(S_FTS) = tsd;
            if (KEEPS(S_FV)) P(S_FV) = xd;
            if (KEEPS(S_LTS)) P(S_LTS) = tsd;
            if (KEEPS(S_LV)) P(S_LV) = xd;
            if (KEEPS(S_ST)) {
                double dt = (double)(ts - b) / 1000.0;
                P(S_ST) = dt;
                P(S_STT) = dt * dt;
                P(S_STY) = dt * xd;
            }
            if (KEEPS(S_ANG)) P(S_ANG) = 0.0;
        } else {
            double mean_old = KEEPS(S_M2) ? P(S_S) / n : 0.0;
            n += 1.0;
            P(S_N) = n;
            double s = 0.0;
            if (KEEPS(S_S)) { s = P(S_S) + xd; P(S_S) = s; }
            if (KEEPS(S_M2)) P(S_M2) += (xd - mean_old) * (xd - s / n);
            if (KEEPS(S_MN) && xd < P(S_MN)) P(S_MN) = xd;
            if (KEEPS(S_MX) && xd > P(S_MX)) P(S_MX) = xd;
            if (KEEPS(S_ANG) && a->angle) {
                if (tsd >= P(S_LTS)) P(S_ANG) += angle_diff(P(S_LV), xd);
                else if (tsd < P(S_FTS)) P(S_ANG) += angle_diff(xd, P(S_FV));
            }
            if (KEEPS(S_FTS) && tsd < P(S_FTS)) {
                P(S_FTS) = tsd;
                if (KEEPS(S_FV)) P(S_FV) = xd;
            }
            if (KEEPS(S_LTS) && tsd >= P(S_LTS)) {
                P(S_LTS) = tsd;
                if (KEEPS(S_LV)) P(S_LV) = xd;
            }
            if (KEEPS(S_ST)) {
                double dt = (double)(ts - b) / 1000.0;
                P(S_ST) += dt;
                P(S_STT) += dt * dt;
                P(S_STY) += dt * xd;
            }
        }
    }
}

static PyObject *Kernel_apply(Kernel *k, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) { PyErr_SetString(PyExc_TypeError, "apply(data, base, bucket, ts, values)"); return NULL; }
    PyObject *values = args[4];
    Py_ssize_t base = PyLong_AsSsize_t(args[1]);
    long long b = PyLong_AsLongLong(args[2]), ts = PyLong_AsLongLong(args[3]);
    int fallback = !PyDict_CheckExact(values) || !PyLong_CheckExact(args[3]) || ts > EXACT_INT || ts < -EXACT_INT;
    if (PyErr_Occurred()) { PyErr_Clear(); fallback = 1; }
    double *xs = k->xs;
    if (!fallback) {
        fallback = read_values(k, values, xs);
        if (fallback < 0) return NULL;
    }
    if (fallback) return PyObject_Vectorcall(k->py_apply, args, nargs, NULL);
    Py_buffer dv;
    if (get_buffer(args[0], &dv, 'd', 0, 1) < 0) return NULL;
    if (base < 0 || base + k->width > dv.len / 8) {
        PyBuffer_Release(&dv);
        PyErr_SetString(PyExc_IndexError, "apply: row out of range");
        return NULL;
    }
    apply_row(k, dv.buf, base, b, ts, values, xs);
    PyBuffer_Release(&dv);
    Py_RETURN_NONE;
}

#define E(slot) a[e->acc[slot]]

/* One feature's value from the accumulator, as the result expression of features.plan._RESULT computes it: 0, or
   -1 where Python would raise (a division by zero, math.sqrt of a negative): then the Python emit raises it. */
static int emit_one(const EmitFeature *e, const double *a, double *out) {
    double n = E(S_N);
    int some = n != 0.0; /* Python's `if n` (a NaN is true) */
    switch (e->kind) {
    case K_COUNT: *out = n; return 0;
    case K_SUM: *out = some ? E(S_S) : 0.0; return 0;
    case K_MEAN: *out = some ? E(S_S) / n : NAN; return 0;
    case K_MIN: *out = some ? E(S_MN) : NAN; return 0;
    case K_MAX: *out = some ? E(S_MX) : NAN; return 0;
    case K_STD: {
        if (!some) { *out = NAN; return 0; }
        double m2 = E(S_M2), var = (0.0 > m2 ? 0.0 : m2) / n; /* Python's max(m2, 0.0) / n */
        if (var < 0.0) return -1; /* a negative count: math.sqrt raises */
        *out = sqrt(var);
        return 0;
    }
    case K_FIRST: *out = some ? E(S_FV) : NAN; return 0;
    case K_LAST: *out = some ? E(S_LV) : NAN; return 0;
    case K_DELTA: *out = some ? E(S_LV) - E(S_FV) : NAN; return 0;
    case K_EWMA: *out = some ? E(S_EW) : NAN; return 0;
    case K_SLOPE: { /* features.aggregations.slope_of */
        double st = E(S_ST);
        if (n < 2.0 || E(S_FTS) == E(S_LTS)) { *out = NAN; return 0; }
        double sxx = E(S_STT) - st * st / n;
        if (sxx <= 0.0) { *out = NAN; return 0; }
        *out = (E(S_STY) - st * E(S_S) / n) / sxx;
        return 0;
    }
    case K_ANGLE: {
        if (n < 2.0 || E(S_LTS) == E(S_FTS)) { *out = NAN; return 0; }
        double span = (E(S_LTS) - E(S_FTS)) / 1000.0;
        if (span == 0.0) return -1;
        *out = E(S_ANG) / span;
        return 0;
    }
    case K_INTEGRAL: *out = some ? (E(S_S) / n) * ((E(S_LTS) - E(S_FTS)) / 1000.0) : 0.0; return 0;
    }
    return -1;
}

#undef E

/* the feature vector of acc, or NULL with no error set when Python must compute it (see emit_one) */
static PyObject *emit_dict(Kernel *k, const double *acc) {
    /* the values go to a buffer of this call's own: building the dict allocates, which may run the collector and
       so finalizers, and so let another thread into this kernel's scratch (see fold) */
    double *vals = PyMem_Malloc((k->nemit + 1) * sizeof(double));
    if (!vals) return PyErr_NoMemory();
    for (int i = 0; i < k->nemit; i++)
        if (emit_one(&k->emits[i], acc, &vals[i]) < 0) { PyMem_Free(vals); return NULL; }
    PyObject *out = _PyDict_NewPresized(k->nemit);
    for (int i = 0; out && i < k->nemit; i++) {
        PyObject *v = PyFloat_FromDouble(vals[i]);
        if (!v || PyDict_SetItem(out, k->emits[i].name, v) < 0) Py_CLEAR(out);
        Py_XDECREF(v);
    }
    PyMem_Free(vals);
    return out;
}

/* acc as the tuple the fold returns (for the Python emit) */
static PyObject *acc_tuple(Kernel *k, const double *acc) {
    PyObject *out = PyTuple_New(k->nacc);
    for (int i = 0; out && i < k->nacc; i++) {
        PyObject *v = PyFloat_FromDouble(acc[i]);
        if (!v) { Py_CLEAR(out); break; }
        PyTuple_SET_ITEM(out, i, v);
    }
    return out;
}

/* 1 and the doubles in out when obj is a tuple of exactly n floats (what the kernel's fold returns), else 0: an int
   count (the Python fold's start) or anything else is Python's arithmetic */
static int exact_floats(PyObject *obj, double *out, Py_ssize_t n) {
    if (!PyTuple_CheckExact(obj) || PyTuple_GET_SIZE(obj) != n) return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(obj, i);
        if (!PyFloat_CheckExact(v)) return 0;
        out[i] = PyFloat_AS_DOUBLE(v);
    }
    return 1;
}

static PyObject *Kernel_emit(Kernel *k, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1) { PyErr_SetString(PyExc_TypeError, "emit(acc)"); return NULL; }
    if (!k->py_emit) { PyErr_SetString(PyExc_TypeError, "this kernel was built without emit"); return NULL; }
    double *acc = PyMem_Malloc((k->nacc + 1) * sizeof(double));
    if (!acc) return PyErr_NoMemory();
    PyObject *out = exact_floats(args[0], acc, k->nacc) ? emit_dict(k, acc) : NULL;
    PyMem_Free(acc);
    if (out || PyErr_Occurred()) return out;
    return PyObject_Vectorcall(k->py_emit, args, nargs, NULL);
}

/* pack(acc) -> bytes | acc: the accumulators as their doubles' bytes (native order) when every one is an exact
   float, else acc itself; what EntityState keeps as its cached prefix fold (one object of 8 * nacc bytes, not a
   tuple of nacc floats: at 100,000 entities every step reads it from memory the caches lost) */
static PyObject *Kernel_pack(Kernel *k, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 1) { PyErr_SetString(PyExc_TypeError, "pack(acc)"); return NULL; }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 8 * k->nacc);
    if (!out) return NULL;
    if (!exact_floats(args[0], (double *)PyBytes_AS_STRING(out), k->nacc)) {
        Py_DECREF(out);
        Py_INCREF(args[0]);
        return args[0];
    }
    return out;
}

static PyObject *s_order, *s_data, *s_w, *s_dirty, *s_cache, *s_read_last, *s_reads; /* EntityState's slots */

/* step(state, ts, values) -> dict, or None when Python must take the event (features.state.EntityState.step).
   It takes the common case only: the event's bucket is the state's newest row and was read before, with the fold
   of the older buckets cached for it (EntityState._cache, its accumulators packed by pack), whether or not the state was saved since (its dirty set
   None: one is made, as apply_values does); every test passes before anything is changed. Then it
   does what the Python step does: the row's apply, the bucket marked dirty, one more read counted, the cached
   prefix folded with the row, and the vector emitted. */
static PyObject *Kernel_step(Kernel *k, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) { PyErr_SetString(PyExc_TypeError, "step(state, ts, values)"); return NULL; }
    PyObject *state = args[0], *values = args[2];
    if (k->bucket_ms <= 0 || !k->py_emit || !PyLong_CheckExact(args[1]) || !PyDict_CheckExact(values)) Py_RETURN_NONE;
    int overflow = 0;
    long long ts = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (overflow || ts > EXACT_INT || ts < -EXACT_INT || (ts == -1 && PyErr_Occurred())) { PyErr_Clear(); Py_RETURN_NONE; }
    long long r = ts % k->bucket_ms;
    long long b = ts - (r < 0 ? r + k->bucket_ms : r); /* Python's ts - ts % bucket_ms */
    PyObject *order = NULL, *data = NULL, *w = NULL, *dirty = NULL, *cache = NULL, *read_last = NULL, *reads = NULL;
    PyObject *result = NULL, *b_obj = NULL, *reads_next = NULL;
    double *acc = NULL, *xs = NULL;
    long long *origins = NULL;
    Py_buffer ov = {0}, dv = {0};
    int have_o = 0, have_d = 0;
    if (!(order = PyObject_GetAttr(state, s_order)) || !(data = PyObject_GetAttr(state, s_data))
        || !(w = PyObject_GetAttr(state, s_w)) || !(dirty = PyObject_GetAttr(state, s_dirty))
        || !(cache = PyObject_GetAttr(state, s_cache)) || !(read_last = PyObject_GetAttr(state, s_read_last))
        || !(reads = PyObject_GetAttr(state, s_reads)))
        goto done;
    /* the common case, or Python */
    if (!PyLong_CheckExact(w) || PyLong_AsSsize_t(w) != k->width || (dirty != Py_None && !PySet_CheckExact(dirty))
        || !PyLong_CheckExact(read_last) || PyLong_AsLongLong(read_last) != b || !PyLong_CheckExact(reads)
        || !PyTuple_CheckExact(cache) || PyTuple_GET_SIZE(cache) != 3) {
        PyErr_Clear();
        goto python;
    }
    PyObject *c_last = PyTuple_GET_ITEM(cache, 0), *c_starts = PyTuple_GET_ITEM(cache, 1);
    PyObject *c_acc = PyTuple_GET_ITEM(cache, 2);
    if (!PyLong_CheckExact(c_last) || PyLong_AsLongLong(c_last) != b || !PyTuple_CheckExact(c_starts)
        || PyTuple_GET_SIZE(c_starts) != k->nwin) {
        PyErr_Clear();
        goto python;
    }
    /* buffers of this call's own, not the kernel's scratch: the step allocates (the bucket's int, the read count)
       between reading the values and applying them (see fold) */
    origins = PyMem_Malloc((k->nwin + 1) * sizeof(long long));
    acc = PyMem_Malloc((k->nacc + 1) * sizeof(double));
    xs = PyMem_Malloc((k->napply + 1) * sizeof(double));
    if (!origins || !acc || !xs) { PyErr_NoMemory(); goto done; }
    for (int i = 0; i < k->nwin; i++) {
        PyObject *v = PyTuple_GET_ITEM(c_starts, i);
        if (!PyLong_CheckExact(v)) goto python;
        origins[i] = PyLong_AsLongLong(v);
        if (origins[i] == -1 && PyErr_Occurred()) { PyErr_Clear(); goto python; }
    }
    /* packed by Kernel.pack; a tuple is what pack left as it was (an accumulator not an exact float): Python */
    if (!PyBytes_CheckExact(c_acc) || PyBytes_GET_SIZE(c_acc) != 8 * k->nacc) goto python;
    memcpy(acc, PyBytes_AS_STRING(c_acc), 8 * k->nacc);
    int odd = read_values(k, values, xs);
    if (odd < 0) goto done;
    if (odd) goto python;
    if (get_buffer(order, &ov, 'q', 0, 0) < 0) goto done;
    have_o = 1;
    if (get_buffer(data, &dv, 'd', 0, 1) < 0) goto done;
    have_d = 1;
    Py_ssize_t n = ov.len / 8;
    const long long *O = ov.buf;
    if (n == 0 || O[n - 1] != b || n * k->width > dv.len / 8) goto python;
    long long count = PyLong_AsLongLong(reads);
    if (count == -1 && PyErr_Occurred()) { PyErr_Clear(); goto python; }
    if (!(b_obj = PyLong_FromLongLong(b)) || !(reads_next = PyLong_FromLongLong(count + 1))) goto done;
    /* from here on the state changes: nothing below may fall back to Python's step */
    if (dirty == Py_None) { /* saved since its last change (mark_saved): a new set, as apply_values makes */
        Py_DECREF(dirty);
        if (!(dirty = PySet_New(NULL)) || PyObject_SetAttr(state, s_dirty, dirty) < 0) goto done;
    }
    if (PySet_Add(dirty, b_obj) < 0) goto done;
    if (PyObject_SetAttr(state, s_reads, reads_next) < 0) goto done;
    apply_row(k, dv.buf, (n - 1) * k->width, b, ts, values, xs);
    fold_rows(k, acc, dv.buf, O, n - 1, n, origins);
    PyBuffer_Release(&ov); have_o = 0;
    PyBuffer_Release(&dv); have_d = 0;
    result = emit_dict(k, acc);
    if (!result && !PyErr_Occurred()) { /* a feature only Python computes (it raises): its emit says what */
        PyObject *t = acc_tuple(k, acc);
        if (t) { result = PyObject_CallOneArg(k->py_emit, t); Py_DECREF(t); }
    }
    goto done;
python:
    result = Py_None;
    Py_INCREF(result);
done:
    if (have_o) PyBuffer_Release(&ov);
    if (have_d) PyBuffer_Release(&dv);
    PyMem_Free(acc); PyMem_Free(xs); PyMem_Free(origins);
    Py_XDECREF(order); Py_XDECREF(data); Py_XDECREF(w); Py_XDECREF(dirty); Py_XDECREF(cache);
    Py_XDECREF(read_last); Py_XDECREF(reads); Py_XDECREF(b_obj); Py_XDECREF(reads_next);
    return result;
}

static PyMethodDef Kernel_methods[] = {
    {"emit", (PyCFunction)(void (*)(void))Kernel_emit, METH_FASTCALL,
     "emit(acc) -> dict: features.plan's emit, compiled"},
    {"step", (PyCFunction)(void (*)(void))Kernel_step, METH_FASTCALL,
     "step(state, ts, values) -> dict | None: EntityState.step's common case, compiled"},
    {"pack", (PyCFunction)(void (*)(void))Kernel_pack, METH_FASTCALL,
     "pack(acc) -> bytes | acc: the accumulators' doubles as bytes when all are exact floats, else acc"},
    {"fold", (PyCFunction)(void (*)(void))Kernel_fold, METH_FASTCALL,
     "fold(acc, data, order, lo, hi, origins, sets) -> tuple: features.plan's fold, compiled"},
    {"apply", (PyCFunction)(void (*)(void))Kernel_apply, METH_FASTCALL,
     "apply(data, base, bucket, ts, values): features.plan's apply, compiled"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "features._fold.Kernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A feature view's apply and fold, compiled from a spec (features.kernel).",
    .tp_methods = Kernel_methods,
    .tp_init = (initproc)Kernel_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef fold_module = {
    PyModuleDef_HEAD_INIT, "features._fold", "Compiled apply and fold of features.plan (see features.kernel).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fold(void) {
    const char *names[] = {"_order", "_data", "_w", "_dirty", "_cache", "_read_last", "_reads"};
    PyObject **slots[] = {&s_order, &s_data, &s_w, &s_dirty, &s_cache, &s_read_last, &s_reads};
    for (int i = 0; i < 7; i++)
        if (!(*slots[i] = PyUnicode_InternFromString(names[i]))) return NULL;
    if (PyType_Ready(&KernelType) < 0) return NULL;
    PyObject *m = PyModule_Create(&fold_module);
    if (!m) return NULL;
    Py_INCREF(&KernelType);
    if (PyModule_AddObject(m, "Kernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(&KernelType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
