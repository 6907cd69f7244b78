/* finbatch_test.c -- the worker's TASKS_FINISHED (link.c): the tasks
 * finished in one loop turn leave in one message, in order, with their
 * sizes, durations and small results; whatever else is written to the
 * scheduler in between (a failure, the events a task logged) closes the
 * message first, so the scheduler hears everything in the order it
 * happened; a message holds at most DT_FINISHED_BATCH records.  The
 * scheduler's connection is a detached one: what the worker writes is read
 * back from its outbox and decoded with the scheduler's checked decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/worker_int.h"

#define MAXM 16
typedef struct {
  int n;
  int op[MAXM];
  dt_msg m[MAXM];
} msgs;

/* every message in c's outbox (closing what is open: dt__conn_out) */
static msgs read_out(dt_conn *c) {
  dt_wbuf *w = dt__conn_out(c);
  msgs out = {0};
  const char *p = w->buf, *end = w->buf + w->len;
  while (p < end) {
    assert_true(out.n < MAXM);
    const char *q = p;
    assert_int_equal(dt__mp_validate(&q, end, DT_MAX_DEPTH), 0);
    dt_rd r = {p, q, NULL, 0};
    uint32_t n;
    uint64_t op;
    assert_int_equal(dt__rd_array(&r, &n), 0);
    assert_int_equal(dt__rd_uint(&r, &op), 0);
    assert_int_equal(dt__msg_read(&r, (int)op, n - 1, &out.m[out.n]), 0);
    out.op[out.n++] = (int)op;
    p = q;
  }
  return out;
}

static dt_conn *sched_conn(void) {
  dt_conn *c = dt__conn_new_detached();
  dt__link.sched = c;
  dt__link.registered = true;
  return c;
}

static void done_conn(dt_conn *c) {
  c->close_open = NULL; /* as the link's on_close does */
  dt__link.sched = NULL;
  dt__link.registered = false;
  dt__conn_free_detached(c);
}

static void finish(const char *key, uint64_t dur_us, const dt_value *v, uint64_t nbytes) {
  w_task t;
  memset(&t, 0, sizeof(t));
  t.key = (char *)key;
  t.klen = (uint32_t)strlen(key);
  t.dur_ns = dur_us * 1000;
  dt__link_finished(&t, v, nbytes);
}

static bool key_is(dt_sv k, const char *want) { return k.len == strlen(want) && memcmp(k.p, want, k.len) == 0; }

static void test_one_message_per_turn(void **st) {
  (void)st;
  dt_conn *c = sched_conn();
  dt_value *small = dt_int(42);
  char big[DT_INLINE_MAX + 100];
  memset(big, 'x', sizeof(big));
  dt_value *large = dt_bytes(big, sizeof(big));
  for (int i = 0; i < 100; i++) {
    char k[32];
    snprintf(k, sizeof(k), "task-%d", i);
    if (i % 10 == 3) finish(k, (uint64_t)i, large, sizeof(big));
    else finish(k, (uint64_t)i, i % 2 ? small : NULL, 8);
  }
  msgs m = read_out(c);
  assert_int_equal(m.n, 1); /* not 100 */
  assert_int_equal(m.op[0], DT_OP_TASKS_FINISHED);
  dt_list l = m.m[0].TASKS_FINISHED.tasks;
  assert_int_equal(l.n, 100);
  dt_rec_fin f;
  int i = 0;
  while (dt__next_fin(&l, &f)) {
    char k[32];
    snprintf(k, sizeof(k), "task-%d", i);
    assert_true(key_is(f.key, k));
    assert_int_equal(f.duration_us, (uint64_t)i);
    if (i % 10 == 3) {
      assert_int_equal(f.nbytes, sizeof(big));
      assert_null(f.inline_.p); /* too large to ride along */
    } else if (i % 2) {
      assert_int_equal(f.nbytes, 8);
      assert_non_null(f.inline_.p); /* the encoded 42 */
      dt_payload pl = {(char *)f.inline_.p, f.inline_.len, NULL, 0};
      dt_value *v = NULL;
      assert_int_equal(dt__payload_decode(&pl, &v), 0);
      assert_int_equal(dt_value_int(v), 42);
      dt_value_free(v);
    } else {
      assert_null(f.inline_.p);
    }
    i++;
  }
  assert_int_equal(i, 100);
  /* the next turn's tasks: a new message */
  finish("later", 1, NULL, 8);
  m = read_out(c);
  assert_int_equal(m.n, 2);
  assert_int_equal(m.op[1], DT_OP_TASKS_FINISHED);
  assert_int_equal(m.m[1].TASKS_FINISHED.tasks.n, 1);
  dt_value_free(small);
  dt_value_free(large);
  done_conn(c);
}

