/*
 * replicas.c -- the state machine's side of the client's questions (see
 * query.h): a bounded ring of the last DT_STORY_CAP task transitions (what
 * story answers), and copies of results between workers for replicate and
 * rebalance, sent as ACQUIRE (as retiring does) and confirmed by ACQUIRED.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query.h"
#include "sched_int.h"

/* ---------------------------------------------------------------- story */

#define DT_STORY_CAP 16384
#define STORY_PREFIX 48
typedef struct {
  double t;     /* wall clock, seconds */
  uint64_t h;   /* hash of the key past its prefix */
  uint32_t klen;
  uint8_t from, to;
  char kp[STORY_PREFIX]; /* the key's first bytes (NUL-padded) */
} story_ev;

static story_ev *story;
static uint64_t story_n;

/* the prefix is kept as it is: the hash is of the bytes past it (none for
 * most keys), so that a transition hashes nothing */
static uint64_t key_hash(const char *k, uint32_t n) {
  return n > STORY_PREFIX ? dt__hash(k + STORY_PREFIX, n - STORY_PREFIX) : 0;
}

/* The time of the message being handled, taken at its first transition:
 * one clock read per message, not one per transition (a message's
 * transitions keep their order in the ring).  0: read the clock. */
static double story_now;
static bool story_in_msg;
void dt__story_msg(bool begin) {
  story_now = 0;
  story_in_msg = begin;
}

double dt__wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void dt__story_note(const char *key, uint32_t klen, int from, int to) {
  if (!story && !(story = calloc(DT_STORY_CAP, sizeof(*story)))) return; /* diagnostics only */
  story_ev *e = &story[story_n++ % DT_STORY_CAP];
  if (!story_now) {
    e->t = dt__wall_s();
    if (story_in_msg) story_now = e->t;
  } else e->t = story_now;
  e->h = key_hash(key, klen);
  e->klen = klen;
  e->from = (uint8_t)from;
  e->to = (uint8_t)to;
  memset(e->kp, 0, sizeof(e->kp));
  memcpy(e->kp, key, klen < STORY_PREFIX ? klen : STORY_PREFIX);
}

void dt__story_of(const char *key, uint32_t klen, dt_value *out, size_t max) {
  if (!story) return;
  uint64_t h = key_hash(key, klen);
  uint64_t first = story_n > DT_STORY_CAP ? story_n - DT_STORY_CAP : 0;
  size_t got = 0;
  for (uint64_t i = first; i < story_n && got < max; i++) {
    const story_ev *e = &story[i % DT_STORY_CAP];
    if (e->h != h || e->klen != klen || memcmp(e->kp, key, klen < STORY_PREFIX ? klen : STORY_PREFIX))
      continue;
    dt_value *row = dt_list_of(5, dt_strn(key, klen), dt_str(dt__task_state_name(e->from)),
                               dt_str(dt__task_state_name(e->to)), dt_str("scheduler"),
                               dt_double(e->t));
    dt_list_push(out, row);
    got++;
  }
}

void dt__story_free(void) {
  free(story);
  story = NULL;
  story_n = 0;
}

/* ---------------------------------------------------------------- moves */

typedef struct {
  char *key;
  uint32_t klen;
  uint32_t to, from; /* worker ids */
} s_move;
static dt_vec moves; /* s_move*: rebalance's copies not confirmed yet */
#define MAX_MOVES 100000

static bool usable(const s_worker *w) { return !w->gone && !w->closing && !w->retiring; }

static bool holds(const s_task *t, const s_worker *w) {
  for (uint32_t i = 0; i < t->who_has.len; i++)
    if (t->who_has.v[i] == w) return true;
  return false;
}

int dt__sched_replicate(sched *s, s_task *t, int n, s_worker **targets, size_t ntargets) {
  if (t->state != TS_MEMORY || !t->who_has.len) return 0;
  s_worker **cand = targets;
  if (!ntargets) {
    cand = (s_worker **)s->workers.v;
    ntargets = s->workers.len;
  }
  int have = (int)t->who_has.len, asked = 0;
  bool *taken = dt__xcalloc(ntargets ? ntargets : 1, sizeof(bool));
  while (have + asked < n) {
    s_worker *best = NULL;
    size_t bi = 0;
    for (size_t i = 0; i < ntargets; i++) {
      s_worker *w = cand[i];
      if (taken[i] || !usable(w) || holds(t, w)) continue;
      if (!best || w->nbytes < best->nbytes) best = w, bi = i;
    }
    if (!best) break;
    taken[bi] = true;
    dt__ev_acquire(s, best, t, t->who_has.v[0]);
    asked++;
  }
  free(taken);
  return asked;
}

