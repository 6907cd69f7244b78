/*
 * map.c -- string-keyed open-addressing hash map and binary heap.  Both are
 * O(1) / O(log n) per operation: the scheduler's hot path uses them per task
 * event.
 */
#include <stdlib.h>
#include <string.h>

#include "common.h"

uint32_t dt__hash(const char *s, size_t n) {
  /* eight bytes at a time, multiply-xorshift mixing, then a final
   * avalanche (murmur3's fmix64) so that the low bits are well mixed */
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ (w * 0x87C37B91114253D5ull)) * 0x4CF5AD432745937Full;
    h ^= h >> 29;
    s += 8;
    n -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, s, n);
  h = (h ^ (w * 0x87C37B91114253D5ull)) * 0x4CF5AD432745937Full;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return (uint32_t)h;
}

void dt__smap_init(dt_smap *m) { memset(m, 0, sizeof(*m)); }
void dt__smap_destroy(dt_smap *m) {
  free(m->slots);
  memset(m, 0, sizeof(*m));
}

/* Robin Hood hashing: an entry's distance from its home slot (computed from
 * its cached hash) never exceeds that of the entries before it in a probe
 * chain, so a lookup stops at the first entry closer to home than it would
 * be, and the table can be kept 80% full with short chains (a task is in two
 * of the scheduler's tables: this is a good part of its memory). */
static inline size_t dib(const dt_smap *m, size_t i, uint32_t hash) {
  return (i - (hash & (m->cap - 1))) & (m->cap - 1);
}

/* find: the slot holding k, or (*found false) where the search stopped */
static size_t find(const dt_smap *m, const char *k, size_t klen, uint32_t h, bool *found) {
  size_t mask = m->cap - 1;
  size_t i = h & mask;
  for (size_t d = 0;; d++, i = (i + 1) & mask) {
    const dt_map_slot *s = &m->slots[i];
    if (!s->key || dib(m, i, s->hash) < d) {
      *found = false;
      return i;
    }
    if (s->hash == h && s->klen == klen && memcmp(s->key, k, klen) == 0) {
      *found = true;
      return i;
    }
  }
}

/* insert: e is not in the table; the richer entry gives way on the way */
static void insert(dt_smap *m, dt_map_slot e) {
  size_t mask = m->cap - 1;
  size_t i = e.hash & mask;
  for (size_t d = 0;; d++, i = (i + 1) & mask) {
    dt_map_slot *s = &m->slots[i];
    if (!s->key) {
      *s = e;
      return;
    }
    size_t sd = dib(m, i, s->hash);
    if (sd < d) {
      dt_map_slot t = *s;
      *s = e;
      e = t;
      d = sd;
    }
  }
}

void *dt__smap_get(const dt_smap *m, const char *k, size_t klen) {
  if (!m->cap) return NULL;
  bool found;
  size_t i = find(m, k, klen, dt__hash(k, klen), &found);
  return found ? m->slots[i].val : NULL;
}

static void rehash(dt_smap *m, size_t ncap) {
  dt_map_slot *old = m->slots;
  size_t ocap = m->cap;
  m->slots = dt__xcalloc(ncap, sizeof(*m->slots));
  m->cap = ncap;
  for (size_t i = 0; i < ocap; i++)
    if (old[i].key) insert(m, old[i]);
  free(old);
}

static void grow(dt_smap *m) { rehash(m, m->cap ? m->cap * 2 : 16); }

void dt__smap_shrink(dt_smap *m) {
  size_t ncap = 16;
  while (m->len * 4 > ncap) ncap *= 2; /* a quarter full after: room to grow */
  if (ncap >= m->cap) return;
  if (m->len == 0) {
    dt__smap_destroy(m);
    return;
  }
  rehash(m, ncap);
}

void *dt__smap_put(dt_smap *m, const char *k, size_t klen, void *val) {
  uint32_t h = dt__hash(k, klen);
  if (m->cap) {
    bool found;
    size_t i = find(m, k, klen, h, &found);
    if (found) {
      dt_map_slot *s = &m->slots[i];
      void *prev = s->val;
      s->key = k; /* the new value owns the key storage now */
      s->val = val;
      return prev;
    }
  }
  if ((m->len + 1) * 5 > m->cap * 4) grow(m); /* at most 80% full */
  insert(m, (dt_map_slot){.key = k, .klen = (uint32_t)klen, .hash = h, .val = val});
  m->len++;
  return NULL;
}

void *dt__smap_del(dt_smap *m, const char *k, size_t klen) {
  if (!m->cap) return NULL;
  bool found;
  size_t i = find(m, k, klen, dt__hash(k, klen), &found);
  if (!found) return NULL;
  void *val = m->slots[i].val;
  /* backward shift: the entries after it that are not home move back one,
   * which keeps the Robin Hood order without tombstones */
  size_t mask = m->cap - 1;
  for (;;) {
    size_t j = (i + 1) & mask;
    if (!m->slots[j].key || dib(m, j, m->slots[j].hash) == 0) break;
    m->slots[i] = m->slots[j];
    i = j;
  }
  memset(&m->slots[i], 0, sizeof(m->slots[i]));
  m->len--;
  return val;
}

/* ---- heap */

