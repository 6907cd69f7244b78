/*
 * coord.c -- the state of the coordination primitives and published
 * datasets (see coord.h): named variables, queues, locks, multilocks,
 * events and semaphores, their waiters with deadlines on a heap, and the
 * futures their values keep alive.  Requests that cannot be answered at
 * once wait in their primitive's FIFO (multilocks in one FIFO of their
 * own); a waiter leaves it exactly once: granted, timed out, or its client
 * gone, so a timed-out waiter never consumes an item or a lease later.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"

static dt_srv *const srv = &dt__srv;

enum { CK_VARIABLE = 1, CK_QUEUE, CK_LOCK, CK_MLOCK, CK_EVENT, CK_SEMAPHORE };
static const char *const kind_names[] = {"?",         "variable", "queue",    "lock",
                                         "multilock", "event",    "semaphore"};

typedef struct waiter {
  struct waiter *next, *prev;       /* in its primitive's FIFO (or the multilocks') */
  struct waiter *anext, *aprev;     /* in the list of all waiters */
  struct prim *prim;                /* NULL: a multilock waiter */
  uint32_t client;
  uint64_t req;
  int op;
  uint64_t deadline; /* UINT64_MAX: none */
  size_t hidx;       /* in the timer heap (index + 1, 0: not in it) */
  coord_val *val;    /* a put waiting for room */
  char **names;      /* a multilock's names (owned) */
  uint32_t *lens, nnames;
  int64_t need;      /* locks a multilock needs */
} waiter;

typedef struct prim {
  char *name;
  uint32_t nlen;
  int kind;
  coord_val *var;     /* variable: the value, or NULL */
  dt_vec items;       /* queue: coord_val*, from head */
  size_t head;
  int64_t maxsize;    /* queue: 0 = unbounded */
  uint32_t holder;    /* lock, multilock: the client holding it, 0 = free */
  bool set;           /* event */
  int64_t max_leases; /* semaphore */
  dt_vec leases;      /* semaphore: client ids, one per lease */
  waiter *wh, *wt;
} prim;

static struct {
  bool init;
  dt_smap prims;    /* name -> prim */
  dt_smap datasets; /* name -> dataset */
  dt_smap keyrefs;  /* key -> keyref */
  s_client *holder; /* wants the held futures' keys, while any are held */
  dt_heap timers;
  waiter *mh, *mt;  /* multilock waiters */
  waiter *all;      /* every waiter */
  size_t nbytes, nitems, nwaiters;
} C;

typedef struct {
  char *name;
  coord_val *val;
} dataset;

typedef struct {
  char *key;
  uint64_t refs;
} keyref;

static bool deadline_less(const void *a, const void *b) {
  return ((const waiter *)a)->deadline < ((const waiter *)b)->deadline;
}

static void init(void) {
  if (C.init) return;
  dt__smap_init(&C.prims);
  dt__smap_init(&C.datasets);
  dt__smap_init(&C.keyrefs);
  dt__heap_init(&C.timers, deadline_less, offsetof(waiter, hidx));
  C.init = true;
}

