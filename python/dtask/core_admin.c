/*
 * core_admin.c -- the client's management calls in Python (dtask.client_admin):
 * plugin_add / plugin_remove (dt_client_register_plugin /
 * dt_client_unregister_plugin), restart (dt_client_restart) and
 * restart_workers (dt_client_restart_workers).  Each runs without the GIL.
 */
#include "core.h"

#include <stdlib.h>

/* the layout of core_client.c's ClientObject (its first field after the
 * header is the dt_client), as core_actor.c reads it */
typedef struct {
  PyObject_HEAD
  dt_client *c;
} client_view;

static dt_client *client_of(PyObject *co) {
  dt_client *c = ((client_view *)co)->c;
  if (!c) core_raise(DT_ECLOSED);
  return c;
}

/* plugin_add(client, name, func, data) / plugin_remove(client, name, func, data) */
static PyObject *plugin_send(PyObject *args, bool add) {
  PyObject *co;
  const char *name, *func;
  Py_buffer data;
  if (!PyArg_ParseTuple(args, "O!ssy*", &core_client_type, &co, &name, &func, &data)) return NULL;
  dt_client *c = client_of(co);
  if (!c) {
    PyBuffer_Release(&data);
    return NULL;
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = add ? dt_client_register_plugin(c, name, func, data.buf, (size_t)data.len)
                                  : dt_client_unregister_plugin(c, name, func, data.buf, (size_t)data.len);
  Py_END_ALLOW_THREADS PyBuffer_Release(&data);
  if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

static PyObject *mod_plugin_add(PyObject *m, PyObject *args) {
  (void)m;
  return plugin_send(args, true);
}

static PyObject *mod_plugin_remove(PyObject *m, PyObject *args) {
  (void)m;
  return plugin_send(args, false);
}

/* restart(client, timeout_ms, wait_for_workers) */
static PyObject *mod_restart(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *co;
  int timeout_ms, wait;
  if (!PyArg_ParseTuple(args, "O!ip", &core_client_type, &co, &timeout_ms, &wait)) return NULL;
  dt_client *c = client_of(co);
  if (!c) return NULL;
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_restart(c, timeout_ms, wait != 0);
  Py_END_ALLOW_THREADS if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

/* restart_workers(client, [address...], timeout_ms) */
static PyObject *mod_restart_workers(PyObject *m, PyObject *args) {
  (void)m;
  PyObject *co, *list;
  int timeout_ms;
  if (!PyArg_ParseTuple(args, "O!O!i", &core_client_type, &co, &PyList_Type, &list, &timeout_ms))
    return NULL;
  dt_client *c = client_of(co);
  if (!c) return NULL;
  Py_ssize_t n = PyList_GET_SIZE(list);
  const char **ws = calloc((size_t)(n ? n : 1), sizeof(char *));
  if (!ws) return PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < n; i++) {
    ws[i] = PyUnicode_AsUTF8(PyList_GET_ITEM(list, i));
    if (!ws[i]) {
      free(ws);
      return NULL;
    }
  }
  int rc;
  Py_BEGIN_ALLOW_THREADS rc = dt_client_restart_workers(c, ws, (size_t)n, timeout_ms);
  Py_END_ALLOW_THREADS free(ws);
  if (rc) return core_raise(rc);
  Py_RETURN_NONE;
}

static PyMethodDef admin_methods[] = {
    {"plugin_add", mod_plugin_add, METH_VARARGS, "plugin_add(client, name, func, data)"},
    {"plugin_remove", mod_plugin_remove, METH_VARARGS, "plugin_remove(client, name, func, data)"},
    {"restart", mod_restart, METH_VARARGS, "restart(client, timeout_ms, wait_for_workers)"},
    {"restart_workers", mod_restart_workers, METH_VARARGS,
     "restart_workers(client, [address...], timeout_ms)"},
    {NULL, NULL, 0, NULL}};

int core_admin_init(PyObject *m) { return PyModule_AddFunctions(m, admin_methods); }
