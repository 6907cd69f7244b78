/*
 * state.h -- the scheduler's state machine: tasks, workers and clients, and
 * the transitions between task states.  It does no I/O (log lines aside)
 * and writes no wire bytes: events come in as function calls (dt__sched_*),
 * and what the scheduler decides goes out as typed events (s_event: run
 * this task on that worker, tell that client this key is in memory, ...)
 * appended to the sched's event queue.  The server drains the queue after each message and
 * timer and encodes each event onto the peer's connection; a unit test reads
 * the events directly.  A worker or client carries its connection as an
 * opaque handle (conn) that only the server interprets.  One thread (the
 * scheduler's event loop) owns all of it; there are no locks.
 *
 * The files: state.c (the transitions, forgetting, errors, the invariants),
 * events.c (the event queue), place.c (choosing workers, the queue of root
 * tasks, capacity), graph.c (new graphs: tasks, dependencies, ordering,
 * cycles), clients.c (what clients want, release and cancel), workers.c
 * (workers joining, leaving, dying, retiring, and what they report).
 *
 * Task states (as in Dask), and the transitions allowed (state.c's table;
 * any other aborts, naming the key and both states: only a bug in the
 * scheduler can ask for one, since the handlers validate every message):
 *   RELEASED   known, no data, not wanted by anything running
 *              -> WAITING, MEMORY (scattered, or held by a returning worker),
 *                 ERRED (a dependency failed), FORGOTTEN
 *   WAITING    wanted; some dependencies are not in memory yet
 *              -> PROCESSING, QUEUED, NO_WORKER, MEMORY, ERRED, RELEASED
 *   NO_WORKER  ready, but no connected worker satisfies its restrictions
 *              -> PROCESSING, QUEUED, MEMORY, ERRED, RELEASED
 *   QUEUED     ready root task (no dependencies) held on the scheduler until
 *              a worker has a free slot
 *              -> PROCESSING, MEMORY, ERRED, RELEASED
 *   PROCESSING sent to a worker
 *              -> MEMORY, WAITING (its worker left, it failed with retries
 *                 left, or a dependency could not be fetched), ERRED,
 *                 RELEASED
 *   MEMORY     the result is held by a worker
 *              -> RELEASED (nobody needs it, or its last copy was lost)
 *   ERRED      it (or a dependency) failed
 *              -> MEMORY (scattered over), RELEASED (Client.retry: then
 *                 wanted again, retry.c), FORGOTTEN
 *   FORGOTTEN  removed (no client wants it, no dependent needs it); its
 *              memory lives until the events are drained
 */
#ifndef DT_SCHED_STATE_H
#define DT_SCHED_STATE_H

#include "../proto/proto.h"

typedef enum {
  TS_RELEASED = 0,
  TS_WAITING,
  TS_NO_WORKER,
  TS_QUEUED,
  TS_PROCESSING,
  TS_MEMORY,
  TS_ERRED,
  TS_FORGOTTEN,
  TS_COUNT
} s_task_state;
const char *dt__task_state_name(int st);

enum { PEER_WORKER = 1, PEER_CLIENT = 2 };

struct s_worker;
struct s_client;

/* What few tasks have: restrictions, resources, an error.  Kept apart so
 * that the common task stays small. */
typedef struct s_task_rare {
  char **restrict_to;
  uint32_t nrestrict;
  bool loose;
  char **res_names;
  double *res_amounts;
  uint32_t nres;
  uint32_t fetch_failures; /* dependencies it could not fetch from anywhere */
  int err_code; /* set in ERRED */
  char *err_key, *err_func, *err_worker, *err_msg;
  double timeout; /* seconds one run may take (sent to the worker); 0: none */
} s_task_rare;
extern const s_task_rare dt__no_rare;
#define RARE(t) ((t)->rare ? (const s_task_rare *)(t)->rare : &dt__no_rare)

/* A vector of tasks with 32-bit counts (16 bytes; read it like dt_vec):
 * a task's dependents.  dt__tvec_* are dt__vec_*'s. */
