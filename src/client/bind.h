/*
 * bind.h -- the few internals that language bindings (the Python extension,
 * python/dtask/) need beyond dtask.h.  It includes only dtask.h and standard
 * headers, so a binding sees no internal struct: every function here works
 * on the public opaque types.  Candidates for the public API are marked so.
 */
#ifndef DT_BIND_H
#define DT_BIND_H

#include <stdbool.h>
#include <stddef.h>

#include "dtask.h"

/* dt__bind_bytes_take_arg: dt_bytes_take whose free_fn receives arg instead
 * of data (a binding frees a buffer export, not the memory itself).  The
 * buffer is wrapped, never copied.  Ownership of data is transferred: on
 * failure (NULL) free_fn(arg) has already run.  Public-API candidate
 * (dt_bytes_take_arg). */
dt_value *dt__bind_bytes_take_arg(void *data, size_t len, void (*free_fn)(void *), void *arg);

/* dt__bind_bytes_wrapped_by: whether v is a bytes value whose memory was
 * wrapped (dt_bytes_take, dt__bind_bytes_take_arg) with this free_fn, i.e.
 * memory that belongs to the binding's own object.  False for other values
 * and for bytes the library allocated (received or copied data). */
bool dt__bind_bytes_wrapped_by(const dt_value *v, void (*free_fn)(void *));

/* dt__bind_future_key: the key a DT_FUTURE value names (borrowed, valid
 * while v is alive), or NULL if v is not one.  Public-API candidate
 * (dt_value_future_key). */
const char *dt__bind_future_key(const dt_value *v);

/* dt__bind_client_future: a new reference to the future client c holds for
 * key (release it with dt_future_release), or NULL when c holds none.  Any
 * thread. */
dt_future *dt__bind_client_future(dt_client *c, const char *key);

/* dt__bind_task_fail: fails t with msg as it is (copied, any length; NULL:
 * "task failed") and code DT_ETASK, unless t has already failed (the first
 * failure is kept).  Unlike dt_task_fail, no formatting and no truncation:
 * a Python traceback arrives whole.  Returns 0, or DT_ENOMEM if msg could
 * not be copied (the task is then failed without a message). */
int dt__bind_task_fail(dt_task *t, const char *msg);

/* dt__worker_main, dt__scheduler_main: run a worker / scheduler process in
 * the calling thread until it stops, with argv as `dtask worker ARGS` /
 * `dtask scheduler ARGS` take it (argv excludes the role name); return the
 * process's exit status.  Defined in src/worker/ and src/scheduler/ (also
 * declared in src/cli/roles.h; keep the two in step).  Public-API
 * candidates (dt_worker_main, dt_scheduler_main): a binding that is its own
 * worker command (python -m dtask worker) needs them. */
int dt__worker_main(int argc, char **argv);
int dt__scheduler_main(int argc, char **argv);
/* dt__worker_inproc, dt__worker_inproc_stop: a worker on a thread of this
 * process, and its stop (see src/worker/worker.h) */
int dt__worker_inproc(int argc, char **argv);
/* dt__worker_transfer_log: this worker process's last transfers from
 * (outgoing false) or to (true) peers, oldest first, as Dask's transfer log
 * entries (maps of start, stop, middle, duration, who, keys, total,
 * bandwidth); a new list, or NULL when out of memory.  Any thread. */
dt_value *dt__worker_transfer_log(bool outgoing);
bool dt__worker_inproc_stop(void);

#endif
