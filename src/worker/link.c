/*
 * link.c -- the worker's connection to the scheduler.  It connects, says
 * HELLO_WORKER (with the results it already holds, after a reconnect),
 * waits for WELCOME (heartbeat interval, time to live), then sends a
 * heartbeat on a timer and handles what the scheduler says: COMPUTE_TASK,
 * FREE_KEYS, PUT_DATA, GET_DATA, ACQUIRE, PING, CLOSE.  When the scheduler
 * goes (connection closed, or silent past its time to live) the worker
 * drops its queued tasks and reconnects with backoff, until
 * --death-timeout.  The messages the other files send the scheduler
 * (TASKS_FINISHED, TASK_ERRED, ACQUIRED, MISSING_DATA) are written here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker_int.h"

w_link dt__link;
#define L dt__link

static void connect_scheduler(void);

/* ---------------------------------------------------------------- sending */

/* sched_out: the scheduler's outbox, or NULL while we are not registered
 * (what would be said then is said by re-registering instead) */
static dt_wbuf *sched_out(void) { return L.sched && L.registered ? dt__conn_out(L.sched) : NULL; }

/* The tasks finished in one loop turn travel in one TASKS_FINISHED: the
 * first opens the message in the scheduler's outbox with a 5-byte record
 * count, the next ones append their records to it, and anything else
 * written to the scheduler (every writer goes through dt__conn_out) or the
 * outbox being sent closes it first (the connection's close_open: the count
 * is written in), so the order of what the scheduler hears is the order of
 * the events here.  A message holds at most DT_FINISHED_BATCH records and
 * about FIN_BYTES of them; past either the next finish opens another. */
#define FIN_BYTES (1u << 20)
static struct {
  size_t start, at; /* in the outbox: the message's first byte, its record count's */
  uint32_t n;       /* records so far */
} fin;

static void fin_close(dt_conn *c) {
  dt_wbuf *w = &c->out;
  if (fin.n && fin.at + 5 <= w->len) {
    uint8_t *p = (uint8_t *)w->buf + fin.at + 1; /* after 0xdd: big-endian uint32 */
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(fin.n >> (24 - 8 * i));
  }
  fin.n = 0;
}

/* a small result travels along, so that a client waiting for it needs no
 * second round trip to this worker */
void dt__link_finished(const w_task *t, const dt_value *v, uint64_t nbytes) {
  dt_conn *c = L.registered ? L.sched : NULL;
  if (!c) return;
  if (c->close_open == fin_close &&
      (fin.n >= DT_FINISHED_BATCH || c->out.len - fin.start >= FIN_BYTES || dt__wquery_pending()))
    dt__conn_close_open(c);
  dt_wbuf *w = &c->out;
  if (c->close_open != fin_close) { /* open one */
    w = dt__conn_out(c);
    dt__wquery_flush(w); /* the events the task logged come first */
    fin.start = w->len;
    dt__wb_msg(w, DT_OP_TASKS_FINISHED, 1);
    fin.at = w->len;
    uint8_t *p = (uint8_t *)dt__wbuf_reserve(w, 5);
    p[0] = 0xdd; /* array 32: the count is written in by fin_close */
    memset(p + 1, 0, 4);
    w->len += 5;
    fin.n = 0;
    c->close_open = fin_close;
  }
  /* a record of DT_REC_fin (msgs.h), field by field */
  dt__wb_array(w, 4);
  dt__wb_str(w, t->key, t->klen);
  dt__wb_uint(w, nbytes);
  dt__wb_uint(w, t->dur_ns / 1000);
  dt_payload p;
  if (v && nbytes <= DT_INLINE_MAX && dt__payload_encode(v, &p, NULL) == 0) {
    if (p.nframes == 0 && p.len <= DT_INLINE_MAX) dt__wb_bin(w, p.body, p.len);
    else dt__wb_nil(w);
    dt__payload_clear(&p);
  } else {
    dt__wb_nil(w);
  }
  fin.n++;
}

