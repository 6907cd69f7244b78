/*
 * _core.c -- the CPython extension under the dtask Python package: the C
 * client, futures and LocalCluster as Python objects, conversion between
 * Python objects and dt_values, and the "py:" task handler that runs Python
 * callables inside a C worker (python -m dtask worker).
 *
 * Values.  None, bool, int (64-bit), float, str and bytes travel as native
 * dt_values, so C tasks and Python tasks read each other's results.  Any
 * other object is pickled (protocol 5, cloudpickle) by a hook from
 * dtask/serialize.py into the map {"__dtask_pickle__": [main, buf...]}:
 * out-of-band buffers (NumPy arrays...) are separate bytes values, sent as
 * their own frames; large ones are wrapped, not copied, and on the way in
 * they are read in place through read-only memoryviews.
 *
 * The GIL.  Every call into the C client that can block or take the
 * client's lock runs with the GIL released: the client's I/O thread takes
 * the GIL itself (done callbacks, releasing wrapped Python buffers), so
 * holding the GIL while waiting for the client's lock could deadlock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "dtask.h"
#include "../../src/cli/roles.h"
#include "../../src/proto/proto.h"
#include "../../src/task/task.h"

#define PICKLE_KEY "__dtask_pickle__"
#define WRAP_MIN DT_LARGE_BYTES /* smaller buffers are copied */

static PyObject *CoreError;               /* _core.Error(code, name, message) */
static PyObject *hook_dumps, *hook_loads; /* serialize.dumps / loads */
static PyObject *hook_execute;            /* serialize.execute */
static volatile int py_exiting;

static PyTypeObject BufferType, FutureType, ClientType, ClusterType;

static PyObject *raise_dt(int rc) {
  PyObject *args = Py_BuildValue("(iss)", rc, dt_err_name(rc), dt_last_error());
  if (args) {
    PyErr_SetObject(CoreError, args);
    Py_DECREF(args);
  }
  return NULL;
}

static bool is_exiting(void) {
#if PY_VERSION_HEX >= 0x030D0000
  return py_exiting || Py_IsFinalizing();
#else
  return py_exiting || _Py_IsFinalizing();
#endif
}

/* free_nogil: values holding futures take the client's lock when freed */
static void free_nogil(dt_value *v) {
  if (!v) return;
  Py_BEGIN_ALLOW_THREADS dt_value_free(v);
  Py_END_ALLOW_THREADS
}

/* ---------------------------------------------------------------- Buffer */

/* A buffer over a bytes dt_value (kept alive by a reference).  Read-only
 * on workers, where a value is shared by every task that reads it;
 * writable in a client for data it received (as Dask's results are). */
typedef struct {
  PyObject_HEAD
  dt_value *v;
  int writable;
} BufferObject;

static void pybuf_release(void *arg);

static PyObject *buffer_new(const dt_value *v, int writable) {
  BufferObject *b = PyObject_New(BufferObject, &BufferType);
  if (!b) return NULL;
  b->v = dt_value_ref((dt_value *)v);
  const dt_blob *blob = v->u.bytes.blob;
  /* never hand out for writing a Python object's own buffer (a scattered
   * array); received data, even mapped from a peer's memfd, is private
   * (MAP_PRIVATE: copy on write) */
  b->writable = writable && blob && blob->free_fn != pybuf_release;
  return (PyObject *)b;
}

static void buffer_dealloc(BufferObject *b) {
  dt_value_free(b->v);
  PyObject_Free(b);
}

static int buffer_getbuffer(BufferObject *b, Py_buffer *view, int flags) {
  size_t len = 0;
  const void *p = dt_value_bytes(b->v, &len);
  return PyBuffer_FillInfo(view, (PyObject *)b, (void *)(p ? p : ""), (Py_ssize_t)len,
                           !(b->writable && p), flags);
}

static PyBufferProcs buffer_procs = {(getbufferproc)buffer_getbuffer, NULL};

static PyTypeObject BufferType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dtask._core.Buffer",
    .tp_basicsize = sizeof(BufferObject),
    .tp_dealloc = (destructor)buffer_dealloc,
    .tp_as_buffer = &buffer_procs,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "read-only bytes of a dtask value",
};

static PyObject *memview_of(const dt_value *v, int writable) {
  PyObject *b = buffer_new(v, writable);
  if (!b) return NULL;
  PyObject *m = PyMemoryView_FromObject(b);
  Py_DECREF(b);
  return m;
}

/* ---------------------------------------------------------------- Future */

typedef struct {
  PyObject_HEAD
  dt_future *f;
} FutureObject;

static PyObject *future_wrap(dt_future *f) {
  FutureObject *o = PyObject_New(FutureObject, &FutureType);
  if (!o) {
    Py_BEGIN_ALLOW_THREADS dt_future_release(f);
    Py_END_ALLOW_THREADS return NULL;
  }
  o->f = f;
  return (PyObject *)o;
}

/* ---------------------------------------------------------------- to value */

static void pybuf_release(void *arg) {
  Py_buffer *view = arg;
  if (is_exiting()) return; /* the interpreter is going: leave it */
  PyGILState_STATE g = PyGILState_Ensure();
  PyBuffer_Release(view);
  PyGILState_Release(g);
  PyMem_RawFree(view);
}

/* bytes_of: a bytes value with the contents of a buffer object; large ones
 * wrap the object's memory (kept alive by a buffer export). */
