/*
 * graph.c -- a client's new graph (UPDATE_GRAPH): new tasks with their
 * restrictions and resources, links to their dependencies (a dependency
 * nobody knows fails the task), dependency cycles broken and failed, the
 * order in which a batch runs (depth first, so that a branch finishes
 * before the next starts), the client's interest, then what is wanted is
 * started and what nobody needs is forgotten at once.
 *
 * Cost: O(tasks + dependency edges) of the batch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

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
        dt__tvec_remove(&d->dependents, t);
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
  uint32_t *hash = dt__xmalloc((n ? n : 1) * sizeof(*hash)); /* each key's: one dt__hash a task */
  for (uint32_t i = 0; i < n; i++) {
    s_newtask *nt = &nts[i];
    hash[i] = dt__hash(nt->key, nt->klen);
    s_task *t = dt__tmap_get_h(&s->tasks, nt->key, nt->klen, hash[i]);
    if (t) {
      if (!nt->spec_borrowed) dt__payload_clear(&nt->spec);
      batch[i] = t;
      continue;
    }
    t = nt->spec_borrowed
            ? dt__task_new_body(s, nt->key, nt->klen, hash[i], nt->func, nt->flen, nt->spec.body,
                                (uint32_t)nt->spec.len)
            : dt__task_new_spec(s, nt->key, nt->klen, nt->func, nt->flen, &nt->spec);
    t->priority = nt->priority;
    t->retries = nt->retries;
    if (nt->timeout > 0) dt__task_rare(t)->timeout = nt->timeout;
    if (nt->nrestrict) {
      s_task_rare *r = dt__task_rare(t);
      r->restrict_to = dt__xmalloc(nt->nrestrict * sizeof(char *));
      for (uint32_t k = 0; k < nt->nrestrict; k++)
        r->restrict_to[k] = dt__xstrndup(nt->restrict_to[k], nt->restrict_lens[k]);
      r->nrestrict = nt->nrestrict;
      r->loose = nt->loose;
    }
    if (nt->nres) {
      s_task_rare *r = dt__task_rare(t);
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
      dt__tvec_push(&d->dependents, t);
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
    /* a client that wants its whole batch names it in the same order: the
     * task at hand, without a lookup (nothing was forgotten since) */
    bool same = i < n && wanted_lens[i] == batch[i]->klen &&
                memcmp(wanted[i], batch[i]->key, wanted_lens[i]) == 0;
    s_task *t = same ? batch[i] : dt__sched_get_task(s, wanted[i], wanted_lens[i]);
    /* put returns what was there: the same task (key -> its task) */
    if (t && t->state == TS_RELEASED &&
        !(same ? dt__tmap_put_h(&c->wants, t, hash[i]) : dt__tmap_put(&c->wants, t))) {
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
      dt__task_erred(s, t, DT_ENOTFOUND, key, t->func, "", msg);
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
      dt__task_erred(s, t, DT_EINVAL, key, t->func, "", msg);
    }
    free(key);
    free(dep);
  }
  dt__vec_free(&cyclic);
  /* a task forgotten meanwhile is FORGOTTEN and lives until the drain, and
   * no task is created from here on: batch[i] stands for a lookup by key */
  for (uint32_t i = 0; i < n; i++) {
    s_task *t = batch[i];
    if (t->state == TS_RELEASED && (isnew[i] || t->wanted_by.len)) dt__task_want(s, t);
  }
  /* tasks nobody wants and nothing needs go at once, as in Dask (a graph
   * culled by the client has none); gc of one may free another: by key */
  dt_vec unneeded = {0};
  for (uint32_t i = 0; i < n; i++) {
    s_task *t = batch[i];
    if (t->state != TS_FORGOTTEN && !t->wanted_by.len && !t->waiters && !t->dependents.len)
      dt__vec_push(&unneeded, dt__xstrdup(t->key));
  }
  dt__task_gc_keys(s, &unneeded);
  free(batch);
  free(isnew);
  free(created);
  free(hash);
  dt__place_fill(s);
}
