/* coord_state_test.c -- the scheduler's coordination primitives driven through
 * its real handlers, without a loop: two clients on detached connections
 * send COORD messages and their COORD_REPLYs are read back from the
 * connections' write buffers.  Timeouts are driven by calling the expiry
 * with a chosen clock, so exactly when a waiter times out is checked, and
 * that a timed-out waiter takes nothing afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/coord.h"

static dt_conn *A, *B;
static size_t offA, offB;

static void send_msg(dt_conn *c, dt_wbuf *w) {
  const char *p = w->buf, *q = p;
  assert_int_equal(dt__mp_validate(&q, w->buf + w->len, DT_MAX_DEPTH), 0);
  dt_rd r = {p, q, NULL, 0};
  uint32_t n;
  uint64_t op;
  assert_int_equal(dt__rd_array(&r, &n), 0);
  assert_int_equal(dt__rd_uint(&r, &op), 0);
  assert_int_equal(dt__srv_on_msg(c, (int)op, n - 1, &r), 0);
}

static dt_conn *hello(const char *name) {
  dt_conn *c = dt__conn_new_detached();
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_HELLO_CLIENT);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, name);
  dt__e_end(&e);
  send_msg(c, &w);
  dt__wbuf_clear(&w);
  return c;
}

/* coord: one COORD from c; value an int (or none when < 0) */
static void coord(dt_conn *c, uint64_t req, int op, const char *name, int64_t value, int64_t timeout_ms,
                  int64_t arg) {
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_COORD);
  dt__e_uint(&e, req);
  dt__e_uint(&e, (uint64_t)op);
  dt__e_list(&e, 1);
  dt__e_cstr(&e, name);
  dt_payload pl = {0};
  if (value >= 0) {
    dt_value *v = dt_int(value);
    assert_int_equal(dt__payload_encode(v, &pl, NULL), 0);
    dt_value_free(v);
  }
  dt__e_payload(&e, &pl);
  dt__e_list(&e, 0);
  dt__e_int(&e, timeout_ms);
  dt__e_int(&e, arg);
  dt__e_end(&e);
  send_msg(c, &w);
  dt__payload_clear(&pl);
  dt__wbuf_clear(&w);
}

typedef struct {
  bool got;
  uint64_t req;
  int64_t code, count, value;
} reply;

/* next_reply: the next COORD_REPLY written to c since *off */
static reply next_reply(dt_conn *c, size_t *off) {
  reply out = {0};
  dt_wbuf *w = &c->out;
  while (*off < w->len) {
    const char *p = w->buf + *off, *q = p;
    assert_int_equal(dt__mp_validate(&q, w->buf + w->len, DT_MAX_DEPTH), 0);
    *off = (size_t)(q - w->buf);
    dt_rd r = {p, q, NULL, 0};
    uint32_t n;
    uint64_t op;
    assert_int_equal(dt__rd_array(&r, &n), 0);
    assert_int_equal(dt__rd_uint(&r, &op), 0);
    if (op != DT_OP_COORD_REPLY) continue;
    dt_msg m;
    assert_int_equal(dt__msg_read(&r, (int)op, n - 1, &m), 0);
    out.got = true;
    out.req = m.COORD_REPLY.req;
    out.code = m.COORD_REPLY.code;
    out.count = m.COORD_REPLY.count;
    out.value = -1;
    if (m.COORD_REPLY.value.len) {
      dt_value *v;
      assert_int_equal(dt__pref_decode(&m.COORD_REPLY.value, &v), 0);
      out.value = dt_value_int(v);
      dt_value_free(v);
    }
    return out;
  }
  return out;
}

static void expect(dt_conn *c, size_t *off, uint64_t req, int code, int64_t count) {
  reply r = next_reply(c, off);
  assert_true(r.got);
  assert_int_equal(r.req, req);
  assert_int_equal(r.code, code);
  if (code == 0) assert_int_equal(r.count, count);
}

static void expect_none(dt_conn *c, size_t *off) { assert_false(next_reply(c, off).got); }

static int setup(void **st) {
  (void)st;
  static bool loop_ready;
  if (!loop_ready) uv_loop_init(&dt__srv.loop);
  loop_ready = true;
  dt__log_init("coord_test", "off");
  dt__sched_init(&dt__srv.s);
  A = hello("a");
  B = hello("b");
  offA = offB = 0;
  return 0;
}

