/*
 * journal_coord.c -- the coordination primitives in the scheduler's journal
 * (journal.h, docs/reliability.md): variables (their value), queues (their
 * items), events (set), semaphores (max_leases and who holds each lease),
 * locks and multilocks (their holder).  Waiters are not journaled: a
 * client that comes back sends its waiting requests again (client/
 * reconnect.c).
 *
 * Writing: a primitive that changes writes its whole state (JR_PRIM; a
 * queue writes JR_QPUSH / JR_QPOP per item instead, so a long queue costs
 * O(1) per put or get), JR_PRIM_GONE when it holds nothing and is freed.
 * Reading: the records are scanned into one map, name -> the last state
 * record and the queue items (records borrowed from the file), then, when
 * the whole file read cleanly, restored into the daemon's coordination
 * state (coord.c) -- or, in tests and the fuzzer, only decoded.  Holders
 * are client ids of before; the replay keeps new ids above them, and a
 * client that comes back (RESUME, same name) takes over what its namesake
 * of before held; past the client grace what nobody took over is released.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_int.h"
#include "journal.h"
#include "sched_int.h"

bool dt__journal_coord_install;

/* ---------------------------------------------------------------- writing */

static void put_val(const coord_val *v) {
  dt__jw_payload(&v->pl);
  dt__jw_n(v->nkeys, 4);
  for (uint32_t i = 0; i < v->nkeys; i++) dt__jw_str(v->keys[i], strlen(v->keys[i]));
}

void dt__journal_prim(const prim *p) {
  if (p->kind == CK_QUEUE) return; /* items: QPUSH/QPOP */
  dt__jw_begin(JR_PRIM);
  dt__jw_str(p->name, p->nlen);
  dt__jw_n((uint64_t)p->kind, 1);
  switch (p->kind) {
  case CK_VARIABLE:
    dt__jw_n(p->var != NULL, 1);
    if (p->var) put_val(p->var);
    break;
  case CK_LOCK:
  case CK_MLOCK: dt__jw_n(p->holder, 4); break;
  case CK_EVENT: dt__jw_n(p->set, 1); break;
  case CK_SEMAPHORE:
    dt__jw_n((uint64_t)p->max_leases, 8);
    dt__jw_n(p->leases.len, 4);
    for (size_t i = 0; i < p->leases.len; i++) dt__jw_n((uintptr_t)p->leases.v[i], 4);
    break;
  default: break;
  }
  dt__jw_end();
}

void dt__journal_prim_gone(const char *name, uint32_t nlen) {
  dt__jw_begin(JR_PRIM_GONE);
  dt__jw_str(name, nlen);
  dt__jw_end();
}

void dt__journal_qpush(const prim *p, const coord_val *v) {
  dt__jw_begin(JR_QPUSH);
  dt__jw_str(p->name, p->nlen);
  dt__jw_n((uint64_t)p->maxsize, 8);
  put_val(v);
  dt__jw_end();
}

void dt__journal_qpop(const prim *p) {
  dt__jw_begin(JR_QPOP);
  dt__jw_str(p->name, p->nlen);
  dt__jw_end();
}

static void old_client_rec(uint32_t id, const char *name) {
  dt__jw_begin(name ? JR_CLIENT : JR_CLIENT_GONE);
  dt__jw_n(id, 4);
  if (name) {
    dt__jw_n(0, 1);
    dt__jw_str(name, strlen(name));
  }
  dt__jw_end();
}

static dt_vec OLD; /* the clients of before not back yet: oldc* */
typedef struct {
  uint32_t id;
  char *name;
} oldc;

void dt__journal_coord_snapshot(void) {
  coord_state *cs = &dt__coord_st;
  /* the clients of before still awaited stay clients of before */
  for (size_t i = 0; i < OLD.len; i++) {
    const oldc *o = OLD.v[i];
    old_client_rec(o->id, o->name);
  }
  if (!cs->init) return;
  for (size_t i = 0; i < cs->prims.cap; i++) {
    const prim *p = cs->prims.slots[i].val;
    if (!cs->prims.slots[i].key) continue;
    if (p->kind != CK_QUEUE) dt__journal_prim(p);
    else
      for (size_t k = p->head; k < p->items.len; k++) dt__journal_qpush(p, p->items.v[k]);
  }
}

/* ---------------------------------------------------------------- reading */

typedef struct {
  const uint8_t *p, *end;
  bool bad;
} cur;

