/*
 * core_actor.c -- actors in Python.  Client side: actor_call(client, key,
 * address, method, attribute, payload) sends one call straight to the
 * actor's worker (dt_actor_call / dt_actor_get) and returns a CFuture.
 * Worker side: the actor type "py:" (every Python actor class: the task
 * "actor:py:<Class>") whose create runs the pickled constructor call and
 * keeps the instance, and whose call runs a method (or reads an attribute)
 * under the GIL through dtask.actor's _worker_create / _worker_call.  The
 * worker runs the calls of one actor one at a time (src/worker/actor.c).
 */
#include "core.h"

#include <stdio.h>
#include <string.h>

/* the layout of core_client.c's ClientObject (its first field after the
 * header is the dt_client) */
typedef struct {
  PyObject_HEAD
  dt_client *c;
} client_view;

/* actor_call(client, key, address, method, attribute, payload) -> CFuture */
static PyObject *mod_actor_call(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *co;
  const char *key, *addr, *method;
  int attribute;
  Py_buffer pl;
  if (!PyArg_ParseTuple(args, "O!sssp|y*", &core_client_type, &co, &key, &addr, &method,
                        &attribute, &pl))
    return NULL;
  /* the payload is optional: attribute reads carry none */
  bool have_pl = PyTuple_GET_SIZE(args) > 5;
  dt_client *c = ((client_view *)co)->c;
  if (!c) {
    if (have_pl) PyBuffer_Release(&pl);
    return core_raise(DT_ECLOSED);
  }
  dt_value *argv = NULL;
  if (!attribute) {
    dt_value *b = have_pl ? dt_bytes(pl.buf, (size_t)pl.len) : dt_bytes("", 0);
    argv = b ? dt_list_of(1, b) : NULL;
    if (!argv) {
      if (have_pl) PyBuffer_Release(&pl);
      return PyErr_NoMemory();
    }
  }
  if (have_pl) PyBuffer_Release(&pl);
  dt_actor *a = NULL;
  dt_future *f = NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = dt_actor_new(c, key, addr, &a);
  if (rc == 0)
    rc = attribute ? dt_actor_get(a, method, &f) : dt_actor_call(a, method, argv, NULL, &f);
  else
    dt_value_free(argv);
  dt_actor_free(a);
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  return core_future_wrap(f);
}

static PyMethodDef actor_methods[] = {
    {"actor_call", mod_actor_call, METH_VARARGS,
     "actor_call(client, key, address, method, attribute, payload=b'') -> CFuture"},
    {NULL, NULL, 0, NULL}};

/* ---------------------------------------------------------------- worker side */

/* dtask.actor's function name (a new reference), or NULL with an exception */
static PyObject *hook(const char *name) {
  PyObject *mod = PyImport_ImportModule("dtask.actor");
  if (!mod) return NULL;
  PyObject *fn = PyObject_GetAttrString(mod, name);
  Py_DECREF(mod);
  return fn;
}

/* fail t with the pending Python exception (cleared) */
static void fail_pyerr(dt_task *t, const char *what) {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  PyObject *s = value ? PyObject_Str(value) : NULL;
  const char *msg = s ? PyUnicode_AsUTF8(s) : NULL;
  if (!msg) PyErr_Clear();
  dt_task_fail(t, "%s: %s: %s", what, type ? ((PyTypeObject *)type)->tp_name : "Error",
               msg ? msg : "(no message)");
  Py_XDECREF(s);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(tb);
}

/* take (ok, value) from r (stolen): ok -> *out = value (new ref); else fail t
 * with the text; 0 when ok */
static int outcome(dt_task *t, PyObject *r, PyObject **out) {
  int rc = -1;
  if (!r || !PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
    if (!r) fail_pyerr(t, "internal error in dtask.actor");
    else dt_task_fail(t, "internal error: dtask.actor returned a wrong value");
  } else if (PyTuple_GET_ITEM(r, 0) == Py_True) {
    *out = PyTuple_GET_ITEM(r, 1);
    Py_INCREF(*out);
    rc = 0;
  } else {
    PyObject *v = PyTuple_GET_ITEM(r, 1);
    const char *m = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
    if (!m) PyErr_Clear();
    dt__bind_task_fail(t, m ? m : "Python actor call failed");
  }
  Py_XDECREF(r);
  return rc;
}

