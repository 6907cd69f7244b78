/*
 * server.c -- the scheduler daemon: one libuv loop, a listener, and the
 * table of message handlers that turn messages from clients and workers
 * into events of the state machine in state.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../cli/roles.h"
#include "../net/secure.h"
#include "dashboard.h"
#include "state.h"

typedef struct {
  uint64_t id, client_req;
  uint32_t client_id;
  dt_vec workers; /* worker ids (as pointers) still to confirm */
  char *error;
} pending_scatter;

typedef struct retire_req {
  uint64_t client_req;
  uint32_t client_id;
  uint32_t pending; /* workers still moving results */
  uint32_t retired;
  char *error;
} retire_req;

static struct {
  uv_loop_t loop;
  dt_net net;
  dt_listener listener;
  uv_signal_t sigint, sigterm;
  uv_timer_t trim, hb, dash;
  char dashboard_url[160];
  uint64_t dash_completed;  /* tasks completed at the last snapshot */
  uint64_t dash_last_ms;    /* loop time of the last snapshot */
  double worker_ttl_s;  /* a worker silent this long is removed */
  int heartbeat_ms;     /* heartbeats both ways, this often */
  size_t trim_high; /* most tasks held since the last trim */
  sched s;
  char address[128];
  char *scheduler_file;
  dt_sec sec;
  dt_vec scatters;
  uint64_t next_scatter;
  bool stopping;
  uint64_t start_ms; /* loop time at start */
} S;

/* A connection's data is NULL until it says hello, then the s_worker or
 * s_client (both start with int kind). */
static int peer_kind(dt_conn *c) { return c->data ? *(int *)c->data : 0; }

static void send_close(dt_conn *c, const char *reason) {
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_CLOSE);
  dt__e_cstr(&e, reason);
  dt__e_end(&e);
}

static s_client *client_by_id(uint32_t id) {
  for (size_t i = 0; i < S.s.clients.len; i++)
    if (((s_client *)S.s.clients.v[i])->id == id) return S.s.clients.v[i];
  return NULL;
}

/* ---------------------------------------------------------------- hello */

static int on_hello_client(dt_conn *c, const dt_msg *msg) {
  const dt_msg_HELLO_CLIENT *m = &msg->HELLO_CLIENT;
  if (m->version != DT_PROTO_VERSION) {
    DT_WARN("client %s speaks protocol %llu, not %d", c->peer, (unsigned long long)m->version,
            DT_PROTO_VERSION);
    return DT_EPROTO;
  }
  char nm[128];
  snprintf(nm, sizeof(nm), "%.*s", (int)m->name.len, m->name.p);
  s_client *cl = dt__sched_add_client(&S.s, c, nm);
  c->data = cl;
  dt__conn_admit(c);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_WELCOME);
  dt__e_uint(&e, cl->id);
  dt__e_uint(&e, 0);
  dt__e_uint(&e, 0);
  dt__e_end(&e);
  DT_INFO("client %s connected from %s", nm, c->peer);
  return 0;
}

static int on_hello_worker(dt_conn *c, const dt_msg *msg) {
  const dt_msg_HELLO_WORKER *m = &msg->HELLO_WORKER;
  if (m->version != DT_PROTO_VERSION || m->address.len == 0 || m->address.len > 200 ||
      m->name.len > 200 || m->nthreads == 0 || m->nthreads > 4096 || m->resources.n > 64)
    return DT_EPROTO;
  uint32_t nres = m->resources.n;
  char **rn = nres ? dt__xcalloc(nres, sizeof(char *)) : NULL;
  double *ra = nres ? dt__xcalloc(nres, sizeof(double)) : NULL;
  dt_list res = m->resources;
  dt_sv k;
  for (uint32_t i = 0; dt__next_double(&res, &k, &ra[i]); i++) rn[i] = dt__str_dup(k, 256);
  char nm[256], ad[256];
  snprintf(nm, sizeof(nm), "%.*s", (int)m->name.len, m->name.p);
  snprintf(ad, sizeof(ad), "%.*s", (int)m->address.len, m->address.p);
  s_worker *wk = dt__sched_add_worker_only(&S.s, c, nm, ad, (int)m->nthreads, rn, ra, nres);
  wk->last_seen = (double)uv_now(&S.loop) / 1e3;
  wk->pid = m->pid <= INT32_MAX ? (int)m->pid : 0;
  wk->nanny_token = m->nanny_token;
  c->data = wk;
  dt__conn_admit(c);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_WELCOME);
  dt__e_uint(&e, wk->id);
  dt__e_uint(&e, (uint64_t)S.heartbeat_ms);
  dt__e_uint(&e, (uint64_t)(S.worker_ttl_s * 1000));
  dt__e_end(&e);
  /* a worker coming back after losing us: what it still holds counts */
  dt_list held = m->held;
  dt_rec_keynb h;
  while (dt__next_keynb(&held, &h)) dt__sched_worker_has_key(&S.s, wk, h.key.p, h.key.len, h.nbytes);
  dt__sched_worker_place(&S.s, wk);
  DT_INFO("worker %s registered at %s with %d threads%s%s", nm, ad, (int)m->nthreads,
          m->nanny_token ? " (under a nanny)" : "", m->held.n ? ", holding results from before" : "");
  return 0;
}

/* ---------------------------------------------------------------- clients */

typedef struct {
  const char **keys;
  uint32_t *lens;
  uint32_t n;
} keylist;

static void keylist_free(keylist *kl) {
  free(kl->keys);
  free(kl->lens);
}