typedef struct {
  void **v;
  uint32_t len, cap;
} s_tvec;
void dt__tvec_push(s_tvec *a, void *p);
bool dt__tvec_remove(s_tvec *a, void *p);
void dt__tvec_free(s_tvec *a);

typedef struct s_task { /* 184 bytes (4 of them padding) */
  uint32_t klen;
  uint32_t ndeps;
  const char *func;  /* interned: sched->funcs owns it */
  /* the spec, [args, kwargs], kept for retries and recomputation: a
   * dt_payload in 24 bytes (read it with dt__task_spec); its body is in the
   * task's own allocation, after the key, when it has no frames */
  char *spec_body;
  dt_frame *spec_frames;
  uint32_t spec_len; /* <= DT_MAX_BODY */
  uint32_t spec_nframes;
  struct s_task **deps;
  s_tvec dependents;
  uint32_t nwaiting;  /* dependencies not in memory */
  uint32_t waiters;   /* dependents that still need this result */
  int32_t retries;     /* the user's: runs left after a failure */
  uint8_t state;      /* s_task_state */
  bool holds_deps : 1;  /* counted in each dependency's waiters */
  bool send_inline : 1; /* a client waits for the result: send it when small */
  bool seceded : 1;     /* its thread was handed back: counted in long_running */
  bool ahead : 1;       /* WAITING, sent ahead to its only dependency's worker (speculate.c) */
  bool ahead_deps : 1;  /* some dependents were sent ahead behind it (speculate.c) */
  uint8_t suspicious; /* workers that died while running it (KilledWorker) */
  dt_vec1 wanted_by;  /* clients (struct s_client *) */
  dt_vec1 who_has;    /* workers holding the result */
  uint64_t nbytes;
  int32_t priority;   /* clamped to 32 bits when the graph arrives */
  uint64_t order; /* run order: graph order, increasing across graphs */
  struct s_task_rare *rare; /* NULL until a task needs one; read via RARE() */
  union { /* what only one state needs (place.c); each leaves its fields
           * zero when the task leaves that state (dt__sched_check checks) */
    size_t heap_idx; /* QUEUED: where it is in sched->queued (0: nowhere) */
    struct {
      struct s_task *nw_prev, *nw_next; /* NO_WORKER: the no-worker list */
    };
    struct { /* PROCESSING (NULL and 0 for a moment once its worker reported) */
      struct s_worker *processing_on;
      uint32_t proc_idx;  /* index in processing_on->processing */
    };
  };
  /* transient marks for graph traversals */
  uint64_t mark;
  char key[]; /* NUL-terminated, in the task's own allocation */
} s_task;

typedef struct s_worker {
  int kind; /* PEER_WORKER */
  uint32_t id;
  char *name;
  char *address;
  int nthreads;
  char **res_names;
  double *res_amounts;
  uint32_t nres;
  void *conn;        /* the server's handle for its connection (opaque here) */
  dt_vec processing; /* s_task*, with task->proc_idx */
  uint64_t nkeys, nbytes;
  bool in_free_list;
  struct s_worker *free_prev, *free_next;
  double last_seen;
  int64_t executing, ready; /* from heartbeats */
  double cpu;               /* percent of one core, from heartbeats */
  uint64_t rss;             /* bytes, from heartbeats */
  uint64_t spilled;         /* bytes of results on its disk, from heartbeats */
  bool paused;              /* over its memory pause threshold: no new work */
  uint64_t managed, peak_managed; /* result bytes in its memory now, and at most */
  int pid;
  uint64_t memory_limit; /* bytes, 0: none (as it registered) */
  uint64_t nanny_token; /* nonzero: a nanny reports this worker's death */
  bool closing;         /* said CLOSE: leaving on purpose */
  bool retiring;        /* gets no new work; its results are being moved */
  uint32_t moving;      /* results still being copied elsewhere */
  bool gone;            /* removed: freed when the events are drained */
  void *retire;         /* the request it belongs to (the server's) */
  uint32_t long_running; /* processing tasks that seceded: not counted in capacity */
  dt_smap ghosts; /* key -> its copy: released while processing there, and
                     maybe still running (cancelled.c): counted as busy
                     until the worker says TASK_RELEASED (or reports it) */
} s_worker;

