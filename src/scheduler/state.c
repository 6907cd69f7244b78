/*
 * state.c -- the scheduler's task transitions (see state.h): the table of
 * legal moves and the one function that checks and counts every move, and
 * the transitions that ripple through the graph: wanting a task (and what
 * it lacks), a result arriving, a failure spreading to dependents, a last
 * copy lost, and releasing and forgetting what nobody needs.  Also the
 * sched's life (init, destroy) and its invariants (dt__sched_check).
 *
 * Cost: O(1) per task touched, plus O(dependencies) for graph edges; no
 * scan of all tasks or all workers here (the few that exist are in
 * place.c and workers.c, on rare events, and say so).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

const s_task_rare dt__no_rare; /* all zero: what RARE() reads for most tasks */

static const char *state_names[TS_COUNT] = {"released", "waiting", "no-worker", "queued",
                                            "processing", "memory", "erred", "forgotten"};
const char *dt__task_state_name(int st) {
  return st >= 0 && st < TS_COUNT ? state_names[st] : "?";
}

/* ---------------------------------------------------------------- the table */

#define B(x) (1u << TS_##x)
static const uint16_t allowed[TS_COUNT] = {
    [TS_RELEASED] = B(WAITING) | B(MEMORY) | B(ERRED) | B(FORGOTTEN),
    [TS_WAITING] = B(PROCESSING) | B(QUEUED) | B(NO_WORKER) | B(MEMORY) | B(ERRED) | B(RELEASED),
    [TS_NO_WORKER] = B(PROCESSING) | B(QUEUED) | B(MEMORY) | B(ERRED) | B(RELEASED),
    [TS_QUEUED] = B(PROCESSING) | B(MEMORY) | B(ERRED) | B(RELEASED),
    [TS_PROCESSING] = B(MEMORY) | B(WAITING) | B(ERRED) | B(RELEASED),
    [TS_MEMORY] = B(RELEASED),
    [TS_ERRED] = B(MEMORY) | B(RELEASED) | B(FORGOTTEN), /* released: retry */
    [TS_FORGOTTEN] = 0,
};
#undef B

bool dt__task_transition_ok(int from, int to) {
  return from >= 0 && from < TS_COUNT && to >= 0 && to < TS_COUNT && (allowed[from] >> to & 1u);
}

void dt__task_transition(sched *s, s_task *t, s_task_state to) {
  int from = t->state;
  if (!dt__task_transition_ok(from, (int)to)) {
    fprintf(stderr, "dtask scheduler: illegal transition of task '%s': %s -> %s\n", t->key,
            dt__task_state_name(from), dt__task_state_name((int)to));
    abort();
  }
  s_func *f = DT_FUNC_OF(t->func);
  s->count[from]--;
  f->count[from]--;
  if (to != TS_FORGOTTEN) { /* forgotten tasks are counted nowhere */
    s->count[to]++;
    f->count[to]++;
  }
  if (to == TS_ERRED) f->failed++;
  if (t->ahead || t->ahead_deps) dt__ahead_transition(s, t, from, (int)to);
  dt__story_note(t->key, t->klen, from, (int)to);
  DT_JOURNAL(dt__journal_transition(t, from, (int)to));
  t->state = (uint8_t)to;
}

/* ---------------------------------------------------------------- tasks */

s_task *dt__sched_get_task(sched *s, const char *key, uint32_t klen) {
  return dt__tmap_get(&s->tasks, key, klen);
}

static s_func *func_new(const char *f, uint32_t flen) {
  s_func *fs = dt__xcalloc(1, sizeof(*fs) + flen + 1);
  memcpy(fs->name, f, flen);
  return fs;
}

/* intern: one copy of each function name (bounded: past 65,536 distinct
 * names, which no real program has, they share one name instead) */
static const char *intern(sched *s, const char *f, uint32_t flen) {
  const char *l = s->last_func;
  if (l && s->last_flen == flen && memcmp(l, f, flen) == 0) return l;
  char *have = dt__smap_get(&s->funcs, f, flen);
  if (!have) {
    if (s->funcs.len >= 65536) return s->overflow_func->name;
    s_func *fs = func_new(f, flen);
    dt__smap_put(&s->funcs, fs->name, flen, fs->name);
    have = fs->name;
  }
  s->last_func = have; /* flen bytes, NUL-terminated */
  s->last_flen = flen;
  return have;
}

