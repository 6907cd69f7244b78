/*
 * worker_int.h -- the worker's private types and the state each of its
 * files owns.  One event-loop thread runs everything here except the task
 * functions themselves, which run on the pool's threads (pool.c); nothing
 * in this header is locked, and only pool.c touches a task from another
 * thread.
 *
 * Flow of a task: COMPUTE_TASK arrives (link.c) -> FETCHING while the
 * dependencies held elsewhere are fetched from peer workers (fetch.c:
 * GET_DATA/DATA, never through the scheduler) -> READY (exec.c's priority
 * heap) -> EXECUTING on a pool thread (pool.c) -> the result is stored
 * (store.c) and TASK_FINISHED (or TASK_ERRED) goes to the scheduler
 * (link.c).  Results stay until FREE_KEYS; fetched copies go as soon as no
 * local task needs them.  Peers and clients read our results through
 * serve.c.  main.c reads the options, starts the parts and stops them.
 *
 * Who owns what (each struct is defined in, and written by, its owner;
 * the others only read the fields their comments name):
 *   dt__worker  main.c   the process: loop, network, identity, stopping
 *   dt__store   store.c  the results held, memory accounting, spilling
 *   dt__exec    exec.c   the tasks given to us: waiting, ready, executing
 *   dt__link    link.c   the connection to the scheduler
 * pool.c, fetch.c and serve.c keep their state to themselves.
 */
#ifndef DT_WORKER_INT_H
#define DT_WORKER_INT_H

#include "../net/net.h"
#include "../net/secure.h"
#include "../task/task.h"
#include "nanny.h"

/* ---------------------------------------------------------------- types */

typedef enum {
  WT_FETCHING,  /* waiting for dependencies from peers */
  WT_READY,     /* in the ready heap (or blocked on resources) */
  WT_EXECUTING, /* on a pool thread */
} w_task_state;

/* a dependency of a task, as the scheduler named it */
typedef struct w_dep {
  char *key;
  uint32_t klen;
  char **addrs; /* the workers that hold it (who_has) */
  uint32_t naddrs;
} w_dep;

typedef struct w_task {
  char *key;
  uint32_t klen;
  char *func;
  dt_payload spec;
  w_dep *deps;
  uint32_t ndeps;
  uint32_t nmissing; /* dependencies still being fetched; UINT32_MAX: one failed */
  int64_t priority;
  uint64_t seq;
  char **res_names;
  double *res_amounts;
  uint32_t nres;
  w_task_state state;
  bool cancelled; /* freed by the scheduler while executing */
  size_t heap_idx;
  /* execution: set by exec.c before the pool runs it, results by pool.c */
  dt_task_fn fn;
  dt_value *call; /* [args, kwargs] with futures replaced by data */
  dt_value *result;
  char *err;
  int err_code;
  uint64_t dur_ns;
  bool reschedule; /* dt_task_reschedule: not a failure, place it again */
  double timeout, started; /* deadline (seconds, 0: none) and when it started (cancel.c) */
  struct w_task *next_done; /* pool.c's queue and done list */
  /* chains on the pool thread (ahead.c): under pool.c's lock once the
   * producer is in the pool */
  struct w_task *then;        /* producer: run this one right after, on the same thread */
  struct w_task *handed;      /* producer: the pool ran `then` after it */
  struct w_task *chained_from; /* the producer this one is linked to */
  bool chained;               /* linked as a producer's `then` (call prepared) */
  bool claimed;               /* a pool thread took it */
  bool ran;                   /* the pool finished it (on the done list) */
} w_task;

/* a result held here (store.c) */
typedef struct w_data_ {
  char *key;
  uint32_t klen;
  dt_value *v;
  uint64_t nbytes;
  bool replica;   /* fetched for local tasks, not computed here */
  uint32_t users; /* local tasks not yet run that need it */
  bool spilled;   /* on disk (see store.c), v == NULL */
  uint64_t spill_id;
  struct w_data_ *lru_prev, *lru_next; /* in memory, least recently used first */
} w_data;

/* ---------------------------------------------------------------- main.c */

