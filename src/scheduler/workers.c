/*
 * workers.c -- workers and what they report: joining (with the results a
 * returning worker still holds), leaving (its tasks placed again, results
 * only it held recomputed), dying under a nanny (KilledWorker after
 * allowed_failures deaths), pausing, retiring (its results moved to other
 * workers first), and the task events they send: finished, erred (retried
 * while retries are left), a dependency they could not fetch, scattered
 * data stored.
 *
 * Cost: O(1) per task event.  Two events scan all tasks, and are rare: a
 * worker leaving (which results did only it hold?) and a worker retiring
 * (which results must move?); retiring also scans the workers once, to
 * choose where they go.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

/* ---------------------------------------------------------------- joining */

s_worker *dt__sched_add_worker_only(sched *s, void *conn, const char *name, const char *address,
                                    int nthreads, char **res_names, double *res_amounts,
                                    uint32_t nres) {
  s_worker *w = dt__xcalloc(1, sizeof(*w));
  w->kind = PEER_WORKER;
  w->id = ++s->next_id;
  w->name = dt__xstrdup(name && *name ? name : address);
  w->address = dt__xstrdup(address);
  w->nthreads = nthreads > 0 ? nthreads : 1;
  w->res_names = res_names;
  w->res_amounts = res_amounts;
  w->nres = nres;
  w->conn = conn;
  dt__vec_push(&s->workers, w);
  dt__place_free_append(s, w);
  return w;
}

s_worker *dt__sched_add_worker(sched *s, void *conn, const char *name, const char *address,
                               int nthreads, char **res_names, double *res_amounts, uint32_t nres) {
  s_worker *w = dt__sched_add_worker_only(s, conn, name, address, nthreads, res_names, res_amounts, nres);
  dt__sched_worker_place(s, w);
  return w;
}

void dt__worker_free(s_worker *w) {
  dt__ghost_free_all(w);
  dt__vec_free(&w->processing);
  dt__resources_free(w->res_names, w->res_amounts, w->nres);
  free(w->name);
  free(w->address);
  free(w);
}

void dt__sched_worker_has_key(sched *s, s_worker *w, const char *key, uint32_t klen,
                              uint64_t nbytes) {
  s_task *t = dt__sched_get_task(s, key, klen);
  bool needed = t && t->state != TS_ERRED &&
                (t->state != TS_RELEASED || t->wanted_by.len || t->waiters);
  if (!needed) { /* forgotten meanwhile: the worker must not keep it */
    dt__ev_free_key(s, w, key, klen);
    return;
  }
  if (t->state == TS_MEMORY) {
    dt__task_add_holder(t, w, nbytes);
    return;
  }
  dt__task_in_memory(s, t, w, nbytes, NULL, 0);
  dt__place_fill(s);
}

/* ---------------------------------------------------------------- leaving */

/* killed: Dask's KilledWorker, with what we know of the deaths */
static void killed(sched *s, s_task *t, const char *worker, const char *how) {
  char msg[DT_MAX_KEY + 512];
  snprintf(msg, sizeof(msg),
           "Attempted to run task '%s' on %d different workers, but all those workers died "
           "while running it (allowed_failures=%d). The last worker that attempted to run it "
           "was %s (%s). Inspecting worker logs is often a good next step.",
           t->key, (int)t->suspicious, s->allowed_failures, worker, how);
  DT_WARN("%s", msg);
  dt__task_erred(s, t, DT_EKILLED, t->key, t->func, worker, msg);
}

/* suspect: one more worker died running t; true if that was one too many */
static bool suspect(sched *s, s_task *t) {
  if (t->suspicious < 255) t->suspicious++;
  return (int)t->suspicious > s->allowed_failures;
}

