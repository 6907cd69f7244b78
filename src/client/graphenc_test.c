/* graphenc_test.c -- UPDATE_GRAPH's task records written with the raw
 * writers (dt__taskdef_write, submit.c: every task of a message but the
 * first, and the wanted keys but the first) are the bytes the checked encoder writes (dt__taskdef_enc), for
 * tasks with and without dependencies, options, workers, resources and a
 * timeout; and the message they make reads back with the scheduler's
 * checked decoder, every field as defined. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/client.h"

enum { N = 4 };

static void make_defs(dt__taskdef *d) {
  static const char *ws[] = {"tcp://127.0.0.1:1", "w2"};
  dt_submit_opts o[N] = {
      {.pure = DT_NO},
      {.pure = DT_NO, .priority = -7, .retries = 3, .timeout = 2.5},
      {.pure = DT_NO, .workers = ws, .n_workers = 2, .allow_other_workers = true,
       .resources = "GPU=2,MEM=1e9", .priority = 1 << 30},
      {.pure = DT_NO, .retries = 1000},
  };
  for (int i = 0; i < N; i++) {
    assert_int_equal(dt__taskdef_make(NULL, i == 2 ? "other.func" : "inc",
                                      dt_list_of(2, dt_int(i), dt_str("x")), NULL, &o[i], &d[i]),
                     0);
    for (int k = 0; k < i; k++) /* dependencies: the tasks before */
      dt__vec_push(&d[i].deps, dt__xstrdup(d[k].key));
  }
}

/* UPDATE_GRAPH of d[0..n) (all wanted) into w: raw writers after the first
 * task when raw */
static void encode(dt_wbuf *w, dt__taskdef *d, int n, bool raw) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_UPDATE_GRAPH);
  dt__e_list(&e, (uint32_t)n);
  for (int i = 0; i < n; i++) {
    if (i == 0 || !raw) dt__taskdef_enc(&e, &d[i]);
    else dt__taskdef_write(e.w, &d[i]);
  }
  if (raw && n > 1) dt__e_elems_raw(&e, (uint32_t)(n - 1));
  dt__e_list(&e, (uint32_t)n); /* the wanted keys, as dt__client_send_graph */
  for (int i = 0; i < n; i++) {
    if (i == 0 || !raw) dt__e_cstr(&e, d[i].key);
    else dt__wb_cstr(e.w, d[i].key);
  }
  if (raw && n > 1) dt__e_elems_raw(&e, (uint32_t)(n - 1));
  dt__e_end(&e);
}

static void test_same_bytes(void **st) {
  (void)st;
  dt__taskdef d[N];
  make_defs(d);
  for (int n = 0; n <= N; n++) {
    dt_wbuf a, b;
    dt__wbuf_init(&a);
    dt__wbuf_init(&b);
    encode(&a, d, n, false);
    encode(&b, d, n, true);
    assert_true(a.len > 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.buf, b.buf, a.len);
    if (n == N) { /* and it reads back, every field as written */
      const char *q = b.buf;
      assert_int_equal(dt__mp_validate(&q, b.buf + b.len, DT_MAX_DEPTH), 0);
      dt_rd r = {b.buf, q, NULL, 0};
      uint32_t na;
      uint64_t op;
      assert_int_equal(dt__rd_array(&r, &na), 0);
      assert_int_equal(dt__rd_uint(&r, &op), 0);
      assert_int_equal((int)op, DT_OP_UPDATE_GRAPH);
      dt_msg m;
      assert_int_equal(dt__msg_read(&r, (int)op, na - 1, &m), 0);
      assert_int_equal(m.UPDATE_GRAPH.tasks.n, N);
      dt_list tl = m.UPDATE_GRAPH.tasks;
      dt_rec_task rt;
      for (int i = 0; i < N; i++) {
        assert_true(dt__next_task(&tl, &rt));
        assert_int_equal(rt.key.len, strlen(d[i].key));
        assert_memory_equal(rt.key.p, d[i].key, rt.key.len);
        assert_int_equal(rt.func.len, strlen(d[i].func));
        assert_int_equal(rt.spec.len, d[i].spec.len);
        assert_memory_equal(rt.spec.body, d[i].spec.body, rt.spec.len);
        assert_int_equal(rt.deps.n, (uint32_t)i);
        assert_int_equal(rt.priority, d[i].opts.priority);
        assert_int_equal(rt.retries, d[i].opts.retries);
        assert_int_equal(rt.workers.n, d[i].opts.n_workers);
        assert_int_equal(rt.allow_other, d[i].opts.allow_other_workers);
        assert_int_equal(rt.resources.n, d[i].nres);
        assert_true(rt.timeout == (d[i].opts.timeout > 0 ? d[i].opts.timeout : 0));
      }
      assert_false(dt__next_task(&tl, &rt));
      assert_int_equal(m.UPDATE_GRAPH.wanted.n, N);
      dt_list wl = m.UPDATE_GRAPH.wanted;
      dt_sv k;
      for (int i = 0; i < N; i++) {
        assert_true(dt__next_key(&wl, &k));
        assert_int_equal(k.len, strlen(d[i].key));
        assert_memory_equal(k.p, d[i].key, k.len);
      }
    }
    dt__wbuf_clear(&a);
    dt__wbuf_clear(&b);
  }
  assert_int_equal(d[2].nres, 2);
  for (int i = 0; i < N; i++) dt__taskdef_clear(&d[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_same_bytes)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
