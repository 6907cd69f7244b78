/*
 * client.h -- internals of the client library, private to src/client/.
 * A client owns an I/O thread running a libuv loop; every field below is
 * protected by c->lock, which the I/O thread holds in all its callbacks
 * (see dt_net_lock) and user threads take in API calls.
 *
 * The files, by job:
 *   connection.c  dt_client_connect/close, the I/O thread and its loop,
 *                 wake-ups, the lock, the scheduler connection's state
 *   dispatch.c    the scheduler's messages: one handler each, in a table
 *   submit.c      task definitions, keys, UPDATE_GRAPH, submit and map
 *   fetch.c       results: worker connections, GET_DATA / DATA, refetch
 *                 through WHO_HAS, WANT_RESULT, gather and result waits
 *   info.c        requests with a reply: cluster info, workers, retire,
 *                 scatter, wait_for_workers
 *   future.c      futures: their table, references, done callbacks,
 *                 dt_wait, dt_as_completed
 *   graph.c       dt_graph (delayed-style graphs)
 *   slices.c      a big batch of tasks sent as several UPDATE_GRAPH
 *   outbox.c      fallible room for what a user thread adds (see below)
 *   progress.c    dt_progress
 *
 * Out of memory.  dtask.h promises DT_ENOMEM (NULL for pointers) on
 * allocation failure, so every path a user thread runs in a public
 * function allocates with the dt__try_* functions (proto/alloc.h), takes
 * room in the vectors and maps it will add to before it changes anything
 * (dt__client_vec_room, dt__client_map_room), and reserves the whole
 * message in the connection's write buffer before it writes a byte of it
 * (dt__client_begin): a failure returns DT_ENOMEM with a message, with
 * everything taken released, and never leaves half a message to be sent.
 * Void functions (dt_future_release, dt_client_close) degrade instead:
 * without memory, a RELEASE_KEYS is not sent (logged; the scheduler drops
 * the key when the client goes) and an error message is left out.
 *   What still aborts (dt__xmalloc) is the I/O thread's own work: libuv
 * callbacks (connecting, HELLO_CLIENT, the scheduler's messages in
 * dispatch.c, GET_DATA and DATA in fetch.c, refetches, CLOSE).  No API call
 * is there to report a failure to, and a half-handled message would leave
 * futures that never finish; the daemons (scheduler, worker) abort on OOM
 * for the same reason.  Code outside src/client/ that a user thread calls
 * and that still aborts: dt__resources_parse (common/parse.c); in
 * dt__payload_encode (proto/payload.c) the dependency list and the growth
 * of the thread's scratch buffer; the sealed-batch array of dt__conn_out
 * (net/conn_write.c); and dt__smap_put's growth, should map.c's load factor
 * change under dt__client_map_room (outbox.c), which mirrors it.
 */
#ifndef DT_CLIENT_INTERNAL_H
#define DT_CLIENT_INTERNAL_H

#include <pthread.h>

#include "../net/net.h"

typedef enum {
  CS_CONNECTING, /* waiting for WELCOME */
  CS_READY,
  CS_LOST,   /* the scheduler went away */
  CS_CLOSED  /* dt_client_close was called */
} client_state;

typedef struct cb_entry {
  dt_future_cb cb;
  void *arg;
  struct cb_entry *next;
  dt_future *f;
} cb_entry;

/* One future per key per client; dt_future handles are this struct. */
struct dt_future {
  dt__future_hdr hdr;     /* first: how a DT_FUTURE value drops its reference
                             (proto.h); set by dt_future_value */
  char *key;
  uint32_t klen;
  int refs;               /* handles + internal holds */
  dt_client *client;      /* NULL once the client is closed */
  bool in_map;            /* still registered in client->futs */
  dt_future_status status;
  char *worker;           /* who holds the result */
  dt_value *value;        /* the result, once fetched */
  bool want_value;        /* fetch as soon as it is in memory */
  bool asked;             /* WANT_RESULT sent: small results come inline */
  bool fetching;
  int refetches;          /* times the scheduler was asked again (bounded) */
  int err_code;
  char *err_msg;          /* may be NULL even when failed (out of memory) */
  cb_entry *cbs;
  bool actor_call;        /* an actor call's (actor.c): in client->acfuts, no key
                             of the scheduler */
  /* cancelled: out of client->futs but still the client's, on its list of
   * cancelled futures so that dt_client_close detaches it too */
  struct dt_future *cx_prev, *cx_next;
  bool on_cancelled;
};