void dt__sched_remove_worker(sched *s, s_worker *w, bool suspicious) {
  dt__place_free_remove(s, w);
  dt__vec_remove(&s->workers, w);
  DT_JOURNAL(dt__journal_worker(w, true));
  if (!w->closing) s->workers_lost++;
  /* its tasks in flight go back to be placed again */
  dt_vec redo = {0}, bad = {0};
  while (w->processing.len) {
    s_task *t = w->processing.v[0];
    dt__task_unrun(s, t);
    dt__vec_push(suspicious && suspect(s, t) ? &bad : &redo, t);
  }
  dt__ahead_worker_gone(s, w); /* nothing is left ahead there: checked */
  /* results held only there are lost: recompute the ones still needed.
   * O(tasks) on a rare event. */
  dt_vec lost = {0};
  for (size_t i = 0; i < s->tasks.cap; i++) {
    s_task *t = s->tasks.slots[i].t;
    if (!t || !dt__vec1_remove(&t->who_has, w)) continue;
    if (t->who_has.len == 0 && t->state == TS_MEMORY) dt__vec_push(&lost, t);
  }
  for (size_t i = 0; i < lost.len; i++) dt__task_lost(s, lost.v[i]);
  for (size_t i = 0; i < lost.len; i++) {
    s_task *t = lost.v[i];
    if (t->state != TS_RELEASED) continue;
    if (t->wanted_by.len || t->waiters) dt__task_want(s, t);
  }
  for (size_t i = 0; i < redo.len; i++) dt__task_retry(s, redo.v[i]);
  dt_vec keys = {0};
  for (size_t i = 0; i < lost.len; i++) dt__vec_push(&keys, dt__xstrdup(((s_task *)lost.v[i])->key));
  for (size_t i = 0; i < bad.len; i++) dt__vec_push(&keys, dt__xstrdup(((s_task *)bad.v[i])->key));
  for (size_t i = 0; i < bad.len; i++) {
    s_task *t = bad.v[i];
    if (t->state == TS_WAITING) killed(s, t, w->address, "connection lost");
  }
  dt__vec_free(&redo);
  dt__vec_free(&bad);
  dt__vec_free(&lost);
  dt__task_gc_keys(s, &keys);
  w->gone = true; /* freed at the drain: events may name it */
  dt__vec_push(&s->dead_peers, w);
  dt__place_fill(s);
}

void dt__sched_worker_died(sched *s, const char *worker, const char *how, const char **keys,
                           const uint32_t *lens, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    s_task *t = dt__sched_get_task(s, keys[i], lens[i]);
    if (!t) continue;
    switch (t->state) {
    case TS_WAITING: case TS_NO_WORKER: case TS_QUEUED: case TS_PROCESSING: break;
    default: continue; /* finished elsewhere meanwhile, failed, or no longer needed */
    }
    DT_INFO("task %s was running on worker %s, which died (%s)", t->key, worker, how);
    if (suspect(s, t)) killed(s, t, worker, how);
  }
  dt__place_fill(s);
}

/* ---------------------------------------------------------------- retiring, pausing */

int dt__sched_retire_worker(sched *s, s_worker *w) {
  w->retiring = true;
  dt__place_free_remove(s, w);
  /* where the results go: the other worker holding the fewest bytes
   * (O(workers), once; ACQUIRE changes no worker's bytes until ACQUIRED) */
  s_worker *to = NULL;
  for (size_t k = 0; k < s->workers.len; k++) {
    s_worker *o = s->workers.v[k];
    if (o != w && !o->retiring && (!to || o->nbytes < to->nbytes)) to = o;
  }
  /* O(tasks), on a rare event: the results only w holds that are needed */
  int moving = 0;
  for (size_t i = 0; i < s->tasks.cap; i++) {
    s_task *t = s->tasks.slots[i].t;
    if (!t || t->state != TS_MEMORY || t->who_has.len != 1 ||
        t->who_has.v[0] != w || (!t->wanted_by.len && !t->waiters))
      continue;
    if (!to) return -1;
    dt__ev_acquire(s, to, t, w);
    moving++;
  }
  w->moving = (uint32_t)moving;
  return moving;
}

void dt__sched_unretire_worker(sched *s, s_worker *w) {
  w->retiring = false;
  w->moving = 0;
  dt__place_update_free(s, w);
  dt__place_fill(s);
}

void dt__sched_worker_paused(sched *s, s_worker *w, bool paused) {
  if (w->paused == paused) return;
  w->paused = paused;
  if (paused) {
    dt__place_free_remove(s, w);
    return;
  }
  dt__place_update_free(s, w);
  /* what waited for a worker may go there now */
  dt__sched_worker_place(s, w);
}

/* ---------------------------------------------------------------- task events */

