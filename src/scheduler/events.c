/*
 * events.c -- the state machine's output: what it decided, as typed events
 * (s_event, state.h) in a queue owned by the sched.  The queue is two
 * arrays reused from one drain to the next (the events, and the bytes of
 * keys and reasons that belong to no task), so that appending an event
 * costs O(1) and allocates nothing once they have grown.  Tasks, workers
 * and clients removed while events may still name them are kept here and
 * freed at the drain (dt__sched_events_done).
 */
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

static s_event *push(sched *s, int kind) {
  if (s->nev == s->ev_cap) {
    s->ev_cap = s->ev_cap ? s->ev_cap * 2 : 256;
    s->ev = dt__xrealloc(s->ev, s->ev_cap * sizeof(*s->ev));
  }
  s_event *e = &s->ev[s->nev++];
  memset(e, 0, sizeof(*e));
  e->kind = (uint8_t)kind;
  return e;
}

/* text: a copy of p in ev_text; its offset */
static uint32_t text(sched *s, const char *p, uint32_t len) {
  if (s->ev_text_len + len > s->ev_text_cap) {
    size_t cap = s->ev_text_cap ? s->ev_text_cap : 4096;
    while (cap < s->ev_text_len + len) cap *= 2;
    s->ev_text = dt__xrealloc(s->ev_text, cap);
    s->ev_text_cap = cap;
  }
  uint32_t off = (uint32_t)s->ev_text_len;
  if (len) memcpy(s->ev_text + off, p, len);
  s->ev_text_len += len;
  return off;
}

void dt__ev_compute(sched *s, s_worker *w, s_task *t) {
  s_event *e = push(s, SEV_COMPUTE);
  e->worker = w;
  e->task = t;
}

void dt__ev_ahead(sched *s, s_worker *w, s_task *t) {
  s_event *e = push(s, SEV_AHEAD);
  e->worker = w;
  e->task = t;
}

void dt__ev_free(sched *s, s_worker *w, s_task *t) {
  s_event *e = push(s, SEV_FREE);
  e->worker = w;
  e->task = t;
}

void dt__ev_free_key(sched *s, s_worker *w, const char *key, uint32_t klen) {
  uint32_t off = text(s, key, klen);
  s_event *e = push(s, SEV_FREE);
  e->worker = w;
  e->koff = off;
  e->klen = klen;
}

void dt__ev_acquire(sched *s, s_worker *to, s_task *t, s_worker *from) {
  s_event *e = push(s, SEV_ACQUIRE);
  e->worker = to;
  e->task = t;
  e->other = from;
}

void dt__ev_in_memory(sched *s, s_client *c, s_task *t, const char *inline_, uint32_t ilen) {
  s_event *e = push(s, SEV_IN_MEMORY);
  e->client = c;
  e->task = t;
  e->other = t->who_has.len ? t->who_has.v[0] : NULL; /* the holder now */
  if (inline_ && t->send_inline) {
    e->inline_ = inline_;
    e->ilen = ilen;
  }
}

void dt__ev_erred(sched *s, s_client *c, s_task *t) {
  s_event *e = push(s, SEV_ERRED);
  e->client = c;
  e->task = t;
}

void dt__ev_unknown(sched *s, s_client *c, const char *key, uint32_t klen) {
  uint32_t off = text(s, key, klen);
  s_event *e = push(s, SEV_UNKNOWN);
  e->client = c;
  e->koff = off;
  e->klen = klen;
}

void dt__ev_cancelled(sched *s, s_client *c, const char *key, uint32_t klen, const char *why) {
  uint32_t wl = (uint32_t)strlen(why);
  uint32_t koff = text(s, key, klen), toff = text(s, why, wl);
  s_event *e = push(s, SEV_CANCELLED);
  e->client = c;
  e->koff = koff;
  e->klen = klen;
  e->toff = toff;
  e->tlen = wl;
}

const s_event *dt__sched_events(const sched *s, size_t *n) {
  *n = s->nev;
  return s->ev;
}

const char *dt__sched_event_key(const sched *s, const s_event *e, uint32_t *len) {
  if (e->task) {
    *len = e->task->klen;
    return e->task->key;
  }
  *len = e->klen;
  return s->ev_text + e->koff;
}

const char *dt__sched_event_text(const sched *s, const s_event *e, uint32_t *len) {
  *len = e->tlen;
  return e->tlen ? s->ev_text + e->toff : "";
}

void dt__sched_events_done(sched *s) {
  s->nev = 0;
  s->ev_text_len = 0;
  for (size_t i = 0; i < s->dead_tasks.len; i++) dt__task_free(s->dead_tasks.v[i]);
  s->dead_tasks.len = 0;
  for (size_t i = 0; i < s->dead_peers.len; i++) {
    int *kind = s->dead_peers.v[i];
    if (*kind == PEER_WORKER) dt__worker_free(s->dead_peers.v[i]);
    else dt__client_free(s->dead_peers.v[i]);
  }
  s->dead_peers.len = 0;
}
