/*
 * client.h -- internals of the client library shared by client.c, future.c
 * and graph.c.  A client owns an I/O thread running a libuv loop; every
 * field below is protected by c->lock, which the I/O thread holds in all
 * its callbacks (see dt_net_lock) and user threads take in API calls.
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
  char *err_msg;
  cb_entry *cbs;
};

typedef struct wconn {
  struct dt_client *client;
  char *addr;
  dt_conn *conn;
  dt_vec reqs; /* struct fetch_req* */
} wconn;

struct dt_client {
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
  dt_vec infos;      /* pending info requests */
  dt_vec scatters;   /* pending scatters */
  dt_vec retires;    /* pending retire_workers (scatter_req too) */
  cb_entry *cbq_head, *cbq_tail; /* done callbacks to run unlocked */
  uint64_t id;
};

/* dt__client_unlock: wakes waiters if anything changed (wake_waiters), then
 * unlocks and runs queued done callbacks.  Every unlock after a change that
 * a waiter may wait for must go through it. */
void dt__client_unlock(dt_client *c);
/* dt__future_get: the future for key (refs+1), created PENDING if new. */
dt_future *dt__future_get(dt_client *c, const char *key, uint32_t klen, bool *created);
void dt__future_unref_locked(dt_future *f);
void dt__future_finish(dt_future *f, dt_future_status st); /* queues cbs */
void dt__client_wake(dt_client *c);
/* dt__client_send_graph: encodes tasks into one UPDATE_GRAPH (locked). */
typedef struct {
  char *key;
  char *func;
  dt_payload spec;
  dt_vec deps; /* char* keys, owned */
  dt_submit_opts opts; /* key and resources NULL: see key, res_* */
  char **res_names;    /* parsed opts.resources, owned */
  double *res_amounts;
  uint32_t nres;
} dt__taskdef;
int dt__taskdef_make(dt_client *c, const char *func, dt_value *args, dt_value *kwargs,
                     const dt_submit_opts *opts, dt__taskdef *out);
void dt__taskdef_clear(dt__taskdef *t);
void dt__client_send_graph(dt_client *c, dt__taskdef *tasks, size_t n, const char **wanted,
                           size_t nwanted);
int dt__client_usable(dt_client *c); /* locked; 0 or an error with message */

#endif
