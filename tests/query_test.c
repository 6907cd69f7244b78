/* query_test.c -- the client's questions to the scheduler (QUERY / ANSWER,
 * src/scheduler/query.c) on a real LocalCluster of two workers: who_has,
 * has_what, nbytes, processing, story, events (also logged by a task),
 * metadata, the task stream, worker and scheduler logs, replicate,
 * rebalance, and clear errors for bad questions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

DT_TASK(q_inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

DT_TASK(q_sleepy) { /* q_sleepy(ms) */
  int64_t ms;
  if (dt_task_arg_int(task, 0, &ms)) return NULL;
  usleep((useconds_t)ms * 1000);
  return dt_int(ms);
}

DT_TASK(q_logit) { /* logs an event, then returns 1 */
  const char *s;
  if (dt_task_arg_str(task, 0, &s)) return NULL;
  if (dt_log_event("q-topic", dt_str(s)) != 0) return dt_task_fail(task, "%s", dt_last_error());
  return dt_int(1);
}

static dt_local_cluster *lc;
static dt_client *client;
static char wname[2][128], waddr[2][128];

static int group_setup(void **state) {
  (void)state;
  dt_local_cluster_opts o = {.n_workers = 2, .threads_per_worker = 2, .log_level = "info"};
  if (tu_local_start(o, (dt_client_opts){0}, &lc, &client) != 0) return -1;
  if (dt_client_wait_for_workers(client, 2, 30000) != 0) {
    fprintf(stderr, "client: %s\n", dt_last_error());
    return -1;
  }
  dt_worker_info *wi;
  size_t n;
  if (dt_client_workers(client, 10000, &wi, &n) != 0 || n != 2) return -1;
  for (int i = 0; i < 2; i++) {
    snprintf(wname[i], sizeof(wname[i]), "%s", wi[i].name);
    snprintf(waddr[i], sizeof(waddr[i]), "%s", wi[i].address);
  }
  free(wi);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  tu_local_stop(&lc, &client);
  return 0;
}

/* submit func(x) on worker w (-1: any), wait for it */
static dt_future *run_on(const char *func, dt_value *arg, int w, const char *key) {
  const char *ws[1] = {w >= 0 ? wname[w] : NULL};
  dt_submit_opts o = {.key = key, .workers = w >= 0 ? ws : NULL, .n_workers = w >= 0 ? 1 : 0};
  dt_future *f = NULL;
  assert_int_equal(dt_client_submit(client, func, dt_list_of(1, arg), NULL, &o, &f), 0);
  dt_value *v = NULL;
  assert_int_equal(dt_future_result(f, 30000, &v), 0);
  dt_value_free(v);
  return f;
}

static dt_value *query(const char *name, dt_value *args /* consumed */) {
  dt_value *out = NULL;
  int rc = dt_client_query(client, name, args, 10000, &out);
  if (rc) fprintf(stderr, "%s: %s\n", name, dt_last_error());
  assert_int_equal(rc, 0);
  dt_value_free(args);
  return out;
}

static dt_value *args1(const char *k, dt_value *v) {
  dt_value *a = dt_map_new();
  dt_map_set(a, k, v);
  return a;
}

static bool list_has_str(const dt_value *l, const char *s) {
  for (size_t i = 0; i < dt_list_len(l); i++)
    if (dt_value_type(dt_list_get(l, i)) == DT_STR && strcmp(dt_value_str(dt_list_get(l, i), NULL), s) == 0)
      return true;
  return false;
}

