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
