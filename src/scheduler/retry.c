/*
 * retry.c -- Client.retry (issue 15): failed tasks run again.  As Dask's
 * scheduler (stimulus_retry), the named ERRED task and every ERRED task
 * it depends on go ERRED -> RELEASED (the failure roots included), then
 * the named task is wanted again: dt__task_want moves it and its released
 * dependencies to WAITING and places what is ready.  Keys that are not
 * ERRED are left alone.  O(erred tasks moved).
 */
#include <stdio.h>
#include <string.h>

#include "query.h"
#include "sched_int.h"

int dt__sched_retry(sched *s, s_task *t0) {
  if (t0->state != TS_ERRED) return 0;
  dt_vec stack = {0};
  int n = 0;
  dt__vec_push(&stack, t0);
  while (stack.len) {
    s_task *t = stack.v[--stack.len];
    if (t->state != TS_ERRED) continue;
    dt__task_transition(s, t, TS_RELEASED);
    n++;
    for (uint32_t i = 0; i < t->ndeps; i++)
      if (t->deps[i]->state == TS_ERRED) dt__vec_push(&stack, t->deps[i]);
  }
  dt__vec_free(&stack);
  dt__task_want(s, t0);
  dt__place_fill(s); /* a queued root goes to a free thread */
  return n;
}

dt_value *dt__query_retry(const dt_value *keys, char *err, size_t errcap) {
  if (!keys) {
    snprintf(err, errcap, "retry needs 'keys'");
    return NULL;
  }
  sched *s = &dt__srv.s;
  bool one = dt_value_type(keys) == DT_STR;
  size_t nk = one ? 1 : dt_list_len(keys);
  int64_t moved = 0;
  for (size_t i = 0; i < nk; i++) {
    size_t len;
    const char *k = dt_value_str(one ? keys : dt_list_get(keys, i), &len);
    s_task *t = k ? dt__sched_get_task(s, k, (uint32_t)len) : NULL;
    if (t) moved += dt__sched_retry(s, t);
  }
  return dt_int(moved);
}
