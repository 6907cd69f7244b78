/*
 * speculate.c -- chains without the scheduler in the loop.  A task whose
 * only dependency is processing on a worker (or was itself sent ahead to
 * it) is sent to that worker ahead of time (SEV_AHEAD: a COMPUTE_TASK
 * whose dependency names no holder, which the worker reads as "being
 * computed here": it starts the task the moment the input is stored, with
 * no round trip through the scheduler).  In the scheduler's view the task
 * stays WAITING, marked `ahead`, with its worker in s->ahead (key -> worker),
 * until:
 *   - its dependency finishes on that worker: dt__place_ready promotes it to
 *     PROCESSING there without a second COMPUTE_TASK (dt__ahead_promote);
 *   - anything else happens to the dependency (it fails, is released or
 *     cancelled, is retried or rescheduled, its worker leaves) or to the
 *     task itself (released, cancelled, erred): the task is withdrawn
 *     (FREE_KEYS to the worker, the mark cleared), and so is every task sent
 *     ahead behind it; it is then placed as any other task, and may be sent
 *     ahead again when its dependency is placed again.
 * Invariant: t->ahead on w  =>  t is WAITING, has one dependency d, and d is
 * PROCESSING on w or itself ahead on w.  Every event that could break it
 * goes through dt__task_transition (dt__ahead_transition below) or a
 * worker's removal (dt__ahead_worker_gone).
 *
 * Cost: O(1) per task sent, promoted or withdrawn (each at most once per
 * placement of its dependency), plus O(dependents) when a task is placed or
 * leaves PROCESSING with tasks ahead behind it.  Chains are walked with an
 * explicit stack.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

/* the worker t was sent ahead to (t->ahead), or NULL */
static s_worker *ahead_worker(const sched *s, const s_task *t) {
  return t->ahead ? dt__smap_get(&s->ahead, t->key, t->klen) : NULL;
}

static bool takes_work(const s_worker *w) {
  return w && !w->gone && !w->closing && !w->retiring && !w->paused;
}

/* $DTASK_NO_AHEAD=1 in the scheduler's environment turns it off (to
 * measure what it buys); read once */
static int ahead_off = -1;

/* try_one: send t ahead if it qualifies; its worker, or NULL */
static s_worker *try_one(sched *s, s_task *t) {
  if (ahead_off < 0) {
    const char *e = getenv("DTASK_NO_AHEAD");
    ahead_off = e && *e && strcmp(e, "0") != 0;
  }
  if (ahead_off) return NULL;
  if (t->state != TS_WAITING || t->ahead || t->ndeps != 1 || !t->holds_deps || t->nwaiting != 1)
    return NULL;
  s_task *d = t->deps[0];
  s_worker *w = d->state == TS_PROCESSING ? d->processing_on
                : d->state == TS_WAITING  ? ahead_worker(s, d)
                                          : NULL;
  if (!takes_work(w) || !dt__place_valid_for(t, w)) return NULL;
  t->ahead = true;
  d->ahead_deps = true;
  dt__smap_put(&s->ahead, t->key, t->klen, w);
  dt__ev_ahead(s, w, t);
  return w;
}

void dt__ahead_consider(sched *s, s_task *t0) {
  if (!try_one(s, t0)) return;
  dt_vec stack = {0};
  dt__vec_push(&stack, t0);
  while (stack.len) { /* what waits for t only may follow it */
    s_task *t = stack.v[--stack.len];
    for (size_t i = 0; i < t->dependents.len; i++)
      if (try_one(s, t->dependents.v[i])) dt__vec_push(&stack, t->dependents.v[i]);
  }
  dt__vec_free(&stack);
}

void dt__ahead_placed(sched *s, s_task *d) {
  for (size_t i = 0; i < d->dependents.len; i++) dt__ahead_consider(s, d->dependents.v[i]);
}