static void rearm(void) {
  waiter *w = dt__heap_peek(&C.timers);
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
static void hold(coord_val *v) {
  C.nbytes += v->nbytes;
  C.nitems++;
  for (uint32_t i = 0; i < v->nkeys; i++) {
    size_t kl = strlen(v->keys[i]);
    keyref *r = dt__smap_get(&C.keyrefs, v->keys[i], kl);
    if (!r) {
      if (!C.holder) C.holder = dt__sched_add_client(&srv->s, NULL, "coordination");
      r = dt__xcalloc(1, sizeof(*r));
      r->key = dt__xstrdup(v->keys[i]);
      dt__smap_put(&C.keyrefs, r->key, kl, r);
      dt__sched_client_want(&srv->s, C.holder, r->key, (uint32_t)kl);
    }
    r->refs++;
  }
}

/* unhold_free: v is no longer held (its futures let go of), and freed */
static void unhold_free(coord_val *v) {
  if (!v) return;
  C.nbytes -= v->nbytes;
  C.nitems--;
  for (uint32_t i = 0; i < v->nkeys; i++) {
    size_t kl = strlen(v->keys[i]);
    keyref *r = dt__smap_get(&C.keyrefs, v->keys[i], kl);
    if (!r || --r->refs) continue;
    dt__smap_del(&C.keyrefs, v->keys[i], kl);
    dt__sched_client_release(&srv->s, C.holder, r->key, (uint32_t)kl);
    free(r->key);
    free(r);
  }
  if (C.holder && C.keyrefs.len == 0) {
    dt__sched_remove_client(&srv->s, C.holder);
    C.holder = NULL;
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
  unhold_free(v);
}

/* show: like give, but v stays held (a variable's or a dataset's value) */
static void show(uint32_t client, uint64_t req, const coord_val *v) {
  dt__coord_reply(client, req, 0, NULL, 1, v, NULL);
  s_client *cl = dt__srv_client_by_id(client);
  for (uint32_t i = 0; cl && i < v->nkeys; i++)
    dt__sched_client_want(&srv->s, cl, v->keys[i], (uint32_t)strlen(v->keys[i]));
}

static void fail(const coord_req *r, int code, const char *fmt, const char *name, uint32_t nlen) {
  char msg[300];
  snprintf(msg, sizeof(msg), fmt, (int)(nlen > 200 ? 200 : nlen), name ? name : "");
  dt__coord_reply(r->client, r->req, code, msg, 0, NULL, NULL);
}

static void ok(const coord_req *r, int64_t count) {
  dt__coord_reply(r->client, r->req, 0, NULL, count, NULL, NULL);
}

/* ---------------------------------------------------------------- primitives */

static prim *prim_get(const char *name, uint32_t nlen) { return dt__smap_get(&C.prims, name, nlen); }

/* prim_of: *out is the primitive named, of kind, created when absent and
 * create (else NULL when absent); -1 with an error reply when it is
 * another kind or over the limit */
static int prim_of(const coord_req *r, int kind, bool create, prim **out) {
  const char *name = r->names[0];
  uint32_t nlen = r->lens[0];
  prim *p = prim_get(name, nlen);
  *out = NULL;
  if (p && p->kind != kind) {
    char fmt[160];
    snprintf(fmt, sizeof(fmt), "'%%.*s' is a %s, not a %s", kind_names[p->kind], kind_names[kind]);
    fail(r, DT_ETYPE, fmt, name, nlen);
    return -1;
  }
  if (!p && create) {
    if (C.prims.len + C.datasets.len >= DT_COORD_MAX_PRIMS) {
      fail(r, DT_ELIMIT, "too many coordination primitives to create '%.*s'", name, nlen);
      return -1;
    }
    p = dt__xcalloc(1, sizeof(*p));
    p->name = dt__xstrndup(name, nlen);
    p->nlen = nlen;
    p->kind = kind;
    dt__smap_put(&C.prims, p->name, nlen, p);
  }
  *out = p;
  return 0;
}

/* prim_gc: p goes when it holds nothing and nobody waits */
static void prim_gc(prim *p) {
  if (!p || p->wh || p->var || p->items.len > p->head || p->holder || p->set || p->leases.len) return;
  dt__smap_del(&C.prims, p->name, p->nlen);
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
  waiter **h = p ? &p->wh : &C.mh, **t = p ? &p->wt : &C.mt;
  w->prev = *t;
  if (*t) (*t)->next = w;
  else *h = w;
  *t = w;
  w->anext = C.all;
  if (C.all) C.all->aprev = w;
  C.all = w;
  C.nwaiters++;
  if (w->deadline != UINT64_MAX) {
    dt__heap_push(&C.timers, w);
    rearm();
  }
  return w;
}

/* wait_done: w leaves its FIFO, the heap and the list, and is freed (what
 * it carried too); its primitive stays (the caller may still use it) */
static void wait_done(waiter *w) {
  prim *p = w->prim;
  waiter **h = p ? &p->wh : &C.mh, **t = p ? &p->wt : &C.mt;
  if (w->prev) w->prev->next = w->next;
  else *h = w->next;
  if (w->next) w->next->prev = w->prev;
  else *t = w->prev;
  if (w->aprev) w->aprev->anext = w->anext;
  else C.all = w->anext;
  if (w->anext) w->anext->aprev = w->aprev;
  C.nwaiters--;
  if (w->hidx) {
    dt__heap_remove(&C.timers, w);
    rearm();
  }
  unhold_free(w->val);
  for (uint32_t i = 0; i < w->nnames; i++) free(w->names[i]);
  free(w->names);
  free(w->lens);
  free(w);
}

static bool waiters_full(const coord_req *r) {
  if (C.nwaiters < DT_COORD_MAX_WAITERS) return false;
  fail(r, DT_ELIMIT, "too many requests waiting on the scheduler to wait on '%.*s'", r->names[0],
       r->lens[0]);
  return true;
}

/* park: r waits on p (a timeout of 0 answers DT_ETIMEDOUT now) */
static waiter *park(coord_req *r, prim *p, const char *what) {
  if (r->timeout_ms == 0) {
    char fmt[120];
    snprintf(fmt, sizeof(fmt), "%s '%%.*s': timed out", what);
    fail(r, DT_ETIMEDOUT, fmt, r->names[0], r->lens[0]);
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
  if (prim_of(r, CK_QUEUE, true, &p)) return;
  if (C.nitems >= DT_COORD_MAX_ITEMS || C.nbytes + r->val->nbytes > DT_COORD_MAX_BYTES) {
    fail(r, DT_ELIMIT, "the scheduler holds too much to put into queue '%.*s'", r->names[0],
         r->lens[0]);
    prim_gc(p);
    return;
  }
  if (qlen(p) == 0 && !p->wh) p->maxsize = r->arg > 0 ? r->arg : 0;
  coord_val *v = r->val;
  r->val = NULL;
  hold(v);
  waiter *g = p->wh;
  if (g && g->op == DT_COORD_QUEUE_GET) { /* a getter waits: hand it over */
    give(g->client, g->req, v);
    wait_done(g);
    ok(r, 1);
    prim_gc(p);
    return;
  }
  if (p->maxsize > 0 && (int64_t)qlen(p) >= p->maxsize) {
    waiter *w = park(r, p, "queue put on full");
    if (w) w->val = v;
    else unhold_free(v);
    prim_gc(p);
    return;
  }
  dt__vec_push(&p->items, v);
  ok(r, 1);
}

static void queue_get(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_QUEUE, r->timeout_ms != 0, &p)) return;
  if (!p || qlen(p) == 0) {
    park(r, p, "queue get from empty");
    return;
  }
  give(r->client, r->req, qpop(p));
  waiter *w = p->wh;
  if (w && w->op == DT_COORD_QUEUE_PUT) { /* room now: the first put goes in */
    dt__vec_push(&p->items, w->val);
    w->val = NULL;
    dt__coord_reply(w->client, w->req, 0, NULL, 1, NULL, NULL);
    wait_done(w);
  }
  prim_gc(p);
}

/* ---------------------------------------------------------------- variables */

static void var_set(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_VARIABLE, true, &p)) return;
  coord_val *v = r->val, *old = p->var;
  r->val = NULL;
  if (C.nbytes + v->nbytes - (old ? old->nbytes : 0) > DT_COORD_MAX_BYTES) {
    fail(r, DT_ELIMIT, "the scheduler holds too much to set variable '%.*s'", r->names[0], r->lens[0]);
    dt__coord_val_free(v);
    prim_gc(p);
    return;
  }
  hold(v); /* before the old value lets go: they may share futures */
  p->var = v;
  unhold_free(old);
  while (p->wh) { /* every getter gets it */
    show(p->wh->client, p->wh->req, v);
    wait_done(p->wh);
  }
  ok(r, 1);
}

