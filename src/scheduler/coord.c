/*
 * coord.c -- the state of the coordination primitives and published
 * datasets (see coord.h): named variables, queues, locks, multilocks,
 * events and semaphores, their waiters with deadlines on a heap, and the
 * futures their values keep alive.  Requests that cannot be answered at
 * once wait in their primitive's FIFO (multilocks in one FIFO of their
 * own); a waiter leaves it exactly once: granted, timed out, or its client
 * gone, so a timed-out waiter never consumes an item or a lease later.
 * Multilocks, events, semaphores and datasets are in coord_kinds.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_int.h"

static dt_srv *const srv = &dt__srv;

static coord_state *const cs = &dt__coord_st;
coord_state dt__coord_st;
const char *const dt__coord_kind_names[] = {"?",         "variable", "queue", "lock",
                                            "multilock", "event",    "semaphore"};

static bool deadline_less(const void *a, const void *b) {
  return ((const waiter *)a)->deadline < ((const waiter *)b)->deadline;
}

static void init(void) {
  if (cs->init) return;
  dt__smap_init(&cs->prims);
  dt__smap_init(&cs->datasets);
  dt__smap_init(&cs->keyrefs);
  dt__heap_init(&cs->timers, deadline_less, offsetof(waiter, hidx));
  cs->init = true;
}
void dt__coord_init(void) { init(); }

static void rearm(void) {
  waiter *w = dt__heap_peek(&cs->timers);
  dt__coord_arm(w ? w->deadline : UINT64_MAX);
}

/* ---------------------------------------------------------------- values */

void dt__coord_val_free(coord_val *v) {
  if (!v) return;
  dt__payload_clear(&v->pl);
  for (uint32_t i = 0; i < v->nkeys; i++) free(v->keys[i]);
  free(v->keys);
  free(v);
}

/* hold: v's futures are wanted by the holder while v is held */
void dt__coord_hold(coord_val *v) {
  cs->nbytes += v->nbytes;
  cs->nitems++;
  for (uint32_t i = 0; i < v->nkeys; i++) {
    size_t kl = strlen(v->keys[i]);
    keyref *r = dt__smap_get(&cs->keyrefs, v->keys[i], kl);
    if (!r) {
      if (!cs->holder) cs->holder = dt__sched_add_client(&srv->s, NULL, "coordination");
      r = dt__xcalloc(1, sizeof(*r));
      r->key = dt__xstrdup(v->keys[i]);
      dt__smap_put(&cs->keyrefs, r->key, kl, r);
      dt__sched_client_want(&srv->s, cs->holder, r->key, (uint32_t)kl);
    }
    r->refs++;
  }
}

/* unhold_free: v is no longer held (its futures let go of), and freed */
void dt__coord_unhold_free(coord_val *v) {
  if (!v) return;
  cs->nbytes -= v->nbytes;
  cs->nitems--;
  for (uint32_t i = 0; i < v->nkeys; i++) {
    size_t kl = strlen(v->keys[i]);
    keyref *r = dt__smap_get(&cs->keyrefs, v->keys[i], kl);
    if (!r || --r->refs) continue;
    dt__smap_del(&cs->keyrefs, v->keys[i], kl);
    dt__sched_client_release(&srv->s, cs->holder, r->key, (uint32_t)kl);
    free(r->key);
    free(r);
  }
  if (cs->holder && cs->keyrefs.len == 0) {
    dt__sched_remove_client(&srv->s, cs->holder);
    cs->holder = NULL;
  }
  dt__coord_val_free(v);
}

/* give: v (held) goes to client in a reply: the client wants its futures
 * first (after the reply on the wire), then the holder lets go */
static void give(uint32_t client, uint64_t req, coord_val *v) {
  dt__coord_reply(client, req, 0, NULL, 1, v, NULL);
  s_client *cl = dt__srv_client_by_id(client);
  for (uint32_t i = 0; cl && i < v->nkeys; i++)
    dt__sched_client_want(&srv->s, cl, v->keys[i], (uint32_t)strlen(v->keys[i]));
  dt__coord_unhold_free(v);
}

/* show: like give, but v stays held (a variable's or a dataset's value) */
void dt__coord_show(uint32_t client, uint64_t req, const coord_val *v) {
  dt__coord_reply(client, req, 0, NULL, 1, v, NULL);
  s_client *cl = dt__srv_client_by_id(client);
  for (uint32_t i = 0; cl && i < v->nkeys; i++)
    dt__sched_client_want(&srv->s, cl, v->keys[i], (uint32_t)strlen(v->keys[i]));
}

