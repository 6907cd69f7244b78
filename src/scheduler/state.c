/*
 * state.c -- the scheduler's task state machine (see state.h).  Every
 * public function is one event; each does O(1) work per task it touches
 * (plus O(dependencies) for graph edges) and never scans all workers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

const s_task_rare dt__no_rare; /* all zero: what RARE() reads for most tasks */

static const char *state_names[TS_COUNT] = {"released", "waiting", "no-worker", "queued",
                                            "processing", "memory", "erred", "forgotten"};
const char *dt__task_state_name(int st) {
  return st >= 0 && st < TS_COUNT ? state_names[st] : "?";
}

static bool prio_less(const void *a, const void *b) {
  const s_task *x = a, *y = b;
  if (x->priority != y->priority) return x->priority > y->priority;
  if (x->generation != y->generation) return x->generation < y->generation;
  return x->order < y->order;
}

static s_func *func_new(const char *f, uint32_t flen);

void dt__sched_init(sched *s) {
  memset(s, 0, sizeof(*s));
  dt__smap_init(&s->tasks);
  dt__heap_init(&s->queued, prio_less, offsetof(s_task, heap_idx));
  s->allowed_failures = 3;
  s->overflow_func = func_new("(too many function names)", 25);
  s->stream = dt__xcalloc(DT_STREAM_CAP, sizeof(*s->stream));
}

static void set_state(sched *s, s_task *t, s_task_state st) {
  s->count[t->state]--;
  s->count[st]++;
  s_func *f = DT_FUNC_OF(t->func);
  f->count[t->state]--;
  f->count[st]++;
  if (st == TS_ERRED) f->failed++;
  t->state = st;
}

s_task *dt__sched_get_task(sched *s, const char *key, uint32_t klen) {
  return dt__smap_get(&s->tasks, key, klen);
}

/* ---------------------------------------------------------------- messages */

static void msg_key_in_memory(s_client *c, s_task *t, const char *inline_, uint32_t ilen) {
  if (!c->conn) return;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c->conn), DT_OP_KEY_IN_MEMORY);
  dt__e_str(&e, t->key, t->klen);
  s_worker *holder = t->who_has.len ? t->who_has.v[0] : NULL;
  dt__e_cstr(&e, holder ? holder->address : "");
  dt__e_uint(&e, t->nbytes);
  if (inline_ && t->send_inline) dt__e_bin(&e, inline_, ilen);
  else dt__e_nil(&e);
  dt__e_end(&e);
}

static void msg_key_erred_raw(dt_conn *conn, const char *key, uint32_t klen, int code,
                              const char *origin, const char *func, const char *worker,
                              const char *msg) {
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(conn), DT_OP_KEY_ERRED);
  dt__e_str(&e, key, klen);
  dt__e_int(&e, code);
  dt__e_cstr(&e, origin);
  dt__e_cstr(&e, func);
  dt__e_cstr(&e, worker);
  dt__e_cstr(&e, msg);
  dt__e_end(&e);
}

static void msg_free_keys(dt_conn *conn, const char *key, uint32_t klen) {
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(conn), DT_OP_FREE_KEYS);
  dt__e_list(&e, 1);
  dt__e_str(&e, key, klen);
  dt__e_end(&e);
}

static void msg_key_erred(s_client *c, s_task *t) {
  if (!c->conn) return;
  msg_key_erred_raw(c->conn, t->key, t->klen, RARE(t)->err_code,
                    RARE(t)->err_key ? RARE(t)->err_key : t->key,
                    RARE(t)->err_func ? RARE(t)->err_func : t->func,
                    RARE(t)->err_worker ? RARE(t)->err_worker : "",
                    RARE(t)->err_msg ? RARE(t)->err_msg : "unknown error");
}

static void msg_free_key(s_worker *wk, s_task *t) {
  if (!wk->conn) return;
  msg_free_keys(wk->conn, t->key, t->klen);
}

static void msg_compute(s_worker *wk, s_task *t) {
  if (!wk->conn) return;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(wk->conn), DT_OP_COMPUTE_TASK);
  dt__e_str(&e, t->key, t->klen);
  dt__e_cstr(&e, t->func);
  dt__e_payload(&e, &t->spec);
  dt__e_list(&e, t->ndeps);
  for (uint32_t i = 0; i < t->ndeps; i++) {
    s_task *d = t->deps[i];
    dt__e_rec(&e);
    dt__e_str(&e, d->key, d->klen);
    dt__e_uint(&e, d->nbytes);
    dt__e_list(&e, (uint32_t)d->who_has.len);
    for (size_t j = 0; j < d->who_has.len; j++) dt__e_cstr(&e, ((s_worker *)d->who_has.v[j])->address);
  }
  dt__e_int(&e, t->priority);
  dt__e_map(&e, RARE(t)->nres);
  for (uint32_t i = 0; i < RARE(t)->nres; i++) {
    dt__e_cstr(&e, RARE(t)->res_names[i]);
    dt__e_double(&e, RARE(t)->res_amounts[i]);
  }
  dt__e_end(&e);
}

/* ---------------------------------------------------------------- workers */

int dt__sched_worker_capacity(const sched *s, const s_worker *w) {
  double avg = s->avg_task_s > 0 ? s->avg_task_s : 0.0005;
  /* enough tasks in flight to cover ~2 ms of scheduler round trip */
  double extra = (double)w->nthreads * 0.002 / avg;
  if (extra < 1) extra = 1;
  if (extra > 512.0 * w->nthreads) extra = 512.0 * w->nthreads;
  return w->nthreads + (int)extra;
}

static void free_remove(sched *s, s_worker *w) {
  if (!w->in_free_list) return;
  if (w->free_prev) w->free_prev->free_next = w->free_next;
  else s->free_head = w->free_next;
  if (w->free_next) w->free_next->free_prev = w->free_prev;
  else s->free_tail = w->free_prev;
  w->free_prev = w->free_next = NULL;
  w->in_free_list = false;
}

static void free_append(sched *s, s_worker *w) {
  if (w->in_free_list || w->retiring || w->paused) return;
  w->free_prev = s->free_tail;
  w->free_next = NULL;
  if (s->free_tail) s->free_tail->free_next = w;
  else s->free_head = w;
  s->free_tail = w;
  w->in_free_list = true;
}

