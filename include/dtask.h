/*
 * dtask.h -- the public API of dtask, a dynamic distributed task scheduler.
 *
 * A scheduler process tracks a graph of tasks; worker processes run them;
 * clients submit functions with arguments and get futures back.  This header
 * is the whole API: anything not declared here is internal.
 *
 * Conventions (as in libuv):
 *   - every name starts with dt_; functions are named dt_<noun>_<verb>;
 *   - functions that can fail return an int: 0 on success, a negative DT_E*
 *     code on failure.  dt_strerror() describes a code and dt_last_error()
 *     returns the message of the last failure on the calling thread, which
 *     names the thing that failed (the address, the key, the function...);
 *   - option structs are initialised with designated initialisers and a zero
 *     field always means "the default";
 *   - every returned pointer says who owns it: "borrowed" (valid until the
 *     named event), "new reference" (release it with the named function) or
 *     "consumed" (the function takes ownership on every path, failure too).
 *
 * Thread safety: values may be used from any thread (reference counts are
 * atomic) but a value must not be mutated while shared.  A client and its
 * futures may be used from any thread.
 */
#ifndef DTASK_H
#define DTASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Everything declared here is exported, also from -fvisibility=hidden builds. */
#pragma GCC visibility push(default)

#define DT_VERSION_MAJOR 0
#define DT_VERSION_MINOR 1
#define DT_VERSION_PATCH 0

/* ---------------------------------------------------------------- errors */

/* X-macro table of error codes: name, value, description. */
#define DT_ERRNO_MAP(X)                                                        \
  X(EINVAL, -1, "invalid argument")                                            \
  X(ENOMEM, -2, "out of memory")                                               \
  X(ECONNECT, -3, "could not connect")                                         \
  X(ETIMEDOUT, -4, "timed out")                                                \
  X(ECLOSED, -5, "client or cluster is closed")                                \
  X(ECONNLOST, -6, "lost connection to the scheduler")                         \
  X(ENOFUNC, -7, "unknown task function")                                      \
  X(ETASK, -8, "task failed")                                                  \
  X(ETYPE, -9, "wrong argument type")                                          \
  X(EARGS, -10, "wrong number of arguments")                                   \
  X(ECANCELLED, -11, "cancelled")                                              \
  X(EPROTO, -12, "protocol error")                                             \
  X(EIO, -13, "input/output error")                                            \
  X(ENOTFOUND, -14, "not found")                                               \
  X(ESPAWN, -15, "could not start process")                                    \
  X(ELIMIT, -16, "limit exceeded")                                             \
  X(EOF, -17, "end of sequence")                                               \
  X(ELOST, -18, "data lost")                                                   \
  X(EKILLED, -19, "task killed the workers that ran it")                       \
  X(EAUTH, -20, "authentication failed")

typedef enum {
  DT_OK = 0,
#define DT__ERRNO_ENUM(name, val, desc) DT_##name = (val),
  DT_ERRNO_MAP(DT__ERRNO_ENUM)
#undef DT__ERRNO_ENUM
} dt_errno;

/* dt_strerror: a static description of an error code ("unknown error" for
 * codes not in the table).  Never NULL. */
const char *dt_strerror(int err);
/* dt_err_name: the code's name, e.g. "DT_ETIMEDOUT".  Static, never NULL. */
const char *dt_err_name(int err);
/* dt_last_error: the message of the last failure on this thread, naming the
 * thing that failed.  Borrowed: valid until the next dtask call on this
 * thread.  Empty string if none. */
const char *dt_last_error(void);

/* ---------------------------------------------------------------- values */

/* A value is an immutable, reference-counted tree: nil, bool, int64, double,
 * string, bytes, list, map (string keys, insertion order kept) or a
 * reference to a future.  Bytes of DT_LARGE_BYTES or more travel between
 * processes as separate frames, never copied into the message body. */
typedef struct dt_value dt_value;

typedef enum {
  DT_NIL = 0,
  DT_BOOL,
  DT_INT,
  DT_DOUBLE,
  DT_STR,
  DT_BYTES,
  DT_LIST,
  DT_MAP,
  DT_FUTURE /* a future (or a graph node) used as a task argument */
} dt_type;

#define DT_LARGE_BYTES (64 * 1024)

/* Constructors return a new reference, or NULL when out of memory. */
dt_value *dt_nil(void);
dt_value *dt_bool(bool b);
dt_value *dt_int(int64_t i);
dt_value *dt_double(double d);
dt_value *dt_str(const char *s);              /* copies s */
dt_value *dt_strn(const char *s, size_t len); /* copies len bytes */
dt_value *dt_bytes(const void *data, size_t len); /* copies */
/* dt_bytes_take: wraps a buffer the caller allocated without copying it.
 * Ownership of data is transferred: free_fn(data) runs when the last
 * reference goes (free_fn may be NULL for static data). */
dt_value *dt_bytes_take(void *data, size_t len, void (*free_fn)(void *));
/* dt_bytes_alloc: a new bytes value of len bytes for the caller to fill
 * through *data (before anyone else sees the value).  Large ones live in
 * memory that workers on the same host share without copying. */
dt_value *dt_bytes_alloc(size_t len, void **data);
dt_value *dt_list_new(void);
dt_value *dt_map_new(void);
/* dt_list_of: a list of n items; each item is consumed (NULL items make
 * the whole call fail and return NULL, after releasing the others). */
dt_value *dt_list_of(size_t n, ...);

/* dt_list_push: appends item (consumed, also on failure). */
int dt_list_push(dt_value *list, dt_value *item);
/* dt_map_set: sets key (copied) to v (consumed, also on failure);
 * replaces an existing entry. */
int dt_map_set(dt_value *map, const char *key, dt_value *v);

/* dt_value_ref: adds a reference; returns v. */
dt_value *dt_value_ref(dt_value *v);
/* dt_value_free: drops a reference (NULL is ignored). */
void dt_value_free(dt_value *v);

