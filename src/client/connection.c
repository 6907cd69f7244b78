/*
 * connection.c -- a client's life: dt_client_connect and dt_client_close,
 * the I/O thread and its libuv loop, wake-ups from user threads, the lock
 * (with done callbacks run after it), and the scheduler connection's state:
 * connecting with retries until WELCOME, ready, lost or closed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "../common/parse.h"
#include "../net/secure.h"
#include "../proto/alloc.h"

/* ---------------------------------------------------------------- locking */

static void run_callbacks(dt_client *c) {
  for (;;) {
    pthread_mutex_lock(&c->lock);
    cb_entry *e = c->cbq_head;
    c->cbq_head = c->cbq_tail = NULL;
    pthread_mutex_unlock(&c->lock);
    if (!e) return;
    while (e) {
      cb_entry *next = e->next;
      e->cb(e->f, e->arg);
      dt_future_release(e->f);
      free(e);
      e = next;
    }
  }
}

void dt__client_unlock(dt_client *c) {
  bool cbs = c->cbq_head != NULL;
  if (c->wake_waiters) { /* one wake-up per batch of changes, not per change */
    c->wake_waiters = false;
    pthread_cond_broadcast(&c->cond);
  }
  pthread_mutex_unlock(&c->lock);
  if (cbs) run_callbacks(c);
}
static void netlock_acquire(void *arg) { pthread_mutex_lock(&((dt_client *)arg)->lock); }
static void netlock_release(void *arg) { dt__client_unlock(arg); }

void dt__client_wake(dt_client *c) { uv_async_send(&c->wake); }

/* this thread's calls inside one client (a callback run by a leaving call
 * may close the client it is inside) */
static __thread dt_client *tl_client;
static __thread int tl_inside;
void dt__client_enter(dt_client *c) {
  c->inside++;
  if (tl_client != c) tl_client = c, tl_inside = 0;
  tl_inside++;
}
void dt__client_leave(dt_client *c) {
  dt__client_unlock(c);
  pthread_mutex_lock(&c->lock);
  if (tl_client == c && --tl_inside == 0) tl_client = NULL;
  if (--c->inside == 0 && c->state == CS_CLOSED) pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

bool dt__client_wait_until(dt_client *c, const struct timespec *deadline) {
  if (!deadline) {
    pthread_cond_wait(&c->cond, &c->lock);
    return true;
  }
  return pthread_cond_timedwait(&c->cond, &c->lock, deadline) == 0 || !dt__passed(deadline);
}

int dt__client_usable(dt_client *c) {
  switch (c->state) {
  case CS_READY: return 0;
  case CS_LOST:
    return dt__err(DT_ECONNLOST, "lost connection to the scheduler at %s", c->addr);
  case CS_CLOSED: return dt__err(DT_ECLOSED, "client is closed");
  default: return dt__err(DT_ECONNECT, "client is not connected to %s", c->addr);
  }
}

/* ---------------------------------------------------------------- the scheduler connection */

static void on_sched_connect(dt_conn *conn, int status) {
  dt_client *c = conn->data;
  if (status < 0) {
    c->conn_err = status;
    return; /* on_close follows; connect() retries until its deadline */
  }
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(conn), DT_OP_HELLO_CLIENT);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, c->name);
  dt__e_end(&e);
}

static void on_sched_close(dt_conn *conn) {
  dt_client *c = conn->data;
  c->sched = NULL;
  if (conn->close_status == DT_EAUTH && c->state == CS_CONNECTING && !c->conn_err)
    c->conn_err = UV_EACCES;
  if (c->state == CS_READY && dt__client_reconnect_begin(c)) { /* reconnect.c */
    c->wake_waiters = true;
    return;
  }
  if (c->state == CS_READY) {
    c->state = CS_LOST;
    DT_WARN("lost connection to the scheduler at %s%s", c->addr, c->lost_why);
    /* every pending future fails: no one would ever finish it */
    for (size_t i = 0; i < c->futs.cap; i++) {
      if (!c->futs.slots[i].key) continue;
      dt_future *f = c->futs.slots[i].val;
      if (f->status != DT_PENDING) continue;
      char msg[512];
      snprintf(msg, sizeof(msg), "lost connection to the scheduler at %s%s while '%s' was pending",
               c->addr, c->lost_why, f->key);
      dt__future_set_error(f, DT_ECONNLOST, msg);
      dt__future_finish(f, DT_LOST);
    }
  }
  c->wake_waiters = true;
}

void dt__client_sched_lost(dt_conn *conn) { on_sched_close(conn); }

static const dt_conn_cbs sched_cbs = {dt__client_on_sched_msg, on_sched_connect, on_sched_close};

/* ---------------------------------------------------------------- the I/O thread */

