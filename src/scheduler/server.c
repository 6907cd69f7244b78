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
} S;

/* A connection's data is NULL until it says hello, then the s_worker or
 * s_client (both start with int kind). */
static int peer_kind(dt_conn *c) { return c->data ? *(int *)c->data : 0; }

static s_client *client_by_id(uint32_t id) {
  for (size_t i = 0; i < S.s.clients.len; i++)
    if (((s_client *)S.s.clients.v[i])->id == id) return S.s.clients.v[i];
  return NULL;
}

/* ---------------------------------------------------------------- hello */

static int on_hello_client(dt_conn *c, uint32_t nf, dt_rd *r) {
  uint64_t version;
  const char *name;
  uint32_t nlen;
  if (nf < 2 || dt__rd_uint(r, &version) || dt__rd_str(r, &name, &nlen)) return DT_EPROTO;
  if (version != DT_PROTO_VERSION) {
    DT_WARN("client %s speaks protocol %llu, not %d", c->peer, (unsigned long long)version,
            DT_PROTO_VERSION);
    return DT_EPROTO;
  }
  char nm[128];
  snprintf(nm, sizeof(nm), "%.*s", (int)nlen, name);
  s_client *cl = dt__sched_add_client(&S.s, c, nm);
  c->data = cl;
  dt__conn_admit(c);
  dt_wbuf *w = dt__conn_out(c);
  dt__wb_msg(w, DT_OP_WELCOME, 1);
  dt__wb_uint(w, cl->id);
  DT_INFO("client %s connected from %s", nm, c->peer);
  return 0;
}

static int on_hello_worker(dt_conn *c, uint32_t nf, dt_rd *r) {
  uint64_t version, nthreads;
  const char *name, *addr;
  uint32_t nlen, alen, nres;
  if (nf < 5 || dt__rd_uint(r, &version) || dt__rd_str(r, &name, &nlen) || dt__rd_str(r, &addr, &alen) ||
      dt__rd_uint(r, &nthreads) || dt__rd_map(r, &nres))
    return DT_EPROTO;
  if (version != DT_PROTO_VERSION || alen == 0 || alen > 200 || nlen > 200 || nthreads == 0 ||
      nthreads > 4096 || nres > 64)
    return DT_EPROTO;
  char **rn = nres ? dt__xcalloc(nres, sizeof(char *)) : NULL;
  double *ra = nres ? dt__xcalloc(nres, sizeof(double)) : NULL;
  for (uint32_t i = 0; i < nres; i++) {
    const char *k;
    uint32_t kl;
    if (dt__rd_str(r, &k, &kl) || dt__rd_double(r, &ra[i])) {
      for (uint32_t j = 0; j < i; j++) free(rn[j]);
      free(rn);
      free(ra);
      return DT_EPROTO;
    }
    rn[i] = dt__xstrndup(k, kl);
  }
  uint64_t pid = 0, token = 0;
  uint32_t nheld = 0;
  if (nf >= 8 && (dt__rd_uint(r, &pid) || dt__rd_uint(r, &token) || dt__rd_array(r, &nheld))) {
    dt__resources_free(rn, ra, nres);
    return DT_EPROTO;
  }
  char nm[256], ad[256];
  snprintf(nm, sizeof(nm), "%.*s", (int)nlen, name);
  snprintf(ad, sizeof(ad), "%.*s", (int)alen, addr);
  s_worker *wk = dt__sched_add_worker_only(&S.s, c, nm, ad, (int)nthreads, rn, ra, nres);
  wk->last_seen = (double)uv_now(&S.loop) / 1e3;
  wk->pid = pid <= INT32_MAX ? (int)pid : 0;
  wk->nanny_token = token;
  c->data = wk;
  dt__conn_admit(c);
  dt_wbuf *w = dt__conn_out(c);
  dt__wb_msg(w, DT_OP_WELCOME, 3);
  dt__wb_uint(w, wk->id);
  dt__wb_uint(w, (uint64_t)S.heartbeat_ms);
  dt__wb_uint(w, (uint64_t)(S.worker_ttl_s * 1000));
  /* a worker coming back after losing us: what it still holds counts */
  for (uint32_t i = 0; i < nheld; i++) {
    uint32_t m, klen;
    const char *key;
    uint64_t nbytes;
    if (dt__rd_array(r, &m) || m != 2 || dt__rd_key(r, &key, &klen) || dt__rd_uint(r, &nbytes))
      return DT_EPROTO;
    dt__sched_worker_has_key(&S.s, wk, key, klen, nbytes);
  }
  dt__sched_worker_place(&S.s, wk);
  DT_INFO("worker %s registered at %s with %d threads%s%s", nm, ad, (int)nthreads,
          token ? " (under a nanny)" : "", nheld ? ", holding results from before" : "");
  return 0;
}

