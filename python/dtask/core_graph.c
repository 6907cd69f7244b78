/*
 * core_graph.c -- submission in bulk, without Python objects per task:
 *
 *   f_args(args, kwargs)  the arguments' part of an F payload (see
 *       dtask/serialize.py): pickle protocol 5 of (args, kwargs, ()) written
 *       here for plain values (None, bool, int, float, str, bytes), or None
 *       when an argument is anything else (the caller pickles in Python).
 *   map_submit(client, func, header, calls, kwargs, prefix, base, priority,
 *       retries, allow_other_workers)  client.map's impure path: one task
 *       per call tuple, payload header + f_args(call, kwargs), key
 *       "<prefix>-<base><i as 8 hex digits>", all sent in one graph
 *       message; a list of CFutures, or None when some call has a
 *       non-plain argument (nothing was submitted).
 *
 * The pickle written here is what pickle.loads reads back to the same
 * objects (no FRAME or memo opcodes: both are optional).
 */
#include "core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *p;
  size_t n, cap;
  bool oom;
} obuf;

static void ob_put(obuf *b, const void *d, size_t n) {
  if (b->oom) return;
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void ob_byte(obuf *b, unsigned char c) { ob_put(b, &c, 1); }

static void ob_le(obuf *b, uint64_t v, int nbytes) {
  unsigned char t[8];
  for (int i = 0; i < nbytes; i++) t[i] = (unsigned char)(v >> (8 * i));
  ob_put(b, t, (size_t)nbytes);
}

/* put_plain: o's pickle opcodes; 1 when o is not a plain value (or is one
 * this writer leaves to Python: ints past 64 bits, strings that are not
 * UTF-8, sizes past 4 GiB) */
static int put_plain(obuf *b, PyObject *o) {
  if (o == Py_None) {
    ob_byte(b, 'N');
  } else if (o == Py_True) {
    ob_byte(b, 0x88);
  } else if (o == Py_False) {
    ob_byte(b, 0x89);
  } else if (PyLong_CheckExact(o)) {
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      return 1;
    }
    if (x >= 0 && x < 256) {
      ob_byte(b, 'K');
      ob_le(b, (uint64_t)x, 1);
    } else if (x >= 0 && x < 65536) {
      ob_byte(b, 'M');
      ob_le(b, (uint64_t)x, 2);
    } else if (x >= INT32_MIN && x <= INT32_MAX) {
      ob_byte(b, 'J');
      ob_le(b, (uint64_t)(uint32_t)(int32_t)x, 4);
    } else { /* LONG1: 8 bytes of two's complement, little-endian */
      ob_byte(b, 0x8a);
      ob_byte(b, 8);
      ob_le(b, (uint64_t)x, 8);
    }
  } else if (PyFloat_CheckExact(o)) {
    double d = PyFloat_AS_DOUBLE(o);
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    unsigned char t[9];
    t[0] = 'G'; /* BINFLOAT: big-endian */
    for (int i = 0; i < 8; i++) t[1 + i] = (unsigned char)(u >> (8 * (7 - i)));
    ob_put(b, t, 9);
  } else if (PyUnicode_CheckExact(o)) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (!s) { /* lone surrogates: pickle's own escaping */
      PyErr_Clear();
      return 1;
    }
    if (n < 256) {
      ob_byte(b, 0x8c); /* SHORT_BINUNICODE */
      ob_le(b, (uint64_t)n, 1);
    } else if ((uint64_t)n <= UINT32_MAX) {
      ob_byte(b, 'X'); /* BINUNICODE */
      ob_le(b, (uint64_t)n, 4);
    } else {
      return 1;
    }
    ob_put(b, s, (size_t)n);
  } else if (PyBytes_CheckExact(o)) {
    Py_ssize_t n = PyBytes_GET_SIZE(o);
    if (n < 256) {
      ob_byte(b, 'C'); /* SHORT_BINBYTES */
      ob_le(b, (uint64_t)n, 1);
    } else if ((uint64_t)n <= UINT32_MAX) {
      ob_byte(b, 'B'); /* BINBYTES */
      ob_le(b, (uint64_t)n, 4);
    } else {
      return 1;
    }
    ob_put(b, PyBytes_AS_STRING(o), (size_t)n);
  } else {
    return 1;
  }
  return 0;
}

