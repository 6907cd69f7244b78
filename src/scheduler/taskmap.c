/*
 * taskmap.c -- a hash map of tasks by their key (s_tmap, state.h): a
 * client's `wants`.  The common string map (dt_smap, map.c) keeps a key
 * pointer and its length in each 24-byte slot; here the key is the task's
 * own (t->key, t->klen), so a slot is the task and its key's hash: 16
 * bytes, one table slot per wanted task (a good part of a task's memory).
 * Robin Hood hashing up to 80% full with backward-shift deletion, as
 * dt_smap; a lookup reads a task only when the hashes match.  O(1) per
 * operation.
 */
#include <stdlib.h>
#include <string.h>

#include "sched_int.h"

void dt__tmap_destroy(s_tmap *m) {
  free(m->slots);
  memset(m, 0, sizeof(*m));
}

static inline size_t dib(const s_tmap *m, size_t i, uint32_t hash) {
  return (i - (hash & (m->cap - 1))) & (m->cap - 1);
}

/* find: the slot holding key, or (*found false) where the search stopped */
static size_t find(const s_tmap *m, const char *k, uint32_t klen, uint32_t h, bool *found) {
  size_t mask = m->cap - 1;
  size_t i = h & mask;
  for (size_t d = 0;; d++, i = (i + 1) & mask) {
    const s_tmap_slot *s = &m->slots[i];
    if (!s->t || dib(m, i, s->hash) < d) {
      *found = false;
      return i;
    }
    if (s->hash == h && s->t->klen == klen && memcmp(s->t->key, k, klen) == 0) {
      *found = true;
      return i;
    }
  }
}

static void insert(s_tmap *m, s_tmap_slot e) {
  size_t mask = m->cap - 1;
  size_t i = e.hash & mask;
  for (size_t d = 0;; d++, i = (i + 1) & mask) {
    s_tmap_slot *s = &m->slots[i];
    if (!s->t) {
      *s = e;
      return;
    }
    size_t sd = dib(m, i, s->hash);
    if (sd < d) {
      s_tmap_slot t = *s;
      *s = e;
      e = t;
      d = sd;
    }
  }
}

s_task *dt__tmap_get(const s_tmap *m, const char *k, uint32_t klen) {
  return dt__tmap_get_h(m, k, klen, dt__hash(k, klen));
}

s_task *dt__tmap_get_h(const s_tmap *m, const char *k, uint32_t klen, uint32_t h) {
  if (!m->cap) return NULL;
  bool found;
  size_t i = find(m, k, klen, h, &found);
  return found ? m->slots[i].t : NULL;
}

static void rehash(s_tmap *m, size_t ncap) {
  s_tmap_slot *old = m->slots;
  size_t ocap = m->cap;
  m->slots = dt__xcalloc(ncap, sizeof(*m->slots));
  m->cap = ncap;
  for (size_t i = 0; i < ocap; i++)
    if (old[i].t) insert(m, old[i]);
  free(old);
}

void dt__tmap_shrink(s_tmap *m) {
  size_t ncap = 16;
  while (m->len * 4 > ncap) ncap *= 2; /* a quarter full after: room to grow */
  if (ncap >= m->cap) return;
  if (m->len == 0) {
    dt__tmap_destroy(m);
    return;
  }
  rehash(m, ncap);
}

s_task *dt__tmap_put(s_tmap *m, s_task *t) { return dt__tmap_put_h(m, t, dt__hash(t->key, t->klen)); }

void dt__tmap_add_new(s_tmap *m, s_task *t, uint32_t h) {
  if ((m->len + 1) * 5 > m->cap * 4) rehash(m, m->cap ? m->cap * 2 : 16); /* at most 80% full */
  insert(m, (s_tmap_slot){.t = t, .hash = h});
  m->len++;
}

s_task *dt__tmap_put_h(s_tmap *m, s_task *t, uint32_t h) {
  if (m->cap) {
    bool found;
    size_t i = find(m, t->key, t->klen, h, &found);
    if (found) {
      s_task *prev = m->slots[i].t;
      m->slots[i].t = t;
      return prev;
    }
  }
  if ((m->len + 1) * 5 > m->cap * 4) rehash(m, m->cap ? m->cap * 2 : 16); /* at most 80% full */
  insert(m, (s_tmap_slot){.t = t, .hash = h});
  m->len++;
  return NULL;
}

s_task *dt__tmap_del(s_tmap *m, const char *k, uint32_t klen) {
  if (!m->cap) return NULL;
  bool found;
  size_t i = find(m, k, klen, dt__hash(k, klen), &found);
  if (!found) return NULL;
  s_task *val = m->slots[i].t;
  size_t mask = m->cap - 1;
  for (;;) { /* backward shift, as dt_smap */
    size_t j = (i + 1) & mask;
    if (!m->slots[j].t || dib(m, j, m->slots[j].hash) == 0) break;
    m->slots[i] = m->slots[j];
    i = j;
  }
  memset(&m->slots[i], 0, sizeof(m->slots[i]));
  m->len--;
  return val;
}
