/* models._matrix: a batch's model matrix straight from its feature vectors (models.loaded.LoadedModel.fit_matrix).

   matrix(vectors, names) -> bytearray | None: the rows' doubles, row after row, each in the order of `names`, when
   every vector is a dict holding every name as an exact float (as the engine emits them); None otherwise, and
   the caller takes the Python path, which decides (a mapping that is not a dict, a missing name, an int...).
   A bytearray, so numpy's frombuffer view of it is writable like the array the Python path builds. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *matrix(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "matrix(vectors, names)");
        return NULL;
    }
    PyObject *vectors = args[0], *names = args[1];
    if (!PyList_CheckExact(vectors) || !PyTuple_CheckExact(names)) Py_RETURN_NONE;
    Py_ssize_t rows = PyList_GET_SIZE(vectors), cols = PyTuple_GET_SIZE(names);
    if (cols > 0 && rows > PY_SSIZE_T_MAX / 8 / cols) return PyErr_NoMemory();
    PyObject *out = PyByteArray_FromStringAndSize(NULL, 8 * rows * cols);
    if (!out) return NULL;
    double *x = (double *)PyByteArray_AS_STRING(out);
    for (Py_ssize_t i = 0; i < rows; i++) {
        PyObject *vector = PyList_GET_ITEM(vectors, i);
        if (!PyDict_CheckExact(vector)) goto python;
        for (Py_ssize_t j = 0; j < cols; j++) {
            PyObject *value = PyDict_GetItemWithError(vector, PyTuple_GET_ITEM(names, j));
            if (!value) {
                if (PyErr_Occurred()) { Py_DECREF(out); return NULL; }
                goto python;
            }
            if (!PyFloat_CheckExact(value)) goto python;
            x[i * cols + j] = PyFloat_AS_DOUBLE(value);
        }
    }
    return out;
python:
    Py_DECREF(out);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"matrix", (PyCFunction)(void (*)(void))matrix, METH_FASTCALL,
     "matrix(vectors, names) -> bytearray | None: the rows' doubles in names' order, or None for Python"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "models._matrix",
                                    "A batch's model matrix from its feature vectors (models.loaded).", -1, methods};

PyMODINIT_FUNC PyInit__matrix(void) { return PyModule_Create(&module); }
