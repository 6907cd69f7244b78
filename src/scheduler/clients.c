/*
 * clients.c -- what clients want: a client joining and leaving (which
 * releases all it wanted), wanting keys (told at once if they are in memory
 * or failed, started if they were released), releasing them, cancelling
 * them (and, as in Dask, what it wants downstream of them), asking again
 * where a key is after a failed fetch, and asking for small results inline.
 *
 * Cost: O(1) per key, plus what the released tasks' gc and, for a cancel,
 * the walk over the cancelled key's dependents cost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

s_client *dt__sched_add_client(sched *s, void *conn, const char *name) {
  s_client *c = dt__xcalloc(1, sizeof(*c));
  c->kind = PEER_CLIENT;
  c->id = ++s->next_id;
  c->name = dt__xstrdup(name && *name ? name : "client");
  c->conn = conn;
  memset(&c->wants, 0, sizeof(c->wants));
  dt__vec_push(&s->clients, c);
  DT_JOURNAL(dt__journal_client(c, false));
  return c;
}

void dt__client_free(s_client *c) {
  dt__tmap_destroy(&c->wants);
  free(c->name);
  free(c);
}

void dt__sched_remove_client(sched *s, s_client *c) {
  dt__vec_remove(&s->clients, c);
  DT_JOURNAL(dt__journal_client(c, true));
  /* release everything it held */
  dt_vec keys = {0};
  for (size_t i = 0; i < c->wants.cap; i++) {
    if (!c->wants.slots[i].t) continue;
    s_task *t = c->wants.slots[i].t;
    dt__vec1_remove(&t->wanted_by, c);
    dt__vec_push(&keys, dt__xstrdup(t->key));
  }
  c->gone = true; /* freed at the drain: events may name it */
  dt__vec_push(&s->dead_peers, c);
  dt__task_gc_keys(s, &keys);
  dt__place_fill(s);
}

void dt__sched_client_want(sched *s, s_client *c, const char *key, uint32_t klen) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t) {
    dt__ev_unknown(s, c, key, klen);
    return;
  }
  if (dt__tmap_get(&c->wants, t->key, t->klen)) return;
  dt__tmap_put(&c->wants, t);
  dt__vec1_push(&t->wanted_by, c);
  DT_JOURNAL(dt__journal_want(c, t->key, t->klen, true));
  if (t->state == TS_MEMORY) dt__ev_in_memory(s, c, t, NULL, 0);
  else if (t->state == TS_ERRED) dt__ev_erred(s, c, t);
  else if (t->state == TS_RELEASED) {
    dt__task_want(s, t);
    dt__place_fill(s); /* a root wanted again is queued: place it now */
  }
}

void dt__sched_client_who_has(sched *s, s_client *c, const char *key, uint32_t klen) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || !dt__tmap_get(&c->wants, key, klen)) {
    dt__sched_client_want(s, c, key, klen); /* says it is unknown, or wants it again */
    return;
  }
  if (t->state == TS_MEMORY) dt__ev_in_memory(s, c, t, NULL, 0);
  else if (t->state == TS_ERRED) dt__ev_erred(s, c, t);
  /* otherwise it is being (re)computed: KEY_IN_MEMORY follows */
}

void dt__sched_client_release(sched *s, s_client *c, const char *key, uint32_t klen) {
  s_task *t = dt__tmap_del(&c->wants, key, klen);
  if (!t) return;
  DT_JOURNAL(dt__journal_want(c, key, klen, false));
  dt__vec1_remove(&t->wanted_by, c);
  dt__task_gc(s, t);
  dt__place_fill(s);
}

/* cancel: the client gives up key and, as Dask does, every key it wants
 * downstream of it (they could only finish by computing key); other
 * clients' interest keeps their tasks. */
void dt__sched_client_cancel(sched *s, s_client *c, const char *key, uint32_t klen) {
  s_task *t = dt__tmap_get(&c->wants, key, klen);
  dt__ev_cancelled(s, c, key, klen,
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
      if (dt__tmap_get(&c->wants, d->key, d->klen)) dt__vec_push(&hit, d);
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
    dt__ev_cancelled(s, c, keys[i], kl, why);
    dt__sched_client_release(s, c, keys[i], kl);
    free(keys[i]);
  }
  free(keys);
}

void dt__sched_client_want_result(sched *s, s_client *c, const char *key, uint32_t klen) {
  (void)c;
  s_task *t = dt__sched_get_task(s, key, klen);
  if (t) t->send_inline = true; /* if it is in memory already, the client fetches it */
}