static void close_walk(uv_handle_t *h, void *arg) {
  dt_client *c = arg;
  if (uv_is_closing(h)) return;
  if (h->type == UV_TCP) {
    dt_conn *conn = h->data;
    if (conn->cbs == &dt__client_worker_cbs) {
      wconn *wc = conn->data;
      dt__smap_del(&c->wconns, wc->addr, (uint32_t)strlen(wc->addr));
    }
    dt__conn_close(conn, conn == c->sched);
  } else {
    uv_close(h, NULL);
  }
}

static void on_wake(uv_async_t *h) {
  dt_client *c = h->data;
  pthread_mutex_lock(&c->lock);
  if (c->stop) {
    if (c->sched) {
      dt_enc e;
      dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_CLOSE);
      dt__e_cstr(&e, "client closing");
      dt__e_end(&e);
    }
    uv_walk(&c->loop, close_walk, c);
  } else if (c->fetchq.len) {
    dt__client_process_fetchq(c);
  }
  if (!c->stop && c->actorq.len) dt__client_process_actorq(c);
  dt__client_unlock(c);
}

static void start_connect(dt_client *c);
static void on_retry(uv_timer_t *t) {
  dt_client *c = t->data;
  pthread_mutex_lock(&c->lock);
  if (!c->stop && c->state == CS_CONNECTING && !c->sched) start_connect(c);
  dt__client_unlock(c);
}

static void on_sched_close_connecting(dt_client *c) {
  /* retried by the timer while connecting */
  if (c->state == CS_CONNECTING && !c->stop) uv_timer_start(&c->retry, on_retry, 100, 0);
}

static void on_sched_close_wrap(dt_conn *conn) {
  dt_client *c = conn->data;
  on_sched_close(conn);
  on_sched_close_connecting(c);
}
static const dt_conn_cbs sched_cbs_connecting = {dt__client_on_sched_msg, on_sched_connect,
                                                 on_sched_close_wrap};

static void start_connect(dt_client *c) {
  if (dt__conn_connect(&c->net, c->addr, &sched_cbs_connecting, c, &c->sched) != 0) {
    c->sched = NULL;
    c->conn_err = UV_EINVAL;
    c->wake_waiters = true;
  }
}

/* on_hb: the client's heartbeat.  Silent for a quarter of the timeout:
 * ask the scheduler for its counts (INFO_REQUEST, req 0: no one waits for
 * the answer; any message counts as an answer).  Silent for half: say so.
 * Silent for all of it: give the scheduler up (every pending future fails
 * with DT_ECONNLOST, naming the silence). */
static void on_hb(uv_timer_t *t) {
  dt_client *c = t->data;
  pthread_mutex_lock(&c->lock);
  if (!c->stop && c->state == CS_READY && c->sched && c->hb_timeout_s > 0) {
    double now = dt__now_s(), silent = now - c->last_heard;
    if (silent > c->hb_timeout_s) {
      snprintf(c->lost_why, sizeof(c->lost_why),
               " (it has not answered for %.1f s, over the heartbeat timeout of %.1f s)", silent,
               c->hb_timeout_s);
      dt__conn_close(c->sched, false);
    } else {
      if (silent > c->hb_timeout_s / 2 && !c->hb_warned) {
        c->hb_warned = true;
        DT_WARN("the scheduler at %s has not answered for %.1f s (giving it up after %.1f s)",
                c->addr, silent, c->hb_timeout_s);
      }
      if (silent > c->hb_timeout_s / 4 && now - c->last_ping > c->hb_timeout_s / 4) {
        c->last_ping = now;
        dt_enc e;
        dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_INFO_REQUEST);
        dt__e_uint(&e, 0);
        dt__e_bool(&e, false);
        dt__e_end(&e);
      }
    }
  }
  dt__client_unlock(c);
}