typedef struct wconn {
  struct dt_client *client;
  char *addr;
  dt_conn *conn;
  dt_vec reqs; /* struct fetch_req* (fetch.c) */
  dt_vec acalls; /* actor calls in flight (actor.c) */
} wconn;

/* a pending INFO_REQUEST (info.c; answered in dispatch.c) */
typedef struct {
  uint64_t req;
  bool done;
  bool nomem;               /* the workers' rows did not fit in memory */
  dt_cluster_info info;
  bool detail;              /* the workers' rows too */
  dt_worker_info *workers;
  size_t nworkers;
} info_req;

/* a pending SCATTER or RETIRE_WORKERS */
typedef struct {
  uint64_t req;
  bool done;
  char *error;
  uint64_t count; /* RETIRE_DONE: workers retired */
} scatter_req;

struct dt_client {
  bool task_client; /* the worker's client (dt_task_client) */
  pthread_mutex_t lock;
  pthread_cond_t cond; /* broadcast when a caller may have something to see */
  bool wake_waiters;   /* broadcast cond at the next dt__client_unlock */
  pthread_t io;
  bool io_started;
  uv_loop_t loop;
  dt_net net;
  dt_sec sec;
  struct dt_net_lock netlock;
  uv_async_t wake;
  uv_timer_t retry;
  dt_conn *sched;
  char addr[256];
  char name[128];
  client_state state;
  int conn_err;      /* last connect error (libuv) */
  bool stop;
  dt_smap futs;      /* key -> dt_future */
  dt_smap wconns;    /* worker address -> wconn */
  dt_vec fetchq;     /* futures to fetch on the next wake */
  uint64_t next_req;
  int inside;        /* threads inside calls that may wait (dt__client_enter) */
  dt_vec infos;      /* pending info requests */
  dt_vec scatters;   /* pending scatters */
  dt_vec retires;    /* pending retire_workers (scatter_req too) */
  dt_vec coords;     /* pending COORD requests (coord.c) */
  cb_entry *cbq_head, *cbq_tail; /* done callbacks to run unlocked */
  struct dt_future *cancelled;   /* cancelled futures still held (future.c) */
  uint64_t id;
  dt_vec actorq;     /* actor calls to send on the next wake (actor.c) */
  dt_smap acfuts;    /* key -> dt_future of the actor calls (actor.c) */
  uint64_t next_acall;
  dt_vec queries;    /* pending QUERY (query.c) */
  /* heartbeats (connection.c): the scheduler is given up after
   * hb_timeout_s of silence */
  uv_timer_t hb;
  double last_heard, hb_timeout_s, last_ping;
  bool hb_warned;
  char lost_why[200]; /* why the connection was given up, or "" */
  /* reconnecting to a scheduler with a journal (reconnect.c) */
  double reconnect_s, lost_at; /* how long to keep trying (0: never); since */
  unsigned reconnects;
  bool resuming; /* lost: reconnecting, RESUME on WELCOME */
  uint32_t resume_id; /* the id at the scheduler lost (RESUME_AS) */
};

/* ---- connection.c */
/* dt__client_unlock: wakes waiters if anything changed (wake_waiters), then
 * unlocks and runs queued done callbacks.  Every unlock after a change that
 * a waiter may wait for must go through it. */
void dt__client_unlock(dt_client *c);
void dt__client_wake(dt_client *c); /* the I/O thread looks at fetchq / stop */
/* dt__client_wait_until: waits on c->cond (locked) until woken or the
 * deadline (NULL: none); false when the deadline passed. */
bool dt__client_wait_until(dt_client *c, const struct timespec *deadline);
int dt__client_usable(dt_client *c); /* locked; 0 or an error with message */
/* dt__client_enter (locked): this thread is in a call that may wait on c;
 * dt_client_close wakes it and frees c only once it has left.
 * dt__client_leave: the matching exit, in place of dt__client_unlock: it
 * unlocks (callbacks run), then counts the thread out: its last touch of c. */
void dt__client_enter(dt_client *c);
void dt__client_leave(dt_client *c);
/* dt__client_sync (info.c): one SYNC / SYNCED round trip: the scheduler has
 * taken in everything this client sent before (O(1) at the scheduler) */