typedef struct {
  uv_loop_t loop;
  dt_net net;
  dt_sec sec;
  char name[256];
  char address[128];       /* where peers reach us; set by serve.c */
  char boot_id[48];        /* this host's boot id: peers with the same one share memory */
  bool no_shm;             /* --no-shm: no boot id, so every peer is over TCP */
  int nthreads;
  const char *listen_host; /* --listen-host (NULL: the scheduler link's interface) */
  int listen_port;         /* --worker-port (0: any) */
  bool stopping;           /* read by every file: no new work, no reconnecting */
  int exit_code;
  uv_signal_t sigint, sigterm;
  bool inproc;             /* a thread of a client's process (dt__worker_inproc): no
                              signals, no exit, state reset when it ends */
  uv_async_t stop_async;   /* inproc: dt__worker_inproc_stop's wake-up */
} w_worker;
extern w_worker dt__worker;

/* dt__worker_stop: leave with exit status code: says CLOSE to the scheduler
 * if registered, closes every handle so that the loop ends.  Called again,
 * it does nothing.  Loop thread. */
void dt__worker_stop(int code);

/* ---------------------------------------------------------------- pool.c */

/* dt__pool_start: nthreads threads that run the tasks given to
 * dt__pool_submit; slots: the nanny's shared slots (NULL: none).  Finished
 * tasks are handed back on the loop thread, in completion order, as a list
 * linked by next_done, to on_done. */
void dt__pool_start(uv_loop_t *loop, int nthreads, char *slots, void (*on_done)(w_task *list));
/* dt__pool_submit: queue t (fn and call set) for a pool thread.  Loop
 * thread; the pool owns t until it comes back through on_done. */
void dt__pool_submit(w_task *head, w_task *tail, int n, int low_water);
/* dt__pool_link: u (call prepared) runs right after p on p's thread,
 * unless the pool finished p already (false) */
bool dt__pool_link(w_task *p, w_task *u);
/* dt__pool_unlink: u (chained) no longer follows its producer (false), or
 * a pool thread has it already (true: treat it as executing) */
bool dt__pool_unlink(w_task *u);
/* dt__pool_stop: stop the threads and join them (none may be running a
 * task); frees the pool. */
void dt__pool_stop(void);
/* tasks from tasks (secede.c and pool.c): tasks that handed their thread
 * back now (they do not count against the pool's threads); fn(key) runs on
 * the loop thread for each task that seceded */
int dt__pool_seceded(void);
void dt__pool_on_secede(void (*fn)(const char *key));
void dt__secede_init(void);

/* ---------------------------------------------------------------- store.c */

typedef struct {
  dt_smap data; /* key -> w_data; read by exec, fetch, serve, link */
  /* memory (docs/memory.md): limit 0 = none; set by main.c */
  uint64_t mem_limit;
  double mem_target, mem_spill, mem_pause, mem_terminate;
  /* accounting, sent in heartbeats (link.c) */
  uint64_t nbytes;        /* result bytes in memory */
  uint64_t peak_nbytes;   /* the most result bytes held in memory at once */
  uint64_t spilled_bytes; /* on disk now */
  uint64_t spilled_total; /* bytes written to disk, ever */
  bool paused;            /* over the pause threshold: exec.c starts nothing */
  /* private to store.c */
  uint64_t spill_seq, rss;
  char spill_dir[600];
  bool spill_made; /* the folder exists (made at the first spill) */
  w_data *lru_head, *lru_tail;
  uv_timer_t memtimer;
  void (*on_pause)(bool paused);
} w_store;
extern w_store dt__store;

/* dt__store_get: the result held for key, or NULL (it may be spilled) */
static inline w_data *dt__store_get(const char *key, uint32_t klen) {
  return dt__smap_get(&dt__store.data, key, klen);
}
/* dt__store_init: the spill folder and the memory timer (when there is a
 * limit); on_pause(paused) runs when pausing starts or ends. */
void dt__store_init(uv_loop_t *loop, void (*on_pause)(bool paused));
/* dt__store_put: hold v (consumed) under key, replacing what was there;
 * returns its entry (spilled already if memory is short). */