static int keylist_of(const dt_list *l, keylist *kl) {
  memset(kl, 0, sizeof(*kl));
  kl->n = l->n;
  if (kl->n == 0) return 0; /* most tasks: no dependencies, no restrictions */
  kl->keys = dt__xmalloc(kl->n * sizeof(*kl->keys));
  kl->lens = dt__xmalloc(kl->n * sizeof(*kl->lens));
  dt_list it = *l;
  dt_sv s;
  for (uint32_t i = 0; i < kl->n && (l->kind == DT_K_KEY ? dt__next_key(&it, &s) : dt__next_str(&it, &s)); i++) {
    kl->keys[i] = s.p;
    kl->lens[i] = s.len;
  }
  return 0;
}

static int newtask_of(const dt_rec_task *r, s_newtask *t) {
  memset(t, 0, sizeof(*t));
  if (r->func.len == 0 || r->func.len > 256 || r->retries < 0 || r->retries > 1000000 ||
      r->resources.n > 64)
    return DT_EPROTO;
  t->key = r->key.p;
  t->klen = r->key.len;
  t->func = r->func.p;
  t->flen = r->func.len;
  dt__pref_copy(&r->spec, &t->spec);
  keylist deps, wk;
  keylist_of(&r->deps, &deps);
  t->dep_keys = deps.keys;
  t->dep_lens = deps.lens;
  t->ndeps = deps.n;
  t->priority = r->priority > INT32_MAX ? INT32_MAX : r->priority < INT32_MIN ? INT32_MIN : (int32_t)r->priority;
  t->retries = (int)r->retries;
  keylist_of(&r->workers, &wk);
  t->restrict_to = wk.keys;
  t->restrict_lens = wk.lens;
  t->nrestrict = wk.n;
  t->loose = r->allow_other;
  t->nres = r->resources.n;
  if (t->nres == 0) return 0;
  t->res_names = dt__xmalloc(t->nres * sizeof(char *));
  t->res_name_lens = dt__xmalloc(t->nres * sizeof(uint32_t));
  t->res_amounts = dt__xmalloc(t->nres * sizeof(double));
  dt_list res = r->resources;
  dt_sv k;
  for (uint32_t i = 0; dt__next_double(&res, &k, &t->res_amounts[i]); i++) {
    if (k.len == 0 || k.len > DT_MAX_KEY) return DT_EPROTO;
    t->res_names[i] = k.p;
    t->res_name_lens[i] = k.len;
  }
  return 0;
}

static void newtask_free(s_newtask *t) {
  dt__payload_clear(&t->spec);
  free(t->dep_keys);
  free(t->dep_lens);
  free(t->restrict_to);
  free(t->restrict_lens);
  free(t->res_names);
  free(t->res_name_lens);
  free(t->res_amounts);
}

static int on_update_graph(dt_conn *c, const dt_msg *msg) {
  const dt_msg_UPDATE_GRAPH *m = &msg->UPDATE_GRAPH;
  uint32_t n = m->tasks.n;
  s_newtask *ts = dt__xcalloc(n ? n : 1, sizeof(*ts));
  int rc = 0;
  uint32_t got = 0;
  dt_list tl = m->tasks;
  dt_rec_task rt;
  while (rc == 0 && dt__next_task(&tl, &rt)) rc = newtask_of(&rt, &ts[got++]);
  keylist wanted = {0};
  if (rc == 0) rc = keylist_of(&m->wanted, &wanted);
  if (rc == 0) dt__sched_update_graph(&S.s, c->data, ts, n, wanted.keys, wanted.lens, wanted.n);
  if (S.s.tasks.len > S.trim_high) S.trim_high = S.s.tasks.len;
  for (uint32_t i = 0; i < got; i++) newtask_free(&ts[i]);
  free(ts);
  keylist_free(&wanted);
  return rc;
}

static int on_keys(dt_conn *c, const dt_list *keys,
                   void (*fn)(sched *, s_client *, const char *, uint32_t)) {
  dt_list l = *keys;
  dt_sv k;
  while (dt__next_key(&l, &k)) fn(&S.s, c->data, k.p, k.len);
  return 0;
}
static int on_release_keys(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->RELEASE_KEYS.keys, dt__sched_client_release);
}
static int on_want_keys(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->WANT_KEYS.keys, dt__sched_client_want);
}
static int on_cancel_keys(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->CANCEL_KEYS.keys, dt__sched_client_cancel);
}
static int on_who_has(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->WHO_HAS.keys, dt__sched_client_who_has);
}
static int on_want_result(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->WANT_RESULT.keys, dt__sched_client_want_result);
}

static void scatter_reply(pending_scatter *ps) {
  s_client *cl = client_by_id(ps->client_id);
  if (cl && cl->conn) {
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(cl->conn), DT_OP_SCATTER_DONE);
    dt__e_uint(&e, ps->client_req);
    dt__e_cstr(&e, ps->error);
    dt__e_end(&e);
  }
  dt__vec_remove(&S.scatters, ps);
  dt__vec_free(&ps->workers);
  free(ps->error);
  free(ps);
}

