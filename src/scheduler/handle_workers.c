/*
 * handle_workers.c -- the messages from workers and nannies (see
 * server.h): hello (with the results a returning worker holds), a task
 * finished or failed, a dependency it could not fetch, heartbeats, closing,
 * and a nanny's report of its worker's death; and removing a worker the
 * scheduler gives up on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "server.h"

static dt_srv *const srv = &dt__srv;

int dt__on_hello_worker(dt_conn *c, const dt_msg *msg) {
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
  s_worker *wk = dt__sched_add_worker_only(&srv->s, c, nm, ad, (int)m->nthreads, rn, ra, nres);
  wk->last_seen = (double)uv_now(&srv->loop) / 1e3;
  wk->pid = m->pid <= INT32_MAX ? (int)m->pid : 0;
  wk->nanny_token = m->nanny_token;
  wk->memory_limit = m->memory_limit;
  c->data = wk;
  dt__conn_admit(c);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_WELCOME);
  dt__e_uint(&e, wk->id);
  dt__e_uint(&e, (uint64_t)srv->heartbeat_ms);
  dt__e_uint(&e, (uint64_t)(srv->worker_ttl_s * 1000));
  dt__e_end(&e);
  dt__srv_plugins_welcome(c); /* before any task */
  /* a worker coming back after losing us: what it still holds counts
   * (the events follow the WELCOME, drained after this handler) */
  dt_list held = m->held;
  dt_rec_keynb h;
  DT_JOURNAL(dt__journal_worker_back(wk, false));
  while (dt__next_keynb(&held, &h)) dt__sched_worker_has_key(&srv->s, wk, h.key.p, h.key.len, h.nbytes);
  DT_JOURNAL(dt__journal_worker_back(wk, true));
  dt__sched_worker_place(&srv->s, wk);
  DT_INFO("worker %s registered at %s with %d threads%s%s", nm, ad, (int)m->nthreads,
          m->nanny_token ? " (under a nanny)" : "", m->held.n ? ", holding results from before" : "");
  return 0;
}

int dt__on_task_finished(dt_conn *c, const dt_msg *msg) {
  const dt_msg_TASK_FINISHED *m = &msg->TASK_FINISHED;
  if (m->inline_.p && m->inline_.len > DT_INLINE_MAX) return DT_EPROTO;
  dt__query_task_done(c->data, m->key.p, m->key.len, m->nbytes, (double)m->duration_us / 1e6, true);
  dt__sched_task_finished(&srv->s, c->data, m->key.p, m->key.len, m->nbytes, (double)m->duration_us / 1e6,
                          m->inline_.p, m->inline_.len);
  dt__sched_ff_done(&srv->s, m->key.p, m->key.len);
  return 0;
}

/* TASKS_FINISHED: what TASK_FINISHED does, for each record in order (the
 * events they cause are sent once, after the last); a bad record is refused
 * as a bad TASK_FINISHED is: the records before it count, as the messages
 * before a bad one would */
int dt__on_tasks_finished(dt_conn *c, const dt_msg *msg) {
  const dt_msg_TASKS_FINISHED *m = &msg->TASKS_FINISHED;
  if (m->tasks.n == 0 || m->tasks.n > DT_FINISHED_MAX) return DT_EPROTO;
  dt_list l = m->tasks;
  dt_rec_fin f;
  while (dt__next_fin(&l, &f)) {
    if (f.inline_.p && f.inline_.len > DT_INLINE_MAX) return DT_EPROTO;
    dt__query_task_done(c->data, f.key.p, f.key.len, f.nbytes, (double)f.duration_us / 1e6, true);
    dt__sched_task_finished(&srv->s, c->data, f.key.p, f.key.len, f.nbytes, (double)f.duration_us / 1e6,
                            f.inline_.p, f.inline_.len);
    dt__sched_ff_done(&srv->s, f.key.p, f.key.len);
  }
  return 0;
}

