/*
 * coord_kinds.c -- multilocks, events, semaphores and published datasets
 * (coord.h): their requests, on the helpers of coord.c (coord_int.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_int.h"

static coord_state *const cs = &dt__coord_st;

/* ---------------------------------------------------------------- multilocks */

/* mlock_free_count: how many of the names are free (-1: one is another kind) */
static int64_t mlock_free_count(const char *const *names, const uint32_t *lens, uint32_t n) {
  int64_t nfree = 0;
  for (uint32_t i = 0; i < n; i++) {
    prim *p = dt__coord_prim_get(names[i], lens[i]);
    if (p && p->kind != CK_MLOCK) return -1;
    if (!p || !p->holder) nfree++;
  }
  return nfree;
}

/* mlock_take: client takes need of the free names, in order */
static void mlock_take(uint32_t client, const char *const *names, const uint32_t *lens, uint32_t n,
                       int64_t need) {
  for (uint32_t i = 0; i < n && need > 0; i++) {
    prim *p = dt__coord_prim_get(names[i], lens[i]);
    if (p && p->holder) continue;
    if (!p) {
      p = dt__xcalloc(1, sizeof(*p));
      p->name = dt__xstrndup(names[i], lens[i]);
      p->nlen = lens[i];
      p->kind = CK_MLOCK;
      dt__smap_put(&cs->prims, p->name, lens[i], p);
    }
    p->holder = client;
    COORD_NOTE(p);
    need--;
  }
}

/* mlock_grant: the multilock waiters that can take their locks now do,
 * in the order they came */
void dt__coord_mlock_grant(void) {
  for (waiter *w = cs->mh, *next; w; w = next) {
    next = w->next;
    int64_t nfree = mlock_free_count((const char *const *)w->names, w->lens, w->nnames);
    if (nfree < w->need) continue;
    mlock_take(w->client, (const char *const *)w->names, w->lens, w->nnames, w->need);
    dt__coord_reply(w->client, w->req, 0, NULL, 1, NULL, NULL);
    dt__coord_wait_done(w);
  }
}

void dt__coord_mlock_acquire(coord_req *r) {
  int64_t need = r->arg > 0 && r->arg < r->nnames ? r->arg : r->nnames;
  for (uint32_t i = 0; i < r->nnames; i++)
    for (uint32_t k = 0; k < i; k++)
      if (r->lens[i] == r->lens[k] && memcmp(r->names[i], r->names[k], r->lens[i]) == 0) {
        dt__coord_fail(r, DT_EINVAL, "multilock: '%.*s' is named twice", r->names[i], r->lens[i]);
        return;
      }
  /* a client of before, back, asks again for what it was granted when the
   * scheduler went down (journal_coord.c): it has it */
  int64_t back = 0;
  for (uint32_t i = 0; i < r->nnames; i++) {
    prim *p = dt__coord_prim_get(r->names[i], r->lens[i]);
    back += p && p->kind == CK_MLOCK && p->holder == r->client && p->resumed;
  }
  if (back > 0 && back >= need) {
    for (uint32_t i = 0; i < r->nnames; i++) {
      prim *p = dt__coord_prim_get(r->names[i], r->lens[i]);
      if (p && p->kind == CK_MLOCK && p->holder == r->client) p->resumed = false;
    }
    dt__coord_ok(r, 1);
    return;
  }
  int64_t nfree = mlock_free_count(r->names, r->lens, r->nnames);
  if (nfree < 0) {
    for (uint32_t i = 0; i < r->nnames; i++) {
      prim *p = dt__coord_prim_get(r->names[i], r->lens[i]);
      if (p && p->kind != CK_MLOCK) {
        char fmt[160];
        snprintf(fmt, sizeof(fmt), "'%%.*s' is a %s, not a multilock", dt__coord_kind_names[p->kind]);
        dt__coord_fail(r, DT_ETYPE, fmt, r->names[i], r->lens[i]);
        return;
      }
    }
  }
  if (nfree >= need && !cs->mh) {
    if (cs->prims.len + cs->datasets.len + r->nnames > DT_COORD_MAX_PRIMS) {
      dt__coord_fail(r, DT_ELIMIT, "too many coordination primitives for multilock '%.*s'", r->names[0],
           r->lens[0]);
      return;
    }
    mlock_take(r->client, r->names, r->lens, r->nnames, need);
    dt__coord_ok(r, 1);
    return;
  }
  waiter *w = dt__coord_park(r, NULL, "multilock acquire of held");
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

void dt__coord_mlock_release(coord_req *r) {
  uint32_t released = 0;
  for (uint32_t i = 0; i < r->nnames; i++) {
    prim *p = dt__coord_prim_get(r->names[i], r->lens[i]);
    if (!p || p->kind != CK_MLOCK || p->holder != r->client) continue;
    p->holder = 0;
    p->resumed = false;
    COORD_NOTE(p);
    dt__coord_prim_gc(p);
    released++;
  }
  if (!released) {
    dt__coord_fail(r, DT_EINVAL, "multilock '%.*s': none of its locks is held by this client", r->names[0],
         r->lens[0]);
    return;
  }
  dt__coord_ok(r, released);
  dt__coord_mlock_grant();
}

/* ---------------------------------------------------------------- events */

void dt__coord_event_set(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_EVENT, true, &p)) return;
  p->set = true;
  COORD_NOTE(p);
  while (p->wh) {
    dt__coord_reply(p->wh->client, p->wh->req, 0, NULL, 1, NULL, NULL);
    dt__coord_wait_done(p->wh);
  }
  dt__coord_ok(r, 1);
}

