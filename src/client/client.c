/*
 * client.c -- connecting to a scheduler, the client's I/O thread, the
 * messages it receives, and submit / map / gather / scatter.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "../common/parse.h"
#include "../net/secure.h"


typedef struct {
  uint64_t req;
  bool done;
  dt_cluster_info info;
  bool detail;              /* the workers' rows too */
  dt_worker_info *workers;
  size_t nworkers;
} info_req;

typedef struct {
  uint64_t req;
  bool done;
  char *error;
  uint64_t count; /* RETIRE_DONE: workers retired */
} scatter_req;

typedef struct fetch_req {
  uint64_t req;
  dt_vec futs; /* dt_future* held (refs+1) */
} fetch_req;

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

/* wait on c->cond until the deadline; false when it passed */
static bool wait_until(dt_client *c, const struct timespec *deadline) {
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

/* ---------------------------------------------------------------- futures */

dt_future *dt__future_get(dt_client *c, const char *key, uint32_t klen, bool *created) {
  dt_future *f = dt__smap_get(&c->futs, key, klen);
  if (created) *created = f == NULL;
  if (f) {
    f->refs++;
    return f;
  }
  f = dt__xcalloc(1, sizeof(*f));
  atomic_store_explicit(&f->hdr.release, dt_future_release, memory_order_relaxed);
  f->key = dt__xstrndup(key, klen);
  f->klen = klen;
  f->refs = 1;
  f->client = c;
  f->in_map = true;
  f->status = DT_PENDING;
  dt__smap_put(&c->futs, f->key, klen, f);
  return f;
}

static void future_free(dt_future *f) {
  free(f->key);
  free(f->worker);
  free(f->err_msg);
  dt_value_free(f->value);
  while (f->cbs) {
    cb_entry *n = f->cbs->next;
    free(f->cbs);
    f->cbs = n;
  }
  free(f);
}

/* send_key: a message whose one field is a list of keys, with one key (locked) */
static void send_key(dt_client *c, int op, const char *key, uint32_t klen) {
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c->sched), op);
  dt__e_list(&e, 1);
  dt__e_str(&e, key, klen);
  dt__e_end(&e);
}

void dt__future_unref_locked(dt_future *f) {
  if (--f->refs > 0) return;
  dt_client *c = f->client;
  if (c && f->in_map) {
    dt__smap_del(&c->futs, f->key, f->klen);
    if (c->sched && (c->state == CS_READY)) {
      send_key(c, DT_OP_RELEASE_KEYS, f->key, f->klen);
      dt__client_wake(c);
    }
  }
  future_free(f);
}

void dt__future_finish(dt_future *f, dt_future_status st) {
  if (f->status != DT_PENDING && !(f->status == DT_FINISHED && st != DT_FINISHED)) return;
  f->status = st;
  dt_client *c = f->client;
  while (f->cbs) {
    cb_entry *e = f->cbs;
    f->cbs = e->next;
    e->next = NULL;
    e->f = f;
    f->refs++;
    if (c) {
      if (c->cbq_tail) c->cbq_tail->next = e;
      else c->cbq_head = e;
      c->cbq_tail = e;
    }
  }
  if (c) c->wake_waiters = true;
}

static void set_error(dt_future *f, int code, const char *msg) {
  free(f->err_msg);
  f->err_msg = dt__xstrdup(msg);
  f->err_code = code;
}

/* ---------------------------------------------------------------- fetching */

/* refetch: the worker we were sent to could not give f's result (it died,
 * hangs up, or no longer has it).  Ask the scheduler where it is now: it
 * answers KEY_IN_MEMORY when it holds it, after recomputing it if it was
 * lost.  Bounded: after 10 tries the future errs with DT_ELOST.  (I/O
 * thread, locked.) */
static void refetch(dt_future *f, const char *addr, const char *why) {
  dt_client *c = f->client;
  if (f->value) return;
  if (f->worker && addr && strcmp(f->worker, addr) != 0) return; /* already sent elsewhere */
  f->fetching = false;
  if (c) c->wake_waiters = true;
  if (c && c->sched && c->state == CS_READY && ++f->refetches <= 10) {
    DT_INFO("result of '%s' not fetched from %s (%s): asking the scheduler again", f->key,
            addr ? addr : "?", why);
    free(f->worker);
    f->worker = NULL;
    send_key(c, DT_OP_WHO_HAS, f->key, f->klen);
    return;
  }
  char msg[512];
  snprintf(msg, sizeof(msg), "could not fetch the result of '%s' from worker %s: %s", f->key,
           addr ? addr : "?", why);
  set_error(f, DT_ELOST, msg);
  f->status = DT_ERROR;
}

/* fail_fetch: no reply to a fetch request (locked) */
static void fail_fetch(fetch_req *fr, const char *addr, const char *why) {
  for (size_t i = 0; i < fr->futs.len; i++) {
    dt_future *f = fr->futs.v[i];
    refetch(f, addr, why);
    dt__future_unref_locked(f);
  }
  dt__vec_free(&fr->futs);
  free(fr);
}

