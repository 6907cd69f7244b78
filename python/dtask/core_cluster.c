/*
 * core_cluster.c -- CLocalCluster, the dtask._core type over a
 * dt_local_cluster: start (workers run `python -m dtask worker` through
 * role_command), addresses, process ids and close.
 */
#include "core.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  PyObject_HEAD
  dt_local_cluster *lc;
} ClusterObject;

static int cluster_init(ClusterObject *self, PyObject *args, PyObject *kw) {
  static char *kwlist[] = {"n_workers", "threads_per_worker", "memory_limit", "dashboard_port",
                           "no_dashboard", "role_command", "no_nanny", "timeout_ms", "log_level",
                           "allowed_failures", "worker_ttl", "resources", "no_auth", "host",
                           "port", "start_empty", "journal", NULL};
  int n_workers = 0, threads = 0, dport = 0, no_dash = 0, no_nanny = 0, timeout_ms = 0, af = 0,
      no_auth = 0, port = 0, start_empty = 0;
  const char *mem = NULL, *log_level = NULL, *ttl = NULL, *res = NULL, *host = NULL, *journal = NULL;
  PyObject *cmd = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kw, "|iizipOpizizzpzipz", kwlist, &n_workers, &threads, &mem,
                                   &dport, &no_dash, &cmd, &no_nanny, &timeout_ms, &log_level, &af,
                                   &ttl, &res, &no_auth, &host, &port, &start_empty, &journal))
    return -1;
  if (self->lc) return 0;
  const char **argv = NULL;
  size_t nargv = 0;
  if (core_str_list(cmd, &argv, &nargv)) return -1;
  dt_local_cluster_opts o = {.n_workers = n_workers, .threads_per_worker = threads,
                             .memory_limit = mem, .dashboard_port = dport, .no_dashboard = no_dash,
                             .role_command = argv, .n_role_command = nargv, .no_nanny = no_nanny,
                             .timeout_ms = timeout_ms, .log_level = log_level,
                             .allowed_failures = af, .worker_ttl = ttl, .resources = res,
                             .no_auth = no_auth, .host = host, .port = port,
                             .start_empty = start_empty, .journal = journal};
  int rc;
  dt_local_cluster *lc = NULL;
  Py_BEGIN_ALLOW_THREADS rc = dt_local_cluster_start(&o, &lc);
  Py_END_ALLOW_THREADS free(argv);
  if (rc) {
    core_raise(rc);
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

/* scale(n, timeout_ms=0): dt_local_cluster_scale, without the GIL */
static PyObject *cluster_scale(ClusterObject *self, PyObject *args) {
  int n, timeout_ms = 0, rc;
  if (!PyArg_ParseTuple(args, "i|i", &n, &timeout_ms)) return NULL;
  dt_local_cluster *lc = self->lc;
  if (!lc) {
    PyErr_SetString(PyExc_RuntimeError, "LocalCluster is closed");
    return NULL;
  }
  Py_BEGIN_ALLOW_THREADS rc = dt_local_cluster_scale(lc, n, timeout_ms);
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

/* worker_names: the running workers' names, in the order started */
static PyObject *cluster_worker_names(ClusterObject *self, void *c) {
  (void)c;
  PyObject *l = PyList_New(0);
  int n = self->lc ? dt_local_cluster_n_workers(self->lc) : 0;
  for (int i = 0; l && i < n; i++) {
    char buf[64];
    if (dt_local_cluster_worker_name(self->lc, i, buf, sizeof(buf)) != 0) continue;
    PyObject *s = PyUnicode_FromString(buf);
    if (!s || PyList_Append(l, s)) Py_CLEAR(l);
    Py_XDECREF(s);
  }
  return l;
}

static PyMethodDef cluster_methods[] = {{"close", (PyCFunction)cluster_close, METH_NOARGS, NULL},
                                        {"scale", (PyCFunction)cluster_scale, METH_VARARGS, NULL},
                                        {NULL, NULL, 0, NULL}};
static PyGetSetDef cluster_getset[] = {
    {"address", (getter)cluster_address, NULL, NULL, NULL},
    {"dashboard", (getter)cluster_dashboard, NULL, NULL, NULL},
    {"auth_file", (getter)cluster_auth_file, NULL, NULL, NULL},
    {"scheduler_pid", (getter)cluster_scheduler_pid, NULL, NULL, NULL},
    {"worker_pids", (getter)cluster_worker_pids, NULL, NULL, NULL},
    {"worker_names", (getter)cluster_worker_names, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject core_cluster_type = {
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