void dt__coord_event_clear(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_EVENT, false, &p)) return;
  if (p) {
    p->set = false;
    COORD_NOTE(p);
    dt__coord_prim_gc(p);
  }
  dt__coord_ok(r, 1);
}

void dt__coord_event_wait(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_EVENT, r->timeout_ms != 0, &p)) return;
  if (p && p->set) dt__coord_ok(r, 1);
  else dt__coord_park(r, p, "event wait on unset");
}

/* ---------------------------------------------------------------- semaphores */

void dt__coord_sem_acquire(coord_req *r) {
  if (r->arg < 1) {
    dt__coord_fail(r, DT_EINVAL, "semaphore '%.*s': max_leases must be at least 1", r->names[0], r->lens[0]);
    return;
  }
  prim *p;
  if (dt__coord_prim_of(r, CK_SEMAPHORE, true, &p)) return;
  if (!p->leases.len && !p->wh) p->max_leases = r->arg;
  if (p->max_leases != r->arg) {
    char fmt[160];
    snprintf(fmt, sizeof(fmt), "semaphore '%%.*s' has max_leases %lld, not %lld",
             (long long)p->max_leases, (long long)r->arg);
    dt__coord_fail(r, DT_EINVAL, fmt, r->names[0], r->lens[0]);
    return;
  }
  if ((int64_t)p->leases.len < p->max_leases) {
    dt__vec_push(&p->leases, (void *)(uintptr_t)r->client);
    COORD_NOTE(p);
    dt__coord_ok(r, 1);
    return;
  }
  dt__coord_park(r, p, "semaphore acquire of exhausted");
  dt__coord_prim_gc(p);
}

/* sem_pass: free leases go to the waiters, in order */
void dt__coord_sem_pass(prim *p) {
  COORD_NOTE(p); /* a lease went (the caller's), maybe to the waiters below */
  while (p->wh && (int64_t)p->leases.len < p->max_leases) {
    waiter *w = p->wh;
    dt__vec_push(&p->leases, (void *)(uintptr_t)w->client);
    dt__coord_reply(w->client, w->req, 0, NULL, 1, NULL, NULL);
    dt__coord_wait_done(w);
    COORD_NOTE(p);
  }
  dt__coord_prim_gc(p);
}