static void update_free(sched *s, s_worker *w) {
  if ((int)w->processing.len < dt__sched_worker_capacity(s, w)) free_append(s, w);
  else free_remove(s, w);
}

static double occupancy(const s_worker *w) {
  return (double)w->processing.len / (w->nthreads > 0 ? w->nthreads : 1);
}

static void proc_add(s_worker *w, s_task *t) {
  t->proc_idx = w->processing.len;
  dt__vec_push(&w->processing, t);
  t->processing_on = w;
}

static void proc_remove(s_task *t) {
  s_worker *w = t->processing_on;
  if (!w) return;
  size_t i = t->proc_idx;
  s_task *last = w->processing.v[--w->processing.len];
  w->processing.v[i] = last;
  last->proc_idx = i;
  t->processing_on = NULL;
}

static void send_compute(sched *s, s_task *t, s_worker *w) {
  set_state(s, t, TS_PROCESSING);
  proc_add(w, t);
  msg_compute(w, t);
  if (w->in_free_list && (int)w->processing.len >= dt__sched_worker_capacity(s, w)) free_remove(s, w);
}

/* ---------------------------------------------------------------- placement */

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
 * the named ones when the restriction is loose). */
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
  for (size_t i = 0; !best && i < s->workers.len; i++)
    if (!((s_worker *)s->workers.v[i])->retiring && !((s_worker *)s->workers.v[i])->paused)
      best = s->workers.v[i];
  return best; /* NULL: every worker is retiring */
}

