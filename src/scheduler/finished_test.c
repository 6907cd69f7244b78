/* finished_test.c -- TASKS_FINISHED through the scheduler's real handlers
 * (dt__srv_on_msg, detached connections, no loop): a worker's finished
 * tasks in one message have exactly the effect of one TASK_FINISHED each
 * (what the client and the worker hear afterwards is compared, message by
 * message, with a run that sends them one by one, fire-and-forget and small
 * results included), and bad messages are refused: a record whose inline
 * result is too large (the records before it count, as the messages before
 * a bad TASK_FINISHED would), an empty or oversized list, a record of the
 * wrong shape, a client sending it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/query.h"
#include "scheduler/server.h"

static dt_conn *C, *W;
static size_t offC, offW;

static int send_buf(dt_conn *c, dt_wbuf *w) {
  const char *p = w->buf, *q = p;
  assert_int_equal(dt__mp_validate(&q, w->buf + w->len, DT_MAX_DEPTH), 0);
  assert_ptr_equal(q, w->buf + w->len); /* one message */
  dt_rd r = {p, q, NULL, 0};
  uint32_t n;
  uint64_t op;
  assert_int_equal(dt__rd_array(&r, &n), 0);
  assert_int_equal(dt__rd_uint(&r, &op), 0);
  int rc = dt__srv_on_msg(c, (int)op, n - 1, &r);
  dt__wbuf_clear(w);
  return rc;
}

static void keys_msg(dt_conn *c, int op, int n, const char *const *keys) {
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, op);
  dt__e_list(&e, (uint32_t)n);
  for (int i = 0; i < n; i++) dt__e_cstr(&e, keys[i]);
  dt__e_end(&e);
  assert_int_equal(send_buf(c, &w), 0);
}

static void task_rec(dt_enc *e, const char *key, int ndeps, const char *const *deps) {
  dt__e_rec(e);
  dt__e_cstr(e, key);
  dt__e_cstr(e, "inc");
  dt_value *spec = dt_list_of(2, dt_list_of(1, dt_int(1)), dt_map_new());
  dt__e_value(e, spec);
  dt_value_free(spec);
  dt__e_list(e, (uint32_t)ndeps);
  for (int i = 0; i < ndeps; i++) dt__e_cstr(e, deps[i]);
  dt__e_int(e, 0);
  dt__e_int(e, 0);
  dt__e_list(e, 0);
  dt__e_bool(e, false);
  dt__e_map(e, 0);
  dt__e_double(e, 0);
}

#define NT 20
static char tkeys[NT][16];

/* the client's graph: t0..t19, d0 on t0 and t1, f0 (fire and forget, then
 * released); small results asked for t0..t4 */
static void setup_graph(void) {
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_UPDATE_GRAPH);
  dt__e_list(&e, NT + 2);
  const char *wanted[NT + 2];
  for (int i = 0; i < NT; i++) {
    snprintf(tkeys[i], sizeof(tkeys[i]), "t%d", i);
    task_rec(&e, tkeys[i], 0, NULL);
    wanted[i] = tkeys[i];
  }
  const char *d0deps[] = {"t0", "t1"};
  task_rec(&e, "d0", 2, d0deps);
  task_rec(&e, "f0", 0, NULL);
  wanted[NT] = "d0";
  wanted[NT + 1] = "f0";
  dt__e_list(&e, NT + 2);
  for (int i = 0; i < NT + 2; i++) dt__e_cstr(&e, wanted[i]);
  dt__e_end(&e);
  assert_int_equal(send_buf(C, &w), 0);
  const char *small[] = {"t0", "t1", "t2", "t3", "t4"};
  keys_msg(C, DT_OP_WANT_RESULT, 5, small);
  const char *f0[] = {"f0"};
  keys_msg(C, DT_OP_FIRE_AND_FORGET, 1, f0);
  keys_msg(C, DT_OP_RELEASE_KEYS, 1, f0);
}