/* s_tmap: tasks by their own key (taskmap.c): 16 bytes a slot where
 * dt_smap takes 24.  Iterate: for (i < cap) if (slots[i].t) ... */
typedef struct {
  struct s_task *t; /* NULL: empty */
  uint32_t hash;
} s_tmap_slot;
typedef struct {
  s_tmap_slot *slots;
  size_t cap; /* power of two or 0 */
  size_t len;
} s_tmap;
struct s_task *dt__tmap_get(const s_tmap *m, const char *key, uint32_t klen);
/* dt__tmap_put: inserts t under its key, or replaces the task with that key
 * (returned); NULL if there was none. */
struct s_task *dt__tmap_put(s_tmap *m, struct s_task *t);
struct s_task *dt__tmap_del(s_tmap *m, const char *key, uint32_t klen);
void dt__tmap_shrink(s_tmap *m); /* fit the table to its entries */
void dt__tmap_destroy(s_tmap *m);
/* the same with the key's hash h = dt__hash(key, klen) given (one hash for
 * several tables); dt__tmap_add_new: t's key is known not to be in m */
struct s_task *dt__tmap_get_h(const s_tmap *m, const char *key, uint32_t klen, uint32_t h);
struct s_task *dt__tmap_put_h(s_tmap *m, struct s_task *t, uint32_t h);
void dt__tmap_add_new(s_tmap *m, struct s_task *t, uint32_t h);

typedef struct s_client {
  int kind; /* PEER_CLIENT */
  uint32_t id;
  char *name;
  void *conn;    /* the server's handle for its connection (opaque here) */
  s_tmap wants;  /* key -> s_task (taskmap.c) */
  bool gone;     /* removed: freed when the events are drained */
} s_client;

/* Per task function: tasks in each state, and totals (the dashboard's
 * progress bars).  A task's func points at name. */
typedef struct s_func {
  int64_t count[TS_COUNT];
  uint64_t finished, failed; /* totals */
  char name[];
} s_func;
#define DT_FUNC_OF(fname) ((s_func *)(void *)((char *)(fname) - offsetof(s_func, name)))

/* The task stream: the last finished tasks, in a ring (O(1) per task). */
#define DT_STREAM_CAP 8192
typedef struct {
  double end_s;     /* monotonic clock */
  float dur_s;
  uint32_t worker;  /* s_worker id */
  const char *func; /* interned */
} s_stream_ev;

/* What the state machine decided, for the server to send.  key is the
 * task's (task set) or text's (no task: a key the scheduler does not know). */
typedef enum {
  SEV_COMPUTE = 1, /* worker: run task (COMPUTE_TASK); dropped by the server
                    * if the task left PROCESSING there before the drain (a
                    * FREE for it follows then) */
  SEV_FREE,        /* worker: forget key (FREE_KEYS) */
  SEV_ACQUIRE,     /* worker: fetch task's result from other and keep it */
  SEV_IN_MEMORY,   /* client: task is in memory on other (KEY_IN_MEMORY),
                    * with the encoded result when it asked for it */
  SEV_ERRED,       /* client: task (or a dependency) failed: RARE(task)'s error */
  SEV_UNKNOWN,     /* client: key is not known to the scheduler (KEY_ERRED) */
  SEV_CANCELLED,   /* client: key cancelled, text says why (KEY_CANCELLED) */
  SEV_AHEAD,       /* worker: run task (WAITING) once its only dependency, being
                    * computed there, is stored (COMPUTE_TASK naming no holder;
                    * speculate.c); a FREE follows if it is withdrawn */
} s_event_kind;