void dt__link_erred(const char *key, uint32_t klen, int code, const char *func, const char *msg) {
  dt_wbuf *w = sched_out();
  if (!w) return;
  dt__wquery_flush(w);
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_TASK_ERRED);
  dt__e_str(&e, key, klen);
  dt__e_int(&e, code);
  dt__e_cstr(&e, func ? func : "");
  dt__e_cstr(&e, msg ? msg : "");
  dt__e_end(&e);
}

void dt__link_acquired(const char *key, uint32_t klen, uint64_t nbytes, bool ok, uint64_t src) {
  dt_wbuf *w = sched_out();
  if (!w) return;
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_ACQUIRED);
  dt__e_list(&e, 1);
  dt__e_rec(&e);
  dt__e_str(&e, key, klen);
  dt__e_uint(&e, nbytes);
  dt__e_bool(&e, ok);
  dt__e_uint(&e, src);
  dt__e_end(&e);
}

void dt__link_missing(const w_task *t, const char *dep, uint32_t dlen, const char *addr) {
  dt_wbuf *w = sched_out();
  if (!w) return;
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_MISSING_DATA);
  dt__e_str(&e, t->key, t->klen);
  dt__e_str(&e, dep, dlen);
  dt__e_cstr(&e, addr);
  dt__e_end(&e);
}

void dt__link_seceded(const char *key) {
  dt_wbuf *w = sched_out();
  if (!w) return;
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_TASK_SECEDED);
  dt__e_cstr(&e, key);
  dt__e_end(&e);
}

void dt__link_released(const char *key, uint32_t klen) {
  dt_wbuf *w = sched_out();
  if (!w) return;
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_TASK_RELEASED);
  dt__e_str(&e, key, klen);
  dt__e_end(&e);
}

void dt__link_reschedule(const char *key, uint32_t klen) {
  dt_wbuf *w = sched_out();
  if (!w) return;
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_TASK_RESCHEDULE);
  dt__e_str(&e, key, klen);
  dt__e_end(&e);
}

/* heartbeat: what we do and hold, CPU and RSS of this process (from /proc,
 * once per heartbeat) */
static void on_heartbeat(uv_timer_t *h) {
  (void)h;
  if (!L.sched || !L.registered) return;
  dt__wquery_flush(dt__conn_out(L.sched));
  if (dt__now_s() - L.last_heard > L.sched_ttl_s) {
    DT_WARN("the scheduler at %s has been silent for %.1f s: reconnecting", L.sched_addr,
            dt__now_s() - L.last_heard);
    dt__conn_close(L.sched, false);
    return;
  }
  static double last_cpu_s, last_wall_s, cpu_pct;
  uint64_t rss = 0;
  FILE *f = fopen("/proc/self/stat", "r");
  if (f) {
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    long rss_pages = 0;
    /* fields after the name: state(3) ... utime(14) stime(15) ... rss(24) */
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                           "%*d %*u %*u %ld", &ut, &st, &rss_pages) == 3) {
      double cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK), now = dt__now_s();
      if (last_wall_s > 0 && now > last_wall_s)
        cpu_pct = 100.0 * (cpu_s - last_cpu_s) / (now - last_wall_s);
      last_cpu_s = cpu_s;
      last_wall_s = now;
      rss = (uint64_t)rss_pages * (uint64_t)sysconf(_SC_PAGESIZE);
    }
  }
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(L.sched), DT_OP_HEARTBEAT);
  dt__e_int(&e, dt__exec.executing);
  dt__e_int(&e, (int64_t)dt__exec.ready.len);
  dt__e_int(&e, (int64_t)dt__store.data.len);
  dt__e_int(&e, (int64_t)dt__store.nbytes);
  dt__e_double(&e, cpu_pct);
  dt__e_uint(&e, rss);
  dt__e_uint(&e, dt__store.spilled_bytes);
  dt__e_bool(&e, dt__store.paused);
  dt__e_uint(&e, dt__store.peak_nbytes);
  dt__e_end(&e);
}

void dt__link_heartbeat_now(void) {
  if (L.sched && L.registered) on_heartbeat(NULL);
}