static int on_worker_msg(dt_conn *conn, int op, uint32_t nf, dt_rd *r) {
  wconn *wc = conn->data;
  dt_msg msg;
  if (op != DT_OP_DATA || dt__msg_read(r, op, nf, &msg) != 0) {
    DT_WARN("malformed message from worker %s: %s", wc->addr,
            op != DT_OP_DATA ? dt__op_name(op) : dt__msg_error());
    return DT_EPROTO; /* closed: on_worker_close fails the fetches in flight */
  }
  const dt_msg_DATA *m = &msg.DATA;
  fetch_req *fr = NULL;
  for (size_t i = 0; i < wc->reqs.len && !fr; i++)
    if (((fetch_req *)wc->reqs.v[i])->req == m->req) fr = wc->reqs.v[i];
  if (!fr) return 0;
  dt__vec_remove(&wc->reqs, fr);
  dt_list items = m->items;
  dt_rec_data it;
  while (dt__next_data(&items, &it)) {
    const char *key = it.key.p;
    uint32_t klen = it.key.len;
    bool found = it.found && !it.shm.p; /* clients never ask for shared memory */
    for (size_t k = 0; k < fr->futs.len; k++) {
      dt_future *f = fr->futs.v[k];
      if (f->klen != klen || memcmp(f->key, key, klen) != 0 || f->value) continue;
      dt_value *v = NULL;
      int rc = found ? dt__pref_decode(&it.value, &v) : DT_ENOTFOUND;
      if (rc == 0) {
        f->value = v;
      } else if (!found) {
        refetch(f, wc->addr, "not held there");
      } else {
        char msg[512];
        snprintf(msg, sizeof(msg), "result of '%s' could not be decoded (from worker %s)", f->key,
                 wc->addr);
        set_error(f, rc, msg);
        f->status = DT_ERROR;
      }
    }
  }
  for (size_t k = 0; k < fr->futs.len; k++) {
    dt_future *f = fr->futs.v[k];
    if (f->value || !f->worker || strcmp(f->worker, wc->addr) == 0) f->fetching = false;
    if (f->client) f->client->wake_waiters = true;
    dt__future_unref_locked(f);
  }
  dt__vec_free(&fr->futs);
  free(fr);
  return 0;
}

static void on_worker_close(dt_conn *conn) {
  wconn *wc = conn->data;
  /* forget it, so that the next fetch from that worker connects anew */
  dt_smap *m = &wc->client->wconns;
  if (dt__smap_get(m, wc->addr, (uint32_t)strlen(wc->addr)) == wc)
    dt__smap_del(m, wc->addr, (uint32_t)strlen(wc->addr));
  for (size_t i = 0; i < wc->reqs.len; i++) {
    fail_fetch(wc->reqs.v[i], wc->addr, "connection lost");
  }
  dt__vec_free(&wc->reqs);
  free(wc->addr);
  free(wc);
}

static const dt_conn_cbs worker_cbs = {on_worker_msg, NULL, on_worker_close};

/* I/O thread: send GET_DATA for every queued future, one message per worker
 * (up to 4096 keys each); one pass, grouped with a hash map */
static void process_fetchq(dt_client *c) {
  dt_vec q = c->fetchq;
  c->fetchq = (dt_vec){0};
  dt_smap groups; /* worker address -> the request being filled */
  dt__smap_init(&groups);
  dt_vec reqs = {0};
  for (size_t i = 0; i < q.len; i++) {
    dt_future *f = q.v[i];
    if (!f->fetching || !f->worker) {
      f->fetching = false;
      dt__future_unref_locked(f);
      continue;
    }
    size_t al = strlen(f->worker);
    fetch_req *fr = dt__smap_get(&groups, f->worker, al);
    if (!fr || fr->futs.len >= 4096) {
      fr = dt__xcalloc(1, sizeof(*fr));
      fr->req = ++c->next_req;
      dt__smap_put(&groups, f->worker, al, fr); /* key borrowed from f, held by fr */
      dt__vec_push(&reqs, fr);
    }
    dt__vec_push(&fr->futs, f); /* the hold on f moves into the request */
  }
  dt__smap_destroy(&groups);
  dt__vec_free(&q);
  for (size_t i = 0; i < reqs.len; i++) {
    fetch_req *fr = reqs.v[i];
    const char *addr = ((dt_future *)fr->futs.v[0])->worker;
    wconn *wc = dt__smap_get(&c->wconns, addr, (uint32_t)strlen(addr));
    if (!wc) {
      wc = dt__xcalloc(1, sizeof(*wc));
      wc->client = c;
      wc->addr = dt__xstrdup(addr);
      if (dt__conn_connect(&c->net, wc->addr, &worker_cbs, wc, &wc->conn) != 0) {
        char why[300];
        snprintf(why, sizeof(why), "%s", dt_last_error());
        fail_fetch(fr, wc->addr, why);
        free(wc->addr);
        free(wc);
        continue;
      }
      dt__smap_put(&c->wconns, wc->addr, (uint32_t)strlen(wc->addr), wc);
    }
    dt__vec_push(&wc->reqs, fr);
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(wc->conn), DT_OP_GET_DATA);
    dt__e_uint(&e, fr->req);
    dt__e_list(&e, (uint32_t)fr->futs.len);
    for (size_t k = 0; k < fr->futs.len; k++) {
      dt_future *g = fr->futs.v[k];
      dt__e_str(&e, g->key, g->klen);
    }
    dt__e_nil(&e); /* no boot id: results come over TCP */
    dt__e_end(&e);
  }
  dt__vec_free(&reqs);
}

/* queue a fetch of f's value (locked); takes a hold on f */
static void want_fetch(dt_client *c, dt_future *f) {
  if (f->value || f->fetching || f->status != DT_FINISHED || !f->worker) return;
  f->fetching = true;
  f->refs++;
  dt__vec_push(&c->fetchq, f);
  dt__client_wake(c);
}

/* ---------------------------------------------------------------- scheduler */

static void wconn_remove(dt_client *c, wconn *wc) {
  dt__smap_del(&c->wconns, wc->addr, (uint32_t)strlen(wc->addr));
}

static int on_welcome(dt_client *c, const dt_msg *m) {
  c->id = m->WELCOME.id;
  c->state = CS_READY;
  c->wake_waiters = true;
  return 0;
}

