/*
 * _core.c -- the CPython extension under the dtask Python package: the C
 * client, futures and LocalCluster as Python objects, conversion between
 * Python objects and dt_values, and the "py:" task handler that runs Python
 * callables inside a C worker (python -m dtask worker).  This file is the
 * module itself: its state (hooks, error class), wait, roundtrip, the role
 * mains and PyInit__core; core.h lists the files that hold the rest.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

PyObject *core_error;
PyObject *core_hook_dumps, *core_hook_loads, *core_hook_execute;
static volatile int py_exiting;

PyObject *core_raise(int rc) {
  PyObject *args = Py_BuildValue("(iss)", rc, dt_err_name(rc), dt_last_error());
  if (args) {
    PyErr_SetObject(core_error, args);
    Py_DECREF(args);
  }
  return NULL;
}

bool core_exiting(void) {
#if PY_VERSION_HEX >= 0x030D0000
  return py_exiting || Py_IsFinalizing();
#else
  return py_exiting || _Py_IsFinalizing();
#endif
}

/* strings of a Python list (NULL/None: none); *out malloc'd, borrowed items */
int core_str_list(PyObject *l, const char ***out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (!l || l == Py_None) return 0;
  if (!PyList_Check(l)) {
    PyErr_SetString(PyExc_TypeError, "expected a list of str");
    return -1;
  }
  size_t k = (size_t)PyList_GET_SIZE(l);
  const char **a = calloc(k ? k : 1, sizeof(char *));
  if (!a) {
    PyErr_NoMemory();
    return -1;
  }
  for (size_t i = 0; i < k; i++) {
    a[i] = PyUnicode_Check(PyList_GET_ITEM(l, i)) ? PyUnicode_AsUTF8(PyList_GET_ITEM(l, i)) : NULL;
    if (!a[i]) {
      free(a);
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "expected a list of str");
      return -1;
    }
  }
  *out = a;
  *n = k;
  return 0;
}


/* ---------------------------------------------------------------- module functions */

static PyObject *mod_set_hooks(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *d, *l, *e;
  if (!PyArg_ParseTuple(args, "OOO", &d, &l, &e)) return NULL;
  Py_XSETREF(core_hook_dumps, Py_NewRef(d));
  Py_XSETREF(core_hook_loads, Py_NewRef(l));
  Py_XSETREF(core_hook_execute, Py_NewRef(e));
  Py_RETURN_NONE;
}

/* set_error_class(cls): errors are raised as cls(code, name, message) */
static PyObject *mod_set_error_class(PyObject *m, PyObject *cls) {
  (void)m;
  if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_Exception))
    return PyErr_Format(PyExc_TypeError, "set_error_class needs an Exception subclass");
  Py_XSETREF(core_error, Py_NewRef(cls));
  Py_RETURN_NONE;
}

static PyObject *mod_exiting(PyObject *m, PyObject *unused) {
  (void)m, (void)unused;
  py_exiting = 1;
  Py_RETURN_NONE;
}

/* run a role's main (worker, scheduler) with argv, the GIL released */
static PyObject *run_main(PyObject *args, int (*fn)(int, char **)) {
  PyObject *l;
  if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &l)) return NULL;
  const char **a;
  size_t n;
  if (core_str_list(l, &a, &n)) return NULL;
  char **argv = calloc(n + 1, sizeof(char *));
  for (size_t i = 0; argv && i < n; i++) argv[i] = strdup(a[i]);
  free(a);
  if (!argv) return PyErr_NoMemory();
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = fn((int)n, argv);
  Py_END_ALLOW_THREADS for (size_t i = 0; i < n; i++) free(argv[i]);
  free(argv);
  return PyLong_FromLong(rc);
}

static PyObject *mod_worker_main(PyObject *m, PyObject *args) {
  (void)m;
  if (dt_task_register("py:", core_py_task)) return core_raise(DT_EINVAL);
  return run_main(args, dt__worker_main);
}

/* worker_inproc(argv): a worker on this thread of this process
 * (LocalCluster(processes=False)) until worker_inproc_stop() */
static PyObject *mod_worker_inproc(PyObject *m, PyObject *args) {
  (void)m;
  if (dt_task_register("py:", core_py_task)) return core_raise(DT_EINVAL);
  return run_main(args, dt__worker_inproc);
}

static PyObject *mod_worker_inproc_stop(PyObject *m, PyObject *unused) {
  (void)m, (void)unused;
  return PyBool_FromLong(dt__worker_inproc_stop());
}

static PyObject *mod_scheduler_main(PyObject *m, PyObject *args) {
  (void)m;
  return run_main(args, dt__scheduler_main);
}