static void nw_link(sched *s, s_task *t) {
  set_state(s, t, TS_NO_WORKER);
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

/* ready: every dependency is in memory. */
static void ready(sched *s, s_task *t) {
  if (RARE(t)->nrestrict || RARE(t)->nres) {
    s_worker *w = pick_restricted(s, t);
    if (w) send_compute(s, t, w);
    else nw_link(s, t);
    return;
  }
  if (s->workers.len == 0) {
    nw_link(s, t);
    return;
  }
  if (t->ndeps == 0) {
    set_state(s, t, TS_QUEUED);
    dt__heap_push(&s->queued, t);
    return;
  }
  s_worker *w = pick_by_deps(s, t);
  if (w) send_compute(s, t, w);
  else nw_link(s, t);
}

/* fill: hand queued root tasks to workers with free slots, round robin. */
static void fill(sched *s) {
  while (s->queued.len && s->free_head) {
    s_worker *w = s->free_head;
    if ((int)w->processing.len >= dt__sched_worker_capacity(s, w)) {
      free_remove(s, w);
      continue;
    }
    s_task *t = dt__heap_pop(&s->queued);
    send_compute(s, t, w);
    if (w->in_free_list) { /* rotate so that work spreads over workers */
      free_remove(s, w);
      free_append(s, w);
    }
  }
}

/* ---------------------------------------------------------------- lifecycle */

static void task_free(s_task *t) {
  dt__payload_clear(&t->spec);
  free(t->deps);
  dt__vec_free(&t->dependents);
  dt__vec1_free(&t->wanted_by);
  dt__vec1_free(&t->who_has);
  s_task_rare *r = t->rare;
  if (r) {
    for (uint32_t i = 0; i < r->nrestrict; i++) free(r->restrict_to[i]);
    free(r->restrict_to);
    dt__resources_free(r->res_names, r->res_amounts, r->nres);
    free(r->err_key);
    free(r->err_func);
    free(r->err_worker);
    free(r->err_msg);
    free(r);
  }
  free(t);
}

static void drop_holders(sched *s, s_task *t) {
  (void)s;
  for (size_t i = 0; i < t->who_has.len; i++) {
    s_worker *w = t->who_has.v[i];
    msg_free_key(w, t);
    w->nkeys--;
    w->nbytes -= t->nbytes < w->nbytes ? t->nbytes : w->nbytes;
  }
  t->who_has.len = 0;
}

/* unschedule: take a task that has not run yet out of wherever it waits. */
static void unschedule(sched *s, s_task *t) {
  switch (t->state) {
  case TS_QUEUED: dt__heap_remove(&s->queued, t); break;
  case TS_NO_WORKER: nw_unlink(s, t); break;
  case TS_PROCESSING: {
    s_worker *w = t->processing_on;
    proc_remove(t);
    msg_free_key(w, t); /* the worker drops it, or its result when done */
    update_free(s, w);
    break;
  }
  default: break;
  }
}

/* gc: release and forget what nobody needs, from t down its dependencies.
 * Iterative: chains of any length. */
static void gc(sched *s, s_task *t0) {
  dt_vec stack = {0};
  if (t0->mark == UINT64_MAX) return; /* already on a gc stack */
  t0->mark = UINT64_MAX;
  dt__vec_push(&stack, t0);
  while (stack.len) {
    s_task *t = stack.v[--stack.len];
    t->mark = 0;
    if (t->wanted_by.len || t->waiters) continue;
    switch (t->state) {
    case TS_MEMORY:
      drop_holders(s, t);
      set_state(s, t, TS_RELEASED);
      break;
    case TS_WAITING: case TS_NO_WORKER: case TS_QUEUED: case TS_PROCESSING:
      unschedule(s, t);
      set_state(s, t, TS_RELEASED);
      break;
    default: break;
    }
    if (t->holds_deps) {
      t->holds_deps = false;
      for (uint32_t i = 0; i < t->ndeps; i++) {
        s_task *d = t->deps[i];
        d->waiters--;
        if (d->mark != UINT64_MAX) {
          d->mark = UINT64_MAX;
          dt__vec_push(&stack, d);
        }
      }
    }
    if (t->dependents.len == 0 && (t->state == TS_RELEASED || t->state == TS_ERRED)) {
      for (uint32_t i = 0; i < t->ndeps; i++) {
        s_task *d = t->deps[i];
        dt__vec_remove(&d->dependents, t);
        if (d->mark != UINT64_MAX) {
          d->mark = UINT64_MAX;
          dt__vec_push(&stack, d);
        }
      }
      dt__smap_del(&s->tasks, t->key, t->klen);
      s->count[t->state]--;
      DT_FUNC_OF(t->func)->count[t->state]--;
      task_free(t);
    }
  }
  dt__vec_free(&stack);
}

/* intern: one copy of each function name (bounded: past 65,536 distinct
 * names, which no real program has, they share one name instead) */
static s_func *func_new(const char *f, uint32_t flen) {
  s_func *fs = dt__xcalloc(1, sizeof(*fs) + flen + 1);
  memcpy(fs->name, f, flen);
  return fs;
}

static const char *intern(sched *s, const char *f, uint32_t flen) {
  char *have = dt__smap_get(&s->funcs, f, flen);
  if (have) return have;
  if (s->funcs.len >= 65536) return s->overflow_func->name;
  s_func *fs = func_new(f, flen);
  dt__smap_put(&s->funcs, fs->name, flen, fs->name);
  return fs->name;
}

/* task_new: a RELEASED task with its key in the same allocation */
static s_task *task_new(sched *s, const char *key, uint32_t klen, const char *func,
                        uint32_t flen) {
  s_task *t = dt__xcalloc(1, sizeof(*t) + klen + 1);
  memcpy(t->key, key, klen);
  t->klen = klen;
  t->func = intern(s, func, flen);
  dt__vec1_init(&t->wanted_by);
  dt__vec1_init(&t->who_has);
  t->state = TS_RELEASED;
  s->count[TS_RELEASED]++;
  DT_FUNC_OF(t->func)->count[TS_RELEASED]++;
  dt__smap_put(&s->tasks, t->key, klen, t);
  return t;
}

/* gc_keys: gc each task named in keys (owned copies, freed here).  Used
 * where gc of one task may free another we hold a pointer to. */
static void gc_keys(sched *s, dt_vec *keys) {
  for (size_t i = 0; i < keys->len; i++) {
    char *k = keys->v[i];
    s_task *t = dt__sched_get_task(s, k, (uint32_t)strlen(k));
    if (t) gc(s, t);
    free(k);
  }
  dt__vec_free(keys);
}

static s_task_rare *rare_of(s_task *t) {
  if (!t->rare) t->rare = dt__xcalloc(1, sizeof(*t->rare));
  return t->rare;
}

static void set_error(s_task *t, int code, const char *origin, const char *func,
                      const char *worker, const char *msg) {
  s_task_rare *r = rare_of(t);
  /* the new strings first: origin may be r->err_key of a dependency */
  char *k = dt__xstrdup(origin), *f = dt__xstrdup(func ? func : ""),
       *w = dt__xstrdup(worker ? worker : ""), *m = dt__xstrdup(msg ? msg : "");
  free(r->err_key);
  free(r->err_func);
  free(r->err_worker);
  free(r->err_msg);
  r->err_code = code;
  r->err_key = k;
  r->err_func = f;
  r->err_worker = w;
  r->err_msg = m;
}

/* erred: t failed; every dependent still waiting fails with the same error. */
static void erred(sched *s, s_task *t0, int code, const char *origin, const char *func,
                  const char *worker, const char *msg) {
  dt_vec stack = {0}, done = {0};
  dt__vec_push(&stack, t0);
  while (stack.len) {
    s_task *t = stack.v[--stack.len];
    if (t->state == TS_ERRED || t->state == TS_MEMORY) continue;
    unschedule(s, t);
    set_state(s, t, TS_ERRED);
    set_error(t, code, origin, func, worker, msg);
    for (size_t i = 0; i < t->wanted_by.len; i++) msg_key_erred(t->wanted_by.v[i], t);
    for (size_t i = 0; i < t->dependents.len; i++) dt__vec_push(&stack, t->dependents.v[i]);
    dt__vec_push(&done, t);
  }
  /* failed tasks no longer need their dependencies */
  for (size_t i = 0; i < done.len; i++) {
    s_task *t = done.v[i];
    if (t->holds_deps) {
      t->holds_deps = false;
      for (uint32_t j = 0; j < t->ndeps; j++) t->deps[j]->waiters--;
      for (uint32_t j = 0; j < t->ndeps; j++) gc(s, t->deps[j]);
    }
  }
  dt__vec_free(&stack);
  /* forget unwanted erred tasks; gc of one may free another: go by key */
  dt_vec keys = {0};
  for (size_t i = done.len; i-- > 0;) dt__vec_push(&keys, dt__xstrdup(((s_task *)done.v[i])->key));
  dt__vec_free(&done);
  gc_keys(s, &keys);
}

/* to_waiting: t (RELEASED) is needed; recompute what it lacks. */
static void to_waiting(sched *s, s_task *t0) {
  dt_vec stack = {0};
  set_state(s, t0, TS_WAITING);
  dt__vec_push(&stack, t0);
  while (stack.len) {
    s_task *t = stack.v[--stack.len];
    t->nwaiting = 0;
    s_task *failed = NULL;
    for (uint32_t i = 0; i < t->ndeps; i++) {
      s_task *d = t->deps[i];
      if (!t->holds_deps) d->waiters++;
      if (d->state == TS_MEMORY) continue;
      if (d->state == TS_ERRED) {
        failed = d;
        continue;
      }
      t->nwaiting++;
      if (d->state == TS_RELEASED) {
        set_state(s, d, TS_WAITING);
        dt__vec_push(&stack, d);
      }
    }
    t->holds_deps = true;
    if (failed) {
      char msg[512];
      snprintf(msg, sizeof(msg), "%s", RARE(failed)->err_msg ? RARE(failed)->err_msg : "dependency failed");
      erred(s, t, RARE(failed)->err_code, RARE(failed)->err_key ? RARE(failed)->err_key : failed->key,
            RARE(failed)->err_func, RARE(failed)->err_worker, msg);
    } else if (t->nwaiting == 0) {
      ready(s, t);
    }
  }
  dt__vec_free(&stack);
}

/* ---------------------------------------------------------------- events */

s_worker *dt__sched_add_worker_only(sched *s, dt_conn *conn, const char *name, const char *address,
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
  free_append(s, w);
  return w;
}

s_worker *dt__sched_add_worker(sched *s, dt_conn *conn, const char *name, const char *address,
                           int nthreads, char **res_names, double *res_amounts, uint32_t nres) {
  s_worker *w = dt__sched_add_worker_only(s, conn, name, address, nthreads, res_names, res_amounts, nres);
  dt__sched_worker_place(s, w);
  return w;
}

void dt__sched_worker_place(sched *s, s_worker *w) {
  /* tasks that had nowhere to go may go here now */
  s_task *t = s->nw_head;
  while (t) {
    s_task *next = t->nw_next;
    if (!RARE(t)->nrestrict && !RARE(t)->nres) {
      nw_unlink(s, t);
      set_state(s, t, TS_WAITING);
      ready(s, t);
    } else if (worker_valid(t, w) || (RARE(t)->loose)) {
      nw_unlink(s, t);
      set_state(s, t, TS_WAITING);
      send_compute(s, t, w);
    }
    t = next;
  }
  fill(s);
}

/* killed_msg: Dask's KilledWorker, with what we know of the deaths */
static void killed(sched *s, s_task *t, const char *worker, const char *how) {
  char msg[DT_MAX_KEY + 512];
  snprintf(msg, sizeof(msg),
           "Attempted to run task '%s' on %d different workers, but all those workers died "
           "while running it (allowed_failures=%d). The last worker that attempted to run it "
           "was %s (%s). Inspecting worker logs is often a good next step.",
           t->key, (int)t->suspicious, s->allowed_failures, worker, how);
  DT_WARN("%s", msg);
  erred(s, t, DT_EKILLED, t->key, t->func, worker, msg);
}

/* suspect: one more worker died running t; true if that was one too many */
static bool suspect(sched *s, s_task *t) {
  if (t->suspicious < 255) t->suspicious++;
  return (int)t->suspicious > s->allowed_failures;
}

void dt__sched_remove_worker(sched *s, s_worker *w, bool suspicious) {
  free_remove(s, w);
  dt__vec_remove(&s->workers, w);
  if (!w->closing) s->workers_lost++;
  /* its tasks in flight go back to be placed again */
  dt_vec redo = {0}, bad = {0};
  while (w->processing.len) {
    s_task *t = w->processing.v[0];
    proc_remove(t);
    set_state(s, t, TS_WAITING);
    dt__vec_push(suspicious && suspect(s, t) ? &bad : &redo, t);
  }
  /* results held only there are lost: recompute the ones still needed.
   * O(tasks) on a rare event. */
  dt_vec lost = {0};
  for (size_t i = 0; i < s->tasks.cap; i++) {
    s_task *t = s->tasks.slots[i].val;
    if (!s->tasks.slots[i].key || !dt__vec1_remove(&t->who_has, w)) continue;
    if (t->who_has.len == 0 && t->state == TS_MEMORY) dt__vec_push(&lost, t);
  }
  for (size_t i = 0; i < lost.len; i++) {
    s_task *t = lost.v[i];
    set_state(s, t, TS_RELEASED);
    for (size_t j = 0; j < t->dependents.len; j++) {
      s_task *d = t->dependents.v[j];
      if (d->state == TS_WAITING && d->holds_deps) d->nwaiting++;
    }
  }
  for (size_t i = 0; i < lost.len; i++) {
    s_task *t = lost.v[i];
    if (t->state != TS_RELEASED) continue;
    if (t->wanted_by.len || t->waiters) to_waiting(s, t);
  }
  for (size_t i = 0; i < redo.len; i++) {
    s_task *t = redo.v[i];
    if (t->state != TS_WAITING) continue;
    t->nwaiting = 0;
    for (uint32_t j = 0; j < t->ndeps; j++)
      if (t->deps[j]->state != TS_MEMORY) t->nwaiting++;
    if (t->nwaiting == 0) ready(s, t);
  }
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
  gc_keys(s, &keys);
  dt__vec_free(&w->processing);
  dt__resources_free(w->res_names, w->res_amounts, w->nres);
  free(w->name);
  free(w->address);
  free(w);
  fill(s);
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
  fill(s);
}

s_client *dt__sched_add_client(sched *s, dt_conn *conn, const char *name) {
  s_client *c = dt__xcalloc(1, sizeof(*c));
  c->kind = PEER_CLIENT;
  c->id = ++s->next_id;
  c->name = dt__xstrdup(name && *name ? name : "client");
  c->conn = conn;
  dt__smap_init(&c->wants);
  dt__vec_push(&s->clients, c);
  return c;
}

void dt__sched_remove_client(sched *s, s_client *c) {
  dt__vec_remove(&s->clients, c);
  /* release everything it held */
  dt_vec keys = {0};
  for (size_t i = 0; i < c->wants.cap; i++) {
    if (!c->wants.slots[i].key) continue;
    s_task *t = c->wants.slots[i].val;
    dt__vec1_remove(&t->wanted_by, c);
    dt__vec_push(&keys, dt__xstrdup(t->key));
  }
  dt__smap_destroy(&c->wants);
  free(c->name);
  free(c);
  gc_keys(s, &keys);
  fill(s);
}

void dt__sched_client_want(sched *s, s_client *c, const char *key, uint32_t klen) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t) {
    if (!c->conn) return;
    char origin[DT_MAX_KEY + 1];
    snprintf(origin, sizeof(origin), "%.*s", (int)klen, key);
    msg_key_erred_raw(c->conn, key, klen, DT_ENOTFOUND, origin, "", "",
                      "key is not known to the scheduler (released, or from a closed client)");
    return;
  }
  if (dt__smap_get(&c->wants, t->key, t->klen)) return;
  dt__smap_put(&c->wants, t->key, t->klen, t);
  dt__vec1_push(&t->wanted_by, c);
  if (t->state == TS_MEMORY) msg_key_in_memory(c, t, NULL, 0);
  else if (t->state == TS_ERRED) msg_key_erred(c, t);
  else if (t->state == TS_RELEASED) to_waiting(s, t);
}