static int on_key_in_memory(dt_client *c, const dt_msg *msg) {
  const dt_msg_KEY_IN_MEMORY *m = &msg->KEY_IN_MEMORY;
  dt_future *f = dt__smap_get(&c->futs, m->key.p, m->key.len);
  if (!f) return 0;
  if (f->fetching && (!f->worker || !dt__str_eq(m->worker, f->worker)))
    f->fetching = false; /* moved (its holder died): fetch from the new one */
  free(f->worker);
  f->worker = dt__xstrndup(m->worker.p, m->worker.len);
  if (m->inline_.p && !f->value) { /* the small result we asked for came along */
    dt_payload p = {(char *)m->inline_.p, m->inline_.len, NULL, 0};
    if (dt__payload_decode(&p, &f->value) != 0) f->value = NULL; /* then fetch it */
  }
  if (f->status == DT_ERROR && f->err_code == DT_ELOST) f->status = DT_PENDING;
  dt__future_finish(f, DT_FINISHED);
  if (f->want_value) want_fetch(c, f);
  return 0;
}

static int on_key_erred(dt_client *c, const dt_msg *msg) {
  const dt_msg_KEY_ERRED *m = &msg->KEY_ERRED;
  dt_future *f = dt__smap_get(&c->futs, m->key.p, m->key.len);
  if (!f) return 0;
  int klen = (int)m->key.len, ol = (int)m->origin.len, fl = (int)m->function.len,
      wl = (int)m->worker.len, ml = (int)m->message.len;
  size_t cap = 512 + (size_t)ol + (size_t)fl + (size_t)wl + (size_t)ml + (size_t)klen;
  char *text = dt__xmalloc(cap);
  if (ol == klen && memcmp(m->origin.p, m->key.p, m->key.len) == 0)
    snprintf(text, cap, "task '%.*s' (function %.*s) failed on worker %.*s: %.*s", klen, m->key.p,
             fl, m->function.p, wl ? wl : 1, wl ? m->worker.p : "?", ml, m->message.p);
  else
    snprintf(text, cap,
             "task '%.*s' failed because its dependency '%.*s' (function %.*s) failed on "
             "worker %.*s: %.*s",
             klen, m->key.p, ol, m->origin.p, fl, m->function.p, wl ? wl : 1, wl ? m->worker.p : "?",
             ml, m->message.p);
  int64_t code = m->code;
  if (code >= 0 || code < -100) code = DT_ETASK;
  free(f->err_msg);
  f->err_msg = text;
  f->err_code = (int)code;
  dt__future_finish(f, DT_ERROR);
  return 0;
}

static int on_key_cancelled(dt_client *c, const dt_msg *msg) {
  /* ours, or downstream of one we cancelled */
  const dt_msg_KEY_CANCELLED *m = &msg->KEY_CANCELLED;
  dt_future *f = dt__smap_get(&c->futs, m->key.p, m->key.len);
  if (!f || f->status != DT_PENDING) return 0;
  size_t cap = 64 + m->key.len + m->reason.len;
  char *text = dt__xmalloc(cap);
  snprintf(text, cap, "task '%.*s' %.*s", (int)m->key.len, m->key.p, (int)m->reason.len,
           m->reason.p);
  free(f->err_msg);
  f->err_msg = text;
  f->err_code = DT_ECANCELLED;
  dt__future_finish(f, DT_CANCELLED);
  return 0;
}

static int on_info_reply(dt_client *c, const dt_msg *msg) {
  const dt_msg_INFO_REPLY *m = &msg->INFO_REPLY;
  info_req *ir = NULL;
  for (size_t i = 0; i < c->infos.len && !ir; i++)
    if (((info_req *)c->infos.v[i])->req == m->req) ir = c->infos.v[i];
  dt_cluster_info tmp;
  dt_cluster_info *out = ir ? &ir->info : &tmp;
  memset(out, 0, sizeof(*out));
  dt_list counts = m->counts;
  dt_sv k;
  int64_t v;
  while (dt__next_int(&counts, &k, &v)) {
#define F(name, field) if (dt__str_eq(k, name)) out->field = v;
    F("workers", n_workers) F("clients", n_clients) F("tasks", n_tasks) F("waiting", n_waiting)
    F("no-worker", n_no_worker) F("processing", n_processing) F("memory", n_memory)
    F("erred", n_erred) F("released", n_released) F("queued", n_queued)
    F("completed", n_completed)
#undef F
    if (dt__str_eq(k, "heartbeat_age_us")) out->heartbeat_age_s = (double)v / 1e6;
  }
  if (ir && ir->detail) {
    uint32_t nw = m->workers.n;
    ir->workers = dt__xcalloc(nw ? nw : 1, sizeof(dt_worker_info));
    dt_list rows = m->workers;
    dt_rec_wrow row;
    for (uint32_t i = 0; dt__next_wrow(&rows, &row); i++) {
      dt_worker_info *wi = &ir->workers[i];
      snprintf(wi->name, sizeof(wi->name), "%.*s", (int)row.name.len, row.name.p);
      snprintf(wi->address, sizeof(wi->address), "%.*s", (int)row.address.len, row.address.p);
      wi->nthreads = (int)row.nthreads;
      wi->pid = (int)row.pid;
      wi->processing = (int64_t)row.processing;
      wi->n_keys = (int64_t)row.nkeys;
      wi->nbytes = row.nbytes;
      wi->last_seen_s = (double)row.age_ms / 1e3;
      wi->spilled = row.spilled;
      wi->paused = row.paused;
      wi->rss = row.rss;
      wi->memory = row.memory;
      wi->peak_memory = row.peak_memory;
      ir->nworkers = i + 1;
    }
  }
  if (ir) ir->done = true;
  c->wake_waiters = true;
  return 0;
}

static int on_retire_done(dt_client *c, const dt_msg *msg) {
  const dt_msg_RETIRE_DONE *m = &msg->RETIRE_DONE;
  for (size_t i = 0; i < c->retires.len; i++) {
    scatter_req *sr = c->retires.v[i];
    if (sr->req != m->req) continue;
    sr->done = true;
    sr->count = m->retired;
    if (m->error.p) sr->error = dt__str_dup(m->error, 4096);
  }
  c->wake_waiters = true;
  return 0;
}

