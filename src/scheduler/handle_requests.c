/*
 * handle_requests.c -- the requests that span a client and workers (see
 * server.h).  Scatter: the client's data goes to workers (PUT_DATA), each
 * confirms (PUT_DATA_DONE), and the client hears SCATTER_DONE once all have
 * or one left.  Retire: each named worker's results that only it holds are
 * copied to another worker (ACQUIRE / ACQUIRED), then it is closed, and the
 * client hears RETIRE_DONE once all are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "server.h"

static dt_srv *const srv = &dt__srv;

static void scatter_reply(dt_scatter_req *ps) {
  s_client *cl = dt__srv_client_by_id(ps->client_id);
  if (cl && cl->conn) {
    dt__srv_emit(); /* after the KEY_IN_MEMORY of its keys */
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(cl->conn), DT_OP_SCATTER_DONE);
    dt__e_uint(&e, ps->client_req);
    dt__e_cstr(&e, ps->error);
    dt__e_end(&e);
  }
  dt__vec_remove(&srv->scatters, ps);
  dt__vec_free(&ps->workers);
  free(ps->error);
  free(ps);
}

int dt__on_scatter(dt_conn *c, const dt_msg *msg) {
  const dt_msg_SCATTER *m = &msg->SCATTER;
  uint32_t n = m->items.n;
  bool broadcast = m->broadcast;
  s_client *cl = c->data;
  dt_rec_keyval *items = dt__xcalloc(n ? n : 1, sizeof(*items));
  dt_list il = m->items;
  for (uint32_t i = 0; dt__next_keyval(&il, &items[i]); i++) {}
  dt_keylist wl = {0};
  dt__keylist_of(&m->workers, &wl);
  /* targets: the named workers, or every worker */
  dt_vec targets = {0};
  for (size_t i = 0; i < srv->s.workers.len; i++) {
    s_worker *w = srv->s.workers.v[i];
    bool ok = wl.n == 0;
    for (uint32_t k = 0; k < wl.n && !ok; k++)
      ok = (strlen(w->name) == wl.lens[k] && memcmp(w->name, wl.keys[k], wl.lens[k]) == 0) ||
           (strlen(w->address) == wl.lens[k] && memcmp(w->address, wl.keys[k], wl.lens[k]) == 0);
    if (ok) dt__vec_push(&targets, w);
  }
  dt_scatter_req *ps = dt__xcalloc(1, sizeof(*ps));
  ps->id = ++srv->next_scatter;
  ps->client_req = m->req;
  ps->client_id = cl->id;
  dt__vec_push(&srv->scatters, ps);
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
  dt__keylist_free(&wl);
  return 0;
}


int dt__on_put_data_done(dt_conn *c, const dt_msg *msg) {
  const dt_msg_PUT_DATA_DONE *m = &msg->PUT_DATA_DONE;
  s_worker *wk = c->data;
  dt_scatter_req *ps = NULL;
  for (size_t i = 0; i < srv->scatters.len && !ps; i++)
    if (((dt_scatter_req *)srv->scatters.v[i])->id == m->req) ps = srv->scatters.v[i];
  s_client *cl = ps ? dt__srv_client_by_id(ps->client_id) : NULL;
  dt_list l = m->stored;
  dt_rec_keynb it;
  while (dt__next_keynb(&l, &it)) dt__sched_scatter_key(&srv->s, cl, wk, it.key.p, it.key.len, it.nbytes);
  if (ps && dt__vec_remove(&ps->workers, (void *)(uintptr_t)wk->id) && ps->workers.len == 0)
    scatter_reply(ps);
  return 0;
}


void dt__srv_scatters_free_all(void) {
  for (size_t i = 0; i < srv->scatters.len; i++) {
    dt_scatter_req *ps = srv->scatters.v[i];
    dt__vec_free(&ps->workers);
    free(ps->error);
    free(ps);
  }
  dt__vec_free(&srv->scatters);
}

static void scatters_forget_worker(s_worker *w) {
  for (size_t i = srv->scatters.len; i-- > 0;) {
    dt_scatter_req *ps = srv->scatters.v[i];
    if (dt__vec_remove(&ps->workers, (void *)(uintptr_t)w->id)) {
      if (!ps->error) ps->error = dt__xstrdup("a worker left during scatter");
      if (ps->workers.len == 0) scatter_reply(ps);
    }
  }
}

/* ---------------------------------------------------------------- retiring */