static void *io_main(void *arg) {
  dt_client *c = arg;
  pthread_mutex_lock(&c->lock);
  start_connect(c);
  dt__client_unlock(c);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* ---------------------------------------------------------------- connect */

static int resolve_address(const dt_client_opts *o, char *out, size_t cap) {
  const char *a = o ? o->address : NULL;
  char buf[256];
  if (!a) a = getenv("DTASK_SCHEDULER_ADDRESS");
  if (!a && o && o->scheduler_file) {
    int rc = dt__scheduler_file_read(o->scheduler_file, buf, sizeof(buf));
    if (rc) return rc;
    a = buf;
  }
  if (!a)
    return dt__err(DT_EINVAL, "no scheduler address: give opts.address, set "
                              "DTASK_SCHEDULER_ADDRESS, or give opts.scheduler_file");
  if (strncmp(a, "tcp://", 6) == 0 || strncmp(a, "tls://", 6) == 0) a += 6;
  char host[256];
  int port;
  if (dt__addr_split(a, host, sizeof(host), &port) != 0 || port == 0)
    return dt__err(DT_EINVAL, "invalid scheduler address '%s' (expected host:port)", a);
  snprintf(out, cap, "%s", a);
  return 0;
}

static void client_free(dt_client *c) {
  dt__tls_free(&c->sec);
  dt__smap_destroy(&c->futs);
  dt__smap_destroy(&c->wconns);
  dt__vec_free(&c->fetchq);
  dt__vec_free(&c->actorq);
  dt__smap_destroy(&c->acfuts);
  dt__vec_free(&c->infos);
  dt__vec_free(&c->scatters);
  dt__vec_free(&c->retires);
  dt__vec_free(&c->coords);
  dt__vec_free(&c->queries);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cond);
  free(c);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* loop_teardown: closes the handles of a loop that never ran, then it */
static void loop_teardown(uv_loop_t *loop) {
  uv_walk(loop, close_any, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
}

static void stop_io(dt_client *c) {
  pthread_mutex_lock(&c->lock);
  c->stop = true;
  pthread_mutex_unlock(&c->lock);
  uv_async_send(&c->wake);
  pthread_join(c->io, NULL);
  uv_loop_close(&c->loop);
}

/* security: the registry's entry for a LocalCluster of this process, or the
 * options' files; 0 or DT_EINVAL with message */
static int client_security(dt_client *c, const dt_client_opts *opts) {
  dt_sec_args sa = {opts ? opts->auth_file : NULL, opts ? opts->tls_ca_file : NULL,
                    opts ? opts->tls_cert : NULL, opts ? opts->tls_key : NULL};
  if (!sa.auth_file && dt__sec_lookup(c->addr, &c->sec)) {
    /* a LocalCluster of this process: its secret (and TLS), from net/'s registry */
  } else if (dt__sec_from_args(&c->sec, &sa) != 0) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    return dt__err(DT_EINVAL, "dt_client_connect: %s", msg);
  }
  if (sa.auth_file == NULL && c->sec.auth && (sa.tls_cert || sa.tls_key || sa.tls_ca) &&
      dt__tls_setup(&c->sec, sa.tls_ca, sa.tls_cert, sa.tls_key) != 0) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    dt__tls_free(&c->sec);
    return dt__err(DT_EINVAL, "dt_client_connect: %s", msg);
  }
  return 0;
}

/* start_io: the loop, its handles and the I/O thread; 0 or an error with
 * message, with everything started undone */
static int start_io(dt_client *c) {
  int uvrc = uv_loop_init(&c->loop);
  if (uvrc != 0)
    return dt__err(uvrc == UV_ENOMEM ? DT_ENOMEM : DT_EIO,
                   "dt_client_connect: cannot start an event loop: %s", uv_strerror(uvrc));
  dt__net_init(&c->net, &c->loop);
  c->net.sec = &c->sec;
  c->netlock = (struct dt_net_lock){netlock_acquire, netlock_release, c};
  c->net.lock = &c->netlock;
  uvrc = uv_async_init(&c->loop, &c->wake, on_wake);
  if (uvrc != 0) {
    loop_teardown(&c->loop);
    return dt__err(uvrc == UV_ENOMEM ? DT_ENOMEM : DT_EIO,
                   "dt_client_connect: cannot set up wake-ups: %s", uv_strerror(uvrc));
  }
  c->wake.data = c;
  uv_timer_init(&c->loop, &c->retry);
  c->retry.data = c;
  uv_timer_init(&c->loop, &c->hb);
  c->hb.data = c;
  if (c->hb_timeout_s > 0) {
    uint64_t every = (uint64_t)(c->hb_timeout_s * 1000 / 8);
    every = every < 50 ? 50 : every > 1000 ? 1000 : every;
    uv_timer_start(&c->hb, on_hb, every, every);
  }
  c->state = CS_CONNECTING;
  if (pthread_create(&c->io, NULL, io_main, c) != 0) {
    loop_teardown(&c->loop);
    return dt__err(DT_ENOMEM, "cannot start the client's I/O thread");
  }
  c->io_started = true;
  return 0;
}

