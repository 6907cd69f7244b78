/*
 * core_coord.c -- the coordination primitives and published datasets for
 * dtask.primitives: one function, _core.coord(client, op, names, value,
 * timeout_ms, arg), over dtask.h's coordination calls, with the GIL
 * released while it waits.  A Python value travels as the list
 * [pickled bytes, [futures...]] (the futures its pickle refers to by
 * number); a value put by a C client comes back as its Python object.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the layout of core_client.c's CClient (checked by type below) */
typedef struct {
  PyObject_HEAD
  dt_client *c;
} CoordClientObject;

enum {
  OP_VAR_SET = 1, OP_VAR_GET, OP_VAR_DELETE, OP_QUEUE_PUT, OP_QUEUE_GET, OP_QUEUE_SIZE,
  OP_LOCK_ACQUIRE, OP_LOCK_RELEASE, OP_LOCK_LOCKED, OP_MLOCK_ACQUIRE, OP_MLOCK_RELEASE,
  OP_EVENT_SET, OP_EVENT_CLEAR, OP_EVENT_WAIT, OP_EVENT_IS_SET, OP_SEM_ACQUIRE, OP_SEM_RELEASE,
  OP_SEM_VALUE, OP_DS_PUBLISH, OP_DS_GET, OP_DS_LIST, OP_DS_UNPUBLISH
};

/* to_value: None, or (bytes, [CFuture...]) as [bytes, [futures]] */
static dt_value *to_value(PyObject *o) {
  PyObject *b, *fl;
  if (!PyArg_ParseTuple(o, "SO!", &b, &PyList_Type, &fl)) return NULL;
  dt_value *futs = dt_list_new();
  if (!futs) return (dt_value *)PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(fl); i++) {
    PyObject *f = PyList_GET_ITEM(fl, i);
    if (!Py_IS_TYPE(f, &core_future_type)) {
      core_free_nogil(futs);
      PyErr_SetString(PyExc_TypeError, "coord: futures must be CFutures");
      return NULL;
    }
    dt_value *fv;
    Py_BEGIN_ALLOW_THREADS fv = dt_future_value(((FutureObject *)f)->f);
    Py_END_ALLOW_THREADS
    if (!fv || dt_list_push(futs, fv)) {
      core_free_nogil(futs);
      return (dt_value *)PyErr_NoMemory();
    }
  }
  dt_value *v = dt_list_of(2, dt_bytes(PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b)), futs);
  if (!v) return (dt_value *)PyErr_NoMemory();
  return v;
}

/* from_value: ("pickle", bytes, [CFuture...]) for a value of to_value's
 * shape, else ("native", object); v is consumed */
static PyObject *from_value(dt_value *v) {
  const dt_value *b = dt_list_len(v) == 2 ? dt_list_get(v, 0) : NULL;
  const dt_value *fl = b ? dt_list_get(v, 1) : NULL;
  bool shaped = b && dt_value_type(b) == DT_BYTES && dt_value_type(fl) == DT_LIST;
  for (size_t i = 0; shaped && i < dt_list_len(fl); i++)
    shaped = dt_value_future(dt_list_get(fl, i)) != NULL;
  PyObject *out = NULL;
  if (!shaped) {
    PyObject *o = core_from_value(v, 1);
    if (o) out = Py_BuildValue("(sN)", "native", o);
    core_free_nogil(v);
    return out;
  }
  size_t len;
  const void *p = dt_value_bytes(b, &len);
  size_t n = dt_list_len(fl);
  PyObject *bytes = PyBytes_FromStringAndSize(p, (Py_ssize_t)len);
  PyObject *futs = PyList_New((Py_ssize_t)n);
  for (size_t i = 0; bytes && futs && i < n; i++) {
    dt_future *f = dt_value_future(dt_list_get(fl, i));
    Py_BEGIN_ALLOW_THREADS dt_future_ref(f);
    Py_END_ALLOW_THREADS
    PyObject *w = core_future_wrap(f);
    if (!w) {
      Py_CLEAR(futs);
      break;
    }
    PyList_SET_ITEM(futs, (Py_ssize_t)i, w);
  }
  if (bytes && futs) out = Py_BuildValue("(sOO)", "pickle", bytes, futs);
  Py_XDECREF(bytes);
  Py_XDECREF(futs);
  core_free_nogil(v);
  return out;
}