/* withdraw: t0 (ahead) and every task ahead behind it are taken back */
static void withdraw(sched *s, s_task *t0) {
  dt_vec stack = {0};
  dt__vec_push(&stack, t0);
  while (stack.len) {
    s_task *t = stack.v[--stack.len];
    if (!t->ahead) continue;
    s_worker *w = dt__smap_del(&s->ahead, t->key, t->klen);
    t->ahead = false;
    if (w) dt__ev_free(s, w, t); /* dropped at the drain if w is gone */
    if (t->ahead_deps) {
      t->ahead_deps = false;
      for (size_t i = 0; i < t->dependents.len; i++)
        if (((s_task *)t->dependents.v[i])->ahead) dt__vec_push(&stack, t->dependents.v[i]);
    }
  }
  dt__vec_free(&stack);
}

static void withdraw_dependents(sched *s, s_task *d) {
  d->ahead_deps = false;
  for (size_t i = 0; i < d->dependents.len; i++)
    if (((s_task *)d->dependents.v[i])->ahead) withdraw(s, d->dependents.v[i]);
}

void dt__ahead_transition(sched *s, s_task *t, int from, int to) {
  /* the task itself leaves WAITING other than by promotion */
  if (t->ahead && to != TS_WAITING) withdraw(s, t);
  /* its dependency stops running where the tasks behind it wait for it
   * (finishing there is the one way on: dt__ahead_promote) */
  if (t->ahead_deps && ((from == TS_PROCESSING && to != TS_MEMORY) || to == TS_RELEASED ||
                        to == TS_ERRED || to == TS_FORGOTTEN))
    withdraw_dependents(s, t);
}

bool dt__ahead_promote(sched *s, s_task *t) {
  s_worker *w = ahead_worker(s, t);
  s_task *d = t->deps[0];
  bool there = false;
  for (size_t i = 0; w && i < d->who_has.len && !there; i++) there = d->who_has.v[i] == w;
  if (!there || !takes_work(w) || d->state != TS_MEMORY) {
    withdraw(s, t); /* placed as any other task */
    return false;
  }
  dt__smap_del(&s->ahead, t->key, t->klen);
  t->ahead = false;
  dt__place_attach(s, t, w); /* PROCESSING there: it runs already, or soon */
  return true;
}

void dt__ahead_worker_gone(sched *s, s_worker *w) {
  dt_vec mine = {0};
  for (size_t i = 0; i < s->ahead.cap; i++)
    if (s->ahead.slots[i].key && s->ahead.slots[i].val == w)
      dt__vec_push(&mine, dt__sched_get_task(s, s->ahead.slots[i].key, s->ahead.slots[i].klen));
  for (size_t i = 0; i < mine.len; i++)
    if (mine.v[i]) withdraw(s, mine.v[i]);
  dt__vec_free(&mine);
}

int dt__ahead_check(const sched *s, char *why, size_t cap) {
  for (size_t i = 0; i < s->ahead.cap; i++) {
    if (!s->ahead.slots[i].key) continue;
    const char *k = s->ahead.slots[i].key;
    s_task *t = dt__tmap_get(&s->tasks, k, s->ahead.slots[i].klen);
    s_worker *w = s->ahead.slots[i].val;
    const s_task *d = t && t->ndeps == 1 ? t->deps[0] : NULL;
    bool ok = t && t->ahead && t->state == TS_WAITING && d && w && !w->gone &&
              ((d->state == TS_PROCESSING && d->processing_on == w) ||
               (d->state == TS_WAITING && d->ahead && ahead_worker(s, d) == w));
    if (!ok) {
      snprintf(why, cap, "task %s is marked as sent ahead, but its state (%s) or its "
               "dependency's does not allow it", k, t ? dt__task_state_name(t->state) : "unknown");
      return -1;
    }
  }
  return 0;
}

_Static_assert(sizeof(s_task) <= 184, "s_task must stay within 184 bytes (docs/benchmarks.md)");