void dt__sched_client_who_has(sched *s, s_client *c, const char *key, uint32_t klen) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || !dt__smap_get(&c->wants, key, klen)) {
    dt__sched_client_want(s, c, key, klen); /* says it is unknown, or wants it again */
    return;
  }
  if (t->state == TS_MEMORY) msg_key_in_memory(c, t, NULL, 0);
  else if (t->state == TS_ERRED) msg_key_erred(c, t);
  /* otherwise it is being (re)computed: KEY_IN_MEMORY follows */
}

void dt__sched_client_release(sched *s, s_client *c, const char *key, uint32_t klen) {
  s_task *t = dt__smap_del(&c->wants, key, klen);
  if (!t) return;
  dt__vec1_remove(&t->wanted_by, c);
  gc(s, t);
  fill(s);
}

static void msg_key_cancelled(s_client *c, const char *key, uint32_t klen, const char *why) {
  if (!c->conn) return;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c->conn), DT_OP_KEY_CANCELLED);
  dt__e_str(&e, key, klen);
  dt__e_cstr(&e, why);
  dt__e_end(&e);
}

/* cancel: the client gives up key and, as Dask does, every key it wants
 * downstream of it (they could only finish by computing key); other
 * clients' interest keeps their tasks. */
void dt__sched_client_cancel(sched *s, s_client *c, const char *key, uint32_t klen) {
  s_task *t = dt__smap_get(&c->wants, key, klen);
  msg_key_cancelled(c, key, klen,
                    t && t->wanted_by.len > 1 ? "released (other clients still want it)" : "cancelled");
  if (!t) return;
  uint64_t ep = ++s->mark_epoch;
  dt_vec stack = {0}, hit = {0};
  t->mark = ep;
  dt__vec_push(&stack, t);
  while (stack.len) {
    s_task *x = stack.v[--stack.len];
    for (size_t i = 0; i < x->dependents.len; i++) {
      s_task *d = x->dependents.v[i];
      if (d->mark == ep) continue;
      d->mark = ep;
      dt__vec_push(&stack, d);
      if (dt__smap_get(&c->wants, d->key, d->klen)) dt__vec_push(&hit, d);
    }
  }
  /* hold the tasks while releasing: a release may free a task */
  char **keys = dt__xmalloc((hit.len ? hit.len : 1) * sizeof(char *));
  for (size_t i = 0; i < hit.len; i++) keys[i] = dt__xstrdup(((s_task *)hit.v[i])->key);
  size_t n = hit.len;
  dt__vec_free(&stack);
  dt__vec_free(&hit);
  char why[300];
  snprintf(why, sizeof(why), "cancelled: it depends on cancelled '%.200s'", t->key);
  dt__sched_client_release(s, c, key, klen);
  for (size_t i = 0; i < n; i++) {
    uint32_t kl = (uint32_t)strlen(keys[i]);
    msg_key_cancelled(c, keys[i], kl, why);
    dt__sched_client_release(s, c, keys[i], kl);
    free(keys[i]);
  }
  free(keys);
}