/* ---------------------------------------------------------------- clients */

typedef struct {
  const char **keys;
  uint32_t *lens;
  uint32_t n;
} keylist;

static int rd_keylist(dt_rd *r, keylist *kl) {
  memset(kl, 0, sizeof(*kl));
  if (dt__rd_array(r, &kl->n)) return DT_EPROTO;
  if (kl->n == 0) return 0; /* most tasks: no dependencies, no restrictions */
  kl->keys = dt__xmalloc(kl->n * sizeof(*kl->keys));
  kl->lens = dt__xmalloc(kl->n * sizeof(*kl->lens));
  for (uint32_t i = 0; i < kl->n; i++)
    if (dt__rd_key(r, &kl->keys[i], &kl->lens[i])) return DT_EPROTO;
  return 0;
}
static void keylist_free(keylist *kl) {
  free(kl->keys);
  free(kl->lens);
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

static int rd_newtask(dt_rd *r, s_newtask *t) {
  uint32_t n;
  int64_t prio, retries;
  memset(t, 0, sizeof(*t));
  if (dt__rd_array(r, &n) || n != 11) return DT_EPROTO;
  if (dt__rd_key(r, &t->key, &t->klen) || dt__rd_str(r, &t->func, &t->flen) || t->flen == 0 ||
      t->flen > 256 || dt__rd_payload(r, &t->spec))
    return DT_EPROTO;
  keylist deps;
  if (rd_keylist(r, &deps)) {
    keylist_free(&deps);
    return DT_EPROTO;
  }
  t->dep_keys = deps.keys;
  t->dep_lens = deps.lens;
  t->ndeps = deps.n;
  if (dt__rd_int(r, &prio) || dt__rd_int(r, &retries) || retries < 0 || retries > 1000000) return DT_EPROTO;
  t->priority = prio > INT32_MAX ? INT32_MAX : prio < INT32_MIN ? INT32_MIN : (int32_t)prio;
  t->retries = (int)retries;
  keylist wk;
  if (rd_keylist(r, &wk)) {
    keylist_free(&wk);
    return DT_EPROTO;
  }
  t->restrict_to = wk.keys;
  t->restrict_lens = wk.lens;
  t->nrestrict = wk.n;
  if (dt__rd_bool(r, &t->loose) || dt__rd_map(r, &t->nres) || t->nres > 64) return DT_EPROTO;
  if (t->nres == 0) return 0;
  t->res_names = dt__xmalloc(t->nres * sizeof(char *));
  t->res_name_lens = dt__xmalloc(t->nres * sizeof(uint32_t));
  t->res_amounts = dt__xmalloc(t->nres * sizeof(double));
  for (uint32_t i = 0; i < t->nres; i++)
    if (dt__rd_key(r, &t->res_names[i], &t->res_name_lens[i]) || dt__rd_double(r, &t->res_amounts[i]))
      return DT_EPROTO;
  return 0;
}

static int on_update_graph(dt_conn *c, uint32_t nf, dt_rd *r) {
  uint32_t n;
  if (nf < 2 || dt__rd_array(r, &n)) return DT_EPROTO;
  s_newtask *ts = dt__xcalloc(n ? n : 1, sizeof(*ts));
  int rc = 0;
  uint32_t got = 0;
  for (; got < n; got++)
    if ((rc = rd_newtask(r, &ts[got])) != 0) {
      got++;
      break;
    }
  keylist wanted = {0};
  if (rc == 0) rc = rd_keylist(r, &wanted);
  if (rc == 0) dt__sched_update_graph(&S.s, c->data, ts, n, wanted.keys, wanted.lens, wanted.n);
  if (S.s.tasks.len > S.trim_high) S.trim_high = S.s.tasks.len;
  for (uint32_t i = 0; i < got; i++) newtask_free(&ts[i]);
  free(ts);
  keylist_free(&wanted);
  return rc;
}

static int on_keys(dt_conn *c, uint32_t nf, dt_rd *r,
                   void (*fn)(sched *, s_client *, const char *, uint32_t)) {
  keylist kl;
  int rc = nf < 1 ? DT_EPROTO : rd_keylist(r, &kl);
  if (rc == 0)
    for (uint32_t i = 0; i < kl.n; i++) fn(&S.s, c->data, kl.keys[i], kl.lens[i]);
  if (nf >= 1) keylist_free(&kl);
  return rc;
}
static int on_release_keys(dt_conn *c, uint32_t nf, dt_rd *r) {
  return on_keys(c, nf, r, dt__sched_client_release);
}
static int on_want_keys(dt_conn *c, uint32_t nf, dt_rd *r) {
  return on_keys(c, nf, r, dt__sched_client_want);
}
static int on_cancel_keys(dt_conn *c, uint32_t nf, dt_rd *r) {
  return on_keys(c, nf, r, dt__sched_client_cancel);
}
static int on_who_has(dt_conn *c, uint32_t nf, dt_rd *r) {
  return on_keys(c, nf, r, dt__sched_client_who_has);
}
static int on_want_result(dt_conn *c, uint32_t nf, dt_rd *r) {
  return on_keys(c, nf, r, dt__sched_client_want_result);
}

static void scatter_reply(pending_scatter *ps) {
  s_client *cl = client_by_id(ps->client_id);
  if (cl && cl->conn) {
    dt_wbuf *w = dt__conn_out(cl->conn);
    dt__wb_msg(w, DT_OP_SCATTER_DONE, 2);
    dt__wb_uint(w, ps->client_req);
    dt__wb_cstr(w, ps->error);
  }
  dt__vec_remove(&S.scatters, ps);
  dt__vec_free(&ps->workers);
  free(ps->error);
  free(ps);
}

static int on_scatter(dt_conn *c, uint32_t nf, dt_rd *r) {
  uint64_t req;
  uint32_t n;
  if (nf < 4 || dt__rd_uint(r, &req) || dt__rd_array(r, &n)) return DT_EPROTO;
  s_client *cl = c->data;
  typedef struct { const char *key; uint32_t klen; dt_payload p; } item;
  item *items = dt__xcalloc(n ? n : 1, sizeof(*items));
  int rc = 0;
  uint32_t got = 0;
  for (; got < n && rc == 0; got++) {
    uint32_t m;
    if (dt__rd_array(r, &m) || m != 4 || dt__rd_key(r, &items[got].key, &items[got].klen) ||
        dt__rd_payload(r, &items[got].p))
      rc = DT_EPROTO;
  }
  keylist wl = {0};
  bool broadcast = false;
  if (rc == 0) rc = rd_keylist(r, &wl);
  if (rc == 0) rc = dt__rd_bool(r, &broadcast);
  if (rc == 0) {
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
    ps->client_req = req;
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
        dt_wbuf *o = dt__conn_out(w->conn);
        dt__wb_msg(o, DT_OP_PUT_DATA, 2);
        dt__wb_uint(o, ps->id);
        dt__wb_array(o, cnt);
        for (uint32_t i = 0; i < n; i++)
          if (broadcast || (start + i) % targets.len == ti) {
            dt__wb_array(o, 4);
            dt__wb_str(o, items[i].key, items[i].klen);
            dt__wb_payload(o, &items[i].p);
          }
        dt__vec_push(&ps->workers, (void *)(uintptr_t)w->id);
      }
    }
    dt__vec_free(&targets);
  }
  for (uint32_t i = 0; i < got; i++) dt__payload_clear(&items[i].p);
  free(items);
  keylist_free(&wl);
  return rc;
}