static int on_scatter(dt_conn *c, const dt_msg *msg) {
  const dt_msg_SCATTER *m = &msg->SCATTER;
  uint32_t n = m->items.n;
  bool broadcast = m->broadcast;
  s_client *cl = c->data;
  dt_rec_keyval *items = dt__xcalloc(n ? n : 1, sizeof(*items));
  dt_list il = m->items;
  for (uint32_t i = 0; dt__next_keyval(&il, &items[i]); i++) {}
  keylist wl = {0};
  keylist_of(&m->workers, &wl);
  /* targets: the named workers, or every worker */
  dt_vec targets = {0};
  for (size_t i = 0; i < S.s.workers.len; i++) {
    s_worker *w = S.s.workers.v[i];
    bool ok = wl.n == 0;
    for (uint32_t k = 0; k < wl.n && !ok; k++)
      ok = (strlen(w->name) == wl.lens[k] && memcmp(w->name, wl.keys[k], wl.lens[k]) == 0) ||
           (strlen(w->address) == wl.lens[k] && memcmp(w->address, wl.keys[k], wl.lens[k]) == 0);
    if (ok) dt__vec_push(&targets, w);
  }
  pending_scatter *ps = dt__xcalloc(1, sizeof(*ps));
  ps->id = ++S.next_scatter;
  ps->client_req = m->req;
  ps->client_id = cl->id;
  dt__vec_push(&S.scatters, ps);
  if (targets.len == 0) {
    ps->error = dt__xstrdup(wl.n ? "none of the requested workers is connected"
                                 : "no workers are connected");
    scatter_reply(ps);
  } else {
    /* round robin from the worker holding the fewest keys */
    size_t start = 0;
    for (size_t i = 1; i < targets.len; i++)
      if (((s_worker *)targets.v[i])->nkeys < ((s_worker *)targets.v[start])->nkeys) start = i;
    for (size_t ti = 0; ti < targets.len; ti++) {
      s_worker *w = targets.v[ti];
      uint32_t cnt = 0;
      for (uint32_t i = 0; i < n; i++)
        if (broadcast || (start + i) % targets.len == ti) cnt++;
      if (!cnt) continue;
      dt_enc e;
      dt__e_begin(&e, dt__conn_out(w->conn), DT_OP_PUT_DATA);
      dt__e_uint(&e, ps->id);
      dt__e_list(&e, cnt);
      for (uint32_t i = 0; i < n; i++)
        if (broadcast || (start + i) % targets.len == ti) {
          dt__e_rec(&e);
          dt__e_str(&e, items[i].key.p, items[i].key.len);
          dt__e_pref(&e, &items[i].value);
        }
      dt__e_end(&e);
      dt__vec_push(&ps->workers, (void *)(uintptr_t)w->id);
    }
  }
  dt__vec_free(&targets);
  free(items);
  keylist_free(&wl);
  return 0;
}

static int on_info_request(dt_conn *c, const dt_msg *msg) {
  const dt_msg_INFO_REQUEST *m = &msg->INFO_REQUEST;
  bool detail = m->detail;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_INFO_REPLY);
  dt__e_uint(&e, m->req);
  dt__e_map(&e, 5 + TS_COUNT);
  dt__e_cstr(&e, "workers");
  dt__e_uint(&e, S.s.workers.len);
  dt__e_cstr(&e, "clients");
  dt__e_uint(&e, S.s.clients.len);
  dt__e_cstr(&e, "tasks");
  dt__e_uint(&e, S.s.tasks.len);
  dt__e_cstr(&e, "completed");
  dt__e_uint(&e, S.s.tasks_completed);
  double now = (double)uv_now(&S.loop) / 1e3, age = 0;
  for (size_t i = 0; i < S.s.workers.len; i++) {
    double a = now - ((s_worker *)S.s.workers.v[i])->last_seen;
    if (a > age) age = a;
  }
  dt__e_cstr(&e, "heartbeat_age_us");
  dt__e_uint(&e, (uint64_t)(age * 1e6));
  for (int st = 0; st < TS_COUNT; st++) {
    dt__e_cstr(&e, dt__task_state_name(st));
    dt__e_int(&e, S.s.count[st]);
  }
  /* one row per worker: O(workers), asked for rarely */
  uint32_t nrows = detail ? (uint32_t)S.s.workers.len : 0;
  dt__e_list(&e, nrows);
  for (uint32_t i = 0; i < nrows; i++) {
    s_worker *wk = S.s.workers.v[i];
    dt__e_rec(&e);
    dt__e_cstr(&e, wk->name);
    dt__e_cstr(&e, wk->address);
    dt__e_uint(&e, (uint64_t)wk->nthreads);
    dt__e_uint(&e, (uint64_t)wk->pid);
    dt__e_uint(&e, wk->processing.len);
    dt__e_uint(&e, wk->nkeys);
    dt__e_uint(&e, wk->nbytes);
    dt__e_uint(&e, (uint64_t)((now - wk->last_seen) * 1e3));
    dt__e_uint(&e, wk->spilled);
    dt__e_bool(&e, wk->paused);
    dt__e_uint(&e, wk->rss);
    dt__e_uint(&e, wk->managed);
    dt__e_uint(&e, wk->peak_managed);
  }
  dt__e_end(&e);
  return 0;
}

/* ---------------------------------------------------------------- retiring */

static void retire_reply(retire_req *rr) {
  s_client *cl = client_by_id(rr->client_id);
  if (cl && cl->conn) {
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(cl->conn), DT_OP_RETIRE_DONE);
    dt__e_uint(&e, rr->client_req);
    dt__e_uint(&e, rr->retired);
    dt__e_cstr(&e, rr->error);
    dt__e_end(&e);
  }
  free(rr->error);
  free(rr);
}

/* a retiring worker has nothing left that only it holds: close it */
static void retire_finish(s_worker *w) {
  retire_req *rr = w->retire;
  w->retire = NULL;
  w->closing = true; /* leaving on purpose: its running tasks are not suspects */
  send_close(w->conn, "retired");
  DT_INFO("worker %s (%s) retired", w->name, w->address);
  if (rr) {
    rr->retired++;
    if (--rr->pending == 0) retire_reply(rr);
  }
}