static uint64_t g_n(cur *c, int n) {
  if (c->bad || c->end - c->p < n) {
    c->bad = true;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)c->p[i] << (8 * i);
  c->p += n;
  return v;
}
/* g_str: 1..max bytes (0 too when empty_ok), no NUL when nonul */
static const char *g_str(cur *c, uint32_t *len, uint32_t max, bool empty_ok, bool nonul) {
  uint32_t n = (uint32_t)g_n(c, 4);
  *len = 0;
  if (c->bad || n > max || (!n && !empty_ok) || (size_t)(c->end - c->p) < n ||
      (nonul && memchr(c->p, 0, n))) {
    c->bad = true;
    return "";
  }
  const char *s = (const char *)c->p;
  c->p += n;
  *len = n;
  return s;
}

/* g_val: a value (payload, keys); decoded into a coord_val when out */
static void g_val(cur *c, coord_val **out) {
  uint32_t bl;
  const char *body = g_str(c, &bl, DT_JOURNAL_REC_MAX, true, false);
  coord_val *v = out ? dt__xcalloc(1, sizeof(*v)) : NULL;
  if (v && bl && !c->bad) {
    v->pl.body = dt__xmalloc(bl);
    memcpy(v->pl.body, body, bl);
    v->pl.len = bl;
  }
  uint32_t nf = (uint32_t)g_n(c, 4);
  if (!c->bad && nf > (uint32_t)(c->end - c->p) / 8) c->bad = true;
  if (v && nf && !c->bad) v->pl.frames = dt__xcalloc(nf, sizeof(dt_frame));
  for (uint32_t j = 0; j < nf && !c->bad; j++) {
    uint64_t fl = g_n(c, 8);
    if (c->bad || fl > (uint64_t)(c->end - c->p)) {
      c->bad = true;
      break;
    }
    if (v) {
      dt_blob *b = dt__blob_new(fl ? fl : 1);
      memcpy(b->data, c->p, fl);
      v->pl.frames[j] = (dt_frame){b, b->data, fl};
      v->pl.nframes++;
    }
    c->p += fl;
  }
  uint32_t nk = (uint32_t)g_n(c, 4);
  if (!c->bad && (nk > DT_COORD_MAX_KEYS || nk > (uint32_t)(c->end - c->p) / 4)) c->bad = true;
  if (v) v->keys = dt__xcalloc(nk && !c->bad ? nk : 1, sizeof(char *));
  for (uint32_t j = 0; j < nk && !c->bad; j++) {
    uint32_t kl;
    const char *k = g_str(c, &kl, DT_MAX_KEY, false, true);
    if (v && !c->bad) v->keys[v->nkeys++] = dt__xstrndup(k, kl);
  }
  if (v) {
    v->nbytes = dt__payload_nbytes(&v->pl);
    if (c->bad) {
      dt__coord_val_free(v);
      v = NULL;
    }
    *out = v;
  }
}

typedef struct {
  const uint8_t *st; /* the last JR_PRIM (NULL: a queue) */
  dt_vec items;      /* a queue's JR_QPUSH records, from head */
  size_t head;
} rprim;

static dt_smap RP; /* name (borrowed from the file) -> rprim */

static void rprim_free(rprim *r) {
  dt__vec_free(&r->items);
  free(r);
}

void dt__jr_coord_forget(bool all) {
  for (size_t i = 0; i < RP.cap; i++)
    if (RP.slots[i].key) rprim_free(RP.slots[i].val);
  dt__smap_destroy(&RP);
  if (!all) return;
  for (size_t i = 0; i < OLD.len; i++) {
    free(((oldc *)OLD.v[i])->name);
    free(OLD.v[i]);
  }
  dt__vec_free(&OLD);
}

static rprim *rp_get(const char *name, uint32_t nlen) {
  rprim *r = dt__smap_get(&RP, name, nlen);
  if (!r) {
    r = dt__xcalloc(1, sizeof(*r));
    dt__smap_put(&RP, name, nlen, r);
  }
  return r;
}

