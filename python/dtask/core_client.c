/*
 * core_client.c -- CClient, the dtask._core type over a dt_client: submit,
 * graph_submit, gather, scatter, cluster and worker information, retiring
 * workers and the progress bar.  Each call runs with the GIL released.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  PyObject_HEAD
  dt_client *c;
  bool borrowed; /* a worker's task client (dt_task_client): never closed here */
} ClientObject;

static int client_init(ClientObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"address", "timeout_ms", "name", "auth_file", "scheduler_file",
                           "tls_cert", "tls_key", "tls_ca_file", "heartbeat_timeout_ms", NULL};
  const char *address = NULL, *name = NULL, *auth = NULL, *sfile = NULL;
  const char *tcert = NULL, *tkey = NULL, *tca = NULL; /* dtask.Security's TLS files */
  int timeout_ms = 0, hb_ms = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "z|izzzzzzi", kwlist, &address, &timeout_ms, &name, &auth,
                                   &sfile, &tcert, &tkey, &tca, &hb_ms))
    return -1;
  if (self->c) return 0;
  dt_client_opts o = {.address = address, .timeout_ms = timeout_ms, .name = name, .auth_file = auth,
                      .scheduler_file = sfile, .tls_cert = tcert, .tls_key = tkey, .tls_ca_file = tca,
                      .heartbeat_timeout_ms = hb_ms};
  int rc;
  dt_client *c = NULL;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_connect(&o, &c);
  Py_END_ALLOW_THREADS if (rc) {
    core_raise(rc);
    return -1;
  }
  self->c = c;
  return 0;
}

static void client_close_now(ClientObject *self) {
  dt_client *c = self->c;
  self->c = NULL;
  if (c && !self->borrowed) {
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
  PyObject *args =
      Py_BuildValue("(iss)", DT_ECLOSED, dt_err_name(DT_ECLOSED), "the client is closed");
  if (args) PyErr_SetObject(core_error, args);
  Py_XDECREF(args);
  return false;
}

static PyObject *client_close(ClientObject *self, PyObject *unused) {
  (void)unused;
  client_close_now(self);
  Py_RETURN_NONE;
}

typedef struct {
  dt_submit_opts o;
  const char **workers;
} sopts;

static int parse_opts(PyObject *workers, int priority, int pure, int allow_other,
                      const char *resources, int retries, sopts *s) {
  memset(s, 0, sizeof(*s));
  if (core_str_list(workers, &s->workers, &s->o.n_workers)) return -1;
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
                           "allow_other_workers", "resources", "retries", "timeout", NULL};
  const char *func, *key = NULL, *resources = NULL;
  PyObject *pargs, *pkw = Py_None, *workers = Py_None;
  int pure = 1, priority = 0, allow_other = 0, retries = 0;
  double timeout = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "sO!|OzpiOpzid", kwlist, &func, &PyList_Type, &pargs,
                                   &pkw, &key, &pure, &priority, &workers, &allow_other,
                                   &resources, &retries, &timeout))
    return NULL;
  if (!client_ok(self)) return NULL;
  dt_value *a = core_to_value(pargs, 1);
  if (!a) return NULL;
  dt_value *k = NULL;
  if (pkw != Py_None) {
    if (!PyDict_Check(pkw)) {
      core_free_nogil(a);
      return PyErr_Format(PyExc_TypeError, "kwargs must be a dict");
    }
    k = core_to_value(pkw, 1);
    if (!k) {
      core_free_nogil(a);
      return NULL;
    }
  }
  sopts s;
  if (parse_opts(workers, priority, pure, allow_other, resources, retries, &s)) {
    core_free_nogil(a);
    core_free_nogil(k);
    return NULL;
  }
  s.o.key = key;
  s.o.timeout = timeout;
  dt_future *f = NULL;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_submit(c, func, a, k, &s.o, &f);
  Py_END_ALLOW_THREADS free(s.workers);
  if (rc) return core_raise(rc);
  return core_future_wrap(f);
}

/* graph_submit(nodes, outputs, priority=0, workers=None, allow_other_workers=False,
 *              resources=None, retries=0) -> list of CFuture, one per output.
 * Each node is (key, func, payload, deps) in dependency order: the task gets
 * (payload, *deps), each dep the key of an earlier node or a CFuture. */
