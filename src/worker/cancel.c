/*
 * cancel.c -- tasks that keep their thread: a task the scheduler released
 * while it ran (cancelled: a zombie until its function returns, when
 * TASK_RELEASED frees its thread on the scheduler's books), a task past its
 * deadline (submit's timeout), and cancel(force=True) (ABORT_TASKS).  C
 * code cannot be interrupted, so the last two end the process: the task
 * fails with DT_ETIMEDOUT naming its deadline, and the worker exits with
 * DT__EXIT_RESTART for its nanny to start a fresh one at once (no nanny: it
 * just exits).  The deadline timer scans the few executing tasks that have
 * a deadline, ten times a second.
 */
#include <stdio.h>
#include <string.h>

#include "worker_int.h"

#define X dt__exec

void dt__cancel_zombie_add(w_task *t) { dt__vec_push(&X.zombies, t); }

void dt__cancel_returned(w_task *t) {
  if (X.zombies.len) dt__vec_remove(&X.zombies, t);
  if (t->timeout > 0) dt__vec_remove(&X.timed, t);
}

static void restart_for(w_task *t, const char *why) {
  DT_WARN("task %s %s: restarting this worker to reclaim its thread", t->key, why);
  if (dt__worker.stopping) return;
  dt__worker_stop(DT__EXIT_RESTART);
}

static void on_deadline(uv_timer_t *h) {
  (void)h;
  double now = dt__now_s();
  for (size_t i = 0; i < X.timed.len; i++) {
    w_task *t = X.timed.v[i];
    if (now - t->started <= t->timeout) continue;
    if (!t->cancelled) {
      char msg[DT_MAX_KEY + 200];
      snprintf(msg, sizeof(msg),
               "task '%s' ran past its deadline of %g s (timeout=%g): its worker restarts to "
               "reclaim the thread",
               t->key, t->timeout, t->timeout);
      dt__link_erred(t->key, t->klen, DT_ETIMEDOUT, t->func, msg);
    }
    char why[80];
    snprintf(why, sizeof(why), "ran past its deadline of %g s", t->timeout);
    restart_for(t, why);
    return;
  }
}

void dt__cancel_timed_add(w_task *t) {
  t->started = dt__now_s();
  dt__vec_push(&X.timed, t);
  if (X.timer_on) return;
  uv_timer_init(&dt__worker.loop, &X.deadline_timer);
  uv_timer_start(&X.deadline_timer, on_deadline, 100, 100);
  uv_unref((uv_handle_t *)&X.deadline_timer);
  X.timer_on = true;
}

int dt__cancel_on_abort(const dt_msg *m) {
  dt_list l = m->ABORT_TASKS.keys;
  dt_sv k;
  while (dt__next_key(&l, &k)) {
    w_task *t = dt__smap_get(&X.tasks, k.p, k.len);
    if (t && t->state != WT_EXECUTING) t = NULL; /* not running: the FREE_KEYS that follows drops it */
    for (size_t i = 0; i < X.zombies.len && !t; i++) {
      w_task *z = X.zombies.v[i];
      if (z->klen == k.len && memcmp(z->key, k.p, k.len) == 0) t = z;
    }
    if (t) {
      restart_for(t, "was cancelled with force=True while running");
      return 0;
    }
  }
  return 0;
}