static dt_value *bytes_of(PyObject *o) {
  Py_buffer *view = PyMem_RawMalloc(sizeof(Py_buffer));
  if (!view) return (dt_value *)PyErr_NoMemory();
  if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) != 0) {
    PyMem_RawFree(view);
    return NULL;
  }
  dt_value *v;
  if (view->len < WRAP_MIN) {
    v = dt_bytes(view->buf, (size_t)view->len);
    PyBuffer_Release(view);
    PyMem_RawFree(view);
  } else {
    v = dt__bytes_take_arg(view->buf, (size_t)view->len, pybuf_release, view);
  }
  if (!v) PyErr_NoMemory();
  return v;
}

static dt_value *pickled(PyObject *o) {
  PyObject *r = PyObject_CallOneArg(hook_dumps, o);
  if (!r) return NULL;
  dt_value *list = NULL, *map = NULL;
  PyObject *bufs;
  PyObject *main_;
  if (!PyArg_ParseTuple(r, "OO!", &main_, &PyList_Type, &bufs)) goto out;
  list = dt_list_new();
  if (!list) goto nomem;
  dt_value *m = bytes_of(main_);
  if (!m || dt_list_push(list, m)) goto fail;
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(bufs); i++) {
    dt_value *b = bytes_of(PyList_GET_ITEM(bufs, i));
    if (!b || dt_list_push(list, b)) goto fail;
  }
  map = dt_map_new();
  if (!map) goto nomem;
  if (dt_map_set(map, PICKLE_KEY, list)) {
    list = NULL;
    goto nomem;
  }
  list = NULL;
  goto out;
nomem:
  PyErr_NoMemory();
fail:
  dt_value_free(list);
  dt_value_free(map);
  list = map = NULL;
out:
  Py_DECREF(r);
  return map;
}

/* to_value: o as a new dt_value.  native: lists, tuples and dicts with str
 * keys become DT_LIST / DT_MAP (arguments of C tasks); otherwise they are
 * pickled (results of Python tasks keep their exact types). */
static dt_value *to_value(PyObject *o, int native) {
  dt_value *v = NULL;
  if (o == Py_None) v = dt_nil();
  else if (PyBool_Check(o)) v = dt_bool(o == Py_True);
  else if (PyLong_CheckExact(o) || (native && PyLong_Check(o))) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (x == -1 && PyErr_Occurred()) return NULL;
    if (overflow) return pickled(o);
    v = dt_int(x);
  } else if (PyFloat_CheckExact(o) || (native && PyFloat_Check(o))) {
    v = dt_double(PyFloat_AS_DOUBLE(o));
  } else if (PyUnicode_CheckExact(o) || (native && PyUnicode_Check(o))) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) {
      PyErr_Clear(); /* lone surrogates: keep the exact string */
      return pickled(o);
    }
    v = dt_strn(s, (size_t)n);
  } else if (PyBytes_CheckExact(o)) {
    return bytes_of(o);
  } else if (Py_IS_TYPE(o, &FutureType)) {
    dt_future *f = ((FutureObject *)o)->f;
    Py_BEGIN_ALLOW_THREADS v = dt_future_value(f); /* takes the client's lock */
    Py_END_ALLOW_THREADS
  } else if (native && (PyList_Check(o) || PyTuple_Check(o))) {
    PyObject *seq = PySequence_Fast(o, "");
    if (!seq) return NULL;
    v = dt_list_new();
    for (Py_ssize_t i = 0; v && i < PySequence_Fast_GET_SIZE(seq); i++) {
      dt_value *it = to_value(PySequence_Fast_GET_ITEM(seq, i), native);
      if (!it || dt_list_push(v, it)) {
        free_nogil(v);
        Py_DECREF(seq);
        return it ? (dt_value *)PyErr_NoMemory() : NULL;
      }
    }
    Py_DECREF(seq);
  } else if (native && PyDict_Check(o)) {
    v = dt_map_new();
    PyObject *k, *x;
    Py_ssize_t pos = 0;
    while (v && PyDict_Next(o, &pos, &k, &x)) {
      if (!PyUnicode_Check(k)) {
        free_nogil(v);
        PyErr_Format(PyExc_TypeError, "a dict passed to a C task needs str keys, not %.100s",
                     Py_TYPE(k)->tp_name);
        return NULL;
      }
      const char *ks = PyUnicode_AsUTF8(k);
      dt_value *it = ks ? to_value(x, native) : NULL;
      if (!it || dt_map_set(v, ks, it)) {
        free_nogil(v);
        return it ? (dt_value *)PyErr_NoMemory() : NULL;
      }
    }
  } else {
    return pickled(o);
  }
  if (!v) PyErr_NoMemory();
  return v;
}

/* ---------------------------------------------------------------- from value */

/* from_value: v as a Python object.  writable: out-of-band buffers of
 * pickled values may be writable (in a client; see BufferObject). */