static PyObject *client_graph_submit(ClientObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"nodes", "outputs", "priority", "workers", "allow_other_workers",
                           "resources", "retries", "timeout", NULL};
  PyObject *nodes, *outputs, *workers = Py_None;
  int priority = 0, allow_other = 0, retries = 0;
  double timeout = 0;
  const char *resources = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O!O!|iOpzid", kwlist, &PyList_Type, &nodes,
                                   &PyList_Type, &outputs, &priority, &workers, &allow_other,
                                   &resources, &retries, &timeout))
    return NULL;
  if (!client_ok(self)) return NULL;
  sopts s;
  if (parse_opts(workers, priority, 1, allow_other, resources, retries, &s)) return NULL;
  s.o.timeout = timeout;
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
    dt_value *p = a ? core_to_value(payload, 1) : NULL;
    if (!p || dt_list_push(a, p)) {
      core_free_nogil(a);
      if (!PyErr_Occurred()) PyErr_NoMemory();
      goto out;
    }
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(deps); j++) {
      PyObject *d = PyList_GET_ITEM(deps, j);
      dt_value *dv = NULL;
      if (Py_IS_TYPE(d, &core_future_type)) {
        dv = dt_future_value(((FutureObject *)d)->f);
      } else {
        PyObject *pos = PyDict_GetItemWithError(index, d);
        if (!pos) {
          core_free_nogil(a);
          if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError,
                         "graph node %R depends on %R, which is not an earlier node",
                         key, d);
          goto out;
        }
        dv = dt_value_ref(refs[PyLong_AsSsize_t(pos)]);
      }
      if (!dv || dt_list_push(a, dv)) {
        core_free_nogil(a);
        PyErr_NoMemory();
        goto out;
      }
    }
    s.o.key = PyUnicode_AsUTF8(key);
    if (!s.o.key) {
      core_free_nogil(a);
      goto out;
    }
    int rc = dt_graph_add(g, func, a, NULL, &s.o, &refs[i]);
    if (rc) {
      core_raise(rc);
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
        PyErr_Format(PyExc_KeyError, "output %R is not a node of the graph",
                     PyList_GET_ITEM(outputs, i));
      goto out;
    }
    outs[i] = refs[PyLong_AsSsize_t(pos)];
  }
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_graph_submit(c, g, outs, (size_t)no, futs);
  Py_END_ALLOW_THREADS if (rc) {
    core_raise(rc);
    goto out;
  }
  result = PyList_New(no);
  for (Py_ssize_t i = 0; i < no; i++) {
    PyObject *fo = result ? core_future_wrap(futs[i]) : NULL;
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

/* gather(futures, timeout_ms=-1) -> list of results */
static PyObject *client_gather(ClientObject *self, PyObject *args) {
  PyObject *l;
  int timeout_ms = -1;
  if (!PyArg_ParseTuple(args, "O|i", &l, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  dt_future **fs;
  size_t n;
  if (core_futures_of(l, &fs, &n)) return NULL;
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
    core_raise(rc);
  } else {
    r = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; r && i < n; i++) {
      PyObject *x = core_from_value(vals[i], 1);
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
  if (!PyArg_ParseTupleAndKeywords(args, kw, "O!|Op", kwlist, &PyList_Type, &l, &workers,
                                   &broadcast))
    return NULL;
  if (!client_ok(self)) return NULL;
  size_t n = (size_t)PyList_GET_SIZE(l);
  dt_scatter_opts so = {.broadcast = broadcast};
  const char **ws = NULL;
  if (core_str_list(workers, &ws, &so.n_workers)) return NULL;
  so.workers = ws;
  dt_value **vals = calloc(n ? n : 1, sizeof(dt_value *));
  dt_future **futs = calloc(n ? n : 1, sizeof(dt_future *));
  PyObject *r = NULL;
  if (!vals || !futs) {
    PyErr_NoMemory();
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    vals[i] = core_to_value(PyList_GET_ITEM(l, (Py_ssize_t)i), 0);
    if (!vals[i]) {
      for (size_t j = 0; j < i; j++) dt_value_free(vals[j]);
      goto out;
    }
  }
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_scatter(c, vals, n, &so, futs);
  Py_END_ALLOW_THREADS if (rc) {
    core_raise(rc);
    goto out;
  }
  r = PyList_New((Py_ssize_t)n);
  for (size_t i = 0; i < n; i++) {
    PyObject *fo = core_future_wrap(futs[i]);
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
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  PyObject *d = Py_BuildValue("{s:i,s:i,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L,s:L}", "n_workers", ci.n_workers,
                       "n_clients", ci.n_clients, "n_tasks", (long long)ci.n_tasks, "waiting",
                       (long long)ci.n_waiting, "no_worker", (long long)ci.n_no_worker,
                       "processing", (long long)ci.n_processing, "memory", (long long)ci.n_memory,
                       "erred", (long long)ci.n_erred, "released", (long long)ci.n_released,
                       "queued", (long long)ci.n_queued, "completed", (long long)ci.n_completed);
  /* the journal (docs/reliability.md): 0 without one */
  PyObject *j = d ? Py_BuildValue("{s:L,s:L,s:d}", "journal_bytes", (long long)ci.journal_bytes,
                                  "journal_compactions", (long long)ci.journal_compactions,
                                  "journal_replay_s", ci.journal_replay_s)
                  : NULL;
  if (!j || PyDict_Update(d, j) != 0) Py_CLEAR(d);
  Py_XDECREF(j);
  return d;
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
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  PyObject *l = PyList_New((Py_ssize_t)n);
  for (size_t i = 0; l && i < n; i++) {
    PyObject *d = Py_BuildValue(
        "{s:s,s:s,s:i,s:i,s:L,s:L,s:K,s:d,s:K,s:O,s:K,s:K,s:K,s:K,s:s,s:d}", "name", wi[i].name,
        "address",
        wi[i].address, "nthreads", wi[i].nthreads, "pid", wi[i].pid, "processing",
        (long long)wi[i].processing, "n_keys", (long long)wi[i].n_keys, "nbytes",
        (unsigned long long)wi[i].nbytes, "last_seen", wi[i].last_seen_s, "spilled",
        (unsigned long long)wi[i].spilled, "paused", wi[i].paused ? Py_True : Py_False, "rss",
        (unsigned long long)wi[i].rss, "memory", (unsigned long long)wi[i].memory, "peak_memory",
        (unsigned long long)wi[i].peak_memory, "memory_limit",
        (unsigned long long)wi[i].memory_limit, "resources", wi[i].resources, "cpu", wi[i].cpu);
    if (!d) Py_CLEAR(l);
    else PyList_SET_ITEM(l, (Py_ssize_t)i, d);
  }
  free(wi);
  return l;
}

/* future_for_key(key): a CFuture for the key this client already holds, or
 * None (a Dask graph naming an existing future by its key) */
static PyObject *client_future_for_key(ClientObject *self, PyObject *args) {
  const char *key;
  if (!PyArg_ParseTuple(args, "s", &key)) return NULL;
  if (!client_ok(self)) return NULL;
  dt_future *f = dt__bind_client_future(self->c, key);
  if (!f) Py_RETURN_NONE;
  return core_future_wrap(f);
}

static PyObject *client_wait_for_workers(ClientObject *self, PyObject *args) {
  int n, timeout_ms = -1;
  if (!PyArg_ParseTuple(args, "i|i", &n, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_wait_for_workers(c, n, timeout_ms);
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

static PyObject *client_retire_workers(ClientObject *self, PyObject *args) {
  PyObject *names;
  int timeout_ms = 30000;
  if (!PyArg_ParseTuple(args, "O|i", &names, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  const char **a;
  size_t n;
  if (core_str_list(names, &a, &n)) return NULL;
  int rc, retired = 0;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_retire_workers(c, a, n, timeout_ms, &retired);
  Py_END_ALLOW_THREADS free(a);
  if (rc) return core_raise(rc);
  return PyLong_FromLong(retired);
}

/* query(name, args=None, timeout_ms=10000): dt_client_query; args a dict */
static PyObject *client_query(ClientObject *self, PyObject *args) {
  const char *name;
  PyObject *a = Py_None;
  int timeout_ms = 10000;
  if (!PyArg_ParseTuple(args, "s|Oi", &name, &a, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  dt_value *v = a == Py_None ? NULL : core_to_value(a, 1);
  if (a != Py_None && !v) return NULL;
  dt_value *out = NULL;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_query(c, name, v, timeout_ms, &out);
  Py_END_ALLOW_THREADS core_free_nogil(v);
  if (rc) return core_raise(rc);
  PyObject *r = core_from_value(out, 1);
  core_free_nogil(out);
  return r;
}

static PyObject *client_progress(ClientObject *self, PyObject *args) {
  PyObject *l;
  int timeout_ms = -1;
  if (!PyArg_ParseTuple(args, "O|i", &l, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  dt_future **fs;
  size_t n;
  if (core_futures_of(l, &fs, &n)) return NULL;
  fflush(stdout);
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_progress(c, fs, n, timeout_ms);
  Py_END_ALLOW_THREADS free(fs);
  if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

/* retry(cfutures, timeout_ms): Client.retry */
static PyObject *client_retry(ClientObject *self, PyObject *args) {
  PyObject *l;
  int timeout_ms = 30000;
  if (!PyArg_ParseTuple(args, "O|i", &l, &timeout_ms)) return NULL;
  if (!client_ok(self)) return NULL;
  dt_future **fs;
  size_t n;
  if (core_futures_of(l, &fs, &n)) return NULL;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_retry(c, fs, n, timeout_ms);
  Py_END_ALLOW_THREADS free(fs);
  if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

/* ---- tasks from tasks */

/* fire_and_forget(cfutures) */
static PyObject *client_fire_and_forget(ClientObject *self, PyObject *args) {
  PyObject *l;
  if (!PyArg_ParseTuple(args, "O", &l) || !client_ok(self)) return NULL;
  dt_future **fs = NULL;
  size_t n = 0;
  if (core_futures_of(l, &fs, &n)) return NULL;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_fire_and_forget(c, fs, n);
  Py_END_ALLOW_THREADS free(fs);
  if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

/* future(key): a CFuture for a key the scheduler knows (the client wants it) */
static PyObject *client_future(ClientObject *self, PyObject *args) {
  const char *key;
  if (!PyArg_ParseTuple(args, "s", &key) || !client_ok(self)) return NULL;
  dt_future *f = NULL;
  int rc;
  dt_client *c = self->c;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_future(c, key, &f);
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  return core_future_wrap(f);
}

PyObject *core_client_borrowed(dt_client *c) {
  ClientObject *o = (ClientObject *)core_client_type.tp_alloc(&core_client_type, 0);
  if (!o) return NULL;
  o->c = c;
  o->borrowed = true;
  return (PyObject *)o;
}

static PyMethodDef client_methods[] = {
    {"fire_and_forget", (PyCFunction)client_fire_and_forget, METH_VARARGS, NULL},
    {"future", (PyCFunction)client_future, METH_VARARGS, NULL},
    {"submit", (PyCFunction)(void (*)(void))client_submit, METH_VARARGS | METH_KEYWORDS, NULL},
    {"graph_submit", (PyCFunction)(void (*)(void))client_graph_submit, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"gather", (PyCFunction)client_gather, METH_VARARGS, NULL},
    {"scatter", (PyCFunction)(void (*)(void))client_scatter, METH_VARARGS | METH_KEYWORDS, NULL},
    {"cluster_info", (PyCFunction)client_cluster_info, METH_VARARGS, NULL},
    {"workers", (PyCFunction)client_workers, METH_VARARGS, NULL},
    {"wait_for_workers", (PyCFunction)client_wait_for_workers, METH_VARARGS, NULL},
    {"future_for_key", (PyCFunction)client_future_for_key, METH_VARARGS, NULL},
    {"retire_workers", (PyCFunction)client_retire_workers, METH_VARARGS, NULL},
    {"progress", (PyCFunction)client_progress, METH_VARARGS, NULL},
    {"query", (PyCFunction)client_query, METH_VARARGS, NULL},
    {"retry", (PyCFunction)client_retry, METH_VARARGS, NULL},
    {"close", (PyCFunction)client_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

PyTypeObject core_client_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dtask._core.CClient",
    .tp_basicsize = sizeof(ClientObject),
    .tp_dealloc = (destructor)client_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_methods = client_methods,
    .tp_init = (initproc)client_init,
    .tp_new = PyType_GenericNew,
    .tp_doc = "a dt_client",
};

/* core_client_ptr: the dt_client of a CClient (core.h) */
dt_client *core_client_ptr(PyObject *o) {
  if (!PyObject_TypeCheck(o, &core_client_type)) {
    PyErr_SetString(PyExc_TypeError, "a CClient is needed");
    return NULL;
  }
  return client_ok((ClientObject *)o) ? ((ClientObject *)o)->c : NULL;
}