/* postorder DFS over the batch: a branch is finished before the next starts */
static void order_batch(sched *s, s_task **batch, bool *isnew, uint32_t n) {
  uint64_t in_batch = ++s->mark_epoch, visited = ++s->mark_epoch;
  for (uint32_t i = 0; i < n; i++)
    if (isnew[i]) batch[i]->mark = in_batch;
  struct frame { s_task *t; uint32_t next; } *st = NULL;
  size_t sp = 0, scap = 0;
  for (uint32_t i = 0; i < n; i++) {
    s_task *root = batch[i];
    if (!isnew[i] || root->mark != in_batch) continue;
    bool sink = true;
    for (size_t k = 0; k < root->dependents.len && sink; k++)
      sink = ((s_task *)root->dependents.v[k])->mark != in_batch &&
             ((s_task *)root->dependents.v[k])->mark != visited;
    if (!sink) continue;
    if (sp == scap) { scap = scap ? scap * 2 : 64; st = dt__xrealloc(st, scap * sizeof(*st)); }
    st[sp++] = (struct frame){root, 0};
    root->mark = visited;
    while (sp) {
      struct frame *f = &st[sp - 1];
      if (f->next < f->t->ndeps) {
        s_task *d = f->t->deps[f->next++];
        if (d->mark == in_batch) {
          d->mark = visited;
          if (sp == scap) { scap *= 2; st = dt__xrealloc(st, scap * sizeof(*st)); f = NULL; }
          st[sp++] = (struct frame){d, 0};
        }
        continue;
      }
      f->t->order = ++s->order_counter;
      sp--;
    }
  }
  for (uint32_t i = 0; i < n; i++) /* anything left (cycles were broken before) */
    if (isnew[i] && batch[i]->mark == in_batch) batch[i]->order = ++s->order_counter;
  free(st);
}

/* break_cycles: a batch may name its own keys as dependencies in any order,
 * so a buggy or hostile client can send a cycle, which would wait forever
 * and never be released.  A depth-first search over the new tasks removes
 * each edge that closes a cycle (a back edge: what is left is acyclic) and
 * lists the task and the dependency for the caller to fail. */
static void break_cycles(sched *s, s_task **batch, const bool *isnew, uint32_t n, dt_vec *out) {
  uint64_t white = ++s->mark_epoch, gray = ++s->mark_epoch, black = ++s->mark_epoch;
  for (uint32_t i = 0; i < n; i++)
    if (isnew[i]) batch[i]->mark = white;
  struct frame { s_task *t; uint32_t next; } *st = NULL;
  size_t sp = 0, scap = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (!isnew[i] || batch[i]->mark != white) continue;
    if (sp == scap) { scap = scap ? scap * 2 : 64; st = dt__xrealloc(st, scap * sizeof(*st)); }
    st[sp++] = (struct frame){batch[i], 0};
    batch[i]->mark = gray;
    while (sp) {
      struct frame *f = &st[sp - 1];
      if (f->next >= f->t->ndeps) {
        f->t->mark = black;
        sp--;
        continue;
      }
      s_task *t = f->t, *d = t->deps[f->next];
      if (d->mark == gray) { /* t -> d closes a cycle: remove the edge */
        dt__vec_remove(&d->dependents, t);
        t->deps[f->next] = t->deps[--t->ndeps];
        dt__vec_push(out, dt__xstrdup(t->key));
        dt__vec_push(out, dt__xstrdup(d->key));
        continue;
      }
      f->next++;
      if (d->mark == white) {
        d->mark = gray;
        if (sp == scap) { scap *= 2; st = dt__xrealloc(st, scap * sizeof(*st)); }
        st[sp++] = (struct frame){d, 0};
      }
    }
  }
  for (uint32_t i = 0; i < n; i++) batch[i]->mark = 0;
  free(st);
}

