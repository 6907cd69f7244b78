/*
 * core_future.c -- CFuture, the dtask._core type over a dt_future: key,
 * status, result (waited for in slices so that ^C reaches the waiting
 * thread), exception text, cancel and done callbacks.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

PyObject *core_future_wrap(dt_future *f) {
  FutureObject *o = PyObject_New(FutureObject, &core_future_type);
  if (!o) {
    Py_BEGIN_ALLOW_THREADS dt_future_release(f);
    Py_END_ALLOW_THREADS return NULL;
  }
  o->f = f;
  return (PyObject *)o;
}

static void future_dealloc(FutureObject *o) {
  dt_future *f = o->f;
  Py_BEGIN_ALLOW_THREADS dt_future_release(f);
  Py_END_ALLOW_THREADS PyObject_Free(o);
}

static PyObject *future_key(FutureObject *o, void *c) {
  (void)c;
  return PyUnicode_FromString(dt_future_key(o->f));
}

static PyObject *future_status(FutureObject *o, void *c) {
  (void)c;
  dt_future_status s;
  Py_BEGIN_ALLOW_THREADS s = dt_future_status_get(o->f);
  Py_END_ALLOW_THREADS static const char *names[] = {"pending", "finished", "error", "cancelled",
                                                     "lost"};
  return PyUnicode_FromString(s <= DT_LOST ? names[s] : "unknown");
}

static PyObject *future_done(FutureObject *o, PyObject *unused) {
  (void)unused;
  bool d;
  Py_BEGIN_ALLOW_THREADS d = dt_future_done(o->f);
  Py_END_ALLOW_THREADS return PyBool_FromLong(d);
}

static PyObject *future_result(FutureObject *o, PyObject *args) {
  int timeout_ms = -1;
  if (!PyArg_ParseTuple(args, "|i", &timeout_ms)) return NULL;
  dt_value *v = NULL;
  int rc;
  /* wait in slices so that ^C reaches the waiting Python thread */
  for (;;) {
    int slice = timeout_ms < 0 || timeout_ms > 200 ? 200 : timeout_ms;
    if (dt_task_current()) slice = timeout_ms; /* a task (no signals there): one wait, seceded once */
    Py_BEGIN_ALLOW_THREADS rc = dt_future_result(o->f, slice, &v);
    Py_END_ALLOW_THREADS if (rc != DT_ETIMEDOUT) break;
    if (PyErr_CheckSignals()) return NULL;
    if (timeout_ms >= 0) {
      timeout_ms -= slice;
      if (timeout_ms <= 0) break;
    }
  }
  if (rc) return core_raise(rc);
  PyObject *r = core_from_value(v, 1);
  dt_value_free(v);
  return r;
}

static PyObject *future_exception_text(FutureObject *o, PyObject *unused) {
  (void)unused;
  const char *m;
  Py_BEGIN_ALLOW_THREADS m = dt_future_exception(o->f);
  Py_END_ALLOW_THREADS if (!m) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(m, (Py_ssize_t)strlen(m), "replace");
}

static PyObject *future_cancel(FutureObject *o, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"force", NULL};
  int force = 0, rc;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|p", kwlist, &force)) return NULL;
  Py_BEGIN_ALLOW_THREADS rc = force ? dt_future_cancel_force(o->f) : dt_future_cancel(o->f);
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

static void done_cb(dt_future *f, void *arg) {
  (void)f;
  PyObject *fn = arg;
  if (core_exiting()) return;
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject *r = PyObject_CallNoArgs(fn);
  if (!r) PyErr_WriteUnraisable(fn);
  Py_XDECREF(r);
  Py_DECREF(fn);
  PyGILState_Release(g);
}

static PyObject *future_add_done_callback(FutureObject *o, PyObject *fn) {
  if (!PyCallable_Check(fn)) return PyErr_Format(PyExc_TypeError, "callback must be callable");
  Py_INCREF(fn);
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = dt_future_add_done_callback(o->f, done_cb, fn);
  Py_END_ALLOW_THREADS if (rc) {
    Py_DECREF(fn);
    return core_raise(rc);
  }
  Py_RETURN_NONE;
}

static PyMethodDef future_methods[] = {
    {"done", (PyCFunction)future_done, METH_NOARGS, "whether the future finished"},
    {"result", (PyCFunction)future_result, METH_VARARGS, "result(timeout_ms=-1)"},
    {"exception_text", (PyCFunction)future_exception_text, METH_NOARGS, "error text or None"},
    {"cancel", (PyCFunction)(void (*)(void))future_cancel, METH_VARARGS | METH_KEYWORDS,
     "cancel the task (force=True: a worker still running it restarts)"},
    {"add_done_callback", (PyCFunction)future_add_done_callback, METH_O,
     "fn() runs once when done (on the client's I/O thread)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef future_getset[] = {{"key", (getter)future_key, NULL, NULL, NULL},
                                      {"status", (getter)future_status, NULL, NULL, NULL},
                                      {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject core_future_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dtask._core.CFuture",
    .tp_basicsize = sizeof(FutureObject),
    .tp_dealloc = (destructor)future_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = future_methods,
    .tp_getset = future_getset,
    .tp_doc = "a dt_future",
};

int core_futures_of(PyObject *l, dt_future ***out, size_t *n) {
  if (!PyList_Check(l)) {
    PyErr_SetString(PyExc_TypeError, "expected a list of CFuture");
    return -1;
  }
  size_t k = (size_t)PyList_GET_SIZE(l);
  dt_future **a = malloc((k ? k : 1) * sizeof(*a));
  if (!a) {
    PyErr_NoMemory();
    return -1;
  }
  for (size_t i = 0; i < k; i++) {
    PyObject *o = PyList_GET_ITEM(l, (Py_ssize_t)i);
    if (!Py_IS_TYPE(o, &core_future_type)) {
      free(a);
      PyErr_SetString(PyExc_TypeError, "expected a list of CFuture");
      return -1;
    }
    a[i] = ((FutureObject *)o)->f;
  }
  *out = a;
  *n = k;
  return 0;
}