/* wait(futures, timeout_ms, first_completed) -> True, or False on timeout */
static PyObject *mod_wait(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *l;
  int timeout_ms = -1, first = 0;
  if (!PyArg_ParseTuple(args, "O|ip", &l, &timeout_ms, &first)) return NULL;
  dt_future **fs;
  size_t n;
  if (core_futures_of(l, &fs, &n)) return NULL;
  int rc;
  for (;;) {
    int slice = timeout_ms < 0 || timeout_ms > 200 ? 200 : timeout_ms;
    if (dt_task_current()) slice = timeout_ms; /* a task (no signals there): one wait, seceded once */
    dt_wait_mode mode = first ? DT_FIRST_COMPLETED : DT_ALL_COMPLETED;
    Py_BEGIN_ALLOW_THREADS rc = dt_wait(fs, n, slice, mode);
    Py_END_ALLOW_THREADS if (rc != DT_ETIMEDOUT) break;
    if (PyErr_CheckSignals()) {
      free(fs);
      return NULL;
    }
    if (timeout_ms >= 0) {
      timeout_ms -= slice;
      if (timeout_ms <= 0) break;
    }
  }
  free(fs);
  if (rc == DT_ETIMEDOUT) Py_RETURN_FALSE;
  if (rc) return core_raise(rc);
  Py_RETURN_TRUE;
}

/* roundtrip(obj, native=False): obj through a dt_value and back (tests) */
static PyObject *mod_roundtrip(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *o;
  int native = 0;
  if (!PyArg_ParseTuple(args, "O|p", &o, &native)) return NULL;
  dt_value *v = core_to_value(o, native);
  if (!v) return NULL;
  PyObject *r = core_from_value(v, 0);
  dt_value_free(v);
  return r;
}

/* log_event(topic, msg): dt_log_event, from a task running on a worker */
static PyObject *mod_log_event(PyObject *self, PyObject *args) {
  (void)self;
  const char *topic;
  PyObject *msg;
  if (!PyArg_ParseTuple(args, "sO", &topic, &msg)) return NULL;
  dt_value *v = core_to_value(msg, 1);
  if (!v) return NULL;
  if (dt_log_event(topic, v) != 0) return core_raise(DT_EINVAL);
  Py_RETURN_NONE;
}

static PyMethodDef mod_methods[] = {
    {"set_hooks", mod_set_hooks, METH_VARARGS, "set_hooks(dumps, loads, execute)"},
    {"set_error_class", mod_set_error_class, METH_O, "set_error_class(cls)"},
    {"_exiting", mod_exiting, METH_NOARGS, "the interpreter is exiting"},
    {"worker_main", mod_worker_main, METH_VARARGS, "worker_main(argv): run a worker"},
    {"worker_inproc", mod_worker_inproc, METH_VARARGS, "worker_inproc(argv): a worker on this thread"},
    {"worker_inproc_stop", mod_worker_inproc_stop, METH_NOARGS, "stop the in-process worker"},
    {"scheduler_main", mod_scheduler_main, METH_VARARGS, "scheduler_main(argv): run a scheduler"},
    {"wait", mod_wait, METH_VARARGS, "wait(futures, timeout_ms=-1, first_completed=False)"},
    {"roundtrip", mod_roundtrip, METH_VARARGS, "roundtrip(obj, native=False)"},
    {"task_client", core_mod_task_client, METH_NOARGS, "the worker's client (inside a task)"},
    {"task_secede", core_mod_task_secede, METH_NOARGS, "secede the current task"},
    {"task_rejoin", core_mod_task_rejoin, METH_NOARGS, "rejoin the current task"},
    {"task_info", core_mod_task_info, METH_NOARGS, "where the current task runs, or None"},
    {"transfer_log", core_mod_transfer_log, METH_VARARGS, "this worker's transfer log"},
    {"log_event", mod_log_event, METH_VARARGS, "log_event(topic, msg): from a task on a worker"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef core_module = {PyModuleDef_HEAD_INIT, "dtask._core",
                                         "the C core of dtask", -1, mod_methods,
                                         NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void) {
  PyObject *m = PyModule_Create(&core_module);
  if (!m) return NULL;
  PyTypeObject *types[] = {&core_buffer_type, &core_future_type, &core_client_type,
                           &core_cluster_type};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
    if (PyType_Ready(types[i]) < 0) return NULL;
  Py_INCREF(&core_future_type);
  PyModule_AddObject(m, "CFuture", (PyObject *)&core_future_type);
  Py_INCREF(&core_client_type);
  PyModule_AddObject(m, "CClient", (PyObject *)&core_client_type);
  Py_INCREF(&core_cluster_type);
  PyModule_AddObject(m, "CLocalCluster", (PyObject *)&core_cluster_type);
  core_error = PyErr_NewException("dtask._core.Error", PyExc_Exception, NULL);
  Py_INCREF(core_error);
  PyModule_AddObject(m, "Error", core_error);
  PyModule_AddIntConstant(m, "LARGE_BYTES", DT_LARGE_BYTES);
#define ADD_ERR(name, val, desc) PyModule_AddIntConstant(m, "DT_" #name, val);
  DT_ERRNO_MAP(ADD_ERR)
#undef ADD_ERR
  if (core_actor_init(m) < 0) return NULL;
  if (core_coord_init(m) < 0) return NULL;
  if (core_admin_init(m) < 0) return NULL;
  if (core_graph_init(m) < 0) return NULL;
  return m;
}