void dt__coord_sem_release(coord_req *r) {
  prim *p;
  if (dt__coord_prim_of(r, CK_SEMAPHORE, false, &p)) return;
  if (!p || !dt__vec_remove(&p->leases, (void *)(uintptr_t)r->client)) {
    dt__coord_fail(r, DT_EINVAL, "semaphore '%.*s': this client holds no lease", r->names[0], r->lens[0]);
    return;
  }
  dt__coord_ok(r, 1);
  dt__coord_sem_pass(p);
}

/* ---------------------------------------------------------------- datasets */

void dt__coord_ds_publish(coord_req *r) {
  const char *name = r->names[0];
  uint32_t nlen = r->lens[0];
  dataset *d = dt__smap_get(&cs->datasets, name, nlen);
  if (d && !r->arg) {
    dt__coord_fail(r, DT_EINVAL, "dataset '%.*s' already exists", name, nlen);
    return;
  }
  if (!d && cs->prims.len + cs->datasets.len >= DT_COORD_MAX_PRIMS) {
    dt__coord_fail(r, DT_ELIMIT, "too many datasets to publish '%.*s'", name, nlen);
    return;
  }
  if (cs->nbytes + r->val->nbytes > DT_COORD_MAX_BYTES) {
    dt__coord_fail(r, DT_ELIMIT, "the scheduler holds too much to publish '%.*s'", name, nlen);
    return;
  }
  coord_val *v = r->val;
  r->val = NULL;
  dt__coord_hold(v);
  if (d) {
    dt__coord_unhold_free(d->val);
  } else {
    d = dt__xcalloc(1, sizeof(*d));
    d->name = dt__xstrndup(name, nlen);
    dt__smap_put(&cs->datasets, d->name, nlen, d);
  }
  d->val = v;
  DT_JOURNAL(dt__journal_dataset(d->name, v));
  dt__coord_ok(r, 1);
}

void dt__coord_ds_restore(const char *name, uint32_t nlen, coord_val *v) {
  dt__coord_init();
  dataset *d = dt__smap_get(&cs->datasets, name, nlen);
  dt__coord_hold(v);
  if (d) {
    dt__coord_unhold_free(d->val);
  } else {
    d = dt__xcalloc(1, sizeof(*d));
    d->name = dt__xstrndup(name, nlen);
    dt__smap_put(&cs->datasets, d->name, nlen, d);
  }
  d->val = v;
}

void dt__coord_ds_get(coord_req *r) {
  dataset *d = dt__smap_get(&cs->datasets, r->names[0], r->lens[0]);
  if (d) dt__coord_show(r->client, r->req, d->val);
  else dt__coord_fail(r, DT_ENOTFOUND, "no dataset named '%.*s'", r->names[0], r->lens[0]);
}

static void ds_free(dataset *d) {
  DT_JOURNAL(dt__journal_dataset(d->name, NULL));
  dt__smap_del(&cs->datasets, d->name, strlen(d->name));
  dt__coord_unhold_free(d->val);
  free(d->name);
  free(d);
}

void dt__coord_ds_unpublish(coord_req *r) {
  dataset *d = dt__smap_get(&cs->datasets, r->names[0], r->lens[0]);
  if (!d) {
    dt__coord_fail(r, DT_ENOTFOUND, "no dataset named '%.*s'", r->names[0], r->lens[0]);
    return;
  }
  ds_free(d);
  dt__coord_ok(r, 1);
}

void dt__coord_ds_list(coord_req *r) {
  dt_vec names = {0};
  for (size_t i = 0; i < cs->datasets.cap; i++)
    if (cs->datasets.slots[i].key) dt__vec_push(&names, ((dataset *)cs->datasets.slots[i].val)->name);
  dt__coord_reply(r->client, r->req, 0, NULL, (int64_t)names.len, NULL, &names);
  dt__vec_free(&names);
}