static int teardown(void **st) {
  (void)st;
  dt__srv_on_conn_close(A);
  dt__srv_on_conn_close(B);
  dt__conn_free_detached(A);
  dt__conn_free_detached(B);
  int left = (int)dt__coord_client_state();
  dt__coord_free_all();
  dt__srv_emit();
  dt__sched_destroy(&dt__srv.s);
  return left == 0 ? 0 : -1;
}

static void test_lock_timeout_is_exact_and_takes_nothing(void **st) {
  (void)st;
  uint64_t now = dt__coord_now();
  coord(A, 1, DT_COORD_LOCK_ACQUIRE, "L", -1, -1, 0);
  expect(A, &offA, 1, 0, 1);
  coord(B, 2, DT_COORD_LOCK_ACQUIRE, "L", -1, 1000, 0);
  expect_none(B, &offB); /* waiting */
  dt__coord_expire(now + 999);
  expect_none(B, &offB);
  dt__coord_expire(now + 1000);
  expect(B, &offB, 2, DT_ETIMEDOUT, 0);
  /* the timed-out waiter does not get the lock when it is released */
  coord(A, 3, DT_COORD_LOCK_RELEASE, "L", -1, 0, 0);
  expect(A, &offA, 3, 0, 1);
  coord(A, 4, DT_COORD_LOCK_LOCKED, "L", -1, 0, 0);
  expect(A, &offA, 4, 0, 0);
  /* releasing what it does not hold */
  coord(B, 5, DT_COORD_LOCK_RELEASE, "L", -1, 0, 0);
  expect(B, &offB, 5, DT_EINVAL, 0);
}

static void test_lock_passes_in_order_and_when_holder_leaves(void **st) {
  (void)st;
  coord(A, 1, DT_COORD_LOCK_ACQUIRE, "L", -1, -1, 0);
  expect(A, &offA, 1, 0, 1);
  coord(B, 2, DT_COORD_LOCK_ACQUIRE, "L", -1, -1, 0);
  expect_none(B, &offB);
  dt_conn *C = hello("c");
  size_t offC = 0;
  coord(C, 3, DT_COORD_LOCK_ACQUIRE, "L", -1, -1, 0);
  /* A leaves holding it: B (first in line) gets it */
  dt__srv_on_conn_close(A);
  expect(B, &offB, 2, 0, 1);
  expect_none(C, &offC);
  coord(B, 4, DT_COORD_LOCK_RELEASE, "L", -1, 0, 0);
  expect(B, &offB, 4, 0, 1);
  expect(C, &offC, 3, 0, 1);
  dt__srv_on_conn_close(C);
  dt__conn_free_detached(C);
  assert_int_equal(dt__coord_client_state(), 0);
  dt__conn_free_detached(A);
  A = hello("a2"); /* for the teardown */
  offA = 0;
}

static void test_queue_waiters_and_bounds(void **st) {
  (void)st;
  uint64_t now = dt__coord_now();
  coord(B, 1, DT_COORD_QUEUE_GET, "Q", -1, 100, 0);
  expect_none(B, &offB);
  dt__coord_expire(now + 100);
  expect(B, &offB, 1, DT_ETIMEDOUT, 0);
  coord(A, 2, DT_COORD_QUEUE_PUT, "Q", 7, 0, 2);
  expect(A, &offA, 2, 0, 1);
  coord(A, 3, DT_COORD_QUEUE_SIZE, "Q", -1, 0, 0);
  expect(A, &offA, 3, 0, 1); /* the timed-out get took nothing */
  coord(A, 4, DT_COORD_QUEUE_PUT, "Q", 8, 0, 2);
  expect(A, &offA, 4, 0, 1);
  coord(A, 5, DT_COORD_QUEUE_PUT, "Q", 9, -1, 2); /* full (maxsize 2): waits */
  expect_none(A, &offA);
  coord(B, 6, DT_COORD_QUEUE_GET, "Q", -1, 0, 0);
  reply r = next_reply(B, &offB);
  assert_true(r.got);
  assert_int_equal(r.value, 7);
  expect(A, &offA, 5, 0, 1); /* room: the waiting put went in */
  coord(B, 7, DT_COORD_QUEUE_GET, "Q", -1, 0, 0);
  assert_int_equal(next_reply(B, &offB).value, 8);
  coord(B, 8, DT_COORD_QUEUE_GET, "Q", -1, 0, 0);
  assert_int_equal(next_reply(B, &offB).value, 9);
  /* a getter waiting gets the next put */
  coord(B, 9, DT_COORD_QUEUE_GET, "Q", -1, -1, 0);
  expect_none(B, &offB);
  coord(A, 10, DT_COORD_QUEUE_PUT, "Q", 10, 0, 0);
  r = next_reply(B, &offB);
  assert_int_equal(r.req, 9);
  assert_int_equal(r.value, 10);
  expect(A, &offA, 10, 0, 1);
}

