/*
 * place.c -- where a ready task runs: the capacity of a worker, the list of
 * workers with free slots (round robin), the queue of root tasks held on
 * the scheduler until a slot frees, the list of tasks no worker can take,
 * and the choice of a worker: near the data for a task with dependencies,
 * the least busy valid one for a task with restrictions or resources.
 *
 * Cost: O(1) per task, plus O(dependencies x holders) to weigh where its
 * data is.  What scans the workers, and why it is rare:
 *   - a task with restrictions or resources (pick_restricted): O(workers)
 *     for each such task placed; few tasks have them;
 *   - a task with dependencies whose holders are all paused or retiring,
 *     when no worker has a free slot (pick_by_deps' fallback): stops at the
 *     first worker that takes work, so O(1) unless most workers are paused
 *     or retiring;
 *   - a worker joining or resuming (dt__sched_worker_place): O(tasks with
 *     no worker), which it may now run.
 */
#include <string.h>

#include "sched_int.h"

int dt__sched_worker_capacity(const sched *s, const s_worker *w) {
  /* threads held by released tasks still running (cancelled.c) are busy:
   * with none left, nothing may queue behind them */
  int held = (int)w->ghosts.len, threads = w->nthreads - held;
  if (threads <= 0) return held;
  double avg = s->avg_task_s > 0 ? s->avg_task_s : 0.0005;
  /* enough tasks in flight to cover ~2 ms of scheduler round trip */
  double extra = (double)threads * 0.002 / avg;
  if (extra < 1) extra = 1;
  if (extra > 512.0 * threads) extra = 512.0 * threads;
  return held + threads + (int)extra;
}

int dt__place_load(const s_worker *w) {
  return (int)(w->processing.len - w->long_running + w->ghosts.len);
}

/* ---------------------------------------------------------------- free list */

void dt__place_free_remove(sched *s, s_worker *w) {
  if (!w->in_free_list) return;
  if (w->free_prev) w->free_prev->free_next = w->free_next;
  else s->free_head = w->free_next;
  if (w->free_next) w->free_next->free_prev = w->free_prev;
  else s->free_tail = w->free_prev;
  w->free_prev = w->free_next = NULL;
  w->in_free_list = false;
}

void dt__place_free_append(sched *s, s_worker *w) {
  if (w->in_free_list || w->retiring || w->paused) return;
  w->free_prev = s->free_tail;
  w->free_next = NULL;
  if (s->free_tail) s->free_tail->free_next = w;
  else s->free_head = w;
  s->free_tail = w;
  w->in_free_list = true;
}

void dt__place_update_free(sched *s, s_worker *w) {
  if (dt__place_load(w) < dt__sched_worker_capacity(s, w)) dt__place_free_append(s, w);
  else dt__place_free_remove(s, w);
}

static double occupancy(const s_worker *w) {
  return (double)dt__place_load(w) / (w->nthreads > 0 ? w->nthreads : 1);
}

s_worker *dt__place_proc_remove(s_task *t) {
  s_worker *w = t->processing_on;
  if (!w) return NULL;
  size_t i = t->proc_idx;
  s_task *last = w->processing.v[--w->processing.len];
  w->processing.v[i] = last;
  last->proc_idx = (uint32_t)i;
  t->processing_on = NULL;
  t->proc_idx = 0; /* the union (state.h) is left zero */
  if (t->seceded) { /* tasks from tasks: it no longer runs there */
    t->seceded = false;
    w->long_running--;
  }
  return w;
}

/* ---------------------------------------------------------------- lists */

static void nw_link(sched *s, s_task *t) {
  t->nw_prev = NULL;
  t->nw_next = s->nw_head;
  if (s->nw_head) s->nw_head->nw_prev = t;
  s->nw_head = t;
}

static void nw_unlink(sched *s, s_task *t) {
  if (t->nw_prev) t->nw_prev->nw_next = t->nw_next;
  else s->nw_head = t->nw_next;
  if (t->nw_next) t->nw_next->nw_prev = t->nw_prev;
  t->nw_prev = t->nw_next = NULL;
}

void dt__place_unlink(sched *s, s_task *t) {
  if (t->state == TS_QUEUED) dt__heap_remove(&s->queued, t);
  else if (t->state == TS_NO_WORKER) nw_unlink(s, t);
}

/* ---------------------------------------------------------------- transitions */

/* to_processing: WAITING, NO_WORKER or QUEUED (popped already) -> PROCESSING on w */
static void to_processing(sched *s, s_task *t, s_worker *w) {
  if (t->state == TS_NO_WORKER) nw_unlink(s, t);
  dt__task_transition(s, t, TS_PROCESSING);
  t->proc_idx = (uint32_t)w->processing.len;
  dt__vec_push(&w->processing, t);
  t->processing_on = w;
  dt__ev_compute(s, w, t);
  if (w->in_free_list && dt__place_load(w) >= dt__sched_worker_capacity(s, w))
    dt__place_free_remove(s, w);
  if (t->dependents.len) dt__ahead_placed(s, t); /* what waits only for t may go ahead */
}

void dt__place_attach(sched *s, s_task *t, s_worker *w) {
  dt__task_transition(s, t, TS_PROCESSING);
  t->proc_idx = (uint32_t)w->processing.len;
  dt__vec_push(&w->processing, t);
  t->processing_on = w;
  if (w->in_free_list && dt__place_load(w) >= dt__sched_worker_capacity(s, w))
    dt__place_free_remove(s, w);
  if (t->dependents.len) dt__ahead_placed(s, t);
}