static void test_who_has_has_what_nbytes(void **state) {
  (void)state;
  dt_future *f = run_on("q_inc", dt_int(41), 1, "q-who-1");
  const char *k = "q-who-1";
  dt_value *wh = NULL;
  assert_int_equal(dt_client_who_has(client, &k, 1, 10000, &wh), 0);
  const dt_value *l = dt_map_get(wh, k);
  assert_non_null(l);
  assert_int_equal(dt_list_len(l), 1);
  assert_string_equal(dt_value_str(dt_list_get(l, 0), NULL), waddr[1]);
  dt_value_free(wh);
  dt_value *hw = NULL;
  assert_int_equal(dt_client_has_what(client, NULL, 0, 10000, &hw), 0);
  assert_int_equal(dt_map_len(hw), 2);
  assert_true(list_has_str(dt_map_get(hw, waddr[1]), k));
  assert_false(list_has_str(dt_map_get(hw, waddr[0]), k));
  dt_value_free(hw);
  dt_value *nb = query("nbytes", args1("keys", dt_list_of(1, dt_str(k))));
  assert_true(dt_value_int(dt_map_get(nb, k)) > 0);
  dt_value_free(nb);
  dt_value *nc = query("ncores", NULL);
  assert_int_equal(dt_value_int(dt_map_get(nc, waddr[0])), 2);
  dt_value_free(nc);
  dt_future_release(f);
}

static void test_processing(void **state) {
  (void)state;
  const char *ws[1] = {wname[0]};
  dt_submit_opts o = {.key = "q-slow", .workers = ws, .n_workers = 1};
  dt_future *f;
  assert_int_equal(dt_client_submit(client, "q_sleepy", dt_list_of(1, dt_int(1500)), NULL, &o, &f), 0);
  bool seen = false;
  for (int i = 0; i < 100 && !seen; i++) {
    dt_value *p = query("processing", NULL);
    seen = list_has_str(dt_map_get(p, waddr[0]), "q-slow");
    assert_false(list_has_str(dt_map_get(p, waddr[1]), "q-slow"));
    dt_value_free(p);
    if (!seen) usleep(20000);
  }
  assert_true(seen);
  dt_value *v;
  assert_int_equal(dt_future_result(f, 30000, &v), 0);
  dt_value_free(v);
  dt_future_release(f);
}

static void test_story(void **state) {
  (void)state;
  dt_future *f = run_on("q_inc", dt_int(1), -1, "q-story");
  const char *k = "q-story";
  dt_value *st = NULL;
  assert_int_equal(dt_client_story(client, &k, 1, 10000, &st), 0);
  /* released -> waiting -> (queued ->) processing -> memory, in that order */
  const char *want[] = {"waiting", "processing", "memory"};
  size_t w = 0;
  double last_t = 0;
  for (size_t i = 0; i < dt_list_len(st); i++) {
    const dt_value *row = dt_list_get(st, i);
    assert_int_equal(dt_list_len(row), 5);
    assert_string_equal(dt_value_str(dt_list_get(row, 0), NULL), k);
    double t = dt_value_double(dt_list_get(row, 4));
    assert_true(t >= last_t);
    last_t = t;
    if (w < 3 && strcmp(dt_value_str(dt_list_get(row, 2), NULL), want[w]) == 0) w++;
  }
  assert_int_equal(w, 3);
  dt_value_free(st);
  dt_future_release(f);
}

static void test_events(void **state) {
  (void)state;
  dt_future *f = run_on("q_logit", dt_str("hello from a task"), -1, "q-logit");
  /* the event arrives before the task's result */
  dt_value *ev = NULL;
  assert_int_equal(dt_client_get_events(client, "q-topic", 10000, &ev), 0);
  assert_int_equal(dt_list_len(ev), 1);
  const dt_value *row = dt_list_get(ev, 0);
  assert_true(dt_value_double(dt_list_get(row, 0)) > 1e9);
  assert_string_equal(dt_value_str(dt_list_get(row, 1), NULL), "hello from a task");
  dt_value_free(ev);
  assert_int_equal(dt_client_log_event(client, "q-topic", dt_int(7)), 0);
  assert_int_equal(dt_client_get_events(client, NULL, 10000, &ev), 0);
  const dt_value *l = dt_map_get(ev, "q-topic");
  assert_int_equal(dt_list_len(l), 2);
  assert_int_equal(dt_value_int(dt_list_get(dt_list_get(l, 1), 1)), 7);
  dt_value_free(ev);
  /* outside a worker, dt_log_event says so */
  assert_int_equal(dt_log_event("t", dt_int(1)), DT_EINVAL);
  dt_future_release(f);
}