void dt__coord_fail(const coord_req *r, int code, const char *fmt, const char *name, uint32_t nlen) {
  char msg[300];
  snprintf(msg, sizeof(msg), fmt, (int)(nlen > 200 ? 200 : nlen), name ? name : "");
  dt__coord_reply(r->client, r->req, code, msg, 0, NULL, NULL);
}

void dt__coord_ok(const coord_req *r, int64_t count) {
  dt__coord_reply(r->client, r->req, 0, NULL, count, NULL, NULL);
}

/* ---------------------------------------------------------------- primitives */

prim *dt__coord_prim_get(const char *name, uint32_t nlen) { return dt__smap_get(&cs->prims, name, nlen); }

/* prim_of: *out is the primitive named, of kind, created when absent and
 * create (else NULL when absent); -1 with an error reply when it is
 * another kind or over the limit */
int dt__coord_prim_of(const coord_req *r, int kind, bool create, prim **out) {
  const char *name = r->names[0];
  uint32_t nlen = r->lens[0];
  prim *p = dt__coord_prim_get(name, nlen);
  *out = NULL;
  if (p && p->kind != kind) {
    char fmt[160];
    snprintf(fmt, sizeof(fmt), "'%%.*s' is a %s, not a %s", dt__coord_kind_names[p->kind],
             dt__coord_kind_names[kind]);
    dt__coord_fail(r, DT_ETYPE, fmt, name, nlen);
    return -1;
  }
  if (!p && create) {
    if (cs->prims.len + cs->datasets.len >= DT_COORD_MAX_PRIMS) {
      dt__coord_fail(r, DT_ELIMIT, "too many coordination primitives to create '%.*s'", name, nlen);
      return -1;
    }
    p = dt__xcalloc(1, sizeof(*p));
    p->name = dt__xstrndup(name, nlen);
    p->nlen = nlen;
    p->kind = kind;
    dt__smap_put(&cs->prims, p->name, nlen, p);
  }
  *out = p;
  return 0;
}

/* prim_gc: p goes when it holds nothing and nobody waits */
void dt__coord_prim_gc(prim *p) {
  if (!p || p->wh || p->var || p->items.len > p->head || p->holder || p->set || p->leases.len) return;
  DT_JOURNAL(dt__journal_prim_gone(p->name, p->nlen));
  dt__smap_del(&cs->prims, p->name, p->nlen);
  dt__vec_free(&p->items);
  dt__vec_free(&p->leases);
  free(p->name);
  free(p);
}

/* ---------------------------------------------------------------- waiters */

static waiter *wait_add(const coord_req *r, prim *p) {
  waiter *w = dt__xcalloc(1, sizeof(*w));
  w->prim = p;
  w->client = r->client;
  w->req = r->req;
  w->op = r->op;
  w->deadline = r->timeout_ms < 0 ? UINT64_MAX : dt__coord_now() + (uint64_t)r->timeout_ms;
  waiter **h = p ? &p->wh : &cs->mh, **t = p ? &p->wt : &cs->mt;
  w->prev = *t;
  if (*t) (*t)->next = w;
  else *h = w;
  *t = w;
  w->anext = cs->all;
  if (cs->all) cs->all->aprev = w;
  cs->all = w;
  cs->nwaiters++;
  if (w->deadline != UINT64_MAX) {
    dt__heap_push(&cs->timers, w);
    rearm();
  }
  return w;
}

/* wait_done: w leaves its FIFO, the heap and the list, and is freed (what
 * it carried too); its primitive stays (the caller may still use it) */
void dt__coord_wait_done(waiter *w) {
  prim *p = w->prim;
  waiter **h = p ? &p->wh : &cs->mh, **t = p ? &p->wt : &cs->mt;
  if (w->prev) w->prev->next = w->next;
  else *h = w->next;
  if (w->next) w->next->prev = w->prev;
  else *t = w->prev;
  if (w->aprev) w->aprev->anext = w->anext;
  else cs->all = w->anext;
  if (w->anext) w->anext->aprev = w->aprev;
  cs->nwaiters--;
  if (w->hidx) {
    dt__heap_remove(&cs->timers, w);
    rearm();
  }
  dt__coord_unhold_free(w->val);
  for (uint32_t i = 0; i < w->nnames; i++) free(w->names[i]);
  free(w->names);
  free(w->lens);
  free(w);
}