void dt__link_close(void) {
  if (!L.sched || !L.registered) return;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(L.sched), DT_OP_CLOSE);
  dt__e_cstr(&e, "worker closing");
  dt__e_end(&e);
  dt__conn_close(L.sched, true);
}

bool dt__link_retire_me(uint64_t attempt, const char *reason) {
  dt_wbuf *w = sched_out();
  if (!w) return false;
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_RETIRE_ME);
  dt__e_uint(&e, attempt);
  dt__e_cstr(&e, reason);
  dt__e_end(&e);
  return true;
}

/* ---------------------------------------------------------------- handlers */

static int on_compute_task(const dt_msg *msg) {
  const dt_msg_COMPUTE_TASK *m = &msg->COMPUTE_TASK;
  const char *key = m->key.p;
  uint32_t klen = m->key.len;
  if (m->resources.n > 64) return DT_EPROTO;
  if (dt__smap_get(&dt__exec.tasks, key, klen)) return 0; /* a duplicate: ignore it */
  w_task *t = dt__xcalloc(1, sizeof(*t));
  t->key = dt__xstrndup(key, klen);
  t->klen = klen;
  t->func = dt__str_dup(m->func, m->func.len);
  dt__pref_copy(&m->spec, &t->spec);
  if (m->deps.n > 0) t->deps = dt__xcalloc(m->deps.n, sizeof(*t->deps));
  dt_list dl = m->deps;
  dt_rec_dep dr;
  while (dt__next_dep(&dl, &dr)) {
    if (dr.who_has.n > 1024) {
      dt__exec_task_free(t);
      return DT_EPROTO;
    }
    w_dep *d = &t->deps[t->ndeps++];
    d->key = dt__xstrndup(dr.key.p, dr.key.len);
    d->klen = dr.key.len;
    d->addrs = dt__xcalloc(dr.who_has.n ? dr.who_has.n : 1, sizeof(char *));
    dt_sv a;
    while (dt__next_str(&dr.who_has, &a)) d->addrs[d->naddrs++] = dt__xstrndup(a.p, a.len);
  }
  t->priority = m->priority;
  if (!(m->timeout >= 0 && m->timeout < 1e9)) {
    dt__exec_task_free(t);
    return DT_EPROTO;
  }
  t->timeout = m->timeout;
  uint32_t nres = m->resources.n;
  if (nres) {
    t->res_names = dt__xcalloc(nres, sizeof(char *));
    t->res_amounts = dt__xcalloc(nres, sizeof(double));
    dt_list rl = m->resources;
    dt_sv k;
    while (dt__next_double(&rl, &k, &t->res_amounts[t->nres]))
      t->res_names[t->nres++] = dt__xstrndup(k.p, k.len);
  }
  dt__exec_add(t, key, klen);
  return 0;
}

/* ACQUIRE: fetch results from a worker that is retiring, and keep them */
static int on_acquire(const dt_msg *msg) {
  dt_list l = msg->ACQUIRE.items;
  dt_rec_move it;
  while (dt__next_move(&l, &it)) {
    if (it.from.len == 0) return DT_EPROTO;
    dt__fetch_acquire(it.key.p, it.key.len, it.from, it.source);
  }
  return 0;
}

static int on_free_keys(const dt_msg *msg) {
  dt_list l = msg->FREE_KEYS.keys;
  dt_sv k;
  while (dt__next_key(&l, &k)) {
    w_data *d = dt__store_get(k.p, k.len);
    if (d) {
      if (d->users) d->replica = true; /* still needed here: drop after use */
      else dt__store_del(d);
    }
    dt__actor_release(k.p, k.len); /* first: it looks at a create still running */
    dt__exec_free_key(k.p, k.len);
  }
  return 0;
}