static int setup(void **st) {
  (void)st;
  static bool loop_ready;
  if (!loop_ready) uv_loop_init(&dt__srv.loop);
  loop_ready = true;
  dt__log_init("finished_test", "off");
  dt__sched_init(&dt__srv.s);
  dt__srv.worker_ttl_s = 60;
  dt__srv.heartbeat_ms = 1000;
  C = dt__conn_new_detached();
  W = dt__conn_new_detached();
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_HELLO_CLIENT);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, "client");
  dt__e_end(&e);
  assert_int_equal(send_buf(C, &w), 0);
  dt__wbuf_init(&w);
  dt__e_begin(&e, &w, DT_OP_HELLO_WORKER);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, "w");
  dt__e_cstr(&e, "127.0.0.1:1");
  dt__e_uint(&e, 4);
  dt__e_map(&e, 0);
  dt__e_uint(&e, 4242);
  dt__e_uint(&e, 0);
  dt__e_list(&e, 0);
  dt__e_uint(&e, 0);
  dt__e_end(&e);
  assert_int_equal(send_buf(W, &w), 0);
  offC = offW = 0;
  setup_graph();
  return 0;
}

static int teardown(void **st) {
  (void)st;
  dt__srv_on_conn_close(W);
  dt__srv_on_conn_close(C);
  dt__conn_free_detached(W);
  dt__conn_free_detached(C);
  dt__srv_emit();
  size_t left = dt__srv.s.tasks.len;
  dt__srv_scatters_free_all();
  dt__query_free_all();
  dt__srv_plugins_free();
  dt__sched_destroy(&dt__srv.s);
  return left == 0 ? 0 : -1;
}

/* read_msg: decodes the message at *p (before end) into *m and returns its
 * op; *p moves past it */
static int read_msg(const char **p, const char *end, dt_msg *m) {
  const char *q = *p;
  assert_int_equal(dt__mp_validate(&q, end, DT_MAX_DEPTH), 0);
  dt_rd r = {*p, q, NULL, 0};
  uint32_t n;
  uint64_t op;
  assert_int_equal(dt__rd_array(&r, &n), 0);
  assert_int_equal(dt__rd_uint(&r, &op), 0);
  assert_int_equal(dt__msg_read(&r, (int)op, n - 1, m), 0);
  *p = q;
  return (int)op;
}

/* what c was sent since *off, one line per key (lists of keys expanded) */
static void log_out(dt_conn *c, size_t *off, char *log, size_t cap) {
  const char *p = c->out.buf + *off, *end = c->out.buf + c->out.len;
  size_t used = strlen(log);
  while (p < end) {
    dt_msg m;
    int op = read_msg(&p, end, &m);
    if (op == DT_OP_KEY_IN_MEMORY) {
      used += (size_t)snprintf(log + used, cap - used, "KEY_IN_MEMORY %.*s %llu %d\n", (int)m.KEY_IN_MEMORY.key.len,
                               m.KEY_IN_MEMORY.key.p, (unsigned long long)m.KEY_IN_MEMORY.nbytes,
                               m.KEY_IN_MEMORY.inline_.p ? (int)m.KEY_IN_MEMORY.inline_.len : -1);
    } else if (op == DT_OP_COMPUTE_TASK) {
      used += (size_t)snprintf(log + used, cap - used, "COMPUTE_TASK %.*s\n", (int)m.COMPUTE_TASK.key.len,
                               m.COMPUTE_TASK.key.p);
    } else if (op == DT_OP_FREE_KEYS) {
      dt_list l = m.FREE_KEYS.keys;
      dt_sv k;
      while (dt__next_key(&l, &k)) used += (size_t)snprintf(log + used, cap - used, "FREE_KEYS %.*s\n", (int)k.len, k.p);
    } else {
      used += (size_t)snprintf(log + used, cap - used, "%s\n", dt__op_name(op));
    }
    assert_true(used < cap);
  }
  *off = c->out.len;
}