typedef struct s_event {
  uint8_t kind;        /* s_event_kind */
  uint32_t ilen;       /* inline_'s length */
  uint32_t koff, klen; /* no task: the key, in the sched's ev_text */
  uint32_t toff, tlen; /* CANCELLED: the reason, in ev_text */
  s_worker *worker;    /* COMPUTE, FREE, ACQUIRE: the worker to tell */
  s_client *client;    /* IN_MEMORY, ERRED, UNKNOWN, CANCELLED: the client */
  s_task *task;        /* the task (valid until the drain), or NULL */
  s_worker *other;     /* IN_MEMORY: the holder; ACQUIRE: where to fetch from */
  const char *inline_; /* IN_MEMORY: borrowed from the TASK_FINISHED message
                        * (valid until its handler returns), or NULL */
} s_event;

typedef struct sched {
  s_tmap tasks; /* key -> s_task (taskmap.c) */
  dt_vec workers, clients;
  dt_heap queued;
  s_task *nw_head;         /* no-worker tasks */
  s_worker *free_head, *free_tail; /* workers with free slots, round robin */
  uint64_t order_counter; /* graph order across batches */
  uint64_t mark_epoch;
  int64_t count[TS_COUNT];
  double avg_task_s; /* moving average of task durations */
  uint32_t next_id;
  uint64_t tasks_completed;
  dt_smap funcs; /* interned task function names -> s_func names */
  s_func *overflow_func; /* shared by names past the limit */
  s_stream_ev *stream;   /* DT_STREAM_CAP entries */
  uint64_t stream_n;     /* events written (next slot: stream_n % CAP) */
  int allowed_failures; /* worker deaths a task may cause before it errs */
  uint64_t workers_lost; /* workers removed without saying goodbye */
  /* the event queue: reused arrays, grown as needed, emptied by the drain */
  s_event *ev;
  size_t nev, ev_cap;
  char *ev_text; /* keys and reasons of events with no task */
  size_t ev_text_len, ev_text_cap;
  /* freed at the drain, not before: events may still name them */
  dt_vec dead_tasks; /* forgotten tasks (state FORGOTTEN) */
  dt_vec dead_peers; /* removed workers and clients (gone set; by kind) */
  s_client *fire_and_forget; /* the holder of fire_and_forget keys, or NULL */
  dt_smap ahead; /* key -> s_worker: tasks sent ahead (speculate.c) */
  const char *last_func; /* the function name interned last (a graph's tasks share one) */
  uint32_t last_flen;
} sched;

/* A task as described by UPDATE_GRAPH (borrowed strings). */
typedef struct {
  const char *key;
  uint32_t klen;
  const char *func;
  uint32_t flen;
  dt_payload spec; /* moved into the task (or cleared) */
  const char **dep_keys;
  uint32_t *dep_lens;
  uint32_t ndeps;
  int64_t priority;
  int retries;
  const char **restrict_to;
  uint32_t *restrict_lens;
  uint32_t nrestrict;
  bool loose;
  const char **res_names;
  uint32_t *res_name_lens;
  double *res_amounts;
  uint32_t nres;
  double timeout; /* seconds one run may take; 0: none */
  bool spec_borrowed; /* spec (no frames) points into the message: copied, never freed */
} s_newtask;

/* dt__task_spec: t's spec as a dt_payload (borrowed: t owns it) */
static inline dt_payload dt__task_spec(const struct s_task *t) {
  return (dt_payload){t->spec_body, t->spec_len, t->spec_frames, t->spec_nframes};
}
/* dt__task_new_spec: dt__task_new (sched_int.h) with the task's spec moved
 * in from *spec (cleared): a spec with no frames is copied into the task's
 * own allocation, after its key (t->spec_body points there; dt__task_free
 * knows), and its own buffer freed. */
struct s_task *dt__task_new_spec(sched *s, const char *key, uint32_t klen, const char *func,
                                 uint32_t flen, dt_payload *spec);
/* dt__task_new_body: the same with a frameless spec body[0..len) copied
 * (borrowed: the caller keeps it), for a key known not to be in s->tasks,
 * h its hash (dt__hash) */
struct s_task *dt__task_new_body(sched *s, const char *key, uint32_t klen, uint32_t h,
                                 const char *func, uint32_t flen, const char *body, uint32_t len);