static int on_scatter_done(dt_client *c, const dt_msg *msg) {
  const dt_msg_SCATTER_DONE *m = &msg->SCATTER_DONE;
  for (size_t i = 0; i < c->scatters.len; i++) {
    scatter_req *sr = c->scatters.v[i];
    if (sr->req != m->req) continue;
    sr->done = true;
    if (m->error.p) sr->error = dt__str_dup(m->error, 4096);
  }
  c->wake_waiters = true;
  return 0;
}

/* the messages a client takes from the scheduler, one handler each */
typedef int (*sched_handler)(dt_client *, const dt_msg *);
static const sched_handler sched_handlers[DT_OP_COUNT] = {
    [DT_OP_WELCOME] = on_welcome,
    [DT_OP_KEY_IN_MEMORY] = on_key_in_memory,
    [DT_OP_KEY_ERRED] = on_key_erred,
    [DT_OP_KEY_CANCELLED] = on_key_cancelled,
    [DT_OP_INFO_REPLY] = on_info_reply,
    [DT_OP_RETIRE_DONE] = on_retire_done,
    [DT_OP_SCATTER_DONE] = on_scatter_done,
};

static int on_sched_msg(dt_conn *conn, int op, uint32_t nf, dt_rd *r) {
  dt_client *c = conn->data;
  if (op == DT_OP_CLOSE) {
    dt__conn_close(conn, true);
    return 0;
  }
  if (op <= 0 || op >= DT_OP_COUNT || !sched_handlers[op]) {
    DT_WARN("unexpected %s message from the scheduler", dt__op_name(op));
    return DT_EPROTO;
  }
  dt_msg m;
  if (dt__msg_read(r, op, nf, &m) != 0) {
    DT_WARN("malformed message from the scheduler: %s", dt__msg_error());
    return DT_EPROTO;
  }
  return sched_handlers[op](c, &m);
}

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
  if (c->state == CS_READY) {
    c->state = CS_LOST;
    DT_WARN("lost connection to the scheduler at %s", c->addr);
    /* every pending future fails: no one would ever finish it */
    for (size_t i = 0; i < c->futs.cap; i++) {
      if (!c->futs.slots[i].key) continue;
      dt_future *f = c->futs.slots[i].val;
      if (f->status != DT_PENDING) continue;
      char msg[512];
      snprintf(msg, sizeof(msg), "lost connection to the scheduler at %s while '%s' was pending",
               c->addr, f->key);
      set_error(f, DT_ECONNLOST, msg);
      dt__future_finish(f, DT_LOST);
    }
  }
  c->wake_waiters = true;
}

static const dt_conn_cbs sched_cbs = {on_sched_msg, on_sched_connect, on_sched_close};

static void close_walk(uv_handle_t *h, void *arg) {
  dt_client *c = arg;
  if (uv_is_closing(h)) return;
  if (h->type == UV_TCP) {
    dt_conn *conn = h->data;
    if (conn->cbs == &worker_cbs) wconn_remove(c, conn->data);
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
    process_fetchq(c);
  }
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
static const dt_conn_cbs sched_cbs_connecting = {on_sched_msg, on_sched_connect,
                                                 on_sched_close_wrap};

static void start_connect(dt_client *c) {
  if (dt__conn_connect(&c->net, c->addr, &sched_cbs_connecting, c, &c->sched) != 0) {
    c->sched = NULL;
    c->conn_err = UV_EINVAL;
    c->wake_waiters = true;
  }
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
  dt__vec_free(&c->infos);
  dt__vec_free(&c->scatters);
  dt__vec_free(&c->retires);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cond);
  free(c);
}

static void stop_io(dt_client *c) {
  pthread_mutex_lock(&c->lock);
  c->stop = true;
  pthread_mutex_unlock(&c->lock);
  uv_async_send(&c->wake);
  pthread_join(c->io, NULL);
  uv_loop_close(&c->loop);
}

int dt_client_connect(const dt_client_opts *opts, dt_client **out) {
  dt__err_clear();
  if (!out) return dt__err(DT_EINVAL, "dt_client_connect: out is NULL");
  *out = NULL;
  dt_client *c = dt__xcalloc(1, sizeof(*c));
  int rc = resolve_address(opts, c->addr, sizeof(c->addr));
  if (rc) {
    free(c);
    return rc;
  }
  snprintf(c->name, sizeof(c->name), "%s", opts && opts->name ? opts->name : "client");
  int timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
  dt_sec_args sa = {opts ? opts->auth_file : NULL, opts ? opts->tls_ca_file : NULL,
                    opts ? opts->tls_cert : NULL, opts ? opts->tls_key : NULL};
  if (!sa.auth_file && dt__sec_lookup(c->addr, &c->sec)) {
    /* a LocalCluster of this process: its secret (and TLS), from net/'s registry */
  } else if (dt__sec_from_args(&c->sec, &sa) != 0) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    free(c);
    return dt__err(DT_EINVAL, "dt_client_connect: %s", msg);
  }
  if (sa.auth_file == NULL && c->sec.auth && (sa.tls_cert || sa.tls_key || sa.tls_ca) &&
      dt__tls_setup(&c->sec, sa.tls_ca, sa.tls_cert, sa.tls_key) != 0) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    free(c);
    return dt__err(DT_EINVAL, "dt_client_connect: %s", msg);
  }
  pthread_mutex_init(&c->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cond, &ca);
  pthread_condattr_destroy(&ca);
  dt__smap_init(&c->futs);
  dt__smap_init(&c->wconns);
  uv_loop_init(&c->loop);
  dt__net_init(&c->net, &c->loop);
  c->net.sec = &c->sec;
  c->netlock = (struct dt_net_lock){netlock_acquire, netlock_release, c};
  c->net.lock = &c->netlock;
  uv_async_init(&c->loop, &c->wake, on_wake);
  c->wake.data = c;
  uv_timer_init(&c->loop, &c->retry);
  c->retry.data = c;
  c->state = CS_CONNECTING;
  if (pthread_create(&c->io, NULL, io_main, c) != 0) {
    uv_loop_close(&c->loop);
    client_free(c);
    return dt__err(DT_ENOMEM, "cannot start the client's I/O thread");
  }
  c->io_started = true;
  struct timespec deadline;
  dt__deadline(&deadline, timeout);
  pthread_mutex_lock(&c->lock);
  while (c->state == CS_CONNECTING && c->conn_err != UV_EINVAL && c->conn_err != UV_EACCES &&
         c->conn_err != UV_EPROTO)
    if (!wait_until(c, &deadline)) break;
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
      set_error(f, DT_ECLOSED, msg);
      dt__future_finish(f, DT_CANCELLED);
    }
    f->in_map = false;
    f->client = NULL;
  }
  for (size_t i = 0; i < c->fetchq.len; i++) {
    dt_future *f = c->fetchq.v[i];
    f->fetching = false;
    dt__future_unref_locked(f);
  }
  c->fetchq.len = 0;
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
  client_free(c);
}