static bool waiters_full(const coord_req *r) {
  if (cs->nwaiters < DT_COORD_MAX_WAITERS) return false;
  dt__coord_fail(r, DT_ELIMIT, "too many requests waiting on the scheduler to wait on '%.*s'", r->names[0],
       r->lens[0]);
  return true;
}

/* park: r waits on p (a timeout of 0 answers DT_ETIMEDOUT now) */
waiter *dt__coord_park(coord_req *r, prim *p, const char *what) {
  if (r->timeout_ms == 0) {
    char fmt[120];
    snprintf(fmt, sizeof(fmt), "%s '%%.*s': timed out", what);
    dt__coord_fail(r, DT_ETIMEDOUT, fmt, r->names[0], r->lens[0]);
    return NULL;
  }
  if (waiters_full(r)) return NULL;
  return wait_add(r, p);
}

/* ---------------------------------------------------------------- queues */

static size_t qlen(const prim *p) { return p->items.len - p->head; }

static coord_val *qpop(prim *p) {
  coord_val *v = p->items.v[p->head++];
  if (p->head == p->items.len) p->items.len = p->head = 0;
  else if (p->head > 64 && p->head * 2 > p->items.len) {
    memmove(p->items.v, p->items.v + p->head, qlen(p) * sizeof(void *));
    p->items.len -= p->head;
    p->head = 0;
  }
  return v;
}

static void queue_put(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_QUEUE, true, &p)) return;
  if (cs->nitems >= DT_COORD_MAX_ITEMS || cs->nbytes + r->val->nbytes > DT_COORD_MAX_BYTES) {
    dt__coord_fail(r, DT_ELIMIT, "the scheduler holds too much to put into queue '%.*s'", r->names[0],
         r->lens[0]);
    dt__coord_prim_gc(p);
    return;
  }
  if (qlen(p) == 0 && !p->wh) p->maxsize = r->arg > 0 ? r->arg : 0;
  coord_val *v = r->val;
  r->val = NULL;
  dt__coord_hold(v);
  waiter *g = p->wh;
  if (g && g->op == DT_COORD_QUEUE_GET) { /* a getter waits: hand it over */
    give(g->client, g->req, v);
    dt__coord_wait_done(g);
    dt__coord_ok(r, 1);
    dt__coord_prim_gc(p);
    return;
  }
  if (p->maxsize > 0 && (int64_t)qlen(p) >= p->maxsize) {
    waiter *w = dt__coord_park(r, p, "queue put on full");
    if (w) w->val = v;
    else dt__coord_unhold_free(v);
    dt__coord_prim_gc(p);
    return;
  }
  dt__vec_push(&p->items, v);
  DT_JOURNAL(dt__journal_qpush(p, v));
  dt__coord_ok(r, 1);
}

static void queue_get(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_QUEUE, r->timeout_ms != 0, &p)) return;
  if (!p || qlen(p) == 0) {
    dt__coord_park(r, p, "queue get from empty");
    return;
  }
  DT_JOURNAL(dt__journal_qpop(p));
  give(r->client, r->req, qpop(p));
  waiter *w = p->wh;
  if (w && w->op == DT_COORD_QUEUE_PUT) { /* room now: the first put goes in */
    DT_JOURNAL(dt__journal_qpush(p, w->val));
    dt__vec_push(&p->items, w->val);
    w->val = NULL;
    dt__coord_reply(w->client, w->req, 0, NULL, 1, NULL, NULL);
    dt__coord_wait_done(w);
  }
  dt__coord_prim_gc(p);
}

/* ---------------------------------------------------------------- variables */

static void var_set(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_VARIABLE, true, &p)) return;
  coord_val *v = r->val, *old = p->var;
  r->val = NULL;
  if (cs->nbytes + v->nbytes - (old ? old->nbytes : 0) > DT_COORD_MAX_BYTES) {
    dt__coord_fail(r, DT_ELIMIT, "the scheduler holds too much to set variable '%.*s'", r->names[0], r->lens[0]);
    dt__coord_val_free(v);
    dt__coord_prim_gc(p);
    return;
  }
  dt__coord_hold(v); /* before the old value lets go: they may share futures */
  p->var = v;
  COORD_NOTE(p);
  dt__coord_unhold_free(old);
  while (p->wh) { /* every getter gets it */
    dt__coord_show(p->wh->client, p->wh->req, v);
    dt__coord_wait_done(p->wh);
  }
  dt__coord_ok(r, 1);
}

static void var_get(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_VARIABLE, r->timeout_ms != 0, &p)) return;
  if (p && p->var) dt__coord_show(r->client, r->req, p->var);
  else dt__coord_park(r, p, "variable get of unset");
}

