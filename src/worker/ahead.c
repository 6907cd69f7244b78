/*
 * ahead.c -- tasks the scheduler sent ahead (src/scheduler/speculate.c): a
 * COMPUTE_TASK whose dependency names no holder is waiting for a result
 * being computed here.  It waits in this table (dependency key -> tasks)
 * instead of being fetched, and goes to the ready heap the moment that
 * result is stored (dt__ahead_arrived, from exec.c), with no round trip
 * through the scheduler.  If the dependency fails, is cancelled or goes
 * elsewhere, the scheduler withdraws the task (FREE_KEYS), which drops it
 * from here.  Loop thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "worker_int.h"

typedef struct {
  char *key; /* owned: the table's key */
  uint32_t klen;
  dt_vec tasks; /* w_task* waiting for it */
} w_ahead;

static dt_smap A; /* dependency key -> w_ahead */

void dt__ahead_wait(const w_dep *d, w_task *t) {
  w_ahead *a = dt__smap_get(&A, d->key, d->klen);
  if (!a) {
    a = dt__xcalloc(1, sizeof(*a));
    a->key = dt__xstrndup(d->key, d->klen);
    a->klen = d->klen;
    dt__smap_put(&A, a->key, a->klen, a);
  }
  dt__vec_push(&a->tasks, t);
}

static void ahead_free(w_ahead *a) {
  dt__smap_del(&A, a->key, a->klen);
  dt__vec_free(&a->tasks);
  free(a->key);
  free(a);
  if (A.len == 0) dt__smap_destroy(&A);
}

void dt__ahead_arrived(const char *key, uint32_t klen, w_data *have) {
  w_ahead *a = A.len ? dt__smap_get(&A, key, klen) : NULL;
  if (!a) return;
  dt_vec tasks = a->tasks;
  a->tasks = (dt_vec){0};
  ahead_free(a);
  for (size_t i = 0; i < tasks.len; i++) {
    w_task *t = tasks.v[i];
    have->users++;
    if (t->nmissing != UINT32_MAX && --t->nmissing == 0) dt__exec_ready(t);
  }
  dt__vec_free(&tasks);
}

void dt__ahead_forget_task(w_task *t) {
  for (uint32_t i = 0; i < t->ndeps && A.len; i++) {
    w_ahead *a = dt__smap_get(&A, t->deps[i].key, t->deps[i].klen);
    if (a && dt__vec_remove(&a->tasks, t) && a->tasks.len == 0) ahead_free(a);
  }
}

void dt__ahead_destroy(void) {
  for (size_t i = 0; i < A.cap; i++)
    if (A.slots[i].key) {
      w_ahead *a = A.slots[i].val;
      dt__vec_free(&a->tasks);
      free(a->key);
      free(a);
    }
  dt__smap_destroy(&A);
}

/* ---------------------------------------------------------------- chains on the pool thread */

/* prepare_call: u's function and call (futures of its dependency still in
 * place); false, with nothing kept, if either is wrong (u then goes the
 * usual way, and fails there with the usual message) */
static bool prepare_call(w_task *u) {
  u->fn = dt_task_lookup(u->func);
  if (!u->fn || dt__payload_decode(&u->spec, &u->call) != 0) return false;
  if (dt_value_type(u->call) != DT_LIST || dt_list_len(u->call) != 2 ||
      dt_value_type(dt_list_get(u->call, 0)) != DT_LIST ||
      dt_value_type(dt_list_get(u->call, 1)) != DT_MAP) {
    dt_value_free(u->call);
    u->call = NULL;
    return false;
  }
  return true;
}

bool dt__ahead_chain(w_task *u, const w_dep *d) {
  if (u->ndeps != 1 || u->nres || u->timeout > 0 || dt__store.paused) return false;
  w_task *p = dt__smap_get(&dt__exec.tasks, d->key, d->klen);
  if (!p || p == u || p->cancelled) return false;
  if (!prepare_call(u)) return false;
  if (dt__pool_link(p, u)) return true;
  dt_value_free(u->call);
  u->call = NULL;
  return false;
}

/* bind: the futures of key inside v (a freshly decoded, unshared value)
 * become dep */
static void bind_dep(dt_value *v, const char *key, dt_value *dep) {
  size_t n = v->type == DT_LIST ? v->u.list.len : v->type == DT_MAP ? v->u.map.len : 0;
  dt_value **items = v->type == DT_LIST ? v->u.list.items : v->u.map.vals;
  for (size_t i = 0; i < n; i++) {
    dt_value *it = items[i];
    if (it->type == DT_FUTURE) {
      if (strcmp(it->u.fut.key, key) == 0) {
        items[i] = dt_value_ref(dep);
        dt_value_free(it);
      }
    } else {
      bind_dep(it, key, dep);
    }
  }
}

void dt__ahead_bind(w_task *u, const char *key, dt_value *dep) { bind_dep(u->call, key, dep); }

void dt__ahead_producer_gone(w_task *p) {
  w_task *u = p->then;
  if (!u) return;
  p->then = NULL;
  u->chained = false;
  u->chained_from = NULL;
  dt_value_free(u->call); /* prepared again when it is ready */
  u->call = NULL;
  u->fn = NULL;
  dt__ahead_wait(&u->deps[0], u);
}
