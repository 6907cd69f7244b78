/* common_test.c -- the hash map, the heap, address parsing, error table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"

/* the Robin Hood order: along a run of entries, each is at most one slot
 * further from its home than the one before; an entry after an empty slot
 * is at home; and the table is at most 80% full */
static void check_robin_hood(const dt_smap *m) {
  if (!m->cap) return;
  size_t mask = m->cap - 1, n = 0;
  for (size_t i = 0; i < m->cap; i++) {
    const dt_map_slot *s = &m->slots[i], *p = &m->slots[(i + mask) & mask];
    if (!s->key) continue;
    n++;
    size_t d = (i - (s->hash & mask)) & mask;
    if (!p->key) assert_int_equal(d, 0);
    else assert_true(d <= ((((i + mask) & mask) - (p->hash & mask)) & mask) + 1);
  }
  assert_int_equal(n, m->len);
  assert_true(m->len * 5 <= m->cap * 4);
}

static void test_smap_against_reference(void **state) {
  (void)state;
  enum { N = 5000 };
  static char keys[N][16];
  static bool present[N];
  dt_smap m;
  dt__smap_init(&m);
  srand(42);
  for (int i = 0; i < N; i++) snprintf(keys[i], sizeof(keys[i]), "k%d", i);
  for (int round = 0; round < 40000; round++) {
    int i = rand() % N;
    if (rand() % 3) {
      void *prev = dt__smap_put(&m, keys[i], strlen(keys[i]), keys[i]);
      assert_ptr_equal(prev, present[i] ? keys[i] : NULL);
      present[i] = true;
    } else {
      void *prev = dt__smap_del(&m, keys[i], strlen(keys[i]));
      assert_ptr_equal(prev, present[i] ? keys[i] : NULL);
      present[i] = false;
    }
    if (round % 997 == 0) check_robin_hood(&m);
  }
  check_robin_hood(&m);
  size_t count = 0;
  for (int i = 0; i < N; i++) {
    void *v = dt__smap_get(&m, keys[i], strlen(keys[i]));
    assert_ptr_equal(v, present[i] ? keys[i] : NULL);
    count += present[i];
  }
  assert_int_equal(m.len, count);
  /* shrinking keeps every entry findable */
  size_t cap = m.cap;
  for (int i = 0; i < N; i++)
    if (present[i] && i % 10) {
      dt__smap_del(&m, keys[i], strlen(keys[i]));
      present[i] = false;
    }
  dt__smap_shrink(&m);
  assert_true(m.cap < cap);
  check_robin_hood(&m);
  for (int i = 0; i < N; i++)
    assert_ptr_equal(dt__smap_get(&m, keys[i], strlen(keys[i])), present[i] ? keys[i] : NULL);
  dt__smap_destroy(&m);
}

typedef struct {
  int prio;
  size_t idx;
} item;
static bool item_less(const void *a, const void *b) {
  return ((const item *)a)->prio < ((const item *)b)->prio;
}

static void test_heap_order_and_remove(void **state) {
  (void)state;
  enum { N = 1000 };
  static item items[N];
  dt_heap h;
  dt__heap_init(&h, item_less, offsetof(item, idx));
  srand(7);
  for (int i = 0; i < N; i++) {
    items[i].prio = rand() % 100000;
    dt__heap_push(&h, &items[i]);
  }
  for (int i = 0; i < N; i += 3) dt__heap_remove(&h, &items[i]);
  for (int i = 0; i < N; i += 3) assert_false(dt__heap_contains(&h, &items[i]));
  int last = -1;
  size_t popped = 0;
  item *it;
  while ((it = dt__heap_pop(&h)) != NULL) {
    assert_true(it->prio >= last);
    last = it->prio;
    popped++;
  }
  assert_int_equal(popped, N - (N + 2) / 3);
  dt__heap_destroy(&h);
}

/* pushes mostly in order (the run) with some out of order (the heap),
 * removals anywhere, pops interleaved: every pop is the least item left */
static void test_heap_run(void **state) {
  (void)state;
  enum { N = 20000 };
  static item items[N];
  static bool in[N];
  dt_heap h;
  dt__heap_init(&h, item_less, offsetof(item, idx));
  srand(11);
  size_t live = 0;
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N; i++) {
      items[i].prio = rand() % 10 ? i : rand() % N; /* 90% in order */
      dt__heap_push(&h, &items[i]);
      in[i] = true;
      live++;
      if (rand() % 4 == 0) { /* remove a random one: run's head, middle, tail or heap */
        int j = rand() % (i + 1);
        if (in[j]) {
          dt__heap_remove(&h, &items[j]);
          assert_false(dt__heap_contains(&h, &items[j]));
          in[j] = false;
          live--;
        }
      }
      if (rand() % 3 == 0) { /* pop: no item left is less than it */
        item *it = dt__heap_pop(&h);
        assert_non_null(it);
        int k = (int)(it - items);
        assert_true(in[k]);
        in[k] = false;
        live--;
        if (rand() % 50 == 0)
          for (int j = 0; j < N; j++) assert_false(in[j] && items[j].prio < it->prio);
      }
      assert_int_equal(h.len, live);
    }
    int last = -1;
    item *it;
    while ((it = dt__heap_pop(&h)) != NULL) {
      assert_true(it->prio >= last);
      assert_true(in[it - items]);
      in[it - items] = false;
      last = it->prio;
      live--;
    }
    assert_int_equal(live, 0);
    assert_int_equal(h.len, 0);
  }
  for (int i = 0; i < N; i += 2) dt__heap_push(&h, &items[i]);
  dt__heap_destroy(&h); /* every item it held is out */
  for (int i = 0; i < N; i++) assert_false(dt__heap_contains(&h, &items[i]));
}

static void test_addr_split(void **state) {
  (void)state;
  char host[64];
  int port;
  assert_int_equal(dt__addr_split("tcp://127.0.0.1:8786", host, sizeof(host), &port), 0);
  assert_string_equal(host, "127.0.0.1");
  assert_int_equal(port, 8786);
  assert_int_equal(dt__addr_split("[::1]:99", host, sizeof(host), &port), 0);
  assert_string_equal(host, "::1");
  assert_int_equal(port, 99);
  assert_int_equal(dt__addr_split("localhost", host, sizeof(host), &port), DT_EINVAL);
  assert_int_equal(dt__addr_split("h:99999", host, sizeof(host), &port), DT_EINVAL);
  assert_int_equal(dt__addr_split("h:12x", host, sizeof(host), &port), DT_EINVAL);
  assert_int_equal(dt__addr_split(":12", host, sizeof(host), &port), DT_EINVAL);
}

static void test_errors_have_names(void **state) {
  (void)state;
#define X(name, val, desc)                                                         \
  assert_string_equal(dt_strerror(val), desc);                                     \
  assert_string_equal(dt_err_name(val), "DT_" #name);
  DT_ERRNO_MAP(X)
#undef X
  assert_string_equal(dt_strerror(12345), "unknown error");
  assert_int_equal(dt__err(DT_EINVAL, "bad %s", "thing"), DT_EINVAL);
  assert_string_equal(dt_last_error(), "bad thing");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_smap_against_reference),
      cmocka_unit_test(test_heap_order_and_remove),
      cmocka_unit_test(test_heap_run),
      cmocka_unit_test(test_addr_split),
      cmocka_unit_test(test_errors_have_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