int dt__client_sync(dt_client *c, int timeout_ms);

/* ---- dispatch.c: a message from the scheduler (I/O thread, locked) */
int dt__client_on_sched_msg(dt_conn *conn, int op, uint32_t nf, dt_rd *r);
/* reconnect.c: RECONNECTABLE; on a loss, reconnect (true) or not (false);
 * on WELCOME after a reconnect, RESUME */
int dt__client_on_reconnectable(dt_client *c, const dt_msg *m);
bool dt__client_reconnect_begin(dt_client *c);
void dt__client_resume(dt_client *c);
/* dt__client_sched_lost: the scheduler connection closed (connection.c) */
void dt__client_sched_lost(dt_conn *conn);

/* ---- coord.c: COORD_REPLY (I/O thread, locked) */
int dt__client_on_coord_reply(dt_client *c, const dt_msg *m);
/* after RESUME: pending COORD requests are sent again (reconnect.c) */
void dt__client_coord_resend(dt_client *c);
/* ---- query.c: ANSWER from the scheduler (I/O thread, locked) */
int dt__client_on_answer(dt_client *c, const dt_msg *m);

/* ---- future.c (locked) */
/* dt__future_detach_cancelled: the client is closing (lock held): its
 * cancelled futures still held by the user become handles of no client */
void dt__future_detach_cancelled(dt_client *c);
/* dt__future_get: the future for key (refs+1), created PENDING if new
 * (*created, may be NULL); NULL when out of memory (no message set). */
dt_future *dt__future_get(dt_client *c, const char *key, uint32_t klen, bool *created);
/* dt__futures_undo: drops the holds dt__future_get gave fs[0..n), last
 * first, without telling the scheduler: futures made by those calls go
 * away as if never made.  For a call that fails before it sent anything. */
void dt__futures_undo(dt_future **fs, size_t n);
/* dt__future_unref_locked: drops one reference; the last one releases the
 * key at the scheduler (RELEASE_KEYS) and frees f. */
void dt__future_unref_locked(dt_future *f);
void dt__future_finish(dt_future *f, dt_future_status st); /* queues cbs */
/* dt__future_set_error: f's error is code with a copy of msg (left without
 * a message when out of memory). */
void dt__future_set_error(dt_future *f, int code, const char *msg);

/* ---- submit.c */
typedef struct {
  char *key;
  char *func;
  dt_payload spec;
  dt_vec deps; /* char* keys, owned */
  dt_submit_opts opts; /* key and resources NULL: see key, res_* */
  char **res_names;    /* parsed opts.resources, owned */
  double *res_amounts;
  uint32_t nres;
  bool func_shared; /* func is another definition's (dt_client_map's): not freed */
} dt__taskdef;
/* a task's record of UPDATE_GRAPH (DT_REC_task): with the checked encoder
 * (dt__e_rec and its fields), or the same bytes with the raw writers */
void dt__taskdef_enc(dt_enc *e, const dt__taskdef *t);
void dt__taskdef_write(dt_wbuf *w, const dt__taskdef *t);
/* dt__taskdef_make: a task definition for func(*args, **kwargs) (args and
 * kwargs consumed on every path); c (may be NULL) checks the futures in the
 * arguments.  0, or an error with message and nothing to clear. */
int dt__taskdef_make(dt_client *c, const char *func, dt_value *args, dt_value *kwargs,
                     const dt_submit_opts *opts, dt__taskdef *out);
void dt__taskdef_clear(dt__taskdef *t);
/* dt__client_send_graph: encodes tasks into one UPDATE_GRAPH (locked, with
 * c->sched usable); 0, or DT_ENOMEM with message and nothing written. */
int dt__client_send_graph(dt_client *c, dt__taskdef *const *tasks, size_t n, const char **wanted,
                          size_t nwanted);
/* dt__taskdef_bound: the most bytes t takes in an UPDATE_GRAPH */
size_t dt__taskdef_bound(const dt__taskdef *t);