static PyObject *mod_coord(PyObject *self, PyObject *args) {
  (void)self;
  PyObject *cl, *names_o, *value_o;
  int op, timeout_ms;
  long long arg;
  if (!PyArg_ParseTuple(args, "O!iOOiL", &core_client_type, &cl, &op, &names_o, &value_o,
                        &timeout_ms, &arg))
    return NULL;
  dt_client *c = ((CoordClientObject *)cl)->c;
  if (!c) {
    PyObject *e = Py_BuildValue("(iss)", DT_ECLOSED, dt_err_name(DT_ECLOSED), "the client is closed");
    if (e) PyErr_SetObject(core_error, e);
    Py_XDECREF(e);
    return NULL;
  }
  const char **names = NULL;
  size_t nn = 0;
  if (core_str_list(names_o, &names, &nn) < 0) return NULL;
  if (nn == 0 && op != OP_DS_LIST) {
    free(names);
    PyErr_SetString(PyExc_ValueError, "coord: no name");
    return NULL;
  }
  dt_value *value = NULL;
  if (value_o != Py_None && !(value = to_value(value_o))) {
    free(names);
    return NULL;
  }
  const char *name = nn ? names[0] : NULL;
  int rc = 0;
  int64_t count = 0;
  bool flag = false;
  dt_value *out = NULL;
  char **lnames = NULL;
  size_t nl = 0;
  Py_BEGIN_ALLOW_THREADS switch (op) {
  case OP_VAR_SET: rc = dt_variable_set(c, name, value); break;
  case OP_VAR_GET: rc = dt_variable_get(c, name, timeout_ms, &out); break;
  case OP_VAR_DELETE: rc = dt_variable_delete(c, name); break;
  case OP_QUEUE_PUT: rc = dt_queue_put(c, name, value, arg, timeout_ms); break;
  case OP_QUEUE_GET: rc = dt_queue_get(c, name, timeout_ms, &out); break;
  case OP_QUEUE_SIZE: rc = dt_queue_qsize(c, name, &count); break;
  case OP_LOCK_ACQUIRE: rc = dt_lock_acquire(c, name, timeout_ms); break;
  case OP_LOCK_RELEASE: rc = dt_lock_release(c, name); break;
  case OP_LOCK_LOCKED: rc = dt_lock_locked(c, name, &flag); count = flag; break;
  case OP_MLOCK_ACQUIRE:
    rc = dt_multilock_acquire(c, names, nn, arg > 0 ? (size_t)arg : 0, timeout_ms);
    break;
  case OP_MLOCK_RELEASE: rc = dt_multilock_release(c, names, nn); break;
  case OP_EVENT_SET: rc = dt_event_set(c, name); break;
  case OP_EVENT_CLEAR: rc = dt_event_clear(c, name); break;
  case OP_EVENT_WAIT: rc = dt_event_wait(c, name, timeout_ms); break;
  case OP_EVENT_IS_SET: rc = dt_event_is_set(c, name, &flag); count = flag; break;
  case OP_SEM_ACQUIRE: rc = dt_semaphore_acquire(c, name, (int)arg, timeout_ms); break;
  case OP_SEM_RELEASE: rc = dt_semaphore_release(c, name); break;
  case OP_SEM_VALUE: rc = dt_semaphore_value(c, name, &count); break;
  case OP_DS_PUBLISH: rc = dt_client_publish_dataset(c, name, value, arg != 0); break;
  case OP_DS_GET: rc = dt_client_get_dataset(c, name, &out); break;
  case OP_DS_LIST: rc = dt_client_list_datasets(c, &lnames, &nl); break;
  case OP_DS_UNPUBLISH: rc = dt_client_unpublish_dataset(c, name); break;
  default: rc = DT_EINVAL; break;
  }
  dt_value_free(value);
  Py_END_ALLOW_THREADS
  free(names);
  if (op < OP_VAR_SET || op > OP_DS_UNPUBLISH) {
    PyErr_SetString(PyExc_ValueError, "coord: unknown operation");
    return NULL;
  }
  if (rc) return core_raise(rc);
  if (op == OP_DS_LIST) {
    PyObject *l = PyList_New((Py_ssize_t)nl);
    for (size_t i = 0; l && i < nl; i++) {
      PyObject *s = PyUnicode_FromString(lnames[i]);
      if (!s) Py_CLEAR(l);
      else PyList_SET_ITEM(l, (Py_ssize_t)i, s);
    }
    dt_strings_free(lnames, nl);
    return l;
  }
  if (!out) return Py_BuildValue("(LO)", (long long)count, Py_None);
  PyObject *v = from_value(out);
  if (!v) return NULL;
  return Py_BuildValue("(LN)", (long long)count, v);
}

static PyMethodDef coord_methods[] = {
    {"coord", mod_coord, METH_VARARGS,
     "coord(client, op, names, value, timeout_ms, arg) -> (count, value) or [names]"},
    {NULL, NULL, 0, NULL}};

int core_coord_init(PyObject *m) {
  if (PyModule_AddFunctions(m, coord_methods) < 0) return -1;
  static const char *const ops[] = {
      "VAR_SET", "VAR_GET", "VAR_DELETE", "QUEUE_PUT", "QUEUE_GET", "QUEUE_SIZE", "LOCK_ACQUIRE",
      "LOCK_RELEASE", "LOCK_LOCKED", "MLOCK_ACQUIRE", "MLOCK_RELEASE", "EVENT_SET", "EVENT_CLEAR",
      "EVENT_WAIT", "EVENT_IS_SET", "SEM_ACQUIRE", "SEM_RELEASE", "SEM_VALUE", "DS_PUBLISH",
      "DS_GET", "DS_LIST", "DS_UNPUBLISH"};
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
    char nm[64];
    snprintf(nm, sizeof(nm), "COORD_%s", ops[i]);
    if (PyModule_AddIntConstant(m, nm, (long)(i + 1)) < 0) return -1;
  }
  return 0;
}