static int on_retire_workers(dt_conn *c, const dt_msg *msg) {
  const dt_msg_RETIRE_WORKERS *m = &msg->RETIRE_WORKERS;
  keylist kl;
  keylist_of(&m->names, &kl);
  retire_req *rr = dt__xcalloc(1, sizeof(*rr));
  rr->client_req = m->req;
  rr->client_id = ((s_client *)c->data)->id;
  rr->pending = 1; /* held while we go through the list */
  for (uint32_t i = 0; i < kl.n; i++) {
    s_worker *w = NULL;
    for (size_t k = 0; k < S.s.workers.len && !w; k++) {
      s_worker *o = S.s.workers.v[k];
      if ((strlen(o->name) == kl.lens[i] && memcmp(o->name, kl.keys[i], kl.lens[i]) == 0) ||
          (strlen(o->address) == kl.lens[i] && memcmp(o->address, kl.keys[i], kl.lens[i]) == 0))
        w = o;
    }
    if (!w || w->retiring) continue; /* gone already, or on its way */
    int moving = dt__sched_retire_worker(&S.s, w);
    if (moving < 0) {
      dt__sched_unretire_worker(&S.s, w);
      if (!rr->error)
        rr->error = dt__xstrdup("a worker holds results that no other worker can take; it was kept");
      DT_WARN("cannot retire worker %s: no other worker can take the results only it holds",
              w->name);
      continue;
    }
    rr->pending++;
    w->retire = rr;
    DT_INFO("retiring worker %s (%s): %d result(s) to move first", w->name, w->address, moving);
    if (moving == 0) retire_finish(w);
  }
  keylist_free(&kl);
  if (--rr->pending == 0) retire_reply(rr);
  return 0;
}

static int on_acquired(dt_conn *c, const dt_msg *msg) {
  dt_list l = msg->ACQUIRED.items;
  dt_rec_moved it;
  while (dt__next_moved(&l, &it)) {
    if (it.ok) dt__sched_worker_has_key(&S.s, c->data, it.key.p, it.key.len, it.nbytes);
    s_worker *from = NULL;
    for (size_t k = 0; k < S.s.workers.len && !from; k++)
      if (((s_worker *)S.s.workers.v[k])->id == it.source) from = S.s.workers.v[k];
    if (from && from->retiring && from->moving > 0 && --from->moving == 0) retire_finish(from);
  }
  return 0;
}

/* ---------------------------------------------------------------- workers */

static int on_task_finished(dt_conn *c, const dt_msg *msg) {
  const dt_msg_TASK_FINISHED *m = &msg->TASK_FINISHED;
  if (m->inline_.p && m->inline_.len > DT_INLINE_MAX) return DT_EPROTO;
  dt__sched_task_finished(&S.s, c->data, m->key.p, m->key.len, m->nbytes, (double)m->duration_us / 1e6,
                          m->inline_.p, m->inline_.len);
  return 0;
}

static int on_task_erred(dt_conn *c, const dt_msg *msg) {
  const dt_msg_TASK_ERRED *m = &msg->TASK_ERRED;
  char *f = dt__str_dup(m->function, 256);
  char *s = dt__str_dup(m->message, 8192);
  int64_t code = m->code;
  if (code >= 0 || code < -1000) code = DT_ETASK;
  dt__sched_task_erred(&S.s, c->data, m->key.p, m->key.len, (int)code, f, s);
  free(f);
  free(s);
  return 0;
}

static int on_missing_data(dt_conn *c, const dt_msg *msg) {
  const dt_msg_MISSING_DATA *m = &msg->MISSING_DATA;
  char ad[256];
  snprintf(ad, sizeof(ad), "%.*s", (int)(m->address.len < 255 ? m->address.len : 255), m->address.p);
  DT_INFO("worker %s could not fetch %.*s (from %s) for %.*s", c->peer, (int)m->dep.len, m->dep.p,
          ad, (int)m->key.len, m->key.p);
  dt__sched_missing_data(&S.s, c->data, m->key.p, m->key.len, m->dep.p, m->dep.len, ad[0] ? ad : NULL);
  return 0;
}

static int on_put_data_done(dt_conn *c, const dt_msg *msg) {
  const dt_msg_PUT_DATA_DONE *m = &msg->PUT_DATA_DONE;
  s_worker *wk = c->data;
  pending_scatter *ps = NULL;
  for (size_t i = 0; i < S.scatters.len && !ps; i++)
    if (((pending_scatter *)S.scatters.v[i])->id == m->req) ps = S.scatters.v[i];
  s_client *cl = ps ? client_by_id(ps->client_id) : NULL;
  dt_list l = m->stored;
  dt_rec_keynb it;
  while (dt__next_keynb(&l, &it)) dt__sched_scatter_key(&S.s, cl, wk, it.key.p, it.key.len, it.nbytes);
  if (ps && dt__vec_remove(&ps->workers, (void *)(uintptr_t)wk->id) && ps->workers.len == 0)
    scatter_reply(ps);
  return 0;
}

static int on_heartbeat(dt_conn *c, const dt_msg *msg) {
  const dt_msg_HEARTBEAT *m = &msg->HEARTBEAT;
  s_worker *wk = c->data;
  wk->executing = m->executing;
  wk->ready = m->ready;
  wk->managed = m->nbytes > 0 ? (uint64_t)m->nbytes : 0;
  wk->cpu = m->cpu >= 0 && m->cpu < 1e6 ? m->cpu : 0;
  wk->rss = m->rss;
  wk->spilled = m->spilled;
  if (m->paused != wk->paused)
    DT_INFO("worker %s %s (memory)", wk->name, m->paused ? "paused" : "resumed");
  dt__sched_worker_paused(&S.s, wk, m->paused);
  wk->peak_managed = m->peak;
  return 0;
}