static void test_order_kept(void **st) {
  (void)st;
  dt_conn *c = sched_conn();
  dt__wquery_init();
  finish("a", 1, NULL, 8);
  finish("b", 2, NULL, 8);
  dt__link_erred("c", 1, DT_ETASK, "inc", "boom"); /* after a and b */
  finish("d", 3, NULL, 8);
  assert_int_equal(dt_log_event("topic", dt_int(7)), 0); /* logged by e: before e's finish */
  finish("e", 4, NULL, 8);
  dt__link_missing(&(w_task){.key = (char *)"f", .klen = 1}, "dep", 3, "127.0.0.1:1");
  dt__link_reschedule("g", 1);
  finish("h", 5, NULL, 8);
  msgs m = read_out(c);
  int want[] = {DT_OP_TASKS_FINISHED, DT_OP_TASK_ERRED,  DT_OP_TASKS_FINISHED,     DT_OP_QUERY,
                DT_OP_TASKS_FINISHED, DT_OP_MISSING_DATA, DT_OP_TASK_RESCHEDULE, DT_OP_TASKS_FINISHED};
  assert_int_equal(m.n, 8);
  for (int i = 0; i < 8; i++) assert_int_equal(m.op[i], want[i]);
  const char *keys[] = {"ab", NULL, "d", NULL, "e", NULL, NULL, "h"};
  for (int i = 0; i < 8; i++) {
    if (!keys[i]) continue;
    dt_list l = m.m[i].TASKS_FINISHED.tasks;
    assert_int_equal(l.n, strlen(keys[i]));
    dt_rec_fin f;
    for (size_t j = 0; dt__next_fin(&l, &f); j++) assert_true(f.key.len == 1 && f.key.p[0] == keys[i][j]);
  }
  assert_true(key_is(m.m[1].TASK_ERRED.key, "c"));
  assert_true(key_is(m.m[3].QUERY.name, "log_event"));
  done_conn(c);
}

static void test_bounded(void **st) {
  (void)st;
  dt_conn *c = sched_conn();
  for (uint32_t i = 0; i < DT_FINISHED_BATCH + 5; i++) {
    char k[32];
    snprintf(k, sizeof(k), "k%u", i);
    finish(k, 1, NULL, 8);
  }
  msgs m = read_out(c);
  assert_int_equal(m.n, 2);
  assert_int_equal(m.m[0].TASKS_FINISHED.tasks.n, DT_FINISHED_BATCH);
  assert_int_equal(m.m[1].TASKS_FINISHED.tasks.n, 5);
  /* large keys: a message stops growing past about 1 MiB */
  dt__wbuf_clear(&c->out);
  dt__wbuf_init(&c->out);
  char k[DT_MAX_KEY + 1];
  memset(k, 'k', DT_MAX_KEY);
  k[DT_MAX_KEY] = '\0';
  for (int i = 0; i < 2000; i++) {
    snprintf(k, 16, "%015d", i);
    k[15] = 'k';
    finish(k, 1, NULL, 8);
  }
  m = read_out(c);
  assert_int_equal(m.n, 2); /* 2000 keys of 1 KiB: two messages */
  assert_int_equal(m.m[0].TASKS_FINISHED.tasks.n + m.m[1].TASKS_FINISHED.tasks.n, 2000);
  done_conn(c);
}

static void test_not_registered(void **st) {
  (void)st;
  dt_conn *c = sched_conn();
  dt__link.registered = false;
  finish("a", 1, NULL, 8);
  assert_int_equal(c->out.len, 0);
  assert_null(c->close_open);
  done_conn(c);
}

int main(void) {
  dt__log_init("finbatch_test", "off");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_message_per_turn),
      cmocka_unit_test(test_order_kept),
      cmocka_unit_test(test_bounded),
      cmocka_unit_test(test_not_registered),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