/* Every dt__sched_* event below runs on the scheduler's loop thread, may
 * append events to s's queue, and returns nothing to check: the handlers
 * validated the message before.  Its files: see the header. */
void dt__sched_init(sched *s);
/* dt__sched_destroy: frees everything, pending events included. */
void dt__sched_destroy(sched *s);

/* dt__sched_add_worker: a new worker (conn: the caller's handle, kept and
 * never read; res_names/res_amounts: owned by the worker from now on). */
s_worker *dt__sched_add_worker(sched *s, void *conn, const char *name, const char *address,
                               int nthreads, char **res_names, double *res_amounts, uint32_t nres);
/* dt__sched_remove_worker: w is gone (freed at the next drain, and marked
 * gone until then: its pending events are not to be sent).  Its tasks in flight are placed again and
 * results held only there are recomputed from their lineage.  If
 * suspicious, each task that was processing there counts one worker death
 * against it (Dask's rule, for workers with no nanny to say what ran). */
void dt__sched_remove_worker(sched *s, s_worker *w, bool suspicious);
/* dt__sched_add_worker is these two: register w, then give it work (what had
 * no worker, queued root tasks).  In between, a worker coming back says
 * which results it still holds (dt__sched_worker_has_key), so that those are
 * not recomputed. */
s_worker *dt__sched_add_worker_only(sched *s, void *conn, const char *name, const char *address,
                                    int nthreads, char **res_names, double *res_amounts,
                                    uint32_t nres);
void dt__sched_worker_place(sched *s, s_worker *w);
/* dt__sched_worker_died: a nanny reports that its worker died while running
 * keys: each counts one death; past allowed_failures it errs with
 * DT_EKILLED.  how: "killed by signal 11 (Segmentation fault)" etc. */
void dt__sched_worker_died(sched *s, const char *worker, const char *how, const char **keys,
                           const uint32_t *lens, uint32_t n);
/* dt__sched_retire_worker: w gets no new work; every result only it holds that
 * is still needed goes to another worker (ACQUIRE).  Returns how many are
 * on their way (w->moving), or -1 if no other worker could take them. */
int dt__sched_retire_worker(sched *s, s_worker *w);
void dt__sched_unretire_worker(sched *s, s_worker *w);
/* dt__sched_worker_paused: w stops (or resumes) taking new tasks (memory) */
void dt__sched_worker_paused(sched *s, s_worker *w, bool paused);
/* dt__sched_worker_has_key: w (re)registered holding key with nbytes. */
void dt__sched_worker_has_key(sched *s, s_worker *w, const char *key, uint32_t klen,
                              uint64_t nbytes);
/* dt__sched_add_client: a new client (conn: as for workers). */
s_client *dt__sched_add_client(sched *s, void *conn, const char *name);
/* dt__sched_remove_client: c left: what it wanted is released; c is freed
 * at the next drain, and marked gone until then. */
void dt__sched_remove_client(sched *s, s_client *c);

/* dt__sched_update_graph: c's new tasks (their specs are moved into the
 * tasks; every string is borrowed) and the keys it wants. */
void dt__sched_update_graph(sched *s, s_client *c, s_newtask *tasks, uint32_t n,
                            const char **wanted, const uint32_t *wanted_lens, uint32_t nwanted);
void dt__sched_client_want(sched *s, s_client *c, const char *key, uint32_t klen);
void dt__sched_client_release(sched *s, s_client *c, const char *key, uint32_t klen);
/* dt__sched_client_who_has: a client's fetch failed; say where key is now */
void dt__sched_client_who_has(sched *s, s_client *c, const char *key, uint32_t klen);
void dt__sched_client_cancel(sched *s, s_client *c, const char *key, uint32_t klen);
/* dt__sched_scatter_key: a key put on worker w by scatter (payload size nbytes). */
void dt__sched_scatter_key(sched *s, s_client *c, s_worker *w, const char *key, uint32_t klen,
                           uint64_t nbytes);