static void var_get(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_VARIABLE, r->timeout_ms != 0, &p)) return;
  if (p && p->var) show(r->client, r->req, p->var);
  else park(r, p, "variable get of unset");
}

static void var_delete(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_VARIABLE, false, &p)) return;
  if (p) {
    unhold_free(p->var);
    p->var = NULL;
    prim_gc(p);
  }
  ok(r, 1);
}

/* ---------------------------------------------------------------- locks */

static void lock_acquire(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_LOCK, true, &p)) return;
  if (!p->holder) {
    p->holder = r->client;
    ok(r, 1);
    return;
  }
  park(r, p, "lock acquire of held");
  prim_gc(p);
}

/* lock_pass: p (free now) goes to its first waiter, or away */
static void lock_pass(prim *p) {
  waiter *w = p->wh;
  if (w) {
    p->holder = w->client;
    dt__coord_reply(w->client, w->req, 0, NULL, 1, NULL, NULL);
    wait_done(w);
  }
  prim_gc(p);
}

static void lock_release(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_LOCK, false, &p)) return;
  if (!p || p->holder != r->client) {
    fail(r, DT_EINVAL, "lock '%.*s' is not held by this client", r->names[0], r->lens[0]);
    return;
  }
  p->holder = 0;
  ok(r, 1);
  lock_pass(p);
}