/* A binary heap, and beside it a run of items pushed in order (each not
 * less than the one pushed before it): a graph's root tasks arrive in the
 * order they run, so most pushes and pops are O(1) on the run, with no
 * comparisons down the heap (which touch a task's memory at each level).
 * An item's index field says where it is: 0 nowhere, i + 1 at heap slot
 * i, RUN | p at the run's position p (a ring indexed by p & (rcap - 1);
 * removed items leave NULL, trimmed at both ends). */
#define IDX(h, it) (*(size_t *)((char *)(it) + (h)->idx_off))
#define RUN ((size_t)1 << (sizeof(size_t) * 8 - 1))
#define RSLOT(h, p) ((h)->run[(p) & ((h)->rcap - 1)])

void dt__heap_init(dt_heap *h, dt_heap_less less, size_t idx_off) {
  memset(h, 0, sizeof(*h));
  h->less = less;
  h->idx_off = idx_off;
}
void dt__heap_destroy(dt_heap *h) {
  for (size_t i = 0; i < h->hlen; i++) IDX(h, h->items[i]) = 0;
  for (size_t p = h->rhead; p < h->rtail; p++)
    if (RSLOT(h, p)) IDX(h, RSLOT(h, p)) = 0;
  free(h->items);
  free(h->run);
  h->items = h->run = NULL;
  h->len = h->hlen = h->cap = h->rlen = h->rcap = h->rhead = h->rtail = 0;
}

static void set(dt_heap *h, size_t i, void *it) {
  h->items[i] = it;
  IDX(h, it) = i + 1;
}

static void sift_up(dt_heap *h, size_t i) {
  void *it = h->items[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!h->less(it, h->items[p])) break;
    set(h, i, h->items[p]);
    i = p;
  }
  set(h, i, it);
}

static void sift_down(dt_heap *h, size_t i) {
  void *it = h->items[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    void *best = it;
    if (l < h->hlen && h->less(h->items[l], best)) { m = l; best = h->items[l]; }
    if (r < h->hlen && h->less(h->items[r], best)) { m = r; best = h->items[r]; }
    if (m == i) break;
    set(h, i, best);
    i = m;
  }
  set(h, i, it);
}

/* run_trim: no NULL at either end of the run */
static void run_trim(dt_heap *h) {
  while (h->rhead < h->rtail && !RSLOT(h, h->rhead)) h->rhead++;
  while (h->rtail > h->rhead && !RSLOT(h, h->rtail - 1)) h->rtail--;
  if (!h->rlen && h->rcap > 4096) { /* a large graph's run went: its memory too */
    free(h->run);
    h->run = NULL;
    h->rcap = h->rhead = h->rtail = 0;
  }
}

/* run_resize: a ring of ncap slots holding the live items (ncap > rlen),
 * packed from position rhead on */
static void run_resize(dt_heap *h, size_t ncap) {
  void **nr = dt__xcalloc(ncap, sizeof(*nr));
  size_t q = h->rhead;
  for (size_t p = h->rhead; p < h->rtail; p++) {
    void *it = RSLOT(h, p);
    if (!it) continue;
    nr[q & (ncap - 1)] = it;
    IDX(h, it) = RUN | q++;
  }
  free(h->run);
  h->run = nr;
  h->rcap = ncap;
  h->rtail = q;
}

void dt__heap_push(dt_heap *h, void *item) {
  if (IDX(h, item)) return; /* already in */
  h->len++;
  if (h->rtail == h->rhead || !h->less(item, RSLOT(h, h->rtail - 1))) { /* the run goes on */
    if (h->rtail - h->rhead == h->rcap) {
      size_t ncap = h->rcap ? h->rcap : 64;
      while (ncap < 2 * (h->rlen + 1)) ncap *= 2; /* packing frees the removed slots */
      run_resize(h, ncap);
    }
    RSLOT(h, h->rtail) = item;
    IDX(h, item) = RUN | h->rtail++;
    h->rlen++;
    return;
  }
  if (h->hlen == h->cap) {
    h->cap = h->cap ? h->cap * 2 : 64;
    h->items = dt__xrealloc(h->items, h->cap * sizeof(*h->items));
  }
  h->items[h->hlen] = item;
  sift_up(h, h->hlen++);
}

void *dt__heap_peek(const dt_heap *h) {
  void *r = h->rlen ? RSLOT(h, h->rhead) : NULL, *t = h->hlen ? h->items[0] : NULL;
  if (!r) return t;
  return t && h->less(t, r) ? t : r;
}

void dt__heap_remove(dt_heap *h, void *item) {
  size_t i = IDX(h, item);
  if (!i) return;
  IDX(h, item) = 0;
  h->len--;
  if (i & RUN) {
    RSLOT(h, i & ~RUN) = NULL;
    h->rlen--;
    run_trim(h);
    return;
  }
  i--;
  h->hlen--;
  if (i == h->hlen) return;
  h->items[i] = h->items[h->hlen];
  IDX(h, h->items[i]) = i + 1;
  sift_down(h, i);
  sift_up(h, IDX(h, h->items[i]) - 1);
}

void *dt__heap_pop(dt_heap *h) {
  void *top = dt__heap_peek(h);
  if (top) dt__heap_remove(h, top);
  return top;
}

bool dt__heap_contains(const dt_heap *h, const void *item) {
  return *(const size_t *)((const char *)item + h->idx_off) != 0;
}
