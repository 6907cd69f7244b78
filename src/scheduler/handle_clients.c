/*
 * handle_clients.c -- the messages from clients (see server.h): hello,
 * new graphs, wanting, releasing and cancelling keys, asking where a key
 * is, asking for results inline, and the cluster's counts.  Each checks
 * what the decoder cannot (lengths, ranges) and turns the message into
 * events of the state machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

static dt_srv *const srv = &dt__srv;

s_client *dt__srv_client_by_id(uint32_t id) {
  for (size_t i = 0; i < srv->s.clients.len; i++)
    if (((s_client *)srv->s.clients.v[i])->id == id) return srv->s.clients.v[i];
  return NULL;
}

int dt__on_hello_client(dt_conn *c, const dt_msg *msg) {
  const dt_msg_HELLO_CLIENT *m = &msg->HELLO_CLIENT;
  if (m->version != DT_PROTO_VERSION) {
    DT_WARN("client %s speaks protocol %llu, not %d", c->peer, (unsigned long long)m->version,
            DT_PROTO_VERSION);
    return DT_EPROTO;
  }
  char nm[128];
  snprintf(nm, sizeof(nm), "%.*s", (int)m->name.len, m->name.p);
  s_client *cl = dt__sched_add_client(&srv->s, c, nm);
  c->data = cl;
  dt__conn_admit_client(c);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_WELCOME);
  dt__e_uint(&e, cl->id);
  dt__e_uint(&e, 0);
  dt__e_uint(&e, 0);
  dt__e_end(&e);
  DT_JOURNAL(dt__journal_welcome(c));
  DT_INFO("client %s connected from %s", nm, c->peer);
  return 0;
}

void dt__keylist_free(dt_keylist *kl) {
  free(kl->keys);
  free(kl->lens);
}

void dt__keylist_of(const dt_list *l, dt_keylist *kl) {
  memset(kl, 0, sizeof(*kl));
  kl->n = l->n;
  if (kl->n == 0) return; /* most tasks: no dependencies, no restrictions */
  kl->keys = dt__xmalloc(kl->n * sizeof(*kl->keys));
  kl->lens = dt__xmalloc(kl->n * sizeof(*kl->lens));
  dt_list it = *l;
  dt_sv s;
  for (uint32_t i = 0; i < kl->n && (l->kind == DT_K_KEY ? dt__next_key(&it, &s) : dt__next_str(&it, &s)); i++) {
    kl->keys[i] = s.p;
    kl->lens[i] = s.len;
  }
}