static void var_delete(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_VARIABLE, false, &p)) return;
  if (p) {
    dt__coord_unhold_free(p->var);
    p->var = NULL;
    COORD_NOTE(p);
    dt__coord_prim_gc(p);
  }
  dt__coord_ok(r, 1);
}

/* ---------------------------------------------------------------- locks */

static void lock_acquire(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_LOCK, true, &p)) return;
  if (!p->holder || (p->holder == r->client && p->resumed)) {
    /* (a client of before, back, asks again for what it was granted
     * when the scheduler went down: it has it) */
    p->holder = r->client;
    p->resumed = false;
    COORD_NOTE(p);
    dt__coord_ok(r, 1);
    return;
  }
  dt__coord_park(r, p, "lock acquire of held");
  dt__coord_prim_gc(p);
}

/* lock_pass: p (free now) goes to its first waiter, or away */
static void lock_pass(prim *p) {
  waiter *w = p->wh;
  p->resumed = false;
  if (w) {
    p->holder = w->client;
    dt__coord_reply(w->client, w->req, 0, NULL, 1, NULL, NULL);
    dt__coord_wait_done(w);
  }
  COORD_NOTE(p);
  dt__coord_prim_gc(p);
}

static void lock_release(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_LOCK, false, &p)) return;
  if (!p || p->holder != r->client) {
    dt__coord_fail(r, DT_EINVAL, "lock '%.*s' is not held by this client", r->names[0], r->lens[0]);
    return;
  }
  p->holder = 0;
  dt__coord_ok(r, 1);
  lock_pass(p);
}

/* ---------------------------------------------------------------- requests */

void dt__coord_request(coord_req *r) {
  init();
  bool needs_val = r->op == DT_COORD_VAR_SET || r->op == DT_COORD_QUEUE_PUT || r->op == DT_COORD_DS_PUBLISH;
  prim *p;
  if (r->op <= DT_COORD_NONE || r->op >= DT_COORD_COUNT)
    dt__coord_fail(r, DT_EINVAL, "unknown coordination request%.*s", "", 0);
  else if (r->nnames == 0 || (r->op != DT_COORD_MLOCK_ACQUIRE && r->op != DT_COORD_MLOCK_RELEASE &&
                              r->op != DT_COORD_DS_LIST && r->nnames != 1))
    dt__coord_fail(r, DT_EINVAL, "a coordination request names one primitive%.*s", "", 0);
  else if (needs_val && !r->val)
    dt__coord_fail(r, DT_EINVAL, "'%.*s': no value given", r->names[0], r->lens[0]);
  else if (r->val && r->val->nbytes > DT_COORD_MAX_VALUE)
    dt__coord_fail(r, DT_ELIMIT, "'%.*s': the value is over 64 MiB", r->names[0], r->lens[0]);
  else switch (r->op) {
  case DT_COORD_VAR_SET: var_set(r); break;
  case DT_COORD_VAR_GET: var_get(r); break;
  case DT_COORD_VAR_DELETE: var_delete(r); break;
  case DT_COORD_QUEUE_PUT: queue_put(r); break;
  case DT_COORD_QUEUE_GET: queue_get(r); break;
  case DT_COORD_QUEUE_SIZE:
    if (dt__coord_prim_of(r, CK_QUEUE, false, &p) == 0) dt__coord_ok(r, p ? (int64_t)qlen(p) : 0);
    break;
  case DT_COORD_LOCK_ACQUIRE: lock_acquire(r); break;
  case DT_COORD_LOCK_RELEASE: lock_release(r); break;
  case DT_COORD_LOCK_LOCKED:
    if (dt__coord_prim_of(r, CK_LOCK, false, &p) == 0) dt__coord_ok(r, p && p->holder);
    break;
  case DT_COORD_MLOCK_ACQUIRE: dt__coord_mlock_acquire(r); break;
  case DT_COORD_MLOCK_RELEASE: dt__coord_mlock_release(r); break;
  case DT_COORD_EVENT_SET: dt__coord_event_set(r); break;
  case DT_COORD_EVENT_CLEAR: dt__coord_event_clear(r); break;
  case DT_COORD_EVENT_WAIT: dt__coord_event_wait(r); break;
  case DT_COORD_EVENT_IS_SET:
    if (dt__coord_prim_of(r, CK_EVENT, false, &p) == 0) dt__coord_ok(r, p && p->set);
    break;
  case DT_COORD_SEM_ACQUIRE: dt__coord_sem_acquire(r); break;
  case DT_COORD_SEM_RELEASE: dt__coord_sem_release(r); break;
  case DT_COORD_SEM_VALUE:
    if (dt__coord_prim_of(r, CK_SEMAPHORE, false, &p) == 0) dt__coord_ok(r, p ? (int64_t)p->leases.len : 0);
    break;
  case DT_COORD_DS_PUBLISH: dt__coord_ds_publish(r); break;
  case DT_COORD_DS_GET: dt__coord_ds_get(r); break;
  case DT_COORD_DS_LIST: dt__coord_ds_list(r); break;
  case DT_COORD_DS_UNPUBLISH: dt__coord_ds_unpublish(r); break;
  }
  dt__coord_val_free(r->val); /* not taken */
  r->val = NULL;
}