int dt__sched_rebalance(sched *s, s_task **keys, size_t nkeys, s_worker **targets, size_t ntargets) {
  dt_vec ws = {0};
  for (size_t i = 0; i < (ntargets ? ntargets : s->workers.len); i++) {
    s_worker *w = ntargets ? targets[i] : s->workers.v[i];
    if (usable(w)) dt__vec_push(&ws, w);
  }
  int asked = 0;
  if (ws.len < 2) goto out;
  /* the results to consider: given, or every one in memory */
  dt_vec ts = {0};
  if (keys) {
    for (size_t i = 0; i < nkeys; i++) dt__vec_push(&ts, keys[i]);
  } else {
    for (size_t i = 0; i < s->tasks.cap; i++)
      if (s->tasks.slots[i].t && s->tasks.slots[i].t->state == TS_MEMORY)
        dt__vec_push(&ts, s->tasks.slots[i].t);
  }
  double *load = dt__xcalloc(ws.len, sizeof(double)), total = 0;
  for (size_t k = 0; k < ts.len; k++) {
    s_task *t = ts.v[k];
    if (t->state != TS_MEMORY) continue;
    for (size_t i = 0; i < ws.len; i++)
      if (holds(t, ws.v[i])) load[i] += (double)t->nbytes + 64, total += (double)t->nbytes + 64;
  }
  double mean = total / (double)ws.len;
  for (size_t k = 0; k < ts.len && moves.len < MAX_MOVES; k++) {
    s_task *t = ts.v[k];
    if (t->state != TS_MEMORY || t->who_has.len != 1) continue;
    size_t src = ws.len;
    for (size_t i = 0; i < ws.len; i++)
      if (ws.v[i] == t->who_has.v[0]) src = i;
    double wgt = (double)t->nbytes + 64;
    if (src == ws.len || load[src] - wgt / 2 <= mean) continue;
    size_t dst = src;
    for (size_t i = 0; i < ws.len; i++)
      if (i != src && (dst == src || load[i] < load[dst])) dst = i;
    if (load[dst] + wgt / 2 > mean) continue;
    s_worker *from = ws.v[src], *to = ws.v[dst];
    s_move *mv = dt__xcalloc(1, sizeof(*mv));
    mv->key = dt__xstrndup(t->key, t->klen);
    mv->klen = t->klen;
    mv->to = to->id;
    mv->from = from->id;
    dt__vec_push(&moves, mv);
    dt__ev_acquire(s, to, t, from);
    load[src] -= wgt;
    load[dst] += wgt;
    asked++;
  }
  free(load);
  dt__vec_free(&ts);
out:
  dt__vec_free(&ws);
  return asked;
}

static void move_free(s_move *mv) {
  dt__vec_remove(&moves, mv);
  free(mv->key);
  free(mv);
}

void dt__sched_moved(sched *s, s_worker *w, const char *key, uint32_t klen, bool ok) {
  s_move *mv = NULL;
  for (size_t i = 0; i < moves.len && !mv; i++) {
    s_move *m = moves.v[i];
    if (m->to == w->id && m->klen == klen && memcmp(m->key, key, klen) == 0) mv = m;
  }
  if (!mv) return;
  uint32_t from_id = mv->from;
  move_free(mv);
  s_task *t = ok ? dt__sched_get_task(s, key, klen) : NULL;
  if (!t || t->state != TS_MEMORY || t->who_has.len < 2 || !holds(t, w)) return;
  for (uint32_t i = 0; i < t->who_has.len; i++) {
    s_worker *from = t->who_has.v[i];
    if (from->id != from_id) continue;
    dt__vec1_remove(&t->who_has, from);
    dt__ev_free(s, from, t);
    from->nkeys--;
    from->nbytes -= t->nbytes < from->nbytes ? t->nbytes : from->nbytes;
    return;
  }
}

void dt__sched_moves_forget(s_worker *w) {
  for (size_t i = moves.len; i-- > 0;) {
    s_move *m = moves.v[i];
    if (m->to == w->id || m->from == w->id) move_free(m);
  }
}

void dt__sched_moves_free(void) {
  while (moves.len) move_free(moves.v[moves.len - 1]);
  dt__vec_free(&moves);
}
