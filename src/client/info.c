/*
 * info.c -- requests that wait for the scheduler's reply: cluster info and
 * the workers' rows (INFO_REQUEST / INFO_REPLY), a sync (SYNC / SYNCED),
 * retiring workers
 * (RETIRE_WORKERS / RETIRE_DONE), scattering values (SCATTER /
 * SCATTER_DONE), and dt_client_wait_for_workers.  Each request is a record
 * in a pending list that dispatch.c completes.  User threads only: out of
 * memory gives DT_ENOMEM with nothing sent (see client.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "../proto/alloc.h"

/* request_begin: a request-and-reply with the scheduler: sets the deadline,
 * takes the lock and checks the client can talk; 0 with the lock held */
static int request_begin(dt_client *c, int timeout_ms, struct timespec *dl) {
  dt__deadline(dl, timeout_ms >= 0 ? timeout_ms : 3600 * 1000);
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  if (rc) pthread_mutex_unlock(&c->lock);
  return rc;
}

/* request_wait: (locked) until *done, the connection goes, or the deadline;
 * the caller unlocks with dt__client_leave */
static void request_wait(dt_client *c, const bool *done, const struct timespec *dl) {
  dt__client_enter(c); /* the caller ends with dt__client_leave */
  dt__client_wake(c);
  while (!*done && c->state == CS_READY)
    if (!dt__client_wait_until(c, dl)) break;
}

/* ---------------------------------------------------------------- scatter */

/* scatter_keys: encodes the values (consumed) and names each by its hash */
static int scatter_keys(dt_value *const *values, size_t n, dt_payload *pls, char **keys) {
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    if (!values[i]) { rc = dt__err(DT_EINVAL, "scatter value %zu is NULL", i); continue; }
    if (rc == 0 && (rc = dt__payload_encode(values[i], &pls[i], NULL)) == 0) {
      uint64_t h1 = 14695981039346656037ull, h2 = 0x84222325cbf29ce4ull;
      dt__client_hash(&h1, &h2, pls[i].body, pls[i].len);
      for (uint32_t k = 0; k < pls[i].nframes; k++)
        dt__client_hash(&h1, &h2, pls[i].frames[k].p, pls[i].frames[k].len);
      char key[64];
      snprintf(key, sizeof(key), "scatter-%016" PRIx64 "%016" PRIx64, h1, h2);
      if (!(keys[i] = dt__try_strdup(key)))
        rc = dt__err(DT_ENOMEM, "dt_client_scatter: out of memory");
    }
    dt_value_free(values[i]);
  }
  return rc;
}

/* send_scatter: SCATTER with the values (locked); 0 or DT_ENOMEM */
static int send_scatter(dt_client *c, uint64_t req, size_t n, const dt_payload *pls, char **keys,
                        const dt_scatter_opts *opts) {
  size_t nw = opts ? opts->n_workers : 0;
  size_t bytes = DT__WB_NUM + 2 * DT__WB_LIST + DT__WB_BOOL;
  uint32_t nframes = 0;
  for (size_t i = 0; i < n; i++) {
    bytes += DT__WB_LIST + DT__WB_STR(strlen(keys[i])) + DT__WB_PAYLOAD(&pls[i]);
    nframes += pls[i].nframes;
  }
  for (size_t i = 0; i < nw; i++)
    bytes += DT__WB_STR(opts->workers[i] ? strlen(opts->workers[i]) : 0);
  dt__msg_out o;
  if (dt__client_begin(&o, c->sched, DT_OP_SCATTER, bytes, nframes)) return DT_ENOMEM;
  dt__e_uint(&o.e, req);
  dt__e_list(&o.e, (uint32_t)n);
  for (size_t i = 0; i < n; i++) {
    dt__e_rec(&o.e);
    dt__e_cstr(&o.e, keys[i]);
    dt__e_payload(&o.e, &pls[i]);
  }
  dt__e_list(&o.e, (uint32_t)nw);
  for (size_t i = 0; i < nw; i++) dt__e_cstr(&o.e, opts->workers[i]);
  dt__e_bool(&o.e, opts && opts->broadcast);
  dt__client_end(&o);
  dt__client_wake(c);
  return 0;
}

/* scatter_locked: the futures, the request and its wait (locked) */
static int scatter_locked(dt_client *c, size_t n, const dt_payload *pls, char **keys,
                          const dt_scatter_opts *opts, dt_future **out) {
  int rc = dt__client_usable(c);
  if (rc) return rc;
  scatter_req *sr = dt__try_calloc(1, sizeof(*sr));
  size_t got = 0;
  if (!sr || dt__client_vec_room(&c->scatters, 1)) goto nomem;
  for (; got < n; got++)
    if (!(out[got] = dt__future_get(c, keys[got], (uint32_t)strlen(keys[got]), NULL))) goto nomem;
  sr->req = c->next_req + 1;
  if (send_scatter(c, sr->req, n, pls, keys, opts)) goto nomem;
  c->next_req++;
  dt__vec_push(&c->scatters, sr);
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
  return rc;
nomem:
  dt__futures_undo(out, got);
  for (size_t i = 0; i < n; i++) out[i] = NULL;
  free(sr);
  return dt__err(DT_ENOMEM, "dt_client_scatter: out of memory");
}

