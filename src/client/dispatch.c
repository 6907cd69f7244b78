/*
 * dispatch.c -- the messages a client takes from the scheduler: one handler
 * each, found through a table indexed by op (sched_handlers); every message
 * is decoded and checked (dt__msg_read) before its handler runs.  All of
 * this runs on the I/O thread, locked, and may abort on out of memory (see
 * client.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "../proto/alloc.h"

static int on_welcome(dt_client *c, const dt_msg *m) {
  c->id = m->WELCOME.id;
  c->state = CS_READY;
  c->wake_waiters = true;
  if (c->resuming) dt__client_resume(c);
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
  /* lost and found again, or failed and retried (Client.retry of a dependent) */
  if (f->status == DT_ERROR) f->status = DT_PENDING;
  dt__future_finish(f, DT_FINISHED);
  if (f->want_value) (void)dt__client_want_fetch(c, f); /* no memory: a waiter queues it */
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

/* SYNCED: the request waiting for it (an info_req without the info) is done */
static int on_synced(dt_client *c, const dt_msg *msg) {
  for (size_t i = 0; i < c->infos.len; i++) {
    info_req *ir = c->infos.v[i];
    if (ir->req == msg->SYNCED.req) ir->done = true;
  }
  c->wake_waiters = true;
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
    if (dt__str_eq(k, "journal_bytes")) out->journal_bytes = v;
    if (dt__str_eq(k, "journal_compactions")) out->journal_compactions = v;
    if (dt__str_eq(k, "journal_replay_us")) out->journal_replay_s = (double)v / 1e6;
  }
  if (ir && ir->detail) {
    uint32_t nw = m->workers.n;
    ir->workers = dt__try_calloc(nw ? nw : 1, sizeof(dt_worker_info));
    ir->nomem = ir->workers == NULL; /* the caller says DT_ENOMEM */
  }
  if (ir && ir->workers) {
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
      wi->memory_limit = row.memory_limit;
      wi->cpu = row.cpu;
      dt_list res = row.resources;
      dt_sv rk;
      double ra;
      size_t at = 0;
      wi->resources[0] = 0;
      while (dt__next_double(&res, &rk, &ra) && at < sizeof(wi->resources)) {
        int n = snprintf(wi->resources + at, sizeof(wi->resources) - at, "%s%.*s=%g",
                         at ? "," : "", (int)rk.len, rk.p, ra);
        if (n < 0 || (size_t)n >= sizeof(wi->resources) - at) {
          wi->resources[at] = 0; /* no room for this one: cut before it */
          break;
        }
        at += (size_t)n;
      }
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
    [DT_OP_COORD_REPLY] = dt__client_on_coord_reply,
    [DT_OP_ANSWER] = dt__client_on_answer, /* query.c */
    [DT_OP_RECONNECTABLE] = dt__client_on_reconnectable, /* reconnect.c */
    [DT_OP_SYNCED] = on_synced,
};

int dt__client_on_sched_msg(dt_conn *conn, int op, uint32_t nf, dt_rd *r) {
  dt_client *c = conn->data;
  c->last_heard = dt__now_s();
  if (c->hb_warned) {
    c->hb_warned = false;
    DT_INFO("the scheduler at %s answers again", c->addr);
  }
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