static int on_put_data(dt_conn *c, const dt_msg *msg) {
  const dt_msg_PUT_DATA *m = &msg->PUT_DATA;
  /* decode everything first: a bad value stores nothing */
  uint32_t n = m->items.n;
  dt_value **vals = dt__xcalloc(n ? n : 1, sizeof(*vals));
  dt_list l = m->items;
  dt_rec_keyval it;
  for (uint32_t i = 0; dt__next_keyval(&l, &it); i++)
    if (dt__pref_decode(&it.value, &vals[i]) != 0) {
      for (uint32_t j = 0; j < i; j++) dt_value_free(vals[j]);
      free(vals);
      return DT_EPROTO;
    }
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_PUT_DATA_DONE);
  dt__e_uint(&e, m->req);
  dt__e_list(&e, n);
  l = m->items;
  for (uint32_t i = 0; dt__next_keyval(&l, &it); i++) {
    w_data *d = dt__store_put(it.key.p, it.key.len, vals[i], false);
    dt__e_rec(&e);
    dt__e_str(&e, it.key.p, it.key.len);
    dt__e_uint(&e, d->nbytes);
  }
  dt__e_end(&e);
  free(vals);
  return 0;
}

static void on_welcome(const dt_msg *m) {
  uint64_t hb = m->WELCOME.heartbeat_ms, ttl = m->WELCOME.ttl_ms;
  if (hb >= 10 && hb <= 3600000) L.heartbeat_ms = (int)hb;
  if (ttl >= 10 && ttl <= 86400000) L.sched_ttl_s = (double)ttl / 1000;
  uv_timer_start(&L.heartbeat, on_heartbeat, (uint64_t)L.heartbeat_ms, (uint64_t)L.heartbeat_ms);
  L.registered = true;
  if (L.lost_at > 0)
    DT_INFO("registered again with the scheduler at %s after %.1f s", L.sched_addr,
            dt__now_s() - L.lost_at);
  L.lost_at = 0;
  L.reconnects = 0;
  dt__exec_start();
}

static int on_sched_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  L.last_heard = dt__now_s();
  dt_msg m;
  if (dt__msg_read(r, op, nf, &m) != 0) {
    DT_WARN("malformed message from the scheduler: %s", dt__msg_error());
    return DT_EPROTO;
  }
  switch (op) {
  case DT_OP_WELCOME: on_welcome(&m); return 0;
  case DT_OP_PING: return 0;
  case DT_OP_COMPUTE_TASK: return on_compute_task(&m);
  case DT_OP_FREE_KEYS: return on_free_keys(&m);
  case DT_OP_PUT_DATA: return on_put_data(c, &m);
  case DT_OP_GET_DATA: return dt__serve_get_data(c, &m);
  case DT_OP_ACQUIRE: return on_acquire(&m);
  case DT_OP_QUERY: return dt__wquery_on_query(c, &m);
  case DT_OP_PLUGIN: return dt__admin_plugin(&m);
  case DT_OP_ABORT_TASKS: return dt__cancel_on_abort(&m);
  case DT_OP_WORKER_GONE: {
    char a[256];
    snprintf(a, sizeof(a), "%.*s", (int)(m.WORKER_GONE.address.len < 255 ? m.WORKER_GONE.address.len : 255),
             m.WORKER_GONE.address.p);
    dt__fetch_peer_gone(a);
    return 0;
  }
  case DT_OP_CLOSE:
    DT_INFO("scheduler asked us to close");
    dt__worker_stop(dt__lifetime_close_code());
    return 0;
  default:
    DT_WARN("unexpected %s message from the scheduler", dt__op_name(op));
    return DT_EPROTO;
  }
}

/* ---------------------------------------------------------------- connection */

static void on_reconnect(uv_timer_t *h) {
  (void)h;
  if (!dt__worker.stopping && !L.sched) connect_scheduler();
}

/* scheduler_lost: reconnect with backoff (0.1 s doubling to 5 s, with
 * jitter) until death_timeout, if any */