static int on_close_msg(dt_conn *c, const dt_msg *m) {
  (void)m;
  if (peer_kind(c) == PEER_WORKER) ((s_worker *)c->data)->closing = true;
  dt__conn_close(c, true);
  return 0;
}

/* scatters_free_all: at exit, the scatters still waiting for workers */
static void scatters_free_all(void) {
  for (size_t i = 0; i < S.scatters.len; i++) {
    pending_scatter *ps = S.scatters.v[i];
    dt__vec_free(&ps->workers);
    free(ps->error);
    free(ps);
  }
  dt__vec_free(&S.scatters);
}

static void scatters_forget_worker(s_worker *w) {
  for (size_t i = S.scatters.len; i-- > 0;) {
    pending_scatter *ps = S.scatters.v[i];
    if (dt__vec_remove(&ps->workers, (void *)(uintptr_t)w->id)) {
      if (!ps->error) ps->error = dt__xstrdup("a worker left during scatter");
      if (ps->workers.len == 0) scatter_reply(ps);
    }
  }
}

/* drop_worker: remove a worker we give up on, and close its connection */
static void drop_worker(s_worker *w, bool suspicious) {
  dt_conn *c = w->conn;
  if (w->retire) {
    retire_req *rr = w->retire;
    w->retire = NULL;
    if (--rr->pending == 0) retire_reply(rr);
  }
  c->data = NULL; /* on_conn_close: nothing more to do */
  dt__conn_close(c, false);
  scatters_forget_worker(w);
  dt__sched_remove_worker(&S.s, w, suspicious);
}

/* A nanny's worker died: it says which keys were running (read from memory
 * it shares with the worker), so only those count towards KilledWorker. */
static int on_nanny_report(dt_conn *c, const dt_msg *msg) {
  const dt_msg_NANNY_REPORT *m = &msg->NANNY_REPORT;
  keylist kl;
  keylist_of(&m->keys, &kl);
  char hw[200], who[300];
  snprintf(hw, sizeof(hw), "%.*s", (int)(m->how.len > 150 ? 150 : m->how.len), m->how.p);
  snprintf(who, sizeof(who), "pid %llu on %s", (unsigned long long)m->pid, c->peer);
  s_worker *gone = NULL;
  for (size_t i = 0; i < S.s.workers.len && m->token && !gone; i++)
    if (((s_worker *)S.s.workers.v[i])->nanny_token == m->token) gone = S.s.workers.v[i];
  if (gone) snprintf(who, sizeof(who), "%s", gone->address);
  DT_WARN("worker %s died: %s, while running %u task(s)", who, hw, kl.n);
  if (gone) drop_worker(gone, false); /* before its connection says so */
  dt__sched_worker_died(&S.s, who, hw, kl.keys, kl.lens, kl.n);
  keylist_free(&kl);
  dt__conn_close(c, true);
  return 0;
}

/* on_hb: heartbeats to workers; workers silent for worker_ttl are removed */
static void on_hb(uv_timer_t *h) {
  (void)h;
  double now = (double)uv_now(&S.loop) / 1e3;
  for (size_t i = S.s.workers.len; i-- > 0;) {
    s_worker *w = S.s.workers.v[i];
    if (now - w->last_seen > S.worker_ttl_s) {
      DT_WARN("worker %s (%s) silent for %.1f s (worker-ttl %.1f s): removing it", w->name,
              w->address, now - w->last_seen, S.worker_ttl_s);
      drop_worker(w, true);
      continue;
    }
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(w->conn), DT_OP_PING);
    dt__e_uint(&e, uv_now(&S.loop) - S.start_ms);
    dt__e_end(&e);
  }
}

/* ---------------------------------------------------------------- dispatch */

typedef int (*handler_fn)(dt_conn *, const dt_msg *);
static const struct {
  int kind; /* who may send it: 0 = before hello */
  handler_fn fn;
} handlers[DT_OP_COUNT] = {
    [DT_OP_HELLO_CLIENT] = {0, on_hello_client},
    [DT_OP_HELLO_WORKER] = {0, on_hello_worker},
    [DT_OP_UPDATE_GRAPH] = {PEER_CLIENT, on_update_graph},
    [DT_OP_RELEASE_KEYS] = {PEER_CLIENT, on_release_keys},
    [DT_OP_WANT_KEYS] = {PEER_CLIENT, on_want_keys},
    [DT_OP_CANCEL_KEYS] = {PEER_CLIENT, on_cancel_keys},
    [DT_OP_WANT_RESULT] = {PEER_CLIENT, on_want_result},
    [DT_OP_WHO_HAS] = {PEER_CLIENT, on_who_has},
    [DT_OP_RETIRE_WORKERS] = {PEER_CLIENT, on_retire_workers},
    [DT_OP_ACQUIRED] = {PEER_WORKER, on_acquired},
    [DT_OP_SCATTER] = {PEER_CLIENT, on_scatter},
    [DT_OP_INFO_REQUEST] = {PEER_CLIENT, on_info_request},
    [DT_OP_TASK_FINISHED] = {PEER_WORKER, on_task_finished},
    [DT_OP_TASK_ERRED] = {PEER_WORKER, on_task_erred},
    [DT_OP_MISSING_DATA] = {PEER_WORKER, on_missing_data},
    [DT_OP_PUT_DATA_DONE] = {PEER_WORKER, on_put_data_done},
    [DT_OP_HEARTBEAT] = {PEER_WORKER, on_heartbeat},
    [DT_OP_CLOSE] = {-1, on_close_msg},
    [DT_OP_NANNY_REPORT] = {0, on_nanny_report},
};