static void test_metadata(void **state) {
  (void)state;
  dt_value *a = dt_map_new();
  dt_map_set(a, "keys", dt_list_of(3, dt_str("a"), dt_str("b"), dt_str("c")));
  dt_map_set(a, "value", dt_list_of(2, dt_int(1), dt_str("x")));
  dt_value_free(query("set_metadata", a));
  dt_value *v = query("get_metadata", args1("keys", dt_list_of(3, dt_str("a"), dt_str("b"), dt_str("c"))));
  assert_int_equal(dt_list_len(v), 2);
  assert_string_equal(dt_value_str(dt_list_get(v, 1), NULL), "x");
  dt_value_free(v);
  v = query("get_metadata", args1("keys", dt_list_of(2, dt_str("a"), dt_str("b"))));
  assert_int_equal(dt_value_type(v), DT_MAP);
  assert_non_null(dt_map_get(v, "c"));
  dt_value_free(v);
  dt_value *out = NULL;
  a = args1("keys", dt_list_of(2, dt_str("a"), dt_str("zz")));
  assert_int_equal(dt_client_query(client, "get_metadata", a, 10000, &out), DT_ENOTFOUND);
  assert_non_null(strstr(dt_last_error(), "zz"));
  dt_map_set(a, "default", dt_int(5));
  dt_map_set(a, "has_default", dt_bool(true));
  assert_int_equal(dt_client_query(client, "get_metadata", a, 10000, &out), 0);
  assert_int_equal(dt_value_int(out), 5);
  dt_value_free(out);
  dt_value_free(a);
}

static void test_task_stream(void **state) {
  (void)state;
  dt_future *f[3];
  char key[3][32];
  for (int i = 0; i < 3; i++) {
    snprintf(key[i], sizeof(key[i]), "q-ts-%d", i);
    f[i] = run_on("q_inc", dt_int(i), -1, key[i]);
  }
  dt_value *ts = query("task_stream", args1("count", dt_int(100)));
  int found = 0;
  for (size_t i = 0; i < dt_list_len(ts); i++) {
    const dt_value *r = dt_list_get(ts, i);
    const char *k = dt_value_str(dt_map_get(r, "key"), NULL);
    for (int j = 0; j < 3; j++)
      if (strcmp(k, key[j]) == 0) {
        found++;
        const dt_value *ss = dt_list_get(dt_map_get(r, "startstops"), 0);
        assert_string_equal(dt_value_str(dt_map_get(ss, "action"), NULL), "compute");
        assert_true(dt_value_double(dt_map_get(ss, "start")) <= dt_value_double(dt_map_get(ss, "stop")));
        const char *w = dt_value_str(dt_map_get(r, "worker"), NULL);
        assert_true(strcmp(w, waddr[0]) == 0 || strcmp(w, waddr[1]) == 0);
        assert_string_equal(dt_value_str(dt_map_get(r, "status"), NULL), "OK");
      }
  }
  assert_int_equal(found, 3);
  dt_value_free(ts);
  ts = query("task_stream", args1("count", dt_int(1)));
  assert_int_equal(dt_list_len(ts), 1);
  dt_value_free(ts);
  for (int i = 0; i < 3; i++) dt_future_release(f[i]);
}

static void test_logs(void **state) {
  (void)state;
  dt_value *wl = query("worker_logs", args1("n", dt_int(200)));
  assert_int_equal(dt_map_len(wl), 2);
  for (int i = 0; i < 2; i++) {
    const dt_value *l = dt_map_get(wl, waddr[i]);
    assert_true(dt_list_len(l) > 0);
    bool worker_line = false;
    for (size_t k = 0; k < dt_list_len(l); k++) {
      const char *line = dt_value_str(dt_list_get(dt_list_get(l, k), 1), NULL);
      if (strstr(line, "worker")) worker_line = true;
    }
    assert_true(worker_line);
  }
  dt_value_free(wl);
  dt_value *sl = query("logs", args1("n", dt_int(5)));
  assert_true(dt_list_len(sl) > 0 && dt_list_len(sl) <= 5);
  assert_non_null(strstr(dt_value_str(dt_list_get(dt_list_get(sl, 0), 1), NULL), "scheduler"));
  dt_value_free(sl);
}

