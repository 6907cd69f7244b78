/*
 * exec.c -- the tasks the scheduler gave this worker, from COMPUTE_TASK to
 * their result: a task waits for its dependencies (FETCHING, fetch.c), then
 * sits in a priority heap (READY) until the pool has room and its resources
 * are free, then runs on a pool thread (EXECUTING) with its futures
 * replaced by the data held here.  Its result goes to the store and the
 * scheduler hears TASK_FINISHED or TASK_ERRED.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_int.h"

w_exec dt__exec;
#define X dt__exec

static bool ready_less(const void *a, const void *b) {
  const w_task *x = a, *y = b;
  if (x->priority != y->priority) return x->priority > y->priority;
  return x->seq < y->seq;
}

void dt__exec_init(void) {
  dt__smap_init(&X.tasks);
  dt__heap_init(&X.ready, ready_less, offsetof(w_task, heap_idx));
  X.res_used = dt__xcalloc(X.nres ? X.nres : 1, sizeof(double));
}

void dt__exec_task_free(w_task *t) {
  dt__ahead_producer_gone(t); /* a task chained to it waits the usual way */
  free(t->key);
  free(t->func);
  dt__payload_clear(&t->spec);
  for (uint32_t i = 0; i < t->ndeps; i++) {
    free(t->deps[i].key);
    for (uint32_t k = 0; k < t->deps[i].naddrs; k++) free(t->deps[i].addrs[k]);
    free(t->deps[i].addrs);
  }
  free(t->deps);
  dt__resources_free(t->res_names, t->res_amounts, t->nres);
  dt_value_free(t->call);
  dt_value_free(t->result);
  free(t->err);
  free(t);
}

void dt__exec_release_deps(w_task *t) {
  for (uint32_t i = 0; i < t->ndeps; i++) {
    w_data *d = dt__store_get(t->deps[i].key, t->deps[i].klen);
    if (!d) continue;
    if (d->users) d->users--;
    if (d->replica && d->users == 0) dt__store_del(d);
  }
}

void dt__exec_forget(w_task *t) {
  dt__smap_del(&X.tasks, t->key, t->klen);
  dt__exec_task_free(t);
}

/* replace_future: if *slot is a future, put its data there instead */
static int replace_future(dt_value **slot, char *err, size_t errcap) {
  dt_value *it = *slot;
  if (it->type != DT_FUTURE) return 0;
  w_data *d = dt__store_get(it->u.fut.key, (uint32_t)strlen(it->u.fut.key));
  if (!d || dt__store_unspill(d) != 0) {
    snprintf(err, errcap, "dependency '%s' is not on this worker%s", it->u.fut.key,
             d ? " (its spill file could not be read)" : "");
    return DT_ELOST;
  }
  *slot = dt_value_ref(d->v);
  dt_value_free(it);
  return 0;
}

/* subst: replace the futures inside a freshly decoded (unshared) value */
static int subst(dt_value *v, char *err, size_t errcap) {
  size_t n = v->type == DT_LIST ? v->u.list.len : v->type == DT_MAP ? v->u.map.len : 0;
  dt_value **items = v->type == DT_LIST ? v->u.list.items : v->u.map.vals;
  for (size_t i = 0; i < n; i++) {
    /* data put in place is shared with other tasks: never descend into it */
    int rc = items[i]->type == DT_FUTURE ? replace_future(&items[i], err, errcap)
                                         : subst(items[i], err, errcap);
    if (rc) return rc;
  }
  return 0;
}

static bool resources_free(const w_task *t) {
  for (uint32_t i = 0; i < t->nres; i++)
    for (uint32_t j = 0; j < X.nres; j++)
      if (strcmp(X.res_names[j], t->res_names[i]) == 0 &&
          X.res_amounts[j] - X.res_used[j] < t->res_amounts[i])
        return false;
  return true;
}

static void resources_take(const w_task *t, double sign) {
  for (uint32_t i = 0; i < t->nres; i++)
    for (uint32_t j = 0; j < X.nres; j++)
      if (strcmp(X.res_names[j], t->res_names[i]) == 0) X.res_used[j] += sign * t->res_amounts[i];
}

/* fail a task locally before it ran (bad function, bad arguments) */
static void fail_now(w_task *t, int code, const char *msg) {
  dt__link_erred(t->key, t->klen, code, t->func, msg);
  dt__exec_release_deps(t);
  dt__exec_forget(t);
}