static void test_errors(void **st) {
  (void)st;
  coord(A, 1, DT_COORD_LOCK_ACQUIRE, "X", -1, 0, 0);
  expect(A, &offA, 1, 0, 1);
  coord(B, 2, DT_COORD_QUEUE_PUT, "X", 1, 0, 0); /* a lock's name */
  expect(B, &offB, 2, DT_ETYPE, 0);
  coord(B, 3, DT_COORD_VAR_SET, "X", -1, 0, 0); /* no value */
  expect(B, &offB, 3, DT_EINVAL, 0);
  coord(B, 4, 999, "X", -1, 0, 0); /* unknown request */
  expect(B, &offB, 4, DT_EINVAL, 0);
  coord(B, 5, DT_COORD_DS_GET, "nope", -1, 0, 0);
  expect(B, &offB, 5, DT_ENOTFOUND, 0);
  coord(B, 6, DT_COORD_SEM_ACQUIRE, "S", -1, 0, 0); /* max_leases 0 */
  expect(B, &offB, 6, DT_EINVAL, 0);
  coord(B, 7, DT_COORD_SEM_ACQUIRE, "S", -1, 0, 1);
  expect(B, &offB, 7, 0, 1);
  coord(A, 8, DT_COORD_SEM_ACQUIRE, "S", -1, 0, 2); /* inconsistent */
  expect(A, &offA, 8, DT_EINVAL, 0);
  coord(A, 9, DT_COORD_SEM_ACQUIRE, "S", -1, 0, 1); /* exhausted, no wait */
  expect(A, &offA, 9, DT_ETIMEDOUT, 0);
}

static void test_variable_event_and_datasets_outlive_clients(void **st) {
  (void)st;
  coord(B, 1, DT_COORD_VAR_GET, "V", -1, -1, 0);
  expect_none(B, &offB);
  coord(A, 2, DT_COORD_VAR_SET, "V", 5, 0, 0);
  expect(A, &offA, 2, 0, 1);
  reply r = next_reply(B, &offB);
  assert_int_equal(r.req, 1);
  assert_int_equal(r.value, 5);
  coord(B, 3, DT_COORD_EVENT_WAIT, "E", -1, -1, 0);
  coord(A, 4, DT_COORD_EVENT_SET, "E", -1, 0, 0);
  expect(A, &offA, 4, 0, 1);
  expect(B, &offB, 3, 0, 1);
  coord(A, 5, DT_COORD_DS_PUBLISH, "D", 3, 0, 0);
  expect(A, &offA, 5, 0, 1);
  coord(A, 6, DT_COORD_DS_PUBLISH, "D", 4, 0, 0);
  expect(A, &offA, 6, DT_EINVAL, 0);
  dt__srv_on_conn_close(A);
  coord(B, 7, DT_COORD_DS_GET, "D", -1, 0, 0);
  assert_int_equal(next_reply(B, &offB).value, 3);
  coord(B, 8, DT_COORD_VAR_GET, "V", -1, 0, 0);
  assert_int_equal(next_reply(B, &offB).value, 5);
  coord(B, 9, DT_COORD_EVENT_IS_SET, "E", -1, 0, 0);
  expect(B, &offB, 9, 0, 1);
  dt__conn_free_detached(A);
  A = hello("a2");
  offA = 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_lock_timeout_is_exact_and_takes_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lock_passes_in_order_and_when_holder_leaves, setup, teardown),
      cmocka_unit_test_setup_teardown(test_queue_waiters_and_bounds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_variable_event_and_datasets_outlive_clients, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