/* the keys of the COMPUTE_TASKs W was sent since *off */
static int computes(size_t *off, char keys[][16], int max) {
  int k = 0;
  const char *p = W->out.buf + *off, *end = W->out.buf + W->out.len;
  while (p < end) {
    dt_msg m;
    int op = read_msg(&p, end, &m);
    if (op == DT_OP_COMPUTE_TASK) {
      assert_true(k < max && m.COMPUTE_TASK.key.len < 16);
      snprintf(keys[k++], 16, "%.*s", (int)m.COMPUTE_TASK.key.len, m.COMPUTE_TASK.key.p);
    }
  }
  *off = W->out.len;
  return k;
}

static const char result[] = "\x93\x01\x02\x03"; /* an encoded result, small */

/* finish keys[0..n) on W: one TASKS_FINISHED, or one TASK_FINISHED each */
static void finish(char keys[][16], int n, bool batched) {
  dt_wbuf w;
  dt_enc e;
  dt__wbuf_init(&w);
  if (batched) {
    dt__e_begin(&e, &w, DT_OP_TASKS_FINISHED);
    dt__e_list(&e, (uint32_t)n);
  }
  for (int i = 0; i < n; i++) {
    if (batched) dt__e_rec(&e);
    else dt__e_begin(&e, &w, DT_OP_TASK_FINISHED);
    dt__e_cstr(&e, keys[i]);
    dt__e_uint(&e, 100 + (uint64_t)i);
    dt__e_uint(&e, 7);
    if (i % 2) dt__e_bin(&e, result, 4);
    else dt__e_nil(&e);
    if (!batched) {
      dt__e_end(&e);
      assert_int_equal(send_buf(W, &w), 0);
      dt__wbuf_init(&w);
    }
  }
  if (batched) {
    dt__e_end(&e);
    assert_int_equal(send_buf(W, &w), 0);
  }
  dt__wbuf_clear(&w);
}

/* runs the graph to the end; what the client and the worker heard */
static void run(bool batched, char *log, size_t cap) {
  log[0] = '\0';
  size_t offCT = 0;
  for (int round = 0; round < 20; round++) {
    char keys[64][16];
    int n = computes(&offCT, keys, 64);
    if (n == 0) break;
    finish(keys, n, batched);
  }
  for (int i = 0; i < NT; i++) {
    s_task *t = dt__sched_get_task(&dt__srv.s, tkeys[i], (uint32_t)strlen(tkeys[i]));
    assert_non_null(t);
    assert_int_equal(t->state, TS_MEMORY);
  }
  assert_null(dt__sched_get_task(&dt__srv.s, "f0", 2)); /* done: forgotten */
  assert_int_equal(dt__sched_get_task(&dt__srv.s, "d0", 2)->state, TS_MEMORY);
  log_out(C, &offC, log, cap);
  strcat(log, "--- worker\n");
  log_out(W, &offW, log, cap);
}

static char single_log[16384];

static void test_same_as_one_by_one(void **st) {
  (void)st;
  run(false, single_log, sizeof(single_log));
  assert_non_null(strstr(single_log, "KEY_IN_MEMORY t3 101 4\n")); /* a small result rode along */
  assert_non_null(strstr(single_log, "KEY_IN_MEMORY d0 "));
  assert_non_null(strstr(single_log, "FREE_KEYS f0\n"));
}

static void test_batched(void **st) {
  (void)st;
  assert_true(single_log[0]); /* test_same_as_one_by_one ran first */
  char log[16384];
  run(true, log, sizeof(log));
  assert_string_equal(log, single_log);
}

static s_task *task(const char *k) { return dt__sched_get_task(&dt__srv.s, k, (uint32_t)strlen(k)); }