static void retire_reply(dt_retire_req *rr) {
  s_client *cl = dt__srv_client_by_id(rr->client_id);
  if (cl && cl->conn) {
    dt__srv_emit();
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
  dt_retire_req *rr = w->retire;
  w->retire = NULL;
  w->closing = true; /* leaving on purpose: its running tasks are not suspects */
  dt__srv_send_close(w->conn, "retired");
  DT_INFO("worker %s (%s) retired", w->name, w->address);
  if (rr) {
    rr->retired++;
    if (--rr->pending == 0) retire_reply(rr);
  }
}

int dt__on_retire_workers(dt_conn *c, const dt_msg *msg) {
  const dt_msg_RETIRE_WORKERS *m = &msg->RETIRE_WORKERS;
  dt_keylist kl;
  dt__keylist_of(&m->names, &kl);
  dt_retire_req *rr = dt__xcalloc(1, sizeof(*rr));
  rr->client_req = m->req;
  rr->client_id = ((s_client *)c->data)->id;
  rr->pending = 1; /* held while we go through the list */
  for (uint32_t i = 0; i < kl.n; i++) {
    s_worker *w = NULL;
    for (size_t k = 0; k < srv->s.workers.len && !w; k++) {
      s_worker *o = srv->s.workers.v[k];
      if ((strlen(o->name) == kl.lens[i] && memcmp(o->name, kl.keys[i], kl.lens[i]) == 0) ||
          (strlen(o->address) == kl.lens[i] && memcmp(o->address, kl.keys[i], kl.lens[i]) == 0))
        w = o;
    }
    if (!w || w->retiring) continue; /* gone already, or on its way */
    int moving = dt__sched_retire_worker(&srv->s, w);
    if (moving < 0) {
      dt__sched_unretire_worker(&srv->s, w);
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
  dt__keylist_free(&kl);
  if (--rr->pending == 0) retire_reply(rr);
  return 0;
}

int dt__on_acquired(dt_conn *c, const dt_msg *msg) {
  dt_list l = msg->ACQUIRED.items;
  dt_rec_moved it;
  while (dt__next_moved(&l, &it)) {
    if (it.ok) dt__sched_worker_has_key(&srv->s, c->data, it.key.p, it.key.len, it.nbytes);
    dt__sched_moved(&srv->s, c->data, it.key.p, it.key.len, it.ok); /* rebalance */
    s_worker *from = NULL;
    for (size_t k = 0; k < srv->s.workers.len && !from; k++)
      if (((s_worker *)srv->s.workers.v[k])->id == it.source) from = srv->s.workers.v[k];
    if (from && from->retiring && from->moving > 0 && --from->moving == 0) retire_finish(from);
  }
  return 0;
}

/* ---------------------------------------------------------------- workers */


void dt__srv_worker_leaves(s_worker *w) {
  /* the others may be fetching from it (a stopped process keeps its
   * connections open): they give those fetches up now.  O(workers), rare. */
  for (size_t i = 0; i < srv->s.workers.len && !w->closing && !srv->stopping; i++) {
    s_worker *o = srv->s.workers.v[i];
    if (o == w || o->gone || !o->conn) continue;
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(o->conn), DT_OP_WORKER_GONE);
    dt__e_cstr(&e, w->address);
    dt__e_end(&e);
  }
  scatters_forget_worker(w);
  dt__query_worker_leaves(w);
  if (w->retire) { /* it went before it was done: count it anyway */
    dt_retire_req *rr = w->retire;
    w->retire = NULL;
    if (--rr->pending == 0) retire_reply(rr);
  }
}

/* ---------------------------------------------------------------- retiring itself */

/* RETIRE_ME: a worker whose lifetime is over (it drained first: it runs
 * nothing) asks to be retired, by the path RETIRE_WORKERS takes: the
 * results only it holds are copied to another worker, then it is told to
 * CLOSE; the tasks queued there but never started are placed elsewhere when
 * it leaves.  Only the sender retires (the connection says who it is); said
 * again while retiring or closing, nothing changes.  When no other worker
 * can take its results it is kept and asks again (attempt counts). */
int dt__on_retire_me(dt_conn *c, const dt_msg *msg) {
  const dt_msg_RETIRE_ME *m = &msg->RETIRE_ME;
  s_worker *w = c->data;
  if (!w || w->gone || w->closing || w->retiring) return 0;
  int rlen = m->reason.len > 100 ? 100 : (int)m->reason.len;
  int moving = dt__sched_retire_worker(&srv->s, w);
  if (moving < 0) {
    dt__sched_unretire_worker(&srv->s, w);
    if (m->attempt <= 1 || m->attempt % 60 == 0)
      DT_WARN("worker %s (%s) asks to retire (%.*s) but no other worker can take the results "
              "only it holds: kept until one can (attempt %llu)", w->name, w->address, rlen,
              m->reason.p, (unsigned long long)m->attempt);
    return 0;
  }
  DT_INFO("worker %s (%s) retires itself (%.*s): %d result(s) to move first", w->name,
          w->address, rlen, m->reason.p, moving);
  if (moving == 0) retire_finish(w);
  return 0;
}