dt_type dt_value_type(const dt_value *v);
const char *dt_type_name(dt_type t); /* static */
bool dt_value_bool(const dt_value *v);     /* false if not a bool */
int64_t dt_value_int(const dt_value *v);   /* 0 if not an int */
double dt_value_double(const dt_value *v); /* ints are converted; else 0 */
/* Borrowed pointers below are valid while v is alive.  NULL if wrong type. */
const char *dt_value_str(const dt_value *v, size_t *len); /* NUL-terminated */
const void *dt_value_bytes(const dt_value *v, size_t *len);
size_t dt_list_len(const dt_value *v);                    /* 0 if not list */
const dt_value *dt_list_get(const dt_value *v, size_t i); /* borrowed */
size_t dt_map_len(const dt_value *v);
const dt_value *dt_map_get(const dt_value *v, const char *key); /* borrowed */
const char *dt_map_key_at(const dt_value *v, size_t i);         /* borrowed */
const dt_value *dt_map_value_at(const dt_value *v, size_t i);   /* borrowed */
/* dt_value_equal: deep equality (futures compare by key). */
bool dt_value_equal(const dt_value *a, const dt_value *b);
/* dt_value_repr: writes a short human-readable form into buf (always
 * NUL-terminated when cap > 0); returns buf. */
char *dt_value_repr(const dt_value *v, char *buf, size_t cap);

/* ---------------------------------------------------------------- tasks */

/* A task function receives its positional and keyword arguments through the
 * dt_task handle and returns a new value (the result, ownership transferred)
 * or NULL after dt_task_fail() to fail with a message. */
typedef struct dt_task dt_task;
typedef dt_value *(*dt_task_fn)(dt_task *task);

/* dt_task_register: registers fn under name in this process (name copied).
 * Registering a name twice replaces it.  Thread-safe. */
int dt_task_register(const char *name, dt_task_fn fn);
/* dt_task_lookup: the function registered under name, or NULL.  A name
 * "ns:rest" with nothing registered under it falls back to a handler
 * registered as "ns:" (the Python worker registers "py:" for every Python
 * callable, so tasks keep their own function names, e.g. "py:inc"). */
dt_task_fn dt_task_lookup(const char *name);

/* DT_TASK(name) { ... } defines a task function `name` and registers it
 * under the string "name" before main() runs, in the program and in every
 * worker process a LocalCluster started by that program, and in shared
 * libraries loaded with `dtask worker --preload`. */
#define DT_TASK(name)                                                          \
  static dt_value *name(dt_task *task);                                        \
  __attribute__((constructor(101))) static void dt__register_##name(void) {    \
    dt_task_register(#name, name);                                             \
  }                                                                            \
  static dt_value *name(dt_task *task __attribute__((unused)))

size_t dt_task_nargs(const dt_task *t);
/* dt_task_arg: positional argument i (borrowed, valid during the call), or
 * NULL after failing the task with DT_EARGS when i is out of range. */
const dt_value *dt_task_arg(dt_task *t, size_t i);
/* dt_task_kwarg: keyword argument name (borrowed) or NULL if absent. */
const dt_value *dt_task_kwarg(dt_task *t, const char *name);
/* Typed accessors: 0 on success, else DT_EARGS / DT_ETYPE and the task is
 * failed with a message naming the function, the argument and the types. */
int dt_task_arg_int(dt_task *t, size_t i, int64_t *out);
int dt_task_arg_double(dt_task *t, size_t i, double *out); /* int accepted */
int dt_task_arg_str(dt_task *t, size_t i, const char **out);
/* dt_task_fail: fails the task with a printf-style message; returns NULL so
 * that `return dt_task_fail(task, "...")` reads naturally. */