static void test_bad_messages(void **st) {
  (void)st;
  char keys[64][16];
  size_t off = 0;
  int n = computes(&off, keys, 64);
  assert_true(n >= 3);
  dt_wbuf w;
  dt_enc e;
  /* a record's inline result over DT_INLINE_MAX: refused; the one before counts */
  static char big[DT_INLINE_MAX + 1];
  dt__wbuf_init(&w);
  dt__e_begin(&e, &w, DT_OP_TASKS_FINISHED);
  dt__e_list(&e, 3);
  for (int i = 0; i < 3; i++) {
    dt__e_rec(&e);
    dt__e_cstr(&e, keys[i]);
    dt__e_uint(&e, 8);
    dt__e_uint(&e, 1);
    if (i == 1) dt__e_bin(&e, big, sizeof(big));
    else dt__e_nil(&e);
  }
  dt__e_end(&e);
  assert_int_equal(send_buf(W, &w), DT_EPROTO);
  assert_int_equal(task(keys[0])->state, TS_MEMORY);
  assert_int_equal(task(keys[1])->state, TS_PROCESSING);
  assert_int_equal(task(keys[2])->state, TS_PROCESSING);
  /* an empty list */
  dt__wbuf_init(&w);
  dt__e_begin(&e, &w, DT_OP_TASKS_FINISHED);
  dt__e_list(&e, 0);
  dt__e_end(&e);
  assert_int_equal(send_buf(W, &w), DT_EPROTO);
  /* more than DT_FINISHED_MAX records: refused before any counts */
  dt__wbuf_init(&w);
  dt__e_begin(&e, &w, DT_OP_TASKS_FINISHED);
  dt__e_list(&e, DT_FINISHED_MAX + 1);
  for (uint32_t i = 0; i <= DT_FINISHED_MAX; i++) {
    dt__e_rec(&e);
    dt__e_cstr(&e, keys[1]);
    dt__e_uint(&e, 8);
    dt__e_uint(&e, 1);
    dt__e_nil(&e);
  }
  dt__e_end(&e);
  assert_int_equal(send_buf(W, &w), DT_EPROTO);
  assert_int_equal(task(keys[1])->state, TS_PROCESSING);
  /* a record of 3 fields (written by hand: the encoder would refuse it) */
  dt__wbuf_init(&w);
  dt__wb_msg(&w, DT_OP_TASKS_FINISHED, 1);
  dt__wb_array(&w, 1);
  dt__wb_array(&w, 3);
  dt__wb_cstr(&w, keys[1]);
  dt__wb_uint(&w, 8);
  dt__wb_uint(&w, 1);
  assert_int_equal(send_buf(W, &w), DT_EPROTO);
  /* an empty key */
  dt__wbuf_init(&w);
  dt__wb_msg(&w, DT_OP_TASKS_FINISHED, 1);
  dt__wb_array(&w, 1);
  dt__wb_array(&w, 4);
  dt__wb_cstr(&w, "");
  dt__wb_uint(&w, 8);
  dt__wb_uint(&w, 1);
  dt__wb_nil(&w);
  assert_int_equal(send_buf(W, &w), DT_EPROTO);
  /* from a client */
  dt__wbuf_init(&w);
  dt__e_begin(&e, &w, DT_OP_TASKS_FINISHED);
  dt__e_list(&e, 1);
  dt__e_rec(&e);
  dt__e_cstr(&e, keys[1]);
  dt__e_uint(&e, 8);
  dt__e_uint(&e, 1);
  dt__e_nil(&e);
  dt__e_end(&e);
  assert_int_equal(send_buf(C, &w), DT_EPROTO);
  assert_int_equal(task(keys[1])->state, TS_PROCESSING);
  /* and a good one still counts */
  dt__wbuf_init(&w);
  dt__e_begin(&e, &w, DT_OP_TASKS_FINISHED);
  dt__e_list(&e, 2);
  for (int i = 1; i < 3; i++) {
    dt__e_rec(&e);
    dt__e_cstr(&e, keys[i]);
    dt__e_uint(&e, 8);
    dt__e_uint(&e, 1);
    dt__e_nil(&e);
  }
  dt__e_end(&e);
  assert_int_equal(send_buf(W, &w), 0);
  assert_int_equal(task(keys[1])->state, TS_MEMORY);
  assert_int_equal(task(keys[2])->state, TS_MEMORY);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_same_as_one_by_one, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batched, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_messages, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