/* spec_inline: where a task's spec body lives when it is in the task's own
 * allocation (after the key's NUL) */
static char *spec_inline(const s_task *t) { return (char *)t->key + t->klen + 1; }

/* task_make: a new task with the frameless spec body[0..len) copied after
 * its key (len 0: none), in RELEASED, in s->tasks */
static s_task *task_make(sched *s, const char *key, uint32_t klen, const char *func, uint32_t flen,
                         const char *body, size_t len, const uint32_t *hash) {
  if (len > DT_MAX_BODY) { /* no message or journal record holds one */
    fprintf(stderr, "dtask scheduler: task '%.*s' has a spec of %zu bytes\n", (int)klen, key, len);
    abort();
  }
  s_task *t = dt__xcalloc(1, sizeof(*t) + klen + 1 + len);
  memcpy(t->key, key, klen);
  t->klen = klen;
  if (len) memcpy(spec_inline(t), body, len);
  t->spec_body = spec_inline(t);
  t->spec_len = (uint32_t)len;
  t->func = intern(s, func, flen);
  dt__vec1_init(&t->wanted_by);
  dt__vec1_init(&t->who_has);
  t->state = TS_RELEASED;
  s->count[TS_RELEASED]++;
  DT_FUNC_OF(t->func)->count[TS_RELEASED]++;
  if (hash) dt__tmap_add_new(&s->tasks, t, *hash); /* known to be new */
  else dt__tmap_put(&s->tasks, t);
  return t;
}

s_task *dt__task_new_spec(sched *s, const char *key, uint32_t klen, const char *func,
                          uint32_t flen, dt_payload *spec) {
  /* a spec with no frames (nearly all) goes inside the task's allocation,
   * after the key: one malloc (and its header and rounding) less per task */
  if (!spec || spec->nframes == 0) {
    s_task *t = task_make(s, key, klen, func, flen, spec ? spec->body : NULL, spec ? spec->len : 0, NULL);
    if (!spec) t->spec_body = NULL; /* no spec at all (dt__task_new) */
    dt__payload_clear(spec);
    return t;
  }
  if (spec->len > DT_MAX_BODY) { /* no message or journal record holds one */
    fprintf(stderr, "dtask scheduler: task '%.*s' has a spec of %zu bytes\n", (int)klen, key,
            spec->len);
    abort();
  }
  s_task *t = task_make(s, key, klen, func, flen, NULL, 0, NULL);
  t->spec_body = spec->body; /* moved, frames and all */
  t->spec_len = (uint32_t)spec->len;
  t->spec_frames = spec->frames;
  t->spec_nframes = spec->nframes;
  memset(spec, 0, sizeof(*spec));
  return t;
}

s_task *dt__task_new_body(sched *s, const char *key, uint32_t klen, uint32_t h, const char *func,
                          uint32_t flen, const char *body, uint32_t len) {
  return task_make(s, key, klen, func, flen, body, len, &h);
}

s_task *dt__task_new(sched *s, const char *key, uint32_t klen, const char *func, uint32_t flen) {
  return dt__task_new_spec(s, key, klen, func, flen, NULL);
}

s_task_rare *dt__task_rare(s_task *t) {
  if (!t->rare) t->rare = dt__xcalloc(1, sizeof(*t->rare));
  return t->rare;
}

