/*
 * cancelled.c -- released tasks that may still run (Dask's worker
 * "cancelled" state), cancel(force=True) and the per-task deadline.
 *
 * C code cannot be interrupted: a task released while processing on a
 * worker (cancelled, or its result no longer wanted) may keep its thread
 * until the function returns.  The scheduler keeps such a key in the
 * worker's ghosts and counts it against the worker's capacity
 * (place.c), so nothing queues behind a thread that is not free.  The
 * worker answers TASK_RELEASED when it let the task go (at once when it
 * was not running, else when the function returns); a late report of the
 * task (finished, erred, missing data, reschedule) or a COMPUTE_TASK that
 * was never sent clears it too.  CANCEL_FORCE makes the workers still
 * running the keys restart (ABORT_TASKS; the nanny starts a fresh process).
 * O(1) per key, O(workers) per key of a forced cancel (rare).
 */
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "sched_int.h"

static dt_srv *const srv = &dt__srv;
static bool refill; /* a ghost went while events were sent: place again after */

void dt__ghost_add(sched *s, s_worker *w, const s_task *t) {
  if (dt__smap_get(&w->ghosts, t->key, t->klen)) return;
  char *k = dt__xstrndup(t->key, t->klen);
  dt__smap_put(&w->ghosts, k, t->klen, k);
  dt__place_update_free(s, w);
}

static bool forget(sched *s, s_worker *w, const char *key, uint32_t klen) {
  char *k = dt__smap_del(&w->ghosts, key, klen);
  if (!k) return false;
  free(k);
  if (!w->ghosts.len) dt__smap_destroy(&w->ghosts);
  if (!w->gone) dt__place_update_free(s, w);
  return true;
}

void dt__ghost_del(sched *s, s_worker *w, const char *key, uint32_t klen) {
  if (!w->ghosts.len) return;
  if (forget(s, w, key, klen) && !w->gone) refill = true;
}

/* dt__ghost_refill: after the events were sent: place what a freed thread may take */
bool dt__ghost_refill(sched *s) {
  if (!refill) return false;
  refill = false;
  dt__place_fill(s);
  return true;
}

void dt__ghost_free_all(s_worker *w) {
  for (size_t i = 0; i < w->ghosts.cap; i++)
    if (w->ghosts.slots[i].key) free(w->ghosts.slots[i].val);
  dt__smap_destroy(&w->ghosts);
}

/* ---------------------------------------------------------------- handlers */

int dt__on_task_released(dt_conn *c, const dt_msg *m) {
  s_worker *w = c->data;
  if (forget(&srv->s, w, m->TASK_RELEASED.key.p, m->TASK_RELEASED.key.len)) dt__place_fill(&srv->s);
  return 0;
}

static void abort_on(s_worker *w, dt_sv key) {
  if (w->gone || !w->conn) return;
  DT_INFO("cancel(force=True) of %.*s: worker %s restarts to reclaim its thread", (int)key.len, key.p,
          w->address);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(w->conn), DT_OP_ABORT_TASKS);
  dt__e_list(&e, 1);
  dt__e_str(&e, key.p, key.len);
  dt__e_end(&e);
}

int dt__on_cancel_force(dt_conn *c, const dt_msg *m) {
  (void)c;
  dt_list l = m->CANCEL_FORCE.keys;
  dt_sv k;
  while (dt__next_key(&l, &k)) {
    s_task *t = dt__sched_get_task(&srv->s, k.p, k.len);
    s_worker *on = t && t->state == TS_PROCESSING ? t->processing_on : NULL;
    if (on) abort_on(on, k);
    for (size_t i = 0; i < srv->s.workers.len; i++) {
      s_worker *w = srv->s.workers.v[i];
      if (w != on && w->ghosts.len && dt__smap_get(&w->ghosts, k.p, k.len)) abort_on(w, k);
    }
  }
  return 0;
}