dt_value *dt_task_fail(dt_task *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *dt_task_key(const dt_task *t);      /* borrowed */
const char *dt_task_function(const dt_task *t); /* borrowed */

/* Tasks from tasks (docs/python.md "Tasks from tasks").
 * dt_task_client: a client connected to the scheduler of the worker the
 * task runs on, with the worker's security; one per worker process, made on
 * first use (thread-safe), borrowed (never close it), alive as long as the
 * worker.  NULL with dt_last_error() when it cannot connect.  Declared in
 * the client section's types; futures it makes may be returned inside the
 * task's result (dt_future_value): they stay alive while that result is
 * held. */
struct dt_client;
struct dt_client *dt_task_client(dt_task *t);
/* dt_task_secede: hands the task's pool thread back (the worker starts
 * another; the scheduler stops counting the task against the worker's
 * threads).  dt_task_rejoin: waits until a thread slot is free again.
 * Blocking calls on futures (dt_future_result, dt_client_gather, dt_wait,
 * dt_as_completed_next) made inside a task secede while they wait and
 * rejoin after.  0, or an error outside a worker. */
int dt_task_secede(dt_task *t);
int dt_task_rejoin(dt_task *t);
/* dt_task_reschedule: returns NULL; the task is put back and runs again
 * (on another worker when one is free), not counted as a failure:
 * `return dt_task_reschedule(task);` */
dt_value *dt_task_reschedule(dt_task *t);
/* where the task runs (borrowed, life of the worker; "" outside one) */
const char *dt_task_worker_address(const dt_task *t);
const char *dt_task_worker_name(const dt_task *t);
int dt_task_worker_nthreads(const dt_task *t);
const char *dt_task_scheduler_address(const dt_task *t);
/* dt_task_current: the task the calling thread runs, or NULL */
dt_task *dt_task_current(void);

/* ---------------------------------------------------------------- client */

typedef struct dt_client dt_client;
typedef struct dt_future dt_future;

typedef struct {
  /* Scheduler address "host:port" (tcp:// prefix allowed).  NULL: the
   * environment variable DTASK_SCHEDULER_ADDRESS, else scheduler_file. */
  const char *address;
  /* File written by `dtask scheduler --scheduler-file`. */
  const char *scheduler_file;
  int timeout_ms; /* connect timeout; 0 = 10000 */
  const char *name; /* client name for logs; NULL = "client" */
  /* Security (docs/reliability.md).  auth_file: the cluster's shared
   * secret; NULL: the secret of a LocalCluster this process started at that
   * address, else $DTASK_AUTH_FILE, else none.  TLS: certificate and key
   * (PEM), and the CA that signed the scheduler's and workers' certificates. */
  const char *auth_file;
  const char *tls_cert, *tls_key, *tls_ca_file;
  /* Heartbeats: a client whose scheduler says nothing (not even an answer
   * to the client's heartbeat) for this long gives it up: waiting calls
   * return DT_ECONNLOST.  0: 60000; < 0: never. */
  int heartbeat_timeout_ms;
} dt_client_opts;

/* dt_client_connect: connects to a scheduler.  On success *out is a new
 * client, to be closed with dt_client_close(). */
int dt_client_connect(const dt_client_opts *opts, dt_client **out);
/* dt_client_close: releases every key the client holds and disconnects.
 * Futures still held stay valid as handles (dt_future_release them) but any
 * operation on them returns DT_ECLOSED.  NULL is ignored.  Calls of other
 * threads waiting on the client (results, gathers, dt_wait, queries,
 * cluster info, scatter, coordination calls) return an error, and the
 * client is freed once they have left (a call still inside after 30 s
 * keeps it from being freed, with a warning).  Starting a call on a client
 * after dt_client_close has begun is an error of the caller. */
void dt_client_close(dt_client *c);

typedef enum { DT_DEFAULT = 0, DT_YES = 1, DT_NO = -1 } dt_tristate;

typedef struct {
  const char *key; /* explicit key; NULL: derived from function and args */
  dt_tristate pure; /* DT_DEFAULT/DT_YES: key from a hash of the call, so
                       equal calls share one result; DT_NO: a fresh key */
  int priority;    /* higher runs first; default 0 */
  const char *const *workers; /* restrict to these worker names/addresses */
  size_t n_workers;
  bool allow_other_workers; /* restrictions are only a preference */
  const char *resources;    /* abstract resources, e.g. "GPU=1,MEM=2" */
  int retries;              /* re-run a failed task up to this many times */
  /* Seconds one run may take (0: no limit).  Past it the task fails with
   * DT_ETIMEDOUT ("... past its deadline ...") and its worker restarts (under
   * its nanny) to reclaim the thread: C code cannot be interrupted. */
  double timeout;
} dt_submit_opts;

/* dt_client_submit: submits func(*args, **kwargs).  args is a list or NULL,
 * kwargs a map or NULL; both are consumed.  Futures inside args or kwargs
 * (dt_future_value), also nested in lists and maps, become dependencies and
 * reach the task as their results.  *out: new future reference. */
int dt_client_submit(dt_client *c, const char *func, dt_value *args,
                     dt_value *kwargs, const dt_submit_opts *opts,
                     dt_future **out);
/* dt_client_map: submits func once per element of arg_lists (each element
 * a list of positional args; all consumed) in one message (several when
 * big, as dt_graph_submit); out[i] receives
 * a new future for call i. */
int dt_client_map(dt_client *c, const char *func, dt_value *const *arg_lists,
                  size_t n, const dt_submit_opts *opts, dt_future **out);
/* dt_client_gather: waits for every future and stores new references to
 * their results in out[0..n).  On the first error, out is left all-NULL and
 * the error (DT_ETASK for a failed task) is returned. timeout_ms < 0: none. */
int dt_client_gather(dt_client *c, dt_future *const *fs, size_t n,
                     int timeout_ms, dt_value **out);

typedef struct {
  const char *const *workers; /* put the data on these workers only */
  size_t n_workers;
  bool broadcast; /* put every value on every worker */
} dt_scatter_opts;
/* dt_client_scatter: sends values (consumed) to workers; out[i] is a new
 * future already finished with values[i]. */
int dt_client_scatter(dt_client *c, dt_value *const *values, size_t n,
                      const dt_scatter_opts *opts, dt_future **out);

typedef struct {
  int n_workers;
  int n_clients;
  int64_t n_tasks; /* tasks the scheduler knows */
  int64_t n_waiting, n_no_worker, n_processing, n_memory, n_erred,
      n_released;
  int64_t n_queued; /* ready root tasks held on the scheduler */
  int64_t n_completed; /* tasks finished since the scheduler started */
  double heartbeat_age_s; /* the longest time since a worker was last heard */
  /* the scheduler's journal (docs/reliability.md): its file's size now,
   * compactions since the start, and how long the replay at the start took
   * (all 0 without --journal) */
  int64_t journal_bytes, journal_compactions;
  double journal_replay_s;
} dt_cluster_info;
/* dt_client_cluster_info: asks the scheduler for its counts. */
int dt_client_cluster_info(dt_client *c, int timeout_ms, dt_cluster_info *out);
typedef struct {
  char name[128], address[128];
  int nthreads, pid;
  int64_t processing; /* tasks sent to it and not finished */
  int64_t n_keys;     /* results it holds */
  uint64_t nbytes;    /* their size */
  double last_seen_s; /* since it was last heard from */
  uint64_t spilled;   /* bytes of results spilled to its disk */
  bool paused;        /* over its memory pause threshold */
  uint64_t rss;       /* its process's resident memory */
  uint64_t memory;    /* bytes of results in its memory (not spilled) */
  uint64_t peak_memory; /* the most it ever held in memory at once */
  uint64_t memory_limit; /* its memory limit in bytes, 0: none */
  char resources[256];   /* its abstract resources, "GPU=2,MEM=1e+09" ("" none) */
  double cpu;            /* its CPU use, percent of one core */
} dt_worker_info;
/* dt_client_workers: the workers connected now.  *out is malloc'd (free
 * it), *n its length. */
int dt_client_workers(dt_client *c, int timeout_ms, dt_worker_info **out, size_t *n);
/* dt_client_retire_workers: the named workers (names or addresses) get no
 * new work; the results only they hold that are still needed are copied to
 * other workers; then they close.  *retired (may be NULL): how many did.
 * A worker whose results no other worker can take is kept (DT_EINVAL). */
int dt_client_retire_workers(dt_client *c, const char *const *names, size_t n, int timeout_ms,
                             int *retired);
/* dt_client_wait_for_workers: waits until at least n workers are connected. */
int dt_client_wait_for_workers(dt_client *c, int n, int timeout_ms);
/* dt_client_fire_and_forget: the scheduler keeps the tasks of fs (and
 * what they need) running until they finish, even if every client
 * releases them or closes (Dask's fire_and_forget).  Usable from a task's
 * client too. */
int dt_client_fire_and_forget(dt_client *c, dt_future *const *fs, size_t n);
/* dt_client_future: a future for key, a task the scheduler knows (e.g. one
 * a task submitted and returned): the client wants it from now on. */
int dt_client_future(dt_client *c, const char *key, dt_future **out);
/* Management (Dask's Client.restart, restart_workers, register_plugin,
 * upload_file).  dt_client_restart: every future of c becomes cancelled
 * (DT_ECANCELLED) and its key released; every worker is restarted by its
 * nanny; with wait_for_workers, waits until as many fresh workers are
 * connected.  Workers without a nanny: DT_EINVAL naming them, before
 * anything is done.  timeout_ms -1: no limit. */
int dt_client_restart(dt_client *c, int timeout_ms, bool wait_for_workers);
/* dt_client_restart_workers: restarts only these workers (addresses, with
 * or without "tcp://"); the results they held are lost (recomputed if still
 * wanted).  Waits until the cluster has as many workers as before. */
int dt_client_restart_workers(dt_client *c, const char *const *workers, size_t n, int timeout_ms);
/* dt_client_register_plugin: the scheduler keeps the plugin name (one of
 * that name is replaced) and every worker, joining ones too, runs the
 * registered function func with [data] before its next task ("dtask:so":
 * data is a shared library the worker loads).  At most 64 plugins of 64 MiB.
 * dt_client_unregister_plugin: forgets it; workers run func with [data]. */
int dt_client_register_plugin(dt_client *c, const char *name, const char *func, const void *data,
                              size_t len);
int dt_client_unregister_plugin(dt_client *c, const char *name, const char *func,
                                const void *data, size_t len);
/* dt_client_upload_file: a shared library (.so) every worker, joining ones
 * too, loads: its DT_TASK functions become callable by name. */
int dt_client_upload_file(dt_client *c, const char *path);

/* ---- questions to the scheduler (Dask's Client.who_has, story, ...) */
/* dt_client_query: asks the scheduler the named question with args (a map,
 * borrowed; NULL: none) and waits for its answer: *out (may be NULL) a new
 * reference.  Names and arguments (each optional unless said; keys and
 * workers are lists of strings, workers by name or address):
 *   who_has {keys}         -> {key: [worker address...]}
 *   has_what {workers}     -> {worker address: [key...]}
 *   nbytes {keys}          -> {key: bytes} (results in memory)
 *   processing {workers}   -> {worker address: [key...]} (running or sent)
 *   ncores {workers}       -> {worker address: threads}
 *   story {keys}           -> [[key, from, to, "scheduler", time]...], the
 *                             recent transitions (a bounded ring), oldest first
 *   log_event {topic, msg} -> nil; topic a string or a list of them
 *   get_events {topic, since} -> [[time, msg]...], or {topic: [...]} for
 *                             every topic; since: only events numbered
 *                             since or later, each as [seq, time, msg]
 *   set_metadata {keys, value} / get_metadata {keys, default, has_default}
 *                          -> a nested store (keys: the path)
 *   task_stream {start, stop, count} -> [{key, worker, status, nbytes,
 *                             startstops: [{action, start, stop}]}...]
 *   logs {n} / worker_logs {n, workers} -> the scheduler's recent log lines
 *                             [[level, line]...] / {worker address: [...]}
 *   replicate {keys, n, workers} -> copies asked (n nil: every worker)
 *   rebalance {keys, workers} -> moves asked
 *   retry {keys}           -> tasks moved from erred back to run (Client.retry)
 *   task_spec {key, root}  -> {key, func, state, payload, deps} (recreate_error_locally)
 * Times are seconds since the epoch.  Bad input (an unknown name, an
 * argument of the wrong type) is DT_EINVAL naming it; a missing metadata
 * key DT_ENOTFOUND. */
int dt_client_query(dt_client *c, const char *name, const dt_value *args, int timeout_ms,
                    dt_value **out);
/* Typed shorthands (keys / workers NULL: all): */
int dt_client_who_has(dt_client *c, const char *const *keys, size_t n, int timeout_ms,
                      dt_value **out);
int dt_client_has_what(dt_client *c, const char *const *workers, size_t n, int timeout_ms,
                       dt_value **out);
int dt_client_story(dt_client *c, const char *const *keys, size_t n, int timeout_ms,
                    dt_value **out);
/* dt_client_log_event: records msg (consumed) under topic on the scheduler */
int dt_client_log_event(dt_client *c, const char *topic, dt_value *msg);
/* dt_client_get_events: topic's events [[time, msg]...] (NULL: every topic's) */
int dt_client_get_events(dt_client *c, const char *topic, int timeout_ms, dt_value **out);
/* dt_log_event: from a task function running on a worker: records msg
 * (consumed) under topic on the scheduler; it arrives before the task's
 * result.  DT_EINVAL outside a worker. */
int dt_log_event(const char *topic, dt_value *msg);
/* dt_client_retry: Dask's Client.retry: each failed (DT_ERROR) future of
 * fs goes back to DT_PENDING and the scheduler runs its task again, with
 * the failed tasks it depends on (query "retry"); others are left alone. */
int dt_client_retry(dt_client *c, dt_future *const *fs, size_t n, int timeout_ms);

/* ---------------------------------------------------------------- futures */

typedef enum {
  DT_PENDING = 0,
  DT_FINISHED,
  DT_ERROR,
  DT_CANCELLED,
  DT_LOST /* the scheduler went away */
} dt_future_status;

dt_future *dt_future_ref(dt_future *f); /* adds a reference; returns f */
/* dt_future_release: drops a reference; when the last reference to a key
 * in a client goes, the client tells the scheduler, which forgets the key
 * once no client wants it.  NULL is ignored. */
void dt_future_release(dt_future *f);
const char *dt_future_key(const dt_future *f); /* borrowed, life of f */
dt_future_status dt_future_status_get(const dt_future *f);
bool dt_future_done(const dt_future *f);
/* dt_future_result: waits (timeout_ms < 0: forever) and stores a new
 * reference to the result in *out.  A failed task gives DT_ETASK (or
 * DT_ENOFUNC/DT_ETYPE/DT_EARGS) and dt_last_error() carries the key, the
 * function, the worker and the task's message. */
int dt_future_result(dt_future *f, int timeout_ms, dt_value **out);
/* dt_future_exception: the error message of a failed future, or NULL.
 * Borrowed: valid while f is alive. */
const char *dt_future_exception(const dt_future *f);
/* dt_future_cancel: cancels the task (and releases this client's interest);
 * the future finishes as DT_CANCELLED. */
int dt_future_cancel(dt_future *f);
/* dt_future_cancel_force: as dt_future_cancel, and a worker still running
 * the task restarts (under its nanny) to reclaim its thread.  Without
 * force a cancelled task that is running keeps its thread until it returns
 * (the scheduler counts that thread busy meanwhile). */
int dt_future_cancel_force(dt_future *f);
/* dt_future_add_done_callback: cb(f, arg) runs exactly once, when f is done
 * (at once, on this thread, if already done); otherwise on the client's I/O
 * thread.  cb must not block for long. */
typedef void (*dt_future_cb)(dt_future *f, void *arg);
int dt_future_add_done_callback(dt_future *f, dt_future_cb cb, void *arg);
/* dt_future_value: a DT_FUTURE value that refers to f, for use as a task
 * argument.  New reference; it holds a reference on f. */
dt_value *dt_future_value(dt_future *f);

typedef enum { DT_ALL_COMPLETED = 0, DT_FIRST_COMPLETED = 1 } dt_wait_mode;
/* dt_wait: waits until all (or the first) of fs are done.  DT_ETIMEDOUT on
 * timeout.  Errors of the tasks are not returned here. */
int dt_wait(dt_future *const *fs, size_t n, int timeout_ms, dt_wait_mode mode);

/* dt_progress: waits for fs, drawing a live progress bar on stdout (one bar
 * per task function on a terminal; a plain line per second otherwise).
 * timeout_ms < 0: none.  Task errors are counted, not returned. */
int dt_progress(dt_client *c, dt_future *const *fs, size_t n, int timeout_ms);

/* dt_as_completed: iterates over futures in the order they finish. */
typedef struct dt_as_completed dt_as_completed;
/* dt_as_completed_new: the iterator holds its own references on fs. */
dt_as_completed *dt_as_completed_new(dt_future *const *fs, size_t n);
/* dt_as_completed_next: *out is a new reference to the next finished
 * future; DT_EOF when all were returned; DT_ETIMEDOUT on timeout. */
int dt_as_completed_next(dt_as_completed *ac, int timeout_ms, dt_future **out);
void dt_as_completed_free(dt_as_completed *ac);

/* ---------------------------------------------------------------- graphs */

/* A graph is a DAG built lazily (like dask.delayed) and submitted in one
 * message. */
typedef struct dt_graph dt_graph;
dt_graph *dt_graph_new(void); /* new; free with dt_graph_free */
void dt_graph_free(dt_graph *g);
/* dt_graph_add: adds a call (args/kwargs consumed; they may contain values
 * returned by earlier dt_graph_add calls and futures).  *ref_out: a new
 * DT_FUTURE value naming the node, to pass to other nodes or to submit. */
int dt_graph_add(dt_graph *g, const char *func, dt_value *args,
                 dt_value *kwargs, const dt_submit_opts *opts,
                 dt_value **ref_out);
/* dt_graph_submit: sends every node in one message; out[i] is a new future
 * for outputs[i] (borrowed values returned by dt_graph_add).  Only nodes
 * that some output depends on are sent (the graph is culled, as Dask does).
 * A big graph (over 100,000 tasks or 32 MiB) goes in several messages, the
 * call returning once the last is on its way; the result is the same. */
int dt_graph_submit(dt_client *c, dt_graph *g, dt_value *const *outputs,
                    size_t n, dt_future **out);

/* ---------------------------------------------------------------- cluster */

typedef struct dt_local_cluster dt_local_cluster;
typedef struct {
  int n_workers;          /* 0 = number of CPUs */
  int threads_per_worker; /* 0 = 1 */
  const char *host;       /* 0 = "127.0.0.1" */
  int port;               /* scheduler port; 0 = any free port */
  int timeout_ms;         /* start-up timeout; 0 = 30000 */
  const char *log_level;  /* NULL = $DTASK_LOG_LEVEL or "warning" */
  const char *resources;  /* every worker declares these, e.g. "GPU=1" */
  /* Resilience (docs/reliability.md). */
  bool no_nanny;          /* workers run without the nanny that restarts them */
  int allowed_failures;   /* worker deaths a task may cause before it fails
                             with DT_EKILLED; 0 = 3 (Dask's default),
                             negative = none allowed */
  const char *worker_ttl; /* a worker silent this long is removed, e.g. "5s";
                             NULL = "60s" */
  /* Security: by default the cluster gets a fresh random shared secret that
   * every connection must prove it knows; clients of this process use it
   * automatically (see dt_local_cluster_auth_file for other processes). */
  bool no_auth;
  /* Dashboard (docs/dashboard.md): on host:dashboard_port (0 = 8787, or
   * another port if that one is taken), unless no_dashboard. */
  int dashboard_port;
  bool no_dashboard;
  /* Memory per worker (docs/memory.md): "2GiB", "0" for none; NULL =
   * "auto": the machine's memory divided among the workers. */
  const char *memory_limit;
  /* The command the scheduler and workers run as, followed by the role
   * ("scheduler" or "worker") and its arguments, e.g. {"/usr/bin/python3",
   * "-m", "dtask"}; argv[0] is a path.  NULL: this program re-executed. */
  const char *const *role_command;
  size_t n_role_command;
  /* Start with no workers (n_workers is ignored); add them with
   * dt_local_cluster_scale. */
  bool start_empty;
  /* Workers move results to each other over TCP even on this host, as
   * between hosts (worker --no-shm, $DTASK_NO_SHM=1): no shared memory. */
  bool no_shm;
  /* The scheduler keeps a journal in this file (docs/reliability.md): a
   * scheduler restarted at the same address with it carries on. NULL: none. */
  const char *journal;
} dt_local_cluster_opts;

/* dt_local_cluster_start: starts a scheduler and n_workers worker processes
 * on this machine and waits until all workers are connected.  The workers
 * re-execute this program, so every DT_TASK it defines is available to them.
 * The processes are stopped by dt_local_cluster_close and when this program
 * exits, even on an error. */
int dt_local_cluster_start(const dt_local_cluster_opts *opts,
                           dt_local_cluster **out);
/* dt_local_cluster_address: "host:port" of the scheduler; borrowed, valid
 * until close. */
const char *dt_local_cluster_address(const dt_local_cluster *lc);
/* dt_local_cluster_worker_pid: pid of worker i's process as started: its
 * nanny (the worker is the nanny's child), or the worker with no_nanny; -1
 * if there is no worker i. */
int dt_local_cluster_worker_pid(const dt_local_cluster *lc, int i);
int dt_local_cluster_scheduler_pid(const dt_local_cluster *lc);
/* dt_local_cluster_dashboard: "http://host:port/" of the dashboard, or
 * NULL without one.  Borrowed, valid until close. */
const char *dt_local_cluster_dashboard(const dt_local_cluster *lc);
/* dt_local_cluster_auth_file: path of a file (mode 0600, removed at close)
 * holding the cluster's secret, for clients in other processes
 * (dt_client_opts.auth_file or $DTASK_AUTH_FILE); NULL with no_auth. */
const char *dt_local_cluster_auth_file(const dt_local_cluster *lc);
/* dt_local_cluster_scale: makes the cluster n workers (0 to 1024): starts
 * new ones (named local-worker-<k>, numbers never reused) and waits until
 * the scheduler has them all, or retires the newest ones (the results only
 * they hold move to the others first, unless n is 0) and stops their
 * processes.  timeout_ms <= 0: the start-up timeout.  One scale at a time
 * per cluster (calls from several threads wait for each other). */
int dt_local_cluster_scale(dt_local_cluster *lc, int n, int timeout_ms);
/* dt_local_cluster_n_workers: how many workers it runs now. */
int dt_local_cluster_n_workers(const dt_local_cluster *lc);
/* dt_local_cluster_worker_name: writes worker i's name (i from 0 to
 * n_workers - 1, the order they were started) into buf. */
int dt_local_cluster_worker_name(const dt_local_cluster *lc, int i, char *buf, size_t cap);
/* dt_local_cluster_close: stops every process it started and frees lc. */
void dt_local_cluster_close(dt_local_cluster *lc);

/* ---------------------------------------------------------------- job queues */

/* A cluster whose workers are batch jobs (what dask-jobqueue's SLURMCluster
 * and PBSCluster do): the scheduler runs here, each job runs `processes`
 * workers that connect back to it, named after the job id.  Option names
 * and meanings are dask-jobqueue's.  docs/hpc.md. */
typedef struct dt_jobqueue_cluster dt_jobqueue_cluster;
typedef enum { DT_JOBQUEUE_SLURM = 0, DT_JOBQUEUE_PBS = 1 } dt_jobqueue_system;
typedef struct {
  dt_jobqueue_system system;
  int cores;              /* cores per job, shared by its workers; 0 = 1 */
  const char *memory;     /* memory per job, e.g. "4GB", "512MiB"; NULL: not asked */
  int processes;          /* workers per job; 0 = 1 */
  const char *queue;      /* Slurm partition / PBS queue; NULL: the default */
  const char *account;    /* NULL: none */
  const char *walltime;   /* "HH:MM:SS"; NULL = "00:30:00" */
  const char *job_name;   /* NULL = "dtask-worker" */
  const char *const *job_extra_directives; /* more #SBATCH / #PBS lines */
  size_t n_job_extra_directives;
  const char *const *job_script_prologue;  /* lines run before the workers */
  size_t n_job_script_prologue;
  const char *local_directory; /* the workers' scratch directory */
  const char *log_directory;   /* job output; NULL: a folder made per cluster */
  const char *interface;  /* network interface whose address workers connect to */
  const char *host;       /* or the scheduler's address itself; NULL/"": see docs */
  int port;               /* scheduler port; 0 = any */
  const char *const *submit_command_extra; /* extra sbatch/qsub arguments */
  size_t n_submit_command_extra;
  const char *worker_command; /* NULL: `dtask worker` when this program is
                                 dtask, else this program in the worker role */
  const char *const *worker_extra_args; /* e.g. "--preload", "lib.so" */
  size_t n_worker_extra_args;
  int job_start_timeout_ms; /* wait_for_workers names jobs pending longer; 0 = 300000 */
  bool no_auth;           /* default: a fresh shared secret in ~/.dtask (0600) */
  const char *log_level;  /* the scheduler's and workers'; NULL = "warning" */
  /* walltime-aware workers (Dask's worker --lifetime; docs/hpc.md): each
   * worker retires gracefully (its results copied to other workers first)
   * after lifetime +- a uniform random lifetime_stagger (durations such as
   * "55m", "01:50:00"; NULL: never), and its job ends -- or, with
   * lifetime_restart, a fresh worker starts in the same job.  Without
   * restart, while the cluster wants its jobs, a retiring job's replacement
   * is submitted lifetime_lead before its workers retire (NULL: twice the
   * queue wait seen, at least 60 s, at most half of lifetime - stagger). */
  const char *lifetime;
  const char *lifetime_stagger;
  bool lifetime_restart;
  const char *lifetime_lead;
  const char *journal;    /* the scheduler keeps a journal there (docs/reliability.md):
                             restart it with the same port and auth file; NULL: none */
} dt_jobqueue_opts;

/* dt_jobqueue_job_script: the exact script that would be submitted, for
 * an address and auth file (NULL: placeholders).  malloc'd. */
char *dt_jobqueue_job_script(const dt_jobqueue_opts *opts, const char *address,
                             const char *auth_file);
/* dt_jobqueue_cluster_start: starts the scheduler here; no jobs yet. */
int dt_jobqueue_cluster_start(const dt_jobqueue_opts *opts, dt_jobqueue_cluster **out);
const char *dt_jobqueue_cluster_address(const dt_jobqueue_cluster *jc);
const char *dt_jobqueue_cluster_auth_file(const dt_jobqueue_cluster *jc);
/* the script this cluster submits (borrowed) */
const char *dt_jobqueue_cluster_script(const dt_jobqueue_cluster *jc);
/* dt_jobqueue_scale: as many jobs as n workers need (ceil(n / processes));
 * dt_jobqueue_scale_jobs: n jobs.  Submits or cancels (pending jobs first).
 * Both stop adaptive scaling. */
int dt_jobqueue_scale(dt_jobqueue_cluster *jc, int n_workers);
int dt_jobqueue_scale_jobs(dt_jobqueue_cluster *jc, int n_jobs);
/* dt_jobqueue_adapt: between minimum and maximum workers, more while tasks
 * wait, fewer when workers sit idle. */
int dt_jobqueue_adapt(dt_jobqueue_cluster *jc, int minimum, int maximum);
/* dt_jobqueue_jobs: jobs submitted and not known to be finished. */
int dt_jobqueue_jobs(dt_jobqueue_cluster *jc, int *pending, int *running);
/* dt_jobqueue_wait_for_workers: DT_ETIMEDOUT names the jobs still pending
 * and the batch system's reason. */
int dt_jobqueue_wait_for_workers(dt_jobqueue_cluster *jc, int n, int timeout_ms);
/* dt_jobqueue_cluster_close: cancels every job it submitted, stops the
 * scheduler, frees jc. */
void dt_jobqueue_cluster_close(dt_jobqueue_cluster *jc);

/* ---------------------------------------------------------------- actors */

/* An actor is a stateful object that lives on the worker that ran the task
 * creating it, until that task's key is released (Dask's actors).  Method
 * calls go from the caller straight to that worker, never through the
 * scheduler; the calls to one actor run one at a time, in the order they
 * arrived, on the worker's actor threads (calls to different actors run in
 * parallel).  docs/architecture.md ("Actors").
 *
 * An actor type is three functions registered under a name:
 *   create(task): makes the state from the task's arguments (dt_task_arg..);
 *     returns it (ownership transferred to the worker; NULL is a valid
 *     state unless the task was failed with dt_task_fail);
 *   call(state, method, attribute, task): runs method (attribute: the
 *     caller reads the attribute of that name, with no arguments) with the
 *     call's arguments in task; returns a new value (ownership transferred)
 *     or NULL after dt_task_fail (the caller gets the message);
 *     dt_task_function(task) is the method's name;
 *   free(state): when the key is released (may be NULL). */
typedef void *(*dt_actor_create_fn)(dt_task *task);
typedef dt_value *(*dt_actor_call_fn)(void *state, const char *method, bool attribute,
                                      dt_task *task);
typedef void (*dt_actor_free_fn)(void *state);
/* dt_actor_register: registers an actor type under name (copied) in this
 * process; again replaces it.  A name "ns:rest" with nothing registered
 * under it falls back to "ns:" (as dt_task_lookup does).  Thread-safe. */
int dt_actor_register(const char *name, dt_actor_create_fn create, dt_actor_call_fn call,
                      dt_actor_free_fn free_fn);
/* DT_ACTOR(name, create, call, free) registers the actor type `name` before
 * main() runs (in the program, the workers a LocalCluster of it starts, and
 * `--preload` libraries), as DT_TASK does. */
#define DT_ACTOR(name, create, call, free_fn)                                  \
  __attribute__((constructor(101))) static void dt__register_actor_##name(void) { \
    dt_actor_register(#name, create, call, free_fn);                           \
  }

/* Client side.  A dt_actor is a handle on an actor: its key and the
 * address of the worker holding it; it belongs to one client and must not
 * outlive it. */
typedef struct dt_actor dt_actor;
/* dt_client_submit_actor: creates an actor of the registered type on a
 * worker: the task "actor:<type>"(*args, **kwargs) (args, kwargs consumed;
 * opts as dt_client_submit, but always impure unless opts->key is set).
 * *out: a new future whose result is the actor's handle, a map {"actor":
 * key, "address": worker, "type": type}; releasing its last reference
 * releases the actor. */
int dt_client_submit_actor(dt_client *c, const char *type, dt_value *args, dt_value *kwargs,
                           const dt_submit_opts *opts, dt_future **out);
/* dt_actor_from_future: waits (timeout_ms < 0: forever) for f, the future
 * of dt_client_submit_actor, and makes a handle on its actor.  *out: new,
 * free it with dt_actor_free; it holds a reference on f (the actor lives
 * at least as long as the handle). */
int dt_actor_from_future(dt_future *f, int timeout_ms, dt_actor **out);
/* dt_actor_new: a handle on the actor with key held by the worker at
 * address (both copied), e.g. from a handle map a task received; it does
 * not keep the actor alive.  *out: new, free it with dt_actor_free. */
int dt_actor_new(dt_client *c, const char *key, const char *address, dt_actor **out);
const char *dt_actor_key(const dt_actor *a);     /* borrowed, life of a */
const char *dt_actor_address(const dt_actor *a); /* borrowed, life of a */
/* dt_actor_call: calls method(*args, **kwargs) on the actor (args a list
 * or NULL, kwargs a map or NULL, both consumed; futures are not allowed
 * inside).  *out: a new future (not a key of the scheduler) that
 * dt_future_result, dt_future_done, dt_wait and done callbacks work on: its
 * result is the method's return value; a failed method gives DT_ETASK with
 * its message; an unknown or released actor DT_ENOTFOUND; a lost worker
 * DT_ELOST. */
int dt_actor_call(dt_actor *a, const char *method, dt_value *args, dt_value *kwargs,
                  dt_future **out);
/* dt_actor_get: reads attribute name of the actor (through the type's call
 * with attribute true); *out: a new future as dt_actor_call's. */
int dt_actor_get(dt_actor *a, const char *name, dt_future **out);
/* dt_actor_free: frees the handle (and its reference on the creating
 * future); calls in flight keep going.  NULL is ignored. */
void dt_actor_free(dt_actor *a);
/* ---------------------------------------------------------------- coordination */

/* Coordination primitives and published datasets, held by the scheduler
 * (as distributed.Variable, Queue, Lock, MultiLock, Event, Semaphore and
 * Client.publish_dataset): every client and task that names the same
 * primitive shares it.  Names are 1..1024 bytes; a name used as one kind
 * (a lock) is not another (a queue) while it exists (DT_ETYPE).
 *
 * Values are borrowed (encoded at the call); a DT_FUTURE value inside one
 * keeps its key alive on the scheduler while the scheduler holds the value,
 * and a value received holds futures of the receiving client
 * (dt_value_future).  timeout_ms: < 0 waits forever, 0 does not wait; the
 * scheduler times waiters out, so a call that returned DT_ETIMEDOUT took
 * nothing.  Locks and semaphore leases belong to the client connection
 * that took them (a task's: its worker's client) and are released when it
 * closes.  Every function returns 0 or a DT_E... code with a message naming
 * the primitive: DT_ETIMEDOUT, DT_ETYPE (another kind), DT_EINVAL (e.g.
 * releasing what this client does not hold), DT_ENOTFOUND (no such
 * dataset), DT_ELIMIT (over the scheduler's bounds), DT_ECONNLOST, ... */

/* dt_variable_set / get / delete: a named value.  get waits until the
 * variable is set; *out is a new reference. */
int dt_variable_set(dt_client *c, const char *name, const dt_value *value);
int dt_variable_get(dt_client *c, const char *name, int timeout_ms, dt_value **out);
int dt_variable_delete(dt_client *c, const char *name);
/* dt_queue_put: appends value; maxsize (> 0) bounds a queue created by this
 * call, and a put to a full queue waits for room.  dt_queue_get: takes the
 * oldest value (a new reference), waiting for one.  dt_queue_qsize: items. */
int dt_queue_put(dt_client *c, const char *name, const dt_value *value, int64_t maxsize,
                 int timeout_ms);
int dt_queue_get(dt_client *c, const char *name, int timeout_ms, dt_value **out);
int dt_queue_qsize(dt_client *c, const char *name, int64_t *out);
/* dt_lock_acquire: DT_ETIMEDOUT when not acquired in time (timeout_ms 0:
 * non-blocking).  dt_lock_release: DT_EINVAL if this client does not hold
 * it.  dt_lock_locked: whether anyone holds it. */
int dt_lock_acquire(dt_client *c, const char *name, int timeout_ms);
int dt_lock_release(dt_client *c, const char *name);
int dt_lock_locked(dt_client *c, const char *name, bool *out);
/* dt_multilock_acquire: all of the n locks at once, or num_locks of them
 * (0: all), never some of them while waiting.  dt_multilock_release: the
 * ones of names this client holds. */
int dt_multilock_acquire(dt_client *c, const char *const *names, size_t n, size_t num_locks,
                         int timeout_ms);
int dt_multilock_release(dt_client *c, const char *const *names, size_t n);
/* dt_event_set / clear / wait / is_set: a flag; wait returns 0 once it is
 * set, DT_ETIMEDOUT if it was not set in time. */
int dt_event_set(dt_client *c, const char *name);
int dt_event_clear(dt_client *c, const char *name);
int dt_event_wait(dt_client *c, const char *name, int timeout_ms);
int dt_event_is_set(dt_client *c, const char *name, bool *out);
/* dt_semaphore_acquire: one of max_leases leases (every user of a name
 * gives the same max_leases, else DT_EINVAL); dt_semaphore_release gives
 * one of this client's back; dt_semaphore_value: leases held now. */
int dt_semaphore_acquire(dt_client *c, const char *name, int max_leases, int timeout_ms);
int dt_semaphore_release(dt_client *c, const char *name);
int dt_semaphore_value(dt_client *c, const char *name, int64_t *out);
/* Published datasets outlive the client that published them, until
 * unpublished.  publish: DT_EINVAL if name exists (unless override);
 * get: DT_ENOTFOUND if it does not, else *out a new reference; list: *names
 * (free with dt_strings_free) and *n; unpublish: DT_ENOTFOUND if absent. */
int dt_client_publish_dataset(dt_client *c, const char *name, const dt_value *value, bool override);
int dt_client_get_dataset(dt_client *c, const char *name, dt_value **out);
int dt_client_list_datasets(dt_client *c, char ***names, size_t *n);
int dt_client_unpublish_dataset(dt_client *c, const char *name);
void dt_strings_free(char **names, size_t n);
/* dt_value_future: the future a DT_FUTURE value received from the
 * scheduler (or made by dt_future_value) holds, borrowed for the life of v;
 * NULL for any other value. */
dt_future *dt_value_future(const dt_value *v);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* DTASK_H */