void dt__task_free(s_task *t) {
  if (t->spec_body != spec_inline(t)) { /* not in the task (no frames then) */
    dt_payload p = dt__task_spec(t);
    dt__payload_clear(&p);
  }
  free(t->deps);
  dt__tvec_free(&t->dependents);
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

/* forget: t (RELEASED or ERRED, no dependents) leaves the graph; its memory
 * stays until the events naming it are drained */
static void forget(sched *s, s_task *t) {
  for (uint32_t i = 0; i < t->ndeps; i++) dt__tvec_remove(&t->deps[i]->dependents, t);
  dt__tmap_del(&s->tasks, t->key, t->klen);
  dt__task_transition(s, t, TS_FORGOTTEN);
  dt__vec_push(&s->dead_tasks, t);
}

bool dt__task_add_holder(s_task *t, s_worker *w, uint64_t nbytes) {
  for (size_t i = 0; i < t->who_has.len; i++)
    if (t->who_has.v[i] == w) return false;
  dt__vec1_push(&t->who_has, w);
  DT_JOURNAL(dt__journal_holds(t, w));
  w->nkeys++;
  w->nbytes += nbytes;
  return true;
}

void dt__task_drop_holders(sched *s, s_task *t) {
  for (size_t i = 0; i < t->who_has.len; i++) {
    s_worker *w = t->who_has.v[i];
    dt__ev_free(s, w, t);
    w->nkeys--;
    w->nbytes -= t->nbytes < w->nbytes ? t->nbytes : w->nbytes;
  }
  t->who_has.len = 0;
}

void dt__task_unschedule(sched *s, s_task *t) {
  switch (t->state) {
  case TS_QUEUED: case TS_NO_WORKER: dt__place_unlink(s, t); break;
  case TS_PROCESSING: {
    /* NULL when its worker reported on it (and it was taken off already) */
    s_worker *w = dt__place_proc_remove(t);
    if (w) {
      dt__ghost_add(s, w, t); /* busy until the worker says it let it go */
      dt__ev_free(s, w, t); /* the worker drops it, or its result when done */
      dt__place_update_free(s, w);
    }
    break;
  }
  default: break;
  }
}

/* ---------------------------------------------------------------- releasing */

void dt__task_gc(sched *s, s_task *t0) {
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
      dt__task_drop_holders(s, t);
      dt__task_transition(s, t, TS_RELEASED);
      break;
    case TS_WAITING: case TS_NO_WORKER: case TS_QUEUED: case TS_PROCESSING:
      dt__task_unschedule(s, t);
      dt__task_transition(s, t, TS_RELEASED);
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
        if (d->mark != UINT64_MAX) {
          d->mark = UINT64_MAX;
          dt__vec_push(&stack, d);
        }
      }
      forget(s, t); /* after the pushes: gc of d looks at its dependents */
    }
  }
  dt__vec_free(&stack);
}

void dt__task_gc_keys(sched *s, dt_vec *keys) {
  for (size_t i = 0; i < keys->len; i++) {
    char *k = keys->v[i];
    s_task *t = dt__sched_get_task(s, k, (uint32_t)strlen(k));
    if (t) dt__task_gc(s, t);
    free(k);
  }
  dt__vec_free(keys);
}

/* ---------------------------------------------------------------- failing */

