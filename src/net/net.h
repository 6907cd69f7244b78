/*
 * net.h -- connections over libuv TCP.  A connection reads batches (see
 * proto.h) with a state machine that validates sizes before allocating and
 * reads large frames straight into their final buffer; it dispatches each
 * message to its owner's callback.  Messages written during one event-loop
 * turn are collected and sent as one batch with one writev.  (conn.c: the
 * life of a connection; conn_read.c, conn_write.c, conn_handshake.c: the
 * read state machine, the write path, the handshakes.)
 */
#ifndef DT_NET_H
#define DT_NET_H

#include <uv.h>

#include "../proto/proto.h"

typedef struct dt_conn dt_conn;

/* Security of a process's connections (see secure.c): a shared secret that
 * every connection proves it knows before any message is read, and TLS.
 * Set once at start-up, read-only afterwards. */
typedef struct dt_sec {
  bool auth;                  /* challenge-response with secret */
  unsigned char secret[256];
  size_t secret_len;
  void *tls_server, *tls_client; /* SSL_CTX *, or NULL: plain TCP */
} dt_sec;

/* Limits on what peers that connect to us may hold (limits.c, defaults
 * DT_NET_*; docs/reliability.md).  Strangers: accepted connections that
 * have not said hello (dt__conn_admit*) yet. */
typedef struct dt_net_limits {
  uint64_t in_flight_max;    /* bytes received of incomplete batches, all accepted
                                connections together */
  uint64_t client_max_batch; /* one batch (body + frames) from a peer admitted with
                                dt__conn_admit_client */
  uint32_t strangers_max;    /* strangers at once, in total (past it, the oldest
                                goes, or the new one is refused) */
  uint32_t strangers_per_ip; /* strangers from one source address past which it
                                gets no more while one of them is old */
  uint32_t hello_ms;         /* a stranger says hello within this, or goes */
} dt_net_limits;
#define DT_NET_IN_FLIGHT_MAX (1ull << 30)
#define DT_NET_CLIENT_MAX_BATCH (1ull << 30)
#define DT_NET_STRANGERS_MAX 4096u    /* and at most half the descriptor limit */
#define DT_NET_STRANGERS_PER_IP 128u  /* past it, with old ones, an address gets no more */
#define DT_NET_STRANGER_GRACE_MS 1000 /* a stranger younger is never dropped for room */
#define DT_NET_HELLO_MS 10000u
/* bytes read at a time when not reading straight into a body or frame */
#define DT_CONN_STAGE_SIZE (64 * 1024)

/* One per event loop: flushes dirty connections once per loop turn. */
typedef struct dt_net {
  uv_loop_t *loop;
  uv_prepare_t prep;
  uv_check_t chk;
  dt_conn *dirty;
  uint64_t bytes_in, bytes_out;
  /* lock: if set (the client library), taken around each flush, because
   * other threads append messages under it */
  struct dt_net_lock *lock;
  const dt_sec *sec; /* NULL: no authentication, no TLS */
  /* connections still in their handshakes, dropped past their deadline */
  dt_conn *hs_head;
  uv_timer_t hs_timer;
  dt_net_limits lim;     /* set by dt__net_init to the defaults */
  uint64_t in_flight;    /* bytes of incomplete batches on accepted connections */
  uint64_t refused;      /* connections refused at accept (limits) */
  uint64_t refused_logged_ms;
  /* where reads land when they do not go straight into a body or frame:
   * one per net, not per connection (the loop reads one socket at a time
   * and every read is consumed or copied before the next), so an idle or
   * stranger connection holds no read buffer */
  char stage[DT_CONN_STAGE_SIZE];
} dt_net;
struct dt_net_lock {
  void (*acquire)(void *);
  void (*release)(void *);
  void *arg;
};
void dt__net_init(dt_net *n, uv_loop_t *loop);
void dt__net_close(dt_net *n); /* closes its handles; run the loop after */
void dt__net_flush(dt_net *n);

typedef struct {
  /* on_msg: one message [op, fields...]; r is positioned after the op and
   * nfields fields remain.  Return 0, or <0 for a malformed message: the
   * connection is then logged and closed. */
  int (*on_msg)(dt_conn *c, int op, uint32_t nfields, dt_rd *r);
  /* on_connect: outgoing connections only; status 0 or a libuv error.  On
   * error on_close follows. */
  void (*on_connect)(dt_conn *c, int status);
  /* on_close: exactly once, before the connection is freed. */
  void (*on_close)(dt_conn *c);
} dt_conn_cbs;

/* Connection states (memcached style: one enum, one driver per direction). */
typedef enum {
  DT_CONN_DETACHED,   /* no socket: messages accumulate in out (unit tests) */
  DT_CONN_CONNECTING, /* outgoing connect in progress; writes are held */
  DT_CONN_OPEN,       /* reading and writing */
  DT_CONN_CLOSING     /* uv_close or shutdown requested; no more callbacks
                         but on_close */
} dt_conn_state;

typedef enum {
  DT_RS_HEAD,   /* reading the 8-byte batch header */
  DT_RS_LENS,   /* reading the frame lengths */
  DT_RS_BODY,   /* reading the msgpack body */
  DT_RS_FRAMES  /* reading frame i */
} dt_read_state;