w_data *dt__store_put(const char *key, uint32_t klen, dt_value *v, bool replica);
/* dt__store_del: forget d (and its spill file) */
void dt__store_del(w_data *d);
/* dt__store_unspill: make sure d->v is in memory (marks it used); 0 or
 * DT_EIO if its spill file cannot be read (logged) */
int dt__store_unspill(w_data *d);
/* dt__store_check: Dask's memory thresholds (see store.c); with_rss reads
 * the process's RSS too (never per task) */
void dt__store_check(bool with_rss);
/* dt__store_destroy: free every result, remove the spill files and folder */
void dt__store_destroy(void);

/* ---------------------------------------------------------------- exec.c */

typedef struct {
  dt_smap tasks;  /* key -> w_task: every task given to us; read by fetch, link */
  dt_heap ready;  /* ready tasks, highest priority first; length read by link */
  dt_vec blocked; /* ready tasks waiting for resources */
  uint64_t seq;
  int executing;  /* handed to the pool; read by link (heartbeat), main */
  double avg_ns;  /* moving average of task durations */
  int short_run;  /* tasks in a row that ran under 100 us */
  /* the worker's resources (--resources); set by main.c */
  char **res_names;
  double *res_amounts, *res_used;
  uint32_t nres;
  /* cancel.c: cancelled tasks still running, executing tasks with a deadline */
  dt_vec zombies, timed;
  uv_timer_t deadline_timer;
  bool timer_on;
} w_exec;
/* cancel.c: a released task still runs (zombie); a task with a deadline
 * started; a task came back from the pool (forget it in both); ABORT_TASKS */
void dt__cancel_zombie_add(w_task *t);
void dt__cancel_timed_add(w_task *t);
void dt__cancel_returned(w_task *t);
int dt__cancel_on_abort(const dt_msg *m);
extern w_exec dt__exec;

/* dt__exec_init: the task table and ready heap; call after main.c set the
 * resources */
void dt__exec_init(void);
/* dt__exec_add: take t (built from COMPUTE_TASK; consumed): use the
 * dependencies held here, fetch the others, run it when it has them all.
 * key, klen: t's key in memory that outlives t (the message's): t may be
 * gone on return, if a fetch failed at once */
void dt__exec_add(w_task *t, const char *key, uint32_t klen);
/* dt__exec_ready: t has all its dependencies: to the ready heap */
void dt__exec_ready(w_task *t);
/* dt__exec_start: hand ready tasks to the pool while it has room */
void dt__exec_start(void);
/* dt__exec_done: the pool's on_done: store results, tell the scheduler */
void dt__exec_done(w_task *list);
/* dt__exec_free_key: FREE_KEYS for a task: drop it, or cancel it if it runs */
void dt__exec_free_key(const char *key, uint32_t klen);
/* dt__exec_drop_queued: the scheduler is gone: drop every task not running */
void dt__exec_drop_queued(void);
/* dt__exec_release_deps: t no longer needs its dependencies' local copies */
void dt__exec_release_deps(w_task *t);
/* dt__exec_forget: remove t from the task table and free it */
void dt__exec_forget(w_task *t);
/* dt__exec_task_free: free t (not in the table, or about to leave it) */
void dt__exec_task_free(w_task *t);
/* dt__exec_destroy: free every task left (the pool has stopped) */
void dt__exec_destroy(void);

/* ---------------------------------------------------------------- fetch.c */

/* dt__fetch_wait: t waits for dependency d: join its fetch, or make one
 * (not sent yet: see dt__fetch_kick) */
void dt__fetch_wait(const w_dep *d, w_task *t);
/* dt__fetch_kick: send the fetch of key if it has not been sent yet; it
 * may fail at once, and forget its waiting tasks */
void dt__fetch_kick(const char *key, uint32_t klen);
/* dt__fetch_acquire: ACQUIRE: get key from the worker at from (a retiring
 * one) and keep it; ACQUIRED names source either way */