/* prepare: t's function and its call with the data in place; 0, or fails
 * t (gone then) and returns nonzero */
static int prepare(w_task *t) {
  t->fn = dt_task_lookup(t->func);
  if (!t->fn) {
    char msg[512];
    snprintf(msg, sizeof(msg), "unknown task function '%s' on worker %s", t->func,
             dt__worker.address);
    fail_now(t, DT_ENOFUNC, msg);
    return DT_ENOFUNC;
  }
  int rc = dt__payload_decode(&t->spec, &t->call);
  char err[DT_MAX_KEY + 100] = "";
  if (rc == 0 && (dt_value_type(t->call) != DT_LIST || dt_list_len(t->call) != 2 ||
                  dt_value_type(dt_list_get(t->call, 0)) != DT_LIST ||
                  dt_value_type(dt_list_get(t->call, 1)) != DT_MAP)) {
    rc = DT_EPROTO;
    snprintf(err, sizeof(err), "task spec is not [args, kwargs]");
  }
  if (rc == 0) rc = subst(t->call, err, sizeof(err));
  if (rc) {
    char msg[DT_MAX_KEY + 200];
    snprintf(msg, sizeof(msg), "cannot prepare arguments of %s: %s", t->func,
             err[0] ? err : dt_last_error());
    fail_now(t, rc, msg);
  }
  return rc;
}

void dt__exec_start(void) {
  /* tasks blocked on resources get the first chance */
  for (size_t i = 0; i < X.blocked.len && X.executing < dt__worker.nthreads;) { /* resources: one per thread */
    w_task *t = X.blocked.v[i];
    if (resources_free(t)) {
      dt__vec_remove(&X.blocked, t);
      dt__heap_push(&X.ready, t);
    } else {
      i++;
    }
  }
  /* short tasks: hand the pool enough queued ones for ~1 ms of work per
   * thread (at least 4 + 4 per thread, at most 256 more per thread), so that a
   * thread finishing one takes the next without sleeping and waking, and
   * the loop refills the queue (and reports the finished ones) in batches
   * when it is half empty, not once per task (pool.c) */
  if (dt__store.paused) return; /* memory: nothing new until it falls */
  int nthreads = dt__worker.nthreads;
  int ahead = 0;
  if (X.avg_ns < 100000) {
    double per = X.avg_ns > 2000 ? X.avg_ns : 2000; /* the task and its handling */
    double want = 1e6 / per;
    int more = nthreads * (want > 256 ? 256 : (int)want);
    /* only as many more as tasks in a row were short: a stream of long
     * ones after a short one stays on the ready heap (priorities, stealing) */
    if (more > X.short_run) more = X.short_run;
    ahead = 4 * nthreads + 4 + (more > 0 ? more : 0);
  }
  int limit = nthreads + ahead;
  w_task *head = NULL, *tail = NULL;
  int n = 0;
  while (X.executing - dt__pool_seceded() < limit && X.ready.len) {
    w_task *t = dt__heap_pop(&X.ready);
    if (t->nres && !resources_free(t)) {
      dt__vec_push(&X.blocked, t);
      continue;
    }
    if (prepare(t) != 0) continue;
    t->state = WT_EXECUTING;
    resources_take(t, 1);
    X.executing++;
    if (t->timeout > 0) dt__cancel_timed_add(t);
    t->next_done = NULL;
    if (tail) tail->next_done = t;
    else head = t;
    tail = t;
    n++;
  }
  if (n) dt__pool_submit(head, tail, n, ahead / 2);
}

void dt__exec_done(w_task *list) {
  for (w_task *t = list, *next; t; t = next) {
    next = t->next_done;
    w_task *u = t->handed; /* ran on the pool right after t (ahead.c): executing */
    if (u) {
      X.executing++;
      u->state = WT_EXECUTING;
    }
    X.executing--;
    X.short_run = t->dur_ns < 100000 ? (X.short_run < (1 << 20) ? X.short_run + 1 : X.short_run) : 0;
    X.avg_ns = X.avg_ns > 0 ? 0.9 * X.avg_ns + 0.1 * (double)t->dur_ns : (double)t->dur_ns;
    resources_take(t, -1);
    dt__exec_release_deps(t);
    dt__cancel_returned(t);
    if (t->cancelled) {
      dt__link_released(t->key, t->klen); /* its thread is free again */
      dt__exec_task_free(t); /* already out of the task table */
      continue;
    }
    if (t->reschedule) {
      dt__link_reschedule(t->key, t->klen);
    } else if (t->result) {
      dt_value *r = t->result;
      t->result = NULL;
      w_data *d = dt__store_put(t->key, t->klen, r, false);
      dt__link_finished(t, d->spilled ? NULL : d->v, d->nbytes);
      if (u) d->users++; /* released by u's release_deps */
      dt__ahead_producer_gone(t); /* one the pool did not take (t seceded) waits below */
      dt__ahead_arrived(t->key, t->klen, d); /* tasks sent ahead start now */
    } else {
      dt__link_erred(t->key, t->klen, t->err_code, t->func, t->err);
    }
    dt__exec_forget(t);
  }
  dt__exec_start();
}