int dt_client_scatter(dt_client *c, dt_value *const *values, size_t n, const dt_scatter_opts *opts,
                      dt_future **out) {
  dt__err_clear();
  if (!c || !out || (n && !values)) {
    for (size_t i = 0; values && i < n; i++) dt_value_free(values[i]);
    return dt__err(DT_EINVAL, "dt_client_scatter: NULL argument");
  }
  for (size_t i = 0; i < n; i++) out[i] = NULL;
  dt_payload *pls = dt__try_calloc(n ? n : 1, sizeof(*pls));
  char **keys = dt__try_calloc(n ? n : 1, sizeof(char *));
  int rc;
  if (!pls || !keys) {
    for (size_t i = 0; i < n; i++) dt_value_free(values[i]);
    rc = dt__err(DT_ENOMEM, "dt_client_scatter: out of memory");
  } else if ((rc = scatter_keys(values, n, pls, keys)) == 0) {
    pthread_mutex_lock(&c->lock);
    dt__client_enter(c);
    rc = scatter_locked(c, n, pls, keys, opts, out);
    dt__client_leave(c);
  }
  for (size_t i = 0; pls && keys && i < n; i++) {
    dt__payload_clear(&pls[i]);
    free(keys[i]);
  }
  free(pls);
  free(keys);
  return rc;
}

/* ---------------------------------------------------------------- info */

/* info_exchange: INFO_REQUEST -> INFO_REPLY into *out (and the workers'
 * rows when wout), or, with sync, SYNC -> SYNCED (nothing to read) */
static int info_exchange(dt_client *c, int timeout_ms, bool sync, dt_cluster_info *out,
                         dt_worker_info **wout, size_t *nout) {
  struct timespec dl;
  int rc = request_begin(c, timeout_ms, &dl);
  if (rc) return rc;
  info_req *ir = dt__try_calloc(1, sizeof(*ir));
  dt__msg_out o;
  if (!ir || dt__client_vec_room(&c->infos, 1) ||
      dt__client_begin(&o, c->sched, sync ? DT_OP_SYNC : DT_OP_INFO_REQUEST,
                       DT__WB_NUM + (sync ? 0 : DT__WB_BOOL), 0)) {
    free(ir);
    pthread_mutex_unlock(&c->lock);
    return dt__err(DT_ENOMEM, "out of memory asking the scheduler for its state");
  }
  ir->req = ++c->next_req;
  ir->detail = wout != NULL;
  dt__vec_push(&c->infos, ir);
  dt__e_uint(&o.e, ir->req);
  if (!sync) dt__e_bool(&o.e, ir->detail);
  dt__client_end(&o);
  request_wait(c, &ir->done, &dl);
  if (ir->done && ir->nomem) {
    rc = dt__err(DT_ENOMEM, "out of memory reading the scheduler's reply");
  } else if (ir->done) {
    if (out) *out = ir->info;
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
  dt__client_leave(c);
  return rc;
}
static int cluster_info(dt_client *c, int timeout_ms, dt_cluster_info *out, dt_worker_info **wout,
                        size_t *nout) {
  return info_exchange(c, timeout_ms, false, out, wout, nout);
}

/* dt__client_sync: see client.h */
int dt__client_sync(dt_client *c, int timeout_ms) {
  return info_exchange(c, timeout_ms, true, NULL, NULL, NULL);
}

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

/* ---------------------------------------------------------------- retire */

int dt_client_retire_workers(dt_client *c, const char *const *names, size_t n, int timeout_ms,
                             int *retired) {
  dt__err_clear();
  if (retired) *retired = 0;
  if (!c || (n && !names)) return dt__err(DT_EINVAL, "dt_client_retire_workers: NULL argument");
  size_t bytes = DT__WB_NUM + DT__WB_LIST;
  for (size_t i = 0; i < n; i++) {
    if (!names[i] || !*names[i] || strlen(names[i]) > DT_MAX_KEY)
      return dt__err(DT_EINVAL, "dt_client_retire_workers: worker name %zu is empty or too long", i);
    bytes += DT__WB_STR(strlen(names[i]));
  }
  struct timespec dl;
  int rc = request_begin(c, timeout_ms, &dl);
  if (rc) return rc;
  scatter_req *rr = dt__try_calloc(1, sizeof(*rr));
  dt__msg_out o;
  if (!rr || dt__client_vec_room(&c->retires, 1) ||
      dt__client_begin(&o, c->sched, DT_OP_RETIRE_WORKERS, bytes, 0)) {
    free(rr);
    pthread_mutex_unlock(&c->lock);
    return dt__err(DT_ENOMEM, "dt_client_retire_workers: out of memory");
  }
  rr->req = ++c->next_req;
  dt__vec_push(&c->retires, rr);
  dt__e_uint(&o.e, rr->req);
  dt__e_list(&o.e, (uint32_t)n);
  for (size_t i = 0; i < n; i++) dt__e_cstr(&o.e, names[i]);
  dt__client_end(&o);
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
  dt__client_leave(c);
  return rc;
}