static PyObject *from_value(const dt_value *v, int writable) {
  switch (dt_value_type(v)) {
  case DT_NIL: Py_RETURN_NONE;
  case DT_BOOL: return PyBool_FromLong(dt_value_bool(v));
  case DT_INT: return PyLong_FromLongLong(dt_value_int(v));
  case DT_DOUBLE: return PyFloat_FromDouble(dt_value_double(v));
  case DT_STR: {
    size_t n;
    const char *s = dt_value_str(v, &n);
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "surrogateescape");
  }
  case DT_BYTES: {
    size_t n;
    const void *p = dt_value_bytes(v, &n);
    return PyBytes_FromStringAndSize(p ? p : "", (Py_ssize_t)n);
  }
  case DT_LIST: {
    size_t n = dt_list_len(v);
    PyObject *l = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; l && i < n; i++) {
      PyObject *it = from_value(dt_list_get(v, i), writable);
      if (!it) {
        Py_DECREF(l);
        return NULL;
      }
      PyList_SET_ITEM(l, (Py_ssize_t)i, it);
    }
    return l;
  }
  case DT_MAP: {
    const dt_value *pk = dt_map_len(v) == 1 ? dt_map_get(v, PICKLE_KEY) : NULL;
    if (pk && dt_value_type(pk) == DT_LIST && dt_list_len(pk) >= 1) {
      size_t n = dt_list_len(pk);
      for (size_t i = 0; i < n; i++)
        if (dt_value_type(dt_list_get(pk, i)) != DT_BYTES) {
          PyErr_SetString(PyExc_ValueError, "malformed pickled value");
          return NULL;
        }
      PyObject *main_ = memview_of(dt_list_get(pk, 0), 0);
      PyObject *bufs = main_ ? PyList_New((Py_ssize_t)(n - 1)) : NULL;
      for (size_t i = 1; bufs && i < n; i++) {
        PyObject *m = memview_of(dt_list_get(pk, i), writable);
        if (!m) Py_CLEAR(bufs);
        else PyList_SET_ITEM(bufs, (Py_ssize_t)(i - 1), m);
      }
      PyObject *r = bufs ? PyObject_CallFunctionObjArgs(hook_loads, main_, bufs, NULL) : NULL;
      Py_XDECREF(main_);
      Py_XDECREF(bufs);
      return r;
    }
    PyObject *d = PyDict_New();
    for (size_t i = 0; d && i < dt_map_len(v); i++) {
      PyObject *x = from_value(dt_map_value_at(v, i), writable);
      if (!x || PyDict_SetItemString(d, dt_map_key_at(v, i), x)) Py_CLEAR(d);
      Py_XDECREF(x);
    }
    return d;
  }
  case DT_FUTURE: return PyUnicode_FromString(v->u.fut.key);
  }
  PyErr_SetString(PyExc_ValueError, "unknown value type");
  return NULL;
}

/* ---------------------------------------------------------------- Future methods */

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
    Py_BEGIN_ALLOW_THREADS rc = dt_future_result(o->f, slice, &v);
    Py_END_ALLOW_THREADS if (rc != DT_ETIMEDOUT) break;
    if (PyErr_CheckSignals()) return NULL;
    if (timeout_ms >= 0) {
      timeout_ms -= slice;
      if (timeout_ms <= 0) break;
    }
  }
  if (rc) return raise_dt(rc);
  PyObject *r = from_value(v, 1);
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

static PyObject *future_cancel(FutureObject *o, PyObject *unused) {
  (void)unused;
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = dt_future_cancel(o->f);
  Py_END_ALLOW_THREADS if (rc) return raise_dt(rc);
  Py_RETURN_NONE;
}

static void done_cb(dt_future *f, void *arg) {
  (void)f;
  PyObject *fn = arg;
  if (is_exiting()) return;
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
    return raise_dt(rc);
  }
  Py_RETURN_NONE;
}

static PyMethodDef future_methods[] = {
    {"done", (PyCFunction)future_done, METH_NOARGS, "whether the future finished"},
    {"result", (PyCFunction)future_result, METH_VARARGS, "result(timeout_ms=-1)"},
    {"exception_text", (PyCFunction)future_exception_text, METH_NOARGS, "error text or None"},
    {"cancel", (PyCFunction)future_cancel, METH_NOARGS, "cancel the task"},
    {"add_done_callback", (PyCFunction)future_add_done_callback, METH_O,
     "fn() runs once when done (on the client's I/O thread)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef future_getset[] = {{"key", (getter)future_key, NULL, NULL, NULL},
                                      {"status", (getter)future_status, NULL, NULL, NULL},
                                      {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject FutureType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dtask._core.CFuture",
    .tp_basicsize = sizeof(FutureObject),
    .tp_dealloc = (destructor)future_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = future_methods,
    .tp_getset = future_getset,
    .tp_doc = "a dt_future",
};

/* ---------------------------------------------------------------- Client */

typedef struct {
  PyObject_HEAD
  dt_client *c;
} ClientObject;

static int client_init(ClientObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"address", "timeout_ms", "name", "auth_file", "scheduler_file", NULL};
  const char *address = NULL, *name = NULL, *auth = NULL, *sfile = NULL;
  int timeout_ms = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "z|izzz", kwlist, &address, &timeout_ms, &name, &auth,
                                   &sfile))
    return -1;
  if (self->c) return 0;
  dt_client_opts o = {.address = address, .timeout_ms = timeout_ms, .name = name, .auth_file = auth,
                      .scheduler_file = sfile};
  int rc;
  dt_client *c = NULL;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_connect(&o, &c);
  Py_END_ALLOW_THREADS if (rc) {
    raise_dt(rc);
    return -1;
  }
  self->c = c;
  return 0;
}

static void client_close_now(ClientObject *self) {
  dt_client *c = self->c;
  self->c = NULL;
  if (c) {
    Py_BEGIN_ALLOW_THREADS dt_client_close(c);
    Py_END_ALLOW_THREADS
  }
}