/* ---------------------------------------------------------------- multilocks */

/* mlock_free_count: how many of the names are free (-1: one is another kind) */
static int64_t mlock_free_count(const char *const *names, const uint32_t *lens, uint32_t n) {
  int64_t nfree = 0;
  for (uint32_t i = 0; i < n; i++) {
    prim *p = prim_get(names[i], lens[i]);
    if (p && p->kind != CK_MLOCK) return -1;
    if (!p || !p->holder) nfree++;
  }
  return nfree;
}

/* mlock_take: client takes need of the free names, in order */
static void mlock_take(uint32_t client, const char *const *names, const uint32_t *lens, uint32_t n,
                       int64_t need) {
  for (uint32_t i = 0; i < n && need > 0; i++) {
    prim *p = prim_get(names[i], lens[i]);
    if (p && p->holder) continue;
    if (!p) {
      p = dt__xcalloc(1, sizeof(*p));
      p->name = dt__xstrndup(names[i], lens[i]);
      p->nlen = lens[i];
      p->kind = CK_MLOCK;
      dt__smap_put(&C.prims, p->name, lens[i], p);
    }
    p->holder = client;
    need--;
  }
}

/* mlock_grant: the multilock waiters that can take their locks now do,
 * in the order they came */
static void mlock_grant(void) {
  for (waiter *w = C.mh, *next; w; w = next) {
    next = w->next;
    int64_t nfree = mlock_free_count((const char *const *)w->names, w->lens, w->nnames);
    if (nfree < w->need) continue;
    mlock_take(w->client, (const char *const *)w->names, w->lens, w->nnames, w->need);
    dt__coord_reply(w->client, w->req, 0, NULL, 1, NULL, NULL);
    wait_done(w);
  }
}

static void mlock_acquire(coord_req *r) {
  int64_t need = r->arg > 0 && r->arg < r->nnames ? r->arg : r->nnames;
  for (uint32_t i = 0; i < r->nnames; i++)
    for (uint32_t k = 0; k < i; k++)
      if (r->lens[i] == r->lens[k] && memcmp(r->names[i], r->names[k], r->lens[i]) == 0) {
        fail(r, DT_EINVAL, "multilock: '%.*s' is named twice", r->names[i], r->lens[i]);
        return;
      }
  int64_t nfree = mlock_free_count(r->names, r->lens, r->nnames);
  if (nfree < 0) {
    for (uint32_t i = 0; i < r->nnames; i++) {
      prim *p = prim_get(r->names[i], r->lens[i]);
      if (p && p->kind != CK_MLOCK) {
        char fmt[160];
        snprintf(fmt, sizeof(fmt), "'%%.*s' is a %s, not a multilock", kind_names[p->kind]);
        fail(r, DT_ETYPE, fmt, r->names[i], r->lens[i]);
        return;
      }
    }
  }
  if (nfree >= need && !C.mh) {
    if (C.prims.len + C.datasets.len + r->nnames > DT_COORD_MAX_PRIMS) {
      fail(r, DT_ELIMIT, "too many coordination primitives for multilock '%.*s'", r->names[0],
           r->lens[0]);
      return;
    }
    mlock_take(r->client, r->names, r->lens, r->nnames, need);
    ok(r, 1);
    return;
  }
  waiter *w = park(r, NULL, "multilock acquire of held");
  if (!w) return;
  w->nnames = r->nnames;
  w->need = need;
  w->names = dt__xcalloc(r->nnames, sizeof(char *));
  w->lens = dt__xcalloc(r->nnames, sizeof(uint32_t));
  for (uint32_t i = 0; i < r->nnames; i++) {
    w->names[i] = dt__xstrndup(r->names[i], r->lens[i]);
    w->lens[i] = r->lens[i];
  }
}