static int on_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  if (peer_kind(c) == PEER_WORKER) /* any message shows it is alive (loop time: no syscall) */
    ((s_worker *)c->data)->last_seen = (double)uv_now(&S.loop) / 1e3;
  if (!handlers[op].fn) {
    DT_WARN("unexpected %s message from %s", dt__op_name(op), c->peer);
    return DT_EPROTO;
  }
  int want = handlers[op].kind;
  if (want != -1 && want != peer_kind(c)) {
    DT_WARN("%s message from %s which is a %s", dt__op_name(op), c->peer,
            peer_kind(c) == PEER_WORKER ? "worker" : peer_kind(c) == PEER_CLIENT ? "client"
                                                                                 : "stranger");
    return DT_EPROTO;
  }
  dt_msg m;
  if (dt__msg_read(r, op, nf, &m) != 0) {
    DT_WARN("malformed message from %s: %s", c->peer, dt__msg_error());
    return DT_EPROTO;
  }
  return handlers[op].fn(c, &m);
}

static void on_conn_close(dt_conn *c) {
  switch (peer_kind(c)) {
  case PEER_WORKER: {
    s_worker *w = c->data;
    if (w->closing) DT_INFO("worker %s (%s) left", w->name, w->address);
    else DT_WARN("lost worker %s (%s)%s", w->name, w->address,
                 w->nanny_token ? "; its nanny will say what it was running" : "");
    scatters_forget_worker(w);
    if (w->retire) { /* it went before it was done: count it anyway */
      retire_req *rr = w->retire;
      w->retire = NULL;
      if (--rr->pending == 0) retire_reply(rr);
    }
    /* with a nanny, only the keys it reports as running count as suspects */
    if (!S.stopping) dt__sched_remove_worker(&S.s, w, !w->nanny_token && !w->closing);
    break;
  }
  case PEER_CLIENT: {
    s_client *cl = c->data;
    DT_INFO("client %s left", cl->name);
    if (!S.stopping) dt__sched_remove_client(&S.s, cl);
    break;
  }
  default: break;
  }
  c->data = NULL;
}

static const dt_conn_cbs conn_cbs = {on_msg, NULL, on_conn_close};

static void on_accept(dt_listener *l, dt_conn *c) {
  (void)l;
  DT_DEBUG("connection from %s", c->peer);
}

/* ---------------------------------------------------------------- daemon */

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) {
    if (h->type == UV_TCP && h->data && h != (uv_handle_t *)&S.listener.tcp) {
      dt__conn_close(h->data, false);
    } else {
      uv_close(h, NULL);
    }
  }
}

static void stop(void) {
  if (S.stopping) return;
  S.stopping = true;
  DT_INFO("scheduler at %s stopping", S.address);
  /* tell everyone, then close */
  for (size_t i = 0; i < S.s.workers.len; i++) {
    s_worker *w = S.s.workers.v[i];
    send_close(w->conn, "scheduler closing");
  }
  dt__net_flush(&S.net);
  uv_walk(&S.loop, close_walk, NULL);
}

/* on_trim: once a second, give memory back to the system when the graph has
 * shrunk to under half of its high-water mark (glibc keeps freed chunks) */
static void on_trim(uv_timer_t *h) {
  (void)h;
  size_t n = S.s.tasks.len;
  if (S.trim_high >= 4096 && n < S.trim_high / 2) {
    dt__smap_shrink(&S.s.tasks);
    malloc_trim(0);
    S.trim_high = n;
  }
}

/* on_dash: once a second, a snapshot for the dashboard's HTTP threads */
static void on_dash(uv_timer_t *h) {
  (void)h;
  uint64_t now = uv_now(&S.loop);
  dt_dash_extra x = {0};
  x.now_s = (double)now / 1e3;
  double dt = S.dash_last_ms ? (double)(now - S.dash_last_ms) / 1e3 : 1;
  x.tasks_per_s = dt > 0 ? (double)(S.s.tasks_completed - S.dash_completed) / dt : 0;
  x.loop_lag_s = S.dash_last_ms && now > S.dash_last_ms + 1000 ? (double)(now - S.dash_last_ms - 1000) / 1e3 : 0;
  x.bytes_in = S.net.bytes_in;
  x.bytes_out = S.net.bytes_out;
  x.workers_lost = S.s.workers_lost;
  S.dash_completed = S.s.tasks_completed;
  S.dash_last_ms = now;
  dt__dashboard_publish(&S.s, &x);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
  stop();
}

static void usage(void) {
  fprintf(stderr,
          "usage: dtask scheduler [--host HOST] [--port PORT] [--scheduler-file FILE]\n"
          "                       [--allowed-failures N] [--worker-ttl DURATION]\n"
          "                       [--auth-file FILE] [--log-level LEVEL]\n"
          "  --host HOST            address to listen on (default 127.0.0.1)\n"
          "  --port PORT            port (default 8786; 0 = any free port)\n"
          "  --scheduler-file FILE  write the address to FILE as JSON, for clients and\n"
          "                         workers on shared file systems\n"
          "  --allowed-failures N   worker deaths a task may cause before it fails with\n"
          "                         DT_EKILLED (default 3)\n"
          "  --worker-ttl DURATION  remove a worker silent this long (default 60s)\n"
          "  --heartbeat DURATION   heartbeat interval, both ways (default 1s)\n"
          "  --dashboard-address A  the dashboard's [host]:port (default :8787; another\n"
          "                         port if that one is taken)\n"
          "  --no-dashboard         no dashboard, no /metrics\n"
          "  --log-level LEVEL      debug, info, warning, error (default info)\n"
          DT_SEC_USAGE);
}