static void client_dealloc(ClientObject *self) {
  client_close_now(self);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static bool client_ok(ClientObject *self) {
  if (self->c) return true;
  PyObject *args = Py_BuildValue("(iss)", DT_ECLOSED, dt_err_name(DT_ECLOSED), "the client is closed");
  if (args) PyErr_SetObject(CoreError, args);
  Py_XDECREF(args);
  return false;
}

static PyObject *client_close(ClientObject *self, PyObject *unused) {
  (void)unused;
  client_close_now(self);
  Py_RETURN_NONE;
}

/* strings of a Python list (NULL/None: none); *out malloc'd, borrowed items */
static int str_list(PyObject *l, const char ***out, size_t *n) {
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

typedef struct {
  dt_submit_opts o;
  const char **workers;
} sopts;

static int parse_opts(PyObject *workers, int priority, int pure, int allow_other,
                      const char *resources, int retries, sopts *s) {
  memset(s, 0, sizeof(*s));
  if (str_list(workers, &s->workers, &s->o.n_workers)) return -1;
  s->o.workers = s->workers;
  s->o.priority = priority;
  s->o.pure = pure ? DT_YES : DT_NO;
  s->o.allow_other_workers = allow_other;
  s->o.resources = resources;
  s->o.retries = retries;
  return 0;
}

/* submit(func, args, kwargs=None, key=None, pure=True, priority=0,
 *        workers=None, allow_other_workers=False, resources=None, retries=0) */
static PyObject *client_submit(ClientObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"func", "args", "kwargs", "key", "pure", "priority", "workers",
                           "allow_other_workers", "resources", "retries", NULL};
  const char *func, *key = NULL, *resources = NULL;
  PyObject *pargs, *pkw = Py_None, *workers = Py_None;
  int pure = 1, priority = 0, allow_other = 0, retries = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "sO!|OzpiOpzi", kwlist, &func, &PyList_Type, &pargs,
                                   &pkw, &key, &pure, &priority, &workers, &allow_other,
                                   &resources, &retries))
    return NULL;
  if (!client_ok(self)) return NULL;
  dt_value *a = to_value(pargs, 1);
  if (!a) return NULL;
  dt_value *k = NULL;
  if (pkw != Py_None) {
    if (!PyDict_Check(pkw)) {
      free_nogil(a);
      return PyErr_Format(PyExc_TypeError, "kwargs must be a dict");
    }
    k = to_value(pkw, 1);
    if (!k) {
      free_nogil(a);
      return NULL;
    }
  }
  sopts s;
  if (parse_opts(workers, priority, pure, allow_other, resources, retries, &s)) {
    free_nogil(a);
    free_nogil(k);
    return NULL;
  }
  s.o.key = key;
  dt_future *f = NULL;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_submit(c, func, a, k, &s.o, &f);
  Py_END_ALLOW_THREADS free(s.workers);
  if (rc) return raise_dt(rc);
  return future_wrap(f);
}

/* graph_submit(nodes, outputs, priority=0, workers=None, allow_other_workers=False,
 *              resources=None, retries=0) -> list of CFuture, one per output.
 * Each node is (key, func, payload, deps) in dependency order: the task gets
 * (payload, *deps), each dep the key of an earlier node or a CFuture. */
