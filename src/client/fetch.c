/*
 * fetch.c -- getting results: connections to the workers that hold them,
 * GET_DATA requests (one per worker per wake-up) and their DATA replies,
 * asking the scheduler again (WHO_HAS) when a worker cannot give a result,
 * WANT_RESULT for small results inline, and the waits of dt_client_gather
 * and dt_future_result.  Connections and replies are the I/O thread's (may
 * abort on out of memory); the waits are the user thread's (DT_ENOMEM).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "../proto/alloc.h"
#include "../task/task.h"

typedef struct fetch_req {
  uint64_t req;
  dt_vec futs; /* dt_future* held (refs+1) */
} fetch_req;

/* ---------------------------------------------------------------- replies (I/O thread) */

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
  if (c && c->resuming) { /* reconnecting: RESUME asks for it again (reconnect.c) */
    free(f->worker);
    f->worker = NULL;
    return;
  }
  if (c && c->sched && c->state == CS_READY && ++f->refetches <= 10) {
    DT_INFO("result of '%s' not fetched from %s (%s): asking the scheduler again", f->key,
            addr ? addr : "?", why);
    free(f->worker);
    f->worker = NULL;
    dt_enc e; /* the I/O thread's: may abort on out of memory */
    dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_WHO_HAS);
    dt__e_list(&e, 1);
    dt__e_str(&e, f->key, f->klen);
    dt__e_end(&e);
    return;
  }
  char msg[512];
  snprintf(msg, sizeof(msg), "could not fetch the result of '%s' from worker %s: %s", f->key,
           addr ? addr : "?", why);
  dt__future_set_error(f, DT_ELOST, msg);
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
  if (op == DT_OP_ACTOR_RESULT) return dt__client_actor_result(wc, nf, r);
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
        dt__future_set_error(f, rc, msg);
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
  dt__client_actor_conn_lost(wc);
  free(wc->addr);
  free(wc);
}

const dt_conn_cbs dt__client_worker_cbs = {on_worker_msg, NULL, on_worker_close};

/* ---------------------------------------------------------------- requests (I/O thread) */

/* send GET_DATA for every queued future, one message per worker (up to
 * 4096 keys each); one pass, grouped with a hash map */
void dt__client_process_fetchq(dt_client *c) {
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
      if (dt__conn_connect(&c->net, wc->addr, &dt__client_worker_cbs, wc, &wc->conn) != 0) {
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

int dt__client_want_fetch(dt_client *c, dt_future *f) {
  if (f->value || f->fetching || f->status != DT_FINISHED || !f->worker) return 0;
  if (dt__client_vec_room(&c->fetchq, 1)) return DT_ENOMEM;
  f->fetching = true;
  f->refs++;
  dt__vec_push(&c->fetchq, f);
  dt__client_wake(c);
  return 0;
}

/* ---------------------------------------------------------------- waits (user threads) */

/* ask_results: tell the scheduler we wait for these pending results, so that
 * small ones come inline (one message; locked); 0 or DT_ENOMEM with message.
 * A future given twice is asked for once. */
static int ask_results(dt_client *c, dt_future *const *fs, size_t n) {
  size_t k = 0, bytes = DT__WB_LIST;
  for (size_t i = 0; i < n; i++)
    if (fs[i]->status == DT_PENDING && !fs[i]->asked) {
      k++;
      bytes += DT__WB_STR(fs[i]->klen);
    }
  if (!k || !c->sched || c->state != CS_READY) return 0;
  /* the distinct ones, marked asked as they are found */
  dt_future **ask = k > 1 ? dt__try_malloc(k * sizeof(*ask)) : NULL;
  if (k > 1 && !ask) return dt__err(DT_ENOMEM, "out of memory asking for %zu results", k);
  dt_future *one = NULL;
  if (!ask) ask = &one;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (fs[i]->status == DT_PENDING && !fs[i]->asked) {
      fs[i]->asked = true;
      ask[m++] = fs[i];
    }
  dt__msg_out o;
  int rc = dt__client_begin(&o, c->sched, DT_OP_WANT_RESULT, bytes, 0);
  if (rc == 0) {
    dt__e_list(&o.e, (uint32_t)m);
    for (size_t i = 0; i < m; i++) dt__e_str(&o.e, ask[i]->key, ask[i]->klen);
    dt__client_end(&o);
    dt__client_wake(c);
  } else {
    for (size_t i = 0; i < m; i++) ask[i]->asked = false; /* as they were */
    rc = dt__err(DT_ENOMEM, "out of memory asking for %zu results", k);
  }
  if (ask != &one) free(ask);
  return rc;
}

/* wait for f's value (locked); 0 or an error with message */
static int await_value(dt_client *c, dt_future *f, const struct timespec *deadline) {
  f->want_value = true;
  int rc = ask_results(c, &f, 1);
  if (rc) return rc;
  for (;;) {
    if (f->status == DT_ERROR || f->status == DT_LOST || f->status == DT_CANCELLED) {
      int code = f->err_code ? f->err_code : (f->status == DT_CANCELLED ? DT_ECANCELLED : DT_ETASK);
      return dt__err(code, "%s", f->err_msg ? f->err_msg : "future was cancelled");
    }
    if (f->value) return 0;
    if (f->status == DT_FINISHED && dt__client_want_fetch(c, f))
      return dt__err(DT_ENOMEM, "out of memory fetching the result of '%s'", f->key);
    if (c->state == CS_CLOSED) return dt__err(DT_ECLOSED, "client is closed");
    dt__task_block_begin(); /* inside a task: hand the thread back while waiting */
    if (!dt__client_wait_until(c, deadline))
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
  dt__client_enter(c);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    if (!fs[i]) { rc = dt__err(DT_EINVAL, "dt_client_gather: future %zu is NULL", i); break; }
    if (fs[i]->client != c) {
      rc = fs[i]->client ? dt__err(DT_EINVAL, "future '%s' belongs to another client", fs[i]->key)
                         : dt__err(DT_ECLOSED, "future '%s' belongs to a closed client", fs[i]->key);
      break;
    }
    fs[i]->want_value = true;
    if (dt__client_want_fetch(c, fs[i])) {
      rc = dt__err(DT_ENOMEM, "dt_client_gather: out of memory");
      break;
    }
  }
  if (rc == 0) rc = ask_results(c, fs, n);
  for (size_t i = 0; i < n && rc == 0; i++) rc = await_value(c, fs[i], timeout_ms >= 0 ? &dl : NULL);
  if (rc == 0)
    for (size_t i = 0; i < n; i++) out[i] = dt_value_ref(fs[i]->value);
  dt__client_leave(c);
  dt__task_block_end();
  return rc;
}