static void mlock_release(coord_req *r) {
  uint32_t released = 0;
  for (uint32_t i = 0; i < r->nnames; i++) {
    prim *p = prim_get(r->names[i], r->lens[i]);
    if (!p || p->kind != CK_MLOCK || p->holder != r->client) continue;
    p->holder = 0;
    prim_gc(p);
    released++;
  }
  if (!released) {
    fail(r, DT_EINVAL, "multilock '%.*s': none of its locks is held by this client", r->names[0],
         r->lens[0]);
    return;
  }
  ok(r, released);
  mlock_grant();
}

/* ---------------------------------------------------------------- events */

static void event_set(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_EVENT, true, &p)) return;
  p->set = true;
  while (p->wh) {
    dt__coord_reply(p->wh->client, p->wh->req, 0, NULL, 1, NULL, NULL);
    wait_done(p->wh);
  }
  ok(r, 1);
}

static void event_clear(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_EVENT, false, &p)) return;
  if (p) {
    p->set = false;
    prim_gc(p);
  }
  ok(r, 1);
}

static void event_wait(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_EVENT, r->timeout_ms != 0, &p)) return;
  if (p && p->set) ok(r, 1);
  else park(r, p, "event wait on unset");
}

/* ---------------------------------------------------------------- semaphores */

static void sem_acquire(coord_req *r) {
  if (r->arg < 1) {
    fail(r, DT_EINVAL, "semaphore '%.*s': max_leases must be at least 1", r->names[0], r->lens[0]);
    return;
  }
  prim *p;
  if (prim_of(r, CK_SEMAPHORE, true, &p)) return;
  if (!p->leases.len && !p->wh) p->max_leases = r->arg;
  if (p->max_leases != r->arg) {
    char fmt[160];
    snprintf(fmt, sizeof(fmt), "semaphore '%%.*s' has max_leases %lld, not %lld",
             (long long)p->max_leases, (long long)r->arg);
    fail(r, DT_EINVAL, fmt, r->names[0], r->lens[0]);
    return;
  }
  if ((int64_t)p->leases.len < p->max_leases) {
    dt__vec_push(&p->leases, (void *)(uintptr_t)r->client);
    ok(r, 1);
    return;
  }
  park(r, p, "semaphore acquire of exhausted");
  prim_gc(p);
}

/* sem_pass: free leases go to the waiters, in order */
static void sem_pass(prim *p) {
  while (p->wh && (int64_t)p->leases.len < p->max_leases) {
    waiter *w = p->wh;
    dt__vec_push(&p->leases, (void *)(uintptr_t)w->client);
    dt__coord_reply(w->client, w->req, 0, NULL, 1, NULL, NULL);
    wait_done(w);
  }
  prim_gc(p);
}

static void sem_release(coord_req *r) {
  prim *p;
  if (prim_of(r, CK_SEMAPHORE, false, &p)) return;
  if (!p || !dt__vec_remove(&p->leases, (void *)(uintptr_t)r->client)) {
    fail(r, DT_EINVAL, "semaphore '%.*s': this client holds no lease", r->names[0], r->lens[0]);
    return;
  }
  ok(r, 1);
  sem_pass(p);
}

/* ---------------------------------------------------------------- datasets */