static void *py_create(dt_task *t) {
  if (core_exiting()) {
    dt_task_fail(t, "the Python worker is shutting down");
    return NULL;
  }
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject *obj = NULL, *fn = hook("_worker_create"), *deps = NULL, *pl = NULL;
  size_t n = dt_task_nargs(t);
  const dt_value *payload = n ? dt_task_arg(t, 0) : NULL;
  if (!fn) {
    fail_pyerr(t, "cannot import dtask.actor");
  } else if (!payload || dt_value_type(payload) != DT_BYTES) {
    dt_task_fail(t, "a Python actor needs its pickled constructor call as its first argument");
  } else {
    pl = core_memview(payload, 0);
    deps = pl ? PyList_New((Py_ssize_t)(n - 1)) : NULL;
    for (size_t i = 1; deps && i < n; i++) {
      PyObject *d = core_from_value(dt_task_arg(t, i), 0);
      if (!d) Py_CLEAR(deps);
      else PyList_SET_ITEM(deps, (Py_ssize_t)(i - 1), d);
    }
    if (!deps) fail_pyerr(t, "cannot read the actor's arguments");
    else outcome(t, PyObject_CallFunctionObjArgs(fn, pl, deps, NULL), &obj);
  }
  Py_XDECREF(fn);
  Py_XDECREF(deps);
  Py_XDECREF(pl);
  PyGILState_Release(g);
  return obj;
}

static dt_value *py_call(void *state, const char *method, bool attribute, dt_task *t) {
  if (core_exiting()) return dt_task_fail(t, "the Python worker is shutting down");
  /* each actor thread keeps its thread state between calls (as pool
   * threads do in core_task.c): no state made and dropped per call */
  static __thread PyThreadState *ts;
  if (!ts) {
    PyGILState_Ensure(); /* never released: the state lives with the thread */
    ts = PyThreadState_Get();
  } else {
    PyEval_RestoreThread(ts);
  }
  dt_value *out = NULL;
  PyObject *fn = hook("_worker_call"), *pl = NULL, *res = NULL;
  const dt_value *payload = attribute || !dt_task_nargs(t) ? NULL : dt_task_arg(t, 0);
  if (!fn) {
    fail_pyerr(t, "cannot import dtask.actor");
  } else if (!attribute && (!payload || dt_value_type(payload) != DT_BYTES)) {
    dt_task_fail(t, "a Python actor call needs its pickled arguments");
  } else {
    pl = payload ? core_memview(payload, 0) : Py_None;
    if (pl == Py_None) Py_INCREF(pl);
    if (!pl) {
      fail_pyerr(t, "cannot read the call's arguments");
    } else if (outcome(t, PyObject_CallFunction(fn, "OsOO", (PyObject *)state, method,
                                                attribute ? Py_True : Py_False, pl),
                       &res) == 0) {
      out = core_to_value(res, 0);
      if (!out) {
        char what[300];
        snprintf(what, sizeof(what), "could not serialise the result of %.200s", method);
        fail_pyerr(t, what);
      }
    }
  }
  Py_XDECREF(res);
  Py_XDECREF(pl);
  Py_XDECREF(fn);
  PyEval_SaveThread();
  return out;
}

static void py_free(void *state) {
  if (!state || core_exiting() || !Py_IsInitialized()) return;
  PyGILState_STATE g = PyGILState_Ensure();
  Py_DECREF((PyObject *)state);
  PyGILState_Release(g);
}

int core_actor_init(PyObject *m) {
  if (PyModule_AddFunctions(m, actor_methods) < 0) return -1;
  if (dt_actor_register("py:", py_create, py_call, py_free)) {
    PyErr_SetString(PyExc_RuntimeError, "cannot register the Python actor type");
    return -1;
  }
  return 0;
}