void dt__fetch_acquire(const char *key, uint32_t klen, dt_sv from, uint64_t source);
/* dt__fetch_forget_task: no fetch waits for t any longer */
void dt__fetch_forget_task(w_task *t);
/* dt__fetch_peer_gone: WORKER_GONE: the scheduler removed the worker at
 * addr: close our connection to it (its fetches fail over) */
void dt__fetch_peer_gone(const char *addr);
/* a peer silent this long while we wait for its data is given up (0: never) */
extern double dt__fetch_timeout_s;
/* dt__fetch_destroy: free the fetches and peers left (connections closed) */
void dt__fetch_destroy(void);

/* ---------------------------------------------------------------- ahead.c */

/* dt__ahead_wait: t waits for dependency d, being computed here (the
 * scheduler sent t ahead: d names no holder) */
void dt__ahead_wait(const w_dep *d, w_task *t);
/* dt__ahead_arrived: key is stored here (have): the tasks waiting for it
 * take it, and go to the ready heap when they have everything */
void dt__ahead_arrived(const char *key, uint32_t klen, w_data *have);
/* dt__ahead_forget_task: t no longer waits (dropped) */
void dt__ahead_forget_task(w_task *t);
void dt__ahead_destroy(void);
/* dt__ahead_chain: u (one dependency d, being computed here) runs on the
 * pool thread that computes d, right after it, if both allow (true) */
bool dt__ahead_chain(w_task *u, const w_dep *d);
/* dt__ahead_bind: pool thread: u's futures of its dependency become dep */
void dt__ahead_bind(w_task *u, const char *key, dt_value *dep);
/* dt__ahead_producer_gone: p leaves with u still chained to it: u waits for
 * p's key as any task sent ahead */
void dt__ahead_producer_gone(w_task *p);

/* ---------------------------------------------------------------- serve.c */

/* dt__serve_start: listen for peers on the interface the scheduler
 * connection c uses (or --listen-host); sets dt__worker.address (and name,
 * if none).  0, or an error (dt_last_error()). */
int dt__serve_start(dt_conn *c);
/* dt__serve_is_listener: whether h is the peer listener's handle */
bool dt__serve_is_listener(const uv_handle_t *h);
/* dt__serve_get_data: answer GET_DATA (from a peer, a client or the
 * scheduler) on c with DATA */
int dt__serve_get_data(dt_conn *c, const dt_msg *m);
/* dt__peer_msg_read: decode a peer's message into m; 0, or DT_EPROTO
 * (logged) */
int dt__peer_msg_read(dt_conn *c, int op, uint32_t nf, dt_rd *r, dt_msg *m);

/* ---------------------------------------------------------------- link.c */

typedef struct {
  dt_conn *sched;
  bool registered;        /* WELCOME received on the current connection */
  /* set by main.c */
  char *sched_addr;
  double death_timeout_s; /* give up after this long without a scheduler; 0 = never */
  uint64_t nanny_token;   /* nonzero under a nanny */
  /* private to link.c */
  uv_timer_t heartbeat, reconnect;
  double last_heard;      /* last message from the scheduler */
  double sched_ttl_s;     /* the scheduler is lost after this much silence */
  int heartbeat_ms;
  int reconnects;         /* attempts since the connection was lost */
  double lost_at;         /* when it was lost; 0 while connected */
} w_link;
extern w_link dt__link;

/* ---------------------------------------------------------------- query.c */

/* dt__wquery_init: dt_log_event may queue events from now on */
void dt__wquery_init(void);
/* dt__wquery_flush: the events tasks logged, onto w (the scheduler's outbox) */
void dt__wquery_flush(dt_wbuf *w);
/* dt__wquery_pending: events wait to be flushed */
bool dt__wquery_pending(void);
/* dt__wquery_on_query: a QUERY from the scheduler ("logs") */
int dt__wquery_on_query(dt_conn *c, const dt_msg *m);

/* dt__link_start: connect to the scheduler (and keep reconnecting) */
void dt__link_start(uv_loop_t *loop);
/* dt__link_heartbeat_now: send a heartbeat now, if registered */
void dt__link_heartbeat_now(void);
/* dt__link_close: say CLOSE (we leave on purpose) and close, if registered */
void dt__link_close(void);
/* dt__link_retire_me: say RETIRE_ME (attempt, reason) if registered (false: not) */
bool dt__link_retire_me(uint64_t attempt, const char *reason);
/* messages to the scheduler; each says nothing while we are not registered
 * (what it would say is said by registering again instead) */