static void scheduler_lost(void) {
  if (dt__worker.stopping) return;
  double now = dt__now_s();
  if (L.lost_at == 0) {
    L.lost_at = now;
    L.registered = false;
    uv_timer_stop(&L.heartbeat);
    dt__exec_drop_queued();
  }
  if (L.death_timeout_s > 0 && now - L.lost_at >= L.death_timeout_s) {
    DT_ERROR("no scheduler at %s for %.0f s (--death-timeout): exiting", L.sched_addr,
             now - L.lost_at);
    dt__worker_stop(DT__EXIT_GIVE_UP);
    return;
  }
  double delay = 0.1 * (double)(1u << (L.reconnects < 6 ? L.reconnects : 6));
  if (delay > 5) delay = 5;
  delay *= 0.75 + 0.5 * (double)(dt__now_ns() % 1000) / 1000.0;
  L.reconnects++;
  uv_timer_start(&L.reconnect, on_reconnect, (uint64_t)(delay * 1000), 0);
}

static void on_sched_close(dt_conn *c) {
  c->close_open = NULL; /* what it had open goes with it */
  fin.n = 0;
  L.sched = NULL;
  if (dt__worker.stopping) return;
  if (L.lost_at == 0)
    DT_WARN("lost the connection to the scheduler at %s; reconnecting", L.sched_addr);
  scheduler_lost();
}

/* HELLO_WORKER: who we are, and the results we hold (not the copies) */
static void send_hello(dt_conn *c) {
  const w_worker *w = &dt__worker;
  const dt_smap *data = &dt__store.data;
  uint32_t nheld = 0;
  for (size_t i = 0; i < data->cap; i++)
    if (data->slots[i].key && !((w_data *)data->slots[i].val)->replica) nheld++;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_HELLO_WORKER);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, w->name);
  dt__e_cstr(&e, w->address);
  dt__e_uint(&e, (uint64_t)w->nthreads);
  dt__e_map(&e, dt__exec.nres);
  for (uint32_t i = 0; i < dt__exec.nres; i++) {
    dt__e_cstr(&e, dt__exec.res_names[i]);
    dt__e_double(&e, dt__exec.res_amounts[i]);
  }
  dt__e_uint(&e, (uint64_t)getpid());
  dt__e_uint(&e, L.nanny_token);
  dt__e_list(&e, nheld);
  for (size_t i = 0; i < data->cap; i++) {
    w_data *d = data->slots[i].val;
    if (!data->slots[i].key || d->replica) continue;
    dt__e_rec(&e);
    dt__e_str(&e, d->key, d->klen);
    dt__e_uint(&e, d->nbytes);
  }
  dt__e_uint(&e, dt__store.mem_limit);
  dt__e_end(&e);
}

static void on_sched_connect(dt_conn *c, int status) {
  if (status < 0) {
    if (L.lost_at == 0 && L.reconnects == 0)
      DT_WARN("cannot connect to the scheduler at %s: %s; retrying", L.sched_addr,
              uv_strerror(status));
    return; /* on_sched_close follows and retries */
  }
  if (!dt__worker.address[0]) { /* first connection: listen for peers on its interface */
    if (dt__serve_start(c) != 0) {
      DT_ERROR("%s", dt_last_error());
      dt__worker_stop(DT__EXIT_GIVE_UP);
      return;
    }
    DT_INFO("worker %s at %s, %d threads, scheduler %s%s", dt__worker.name, dt__worker.address,
            dt__worker.nthreads, L.sched_addr, L.nanny_token ? ", under a nanny" : "");
  }
  L.last_heard = dt__now_s();
  send_hello(c);
}

static const dt_conn_cbs sched_cbs = {on_sched_msg, on_sched_connect, on_sched_close};

static void connect_scheduler(void) {
  if (dt__conn_connect(&dt__worker.net, L.sched_addr, &sched_cbs, NULL, &L.sched) != 0) {
    L.sched = NULL;
    DT_WARN("%s", dt_last_error());
    scheduler_lost();
  }
}

void dt__link_start(uv_loop_t *loop) {
  L.heartbeat_ms = 1000;
  L.sched_ttl_s = 60;
  uv_timer_init(loop, &L.heartbeat);
  uv_timer_init(loop, &L.reconnect);
  dt__wquery_init();
  connect_scheduler();
}