int dt_client_connect(const dt_client_opts *opts, dt_client **out) {
  dt__err_clear();
  if (!out) return dt__err(DT_EINVAL, "dt_client_connect: out is NULL");
  *out = NULL;
  dt_client *c = dt__try_calloc(1, sizeof(*c));
  if (!c) return dt__err(DT_ENOMEM, "dt_client_connect: out of memory");
  int rc = resolve_address(opts, c->addr, sizeof(c->addr));
  if (rc == 0) rc = client_security(c, opts);
  if (rc) {
    free(c);
    return rc;
  }
  snprintf(c->name, sizeof(c->name), "%s", opts && opts->name ? opts->name : "client");
  int timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
  int hb = opts ? opts->heartbeat_timeout_ms : 0;
  c->hb_timeout_s = hb < 0 ? 0 : hb == 0 ? 60.0 : hb / 1000.0;
  c->last_heard = dt__now_s();
  pthread_mutex_init(&c->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cond, &ca);
  pthread_condattr_destroy(&ca);
  dt__smap_init(&c->futs);
  dt__smap_init(&c->wconns);
  if ((rc = start_io(c)) != 0) {
    client_free(c);
    return rc;
  }
  struct timespec deadline;
  dt__deadline(&deadline, timeout);
  pthread_mutex_lock(&c->lock);
  while (c->state == CS_CONNECTING && c->conn_err != UV_EINVAL && c->conn_err != UV_EACCES &&
         c->conn_err != UV_EPROTO)
    if (!dt__client_wait_until(c, &deadline)) break;
  bool ok = c->state == CS_READY;
  int err = c->conn_err;
  pthread_mutex_unlock(&c->lock);
  char c_addr_copy[256];
  snprintf(c_addr_copy, sizeof(c_addr_copy), "%s", c->addr);
  if (!ok) {
    stop_io(c);
    client_free(c);
    if (err == UV_EINVAL) return DT_ECONNECT; /* message set by dt__conn_connect */
    if (err == UV_EACCES || err == UV_EPROTO)
      return dt__err(DT_EAUTH, "could not connect to the scheduler at %s: %s", c_addr_copy,
                     err == UV_EACCES ? "authentication failed (wrong or missing shared secret; "
                                        "see the scheduler's log)"
                                      : "TLS failed (the certificates do not match the cluster's, or it uses no TLS; see the scheduler's log)");
    if (err == UV_ECONNRESET)
      return dt__err(DT_ECONNECT,
                     "could not connect to the scheduler at %s: it closed the connection before "
                     "the handshake began (refused: too many connections, or not a dtask "
                     "scheduler; see its log)",
                     c_addr_copy);
    return dt__err(DT_ECONNECT, "could not connect to the scheduler at %s within %d ms: %s",
                   opts && opts->address ? opts->address : "(configured address)", timeout,
                   err ? uv_strerror(err) : "no reply");
  }
  /* from now on a lost connection is final */
  pthread_mutex_lock(&c->lock);
  if (c->sched) c->sched->cbs = &sched_cbs;
  pthread_mutex_unlock(&c->lock);
  *out = c;
  return 0;
}

/* ---------------------------------------------------------------- close */

void dt_client_close(dt_client *c) {
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  if (c->state != CS_LOST) c->state = CS_CLOSED;
  pthread_mutex_unlock(&c->lock);
  stop_io(c);
  /* detach every future still held by the user */
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < c->futs.cap; i++) {
    if (!c->futs.slots[i].key) continue;
    dt_future *f = c->futs.slots[i].val;
    if (f->status == DT_PENDING) {
      char msg[256];
      snprintf(msg, sizeof(msg), "client was closed while '%s' was pending", f->key);
      dt__future_set_error(f, DT_ECLOSED, msg);
      dt__future_finish(f, DT_CANCELLED);
    }
    f->in_map = false;
    f->client = NULL;
  }
  dt__future_detach_cancelled(c);
  for (size_t i = 0; i < c->fetchq.len; i++) {
    dt_future *f = c->fetchq.v[i];
    f->fetching = false;
    dt__future_unref_locked(f);
  }
  c->fetchq.len = 0;
  dt__client_actor_close(c);
  cb_entry *e = c->cbq_head;
  c->cbq_head = c->cbq_tail = NULL;
  pthread_mutex_unlock(&c->lock);
  while (e) { /* callbacks of futures cancelled by the close */
    cb_entry *n = e->next;
    e->cb(e->f, e->arg);
    dt_future_release(e->f);
    free(e);
    e = n;
  }
  /* calls of other threads waiting on c return (the client is closed) and
   * leave before it is freed; one that has not left in 30 s keeps it */
  int mine = tl_client == c ? tl_inside : 0; /* closed from a callback of a call on it */
  pthread_mutex_lock(&c->lock);
  pthread_cond_broadcast(&c->cond);
  struct timespec dl;
  dt__deadline(&dl, 30000);
  while (c->inside > mine)
    if (pthread_cond_timedwait(&c->cond, &c->lock, &dl) != 0 && dt__passed(&dl)) break;
  int inside = c->inside;
  pthread_mutex_unlock(&c->lock);
  if (inside > mine)
    DT_WARN("dt_client_close: %d calls of other threads on this client have not returned after "
            "30 s: its memory is kept", inside - mine);
  if (inside > 0) return; /* still in use: kept (a call of this thread leaves it later) */
  client_free(c);
}