int dt__on_task_erred(dt_conn *c, const dt_msg *msg) {
  const dt_msg_TASK_ERRED *m = &msg->TASK_ERRED;
  char *f = dt__str_dup(m->function, 256);
  char *s = dt__str_dup(m->message, 8192);
  int64_t code = m->code;
  if (code >= 0 || code < -1000) code = DT_ETASK;
  dt__query_task_done(c->data, m->key.p, m->key.len, 0, 0, false);
  dt__sched_task_erred(&srv->s, c->data, m->key.p, m->key.len, (int)code, f, s);
  dt__sched_ff_done(&srv->s, m->key.p, m->key.len);
  free(f);
  free(s);
  return 0;
}

int dt__on_missing_data(dt_conn *c, const dt_msg *msg) {
  const dt_msg_MISSING_DATA *m = &msg->MISSING_DATA;
  char ad[256];
  snprintf(ad, sizeof(ad), "%.*s", (int)(m->address.len < 255 ? m->address.len : 255), m->address.p);
  DT_INFO("worker %s could not fetch %.*s (from %s) for %.*s", c->peer, (int)m->dep.len, m->dep.p,
          ad, (int)m->key.len, m->key.p);
  dt__sched_missing_data(&srv->s, c->data, m->key.p, m->key.len, m->dep.p, m->dep.len, ad[0] ? ad : NULL);
  return 0;
}


int dt__on_heartbeat(dt_conn *c, const dt_msg *msg) {
  const dt_msg_HEARTBEAT *m = &msg->HEARTBEAT;
  s_worker *wk = c->data;
  wk->executing = m->executing;
  wk->ready = m->ready;
  wk->managed = m->nbytes > 0 ? (uint64_t)m->nbytes : 0;
  wk->cpu = m->cpu >= 0 && m->cpu < 1e6 ? m->cpu : 0;
  wk->rss = m->rss;
  wk->spilled = m->spilled;
  if (m->paused != wk->paused && !dt__journal_recovering())
    DT_INFO("worker %s %s (memory)", wk->name, m->paused ? "paused" : "resumed");
  dt__sched_worker_paused(&srv->s, wk, m->paused || dt__journal_recovering());
  wk->peak_managed = m->peak;
  return 0;
}

int dt__on_close_msg(dt_conn *c, const dt_msg *m) {
  (void)m;
  if (dt__srv_peer_kind(c) == PEER_WORKER) ((s_worker *)c->data)->closing = true;
  dt__conn_close(c, true);
  return 0;
}



void dt__srv_drop_worker(s_worker *w, bool suspicious) {
  dt_conn *c = w->conn;
  dt__srv_worker_leaves(w);
  c->data = NULL; /* on_conn_close: nothing more to do */
  dt__conn_close(c, false);
  dt__sched_remove_worker(&srv->s, w, suspicious);
}

/* A nanny's worker died: it says which keys were running (read from memory
 * it shares with the worker), so only those count towards KilledWorker. */
int dt__on_nanny_report(dt_conn *c, const dt_msg *msg) {
  const dt_msg_NANNY_REPORT *m = &msg->NANNY_REPORT;
  dt_keylist kl;
  dt__keylist_of(&m->keys, &kl);
  char hw[200], who[300];
  snprintf(hw, sizeof(hw), "%.*s", (int)(m->how.len > 150 ? 150 : m->how.len), m->how.p);
  snprintf(who, sizeof(who), "pid %llu on %s", (unsigned long long)m->pid, c->peer);
  s_worker *gone = NULL;
  for (size_t i = 0; i < srv->s.workers.len && m->token && !gone; i++)
    if (((s_worker *)srv->s.workers.v[i])->nanny_token == m->token) gone = srv->s.workers.v[i];
  if (gone) snprintf(who, sizeof(who), "%s", gone->address);
  DT_WARN("worker %s died: %s, while running %u task(s)", who, hw, kl.n);
  if (gone) dt__srv_drop_worker(gone, false); /* before its connection says so */
  dt__sched_worker_died(&srv->s, who, hw, kl.keys, kl.lens, kl.n);
  dt__keylist_free(&kl);
  dt__conn_close(c, true);
  return 0;
}