/* check_prim: a JR_PRIM's fields after the name (c at the kind) */
static int check_prim(cur *c) {
  int kind = (int)g_n(c, 1);
  switch (kind) {
  case CK_VARIABLE:
    if (g_n(c, 1)) g_val(c, NULL);
    break;
  case CK_LOCK:
  case CK_MLOCK: g_n(c, 4); break;
  case CK_EVENT: g_n(c, 1); break;
  case CK_SEMAPHORE: {
    int64_t max = (int64_t)g_n(c, 8);
    uint32_t n = (uint32_t)g_n(c, 4);
    if (max < 1 || (int64_t)n > max || n > (uint32_t)(c->end - c->p) / 4) c->bad = true;
    for (uint32_t i = 0; i < n && !c->bad; i++) g_n(c, 4);
    break;
  }
  default: c->bad = true; /* a queue has no JR_PRIM */
  }
  return kind;
}

int dt__jr_coord_scan(const uint8_t *rec, uint32_t len) {
  if (rec[0] < JR_PRIM || rec[0] > JR_QPOP) return -1;
  cur c = {rec + 1, rec + len, false};
  uint32_t nl;
  const char *name = g_str(&c, &nl, DT_MAX_KEY, false, true);
  if (c.bad) return 0;
  switch (rec[0]) {
  case JR_PRIM: {
    check_prim(&c);
    if (c.bad || c.p != c.end) return 0;
    rprim *r = rp_get(name, nl);
    r->st = rec;
    r->items.len = r->head = 0;
    break;
  }
  case JR_PRIM_GONE: {
    if (c.p != c.end) return 0;
    rprim *r = dt__smap_del(&RP, name, nl);
    if (r) rprim_free(r);
    break;
  }
  case JR_QPUSH: {
    g_n(&c, 8);
    g_val(&c, NULL);
    if (c.bad || c.p != c.end) return 0;
    rprim *r = rp_get(name, nl);
    if (r->st) { /* it was another kind: now a queue */
      r->st = NULL;
      r->items.len = r->head = 0;
    }
    dt__vec_push(&r->items, (void *)rec);
    break;
  }
  case JR_QPOP: {
    if (c.p != c.end) return 0;
    rprim *r = dt__smap_get(&RP, name, nl);
    if (r && !r->st && r->head < r->items.len) r->head++;
    break;
  }
  }
  return 1;
}

/* ---------------------------------------------------------------- restoring */

/* is_old: id is a client of before (a holder that is not is nobody: a
 * journal cut or damaged; what it held is free) */
static bool is_old(uint32_t id) {
  for (size_t i = 0; id && i < OLD.len; i++)
    if (((oldc *)OLD.v[i])->id == id) return true;
  return false;
}

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static prim *mk(const char *name, uint32_t nlen, int kind) {
  coord_state *cs = &dt__coord_st;
  if (dt__coord_prim_get(name, nlen) || cs->prims.len + cs->datasets.len >= DT_COORD_MAX_PRIMS) {
    DT_WARN("journal: coordination primitive '%.*s' not restored (a duplicate, or too many)",
            (int)(nlen > 200 ? 200 : nlen), name);
    return NULL;
  }
  prim *p = dt__xcalloc(1, sizeof(*p));
  p->name = dt__xstrndup(name, nlen);
  p->nlen = nlen;
  p->kind = kind;
  dt__smap_put(&cs->prims, p->name, nlen, p);
  return p;
}

/* hold: v is held by p (or dropped when p is NULL or over the limits) */
static bool hold(prim *p, coord_val *v) {
  coord_state *cs = &dt__coord_st;
  if (!p || cs->nitems >= DT_COORD_MAX_ITEMS || cs->nbytes + v->nbytes > DT_COORD_MAX_BYTES) {
    dt__coord_val_free(v);
    return false;
  }
  dt__coord_hold(v);
  return true;
}