int dt__newtask_of(const dt_rec_task *r, s_newtask *t) {
  memset(t, 0, sizeof(*t));
  if (r->func.len == 0 || r->func.len > 256 || r->retries < 0 || r->retries > 1000000 ||
      r->resources.n > 64)
    return DT_EPROTO;
  t->key = r->key.p;
  t->klen = r->key.len;
  t->func = r->func.p;
  t->flen = r->func.len;
  if (r->spec.nframes == 0) { /* nearly always: the task copies it from the message */
    t->spec.body = (char *)r->spec.body;
    t->spec.len = r->spec.len;
    t->spec_borrowed = true;
  } else {
    dt__pref_copy(&r->spec, &t->spec);
  }
  dt_keylist deps, wk;
  dt__keylist_of(&r->deps, &deps);
  t->dep_keys = deps.keys;
  t->dep_lens = deps.lens;
  t->ndeps = deps.n;
  t->priority = r->priority > INT32_MAX ? INT32_MAX : r->priority < INT32_MIN ? INT32_MIN : (int32_t)r->priority;
  t->retries = (int)r->retries;
  dt__keylist_of(&r->workers, &wk);
  t->restrict_to = wk.keys;
  t->restrict_lens = wk.lens;
  t->nrestrict = wk.n;
  t->loose = r->allow_other;
  if (!(r->timeout >= 0 && r->timeout < 1e9)) return DT_EPROTO;
  t->timeout = r->timeout;
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

void dt__newtask_free(s_newtask *t) {
  if (!t->spec_borrowed) dt__payload_clear(&t->spec);
  free(t->dep_keys);
  free(t->dep_lens);
  free(t->restrict_to);
  free(t->restrict_lens);
  free(t->res_names);
  free(t->res_name_lens);
  free(t->res_amounts);
}

int dt__on_update_graph(dt_conn *c, const dt_msg *msg) {
  const dt_msg_UPDATE_GRAPH *m = &msg->UPDATE_GRAPH;
  uint32_t n = m->tasks.n;
  s_newtask *ts = dt__xcalloc(n ? n : 1, sizeof(*ts));
  int rc = 0;
  uint32_t got = 0;
  dt_list tl = m->tasks;
  dt_rec_task rt;
  /* each task's bytes as sent, for the journal (JR_TASKW) */
  const char **raw = dt__journal_on ? dt__xmalloc((n ? n : 1) * sizeof(char *)) : NULL;
  uint32_t *raw_lens = raw ? dt__xmalloc((n ? n : 1) * sizeof(uint32_t)) : NULL;
  for (const char *p0 = tl.r.p; rc == 0 && dt__next_task(&tl, &rt); p0 = tl.r.p) {
    if (raw) {
      raw[got] = p0;
      raw_lens[got] = (uint32_t)(tl.r.p - p0);
    }
    rc = dt__newtask_of(&rt, &ts[got++]);
  }
  dt_keylist wanted = {0};
  if (rc == 0) dt__keylist_of(&m->wanted, &wanted);
  if (rc == 0)
    DT_JOURNAL(dt__journal_graph(c->data, ts, n, wanted.keys, wanted.lens, wanted.n, raw, raw_lens));
  free(raw);
  free(raw_lens);
  if (rc == 0) dt__sched_update_graph(&srv->s, c->data, ts, n, wanted.keys, wanted.lens, wanted.n);
  if (srv->s.tasks.len > srv->trim_high) srv->trim_high = srv->s.tasks.len;
  for (uint32_t i = 0; i < got; i++) dt__newtask_free(&ts[i]);
  free(ts);
  dt__keylist_free(&wanted);
  return rc;
}

static int on_keys(dt_conn *c, const dt_list *keys,
                   void (*fn)(sched *, s_client *, const char *, uint32_t)) {
  dt_list l = *keys;
  dt_sv k;
  while (dt__next_key(&l, &k)) fn(&srv->s, c->data, k.p, k.len);
  return 0;
}
int dt__on_release_keys(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->RELEASE_KEYS.keys, dt__sched_client_release);
}
int dt__on_want_keys(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->WANT_KEYS.keys, dt__sched_client_want);
}
int dt__on_cancel_keys(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->CANCEL_KEYS.keys, dt__sched_client_cancel);
}
int dt__on_who_has(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->WHO_HAS.keys, dt__sched_client_who_has);
}
int dt__on_want_result(dt_conn *c, const dt_msg *m) {
  return on_keys(c, &m->WANT_RESULT.keys, dt__sched_client_want_result);
}

int dt__on_sync(dt_conn *c, const dt_msg *msg) {
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_SYNCED);
  dt__e_uint(&e, msg->SYNC.req);
  dt__e_end(&e);
  return 0;
}

int dt__on_info_request(dt_conn *c, const dt_msg *msg) {
  const dt_msg_INFO_REQUEST *m = &msg->INFO_REQUEST;
  bool detail = m->detail;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_INFO_REPLY);
  dt__e_uint(&e, m->req);
  dt__e_map(&e, 8 + TS_COUNT);
  dt__e_cstr(&e, "workers");
  dt__e_uint(&e, srv->s.workers.len);
  dt__e_cstr(&e, "clients");
  dt__e_uint(&e, srv->s.clients.len);
  dt__e_cstr(&e, "tasks");
  dt__e_uint(&e, srv->s.tasks.len);
  dt__e_cstr(&e, "completed");
  dt__e_uint(&e, srv->s.tasks_completed);
  double now = (double)uv_now(&srv->loop) / 1e3, age = 0;
  for (size_t i = 0; i < srv->s.workers.len; i++) {
    double a = now - ((s_worker *)srv->s.workers.v[i])->last_seen;
    if (a > age) age = a;
  }
  dt__e_cstr(&e, "heartbeat_age_us");
  dt__e_uint(&e, (uint64_t)(age * 1e6));
  dt__journal_info(&e); /* 3 entries */
  for (int st = 0; st < TS_COUNT; st++) {
    dt__e_cstr(&e, dt__task_state_name(st));
    dt__e_int(&e, srv->s.count[st]);
  }
  /* one row per worker: O(workers), asked for rarely */
  uint32_t nrows = detail ? (uint32_t)srv->s.workers.len : 0;
  dt__e_list(&e, nrows);
  for (uint32_t i = 0; i < nrows; i++) {
    s_worker *wk = srv->s.workers.v[i];
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
    dt__e_uint(&e, wk->memory_limit);
    dt__e_map(&e, wk->nres);
    for (uint32_t j = 0; j < wk->nres; j++) {
      dt__e_cstr(&e, wk->res_names[j]);
      dt__e_double(&e, wk->res_amounts[j]);
    }
    dt__e_double(&e, wk->cpu);
  }
  dt__e_end(&e);
  return 0;
}