static void set_error(s_task *t, int code, const char *origin, const char *func,
                      const char *worker, const char *msg) {
  s_task_rare *r = dt__task_rare(t);
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

void dt__task_erred(sched *s, s_task *t0, int code, const char *origin, const char *func,
                    const char *worker, const char *msg) {
  dt_vec stack = {0}, done = {0};
  dt__vec_push(&stack, t0);
  while (stack.len) {
    s_task *t = stack.v[--stack.len];
    if (t->state == TS_ERRED || t->state == TS_MEMORY) continue;
    dt__task_unschedule(s, t);
    dt__task_transition(s, t, TS_ERRED);
    set_error(t, code, origin, func, worker, msg);
    DT_JOURNAL(dt__journal_erred(t));
    for (size_t i = 0; i < t->wanted_by.len; i++) dt__ev_erred(s, t->wanted_by.v[i], t);
    for (size_t i = 0; i < t->dependents.len; i++) dt__vec_push(&stack, t->dependents.v[i]);
    dt__vec_push(&done, t);
  }
  /* failed tasks no longer need their dependencies */
  for (size_t i = 0; i < done.len; i++) {
    s_task *t = done.v[i];
    if (t->holds_deps) {
      t->holds_deps = false;
      for (uint32_t j = 0; j < t->ndeps; j++) t->deps[j]->waiters--;
      for (uint32_t j = 0; j < t->ndeps; j++) dt__task_gc(s, t->deps[j]);
    }
  }
  dt__vec_free(&stack);
  /* forget unwanted erred tasks; gc of one may free another: go by key */
  dt_vec keys = {0};
  for (size_t i = done.len; i-- > 0;) dt__vec_push(&keys, dt__xstrdup(((s_task *)done.v[i])->key));
  dt__vec_free(&done);
  dt__task_gc_keys(s, &keys);
}

/* ---------------------------------------------------------------- wanting */

/* first erred dependency of t, or NULL */
static s_task *erred_dep(const s_task *t) {
  for (uint32_t i = 0; i < t->ndeps; i++)
    if (t->deps[i]->state == TS_ERRED) return t->deps[i];
  return NULL;
}

/* Wanting runs in three passes, because failing a task may release (and
 * free) others that an interleaved walk still holds: (1) walk what t0
 * lacks, moving it to WAITING and counting what each task waits for;
 * (2) place the tasks that wait for nothing (placing frees nothing);
 * (3) fail, by key, the tasks with a failed dependency. */
void dt__task_want(sched *s, s_task *t0) {
  if (t0->ndeps == 0) { /* a root (most of a big graph): the walk below, without its vectors */
    dt__task_transition(s, t0, TS_WAITING);
    t0->nwaiting = 0;
    t0->holds_deps = true;
    if (t0->state == TS_WAITING) dt__place_ready(s, t0);
    return;
  }
  dt_vec stack = {0}, all = {0}, failed = {0};
  dt__task_transition(s, t0, TS_WAITING);
  dt__vec_push(&stack, t0);
  while (stack.len) {
    s_task *t = stack.v[--stack.len];
    dt__vec_push(&all, t);
    t->nwaiting = 0;
    for (uint32_t i = 0; i < t->ndeps; i++) {
      s_task *d = t->deps[i];
      if (!t->holds_deps) d->waiters++;
      if (d->state == TS_MEMORY || d->state == TS_ERRED) continue;
      t->nwaiting++;
      if (d->state == TS_RELEASED) {
        dt__task_transition(s, d, TS_WAITING);
        dt__vec_push(&stack, d);
      }
    }
    t->holds_deps = true;
  }
  dt__vec_free(&stack);
  for (size_t i = 0; i < all.len; i++) {
    s_task *t = all.v[i];
    if (t->state != TS_WAITING) continue;
    if (erred_dep(t)) dt__vec_push(&failed, dt__xstrdup(t->key));
    else if (t->nwaiting == 0) dt__place_ready(s, t);
    else if (t->ndeps == 1) dt__ahead_consider(s, t);
  }
  dt__vec_free(&all);
  for (size_t i = 0; i < failed.len; i++) {
    char *key = failed.v[i];
    s_task *t = dt__sched_get_task(s, key, (uint32_t)strlen(key));
    s_task *f = t && t->state == TS_WAITING ? erred_dep(t) : NULL;
    if (f) /* the whole message (it may carry the pickled exception); erred copies
            * its arguments before anything can free f */
      dt__task_erred(s, t, RARE(f)->err_code, RARE(f)->err_key ? RARE(f)->err_key : f->key,
                     RARE(f)->err_func, RARE(f)->err_worker,
                     RARE(f)->err_msg ? RARE(f)->err_msg : "dependency failed");
    free(key);
  }
  dt__vec_free(&failed);
}

void dt__task_unrun(sched *s, s_task *t) {
  dt__place_proc_remove(t);
  dt__task_transition(s, t, TS_WAITING);
}

void dt__task_retry(sched *s, s_task *t) {
  if (t->state != TS_WAITING) return; /* settled meanwhile */
  t->nwaiting = 0;
  for (uint32_t j = 0; j < t->ndeps; j++)
    if (t->deps[j]->state != TS_MEMORY) t->nwaiting++;
  if (t->nwaiting == 0) dt__place_ready(s, t);
}

/* ---------------------------------------------------------------- results */

void dt__task_wake(sched *s, s_task *t) {
  for (size_t i = 0; i < t->dependents.len; i++) {
    s_task *d = t->dependents.v[i];
    if (d->state == TS_WAITING && d->nwaiting && --d->nwaiting == 0) dt__place_ready(s, d);
  }
}

void dt__task_in_memory(sched *s, s_task *t, s_worker *w, uint64_t nbytes, const char *inline_,
                        uint32_t ilen) {
  dt__task_unschedule(s, t); /* running or waiting elsewhere: this copy will do */
  bool was_waiting = t->state == TS_WAITING || t->state == TS_RELEASED;
  dt__task_transition(s, t, TS_MEMORY);
  if (was_waiting) t->nwaiting = 0;
  t->nbytes = nbytes;
  dt__task_add_holder(t, w, nbytes);
  for (size_t i = 0; i < t->wanted_by.len; i++) dt__ev_in_memory(s, t->wanted_by.v[i], t, inline_, ilen);
  dt__task_wake(s, t);
  if (t->holds_deps) {
    t->holds_deps = false;
    for (uint32_t i = 0; i < t->ndeps; i++) t->deps[i]->waiters--;
    for (uint32_t i = 0; i < t->ndeps; i++) {
      s_task *d = t->deps[i];
      if (!d->wanted_by.len && !d->waiters) dt__task_gc(s, d);
    }
  }
  if (!t->wanted_by.len && !t->waiters) dt__task_gc(s, t);
}

void dt__task_lost(sched *s, s_task *t) {
  dt__task_transition(s, t, TS_RELEASED);
  for (size_t j = 0; j < t->dependents.len; j++) {
    s_task *x = t->dependents.v[j];
    if (x->state == TS_WAITING && x->holds_deps) x->nwaiting++;
  }
}

/* ---------------------------------------------------------------- s_tvec */

void dt__tvec_push(s_tvec *a, void *p) {
  if (a->len == a->cap) {
    if (a->cap >= UINT32_MAX / 2) {
      fprintf(stderr, "dtask scheduler: a task has too many dependents\n");
      abort();
    }
    a->cap = a->cap ? a->cap * 2 : 4;
    a->v = dt__xrealloc(a->v, (size_t)a->cap * sizeof(*a->v));
  }
  a->v[a->len++] = p;
}
bool dt__tvec_remove(s_tvec *a, void *p) {
  for (uint32_t i = 0; i < a->len; i++)
    if (a->v[i] == p) {
      a->v[i] = a->v[--a->len];
      return true;
    }
  return false;
}
void dt__tvec_free(s_tvec *a) {
  free(a->v);
  a->v = NULL;
  a->len = a->cap = 0;
}

/* ---------------------------------------------------------------- the sched */

static bool prio_less(const void *a, const void *b) {
  const s_task *x = a, *y = b;
  if (x->priority != y->priority) return x->priority > y->priority;
  return x->order < y->order;
}

void dt__sched_init(sched *s) {
  memset(s, 0, sizeof(*s));
  dt__heap_init(&s->queued, prio_less, offsetof(s_task, heap_idx));
  s->allowed_failures = 3;
  s->overflow_func = func_new("(too many function names)", 25);
  s->stream = dt__xcalloc(DT_STREAM_CAP, sizeof(*s->stream));
}

int dt__sched_check(const sched *s, char *why, size_t cap) {
  int64_t counts[TS_COUNT] = {0};
  for (size_t i = 0; i < s->tasks.cap; i++) {
    if (!s->tasks.slots[i].t) continue;
    const s_task *t = s->tasks.slots[i].t;
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
    if (t->state == TS_QUEUED ? !t->heap_idx
        : t->state == TS_NO_WORKER || t->state == TS_PROCESSING
            ? false
            : t->nw_prev || t->nw_next) { /* a union: see state.h */
      snprintf(why, cap, "task %s (%s) is %s the queue or the no-worker list", t->key,
               dt__task_state_name(t->state), t->state == TS_QUEUED ? "not in" : "still in");
      return -1;
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
  if (dt__ahead_check(s, why, cap) != 0) return -1;
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
        if (s->tasks.slots[i].t && s->tasks.slots[i].t->func == f->name)
          fc[s->tasks.slots[i].t->state]++;
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
  dt__sched_events_done(s); /* frees what was removed */
  free(s->ev);
  free(s->ev_text);
  dt__vec_free(&s->dead_tasks);
  dt__vec_free(&s->dead_peers);
  dt__heap_destroy(&s->queued); /* before the tasks it points to */
  for (size_t i = 0; i < s->tasks.cap; i++)
    if (s->tasks.slots[i].t) dt__task_free(s->tasks.slots[i].t);
  dt__tmap_destroy(&s->tasks);
  dt__smap_destroy(&s->ahead);
  for (size_t i = 0; i < s->funcs.cap; i++)
    if (s->funcs.slots[i].key) free(DT_FUNC_OF(s->funcs.slots[i].val));
  dt__smap_destroy(&s->funcs);
  free(s->overflow_func);
  free(s->stream);
  for (size_t i = 0; i < s->workers.len; i++) dt__worker_free(s->workers.v[i]);
  dt__vec_free(&s->workers);
  for (size_t i = 0; i < s->clients.len; i++) dt__client_free(s->clients.v[i]);
  dt__vec_free(&s->clients);
}