/* ---- slices.c: a batch of tasks in one UPDATE_GRAPH, or several */
typedef struct {
  dt__taskdef *const *tasks; /* in the order sent: an in-batch dependency first */
  size_t n;
  const uint8_t *want;       /* want[i]: tasks[i]'s key is wanted (NULL: every one) */
  const char **extra;        /* other keys wanted (sent with the first slice) */
  size_t nextra;
  const dt_smap *index;      /* key -> graph node + 1 (NULL: no dependency is in the batch) */
  const size_t *pos1;        /* graph node -> its position in tasks + 1 (0: not sent) */
} dt__slicing;
/* dt__client_submit_sliced: (locked, c usable; returns UNLOCKED) sends the
 * batch: in one UPDATE_GRAPH when it fits one slice (DTASK_SLICE_TASKS
 * tasks, DTASK_SLICE_BYTES bytes), else in slices in order, each kept
 * alive until the slices that depend on it are in, with the scheduler's
 * SYNCED paced (two slices in flight at most).  out[0..nout): the futures
 * the caller made for the call (held); on failure they are dropped (undone
 * when nothing was sent, released otherwise) and set NULL. */
int dt__client_submit_sliced(dt_client *c, const dt__slicing *s, dt_future **out, size_t nout);
/* dt__client_hash: two 64-bit FNV-style hashes of n bytes, for keys */
void dt__client_hash(uint64_t *h1, uint64_t *h2, const void *p, size_t n);

/* ---- fetch.c (locked) */
extern const dt_conn_cbs dt__client_worker_cbs; /* a worker connection's */
/* dt__client_process_fetchq: GET_DATA for every queued future (I/O thread) */
void dt__client_process_fetchq(dt_client *c);
/* dt__client_want_fetch: queues a fetch of f's value if it is in memory and
 * not being fetched (takes a hold on f); 0 or DT_ENOMEM (no message). */
int dt__client_want_fetch(dt_client *c, dt_future *f);
/* dt__future_result_locked: waits for f's value; *out a new reference */
int dt__future_result_locked(dt_client *c, dt_future *f, int timeout_ms, dt_value **out);

/* ---- actor.c (locked) */
/* dt__client_process_actorq: send the queued actor calls (I/O thread) */
void dt__client_process_actorq(dt_client *c);
/* dt__client_actor_result: ACTOR_RESULT from the worker of wc (I/O thread) */
int dt__client_actor_result(wconn *wc, uint32_t nf, dt_rd *r);
/* dt__client_actor_conn_lost: wc is going: its calls in flight fail */
void dt__client_actor_conn_lost(wconn *wc);
/* dt__client_actor_close: the client closes: drop queued calls, detach
 * the calls' futures */
void dt__client_actor_close(dt_client *c);

/* ---- outbox.c: room taken before anything changes (user threads) */
/* dt__client_vec_room / dt__client_map_room: room for extra more entries,
 * so that the next extra dt__vec_push / dt__smap_put (of new keys) do not
 * allocate; 0 or DT_ENOMEM (no message). */
int dt__client_vec_room(dt_vec *a, size_t extra);
int dt__client_map_room(dt_smap *m, size_t extra);

/* Upper bounds of the bytes dt__wb_* reserves per item written (wire.c);
 * a message's bound is the sum over its items, header excluded. */
#define DT__WB_NUM 9u     /* uint, int, double */
#define DT__WB_LIST 5u    /* list, map or record header */
#define DT__WB_BOOL 1u    /* bool, nil */
#define DT__WB_STR(n) (5u + (size_t)(n))
#define DT__WB_PAYLOAD(p) (5u + (p)->len + 2 * DT__WB_NUM)

/* One message being written, with its room reserved. */
typedef struct {
  dt_enc e;
  size_t cap;    /* the buffer's capacity after the reservation */
  uint32_t fcap;
} dt__msg_out;
/* dt__client_begin: reserves bytes (+ the header) and nframes frames in
 * conn's write buffer and begins message op in o->e; 0, or DT_ENOMEM (no
 * message set) with nothing written. */
int dt__client_begin(dt__msg_out *o, dt_conn *conn, int op, size_t bytes, uint32_t nframes);
/* dt__client_end: ends the message (asserts, in debug builds, that it fit
 * in the room reserved: a wrong bound shows in tests, and at worst falls
 * back to dt__wbuf_reserve's growth, never to a cut message). */
void dt__client_end(dt__msg_out *o);
/* dt__client_send_key: a message whose one field is a list of one key
 * (RELEASE_KEYS, CANCEL_KEYS, WHO_HAS) to the scheduler (locked, c->sched
 * set); 0 or DT_ENOMEM (no message set) with nothing written. */
int dt__client_send_key(dt_client *c, int op, const char *key, uint32_t klen);

#endif