/* put_call: PROTO 5, (args, kwargs, ()), STOP; 1 when not plain */
static int put_call(obuf *b, PyObject *args, PyObject *kwargs) {
  ob_byte(b, 0x80);
  ob_byte(b, 5);
  Py_ssize_t n = PyTuple_GET_SIZE(args);
  if (n == 0) {
    ob_byte(b, ')');
  } else {
    if (n > 3) ob_byte(b, '(');
    for (Py_ssize_t i = 0; i < n; i++)
      if (put_plain(b, PyTuple_GET_ITEM(args, i))) return 1;
    ob_byte(b, n == 1 ? 0x85 : n == 2 ? 0x86 : n == 3 ? 0x87 : 't');
  }
  ob_byte(b, '}');
  if (kwargs && PyDict_GET_SIZE(kwargs)) {
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    ob_byte(b, '(');
    while (PyDict_Next(kwargs, &pos, &k, &v))
      if (!PyUnicode_CheckExact(k) || put_plain(b, k) || put_plain(b, v)) return 1;
    ob_byte(b, 'u');
  }
  ob_byte(b, ')');
  ob_byte(b, 0x87);
  ob_byte(b, '.');
  return 0;
}

static PyObject *mod_f_args(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *a, *kw = Py_None;
  if (!PyArg_ParseTuple(args, "O!|O", &PyTuple_Type, &a, &kw)) return NULL;
  if (kw != Py_None && !PyDict_Check(kw)) {
    PyErr_SetString(PyExc_TypeError, "f_args: kwargs must be a dict or None");
    return NULL;
  }
  obuf b = {0};
  int rc = put_call(&b, a, kw == Py_None ? NULL : kw);
  PyObject *r = NULL;
  if (b.oom) r = PyErr_NoMemory();
  else if (rc) r = (Py_INCREF(Py_None), Py_None);
  else r = PyBytes_FromStringAndSize(b.p, (Py_ssize_t)b.n);
  free(b.p);
  return r;
}