void dt__sched_task_finished(sched *s, s_worker *w, const char *key, uint32_t klen, uint64_t nbytes,
                             double duration_s, const char *inline_, uint32_t ilen) {
  dt__ghost_del(s, w, key, klen);
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || t->state != TS_PROCESSING || t->processing_on != w) {
    /* stale (released or moved meanwhile): the worker must not keep it */
    bool held = false;
    for (size_t i = 0; t && i < t->who_has.len && !held; i++) held = t->who_has.v[i] == w;
    if (!held) dt__ev_free_key(s, w, key, klen);
    return;
  }
  dt__place_proc_remove(t);
  s->tasks_completed++;
  DT_FUNC_OF(t->func)->finished++;
  s_stream_ev *ev = &s->stream[s->stream_n++ % DT_STREAM_CAP];
  ev->end_s = dt__now_s();
  ev->dur_s = duration_s > 0 ? (float)duration_s : 0;
  ev->worker = w->id;
  ev->func = t->func;
  if (duration_s >= 0) { /* whole µs: a reported 0 counts as 0.5 µs, or the average of
                            * many decays to exactly 0 ("no samples": 0.5 ms assumed) */
    double d = duration_s < 5e-7 ? 5e-7 : duration_s;
    s->avg_task_s = s->avg_task_s > 0 ? 0.95 * s->avg_task_s + 0.05 * d : d;
  }
  dt__task_in_memory(s, t, w, nbytes, inline_, ilen);
  dt__place_update_free(s, w);
  dt__place_fill(s);
}

void dt__sched_task_erred(sched *s, s_worker *w, const char *key, uint32_t klen, int code,
                          const char *func, const char *msg) {
  dt__ghost_del(s, w, key, klen);
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || t->state != TS_PROCESSING || t->processing_on != w) return;
  if (t->retries > 0) {
    t->retries--;
    dt__task_unrun(s, t);
    dt__place_update_free(s, w);
    DT_INFO("task %s failed on %s, retrying (%d retries left): %s", t->key, w->address, t->retries,
            msg);
    dt__task_retry(s, t);
    dt__place_fill(s);
    return;
  }
  dt__place_proc_remove(t); /* off w, which knows: erred tells it nothing */
  dt__place_update_free(s, w);
  char *origin = dt__xstrdup(t->key);
  dt__task_erred(s, t, code, origin, func, w->address, msg);
  free(origin);
  dt__place_fill(s);
}

/* lose_replica: holder no longer serves d (a peer could not fetch it from
 * there): forget that copy; if it was the last, recompute d if needed */
static void lose_replica(sched *s, s_task *d, s_worker *holder) {
  if (!dt__vec1_remove(&d->who_has, holder)) return;
  dt__ev_free(s, holder, d); /* if it is alive after all, it must not keep it */
  holder->nkeys--;
  holder->nbytes -= d->nbytes < holder->nbytes ? d->nbytes : holder->nbytes;
  if (d->who_has.len || d->state != TS_MEMORY) return;
  dt__task_lost(s, d);
  if (d->wanted_by.len || d->waiters) dt__task_want(s, d);
}

void dt__sched_missing_data(sched *s, s_worker *w, const char *key, uint32_t klen, const char *dep,
                            uint32_t deplen, const char *addr) {
  dt__ghost_del(s, w, key, klen);
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || t->state != TS_PROCESSING || t->processing_on != w) return;
  dt__task_unrun(s, t);
  dt__place_update_free(s, w);
  /* the copy it could not fetch: gone from the holder it tried (Dask does
   * the same), so the task is not sent back to fail the same way */
  s_task *d = dt__sched_get_task(s, dep, deplen);
  bool learned = false;
  for (size_t i = 0; d && addr && i < d->who_has.len && !learned; i++) {
    s_worker *h = d->who_has.v[i];
    if (strcmp(h->address, addr) == 0) {
      lose_replica(s, d, h);
      learned = true;
    }
  }
  /* bounded: a dependency that can never be fetched fails the task (its
   * own counter: the user's retries are for failures of the task) */
  if (!learned && ++dt__task_rare(t)->fetch_failures > 5) {
    char msg[DT_MAX_KEY + 100];
    snprintf(msg, sizeof(msg), "could not fetch dependency '%.*s'", (int)deplen, dep);
    dt__task_erred(s, t, DT_ELOST, t->key, t->func, w->address, msg);
    return;
  }
  dt__task_retry(s, t); /* unless settled meanwhile (lose_replica may fail it) */
  dt__place_fill(s);
}

void dt__sched_scatter_key(sched *s, s_client *c, s_worker *w, const char *key, uint32_t klen,
                           uint64_t nbytes) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t) t = dt__task_new(s, key, klen, "scatter", 7);
  if (t->state != TS_MEMORY) {
    dt__task_unschedule(s, t);
    dt__task_transition(s, t, TS_MEMORY);
    t->nbytes = nbytes;
    dt__task_wake(s, t);
  }
  dt__task_add_holder(t, w, nbytes);
  if (c) dt__sched_client_want(s, c, key, klen);
  dt__place_fill(s);
}