static PyObject *client_graph_submit(ClientObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"nodes", "outputs", "priority", "workers", "allow_other_workers",
                           "resources", "retries", NULL};
  PyObject *nodes, *outputs, *workers = Py_None;
  int priority = 0, allow_other = 0, retries = 0;
  const char *resources = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O!|iOpzi", kwlist, &PyList_Type, &nodes,
                                   &PyList_Type, &outputs, &priority, &workers, &allow_other,
                                   &resources, &retries))
    return NULL;
  if (!client_ok(self)) return NULL;
  sopts s;
  if (parse_opts(workers, priority, 1, allow_other, resources, retries, &s)) return NULL;
  Py_ssize_t n = PyList_GET_SIZE(nodes), no = PyList_GET_SIZE(outputs);
  dt_graph *g = dt_graph_new();
  dt_value **refs = calloc((size_t)(n ? n : 1), sizeof(dt_value *));
  dt_value **outs = calloc((size_t)(no ? no : 1), sizeof(dt_value *));
  dt_future **futs = calloc((size_t)(no ? no : 1), sizeof(dt_future *));
  PyObject *index = PyDict_New(); /* key -> node position */
  PyObject *result = NULL;
  if (!g || !refs || !outs || !futs || !index) {
    PyErr_NoMemory();
    goto out;
  }
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *node = PyList_GET_ITEM(nodes, i), *key, *payload, *deps;
    const char *func;
    if (!PyTuple_Check(node) ||
        !PyArg_ParseTuple(node, "UsOO!", &key, &func, &payload, &PyList_Type, &deps))
      goto bad_node;
    dt_value *a = dt_list_new();
    dt_value *p = a ? to_value(payload, 1) : NULL;
    if (!p || dt_list_push(a, p)) {
      free_nogil(a);
      if (!PyErr_Occurred()) PyErr_NoMemory();
      goto out;
    }
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(deps); j++) {
      PyObject *d = PyList_GET_ITEM(deps, j);
      dt_value *dv = NULL;
      if (Py_IS_TYPE(d, &FutureType)) {
        dv = dt_future_value(((FutureObject *)d)->f);
      } else {
        PyObject *pos = PyDict_GetItemWithError(index, d);
        if (!pos) {
          free_nogil(a);
          if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "graph node %R depends on %R, which is not an earlier node",
                         key, d);
          goto out;
        }
        dv = dt_value_ref(refs[PyLong_AsSsize_t(pos)]);
      }
      if (!dv || dt_list_push(a, dv)) {
        free_nogil(a);
        PyErr_NoMemory();
        goto out;
      }
    }
    s.o.key = PyUnicode_AsUTF8(key);
    if (!s.o.key) {
      free_nogil(a);
      goto out;
    }
    int rc = dt_graph_add(g, func, a, NULL, &s.o, &refs[i]);
    if (rc) {
      raise_dt(rc);
      goto out;
    }
    PyObject *pos = PyLong_FromSsize_t(i);
    if (!pos || PyDict_SetItem(index, key, pos)) {
      Py_XDECREF(pos);
      goto out;
    }
    Py_DECREF(pos);
  }
  for (Py_ssize_t i = 0; i < no; i++) {
    PyObject *pos = PyDict_GetItemWithError(index, PyList_GET_ITEM(outputs, i));
    if (!pos) {
      if (!PyErr_Occurred())
        PyErr_Format(PyExc_KeyError, "output %R is not a node of the graph", PyList_GET_ITEM(outputs, i));
      goto out;
    }
    outs[i] = refs[PyLong_AsSsize_t(pos)];
  }
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_graph_submit(c, g, outs, (size_t)no, futs);
  Py_END_ALLOW_THREADS if (rc) {
    raise_dt(rc);
    goto out;
  }
  result = PyList_New(no);
  for (Py_ssize_t i = 0; i < no; i++) {
    PyObject *fo = result ? future_wrap(futs[i]) : NULL;
    if (!fo) {
      if (!result) { /* release the rest */
        Py_BEGIN_ALLOW_THREADS dt_future_release(futs[i]);
        Py_END_ALLOW_THREADS
      } else {
        Py_CLEAR(result);
      }
      continue;
    }
    PyList_SET_ITEM(result, i, fo);
  }
  goto out;
bad_node:
  if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
    PyErr_Clear();
    PyErr_SetString(PyExc_TypeError, "a graph node is (key: str, func: str, payload, deps: list)");
  }
out:
  Py_BEGIN_ALLOW_THREADS /* the nodes' arguments hold futures */
  for (Py_ssize_t i = 0; refs && i < n; i++) dt_value_free(refs[i]);
  dt_graph_free(g);
  Py_END_ALLOW_THREADS
  free(refs);
  free(outs);
  free(futs);
  Py_XDECREF(index);
  free(s.workers);
  return result;
}