static void restore(const char *name, uint32_t nlen, const rprim *r) {
  bool in = dt__journal_coord_install;
  if (in) dt__coord_init();
  if (!r->st) { /* a queue */
    if (r->head >= r->items.len) return;
    prim *p = NULL;
    for (size_t i = r->head; i < r->items.len; i++) {
      const uint8_t *e = r->items.v[i];
      cur c = {e + 1, e + rd32(e - 8), false};
      uint32_t nl;
      g_str(&c, &nl, DT_MAX_KEY, false, true);
      int64_t maxsize = (int64_t)g_n(&c, 8);
      coord_val *v = NULL;
      g_val(&c, &v);
      if (!v) continue;
      if (!in) {
        dt__coord_val_free(v);
        continue;
      }
      if (!p && !(p = mk(name, nlen, CK_QUEUE))) {
        dt__coord_val_free(v);
        return;
      }
      if (i == r->head) p->maxsize = maxsize > 0 ? maxsize : 0;
      if (hold(p, v)) dt__vec_push(&p->items, v);
    }
    if (p) dt__coord_prim_gc(p);
    return;
  }
  const uint8_t *e = r->st;
  cur c = {e + 1, e + rd32(e - 8), false};
  uint32_t nl;
  g_str(&c, &nl, DT_MAX_KEY, false, true);
  int kind = (int)g_n(&c, 1);
  prim *p = in ? mk(name, nlen, kind) : NULL;
  switch (kind) {
  case CK_VARIABLE:
    if (g_n(&c, 1)) {
      coord_val *v = NULL;
      g_val(&c, &v);
      if (v && hold(p, v)) p->var = v;
    }
    break;
  case CK_LOCK:
  case CK_MLOCK: {
    uint32_t h = (uint32_t)g_n(&c, 4);
    if (p && is_old(h)) p->holder = h;
    break;
  }
  case CK_EVENT: {
    bool set = g_n(&c, 1) != 0;
    if (p) p->set = set;
    break;
  }
  case CK_SEMAPHORE: {
    int64_t max = (int64_t)g_n(&c, 8);
    uint32_t n = (uint32_t)g_n(&c, 4);
    if (p) p->max_leases = max;
    for (uint32_t i = 0; i < n && !c.bad; i++) {
      uint32_t id = (uint32_t)g_n(&c, 4);
      if (p && is_old(id) && (int64_t)p->leases.len < max)
        dt__vec_push(&p->leases, (void *)(uintptr_t)id);
    }
    break;
  }
  default: break;
  }
  if (p) dt__coord_prim_gc(p);
}

void dt__jr_coord_apply(void) {
  size_t n = 0;
  for (size_t i = 0; i < RP.cap; i++)
    if (RP.slots[i].key) {
      restore(RP.slots[i].key, RP.slots[i].klen, RP.slots[i].val);
      n++;
    }
  if (n) DT_INFO("journal: %zu coordination primitives replayed", n);
}

/* ---------------------------------------------------------------- clients of before */

void dt__journal_coord_old_client(uint32_t id, const char *name, uint32_t nlen) {
  oldc *o = dt__xcalloc(1, sizeof(*o));
  o->id = id;
  o->name = dt__xstrndup(name, nlen);
  dt__vec_push(&OLD, o);
}

void dt__journal_coord_client_back(uint32_t new_id, uint32_t old_id, const char *name) {
  coord_state *cs = &dt__coord_st;
  oldc *o = NULL;
  for (size_t i = 0; i < OLD.len && !o; i++) /* the id, and the name too: no stealing */
    if (((oldc *)OLD.v[i])->id == old_id && strcmp(((oldc *)OLD.v[i])->name, name ? name : "") == 0)
      o = OLD.v[i];
  if (!o) return;
  dt__vec_remove(&OLD, o);
  size_t n = 0;
  for (size_t i = 0; cs->init && i < cs->prims.cap; i++) {
    prim *p = cs->prims.slots[i].val;
    if (!cs->prims.slots[i].key) continue;
    bool changed = false;
    if (p->holder == o->id) {
      p->holder = new_id;
      p->resumed = true;
      changed = true;
    }
    for (size_t k = 0; k < p->leases.len; k++)
      if ((uintptr_t)p->leases.v[k] == o->id) {
        p->leases.v[k] = (void *)(uintptr_t)new_id;
        p->resumed = true;
        changed = true;
      }
    if (changed) {
      n++;
      DT_JOURNAL(dt__journal_prim(p));
    }
  }
  if (n) DT_INFO("client %s is back: it holds %zu locks or semaphores again", name, n);
  DT_JOURNAL(old_client_rec(o->id, NULL));
  free(o->name);
  free(o);
}

int dt__journal_on_resume_as(struct dt_conn *c, const dt_msg *m) {
  const s_client *cl = c->data;
  uint64_t id = m->RESUME_AS.id;
  if (id > 0 && id <= UINT32_MAX) dt__journal_coord_client_back(cl->id, (uint32_t)id, cl->name);
  return 0;
}

void dt__journal_coord_orphans(void) {
  while (OLD.len) {
    oldc *o = OLD.v[OLD.len - 1];
    OLD.len--;
    dt__coord_client_left(o->id); /* its locks and leases go to the next waiters */
    DT_JOURNAL(old_client_rec(o->id, NULL));
    free(o->name);
    free(o);
  }
  dt__vec_free(&OLD);
}