static int on_info_request(dt_conn *c, uint32_t nf, dt_rd *r) {
  uint64_t req;
  bool detail = false;
  if (nf < 1 || dt__rd_uint(r, &req)) return DT_EPROTO;
  if (nf >= 2 && dt__rd_bool(r, &detail)) return DT_EPROTO;
  dt_wbuf *w = dt__conn_out(c);
  dt__wb_msg(w, DT_OP_INFO_REPLY, detail ? 3 : 2);
  dt__wb_uint(w, req);
  dt__wb_map(w, 5 + TS_COUNT);
  dt__wb_cstr(w, "workers");
  dt__wb_uint(w, S.s.workers.len);
  dt__wb_cstr(w, "clients");
  dt__wb_uint(w, S.s.clients.len);
  dt__wb_cstr(w, "tasks");
  dt__wb_uint(w, S.s.tasks.len);
  dt__wb_cstr(w, "completed");
  dt__wb_uint(w, S.s.tasks_completed);
  double now = (double)uv_now(&S.loop) / 1e3, age = 0;
  for (size_t i = 0; i < S.s.workers.len; i++) {
    double a = now - ((s_worker *)S.s.workers.v[i])->last_seen;
    if (a > age) age = a;
  }
  dt__wb_cstr(w, "heartbeat_age_us");
  dt__wb_uint(w, (uint64_t)(age * 1e6));
  for (int st = 0; st < TS_COUNT; st++) {
    dt__wb_cstr(w, dt__task_state_name(st));
    dt__wb_int(w, S.s.count[st]);
  }
  if (detail) { /* one row per worker: O(workers), asked for rarely */
    dt__wb_array(w, (uint32_t)S.s.workers.len);
    for (size_t i = 0; i < S.s.workers.len; i++) {
      s_worker *wk = S.s.workers.v[i];
      dt__wb_array(w, 13);
      dt__wb_cstr(w, wk->name);
      dt__wb_cstr(w, wk->address);
      dt__wb_uint(w, (uint64_t)wk->nthreads);
      dt__wb_uint(w, (uint64_t)wk->pid);
      dt__wb_uint(w, wk->processing.len);
      dt__wb_uint(w, wk->nkeys);
      dt__wb_uint(w, wk->nbytes);
      dt__wb_uint(w, (uint64_t)((now - wk->last_seen) * 1e3));
      dt__wb_uint(w, wk->spilled);
      dt__wb_bool(w, wk->paused);
      dt__wb_uint(w, wk->rss);
      dt__wb_uint(w, wk->managed);
      dt__wb_uint(w, wk->peak_managed);
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- retiring */

static void retire_reply(retire_req *rr) {
  s_client *cl = client_by_id(rr->client_id);
  if (cl && cl->conn) {
    dt_wbuf *w = dt__conn_out(cl->conn);
    dt__wb_msg(w, DT_OP_RETIRE_DONE, 3);
    dt__wb_uint(w, rr->client_req);
    dt__wb_uint(w, rr->retired);
    dt__wb_cstr(w, rr->error);
  }
  free(rr->error);
  free(rr);
}

/* a retiring worker has nothing left that only it holds: close it */
static void retire_finish(s_worker *w) {
  retire_req *rr = w->retire;
  w->retire = NULL;
  w->closing = true; /* leaving on purpose: its running tasks are not suspects */
  dt_wbuf *o = dt__conn_out(w->conn);
  dt__wb_msg(o, DT_OP_CLOSE, 1);
  dt__wb_cstr(o, "retired");
  DT_INFO("worker %s (%s) retired", w->name, w->address);
  if (rr) {
    rr->retired++;
    if (--rr->pending == 0) retire_reply(rr);
  }
}

static int on_retire_workers(dt_conn *c, uint32_t nf, dt_rd *r) {
  uint64_t req;
  keylist kl;
  if (nf < 2 || dt__rd_uint(r, &req)) return DT_EPROTO;
  if (rd_keylist(r, &kl)) {
    keylist_free(&kl);
    return DT_EPROTO;
  }
  retire_req *rr = dt__xcalloc(1, sizeof(*rr));
  rr->client_req = req;
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

static int on_acquired(dt_conn *c, uint32_t nf, dt_rd *r) {
  uint32_t n;
  if (nf < 1 || dt__rd_array(r, &n)) return DT_EPROTO;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t m, klen;
    const char *key;
    uint64_t nbytes, src;
    bool ok;
    if (dt__rd_array(r, &m) || m != 4 || dt__rd_key(r, &key, &klen) || dt__rd_uint(r, &nbytes) ||
        dt__rd_bool(r, &ok) || dt__rd_uint(r, &src))
      return DT_EPROTO;
    if (ok) dt__sched_worker_has_key(&S.s, c->data, key, klen, nbytes);
    s_worker *from = NULL;
    for (size_t k = 0; k < S.s.workers.len && !from; k++)
      if (((s_worker *)S.s.workers.v[k])->id == src) from = S.s.workers.v[k];
    if (from && from->retiring && from->moving > 0 && --from->moving == 0) retire_finish(from);
  }
  return 0;
}

/* ---------------------------------------------------------------- workers */

static int on_task_finished(dt_conn *c, uint32_t nf, dt_rd *r) {
  const char *key;
  uint32_t klen;
  uint64_t nbytes, dur_us;
  const char *inl = NULL;
  uint32_t ilen = 0;
  if (nf < 4 || dt__rd_key(r, &key, &klen) || dt__rd_uint(r, &nbytes) || dt__rd_uint(r, &dur_us))
    return DT_EPROTO;
  if (!dt__rd_is_nil(r) && (dt__rd_bin(r, &inl, &ilen) || ilen > DT_INLINE_MAX)) return DT_EPROTO;
  dt__sched_task_finished(&S.s, c->data, key, klen, nbytes, (double)dur_us / 1e6, inl, ilen);
  return 0;
}

static int on_task_erred(dt_conn *c, uint32_t nf, dt_rd *r) {
  const char *key, *func, *msg;
  uint32_t klen, flen, mlen;
  int64_t code;
  if (nf < 4 || dt__rd_key(r, &key, &klen) || dt__rd_int(r, &code) || dt__rd_str(r, &func, &flen) ||
      dt__rd_str(r, &msg, &mlen))
    return DT_EPROTO;
  char *f = dt__xstrndup(func, flen > 256 ? 256 : flen);
  char *m = dt__xstrndup(msg, mlen > 8192 ? 8192 : mlen);
  if (code >= 0 || code < -1000) code = DT_ETASK;
  dt__sched_task_erred(&S.s, c->data, key, klen, (int)code, f, m);
  free(f);
  free(m);
  return 0;
}

static int on_missing_data(dt_conn *c, uint32_t nf, dt_rd *r) {
  const char *key, *dep, *addr = NULL;
  uint32_t klen, dlen, alen = 0;
  if (nf < 2 || dt__rd_key(r, &key, &klen) || dt__rd_key(r, &dep, &dlen)) return DT_EPROTO;
  if (nf >= 3 && dt__rd_str(r, &addr, &alen)) return DT_EPROTO;
  char ad[256];
  snprintf(ad, sizeof(ad), "%.*s", (int)(alen < 255 ? alen : 255), addr ? addr : "");
  DT_INFO("worker %s could not fetch %.*s (from %s) for %.*s", c->peer, (int)dlen, dep, ad,
          (int)klen, key);
  dt__sched_missing_data(&S.s, c->data, key, klen, dep, dlen, ad[0] ? ad : NULL);
  return 0;
}

static int on_put_data_done(dt_conn *c, uint32_t nf, dt_rd *r) {
  uint64_t req;
  uint32_t n;
  s_worker *wk = c->data;
  if (nf < 2 || dt__rd_uint(r, &req) || dt__rd_array(r, &n)) return DT_EPROTO;
  pending_scatter *ps = NULL;
  for (size_t i = 0; i < S.scatters.len && !ps; i++)
    if (((pending_scatter *)S.scatters.v[i])->id == req) ps = S.scatters.v[i];
  s_client *cl = ps ? client_by_id(ps->client_id) : NULL;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t m, klen;
    const char *key;
    uint64_t nbytes;
    if (dt__rd_array(r, &m) || m != 2 || dt__rd_key(r, &key, &klen) || dt__rd_uint(r, &nbytes))
      return DT_EPROTO;
    dt__sched_scatter_key(&S.s, cl, wk, key, klen, nbytes);
  }
  if (ps && dt__vec_remove(&ps->workers, (void *)(uintptr_t)wk->id) && ps->workers.len == 0)
    scatter_reply(ps);
  return 0;
}

static int on_heartbeat(dt_conn *c, uint32_t nf, dt_rd *r) {
  s_worker *wk = c->data;
  int64_t ex, rd_, nk, nb;
  if (nf < 4 || dt__rd_int(r, &ex) || dt__rd_int(r, &rd_) || dt__rd_int(r, &nk) || dt__rd_int(r, &nb))
    return DT_EPROTO;
  wk->executing = ex;
  wk->ready = rd_;
  wk->managed = nb > 0 ? (uint64_t)nb : 0;
  double cpu;
  uint64_t rss;
  if (nf >= 6 && !dt__rd_double(r, &cpu) && !dt__rd_uint(r, &rss)) {
    wk->cpu = cpu >= 0 && cpu < 1e6 ? cpu : 0;
    wk->rss = rss;
  }
  uint64_t spilled;
  bool paused;
  if (nf >= 8 && !dt__rd_uint(r, &spilled) && !dt__rd_bool(r, &paused)) {
    wk->spilled = spilled;
    if (paused != wk->paused)
      DT_INFO("worker %s %s (memory)", wk->name, paused ? "paused" : "resumed");
    dt__sched_worker_paused(&S.s, wk, paused);
  }
  uint64_t peak;
  if (nf >= 9 && !dt__rd_uint(r, &peak)) wk->peak_managed = peak;
  return 0;
}

static int on_close_msg(dt_conn *c, uint32_t nf, dt_rd *r) {
  (void)nf;
  (void)r;
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
static int on_nanny_report(dt_conn *c, uint32_t nf, dt_rd *r) {
  uint64_t token, pid;
  const char *how;
  uint32_t hlen;
  keylist kl;
  if (nf < 4 || dt__rd_uint(r, &token) || dt__rd_uint(r, &pid) || dt__rd_str(r, &how, &hlen)) return DT_EPROTO;
  if (rd_keylist(r, &kl)) {
    keylist_free(&kl);
    return DT_EPROTO;
  }
  char hw[200], who[300];
  snprintf(hw, sizeof(hw), "%.*s", (int)(hlen > 150 ? 150 : hlen), how);
  snprintf(who, sizeof(who), "pid %llu on %s", (unsigned long long)pid, c->peer);
  s_worker *gone = NULL;
  for (size_t i = 0; i < S.s.workers.len && token && !gone; i++)
    if (((s_worker *)S.s.workers.v[i])->nanny_token == token) gone = S.s.workers.v[i];
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
    dt__wb_msg(dt__conn_out(w->conn), DT_OP_HEARTBEAT, 0);
  }
}

/* ---------------------------------------------------------------- dispatch */

typedef int (*handler_fn)(dt_conn *, uint32_t, dt_rd *);
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
  return handlers[op].fn(c, nf, r);
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
    dt_wbuf *o = dt__conn_out(w->conn);
    dt__wb_msg(o, DT_OP_CLOSE, 1);
    dt__wb_cstr(o, "scheduler closing");
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
  dt__wb_msg(&w, DT_OP_HELLO_CLIENT, 2);
  dt__wb_uint(&w, DT_PROTO_VERSION);
  dt__wb_cstr(&w, "fuzz-client");
  dt__wb_msg(&w, DT_OP_HELLO_WORKER, 8);
  dt__wb_uint(&w, DT_PROTO_VERSION);
  dt__wb_cstr(&w, "fuzz-worker");
  dt__wb_cstr(&w, "127.0.0.1:1");
  dt__wb_uint(&w, 2);
  dt__wb_map(&w, 1);
  dt__wb_cstr(&w, "GPU");
  dt__wb_double(&w, 1);
  dt__wb_uint(&w, 4242);
  dt__wb_uint(&w, 7);
  dt__wb_array(&w, 0);
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