static PyObject *mod_map_submit(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *client, *calls, *kw;
  const char *func, *prefix, *base;
  Py_buffer hdr;
  int priority = 0, retries = 0, allow_other = 0;
  if (!PyArg_ParseTuple(args, "Osy*O!Ossiip", &client, &func, &hdr, &PyList_Type, &calls, &kw,
                        &prefix, &base, &priority, &retries, &allow_other))
    return NULL;
  PyObject *result = NULL;
  Py_ssize_t n = PyList_GET_SIZE(calls);
  dt_value **pay = calloc((size_t)(n ? n : 1), sizeof(dt_value *));
  dt_value **refs = calloc((size_t)(n ? n : 1), sizeof(dt_value *));
  dt_future **futs = calloc((size_t)(n ? n : 1), sizeof(dt_future *));
  size_t klen = strlen(prefix) + strlen(base) + 24;
  char *key = malloc(klen);
  dt_graph *g = NULL;
  dt_client *c = core_client_ptr(client);
  if (!c) goto out;
  if (kw != Py_None && !PyDict_Check(kw)) {
    PyErr_SetString(PyExc_TypeError, "map_submit: kwargs must be a dict or None");
    goto out;
  }
  g = dt_graph_new();
  if (!pay || !refs || !futs || !key || !g) {
    PyErr_NoMemory();
    goto out;
  }
  /* every payload first: a non-plain argument anywhere submits nothing */
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *a = PyList_GET_ITEM(calls, i);
    if (!PyTuple_Check(a)) {
      result = (Py_INCREF(Py_None), Py_None);
      goto out;
    }
    obuf b = {0};
    ob_put(&b, hdr.buf, (size_t)hdr.len);
    int rc = put_call(&b, a, kw == Py_None ? NULL : kw);
    if (b.oom) {
      free(b.p);
      PyErr_NoMemory();
      goto out;
    }
    if (rc) {
      free(b.p);
      result = (Py_INCREF(Py_None), Py_None);
      goto out;
    }
    pay[i] = dt_bytes_take(b.p, b.n, free); /* frees b.p on failure */
    if (!pay[i]) {
      PyErr_NoMemory();
      goto out;
    }
  }
  dt_submit_opts o;
  memset(&o, 0, sizeof(o));
  o.priority = priority;
  o.pure = DT_YES;
  o.allow_other_workers = allow_other;
  o.retries = retries;
  for (Py_ssize_t i = 0; i < n; i++) {
    dt_value *a = dt_list_new();
    if (!a) {
      PyErr_NoMemory();
      goto out;
    }
    int prc = dt_list_push(a, pay[i]); /* consumed, also on failure */
    pay[i] = NULL;
    if (prc) {
      dt_value_free(a);
      PyErr_NoMemory();
      goto out;
    }
    snprintf(key, klen, "%s-%s%08zx", prefix, base, (size_t)i);
    o.key = key;
    int rc = dt_graph_add(g, func, a, NULL, &o, &refs[i]);
    if (rc) {
      core_raise(rc);
      goto out;
    }
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = dt_graph_submit(c, g, refs, (size_t)n, futs);
  Py_END_ALLOW_THREADS if (rc) {
    core_raise(rc);
    goto out;
  }
  result = PyList_New(n);
  for (Py_ssize_t i = 0; i < n; i++) {
    PyObject *fo = result ? core_future_wrap(futs[i]) : NULL;
    if (!fo) {
      if (!result) {
        Py_BEGIN_ALLOW_THREADS dt_future_release(futs[i]);
        Py_END_ALLOW_THREADS
      } else {
        Py_CLEAR(result);
      }
      continue;
    }
    PyList_SET_ITEM(result, i, fo);
  }
out:
  Py_BEGIN_ALLOW_THREADS
  for (Py_ssize_t i = 0; i < n; i++) {
    if (pay) dt_value_free(pay[i]);
    if (refs) dt_value_free(refs[i]);
  }
  dt_graph_free(g);
  Py_END_ALLOW_THREADS
  free(pay);
  free(refs);
  free(futs);
  free(key);
  PyBuffer_Release(&hdr);
  return result;
}


/* toposort(dsk, roots, external) -> the keys roots need, dependencies
 * first (dask_graph._nodes' walk, here for speed): dsk maps keys to Dask
 * graph nodes (their .dependencies); a dependency not in dsk is kept out
 * when external(key) is true (a future the client holds), else KeyError;
 * a cycle is a ValueError. */
typedef struct {
  PyObject *k; /* strong */
  int expanded;
} tframe;