/* ---------------------------------------------------------------- submit */

static void hash_bytes(uint64_t *h1, uint64_t *h2, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    *h1 = (*h1 ^ b[i]) * 1099511628211ull;
    *h2 = (*h2 ^ b[i]) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
  }
}

static int check_futures(dt_client *c, const dt_value *v) {
  if (!v) return 0;
  switch (v->type) {
  case DT_FUTURE:
    if (v->u.fut.fut && v->u.fut.fut->client != c) {
      if (!v->u.fut.fut->client)
        return dt__err(DT_ECLOSED, "future '%s' belongs to a closed client", v->u.fut.key);
    }
    return 0;
  case DT_LIST:
    for (size_t i = 0; i < v->u.list.len; i++) {
      int rc = check_futures(c, v->u.list.items[i]);
      if (rc) return rc;
    }
    return 0;
  case DT_MAP:
    for (size_t i = 0; i < v->u.map.len; i++) {
      int rc = check_futures(c, v->u.map.vals[i]);
      if (rc) return rc;
    }
    return 0;
  default: return 0;
  }
}

/* make_key: "func-" and 32 hex digits, without printf */
static char *make_key(const char *func, uint64_t h1, uint64_t h2) {
  static const char hex[] = "0123456789abcdef";
  size_t fl = strlen(func);
  char *k = dt__xmalloc(fl + 34);
  memcpy(k, func, fl);
  k[fl] = '-';
  char *p = k + fl + 1;
  for (int i = 15; i >= 0; i--) *p++ = hex[(h1 >> (4 * i)) & 15];
  for (int i = 15; i >= 0; i--) *p++ = hex[(h2 >> (4 * i)) & 15];
  *p = '\0';
  return k;
}

/* splitmix64: a unique-looking 64-bit number per counter value */
static uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

int dt__taskdef_make(dt_client *c, const char *func, dt_value *args, dt_value *kwargs,
                     const dt_submit_opts *opts, dt__taskdef *out) {
  memset(out, 0, sizeof(*out));
  int rc = 0;
  if (!func || !*func || strlen(func) > 256)
    rc = dt__err(DT_EINVAL, "task function name is empty or longer than 256 bytes");
  else if (args && args->type != DT_LIST)
    rc = dt__err(DT_EINVAL, "args of %s must be a list, not %s", func, dt_type_name(args->type));
  else if (kwargs && kwargs->type != DT_MAP)
    rc = dt__err(DT_EINVAL, "kwargs of %s must be a map, not %s", func,
                 dt_type_name(kwargs->type));
  else if (opts && opts->key && (!*opts->key || strlen(opts->key) > DT_MAX_KEY))
    rc = dt__err(DT_EINVAL, "key must be 1 to %d bytes", DT_MAX_KEY);
  else if (opts && opts->retries < 0)
    rc = dt__err(DT_EINVAL, "retries must be >= 0");
  else if (opts && opts->resources)
    rc = dt__resources_parse(opts->resources, &out->res_names, &out->res_amounts, &out->nres);
  if (rc) {
    dt_value_free(args);
    dt_value_free(kwargs);
    return rc;
  }
  dt_value *call = dt_list_of(2, args ? args : dt_list_new(), kwargs ? kwargs : dt_map_new());
  if (!call) {
    dt__taskdef_clear(out);
    return dt__err(DT_ENOMEM, "out of memory");
  }
  if (c && (rc = check_futures(c, call)) != 0) {
    dt_value_free(call);
    dt__taskdef_clear(out);
    return rc;
  }
  dt_vec deps = {0};
  rc = dt__payload_encode(call, &out->spec, &deps);
  if (rc) {
    dt__vec_free(&deps);
    dt_value_free(call);
    dt__taskdef_clear(out);
    return rc;
  }
  for (size_t i = 0; i < deps.len; i++) dt__vec_push(&out->deps, dt__xstrdup(deps.v[i]));
  dt__vec_free(&deps);
  dt_value_free(call);
  out->func = dt__xstrdup(func);
  if (opts) out->opts = *opts;
  out->opts.key = NULL;
  out->opts.workers = NULL; /* copied below */
  if (opts && opts->key) {
    out->key = dt__xstrdup(opts->key);
  } else if (opts && opts->pure == DT_NO) {
    /* a fresh key: a per-process random seed (taken once) and a counter */
    static _Atomic uint64_t seed, counter;
    if (!seed) {
      uint64_t s = mix64(dt__now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&s);
      uint64_t zero = 0;
      atomic_compare_exchange_strong(&seed, &zero, s | 1);
    }
    uint64_t n = ++counter;
    out->key = make_key(func, mix64(seed ^ n), mix64(seed + n * 0x9E3779B97F4A7C15ull));
  } else {
    uint64_t h1 = 14695981039346656037ull, h2 = 0x84222325cbf29ce4ull;
    hash_bytes(&h1, &h2, func, strlen(func) + 1);
    hash_bytes(&h1, &h2, out->spec.body, out->spec.len);
    for (uint32_t i = 0; i < out->spec.nframes; i++)
      hash_bytes(&h1, &h2, out->spec.frames[i].p, out->spec.frames[i].len);
    out->key = make_key(func, h1, h2);
  }
  if (opts && opts->n_workers) {
    char **ws = dt__xcalloc(opts->n_workers, sizeof(char *));
    for (size_t i = 0; i < opts->n_workers; i++) ws[i] = dt__xstrdup(opts->workers[i] ? opts->workers[i] : "");
    out->opts.workers = (const char *const *)ws;
  }
  out->opts.resources = NULL; /* parsed into res_names/res_amounts above */
  return 0;
}