/* to_queued: WAITING or NO_WORKER -> QUEUED (a root task, workers exist) */
static void to_queued(sched *s, s_task *t) {
  if (t->state == TS_NO_WORKER) nw_unlink(s, t);
  dt__task_transition(s, t, TS_QUEUED);
  dt__heap_push(&s->queued, t);
}

/* to_no_worker: WAITING -> NO_WORKER; a NO_WORKER task stays where it is */
static void to_no_worker(sched *s, s_task *t) {
  if (t->state == TS_NO_WORKER) return;
  dt__task_transition(s, t, TS_NO_WORKER);
  nw_link(s, t);
}

/* ---------------------------------------------------------------- choosing */

static bool name_matches(const s_worker *w, const char *n) {
  if (strcmp(w->name, n) == 0 || strcmp(w->address, n) == 0) return true;
  return strncmp(n, "tcp://", 6) == 0 && strcmp(w->address, n + 6) == 0;
}

static bool worker_valid(const s_task *t, const s_worker *w) {
  if (RARE(t)->nrestrict && !RARE(t)->loose) {
    bool ok = false;
    for (uint32_t i = 0; i < RARE(t)->nrestrict && !ok; i++) ok = name_matches(w, RARE(t)->restrict_to[i]);
    if (!ok) return false;
  }
  for (uint32_t i = 0; i < RARE(t)->nres; i++) {
    bool ok = false;
    for (uint32_t j = 0; j < w->nres && !ok; j++)
      ok = strcmp(w->res_names[j], RARE(t)->res_names[i]) == 0 && w->res_amounts[j] >= RARE(t)->res_amounts[i];
    if (!ok) return false;
  }
  return true;
}

/* Restricted tasks: the valid worker with the least occupancy (preferring
 * the named ones when the restriction is loose).  Scans the workers: see
 * the header. */
static s_worker *pick_restricted(sched *s, s_task *t) {
  s_worker *best = NULL;
  bool best_named = false;
  for (size_t i = 0; i < s->workers.len; i++) {
    s_worker *w = s->workers.v[i];
    if (w->retiring || w->paused || !worker_valid(t, w)) continue;
    bool named = false;
    for (uint32_t k = 0; k < RARE(t)->nrestrict && !named; k++) named = name_matches(w, RARE(t)->restrict_to[k]);
    if (!best || (named && !best_named) ||
        (named == best_named && occupancy(w) < occupancy(best))) {
      best = w;
      best_named = named;
    }
  }
  return best;
}

/* Tasks with dependencies: the worker holding the most bytes of them, ties
 * broken by the least occupancy. */
static s_worker *pick_by_deps(sched *s, s_task *t) {
  s_worker *best = NULL;
  uint64_t best_bytes = 0;
  struct { s_worker *w; uint64_t b; } cand[16];
  size_t nc = 0;
  for (uint32_t i = 0; i < t->ndeps; i++) {
    s_task *d = t->deps[i];
    for (size_t j = 0; j < d->who_has.len; j++) {
      s_worker *w = d->who_has.v[j];
      if (w->retiring || w->paused) continue;
      size_t k;
      for (k = 0; k < nc && cand[k].w != w; k++) {}
      if (k == nc) {
        if (nc == sizeof(cand) / sizeof(cand[0])) continue;
        cand[nc].w = w;
        cand[nc++].b = 0;
      }
      cand[k].b += d->nbytes + 1;
    }
  }
  for (size_t k = 0; k < nc; k++) {
    if (!best || cand[k].b > best_bytes ||
        (cand[k].b == best_bytes && occupancy(cand[k].w) < occupancy(best))) {
      best = cand[k].w;
      best_bytes = cand[k].b;
    }
  }
  if (!best) best = s->free_head;
  for (size_t i = 0; !best && i < s->workers.len; i++) /* see the header */
    if (!((s_worker *)s->workers.v[i])->retiring && !((s_worker *)s->workers.v[i])->paused)
      best = s->workers.v[i];
  return best; /* NULL: every worker is paused or retiring */
}

bool dt__place_valid_for(const s_task *t, const s_worker *w) { return worker_valid(t, w); }

void dt__place_ready(sched *s, s_task *t) {
  s_worker *w;
  if (t->ahead && dt__ahead_promote(s, t)) return; /* it is there already (speculate.c) */
  if (RARE(t)->nrestrict || RARE(t)->nres) {
    w = pick_restricted(s, t);
  } else if (s->workers.len == 0) {
    w = NULL;
  } else if (t->ndeps == 0) {
    to_queued(s, t);
    return;
  } else {
    w = pick_by_deps(s, t);
  }
  if (w) to_processing(s, t, w);
  else to_no_worker(s, t);
}

void dt__place_fill(sched *s) {
  while (s->queued.len && s->free_head) {
    s_worker *w = s->free_head;
    if ((int)(w->processing.len - w->long_running) >= dt__sched_worker_capacity(s, w)) {
      dt__place_free_remove(s, w);
      continue;
    }
    s_task *t = dt__heap_pop(&s->queued);
    to_processing(s, t, w);
    if (w->in_free_list) { /* rotate so that work spreads over workers */
      dt__place_free_remove(s, w);
      dt__place_free_append(s, w);
    }
  }
}

void dt__sched_worker_place(sched *s, s_worker *w) {
  /* tasks that had nowhere to go may go here now */
  s_task *t = s->nw_head;
  while (t) {
    s_task *next = t->nw_next;
    if (!RARE(t)->nrestrict && !RARE(t)->nres) dt__place_ready(s, t);
    else if (!w->retiring && !w->paused && (worker_valid(t, w) || RARE(t)->loose))
      to_processing(s, t, w);
    t = next;
  }
  dt__place_fill(s);
}
