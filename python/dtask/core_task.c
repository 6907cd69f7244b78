/*
 * core_task.c -- the "py:" task handler of a Python worker (python -m dtask
 * worker): runs a pickled Python call on a pool thread, through the execute
 * hook of dtask/serialize.py, and turns its result or error into the
 * task's outcome.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* task_fail: fails t with msg (whole, unformatted); the first failure stays */
static void task_fail(dt_task *t, const char *msg) {
  dt__bind_task_fail(t, msg ? msg : "Python task failed");
}

/* fail_with_pyerr: fails t with "<prefix><type>: <message>" of the pending
 * Python exception (cleared); none_msg when it has no message */
static void fail_with_pyerr(dt_task *t, const char *prefix, const char *none_msg) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  PyObject *s = value ? PyObject_Str(value) : NULL;
  const char *m = s ? PyUnicode_AsUTF8(s) : NULL;
  char buf[1024];
  snprintf(buf, sizeof(buf), "%s%s: %s", prefix, type ? ((PyTypeObject *)type)->tp_name : "Error",
           m ? m : none_msg);
  PyErr_Clear();
  task_fail(t, buf);
  Py_XDECREF(s);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
}

/* attach_refs: the futures the result references (CFutures, from the
 * execute hook) go into the result value as "__dtask_refs__" when it is a
 * pickled map: DT_FUTURE values hold references on the worker client's
 * futures, so their keys stay wanted for as long as the worker holds the
 * result.  A native result (no pickle) references no future. */
static void attach_refs(dt_task *t, dt_value *out, PyObject *refs) {
  dt_future **fs = NULL;
  size_t n = 0;
  if (!PyList_Check(refs) || PyList_GET_SIZE(refs) == 0 || dt_value_type(out) != DT_MAP) return;
  if (core_futures_of(refs, &fs, &n)) {
    PyErr_Clear();
    return;
  }
  dt_value *l = dt_list_new();
  for (size_t i = 0; l && i < n; i++) dt_list_push(l, dt_future_value(fs[i])); /* its own reference */
  (void)t;
  if (l) dt_map_set(out, "__dtask_refs__", l); /* consumes l */
  free(fs);
}

/* the "py:" handler: args are (payload, *dependencies); the hook unpickles
 * the call, runs it and returns (True, result) or (False, error text). */
dt_value *core_py_task(dt_task *t) {
  if (core_exiting() || !core_hook_execute) {
    task_fail(t, "the Python worker is shutting down");
    return NULL;
  }
  /* each pool thread keeps its thread state between tasks */
  static __thread PyThreadState *ts;
  if (!ts) {
    PyGILState_Ensure(); /* never released: the state lives with the thread */
    ts = PyThreadState_Get();
  } else {
    PyEval_RestoreThread(ts);
  }
  dt_value *out = NULL;
  size_t n = dt_task_nargs(t);
  const dt_value *payload = n ? dt_task_arg(t, 0) : NULL;
  PyObject *pl = NULL, *deps = NULL, *r = NULL;
  if (!payload || dt_value_type(payload) != DT_BYTES) {
    task_fail(t, "a Python task needs its pickled call as its first argument");
    goto done;
  }
  pl = core_memview(payload, 0);
  deps = pl ? PyList_New((Py_ssize_t)(n - 1)) : NULL;
  for (size_t i = 1; deps && i < n; i++) {
    PyObject *d = core_from_value(dt_task_arg(t, i), 0);
    if (!d) Py_CLEAR(deps);
    else PyList_SET_ITEM(deps, (Py_ssize_t)(i - 1), d);
  }
  if (deps) r = PyObject_CallFunctionObjArgs(core_hook_execute, pl, deps, NULL);
  if (!r) { /* the hook itself failed (e.g. a dependency would not unpickle) */
    fail_with_pyerr(t, "", "(no message)");
    goto done;
  }
  PyObject *ok, *val;
  if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) < 2 || PyTuple_GET_SIZE(r) > 3) {
    task_fail(t, "internal error: the execute hook returned a wrong value");
    goto done;
  }
  ok = PyTuple_GET_ITEM(r, 0);
  val = PyTuple_GET_ITEM(r, 1);
  if (ok == Py_None) { /* raise dtask.Reschedule() */
    dt_task_reschedule(t);
  } else if (ok == Py_True) {
    out = core_to_value(val, 0);
    if (out && PyTuple_GET_SIZE(r) == 3) attach_refs(t, out, PyTuple_GET_ITEM(r, 2));
    if (!out) {
      char prefix[300];
      snprintf(prefix, sizeof(prefix), "could not serialise the result of %.200s: ",
               dt_task_function(t));
      fail_with_pyerr(t, prefix, "");
    }
  } else {
    const char *m = PyUnicode_Check(val) ? PyUnicode_AsUTF8(val) : NULL;
    if (!m) PyErr_Clear();
    task_fail(t, m ? m : "Python task failed");
  }
done:
  Py_XDECREF(r);
  Py_XDECREF(deps);
  Py_XDECREF(pl);
  PyEval_SaveThread();
  return out;
}

/* ---------------------------------------------------------------- tasks from tasks */

PyObject *core_mod_task_client(PyObject *m, PyObject *unused) {
  (void)m, (void)unused;
  dt_task *t = dt_task_current();
  if (!t) Py_RETURN_NONE;
  dt_client *c;
  Py_BEGIN_ALLOW_THREADS c = dt_task_client(t);
  Py_END_ALLOW_THREADS if (!c) return core_raise(DT_ECONNECT);
  return core_client_borrowed(c);
}

PyObject *core_mod_task_secede(PyObject *m, PyObject *unused) {
  (void)m, (void)unused;
  dt_task *t = dt_task_current();
  if (!t) {
    PyErr_SetString(PyExc_ValueError, "secede() outside a task");
    return NULL;
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = dt_task_secede(t);
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

PyObject *core_mod_task_rejoin(PyObject *m, PyObject *unused) {
  (void)m, (void)unused;
  dt_task *t = dt_task_current();
  if (!t) {
    PyErr_SetString(PyExc_ValueError, "rejoin() outside a task");
    return NULL;
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = dt_task_rejoin(t); /* waits for a slot: without the GIL */
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

PyObject *core_mod_task_info(PyObject *m, PyObject *unused) {
  (void)m, (void)unused;
  dt_task *t = dt_task_current();
  if (!t) Py_RETURN_NONE;
  return Py_BuildValue("{s:s,s:s,s:i,s:s,s:s}", "address", dt_task_worker_address(t), "name",
                       dt_task_worker_name(t), "nthreads", dt_task_worker_nthreads(t),
                       "scheduler", dt_task_scheduler_address(t), "key", dt_task_key(t));
}

/* transfer_log(outgoing): this worker process's transfer log (Dask's
 * incoming_transfer_log / outgoing_transfer_log entries) */
PyObject *core_mod_transfer_log(PyObject *m, PyObject *args) {
  (void)m;
  int outgoing = 0;
  if (!PyArg_ParseTuple(args, "p", &outgoing)) return NULL;
  dt_value *l = dt__worker_transfer_log(outgoing != 0);
  if (!l) return PyErr_NoMemory();
  PyObject *r = core_from_value(l, 1);
  dt_value_free(l);
  return r;
}