void dt__sched_update_graph(sched *s, s_client *c, s_newtask *nts, uint32_t n, const char **wanted,
                        const uint32_t *wanted_lens, uint32_t nwanted) {
  s_task **batch = dt__xmalloc((n ? n : 1) * sizeof(*batch));
  bool *isnew = dt__xcalloc(n ? n : 1, sizeof(*isnew));
  bool *created = dt__xcalloc(n ? n : 1, sizeof(*created)); /* isnew, before failures */
  uint64_t gen = ++s->generation;
  for (uint32_t i = 0; i < n; i++) {
    s_newtask *nt = &nts[i];
    s_task *t = dt__sched_get_task(s, nt->key, nt->klen);
    if (t) {
      dt__payload_clear(&nt->spec);
      batch[i] = t;
      continue;
    }
    t = task_new(s, nt->key, nt->klen, nt->func, nt->flen);
    t->spec = nt->spec;
    memset(&nt->spec, 0, sizeof(nt->spec));
    t->priority = nt->priority;
    t->generation = gen;
    t->retries = nt->retries;
    if (nt->nrestrict) {
      s_task_rare *r = rare_of(t);
      r->restrict_to = dt__xmalloc(nt->nrestrict * sizeof(char *));
      for (uint32_t k = 0; k < nt->nrestrict; k++)
        r->restrict_to[k] = dt__xstrndup(nt->restrict_to[k], nt->restrict_lens[k]);
      r->nrestrict = nt->nrestrict;
      r->loose = nt->loose;
    }
    if (nt->nres) {
      s_task_rare *r = rare_of(t);
      r->res_names = dt__xmalloc(nt->nres * sizeof(char *));
      r->res_amounts = dt__xmalloc(nt->nres * sizeof(double));
      for (uint32_t k = 0; k < nt->nres; k++) {
        r->res_names[k] = dt__xstrndup(nt->res_names[k], nt->res_name_lens[k]);
        r->res_amounts[k] = nt->res_amounts[k];
      }
      r->nres = nt->nres;
    }
    batch[i] = t;
    isnew[i] = created[i] = true;
  }
  /* link dependencies (deduplicated); a dependency nobody knows fails the
   * task once the client's interest is registered below */
  dt_vec failed = {0};
  for (uint32_t i = 0; i < n; i++) {
    if (!isnew[i]) continue;
    s_task *t = batch[i];
    s_newtask *nt = &nts[i];
    uint64_t epoch = ++s->mark_epoch;
    t->deps = nt->ndeps ? dt__xmalloc(nt->ndeps * sizeof(*t->deps)) : NULL;
    char *missing = NULL;
    for (uint32_t k = 0; k < nt->ndeps; k++) {
      s_task *d = dt__sched_get_task(s, nt->dep_keys[k], nt->dep_lens[k]);
      if (!d) {
        if (!missing) missing = dt__xstrndup(nt->dep_keys[k], nt->dep_lens[k]);
        continue;
      }
      if (d == t || d->mark == epoch) continue;
      d->mark = epoch;
      t->deps[t->ndeps++] = d;
      dt__vec_push(&d->dependents, t);
    }
    for (uint32_t k = 0; k < t->ndeps; k++) t->deps[k]->mark = 0;
    if (missing) {
      dt__vec_push(&failed, dt__xstrdup(t->key));
      dt__vec_push(&failed, missing);
      isnew[i] = false; /* settled below */
    }
  }
  dt_vec cyclic = {0}; /* pairs: task, the dependency that closed a cycle */
  break_cycles(s, batch, created, n, &cyclic);
  order_batch(s, batch, isnew, n);
  for (uint32_t i = 0; i < n; i++) batch[i]->mark = 0;
  /* the client's interest first, so nothing is forgotten in between */
  for (uint32_t i = 0; i < nwanted; i++) {
    s_task *t = dt__sched_get_task(s, wanted[i], wanted_lens[i]);
    if (t && t->state == TS_RELEASED && !dt__smap_get(&c->wants, t->key, t->klen)) {
      dt__smap_put(&c->wants, t->key, t->klen, t);
      dt__vec1_push(&t->wanted_by, c);
      continue; /* started below (or now, if it is an old released key) */
    }
    dt__sched_client_want(s, c, wanted[i], wanted_lens[i]);
  }
  /* from here on, failing or forgetting one task may free another: the
   * batch is looked up by key */
  for (size_t i = 0; i < failed.len; i += 2) {
    char *key = failed.v[i], *missing = failed.v[i + 1];
    s_task *t = dt__sched_get_task(s, key, (uint32_t)strlen(key));
    if (t && t->state == TS_RELEASED) {
      char msg[DT_MAX_KEY + 200];
      snprintf(msg, sizeof(msg),
               "dependency '%s' is not known to the scheduler (released, or from a closed client)",
               missing);
      set_state(s, t, TS_WAITING);
      erred(s, t, DT_ENOTFOUND, key, t->func, "", msg);
    }
    free(key);
    free(missing);
  }
  dt__vec_free(&failed);
  for (size_t i = 0; i < cyclic.len; i += 2) {
    char *key = cyclic.v[i], *dep = cyclic.v[i + 1];
    s_task *t = dt__sched_get_task(s, key, (uint32_t)strlen(key));
    if (t && t->state == TS_RELEASED) {
      char msg[2 * DT_MAX_KEY + 200];
      snprintf(msg, sizeof(msg),
               "dependency cycle: '%s' depends on '%s', which depends on '%s' (directly or "
               "through others)",
               key, dep, key);
      set_state(s, t, TS_WAITING);
      erred(s, t, DT_EINVAL, key, t->func, "", msg);
    }
    free(key);
    free(dep);
  }
  dt__vec_free(&cyclic);
  for (uint32_t i = 0; i < n; i++) {
    s_task *t = dt__sched_get_task(s, nts[i].key, nts[i].klen);
    if (t && t->state == TS_RELEASED && (isnew[i] || t->wanted_by.len)) to_waiting(s, t);
  }
  /* tasks nobody wants and nothing needs go at once, as in Dask (a graph
   * culled by the client has none); gc of one may free another: by key */
  dt_vec unneeded = {0};
  for (uint32_t i = 0; i < n; i++) {
    s_task *t = dt__sched_get_task(s, nts[i].key, nts[i].klen);
    if (t && !t->wanted_by.len && !t->waiters && !t->dependents.len)
      dt__vec_push(&unneeded, dt__xstrdup(t->key));
  }
  gc_keys(s, &unneeded);
  free(batch);
  free(isnew);
  free(created);
  fill(s);
}