static void ds_publish(coord_req *r) {
  const char *name = r->names[0];
  uint32_t nlen = r->lens[0];
  dataset *d = dt__smap_get(&C.datasets, name, nlen);
  if (d && !r->arg) {
    fail(r, DT_EINVAL, "dataset '%.*s' already exists", name, nlen);
    return;
  }
  if (!d && C.prims.len + C.datasets.len >= DT_COORD_MAX_PRIMS) {
    fail(r, DT_ELIMIT, "too many datasets to publish '%.*s'", name, nlen);
    return;
  }
  if (C.nbytes + r->val->nbytes > DT_COORD_MAX_BYTES) {
    fail(r, DT_ELIMIT, "the scheduler holds too much to publish '%.*s'", name, nlen);
    return;
  }
  coord_val *v = r->val;
  r->val = NULL;
  hold(v);
  if (d) {
    unhold_free(d->val);
  } else {
    d = dt__xcalloc(1, sizeof(*d));
    d->name = dt__xstrndup(name, nlen);
    dt__smap_put(&C.datasets, d->name, nlen, d);
  }
  d->val = v;
  ok(r, 1);
}

static void ds_get(coord_req *r) {
  dataset *d = dt__smap_get(&C.datasets, r->names[0], r->lens[0]);
  if (d) show(r->client, r->req, d->val);
  else fail(r, DT_ENOTFOUND, "no dataset named '%.*s'", r->names[0], r->lens[0]);
}

static void ds_free(dataset *d) {
  dt__smap_del(&C.datasets, d->name, strlen(d->name));
  unhold_free(d->val);
  free(d->name);
  free(d);
}

static void ds_unpublish(coord_req *r) {
  dataset *d = dt__smap_get(&C.datasets, r->names[0], r->lens[0]);
  if (!d) {
    fail(r, DT_ENOTFOUND, "no dataset named '%.*s'", r->names[0], r->lens[0]);
    return;
  }
  ds_free(d);
  ok(r, 1);
}

static void ds_list(coord_req *r) {
  dt_vec names = {0};
  for (size_t i = 0; i < C.datasets.cap; i++)
    if (C.datasets.slots[i].key) dt__vec_push(&names, ((dataset *)C.datasets.slots[i].val)->name);
  dt__coord_reply(r->client, r->req, 0, NULL, (int64_t)names.len, NULL, &names);
  dt__vec_free(&names);
}

/* ---------------------------------------------------------------- requests */

void dt__coord_request(coord_req *r) {
  init();
  bool needs_val = r->op == DT_COORD_VAR_SET || r->op == DT_COORD_QUEUE_PUT || r->op == DT_COORD_DS_PUBLISH;
  prim *p;
  if (r->op <= DT_COORD_NONE || r->op >= DT_COORD_COUNT)
    fail(r, DT_EINVAL, "unknown coordination request%.*s", "", 0);
  else if (r->nnames == 0 || (r->op != DT_COORD_MLOCK_ACQUIRE && r->op != DT_COORD_MLOCK_RELEASE &&
                              r->op != DT_COORD_DS_LIST && r->nnames != 1))
    fail(r, DT_EINVAL, "a coordination request names one primitive%.*s", "", 0);
  else if (needs_val && !r->val)
    fail(r, DT_EINVAL, "'%.*s': no value given", r->names[0], r->lens[0]);
  else if (r->val && r->val->nbytes > DT_COORD_MAX_VALUE)
    fail(r, DT_ELIMIT, "'%.*s': the value is over 64 MiB", r->names[0], r->lens[0]);
  else switch (r->op) {
  case DT_COORD_VAR_SET: var_set(r); break;
  case DT_COORD_VAR_GET: var_get(r); break;
  case DT_COORD_VAR_DELETE: var_delete(r); break;
  case DT_COORD_QUEUE_PUT: queue_put(r); break;
  case DT_COORD_QUEUE_GET: queue_get(r); break;
  case DT_COORD_QUEUE_SIZE:
    if (prim_of(r, CK_QUEUE, false, &p) == 0) ok(r, p ? (int64_t)qlen(p) : 0);
    break;
  case DT_COORD_LOCK_ACQUIRE: lock_acquire(r); break;
  case DT_COORD_LOCK_RELEASE: lock_release(r); break;
  case DT_COORD_LOCK_LOCKED:
    if (prim_of(r, CK_LOCK, false, &p) == 0) ok(r, p && p->holder);
    break;
  case DT_COORD_MLOCK_ACQUIRE: mlock_acquire(r); break;
  case DT_COORD_MLOCK_RELEASE: mlock_release(r); break;
  case DT_COORD_EVENT_SET: event_set(r); break;
  case DT_COORD_EVENT_CLEAR: event_clear(r); break;
  case DT_COORD_EVENT_WAIT: event_wait(r); break;
  case DT_COORD_EVENT_IS_SET:
    if (prim_of(r, CK_EVENT, false, &p) == 0) ok(r, p && p->set);
    break;
  case DT_COORD_SEM_ACQUIRE: sem_acquire(r); break;
  case DT_COORD_SEM_RELEASE: sem_release(r); break;
  case DT_COORD_SEM_VALUE:
    if (prim_of(r, CK_SEMAPHORE, false, &p) == 0) ok(r, p ? (int64_t)p->leases.len : 0);
    break;
  case DT_COORD_DS_PUBLISH: ds_publish(r); break;
  case DT_COORD_DS_GET: ds_get(r); break;
  case DT_COORD_DS_LIST: ds_list(r); break;
  case DT_COORD_DS_UNPUBLISH: ds_unpublish(r); break;
  }
  dt__coord_val_free(r->val); /* not taken */
  r->val = NULL;
}