void dt__link_finished(const w_task *t, const dt_value *v, uint64_t nbytes);
void dt__link_erred(const char *key, uint32_t klen, int code, const char *func, const char *msg);
void dt__link_acquired(const char *key, uint32_t klen, uint64_t nbytes, bool ok, uint64_t src);
void dt__link_missing(const w_task *t, const char *dep, uint32_t dlen, const char *addr);
void dt__link_seceded(const char *key);
void dt__link_released(const char *key, uint32_t klen);
void dt__link_reschedule(const char *key, uint32_t klen);

/* ---------------------------------------------------------------- actor.c */

/* dt__actor_start: the actor threads' wake-up and the "actor:" task
 * handler (once; loop thread) */
void dt__actor_start(uv_loop_t *loop);
/* dt__actor_call: ACTOR_CALL from c: queue it on its actor (or answer an
 * error at once) */
int dt__actor_call(dt_conn *c, const dt_msg *m);
/* dt__actor_conn_closed: c (a serving connection) is going: no replies to it */
void dt__actor_conn_closed(dt_conn *c);
/* dt__actor_release: FREE_KEYS: drop the actor of key, if held here */
void dt__actor_release(const char *key, uint32_t klen);
/* dt__actor_destroy: stop the actor threads, free the idle actors */
void dt__actor_destroy(void);
/* dt__actor_builtin: an actor held under key for the life of the worker,
 * whose calls go to call (admin.c's; loop thread, at start) */
void dt__actor_builtin(const char *key, dt_actor_call_fn call);

/* ---------------------------------------------------------------- admin.c */

/* dt__admin_start: the built-in actors "dtask:admin" and "dtask:run"
 * (Client.run, restart), once (loop thread) */
void dt__admin_start(uv_loop_t *loop);
/* dt__admin_replied: a built-in actor's reply was written (loop thread):
 * a restart asked for goes ahead */
void dt__admin_replied(void);
/* dt__admin_plugin: PLUGIN from the scheduler: install or remove it now,
 * before any task that follows; 0 (problems are logged) */
int dt__admin_plugin(const dt_msg *m);
/* dt__admin_stop: the worker has stopped (actor.c's destroy): start afresh
 * next time */
void dt__admin_stop(void);

/* ---------------------------------------------------------------- transfers.c */

/* dt__transfer_now: wall-clock seconds */
double dt__transfer_now(void);
/* dt__transfer_log: logs a result fetched (outgoing false; start: when it
 * was asked for) or sent (outgoing true) to or from peer who; any thread */
void dt__transfer_log(bool outgoing, double start, const char *who, const char *key, uint32_t klen,
                      uint64_t nbytes);

/* ---------------------------------------------------------------- lifetime.c */

typedef struct {
  const char *drain_file; /* --drain-file: drain once it exists, then write "idle" */
  double lifetime_s;      /* --lifetime (0: none): drain, then RETIRE_ME */
  double stagger_s;       /* --lifetime-stagger: +- uniformly at random */
  bool restart;           /* --lifetime-restart: exit DT__EXIT_LIFETIME once retired */
  double life_s;          /* this process's lifetime, drawn (lifetime.c) */
} dt__lifetime_opts;
/* dt__lifetime_start: drain once the lifetime is over (or the drain file
 * exists): no new tasks (reported paused), then RETIRE_ME (or "idle"
 * written into the file).  See lifetime.c. */
void dt__lifetime_start(uv_loop_t *loop, const dt__lifetime_opts *o);
/* dt__lifetime_close_code: the exit status when the scheduler says CLOSE:
 * DT__EXIT_LIFETIME after a lifetime with --lifetime-restart, else 0 */
int dt__lifetime_close_code(void);
extern bool dt__lifetime_draining; /* read by store.c: stay paused */

#endif