int dt__scheduler_main(int argc, char **argv) {
  const char *host = "127.0.0.1", *file = NULL, *level = getenv("DTASK_LOG_LEVEL");
  int port = 8786, ready_fd = -1, allowed_failures = 3;
  double ttl = 60, hb = 1;
  dt_sec_args sa = {0};
  const char *dash = ":8787";
  bool dash_default = true;
  if (!level) level = "info";
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int took = dt__sec_cli(&sa, argc, argv, &i);
    if (took < 0) {
      fprintf(stderr, "dtask scheduler: %s\n", dt_last_error());
      return 2;
    }
    if (took) continue;
    if (strcmp(a, "--host") == 0 && v) host = argv[++i];
    else if (strcmp(a, "--port") == 0 && v) port = atoi(argv[++i]);
    else if (strcmp(a, "--scheduler-file") == 0 && v) file = argv[++i];
    else if (strcmp(a, "--log-level") == 0 && v) level = argv[++i];
    else if (strcmp(a, "--ready-fd") == 0 && v) ready_fd = atoi(argv[++i]);
    else if (strcmp(a, "--dashboard-address") == 0 && v) {
      dash = argv[++i];
      dash_default = false;
    } else if (strcmp(a, "--no-dashboard") == 0) dash = NULL;
    else if (strcmp(a, "--allowed-failures") == 0 && v) {
      char *end;
      long n = strtol(argv[++i], &end, 10);
      if (*end || n < 0 || n > 250) {
        fprintf(stderr, "dtask scheduler: --allowed-failures must be 0..250, not '%s'\n", argv[i]);
        return 2;
      }
      allowed_failures = (int)n;
    } else if ((strcmp(a, "--worker-ttl") == 0 || strcmp(a, "--heartbeat") == 0) && v) {
      double d;
      if (dt__parse_duration(argv[++i], &d) != 0 || d < 0.01) {
        fprintf(stderr, "dtask scheduler: %s: invalid duration '%s' (e.g. 30s, 500ms)\n", a,
                argv[i]);
        return 2;
      }
      if (a[2] == 'w') ttl = d;
      else hb = d;
    }
    else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(); return 0; }
    else {
      fprintf(stderr, "dtask scheduler: unknown or incomplete option '%s'\n", a);
      usage();
      return 2;
    }
  }
  if (port < 0 || port > 65535) {
    fprintf(stderr, "dtask scheduler: invalid port %d\n", port);
    return 2;
  }
  dt__log_init("scheduler", level);
  signal(SIGPIPE, SIG_IGN);
  memset(&S, 0, sizeof(S));
  uv_loop_init(&S.loop);
  S.start_ms = uv_now(&S.loop);
  dt__net_init(&S.net, &S.loop);
  if (dt__sec_from_args(&S.sec, &sa) != 0) {
    fprintf(stderr, "dtask scheduler: %s\n", dt_last_error());
    return 2;
  }
  S.net.sec = &S.sec;
  if (S.sec.auth) DT_INFO("connections must prove they know the shared secret");
  if (S.sec.tls_server) DT_INFO("connections use TLS");
  dt__sched_init(&S.s);
  S.s.allowed_failures = allowed_failures;
  S.worker_ttl_s = ttl;
  S.heartbeat_ms = (int)(hb * 1000);
  if (S.heartbeat_ms < 10) S.heartbeat_ms = 10;
  if (dt__listener_start(&S.listener, &S.net, host, port, &conn_cbs, on_accept, NULL) != 0) {
    fprintf(stderr, "dtask scheduler: %s\n", dt_last_error());
    return 1;
  }
  if (strchr(host, ':')) snprintf(S.address, sizeof(S.address), "[%s]:%d", host, S.listener.port);
  else snprintf(S.address, sizeof(S.address), "%s:%d", host, S.listener.port);
  DT_INFO("scheduler at tcp://%s", S.address);
  if (dash) {
    char dhost[64] = "";
    int dport = 8787;
    const char *colon = strrchr(dash, ':');
    if (colon) {
      snprintf(dhost, sizeof(dhost), "%.*s", (int)(colon - dash), dash);
      dport = atoi(colon + 1);
    } else {
      dport = atoi(dash);
    }
    if (!dhost[0]) snprintf(dhost, sizeof(dhost), "%s", strcmp(host, "127.0.0.1") == 0 ? host : "0.0.0.0");
    if (dport < 0 || dport > 65535 ||
        dt__dashboard_start(dhost, dport, dash_default || dport == 8787, S.dashboard_url,
                            sizeof(S.dashboard_url)) != 0) {
      fprintf(stderr, "dtask scheduler: %s\n", dt_last_error());
      return 1;
    }
    DT_INFO("dashboard at %s", S.dashboard_url);
  }
  if (file) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", file, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "{\"type\": \"Scheduler\", \"address\": \"%s://%s\", \"pid\": %d, "
                         "\"dashboard\": \"%s\"}\n",
                      S.sec.tls_server ? "tls" : "tcp", S.address, (int)getpid(),
                      S.dashboard_url) < 0 || fclose(f) != 0 || rename(tmp, file) != 0) {
      fprintf(stderr, "dtask scheduler: cannot write scheduler file %s: %s\n", file,
              strerror(errno));
      return 1;
    }
    S.scheduler_file = dt__xstrdup(file);
  }
  if (ready_fd >= 0) {
    char line[400];
    int n = snprintf(line, sizeof(line), "%s %s\n", S.address, S.dashboard_url[0] ? S.dashboard_url : "-");
    if (write(ready_fd, line, (size_t)n) != n) DT_WARN("could not report readiness");
    close(ready_fd);
  }
  uv_timer_init(&S.loop, &S.trim);
  uv_timer_start(&S.trim, on_trim, 1000, 1000);
  uv_unref((uv_handle_t *)&S.trim);
  if (S.dashboard_url[0]) {
    uv_timer_init(&S.loop, &S.dash);
    uv_timer_start(&S.dash, on_dash, 0, 1000);
    uv_unref((uv_handle_t *)&S.dash);
  }
  uv_timer_init(&S.loop, &S.hb);
  uv_timer_start(&S.hb, on_hb, (uint64_t)S.heartbeat_ms, (uint64_t)S.heartbeat_ms);
  uv_unref((uv_handle_t *)&S.hb);
  uv_signal_init(&S.loop, &S.sigint);
  uv_signal_init(&S.loop, &S.sigterm);
  uv_signal_start(&S.sigint, on_signal, SIGINT);
  uv_signal_start(&S.sigterm, on_signal, SIGTERM);
  uv_run(&S.loop, UV_RUN_DEFAULT);
  dt__dashboard_stop();
  if (S.scheduler_file) unlink(S.scheduler_file);
  free(S.scheduler_file);
  scatters_free_all();
  dt__sched_destroy(&S.s);
  uv_loop_close(&S.loop);
  dt__tls_free(&S.sec);
  return 0;
}