static PyObject *mod_toposort(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *dsk, *roots, *external;
  if (!PyArg_ParseTuple(args, "O!OO", &PyDict_Type, &dsk, &roots, &external)) return NULL;
  PyObject *state = PyDict_New(), *order = PyList_New(0), *one = PyLong_FromLong(1),
           *two = PyLong_FromLong(2);
  PyObject *it = PyObject_GetIter(roots);
  tframe *st = NULL;
  size_t n = 0, cap = 0;
  int ok = 0;
  if (!state || !order || !one || !two || !it) goto out;
  PyObject *root;
  while ((root = PyIter_Next(it))) {
    PyObject *s0 = PyDict_GetItemWithError(state, root);
    if (s0 || PyErr_Occurred()) {
      Py_DECREF(root);
      if (PyErr_Occurred()) goto out;
      continue;
    }
#define PUSH(key, ex)                                                   \
  do {                                                                  \
    if (n == cap) {                                                     \
      size_t nc = cap ? cap * 2 : 256;                                  \
      tframe *ns = realloc(st, nc * sizeof(*st));                       \
      if (!ns) {                                                        \
        PyErr_NoMemory();                                               \
        goto out;                                                       \
      }                                                                 \
      st = ns;                                                          \
      cap = nc;                                                         \
    }                                                                   \
    Py_INCREF(key);                                                     \
    st[n].k = (key);                                                    \
    st[n++].expanded = (ex);                                            \
  } while (0)
    PUSH(root, 0);
    Py_DECREF(root);
    while (n) {
      tframe f = st[--n];
      if (f.expanded) {
        int e = PyDict_SetItem(state, f.k, two) || PyList_Append(order, f.k);
        Py_DECREF(f.k);
        if (e) goto out;
        continue;
      }
      PyObject *sk = PyDict_GetItemWithError(state, f.k);
      if (sk || PyErr_Occurred()) {
        Py_DECREF(f.k);
        if (PyErr_Occurred()) goto out;
        continue;
      }
      if (PyDict_SetItem(state, f.k, one)) {
        Py_DECREF(f.k);
        goto out;
      }
      PyObject *node = PyDict_GetItemWithError(dsk, f.k);
      if (!node) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, f.k);
        Py_DECREF(f.k);
        goto out;
      }
      PUSH(f.k, 1); /* takes its own reference */
      PyObject *deps = PyObject_GetAttrString(node, "dependencies");
      PyObject *dit = deps ? PyObject_GetIter(deps) : NULL;
      Py_XDECREF(deps);
      if (!dit) {
        Py_DECREF(f.k);
        goto out;
      }
      PyObject *d;
      int bad = 0;
      while (!bad && (d = PyIter_Next(dit))) {
        int in = PyDict_Contains(dsk, d);
        if (in < 0) {
          bad = 1;
        } else if (!in) {
          PyObject *r = PyObject_CallOneArg(external, d);
          int t = r ? PyObject_IsTrue(r) : -1;
          Py_XDECREF(r);
          if (t < 0) bad = 1;
          else if (!t) {
            PyErr_Format(PyExc_KeyError, "task %R depends on %R, which is not in the graph", f.k,
                         d);
            bad = 1;
          }
        } else {
          PyObject *sd = PyDict_GetItemWithError(state, d);
          if (!sd && PyErr_Occurred()) bad = 1;
          else if (!sd) {
            if (n == cap) {
              size_t nc = cap * 2;
              tframe *ns = realloc(st, nc * sizeof(*st));
              if (!ns) {
                PyErr_NoMemory();
                bad = 1;
              } else {
                st = ns;
                cap = nc;
              }
            }
            if (!bad) {
              Py_INCREF(d);
              st[n].k = d;
              st[n++].expanded = 0;
            }
          } else if (PyLong_AsLong(sd) == 1) {
            PyErr_Format(PyExc_ValueError, "the graph has a cycle through %R", d);
            bad = 1;
          }
        }
        Py_DECREF(d);
      }
      Py_DECREF(dit);
      Py_DECREF(f.k);
      if (bad || PyErr_Occurred()) goto out;
    }
#undef PUSH
  }
  if (!PyErr_Occurred()) ok = 1;
out:
  while (n) Py_DECREF(st[--n].k);
  free(st);
  Py_XDECREF(it);
  Py_XDECREF(state);
  Py_XDECREF(one);
  Py_XDECREF(two);
  if (!ok) Py_CLEAR(order);
  return order;
}

static PyMethodDef graph_methods[] = {
    {"f_args", mod_f_args, METH_VARARGS,
     "f_args(args: tuple, kwargs=None) -> the F payload's argument pickle, or None"},
    {"map_submit", mod_map_submit, METH_VARARGS,
     "map_submit(client, func, header, calls, kwargs, prefix, base, priority, retries, "
     "allow_other_workers) -> [CFuture] or None"},
    {"toposort", mod_toposort, METH_VARARGS,
     "toposort(dsk, roots, external) -> keys in dependency order"},
    {NULL, NULL, 0, NULL},
};

int core_graph_init(PyObject *m) { return PyModule_AddFunctions(m, graph_methods); }