void dt__coord_client_left(uint32_t client) {
  if (!C.init) return;
  for (waiter *w = C.all, *next; w; w = next) {
    next = w->anext;
    if (w->client != client) continue;
    prim *p = w->prim;
    wait_done(w);
    prim_gc(p);
  }
  /* what it holds: collected first (passing a lock may free primitives) */
  dt_vec held = {0};
  for (size_t i = 0; i < C.prims.cap; i++) {
    prim *p = C.prims.slots[i].val;
    if (!C.prims.slots[i].key) continue;
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
      prim_gc(p);
      mlocks = true;
    } else if (p->kind == CK_SEMAPHORE) {
      while (dt__vec_remove(&p->leases, (void *)(uintptr_t)client)) {}
      sem_pass(p);
    }
  }
  dt__vec_free(&held);
  if (mlocks) mlock_grant();
}

void dt__coord_expire(uint64_t now_ms) {
  if (!C.init) return;
  waiter *w;
  while ((w = dt__heap_peek(&C.timers)) && w->deadline <= now_ms) {
    char msg[300];
    const char *name = w->prim ? w->prim->name : w->nnames ? w->names[0] : "";
    snprintf(msg, sizeof(msg), "'%.200s': timed out", name);
    dt__coord_reply(w->client, w->req, DT_ETIMEDOUT, msg, 0, NULL, NULL);
    prim *p = w->prim;
    wait_done(w);
    prim_gc(p);
  }
}

size_t dt__coord_client_state(void) {
  if (!C.init) return 0;
  size_t n = C.nwaiters;
  for (size_t i = 0; i < C.prims.cap; i++) {
    prim *p = C.prims.slots[i].val;
    if (C.prims.slots[i].key) n += (p->holder != 0) + p->leases.len;
  }
  return n;
}

void dt__coord_free_all(void) {
  if (!C.init) return;
  while (C.all) {
    prim *p = C.all->prim;
    wait_done(C.all);
    prim_gc(p);
  }
  for (size_t i = 0; i < C.prims.cap; i++) {
    prim *p = C.prims.slots[i].val;
    if (!C.prims.slots[i].key) continue;
    unhold_free(p->var);
    while (qlen(p)) unhold_free(qpop(p));
    dt__vec_free(&p->items);
    dt__vec_free(&p->leases);
    free(p->name);
    free(p);
  }
  for (size_t i = 0; i < C.datasets.cap; i++) {
    dataset *d = C.datasets.slots[i].val;
    if (!C.datasets.slots[i].key) continue;
    unhold_free(d->val);
    free(d->name);
    free(d);
  }
  dt__smap_destroy(&C.prims);
  dt__smap_destroy(&C.datasets);
  dt__smap_destroy(&C.keyrefs);
  dt__heap_destroy(&C.timers);
  if (C.holder) dt__sched_remove_client(&srv->s, C.holder);
  memset(&C, 0, sizeof(C));
  dt__coord_arm(UINT64_MAX);
}