static int futures_of(PyObject *l, dt_future ***out, size_t *n) {
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
    if (!Py_IS_TYPE(o, &FutureType)) {
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

/* gather(futures, timeout_ms=-1) -> list of results */
static PyObject *client_gather(ClientObject *self, PyObject *args) {
  PyObject *l;
  int timeout_ms = -1;
  if (!PyArg_ParseTuple(args, "O|i", &l, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  dt_future **fs;
  size_t n;
  if (futures_of(l, &fs, &n)) return NULL;
  dt_value **vals = calloc(n ? n : 1, sizeof(dt_value *));
  if (!vals) {
    free(fs);
    return PyErr_NoMemory();
  }
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_gather(c, fs, n, timeout_ms, vals);
  Py_END_ALLOW_THREADS free(fs);
  PyObject *r = NULL;
  if (rc) {
    raise_dt(rc);
  } else {
    r = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; r && i < n; i++) {
      PyObject *x = from_value(vals[i], 1);
      if (!x) Py_CLEAR(r);
      else PyList_SET_ITEM(r, (Py_ssize_t)i, x);
    }
  }
  for (size_t i = 0; i < n; i++) dt_value_free(vals[i]);
  free(vals);
  return r;
}

/* scatter(values, workers=None, broadcast=False) -> list of CFuture */
static PyObject *client_scatter(ClientObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"values", "workers", "broadcast", NULL};
  PyObject *l, *workers = Py_None;
  int broadcast = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|Op", kwlist, &PyList_Type, &l, &workers, &broadcast))
    return NULL;
  if (!client_ok(self)) return NULL;
  size_t n = (size_t)PyList_GET_SIZE(l);
  dt_scatter_opts so = {.broadcast = broadcast};
  const char **ws = NULL;
  if (str_list(workers, &ws, &so.n_workers)) return NULL;
  so.workers = ws;
  dt_value **vals = calloc(n ? n : 1, sizeof(dt_value *));
  dt_future **futs = calloc(n ? n : 1, sizeof(dt_future *));
  PyObject *r = NULL;
  if (!vals || !futs) {
    PyErr_NoMemory();
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    vals[i] = to_value(PyList_GET_ITEM(l, (Py_ssize_t)i), 0);
    if (!vals[i]) {
      for (size_t j = 0; j < i; j++) dt_value_free(vals[j]);
      goto out;
    }
  }
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_scatter(c, vals, n, &so, futs);
  Py_END_ALLOW_THREADS if (rc) {
    raise_dt(rc);
    goto out;
  }
  r = PyList_New((Py_ssize_t)n);
  for (size_t i = 0; i < n; i++) {
    PyObject *fo = future_wrap(futs[i]);
    if (!fo || !r) {
      Py_XDECREF(fo);
      Py_CLEAR(r);
      continue;
    }
    PyList_SET_ITEM(r, (Py_ssize_t)i, fo);
  }
out:
  free(vals);
  free(futs);
  free(ws);
  return r;
}

static PyObject *client_cluster_info(ClientObject *self, PyObject *args) {
  int timeout_ms = 10000;
  if (!PyArg_ParseTuple(args, "|i", &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  dt_cluster_info ci;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_cluster_info(c, timeout_ms, &ci);
  Py_END_ALLOW_THREADS if (rc) return raise_dt(rc);
  return Py_BuildValue("{s:i,s:i,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "n_workers", ci.n_workers,
                       "n_clients", ci.n_clients, "n_tasks", (long long)ci.n_tasks, "waiting",
                       (long long)ci.n_waiting, "no_worker", (long long)ci.n_no_worker,
                       "processing", (long long)ci.n_processing, "memory", (long long)ci.n_memory,
                       "erred", (long long)ci.n_erred, "released", (long long)ci.n_released,
                       "queued", (long long)ci.n_queued, "completed", (long long)ci.n_completed);
}

static PyObject *client_workers(ClientObject *self, PyObject *args) {
  int timeout_ms = 10000;
  if (!PyArg_ParseTuple(args, "|i", &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  dt_worker_info *wi = NULL;
  size_t n = 0;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_workers(c, timeout_ms, &wi, &n);
  Py_END_ALLOW_THREADS if (rc) return raise_dt(rc);
  PyObject *l = PyList_New((Py_ssize_t)n);
  for (size_t i = 0; l && i < n; i++) {
    PyObject *d = Py_BuildValue(
        "{s:s,s:s,s:i,s:i,s:L,s:L,s:K,s:d,s:K,s:O,s:K,s:K}", "name", wi[i].name, "address",
        wi[i].address, "nthreads", wi[i].nthreads, "pid", wi[i].pid, "processing",
        (long long)wi[i].processing, "n_keys", (long long)wi[i].n_keys, "nbytes",
        (unsigned long long)wi[i].nbytes, "last_seen", wi[i].last_seen_s, "spilled",
        (unsigned long long)wi[i].spilled, "paused", wi[i].paused ? Py_True : Py_False, "rss",
        (unsigned long long)wi[i].rss, "memory", (unsigned long long)wi[i].memory);
    if (!d) Py_CLEAR(l);
    else PyList_SET_ITEM(l, (Py_ssize_t)i, d);
  }
  free(wi);
  return l;
}

static PyObject *client_wait_for_workers(ClientObject *self, PyObject *args) {
  int n, timeout_ms = -1;
  if (!PyArg_ParseTuple(args, "i|i", &n, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_wait_for_workers(c, n, timeout_ms);
  Py_END_ALLOW_THREADS if (rc) return raise_dt(rc);
  Py_RETURN_NONE;
}

static PyObject *client_retire_workers(ClientObject *self, PyObject *args) {
  PyObject *names;
  int timeout_ms = 30000;
  if (!PyArg_ParseTuple(args, "O|i", &names, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  const char **a;
  size_t n;
  if (str_list(names, &a, &n)) return NULL;
  int rc, retired = 0;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_retire_workers(c, a, n, timeout_ms, &retired);
  Py_END_ALLOW_THREADS free(a);
  if (rc) return raise_dt(rc);
  return PyLong_FromLong(retired);
}

static PyObject *client_progress(ClientObject *self, PyObject *args) {
  PyObject *l;
  int timeout_ms = -1;
  if (!PyArg_ParseTuple(args, "O|i", &l, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  dt_future **fs;
  size_t n;
  if (futures_of(l, &fs, &n)) return NULL;
  fflush(stdout);
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_progress(c, fs, n, timeout_ms);
  Py_END_ALLOW_THREADS free(fs);
  if (rc) return raise_dt(rc);
  Py_RETURN_NONE;
}

static PyMethodDef client_methods[] = {
    {"submit", (PyCFunction)(void (*)(void))client_submit, METH_VARARGS | METH_KEYWORDS, NULL},
    {"graph_submit", (PyCFunction)(void (*)(void))client_graph_submit, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"gather", (PyCFunction)client_gather, METH_VARARGS, NULL},
    {"scatter", (PyCFunction)(void (*)(void))client_scatter, METH_VARARGS | METH_KEYWORDS, NULL},
    {"cluster_info", (PyCFunction)client_cluster_info, METH_VARARGS, NULL},
    {"workers", (PyCFunction)client_workers, METH_VARARGS, NULL},
    {"wait_for_workers", (PyCFunction)client_wait_for_workers, METH_VARARGS, NULL},
    {"retire_workers", (PyCFunction)client_retire_workers, METH_VARARGS, NULL},
    {"progress", (PyCFunction)client_progress, METH_VARARGS, NULL},
    {"close", (PyCFunction)client_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ClientType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dtask._core.CClient",
    .tp_basicsize = sizeof(ClientObject),
    .tp_dealloc = (destructor)client_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = client_methods,
    .tp_init = (initproc)client_init,
    .tp_new = PyType_GenericNew,
    .tp_doc = "a dt_client",
};

/* ---------------------------------------------------------------- LocalCluster */

typedef struct {
  PyObject_HEAD
  dt_local_cluster *lc;
} ClusterObject;

static int cluster_init(ClusterObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"n_workers", "threads_per_worker", "memory_limit", "dashboard_port",
                           "no_dashboard", "role_command", "no_nanny", "timeout_ms", "log_level",
                           "allowed_failures", "worker_ttl", "resources", "no_auth", "host",
                           "port", NULL};
  int n_workers = 0, threads = 0, dport = 0, no_dash = 0, no_nanny = 0, timeout_ms = 0, af = 0,
      no_auth = 0, port = 0;
  const char *mem = NULL, *log_level = NULL, *ttl = NULL, *res = NULL, *host = NULL;
  PyObject *cmd = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|iizipOpizizzpzi", kwlist, &n_workers, &threads, &mem,
                                   &dport, &no_dash, &cmd, &no_nanny, &timeout_ms, &log_level, &af,
                                   &ttl, &res, &no_auth, &host, &port))
    return -1;
  if (self->lc) return 0;
  const char **argv = NULL;
  size_t nargv = 0;
  if (str_list(cmd, &argv, &nargv)) return -1;
  dt_local_cluster_opts o = {.n_workers = n_workers, .threads_per_worker = threads,
                             .memory_limit = mem, .dashboard_port = dport, .no_dashboard = no_dash,
                             .role_command = argv, .n_role_command = nargv, .no_nanny = no_nanny,
                             .timeout_ms = timeout_ms, .log_level = log_level,
                             .allowed_failures = af, .worker_ttl = ttl, .resources = res,
                             .no_auth = no_auth, .host = host, .port = port};
  int rc;
  dt_local_cluster *lc = NULL;
  Py_BEGIN_ALLOW_THREADS rc = dt_local_cluster_start(&o, &lc);
  Py_END_ALLOW_THREADS free(argv);
  if (rc) {
    raise_dt(rc);
    return -1;
  }
  self->lc = lc;
  return 0;
}

static void cluster_close_now(ClusterObject *self) {
  dt_local_cluster *lc = self->lc;
  self->lc = NULL;
  if (lc) {
    Py_BEGIN_ALLOW_THREADS dt_local_cluster_close(lc);
    Py_END_ALLOW_THREADS
  }
}

static void cluster_dealloc(ClusterObject *self) {
  cluster_close_now(self);
  Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *cluster_close(ClusterObject *self, PyObject *unused) {
  (void)unused;
  cluster_close_now(self);
  Py_RETURN_NONE;
}

static PyObject *opt_str(const char *s) {
  if (!s) Py_RETURN_NONE;
  return PyUnicode_FromString(s);
}

static PyObject *cluster_address(ClusterObject *self, void *c) {
  (void)c;
  return opt_str(self->lc ? dt_local_cluster_address(self->lc) : NULL);
}
static PyObject *cluster_dashboard(ClusterObject *self, void *c) {
  (void)c;
  return opt_str(self->lc ? dt_local_cluster_dashboard(self->lc) : NULL);
}
static PyObject *cluster_auth_file(ClusterObject *self, void *c) {
  (void)c;
  return opt_str(self->lc ? dt_local_cluster_auth_file(self->lc) : NULL);
}
static PyObject *cluster_scheduler_pid(ClusterObject *self, void *c) {
  (void)c;
  return PyLong_FromLong(self->lc ? dt_local_cluster_scheduler_pid(self->lc) : -1);
}
static PyObject *cluster_worker_pids(ClusterObject *self, void *c) {
  (void)c;
  PyObject *l = PyList_New(0);
  for (int i = 0; l && self->lc && dt_local_cluster_worker_pid(self->lc, i) >= 0; i++) {
    PyObject *p = PyLong_FromLong(dt_local_cluster_worker_pid(self->lc, i));
    if (!p || PyList_Append(l, p)) Py_CLEAR(l);
    Py_XDECREF(p);
  }
  return l;
}

static PyMethodDef cluster_methods[] = {{"close", (PyCFunction)cluster_close, METH_NOARGS, NULL},
                                        {NULL, NULL, 0, NULL}};
static PyGetSetDef cluster_getset[] = {
    {"address", (getter)cluster_address, NULL, NULL, NULL},
    {"dashboard", (getter)cluster_dashboard, NULL, NULL, NULL},
    {"auth_file", (getter)cluster_auth_file, NULL, NULL, NULL},
    {"scheduler_pid", (getter)cluster_scheduler_pid, NULL, NULL, NULL},
    {"worker_pids", (getter)cluster_worker_pids, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject ClusterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dtask._core.CLocalCluster",
    .tp_basicsize = sizeof(ClusterObject),
    .tp_dealloc = (destructor)cluster_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = cluster_methods,
    .tp_getset = cluster_getset,
    .tp_init = (initproc)cluster_init,
    .tp_new = PyType_GenericNew,
    .tp_doc = "a dt_local_cluster",
};

/* ---------------------------------------------------------------- worker side */

static void task_fail(dt_task *t, const char *msg) {
  if (t->err) return;
  t->err = strdup(msg ? msg : "Python task failed");
  t->err_code = DT_ETASK;
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

/* the "py:" handler: args are (payload, *dependencies); the hook unpickles
 * the call, runs it and returns (True, result) or (False, error text). */
static dt_value *py_task(dt_task *t) {
  if (is_exiting() || !hook_execute) {
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
  const dt_value *payload = n ? dt_list_get(t->args, 0) : NULL;
  PyObject *pl = NULL, *deps = NULL, *r = NULL;
  if (!payload || dt_value_type(payload) != DT_BYTES) {
    task_fail(t, "a Python task needs its pickled call as its first argument");
    goto done;
  }
  pl = memview_of(payload, 0);
  deps = pl ? PyList_New((Py_ssize_t)(n - 1)) : NULL;
  for (size_t i = 1; deps && i < n; i++) {
    PyObject *d = from_value(dt_list_get(t->args, i), 0);
    if (!d) Py_CLEAR(deps);
    else PyList_SET_ITEM(deps, (Py_ssize_t)(i - 1), d);
  }
  if (deps) r = PyObject_CallFunctionObjArgs(hook_execute, pl, deps, NULL);
  if (!r) { /* the hook itself failed (e.g. a dependency would not unpickle) */
    fail_with_pyerr(t, "", "(no message)");
    goto done;
  }
  PyObject *ok, *val;
  if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 2) {
    task_fail(t, "internal error: the execute hook returned a wrong value");
    goto done;
  }
  ok = PyTuple_GET_ITEM(r, 0);
  val = PyTuple_GET_ITEM(r, 1);
  if (ok == Py_True) {
    out = to_value(val, 0);
    if (!out) {
      char prefix[300];
      snprintf(prefix, sizeof(prefix), "could not serialise the result of %.200s: ", t->func);
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

/* ---------------------------------------------------------------- module functions */

static PyObject *mod_set_hooks(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *d, *l, *e;
  if (!PyArg_ParseTuple(args, "OOO", &d, &l, &e)) return NULL;
  Py_XSETREF(hook_dumps, Py_NewRef(d));
  Py_XSETREF(hook_loads, Py_NewRef(l));
  Py_XSETREF(hook_execute, Py_NewRef(e));
  Py_RETURN_NONE;
}

/* set_error_class(cls): errors are raised as cls(code, name, message) */
static PyObject *mod_set_error_class(PyObject *m, PyObject *cls) {
  (void)m;
  if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, (PyTypeObject *)PyExc_Exception))
    return PyErr_Format(PyExc_TypeError, "set_error_class needs an Exception subclass");
  Py_XSETREF(CoreError, Py_NewRef(cls));
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
  if (str_list(l, &a, &n)) return NULL;
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
  if (dt_task_register("py:", py_task)) return raise_dt(DT_EINVAL);
  return run_main(args, dt__worker_main);
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
  if (futures_of(l, &fs, &n)) return NULL;
  int rc;
  for (;;) {
    int slice = timeout_ms < 0 || timeout_ms > 200 ? 200 : timeout_ms;
    Py_BEGIN_ALLOW_THREADS rc = dt_wait(fs, n, slice, first ? DT_FIRST_COMPLETED : DT_ALL_COMPLETED);
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
  if (rc) return raise_dt(rc);
  Py_RETURN_TRUE;
}

/* roundtrip(obj, native=False): obj through a dt_value and back (tests) */
static PyObject *mod_roundtrip(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *o;
  int native = 0;
  if (!PyArg_ParseTuple(args, "O|p", &o, &native)) return NULL;
  dt_value *v = to_value(o, native);
  if (!v) return NULL;
  PyObject *r = from_value(v, 0);
  dt_value_free(v);
  return r;
}

static PyMethodDef mod_methods[] = {
    {"set_hooks", mod_set_hooks, METH_VARARGS, "set_hooks(dumps, loads, execute)"},
    {"set_error_class", mod_set_error_class, METH_O, "set_error_class(cls)"},
    {"_exiting", mod_exiting, METH_NOARGS, "the interpreter is exiting"},
    {"worker_main", mod_worker_main, METH_VARARGS, "worker_main(argv): run a worker"},
    {"scheduler_main", mod_scheduler_main, METH_VARARGS, "scheduler_main(argv): run a scheduler"},
    {"wait", mod_wait, METH_VARARGS, "wait(futures, timeout_ms=-1, first_completed=False)"},
    {"roundtrip", mod_roundtrip, METH_VARARGS, "roundtrip(obj, native=False)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef core_module = {PyModuleDef_HEAD_INIT, "dtask._core",
                                         "the C core of dtask", -1, mod_methods,
                                         NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__core(void) {
  PyObject *m = PyModule_Create(&core_module);
  if (!m) return NULL;
  PyTypeObject *types[] = {&BufferType, &FutureType, &ClientType, &ClusterType};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
    if (PyType_Ready(types[i]) < 0) return NULL;
  Py_INCREF(&FutureType);
  PyModule_AddObject(m, "CFuture", (PyObject *)&FutureType);
  Py_INCREF(&ClientType);
  PyModule_AddObject(m, "CClient", (PyObject *)&ClientType);
  Py_INCREF(&ClusterType);
  PyModule_AddObject(m, "CLocalCluster", (PyObject *)&ClusterType);
  CoreError = PyErr_NewException("dtask._core.Error", PyExc_Exception, NULL);
  Py_INCREF(CoreError);
  PyModule_AddObject(m, "Error", CoreError);
  PyModule_AddIntConstant(m, "LARGE_BYTES", DT_LARGE_BYTES);
#define ADD_ERR(name, val, desc) PyModule_AddIntConstant(m, "DT_" #name, val);
  DT_ERRNO_MAP(ADD_ERR)
#undef ADD_ERR
  return m;
}
