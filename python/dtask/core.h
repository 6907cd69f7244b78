/*
 * core.h -- what the files of the dtask._core extension share.  The
 * extension sees the library only through dtask.h and the bindings header
 * src/client/bind.h; no internal struct of dtask is visible here.
 *
 *   _core.c        the module: hooks, errors, wait, role mains, init
 *   core_value.c   Python objects <-> dt_values (pickle-5, zero copy)
 *   core_future.c  CFuture
 *   core_client.c  CClient
 *   core_cluster.c CLocalCluster
 *   core_task.c    the "py:" task handler of a Python worker
 *   core_coord.c   coordination primitives and published datasets
 *
 * The GIL.  Every call into the C client that can block or take the
 * client's lock runs with the GIL released: the client's I/O thread takes
 * the GIL itself (done callbacks, releasing wrapped Python buffers), so
 * holding the GIL while waiting for the client's lock could deadlock.
 */
#ifndef DTASK_PY_CORE_H
#define DTASK_PY_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>
#include <stddef.h>

#include "dtask.h"
#include "../../src/client/bind.h"

/* ---- module state (_core.c) */
extern PyObject *core_error;       /* _core.Error(code, name, message) */
extern PyObject *core_hook_dumps;  /* serialize.dumps */
extern PyObject *core_hook_loads;  /* serialize.loads */
extern PyObject *core_hook_execute; /* serialize.execute */

/* core_raise: raises core_error(rc, name, dt_last_error()); returns NULL. */
PyObject *core_raise(int rc);
/* core_exiting: whether the interpreter is going (no GIL needed). */
bool core_exiting(void);
/* core_str_list: the strings of a Python list (NULL/None: none).  *out is
 * malloc'd (free it); its items are borrowed from l.  -1 with an exception. */
int core_str_list(PyObject *l, const char ***out, size_t *n);

/* ---- values (core_value.c) */
extern PyTypeObject core_buffer_type;
/* core_free_nogil: dt_value_free with the GIL released (values holding
 * futures take the client's lock when freed).  NULL is ignored. */
void core_free_nogil(dt_value *v);
/* core_to_value: o as a new dt_value, or NULL with an exception.  native:
 * lists, tuples and dicts with str keys become DT_LIST / DT_MAP (arguments
 * of C tasks); otherwise they are pickled (results of Python tasks keep
 * their exact types).  Large buffers are wrapped, not copied. */
dt_value *core_to_value(PyObject *o, int native);
/* core_from_value: v as a new Python object, or NULL with an exception.
 * writable: out-of-band buffers of pickled values may be writable (in a
 * client, for data it received). */
PyObject *core_from_value(const dt_value *v, int writable);
/* core_memview: a memoryview over the bytes value v, read in place (it
 * holds a reference on v). */
PyObject *core_memview(const dt_value *v, int writable);

/* ---- futures (core_future.c) */
typedef struct {
  PyObject_HEAD
  dt_future *f;
} FutureObject;
extern PyTypeObject core_future_type;
/* core_future_wrap: a CFuture taking over the reference f (released, and
 * NULL returned, if the object cannot be made). */
PyObject *core_future_wrap(dt_future *f);
/* core_futures_of: the dt_futures of a list of CFuture; *out malloc'd,
 * borrowed items.  -1 with an exception. */
int core_futures_of(PyObject *l, dt_future ***out, size_t *n);

/* ---- client and cluster (core_client.c, core_cluster.c) */
extern PyTypeObject core_client_type;
/* core_client_borrowed: a CClient over c that never closes it (a worker's
 * task client) */
PyObject *core_client_borrowed(dt_client *c);
extern PyTypeObject core_cluster_type;

/* ---- coordination primitives and datasets (core_coord.c) */
/* core_coord_init: adds coord() and the COORD_* constants to m; -1 on error */
int core_coord_init(PyObject *m);

/* ---- worker side (core_task.c) */
/* core_py_task: the "py:" task handler (runs a pickled Python call). */
dt_value *core_py_task(dt_task *t);
/* tasks from tasks: module functions task_client, task_secede, task_rejoin,
 * task_info (core_task.c) */
PyObject *core_mod_task_client(PyObject *m, PyObject *unused);
PyObject *core_mod_task_secede(PyObject *m, PyObject *unused);
PyObject *core_mod_task_rejoin(PyObject *m, PyObject *unused);
PyObject *core_mod_task_info(PyObject *m, PyObject *unused);
PyObject *core_mod_transfer_log(PyObject *m, PyObject *args);

/* ---- actors (core_actor.c) */
/* core_actor_init: adds actor_call to the module m and registers the
 * Python actor type "py:"; -1 with an exception. */
int core_actor_init(PyObject *m);
/* core_admin_init: adds plugin_add, plugin_remove, restart, restart_workers
 * (core_admin.c) to the module m */
int core_admin_init(PyObject *m);

/* core_client_ptr: the dt_client of the CClient o, or NULL with an
 * exception (not a CClient, or closed) (core_client.c) */
dt_client *core_client_ptr(PyObject *o);
/* core_graph_init: adds f_args and map_submit (core_graph.c) to the module
 * m; -1 with an exception */
int core_graph_init(PyObject *m);

#endif
