/*
 * coord_int.h -- what coord.c and coord_kinds.c share: the primitives,
 * their waiters, the state, and the helpers both use.  Event loop's thread
 * only; nothing else includes it.
 */
#ifndef DT_SCHED_COORD_INT_H
#define DT_SCHED_COORD_INT_H

#include "coord.h"
#include "journal.h"

/* COORD_NOTE: p changed: its state goes to the journal */
#define COORD_NOTE(p) DT_JOURNAL(dt__journal_prim(p))

enum { CK_VARIABLE = 1, CK_QUEUE, CK_LOCK, CK_MLOCK, CK_EVENT, CK_SEMAPHORE };

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
  bool resumed;       /* held by a client of before that came back (journal_coord.c) */
  waiter *wh, *wt;
} prim;

typedef struct {
  bool init;
  dt_smap prims;    /* name -> prim */
  dt_smap datasets; /* name -> dataset */
  dt_smap keyrefs;  /* key -> keyref */
  s_client *holder; /* wants the held futures' keys, while any are held */
  dt_heap timers;
  waiter *mh, *mt;  /* multilock waiters */
  waiter *all;      /* every waiter */
  size_t nbytes, nitems, nwaiters;
} coord_state;

typedef struct {
  char *name;
  coord_val *val;
} dataset;

typedef struct {
  char *key;
  uint64_t refs;
} keyref;

extern coord_state dt__coord_st;
extern const char *const dt__coord_kind_names[];

/* values: held (their futures wanted by the holder), let go of and freed,
 * shown to a client (which then wants their futures) */
void dt__coord_hold(coord_val *v);
void dt__coord_unhold_free(coord_val *v);
void dt__coord_init(void); /* the maps and timers, once */
/* dt__coord_ds_restore: a dataset replayed from the journal (v handed over) */
void dt__coord_ds_restore(const char *name, uint32_t nlen, coord_val *v);
void dt__coord_show(uint32_t client, uint64_t req, const coord_val *v);
/* replies: an error (fmt has one %.*s for the name), or success */
void dt__coord_fail(const coord_req *r, int code, const char *fmt, const char *name, uint32_t nlen);
void dt__coord_ok(const coord_req *r, int64_t count);
/* primitives: by name; of a kind (created when create; -1: replied with an
 * error); freed when they hold nothing and nobody waits */
prim *dt__coord_prim_get(const char *name, uint32_t nlen);
int dt__coord_prim_of(const coord_req *r, int kind, bool create, prim **out);
void dt__coord_prim_gc(prim *p);
/* waiters: r waits on p (NULL: the multilocks' FIFO), or DT_ETIMEDOUT now
 * for a timeout of 0 (NULL returned); a waiter done and freed */
waiter *dt__coord_park(coord_req *r, prim *p, const char *what);
void dt__coord_wait_done(waiter *w);

/* ---- coord_kinds.c */
void dt__coord_mlock_acquire(coord_req *r);
void dt__coord_mlock_release(coord_req *r);
void dt__coord_mlock_grant(void); /* waiting multilocks that can, take their locks */
void dt__coord_event_set(coord_req *r);
void dt__coord_event_clear(coord_req *r);
void dt__coord_event_wait(coord_req *r);
void dt__coord_sem_acquire(coord_req *r);
void dt__coord_sem_release(coord_req *r);
void dt__coord_sem_pass(prim *p); /* free leases go to the waiters */
void dt__coord_ds_publish(coord_req *r);
void dt__coord_ds_get(coord_req *r);
void dt__coord_ds_unpublish(coord_req *r);
void dt__coord_ds_list(coord_req *r);

#endif