struct dt_conn {
  uv_tcp_t tcp;
  dt_net *net;
  const dt_conn_cbs *cbs;
  void *data;     /* owner's pointer */
  char peer[96];  /* "host:port" of the other end, for logs */
  dt_conn_state state;
  int close_status;
  /* reading */
  dt_read_state rstate;
  uint8_t hdr[8];
  size_t got; /* bytes of the current part received */
  uint32_t body_len, nframes;
  uint64_t *flens;
  char *body;
  dt_frame *frames;
  uint32_t fi;
  bool direct; /* the last alloc_cb pointed into body/frame */
  /* writing */
  dt_wbuf out;
  dt_wbuf *sealed;
  size_t nsealed, sealed_cap;
  bool dirty;
  dt_conn *dirty_next;
  size_t writes_in_flight;
  bool close_after_flush;
  /* security (secure.h): TLS, then the shared-secret handshake, before
   * the first batch; the owner hears on_connect once both are done */
  bool outgoing;
  bool secured;  /* handshakes done: batches flow */
  bool admitted; /* full size limits (outgoing, or said hello) */
  uint8_t auth;  /* handshake step, 0 = none left */
  uint8_t hs[72];
  size_t hs_got;
  uint8_t ns[32], nc[32];
  uint64_t hs_deadline; /* loop time, ms */
  dt_conn *hs_prev, *hs_next;
  void *ssl; /* SSL *, with TLS */
  /* limits (limits.c) */
  char ip[48];          /* the peer's address, accepted connections */
  uint64_t accepted_ms; /* loop time it was accepted */
  uint64_t max_batch;   /* 0: DT_MAX_BODY and DT_MAX_FRAME only */
  uint64_t in_flight;   /* bytes of the current batch received (accepted conns) */
  size_t committed;     /* bytes of the current frame's blob pre-faulted */
  uint64_t rx_ms;       /* loop time bytes last arrived (silence: a peer fetch's timeout) */
  /* an open message: its writer (the worker's TASKS_FINISHED) appends
   * records to out across calls, without dt__conn_out; dt__conn_out and the
   * flush call close_open first (cleared before the call), so that the
   * message is complete before anything else is appended or it is sent */
  void (*close_open)(dt_conn *c);
  /* the last batch's body length, at most DT_OUT_HINT_MAX: the next batch's
   * buffer is reserved at that size once, instead of growing from 256 bytes
   * by doubling (reallocs and copies) message after message */
  size_t out_hint;
};
#define DT_OUT_HINT_MAX (1u << 20)

/* dt__conn_admit: the peer introduced itself properly: lift the limits for
 * strangers (DT_PREADMIT_MAX_BODY, no frames). */
void dt__conn_admit(dt_conn *c);
/* dt__conn_admit_client: admitted, with batches capped at
 * lim.client_max_batch (a client, or a peer that only asks for data). */
void dt__conn_admit_client(dt_conn *c);
/* dt__net_raise_nofile: raises this process's soft descriptor limit to its
 * hard limit (logged); returns the limit now in force.  A daemon then keeps
 * lim.strangers_max at most half of it. */
uint64_t dt__net_raise_nofile(void);

/* dt__conn_new_detached: a connection with no socket (for unit tests). */
dt_conn *dt__conn_new_detached(void);
void dt__conn_free_detached(dt_conn *c);

/* dt__conn_connect: starts connecting to addr ("host:port").  Returns 0 and
 * the new connection (owned by the loop; freed after on_close), or an error
 * (nothing to free). */
int dt__conn_connect(dt_net *n, const char *addr, const dt_conn_cbs *cbs, void *data,
                    dt_conn **out);
/* dt__conn_out: the batch being written; append one message to it (an
 * open message is closed first: see close_open). */
dt_wbuf *dt__conn_out(dt_conn *c);
/* dt__conn_close_open: closes c's open message now, if it has one. */
void dt__conn_close_open(dt_conn *c);
/* dt__conn_close: closes now (pending output is dropped) or, if graceful,
 * after pending output is written.  on_close runs later. */
void dt__conn_close(dt_conn *c, bool graceful);
/* dt__conn_local_ip: the local IP address of a connected socket. */
int dt__conn_local_ip(dt_conn *c, char *buf, size_t cap);

typedef struct dt_listener {
  uv_tcp_t tcp;
  dt_net *net;
  const dt_conn_cbs *cbs;
  void (*on_accept)(struct dt_listener *l, dt_conn *c);
  void *data;
  int port;
  char host[64];
} dt_listener;
/* dt__listener_start: binds host:port (port 0 = any) and listens. */
int dt__listener_start(dt_listener *l, dt_net *n, const char *host, int port,
                      const dt_conn_cbs *cbs, void (*on_accept)(dt_listener *, dt_conn *),
                      void *data);
void dt__listener_close(dt_listener *l);

/* dt__resolve: host (numeric or name) and port into a sockaddr. */
int dt__resolve(const char *host, int port, struct sockaddr_storage *ss);

#endif