static size_t holders(const char *k) {
  dt_value *wh = NULL;
  assert_int_equal(dt_client_who_has(client, &k, 1, 10000, &wh), 0);
  size_t n = dt_list_len(dt_map_get(wh, k));
  dt_value_free(wh);
  return n;
}

static void test_replicate(void **state) {
  (void)state;
  dt_future *f = run_on("q_inc", dt_int(100), 0, "q-rep");
  assert_int_equal(holders("q-rep"), 1);
  dt_value *a = args1("keys", dt_list_of(1, dt_str("q-rep")));
  dt_map_set(a, "n", dt_int(2));
  dt_value *r = query("replicate", a);
  assert_int_equal(dt_value_int(r), 1);
  dt_value_free(r);
  size_t n = 0;
  for (int i = 0; i < 200 && (n = holders("q-rep")) < 2; i++) usleep(20000);
  assert_int_equal(n, 2);
  dt_future_release(f);
}

static void test_rebalance(void **state) {
  (void)state;
  dt_future *f[8];
  for (int i = 0; i < 8; i++) {
    char key[32];
    snprintf(key, sizeof(key), "q-reb-%d", i);
    f[i] = run_on("q_inc", dt_int(i), 0, key);
  }
  dt_value *r = query("rebalance", NULL);
  assert_true(dt_value_int(r) >= 3);
  dt_value_free(r);
  size_t on0 = 8, on1 = 0;
  for (int i = 0; i < 200; i++) {
    dt_value *hw = NULL;
    assert_int_equal(dt_client_has_what(client, NULL, 0, 10000, &hw), 0);
    on0 = on1 = 0;
    for (int w = 0; w < 2; w++) {
      const dt_value *l = dt_map_get(hw, waddr[w]);
      for (size_t k = 0; k < dt_list_len(l); k++)
        if (strncmp(dt_value_str(dt_list_get(l, k), NULL), "q-reb-", 6) == 0) *(w ? &on1 : &on0) += 1;
    }
    dt_value_free(hw);
    if (on0 + on1 == 8 && on1 >= 3 && on0 >= 3) break;
    usleep(20000);
  }
  assert_int_equal(on0 + on1, 8); /* moved, not copied */
  assert_true(on0 >= 3 && on1 >= 3);
  for (int i = 0; i < 8; i++) {
    dt_value *v;
    assert_int_equal(dt_future_result(f[i], 10000, &v), 0);
    assert_int_equal(dt_value_int(v), i + 1);
    dt_value_free(v);
    dt_future_release(f[i]);
  }
}

static void test_bad_input(void **state) {
  (void)state;
  dt_value *out = (dt_value *)1;
  assert_int_equal(dt_client_query(client, "no_such_query", NULL, 10000, &out), DT_EINVAL);
  assert_null(out);
  assert_non_null(strstr(dt_last_error(), "unknown query 'no_such_query'"));
  dt_value *a = args1("keys", dt_int(5));
  assert_int_equal(dt_client_query(client, "who_has", a, 10000, &out), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "'keys' must be"));
  dt_value_free(a);
  a = args1("count", dt_str("ten"));
  assert_int_equal(dt_client_query(client, "task_stream", a, 10000, &out), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "'count' must be an integer"));
  dt_value_free(a);
  a = dt_list_new();
  assert_int_equal(dt_client_query(client, "who_has", a, 10000, &out), DT_EINVAL);
  dt_value_free(a);
  assert_int_equal(dt_client_query(client, "call_stack", NULL, 10000, &out), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "not available"));
  assert_int_equal(dt_client_query(client, "story", NULL, 10000, &out), DT_EINVAL);
  /* the connection is still fine */
  dt_value *nc = query("ncores", NULL);
  assert_int_equal(dt_map_len(nc), 2);
  dt_value_free(nc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_who_has_has_what_nbytes),
      cmocka_unit_test(test_processing),
      cmocka_unit_test(test_story),
      cmocka_unit_test(test_events),
      cmocka_unit_test(test_metadata),
      cmocka_unit_test(test_task_stream),
      cmocka_unit_test(test_logs),
      cmocka_unit_test(test_replicate),
      cmocka_unit_test(test_rebalance),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