void dt__taskdef_clear(dt__taskdef *t) {
  free(t->key);
  free(t->func);
  dt__payload_clear(&t->spec);
  for (size_t i = 0; i < t->deps.len; i++) free(t->deps.v[i]);
  dt__vec_free(&t->deps);
  for (size_t i = 0; i < t->opts.n_workers; i++) free((char *)t->opts.workers[i]);
  free((void *)t->opts.workers);
  dt__resources_free(t->res_names, t->res_amounts, t->nres);
  memset(t, 0, sizeof(*t));
}

void dt__client_send_graph(dt_client *c, dt__taskdef *tasks, size_t n, const char **wanted,
                           size_t nwanted) {
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_UPDATE_GRAPH);
  dt__e_list(&e, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    dt__taskdef *t = &tasks[i];
    dt__e_rec(&e);
    dt__e_cstr(&e, t->key);
    dt__e_cstr(&e, t->func);
    dt__e_payload(&e, &t->spec);
    dt__e_list(&e, (uint32_t)t->deps.len);
    for (size_t k = 0; k < t->deps.len; k++) dt__e_cstr(&e, t->deps.v[k]);
    dt__e_int(&e, t->opts.priority);
    dt__e_int(&e, t->opts.retries);
    dt__e_list(&e, (uint32_t)t->opts.n_workers);
    for (size_t k = 0; k < t->opts.n_workers; k++) dt__e_cstr(&e, t->opts.workers[k]);
    dt__e_bool(&e, t->opts.allow_other_workers);
    dt__e_map(&e, t->nres);
    for (uint32_t k = 0; k < t->nres; k++) {
      dt__e_cstr(&e, t->res_names[k]);
      dt__e_double(&e, t->res_amounts[k]);
    }
  }
  dt__e_list(&e, (uint32_t)nwanted);
  for (size_t i = 0; i < nwanted; i++) dt__e_cstr(&e, wanted[i]);
  dt__e_end(&e);
  dt__client_wake(c);
}

/* submit n prepared tasks in one message; futures for each */
static int submit_defs(dt_client *c, dt__taskdef *defs, size_t n, dt_future **out) {
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  if (rc) {
    pthread_mutex_unlock(&c->lock);
    return rc;
  }
  const char **wanted = dt__xmalloc((n ? n : 1) * sizeof(char *));
  size_t nw = 0, nt = 0;
  dt__taskdef *send = dt__xmalloc((n ? n : 1) * sizeof(*send));
  for (size_t i = 0; i < n; i++) {
    bool created;
    out[i] = dt__future_get(c, defs[i].key, (uint32_t)strlen(defs[i].key), &created);
    if (created) {
      wanted[nw++] = defs[i].key;
      send[nt++] = defs[i];
    }
  }
  if (nt) dt__client_send_graph(c, send, nt, wanted, nw);
  pthread_mutex_unlock(&c->lock);
  free(send);
  free(wanted);
  return 0;
}

int dt_client_submit(dt_client *c, const char *func, dt_value *args, dt_value *kwargs,
                     const dt_submit_opts *opts, dt_future **out) {
  dt__err_clear();
  if (!c || !out) {
    dt_value_free(args);
    dt_value_free(kwargs);
    return dt__err(DT_EINVAL, "dt_client_submit: client or out is NULL");
  }
  *out = NULL;
  dt__taskdef d;
  int rc = dt__taskdef_make(c, func, args, kwargs, opts, &d);
  if (rc) return rc;
  rc = submit_defs(c, &d, 1, out);
  dt__taskdef_clear(&d);
  return rc;
}

int dt_client_map(dt_client *c, const char *func, dt_value *const *arg_lists, size_t n,
                  const dt_submit_opts *opts, dt_future **out) {
  dt__err_clear();
  int rc = 0;
  if (!c || !out || (n && !arg_lists)) rc = dt__err(DT_EINVAL, "dt_client_map: NULL argument");
  else if (opts && opts->key) rc = dt__err(DT_EINVAL, "dt_client_map: opts.key must be NULL");
  if (rc) {
    for (size_t i = 0; arg_lists && i < n; i++) dt_value_free(arg_lists[i]);
    return rc;
  }
  dt__taskdef *defs = dt__xcalloc(n ? n : 1, sizeof(*defs));
  size_t made = 0;
  for (; made < n; made++) {
    rc = dt__taskdef_make(c, func, arg_lists[made], NULL, opts, &defs[made]);
    if (rc) break;
  }
  if (rc) {
    for (size_t i = made + 1; i < n; i++) dt_value_free(arg_lists[i]);
  } else {
    rc = submit_defs(c, defs, n, out);
  }
  for (size_t i = 0; i < made; i++) dt__taskdef_clear(&defs[i]);
  free(defs);
  if (rc)
    for (size_t i = 0; i < n; i++) out[i] = NULL;
  return rc;
}

/* ---------------------------------------------------------------- gather */

/* ask_results: tell the scheduler we wait for these pending results, so that
 * small ones come inline (one message; locked) */