void dt__exec_ready(w_task *t) {
  t->state = WT_READY;
  dt__heap_push(&X.ready, t);
}

void dt__exec_add(w_task *t, const char *key, uint32_t klen) {
  t->seq = ++X.seq;
  dt__smap_put(&X.tasks, t->key, t->klen, t);
  /* dependencies: local ones are used in place, the others fetched */
  for (uint32_t i = 0; i < t->ndeps; i++) {
    w_dep *d = &t->deps[i];
    w_data *have = dt__store_get(d->key, d->klen);
    if (have) {
      have->users++;
      continue;
    }
    t->nmissing++;
    if (d->naddrs == 0) { /* being computed here (ahead.c) */
      if (!dt__ahead_chain(t, d)) dt__ahead_wait(d, t);
    }
    else dt__fetch_wait(d, t);
  }
  if (t->nmissing == 0) {
    dt__exec_ready(t);
    dt__exec_start();
    return;
  }
  t->state = WT_FETCHING;
  /* start the fetches this task created (those with no peer yet); t itself
   * may go meanwhile (a fetch that fails at once forgets it) */
  for (uint32_t i = 0; i < t->ndeps; i++) {
    dt__fetch_kick(t->deps[i].key, t->deps[i].klen);
    if (!dt__smap_get(&X.tasks, key, klen)) break; /* failed meanwhile */
  }
}

/* drop: t (out of the table already) was not running: free it */
static void drop(w_task *t) {
  if (t->state == WT_READY) {
    dt__heap_remove(&X.ready, t);
    dt__vec_remove(&X.blocked, t);
  } else {
    dt__fetch_forget_task(t);
    dt__ahead_forget_task(t);
  }
  dt__exec_release_deps(t);
  dt__exec_task_free(t);
}

void dt__exec_free_key(const char *key, uint32_t klen) {
  w_task *t = dt__smap_get(&X.tasks, key, klen);
  if (!t) return;
  dt__smap_del(&X.tasks, key, klen);
  if (t->state == WT_EXECUTING || (t->chained && dt__pool_unlink(t))) {
    t->cancelled = true; /* freed when it returns: TASK_RELEASED then */
    dt__cancel_zombie_add(t);
    return;
  }
  drop(t);
  dt__link_released(key, klen); /* the scheduler counted it busy until now */
}

/* dt__exec_drop_queued: the scheduler is gone and will place again every
 * task it sent us; keep only what is running (its result stays here, and
 * is announced when we register again) */
void dt__exec_drop_queued(void) {
  dt_vec gone = {0};
  for (size_t i = 0; i < X.tasks.cap; i++)
    if (X.tasks.slots[i].key && ((w_task *)X.tasks.slots[i].val)->state != WT_EXECUTING &&
        !(((w_task *)X.tasks.slots[i].val)->chained && dt__pool_unlink(X.tasks.slots[i].val)))
      dt__vec_push(&gone, X.tasks.slots[i].val);
  for (size_t i = 0; i < gone.len; i++) {
    w_task *t = gone.v[i];
    dt__smap_del(&X.tasks, t->key, t->klen);
    drop(t);
  }
  dt__vec_free(&gone);
}

void dt__exec_destroy(void) {
  dt__heap_destroy(&X.ready); /* first: it writes into the tasks still queued */
  for (size_t i = 0; i < X.tasks.cap; i++)
    if (X.tasks.slots[i].key) dt__exec_task_free(X.tasks.slots[i].val);
  dt__smap_destroy(&X.tasks);
  dt__vec_free(&X.blocked);
  dt__vec_free(&X.zombies);
  dt__vec_free(&X.timed);
  dt__resources_free(X.res_names, X.res_amounts, X.nres);
  free(X.res_used);
}