void dt__sched_scatter_key(sched *s, s_client *c, s_worker *w, const char *key, uint32_t klen,
                       uint64_t nbytes) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t) t = task_new(s, key, klen, "scatter", 7);
  if (t->state != TS_MEMORY) {
    unschedule(s, t);
    set_state(s, t, TS_MEMORY);
    t->nbytes = nbytes;
    for (size_t j = 0; j < t->dependents.len; j++) {
      s_task *d = t->dependents.v[j];
      if (d->state == TS_WAITING && d->nwaiting && --d->nwaiting == 0) ready(s, d);
    }
  }
  bool has = false;
  for (size_t i = 0; i < t->who_has.len && !has; i++) has = t->who_has.v[i] == w;
  if (!has) {
    dt__vec1_push(&t->who_has, w);
    w->nkeys++;
    w->nbytes += nbytes;
  }
  if (c) dt__sched_client_want(s, c, key, klen);
  fill(s);
}

void dt__sched_client_want_result(sched *s, s_client *c, const char *key, uint32_t klen) {
  (void)c;
  s_task *t = dt__sched_get_task(s, key, klen);
  if (t) t->send_inline = true; /* if it is in memory already, the client fetches it */
}

/* to_memory: t's result is now held by w; tell clients, wake dependents,
 * let go of dependencies nobody else needs. */
static void to_memory(sched *s, s_task *t, s_worker *w, uint64_t nbytes, const char *inline_,
                      uint32_t ilen) {
  set_state(s, t, TS_MEMORY);
  t->nbytes = nbytes;
  dt__vec1_push(&t->who_has, w);
  w->nkeys++;
  w->nbytes += nbytes;
  for (size_t i = 0; i < t->wanted_by.len; i++) msg_key_in_memory(t->wanted_by.v[i], t, inline_, ilen);
  for (size_t i = 0; i < t->dependents.len; i++) {
    s_task *d = t->dependents.v[i];
    if (d->state == TS_WAITING && d->nwaiting && --d->nwaiting == 0) ready(s, d);
  }
  if (t->holds_deps) {
    t->holds_deps = false;
    for (uint32_t i = 0; i < t->ndeps; i++) t->deps[i]->waiters--;
    for (uint32_t i = 0; i < t->ndeps; i++) {
      s_task *d = t->deps[i];
      if (!d->wanted_by.len && !d->waiters) gc(s, d);
    }
  }
  if (!t->wanted_by.len && !t->waiters) gc(s, t);
}

void dt__sched_task_finished(sched *s, s_worker *w, const char *key, uint32_t klen, uint64_t nbytes,
                         double duration_s, const char *inline_, uint32_t ilen) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || t->state != TS_PROCESSING || t->processing_on != w) {
    /* stale (released or moved meanwhile): the worker must not keep it */
    bool held = false;
    for (size_t i = 0; t && i < t->who_has.len && !held; i++) held = t->who_has.v[i] == w;
    if (!held && w->conn) {
      msg_free_keys(w->conn, key, klen);
    }
    return;
  }
  proc_remove(t);
  s->tasks_completed++;
  DT_FUNC_OF(t->func)->finished++;
  s_stream_ev *ev = &s->stream[s->stream_n++ % DT_STREAM_CAP];
  ev->end_s = dt__now_s();
  ev->dur_s = duration_s > 0 ? (float)duration_s : 0;
  ev->worker = w->id;
  ev->func = t->func;
  if (duration_s >= 0)
    s->avg_task_s = s->avg_task_s > 0 ? 0.95 * s->avg_task_s + 0.05 * duration_s : duration_s;
  to_memory(s, t, w, nbytes, inline_, ilen);
  update_free(s, w);
  fill(s);
}

int dt__sched_retire_worker(sched *s, s_worker *w) {
  w->retiring = true;
  free_remove(s, w);
  /* O(tasks), on a rare event: the results only w holds that are needed */
  int moving = 0;
  for (size_t i = 0; i < s->tasks.cap; i++) {
    s_task *t = s->tasks.slots[i].val;
    if (!s->tasks.slots[i].key || t->state != TS_MEMORY || t->who_has.len != 1 ||
        t->who_has.v[0] != w || (!t->wanted_by.len && !t->waiters))
      continue;
    s_worker *to = NULL; /* the other worker holding the fewest bytes */
    for (size_t k = 0; k < s->workers.len; k++) {
      s_worker *o = s->workers.v[k];
      if (o != w && !o->retiring && (!to || o->nbytes < to->nbytes)) to = o;
    }
    if (!to) return -1;
    if (to->conn) {
      dt_enc e;
      dt__e_begin(&e, dt__conn_out(to->conn), DT_OP_ACQUIRE);
      dt__e_list(&e, 1);
      dt__e_rec(&e);
      dt__e_str(&e, t->key, t->klen);
      dt__e_uint(&e, t->nbytes);
      dt__e_cstr(&e, w->address);
      dt__e_uint(&e, w->id);
      dt__e_end(&e);
    }
    moving++;
  }
  w->moving = (uint32_t)moving;
  return moving;
}

void dt__sched_worker_paused(sched *s, s_worker *w, bool paused) {
  if (w->paused == paused) return;
  w->paused = paused;
  if (paused) {
    free_remove(s, w);
    return;
  }
  update_free(s, w);
  /* what waited for a worker may go there now */
  dt__sched_worker_place(s, w);
}

void dt__sched_unretire_worker(sched *s, s_worker *w) {
  w->retiring = false;
  w->moving = 0;
  update_free(s, w);
  fill(s);
}

void dt__sched_worker_has_key(sched *s, s_worker *w, const char *key, uint32_t klen,
                          uint64_t nbytes) {
  s_task *t = dt__sched_get_task(s, key, klen);
  bool needed = t && t->state != TS_ERRED &&
                (t->state != TS_RELEASED || t->wanted_by.len || t->waiters);
  if (!needed) { /* forgotten meanwhile: the worker must not keep it */
    if (w->conn) {
      msg_free_keys(w->conn, key, klen);
    }
    return;
  }
  if (t->state == TS_MEMORY) {
    for (size_t i = 0; i < t->who_has.len; i++)
      if (t->who_has.v[i] == w) return;
    dt__vec1_push(&t->who_has, w);
    w->nkeys++;
    w->nbytes += nbytes;
    return;
  }
  unschedule(s, t); /* running or waiting elsewhere: this copy will do */
  if (t->state == TS_WAITING || t->state == TS_RELEASED) t->nwaiting = 0;
  to_memory(s, t, w, nbytes, NULL, 0);
  fill(s);
}