static void ask_results(dt_client *c, dt_future *const *fs, size_t n) {
  uint32_t k = 0;
  for (size_t i = 0; i < n; i++) k += fs[i]->status == DT_PENDING && !fs[i]->asked;
  if (!k || !c->sched || c->state != CS_READY) return;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_WANT_RESULT);
  dt__e_list(&e, k);
  for (size_t i = 0; i < n; i++)
    if (fs[i]->status == DT_PENDING && !fs[i]->asked) {
      fs[i]->asked = true;
      dt__e_str(&e, fs[i]->key, fs[i]->klen);
    }
  dt__e_end(&e);
  dt__client_wake(c);
}

/* wait for f's value (locked); 0 or an error with message */
static int await_value(dt_client *c, dt_future *f, const struct timespec *deadline) {
  f->want_value = true;
  ask_results(c, &f, 1);
  for (;;) {
    if (f->status == DT_ERROR || f->status == DT_LOST || f->status == DT_CANCELLED) {
      int code = f->err_code ? f->err_code : (f->status == DT_CANCELLED ? DT_ECANCELLED : DT_ETASK);
      return dt__err(code, "%s", f->err_msg ? f->err_msg : "future was cancelled");
    }
    if (f->value) return 0;
    if (f->status == DT_FINISHED) want_fetch(c, f);
    if (c->state == CS_CLOSED) return dt__err(DT_ECLOSED, "client is closed");
    if (!wait_until(c, deadline))
      return dt__err(DT_ETIMEDOUT, "timed out waiting for the result of '%s'", f->key);
  }
}

int dt__future_result_locked(dt_client *c, dt_future *f, int timeout_ms, dt_value **out) {
  struct timespec dl;
  if (timeout_ms >= 0) dt__deadline(&dl, timeout_ms);
  int rc = await_value(c, f, timeout_ms >= 0 ? &dl : NULL);
  if (rc == 0) *out = dt_value_ref(f->value);
  return rc;
}

int dt_client_gather(dt_client *c, dt_future *const *fs, size_t n, int timeout_ms,
                     dt_value **out) {
  dt__err_clear();
  if (!c || (n && (!fs || !out))) return dt__err(DT_EINVAL, "dt_client_gather: NULL argument");
  for (size_t i = 0; i < n; i++) out[i] = NULL;
  struct timespec dl;
  if (timeout_ms >= 0) dt__deadline(&dl, timeout_ms);
  pthread_mutex_lock(&c->lock);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    if (!fs[i]) { rc = dt__err(DT_EINVAL, "dt_client_gather: future %zu is NULL", i); break; }
    if (fs[i]->client != c) {
      rc = fs[i]->client ? dt__err(DT_EINVAL, "future '%s' belongs to another client", fs[i]->key)
                         : dt__err(DT_ECLOSED, "future '%s' belongs to a closed client", fs[i]->key);
      break;
    }
    fs[i]->want_value = true;
    want_fetch(c, fs[i]);
  }
  if (rc == 0) ask_results(c, fs, n);
  for (size_t i = 0; i < n && rc == 0; i++) rc = await_value(c, fs[i], timeout_ms >= 0 ? &dl : NULL);
  if (rc == 0)
    for (size_t i = 0; i < n; i++) out[i] = dt_value_ref(fs[i]->value);
  dt__client_unlock(c);
  return rc;
}

/* ---------------------------------------------------------------- scatter */

int dt_client_scatter(dt_client *c, dt_value *const *values, size_t n, const dt_scatter_opts *opts,
                      dt_future **out) {
  dt__err_clear();
  if (!c || !out || (n && !values)) {
    for (size_t i = 0; values && i < n; i++) dt_value_free(values[i]);
    return dt__err(DT_EINVAL, "dt_client_scatter: NULL argument");
  }
  for (size_t i = 0; i < n; i++) out[i] = NULL;
  dt_payload *pls = dt__xcalloc(n ? n : 1, sizeof(*pls));
  char **keys = dt__xcalloc(n ? n : 1, sizeof(char *));
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    if (!values[i]) { rc = dt__err(DT_EINVAL, "scatter value %zu is NULL", i); continue; }
    if (rc == 0 && (rc = dt__payload_encode(values[i], &pls[i], NULL)) == 0) {
      uint64_t h1 = 14695981039346656037ull, h2 = 0x84222325cbf29ce4ull;
      hash_bytes(&h1, &h2, pls[i].body, pls[i].len);
      for (uint32_t k = 0; k < pls[i].nframes; k++)
        hash_bytes(&h1, &h2, pls[i].frames[k].p, pls[i].frames[k].len);
      char key[64];
      snprintf(key, sizeof(key), "scatter-%016" PRIx64 "%016" PRIx64, h1, h2);
      keys[i] = dt__xstrdup(key);
    }
    dt_value_free(values[i]);
  }
  scatter_req *sr = NULL;
  if (rc == 0) {
    pthread_mutex_lock(&c->lock);
    rc = dt__client_usable(c);
    if (rc == 0) {
      sr = dt__xcalloc(1, sizeof(*sr));
      sr->req = ++c->next_req;
      dt__vec_push(&c->scatters, sr);
      for (size_t i = 0; i < n; i++) out[i] = dt__future_get(c, keys[i], (uint32_t)strlen(keys[i]), NULL);
      dt_enc e;
      dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_SCATTER);
      dt__e_uint(&e, sr->req);
      dt__e_list(&e, (uint32_t)n);
      for (size_t i = 0; i < n; i++) {
        dt__e_rec(&e);
        dt__e_cstr(&e, keys[i]);
        dt__e_payload(&e, &pls[i]);
      }
      size_t nw = opts ? opts->n_workers : 0;
      dt__e_list(&e, (uint32_t)nw);
      for (size_t i = 0; i < nw; i++) dt__e_cstr(&e, opts->workers[i]);
      dt__e_bool(&e, opts && opts->broadcast);
      dt__e_end(&e);
      dt__client_wake(c);
      while (!sr->done && c->state == CS_READY) pthread_cond_wait(&c->cond, &c->lock);
      if (!sr->done) rc = dt__client_usable(c);
      else if (sr->error) rc = dt__err(DT_ENOTFOUND, "scatter failed: %s", sr->error);
      dt__vec_remove(&c->scatters, sr);
      free(sr->error);
      free(sr);
      if (rc)
        for (size_t i = 0; i < n; i++) {
          dt__future_unref_locked(out[i]);
          out[i] = NULL;
        }
    }
    dt__client_unlock(c);
  }
  for (size_t i = 0; i < n; i++) {
    dt__payload_clear(&pls[i]);
    free(keys[i]);
  }
  free(pls);
  free(keys);
  return rc;
}