void dt__coord_client_left(uint32_t client) {
  if (!cs->init) return;
  for (waiter *w = cs->all, *next; w; w = next) {
    next = w->anext;
    if (w->client != client) continue;
    prim *p = w->prim;
    dt__coord_wait_done(w);
    dt__coord_prim_gc(p);
  }
  /* what it holds: collected first (passing a lock may free primitives) */
  dt_vec held = {0};
  for (size_t i = 0; i < cs->prims.cap; i++) {
    prim *p = cs->prims.slots[i].val;
    if (!cs->prims.slots[i].key) continue;
    bool has = p->holder == client;
    for (size_t k = 0; !has && k < p->leases.len; k++) has = (uintptr_t)p->leases.v[k] == client;
    if (has) dt__vec_push(&held, p);
  }
  bool mlocks = false;
  for (size_t i = 0; i < held.len; i++) {
    prim *p = held.v[i];
    if (p->kind == CK_LOCK) {
      p->holder = 0;
      lock_pass(p);
    } else if (p->kind == CK_MLOCK) {
      p->holder = 0;
      COORD_NOTE(p);
      dt__coord_prim_gc(p);
      mlocks = true;
    } else if (p->kind == CK_SEMAPHORE) {
      while (dt__vec_remove(&p->leases, (void *)(uintptr_t)client)) {}
      dt__coord_sem_pass(p);
    }
  }
  dt__vec_free(&held);
  if (mlocks) dt__coord_mlock_grant();
}

void dt__coord_expire(uint64_t now_ms) {
  if (!cs->init) return;
  waiter *w;
  while ((w = dt__heap_peek(&cs->timers)) && w->deadline <= now_ms) {
    char msg[300];
    const char *name = w->prim ? w->prim->name : w->nnames ? w->names[0] : "";
    snprintf(msg, sizeof(msg), "'%.200s': timed out", name);
    dt__coord_reply(w->client, w->req, DT_ETIMEDOUT, msg, 0, NULL, NULL);
    prim *p = w->prim;
    dt__coord_wait_done(w);
    dt__coord_prim_gc(p);
  }
}

size_t dt__coord_client_state(void) {
  if (!cs->init) return 0;
  size_t n = cs->nwaiters;
  for (size_t i = 0; i < cs->prims.cap; i++) {
    prim *p = cs->prims.slots[i].val;
    if (cs->prims.slots[i].key) n += (p->holder != 0) + p->leases.len;
  }
  return n;
}

void dt__coord_free_all(void) {
  if (!cs->init) return;
  while (cs->all) {
    prim *p = cs->all->prim;
    dt__coord_wait_done(cs->all);
    dt__coord_prim_gc(p);
  }
  for (size_t i = 0; i < cs->prims.cap; i++) {
    prim *p = cs->prims.slots[i].val;
    if (!cs->prims.slots[i].key) continue;
    dt__coord_unhold_free(p->var);
    while (qlen(p)) dt__coord_unhold_free(qpop(p));
    dt__vec_free(&p->items);
    dt__vec_free(&p->leases);
    free(p->name);
    free(p);
  }
  for (size_t i = 0; i < cs->datasets.cap; i++) {
    dataset *d = cs->datasets.slots[i].val;
    if (!cs->datasets.slots[i].key) continue;
    dt__coord_unhold_free(d->val);
    free(d->name);
    free(d);
  }
  dt__smap_destroy(&cs->prims);
  dt__smap_destroy(&cs->datasets);
  dt__smap_destroy(&cs->keyrefs);
  dt__heap_destroy(&cs->timers);
  if (cs->holder) dt__sched_remove_client(&srv->s, cs->holder);
  memset(cs, 0, sizeof(*cs));
  dt__coord_arm(UINT64_MAX);
}
