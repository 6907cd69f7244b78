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

/* the erred dependency t failed because of, or NULL */
static s_task *erred_dep(const s_task *t) {
  for (uint32_t i = 0; i < t->ndeps; i++)
    if (t->deps[i]->state == TS_ERRED) return t->deps[i];
  return NULL;
}

dt_value *dt__query_task_spec(const dt_value *key, bool root, char *err, size_t errcap) {
  size_t klen;
  const char *k = key && dt_value_type(key) == DT_STR ? dt_value_str(key, &klen) : NULL;
  if (!k) {
    snprintf(err, errcap, "task_spec needs 'key' (a string)");
    return NULL;
  }
  s_task *t = dt__sched_get_task(&dt__srv.s, k, (uint32_t)klen);
  if (!t) {
    snprintf(err, errcap, "KeyError: no task '%.*s'", (int)(klen > 200 ? 200 : klen), k);
    return NULL;
  }
  for (int hops = 0; root && t->state == TS_ERRED && hops < 1000000; hops++) {
    s_task *d = erred_dep(t); /* the failure's root: the task that failed itself */
    if (!d) break;
    t = d;
  }
  dt_value *spec = NULL, *out = dt_map_new(), *deps = dt_list_new();
  dt_payload sp = dt__task_spec(t);
  if (!out || !deps || dt__payload_decode(&sp, &spec) != 0) {
    dt_value_free(out);
    dt_value_free(deps);
    snprintf(err, errcap, "the spec of task '%s' cannot be read", t->key);
    return NULL;
  }
  const dt_value *args = dt_value_type(spec) == DT_LIST && dt_list_len(spec) > 0 ? dt_list_get(spec, 0) : NULL;
  dt_value *payload = NULL;
  if (args && dt_value_type(args) == DT_LIST) {
    for (size_t i = 0; i < dt_list_len(args); i++) {
      const dt_value *a = dt_list_get(args, i);
      if (i == 0 && dt_value_type(a) == DT_BYTES) payload = dt_value_ref((dt_value *)a);
      else if (dt_value_type(a) == DT_FUTURE) dt_list_push(deps, dt_str(a->u.fut.key));
    }
  }
  dt_map_set(out, "key", dt_str(t->key));
  dt_map_set(out, "func", dt_str(t->func));
  dt_map_set(out, "state", dt_str(dt__task_state_name(t->state)));
  dt_map_set(out, "payload", payload ? payload : dt_nil());
  dt_map_set(out, "deps", deps);
  dt_value_free(spec);
  return out;
}