/* ---------------------------------------------------------------- info */

static int cluster_info(dt_client *c, int timeout_ms, dt_cluster_info *out, dt_worker_info **wout,
                        size_t *nout);

int dt_client_cluster_info(dt_client *c, int timeout_ms, dt_cluster_info *out) {
  dt__err_clear();
  if (!c || !out) return dt__err(DT_EINVAL, "dt_client_cluster_info: NULL argument");
  return cluster_info(c, timeout_ms, out, NULL, NULL);
}

int dt_client_workers(dt_client *c, int timeout_ms, dt_worker_info **out, size_t *n) {
  dt__err_clear();
  if (!c || !out || !n) return dt__err(DT_EINVAL, "dt_client_workers: NULL argument");
  dt_cluster_info info;
  return cluster_info(c, timeout_ms, &info, out, n);
}

/* request_begin: a request-and-reply with the scheduler: sets the deadline,
 * takes the lock and checks the client can talk; 0 with the lock held */
static int request_begin(dt_client *c, int timeout_ms, struct timespec *dl) {
  dt__deadline(dl, timeout_ms >= 0 ? timeout_ms : 3600 * 1000);
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  if (rc) pthread_mutex_unlock(&c->lock);
  return rc;
}

/* request_wait: (locked) until *done, the connection goes, or the deadline */
static void request_wait(dt_client *c, const bool *done, const struct timespec *dl) {
  dt__client_wake(c);
  while (!*done && c->state == CS_READY)
    if (!wait_until(c, dl)) break;
}

static int cluster_info(dt_client *c, int timeout_ms, dt_cluster_info *out, dt_worker_info **wout,
                        size_t *nout) {
  struct timespec dl;
  int rc = request_begin(c, timeout_ms, &dl);
  if (rc) return rc;
  info_req *ir = dt__xcalloc(1, sizeof(*ir));
  ir->req = ++c->next_req;
  ir->detail = wout != NULL;
  dt__vec_push(&c->infos, ir);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_INFO_REQUEST);
  dt__e_uint(&e, ir->req);
  dt__e_bool(&e, ir->detail);
  dt__e_end(&e);
  request_wait(c, &ir->done, &dl);
  if (ir->done) {
    *out = ir->info;
    if (wout) {
      *wout = ir->workers;
      *nout = ir->nworkers;
      ir->workers = NULL;
    }
  } else if (c->state != CS_READY) rc = dt__client_usable(c);
  else rc = dt__err(DT_ETIMEDOUT, "no reply from the scheduler at %s within %d ms", c->addr, timeout_ms);
  dt__vec_remove(&c->infos, ir);
  free(ir->workers);
  free(ir);
  pthread_mutex_unlock(&c->lock);
  return rc;
}

int dt_client_retire_workers(dt_client *c, const char *const *names, size_t n, int timeout_ms,
                             int *retired) {
  dt__err_clear();
  if (retired) *retired = 0;
  if (!c || (n && !names)) return dt__err(DT_EINVAL, "dt_client_retire_workers: NULL argument");
  for (size_t i = 0; i < n; i++)
    if (!names[i] || !*names[i] || strlen(names[i]) > DT_MAX_KEY)
      return dt__err(DT_EINVAL, "dt_client_retire_workers: worker name %zu is empty or too long", i);
  struct timespec dl;
  int rc = request_begin(c, timeout_ms, &dl);
  if (rc) return rc;
  scatter_req *rr = dt__xcalloc(1, sizeof(*rr));
  rr->req = ++c->next_req;
  dt__vec_push(&c->retires, rr);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_RETIRE_WORKERS);
  dt__e_uint(&e, rr->req);
  dt__e_list(&e, (uint32_t)n);
  for (size_t i = 0; i < n; i++) dt__e_cstr(&e, names[i]);
  dt__e_end(&e);
  request_wait(c, &rr->done, &dl);
  if (rr->done) {
    if (retired) *retired = (int)rr->count;
    if (rr->error) rc = dt__err(DT_EINVAL, "retire workers: %s", rr->error);
  } else if (c->state != CS_READY) {
    rc = dt__client_usable(c);
  } else {
    rc = dt__err(DT_ETIMEDOUT, "workers not retired within %d ms", timeout_ms);
  }
  dt__vec_remove(&c->retires, rr);
  free(rr->error);
  free(rr);
  pthread_mutex_unlock(&c->lock);
  return rc;
}

int dt_client_wait_for_workers(dt_client *c, int n, int timeout_ms) {
  uint64_t end = dt__now_ns() + (uint64_t)(timeout_ms >= 0 ? timeout_ms : 3600000) * 1000000ull;
  for (;;) {
    dt_cluster_info info;
    int rc = dt_client_cluster_info(c, timeout_ms, &info);
    if (rc) return rc;
    if (info.n_workers >= n) return 0;
    if (dt__now_ns() >= end)
      return dt__err(DT_ETIMEDOUT, "only %d of %d workers connected within %d ms", info.n_workers,
                     n, timeout_ms);
    usleep(20000);
  }
}