/* ---------------------------------------------------------------- fuzzing */

/* dt__sched_fuzz: one fuzz input through the scheduler's message handlers,
 * as its event loop would run them (fuzz/fuzz_scheduler.c).  The input is a
 * sequence of [selector byte, msgpack message]: the selector picks the
 * sender (a stranger, a client that said hello, a worker that said hello).
 * Afterwards the state machine's invariants must hold, and every peer
 * leaves (which exercises client and worker removal). */
int dt__sched_fuzz(const uint8_t *data, size_t size) {
  static bool ready;
  if (!ready) {
    uv_loop_init(&S.loop);
    dt__log_init("fuzz", getenv("DTASK_FUZZ_LOG") ? getenv("DTASK_FUZZ_LOG") : "off");
    ready = true;
  }
  dt__sched_init(&S.s);
  S.worker_ttl_s = 60;
  S.heartbeat_ms = 1000;
  dt_conn *peers[3];
  for (int i = 0; i < 3; i++) peers[i] = dt__conn_new_detached();
  /* the client and the worker introduce themselves properly */
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_HELLO_CLIENT);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, "fuzz-client");
  dt__e_end(&e);
  dt__e_begin(&e, &w, DT_OP_HELLO_WORKER);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, "fuzz-worker");
  dt__e_cstr(&e, "127.0.0.1:1");
  dt__e_uint(&e, 2);
  dt__e_map(&e, 1);
  dt__e_cstr(&e, "GPU");
  dt__e_double(&e, 1);
  dt__e_uint(&e, 4242);
  dt__e_uint(&e, 7);
  dt__e_list(&e, 0);
  dt__e_end(&e);
  const char *hp = w.buf, *hend = w.buf + w.len;
  for (int i = 1; i <= 2; i++) {
    const char *q = hp;
    if (dt__mp_validate(&q, hend, DT_MAX_DEPTH) != 0) abort();
    dt_rd r = {hp, q, NULL, 0};
    uint32_t n;
    uint64_t op;
    if (dt__rd_array(&r, &n) || dt__rd_uint(&r, &op) || on_msg(peers[i], (int)op, n - 1, &r) != 0) abort();
    hp = q;
  }
  dt__wbuf_clear(&w);
  const char *p = (const char *)data, *end = p + size;
  while (end - p > 1) {
    dt_conn *c = peers[(uint8_t)*p++ % 3];
    if (!c) break;
    const char *q = p;
    if (dt__mp_validate(&q, end, DT_MAX_DEPTH) != 0) break;
    dt_rd r = {p, q, NULL, 0};
    uint32_t n;
    uint64_t op;
    if (dt__rd_array(&r, &n) || n < 1 || dt__rd_uint(&r, &op) || op == 0 || op >= DT_OP_COUNT) break;
    if (on_msg(c, (int)op, n - 1, &r) != 0) break; /* the connection would be closed */
    p = q;
  }
  char why[512];
  if (dt__sched_check(&S.s, why, sizeof(why)) != 0) {
    fprintf(stderr, "scheduler invariants broken: %s\n", why);
    abort();
  }
  for (int i = 2; i >= 0; i--) {
    on_conn_close(peers[i]);
    dt__conn_free_detached(peers[i]);
  }
  if (S.s.tasks.len != 0) { /* everyone left: nothing may be held */
    fprintf(stderr, "scheduler holds %zu tasks after every peer left\n", S.s.tasks.len);
    for (size_t i = 0; i < S.s.tasks.cap; i++)
      if (S.s.tasks.slots[i].key) {
        s_task *t = S.s.tasks.slots[i].val;
        fprintf(stderr, "  %s: %s, wanted by %u, waiters %u, dependents %zu, holds_deps %d\n",
                t->key, dt__task_state_name(t->state), t->wanted_by.len, t->waiters,
                t->dependents.len, t->holds_deps);
      }
    abort();
  }
  scatters_free_all();
  dt__sched_destroy(&S.s);
  return 0;
}
