/*
 * core_value.c -- conversion between Python objects and dt_values for the
 * dtask._core extension.
 *
 * None, bool, int (64-bit), float, str and bytes travel as native
 * dt_values, so C tasks and Python tasks read each other's results.  Any
 * other object is pickled (protocol 5, cloudpickle) by a hook from
 * dtask/serialize.py into the map {"__dtask_pickle__": [main, buf...]}:
 * out-of-band buffers (NumPy arrays...) are separate bytes values, sent as
 * their own frames; large ones are wrapped, not copied, and on the way in
 * they are read in place through read-only memoryviews (Buffer objects).
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define PICKLE_KEY "__dtask_pickle__"
#define WRAP_MIN DT_LARGE_BYTES /* smaller buffers are copied */

/* core_free_nogil: values holding futures take the client's lock when freed */
void core_free_nogil(dt_value *v) {
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
  BufferObject *b = PyObject_New(BufferObject, &core_buffer_type);
  if (!b) return NULL;
  b->v = dt_value_ref((dt_value *)v);
  /* never hand out for writing a Python object's own buffer (a scattered
   * array); received data, even mapped from a peer's memfd, is private
   * (MAP_PRIVATE: copy on write) */
  b->writable = writable && dt_value_type(v) == DT_BYTES &&
                !dt__bind_bytes_wrapped_by(v, pybuf_release);
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

PyTypeObject core_buffer_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dtask._core.Buffer",
    .tp_basicsize = sizeof(BufferObject),
    .tp_dealloc = (destructor)buffer_dealloc,
    .tp_as_buffer = &buffer_procs,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "read-only bytes of a dtask value",
};

PyObject *core_memview(const dt_value *v, int writable) {
  PyObject *b = buffer_new(v, writable);
  if (!b) return NULL;
  PyObject *m = PyMemoryView_FromObject(b);
  Py_DECREF(b);
  return m;
}

/* ---------------------------------------------------------------- to value */

static void pybuf_release(void *arg) {
  Py_buffer *view = arg;
  if (core_exiting()) return; /* the interpreter is going: leave it */
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
    v = dt__bind_bytes_take_arg(view->buf, (size_t)view->len, pybuf_release, view);
  }
  if (!v) PyErr_NoMemory();
  return v;
}

static dt_value *pickled(PyObject *o) {
  PyObject *r = PyObject_CallOneArg(core_hook_dumps, o);
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

/* core_to_value: see core.h */
dt_value *core_to_value(PyObject *o, int native) {
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
  } else if (Py_IS_TYPE(o, &core_future_type)) {
    dt_future *f = ((FutureObject *)o)->f;
    Py_BEGIN_ALLOW_THREADS v = dt_future_value(f); /* takes the client's lock */
    Py_END_ALLOW_THREADS
  } else if (native && (PyList_Check(o) || PyTuple_Check(o))) {
    PyObject *seq = PySequence_Fast(o, "");
    if (!seq) return NULL;
    v = dt_list_new();
    for (Py_ssize_t i = 0; v && i < PySequence_Fast_GET_SIZE(seq); i++) {
      dt_value *it = core_to_value(PySequence_Fast_GET_ITEM(seq, i), native);
      if (!it || dt_list_push(v, it)) {
        core_free_nogil(v);
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
        core_free_nogil(v);
        PyErr_Format(PyExc_TypeError, "a dict passed to a C task needs str keys, not %.100s",
                     Py_TYPE(k)->tp_name);
        return NULL;
      }
      const char *ks = PyUnicode_AsUTF8(k);
      dt_value *it = ks ? core_to_value(x, native) : NULL;
      if (!it || dt_map_set(v, ks, it)) {
        core_free_nogil(v);
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

/* core_from_value: see core.h; writable buffers: see BufferObject */
PyObject *core_from_value(const dt_value *v, int writable) {
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
      PyObject *it = core_from_value(dt_list_get(v, i), writable);
      if (!it) {
        Py_DECREF(l);
        return NULL;
      }
      PyList_SET_ITEM(l, (Py_ssize_t)i, it);
    }
    return l;
  }
  case DT_MAP: {
    /* a task's result may carry the futures it references ("__dtask_refs__",
     * core_task.c): they keep those keys alive while the result is held */
    size_t ml = dt_map_len(v);
    const dt_value *pk = ml == 1 || (ml == 2 && dt_map_get(v, "__dtask_refs__"))
                             ? dt_map_get(v, PICKLE_KEY)
                             : NULL;
    if (pk && dt_value_type(pk) == DT_LIST && dt_list_len(pk) >= 1) {
      size_t n = dt_list_len(pk);
      for (size_t i = 0; i < n; i++)
        if (dt_value_type(dt_list_get(pk, i)) != DT_BYTES) {
          PyErr_SetString(PyExc_ValueError, "malformed pickled value");
          return NULL;
        }
      PyObject *main_ = core_memview(dt_list_get(pk, 0), 0);
      PyObject *bufs = main_ ? PyList_New((Py_ssize_t)(n - 1)) : NULL;
      for (size_t i = 1; bufs && i < n; i++) {
        PyObject *m = core_memview(dt_list_get(pk, i), writable);
        if (!m) Py_CLEAR(bufs);
        else PyList_SET_ITEM(bufs, (Py_ssize_t)(i - 1), m);
      }
      PyObject *r = bufs ? PyObject_CallFunctionObjArgs(core_hook_loads, main_, bufs, NULL) : NULL;
      Py_XDECREF(main_);
      Py_XDECREF(bufs);
      return r;
    }
    PyObject *d = PyDict_New();
    for (size_t i = 0; d && i < dt_map_len(v); i++) {
      PyObject *x = core_from_value(dt_map_value_at(v, i), writable);
      if (!x || PyDict_SetItemString(d, dt_map_key_at(v, i), x)) Py_CLEAR(d);
      Py_XDECREF(x);
    }
    return d;
  }
  case DT_FUTURE: return PyUnicode_FromString(dt__bind_future_key(v));
  }
  PyErr_SetString(PyExc_ValueError, "unknown value type");
  return NULL;
}

