/*
 * server.h -- what the scheduler daemon's files share: the daemon's state
 * (one per process, owned by the event loop's thread), the handlers of
 * the messages from clients and workers, and the encoder of the state
 * machine's events.
 *
 *   server.c           the daemon: options, listener, timers, signals, main,
 *                      and the fuzzing entry point
 *   dispatch.c         the table of handlers, and connections closing
 *   emit.c             the state machine's events, encoded onto connections
 *   handle_clients.c   hellos, graphs, keys, info requests
 *   handle_workers.c   task reports, heartbeats, nanny reports, closing
 *   handle_requests.c  scatter and retire requests, which span a client and
 *                      workers
 *
 * A connection's data is NULL until it says hello, then its s_worker or
 * s_client, whose conn is the dt_conn (the state machine never reads it).
 */
#ifndef DT_SCHED_SERVER_H
#define DT_SCHED_SERVER_H

#include "../net/net.h"
#include "../net/secure.h"
#include "state.h"
#include "journal.h"

/* A scatter waiting for its workers to store the data. */
typedef struct {
  uint64_t id, client_req;
  uint32_t client_id;
  dt_vec workers; /* worker ids (as pointers) still to confirm */
  char *error;
} dt_scatter_req;

/* A retire request waiting for its workers to hand over their results. */
typedef struct dt_retire_req {
  uint64_t client_req;
  uint32_t client_id;
  uint32_t pending; /* workers still moving results */
  uint32_t retired;
  char *error;
} dt_retire_req;

typedef struct {
  uv_loop_t loop;
  dt_net net;
  dt_listener listener;
  uv_signal_t sigint, sigterm;
  uv_timer_t trim, hb, dash;
  char dashboard_url[160];
  uint64_t dash_completed; /* tasks completed at the last snapshot */
  uint64_t dash_last_ms;   /* loop time of the last snapshot */
  double worker_ttl_s;     /* a worker silent this long is removed */
  int heartbeat_ms;        /* heartbeats both ways, this often */
  size_t trim_high;        /* most tasks held since the last trim */
  sched s;
  char address[128];
  char *scheduler_file;
  dt_sec sec;
  dt_vec scatters; /* dt_scatter_req */
  uint64_t next_scatter;
  bool stopping;
  uint64_t start_ms; /* loop time at start */
} dt_srv;

/* dt__srv: the daemon's state (server.c); the event loop's thread only. */
extern dt_srv dt__srv;

/* ---- dispatch.c */
/* dt__srv_on_msg: one message from c: checks who may send it and decodes
 * it, runs its handler, then sends the events it caused (dt__srv_emit).
 * Returns the handler's status (<0: the connection is to be closed). */
int dt__srv_on_msg(dt_conn *c, int op, uint32_t nfields, dt_rd *r);
/* dt__srv_on_conn_close: c closed: its worker or client leaves. */
void dt__srv_on_conn_close(dt_conn *c);
extern const dt_conn_cbs dt__srv_conn_cbs;
/* dt__srv_peer_kind: PEER_WORKER, PEER_CLIENT, or 0 before hello */
int dt__srv_peer_kind(const dt_conn *c);

/* ---- emit.c */
/* dt__srv_emit: encodes the state machine's pending events, in order, onto
 * their peers' connections (skipping peers that left), then empties the
 * queue.  Called after each message and timer, and before the server
 * writes a message of its own, so that a connection sees them in order. */
void dt__srv_emit(void);
/* dt__srv_send_close: CLOSE with reason on c (after the pending events) */
void dt__srv_send_close(dt_conn *c, const char *reason);

/* ---- helpers (handle_clients.c) */
/* A list of keys or names borrowed from a decoded message. */
typedef struct {
  const char **keys;
  uint32_t *lens;
  uint32_t n;
} dt_keylist;
void dt__keylist_of(const dt_list *l, dt_keylist *kl); /* KEY or STR lists */
void dt__keylist_free(dt_keylist *kl);
s_client *dt__srv_client_by_id(uint32_t id);

/* ---- handlers: (connection, decoded message) -> 0 or DT_EPROTO */
int dt__on_hello_client(dt_conn *c, const dt_msg *m);
int dt__on_update_graph(dt_conn *c, const dt_msg *m);
int dt__on_release_keys(dt_conn *c, const dt_msg *m);
int dt__on_want_keys(dt_conn *c, const dt_msg *m);
int dt__on_cancel_keys(dt_conn *c, const dt_msg *m);
int dt__on_who_has(dt_conn *c, const dt_msg *m);
int dt__on_want_result(dt_conn *c, const dt_msg *m);
int dt__on_info_request(dt_conn *c, const dt_msg *m);
int dt__on_sync(dt_conn *c, const dt_msg *m); /* SYNCED: O(1), after what came before */
int dt__on_hello_worker(dt_conn *c, const dt_msg *m);
int dt__on_task_finished(dt_conn *c, const dt_msg *m);
int dt__on_tasks_finished(dt_conn *c, const dt_msg *m);
int dt__on_task_erred(dt_conn *c, const dt_msg *m);
int dt__on_missing_data(dt_conn *c, const dt_msg *m);
int dt__on_heartbeat(dt_conn *c, const dt_msg *m);
int dt__on_close_msg(dt_conn *c, const dt_msg *m);
int dt__on_nanny_report(dt_conn *c, const dt_msg *m);
int dt__on_scatter(dt_conn *c, const dt_msg *m);
int dt__on_put_data_done(dt_conn *c, const dt_msg *m);
int dt__on_retire_workers(dt_conn *c, const dt_msg *m);
int dt__on_acquired(dt_conn *c, const dt_msg *m);
int dt__on_retire_me(dt_conn *c, const dt_msg *m); /* a worker's lifetime is over */
/* tasks_from_tasks.c */
int dt__on_task_seceded(dt_conn *c, const dt_msg *m);
int dt__on_task_reschedule(dt_conn *c, const dt_msg *m);
/* cancelled.c */
int dt__on_task_released(dt_conn *c, const dt_msg *m);
int dt__on_cancel_force(dt_conn *c, const dt_msg *m);
bool dt__ghost_refill(sched *s);
int dt__on_fire_and_forget(dt_conn *c, const dt_msg *m);
/* plugins.c: the worker plugins kept for every worker, joining ones too */
int dt__on_plugin_add(dt_conn *c, const dt_msg *m);
int dt__on_plugin_remove(dt_conn *c, const dt_msg *m);
/* dt__srv_plugins_welcome: every kept plugin to the worker of c (just
 * welcomed); dt__srv_plugins_free: forget them all (the scheduler stops) */
void dt__srv_plugins_welcome(dt_conn *c);
void dt__srv_plugins_free(void);

/* ---- workers leaving (handle_workers.c, handle_requests.c) */
/* dt__srv_drop_worker: remove a worker we give up on, and close its
 * connection (silent past the ttl, or reported dead by its nanny). */
void dt__srv_drop_worker(s_worker *w, bool suspicious);
/* dt__srv_worker_leaves: the requests w was part of go on without it */
void dt__srv_worker_leaves(s_worker *w);
/* dt__srv_scatters_free_all: at exit, the scatters still waiting */
void dt__srv_scatters_free_all(void);

/* dt__sched_fuzz: one libFuzzer input through the handlers (server.c; see
 * fuzz/fuzz_scheduler.c); aborts if the state machine breaks, else 0. */
int dt__sched_fuzz(const uint8_t *data, size_t size);

#endif