/* dt__sched_task_finished: w computed key.  inline_/ilen: the encoded
 * result when small, else NULL; borrowed, and the KEY_IN_MEMORY events
 * point at it: the caller keeps it valid until it drains the events. */
void dt__sched_task_finished(sched *s, s_worker *w, const char *key, uint32_t klen, uint64_t nbytes,
                             double duration_s, const char *inline_, uint32_t ilen);
/* dt__sched_client_want_result: c waits for key; send the result when small */
void dt__sched_client_want_result(sched *s, s_client *c, const char *key, uint32_t klen);
/* dt__sched_task_erred: key failed on w: run again while its retries last,
 * else it (and what depends on it) errs. */
void dt__sched_task_erred(sched *s, s_worker *w, const char *key, uint32_t klen, int code,
                          const char *func, const char *msg);
/* dt__sched_missing_data: w could not fetch dep (from addr, the last holder it
 * tried) for key: that copy is forgotten and key placed again.  With no
 * holder to blame, it counts a fetch failure; the 6th fails key (DT_ELOST). */
void dt__sched_missing_data(sched *s, s_worker *w, const char *key, uint32_t klen,
                            const char *dep, uint32_t deplen, const char *addr);

s_task *dt__sched_get_task(sched *s, const char *key, uint32_t klen);

/* ---- the event queue (events.c) */
/* dt__sched_events: the events emitted since the last drain, in order;
 * *n gets their number.  Borrowed: valid until dt__sched_events_done. */
const s_event *dt__sched_events(const sched *s, size_t *n);
/* dt__sched_event_key / _text: an event's key (the task's or its own) and
 * its reason (CANCELLED); not NUL-terminated, *len gets the length.  Valid
 * until dt__sched_events_done. */
const char *dt__sched_event_key(const sched *s, const s_event *e, uint32_t *len);
const char *dt__sched_event_text(const sched *s, const s_event *e, uint32_t *len);
/* dt__sched_events_done: the events were sent; empties the queue (keeping
 * its memory) and frees the tasks, workers and clients that were removed
 * meanwhile. */
void dt__sched_events_done(sched *s);
/* dt__sched_worker_capacity: tasks this worker may have in flight. */
int dt__sched_worker_capacity(const sched *s, const s_worker *w);
/* ---- tasks from tasks (tasks_from_tasks.c) */
/* dt__sched_task_seceded: key, running on w, handed its thread back: it no
 * longer counts against w's capacity. */
void dt__sched_task_seceded(sched *s, s_worker *w, const char *key, uint32_t klen);
/* ---- released tasks still running (cancelled.c) */
/* dt__ghost_add: t, processing on w, was released: its thread counts busy
 * until dt__ghost_del */
void dt__ghost_add(sched *s, s_worker *w, const s_task *t);
/* dt__ghost_del: w no longer runs key (TASK_RELEASED, a late report, or
 * the COMPUTE_TASK was never sent): its thread is free */
void dt__ghost_del(sched *s, s_worker *w, const char *key, uint32_t klen);
/* dt__ghost_free_all: w leaves */
void dt__ghost_free_all(s_worker *w);
/* dt__place_load: what counts against w's capacity */
int dt__place_load(const s_worker *w);
/* dt__sched_task_reschedule: key asked to run again: placed again, not a failure */
void dt__sched_task_reschedule(sched *s, s_worker *w, const char *key, uint32_t klen);
/* dt__sched_fire_and_forget: the scheduler's own holder wants key until it
 * finishes (memory or erred), whoever else releases it. */
void dt__sched_fire_and_forget(sched *s, const char *key, uint32_t klen);
/* dt__sched_ff_done: key finished: the holder lets it go */
void dt__sched_ff_done(sched *s, const char *key, uint32_t klen);
/* dt__sched_ff_peers_changed: a peer left; with no client and no worker
 * left, the holder lets everything go (nothing could run or read it). */
void dt__sched_ff_peers_changed(sched *s);
/* dt__sched_check: verifies the invariants (counts, links); 0 if consistent. */
int dt__sched_check(const sched *s, char *why, size_t cap);

#endif