void dt__sched_task_erred(sched *s, s_worker *w, const char *key, uint32_t klen, int code,
                      const char *func, const char *msg) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || t->state != TS_PROCESSING || t->processing_on != w) return;
  proc_remove(t);
  update_free(s, w);
  if (t->retries > 0) {
    t->retries--;
    set_state(s, t, TS_WAITING);
    DT_INFO("task %s failed on %s, retrying (%d retries left): %s", t->key, w->address, t->retries,
            msg);
    ready(s, t);
    fill(s);
    return;
  }
  set_state(s, t, TS_WAITING); /* erred() takes it from a not-yet-run state */
  char *origin = dt__xstrdup(t->key);
  erred(s, t, code, origin, func, w->address, msg);
  free(origin);
  fill(s);
}

/* lose_replica: holder no longer serves d (a peer could not fetch it from
 * there): forget that copy; if it was the last, recompute d if needed */
static void lose_replica(sched *s, s_task *d, s_worker *holder) {
  if (!dt__vec1_remove(&d->who_has, holder)) return;
  msg_free_key(holder, d); /* if it is alive after all, it must not keep it */
  holder->nkeys--;
  holder->nbytes -= d->nbytes < holder->nbytes ? d->nbytes : holder->nbytes;
  if (d->who_has.len || d->state != TS_MEMORY) return;
  set_state(s, d, TS_RELEASED);
  for (size_t j = 0; j < d->dependents.len; j++) {
    s_task *x = d->dependents.v[j];
    if (x->state == TS_WAITING && x->holds_deps) x->nwaiting++;
  }
  if (d->wanted_by.len || d->waiters) to_waiting(s, d);
}

void dt__sched_missing_data(sched *s, s_worker *w, const char *key, uint32_t klen, const char *dep,
                        uint32_t deplen, const char *addr) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || t->state != TS_PROCESSING || t->processing_on != w) return;
  proc_remove(t);
  update_free(s, w);
  set_state(s, t, TS_WAITING);
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
  if (!learned && t->retries-- <= -5) { /* bounded: a dependency that can never be fetched */
    char msg[DT_MAX_KEY + 100];
    snprintf(msg, sizeof(msg), "could not fetch dependency '%.*s'", (int)deplen, dep);
    erred(s, t, DT_ELOST, t->key, t->func, w->address, msg);
    return;
  }
  if (t->state != TS_WAITING) { /* settled meanwhile (lose_replica may fail it) */
    fill(s);
    return;
  }
  t->nwaiting = 0;
  for (uint32_t j = 0; j < t->ndeps; j++)
    if (t->deps[j]->state != TS_MEMORY) t->nwaiting++;
  if (t->nwaiting == 0) ready(s, t);
  fill(s);
}

int dt__sched_check(const sched *s, char *why, size_t cap) {
  int64_t counts[TS_COUNT] = {0};
  for (size_t i = 0; i < s->tasks.cap; i++) {
    if (!s->tasks.slots[i].key) continue;
    const s_task *t = s->tasks.slots[i].val;
    counts[t->state]++;
    uint32_t waiters = 0;
    for (size_t j = 0; j < t->dependents.len; j++) {
      const s_task *d = t->dependents.v[j];
      if (d->holds_deps) waiters++;
    }
    if (waiters != t->waiters) {
      snprintf(why, cap, "task %s: waiters %u but %u dependents hold it", t->key, t->waiters,
               waiters);
      return -1;
    }
    if (t->state == TS_WAITING) {
      uint32_t nw = 0;
      for (uint32_t j = 0; j < t->ndeps; j++) nw += t->deps[j]->state != TS_MEMORY;
      if (nw != t->nwaiting) {
        snprintf(why, cap, "task %s: nwaiting %u but %u deps not in memory", t->key, t->nwaiting,
                 nw);
        return -1;
      }
    }
    if (t->state == TS_PROCESSING && !t->processing_on) {
      snprintf(why, cap, "task %s processing on no worker", t->key);
      return -1;
    }
    if (t->state == TS_MEMORY && t->who_has.len == 0) {
      snprintf(why, cap, "task %s in memory on no worker", t->key);
      return -1;
    }
  }
  for (int st = 0; st < TS_COUNT; st++)
    if (counts[st] != s->count[st]) {
      snprintf(why, cap, "count of %s is %lld, tasks say %lld", dt__task_state_name(st),
               (long long)s->count[st], (long long)counts[st]);
      return -1;
    }
  /* each function's counts match its tasks (a small table: tests) */
  if (s->funcs.len <= 64)
    for (size_t k = 0; k < s->funcs.cap; k++) {
      if (!s->funcs.slots[k].key) continue;
      const s_func *f = DT_FUNC_OF(s->funcs.slots[k].val);
      int64_t fc[TS_COUNT] = {0};
      for (size_t i = 0; i < s->tasks.cap; i++)
        if (s->tasks.slots[i].key && ((const s_task *)s->tasks.slots[i].val)->func == f->name)
          fc[((const s_task *)s->tasks.slots[i].val)->state]++;
      for (int st = 0; st < TS_COUNT; st++)
        if (fc[st] != f->count[st]) {
          snprintf(why, cap, "function %s: %s count is %lld, tasks say %lld", f->name,
                   dt__task_state_name(st), (long long)f->count[st], (long long)fc[st]);
          return -1;
        }
    }
  return 0;
}

void dt__sched_destroy(sched *s) {
  dt__heap_destroy(&s->queued); /* before the tasks it points to */
  for (size_t i = 0; i < s->tasks.cap; i++)
    if (s->tasks.slots[i].key) task_free(s->tasks.slots[i].val);
  dt__smap_destroy(&s->tasks);
  for (size_t i = 0; i < s->funcs.cap; i++)
    if (s->funcs.slots[i].key) free(DT_FUNC_OF(s->funcs.slots[i].val));
  dt__smap_destroy(&s->funcs);
  free(s->overflow_func);
  free(s->stream);
  for (size_t i = 0; i < s->workers.len; i++) {
    s_worker *w = s->workers.v[i];
    dt__vec_free(&w->processing);
    dt__resources_free(w->res_names, w->res_amounts, w->nres);
    free(w->name);
    free(w->address);
    free(w);
  }
  dt__vec_free(&s->workers);
  for (size_t i = 0; i < s->clients.len; i++) {
    s_client *c = s->clients.v[i];
    dt__smap_destroy(&c->wants);
    free(c->name);
    free(c);
  }
  dt__vec_free(&s->clients);
}
