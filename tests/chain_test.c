/* chain_test.c -- chains of dependent tasks, which the scheduler sends ahead
 * to the worker computing each link's input (src/scheduler/speculate.c,
 * src/worker/ahead.c): they compute the right value, on one worker or two;
 * a failing link fails the rest of the chain with its error; a failing link
 * with retries left runs again and the chain goes on; a cancelled link
 * cancels what follows it and the cluster forgets everything; a worker
 * killed mid-chain is survived; links that secede (tasks from tasks) hand
 * the chain on; and with the speculation turned off
 * ($DTASK_NO_AHEAD) the same chains give the same values. */
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

#define OK(x) do { int rc_ = (x); if (rc_) fail_msg("%s: %s", #x, dt_last_error()); } while (0)

DT_TASK(inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

/* slow_inc(x): x + 1 after 10 ms */
DT_TASK(slow_inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  usleep(10000);
  return dt_int(x + 1);
}

/* seceding_inc(x): x + 1 after handing its thread back (tasks from tasks):
 * the pool does not run the next link on this thread then */
DT_TASK(seceding_inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  usleep(5000);
  if (dt_task_secede(task) != 0) return dt_task_fail(task, "secede: %s", dt_last_error());
  usleep(5000);
  return dt_int(x + 1);
}

/* fail_at(x, k): x + 1, or a failure when x == k */
DT_TASK(fail_at) {
  int64_t x, k;
  if (dt_task_arg_int(task, 0, &x) || dt_task_arg_int(task, 1, &k)) return NULL;
  if (x == k) return dt_task_fail(task, "link %lld fails", (long long)x);
  return dt_int(x + 1);
}

/* flaky(x, path): fails the first time (no file at path yet), then x + 1 */
DT_TASK(flaky) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  const char *path = dt_value_str(dt_task_arg(task, 1), NULL);
  if (!path) return dt_task_fail(task, "no path");
  if (access(path, F_OK) != 0) {
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    return dt_task_fail(task, "first run fails");
  }
  return dt_int(x + 1);
}

static dt_local_cluster *lc;
static dt_client *client;

static int start(int nworkers) {
  dt_local_cluster_opts o = {.n_workers = nworkers, .no_dashboard = true};
  return tu_local_start(o, (dt_client_opts){0}, &lc, &client);
}
static int setup2(void **state) {
  (void)state;
  unsetenv("DTASK_NO_AHEAD");
  return start(2);
}
static int setup2_off(void **state) {
  (void)state;
  setenv("DTASK_NO_AHEAD", "1", 1); /* the scheduler started now inherits it */
  int rc = start(2);
  unsetenv("DTASK_NO_AHEAD");
  return rc;
}
static int stop(void **state) {
  (void)state;
  tu_local_stop(&lc, &client);
  return 0;
}

/* chain: n links of func(x[, extra]) from x = 0 (extra < 0: none), every
 * future kept in fs (n entries); o: options of every link */
static void chain(const char *func, int n, int64_t extra, const dt_submit_opts *o, dt_future **fs) {
  for (int i = 0; i < n; i++) {
    dt_value *x = i ? dt_future_value(fs[i - 1]) : dt_int(0);
    dt_value *args = extra >= 0 ? dt_list_of(2, x, dt_int(extra)) : dt_list_of(1, x);
    OK(dt_client_submit(client, func, args, NULL, o, &fs[i]));
  }
}

static void release_all(dt_future **fs, int n) {
  for (int i = 0; i < n; i++)
    if (fs[i]) dt_future_release(fs[i]);
}

/* the scheduler forgets every task once the futures are released */
static void assert_drains(void) {
  dt_cluster_info info = {0};
  for (int i = 0; i < 500; i++) {
    OK(dt_client_cluster_info(client, 5000, &info));
    if (info.n_tasks == 0) return;
    usleep(10000);
  }
  fail_msg("the scheduler still knows %lld tasks", (long long)info.n_tasks);
}

static int64_t result_int(dt_future *f) {
  dt_value *v;
  OK(dt_future_result(f, 60000, &v));
  int64_t x = dt_value_int(v);
  dt_value_free(v);
  return x;
}

static void test_chain_values(void **state) {
  (void)state;
  enum { N = 500 };
  dt_future *fs[N];
  dt_submit_opts o = {.pure = DT_NO};
  chain("inc", N, -1, &o, fs);
  assert_int_equal(result_int(fs[N - 1]), N);
  assert_int_equal(result_int(fs[N / 2]), N / 2 + 1); /* an inner link, kept */
  release_all(fs, N);
  /* on one worker */
  const char *w1[] = {"local-worker-1"};
  o.workers = w1, o.n_workers = 1;
  chain("inc", N, -1, &o, fs);
  assert_int_equal(result_int(fs[N - 1]), N);
  release_all(fs, N);
  /* two chains interleaved, and a fan-out: 20 tasks on one running input */
  dt_future *a[50], *b[50], *fan[20];
  o = (dt_submit_opts){.pure = DT_NO};
  for (int i = 0; i < 50; i++) {
    OK(dt_client_submit(client, "slow_inc", dt_list_of(1, i ? dt_future_value(a[i - 1]) : dt_int(0)),
                        NULL, &o, &a[i]));
    OK(dt_client_submit(client, "inc", dt_list_of(1, i ? dt_future_value(b[i - 1]) : dt_int(100)),
                        NULL, &o, &b[i]));
  }
  for (int i = 0; i < 20; i++)
    OK(dt_client_submit(client, "inc", dt_list_of(1, dt_future_value(a[0])), NULL, &o, &fan[i]));
  /* links that secede, between ordinary ones */
  dt_future *s[40];
  for (int i = 0; i < 40; i++)
    OK(dt_client_submit(client, i % 3 ? "inc" : "seceding_inc",
                        dt_list_of(1, i ? dt_future_value(s[i - 1]) : dt_int(0)), NULL, &o, &s[i]));
  assert_int_equal(result_int(s[39]), 40);
  release_all(s, 40);
  assert_int_equal(result_int(a[49]), 50);
  assert_int_equal(result_int(b[49]), 150);
  for (int i = 0; i < 20; i++) assert_int_equal(result_int(fan[i]), 2);
  release_all(a, 50);
  release_all(b, 50);
  release_all(fan, 20);
  assert_drains();
}

static void test_chain_error(void **state) {
  (void)state;
  enum { N = 100, K = 40 };
  dt_future *fs[N];
  chain("fail_at", N, K, &(dt_submit_opts){.pure = DT_NO}, fs);
  dt_value *v = NULL;
  int rc = dt_future_result(fs[N - 1], 60000, &v);
  assert_int_not_equal(rc, 0);
  assert_non_null(strstr(dt_last_error(), "link 40 fails"));
  assert_int_equal(result_int(fs[K - 1]), K); /* before the failure: values */
  for (int i = K; i < N; i += 13) {
    v = NULL;
    assert_int_not_equal(dt_future_result(fs[i], 60000, &v), 0);
  }
  release_all(fs, N);
  assert_drains();
  /* the workers run chains as before */
  chain("inc", 50, -1, &(dt_submit_opts){.pure = DT_NO}, fs);
  assert_int_equal(result_int(fs[49]), 50);
  release_all(fs, 50);
  assert_drains();
}

static void test_chain_retry(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof(path), "/tmp/dtask-chain-test-%d", (int)getpid());
  unlink(path);
  enum { N = 30 };
  dt_future *fs[N];
  dt_submit_opts o = {.pure = DT_NO};
  for (int i = 0; i < N; i++) {
    dt_value *x = i ? dt_future_value(fs[i - 1]) : dt_int(0);
    if (i == 10) { /* fails once, then runs again */
      dt_submit_opts r = {.pure = DT_NO, .retries = 2};
      OK(dt_client_submit(client, "flaky", dt_list_of(2, x, dt_str(path)), NULL, &r, &fs[i]));
    } else {
      OK(dt_client_submit(client, "slow_inc", dt_list_of(1, x), NULL, &o, &fs[i]));
    }
  }
  assert_int_equal(result_int(fs[N - 1]), N);
  assert_int_equal(access(path, F_OK), 0); /* it did fail once */
  unlink(path);
  release_all(fs, N);
  assert_drains();
}

static void test_cancel_mid_chain(void **state) {
  (void)state;
  enum { N = 60, C = 20 };
  dt_future *fs[N];
  chain("slow_inc", N, -1, &(dt_submit_opts){.pure = DT_NO}, fs);
  assert_int_equal(result_int(fs[4]), 5); /* under way */
  OK(dt_future_cancel(fs[C]));
  dt_value *v = NULL;
  int rc = dt_future_result(fs[N - 1], 60000, &v);
  assert_int_equal(rc, DT_ECANCELLED);
  assert_int_equal(result_int(fs[C - 1]), C); /* before it: values */
  release_all(fs, N);
  assert_drains();
  chain("inc", 50, -1, &(dt_submit_opts){.pure = DT_NO}, fs);
  assert_int_equal(result_int(fs[49]), 50);
  release_all(fs, 50);
  assert_drains();
}

static void test_worker_killed_mid_chain(void **state) {
  (void)state;
  enum { N = 80 };
  dt_future *fs[N];
  const char *w0[] = {"local-worker-0"};
  /* a preference for worker 0, so that the chain starts there */
  chain("slow_inc", N, -1,
        &(dt_submit_opts){.pure = DT_NO, .workers = w0, .n_workers = 1, .allow_other_workers = true}, fs);
  assert_int_equal(result_int(fs[9]), 10);
  pid_t victim = tu_child_of(dt_local_cluster_worker_pid(lc, 0));
  assert_true(victim > 0);
  assert_int_equal(kill(victim, SIGKILL), 0);
  assert_int_equal(result_int(fs[N - 1]), N);
  release_all(fs, N);
  assert_drains();
}

static void test_off_same_values(void **state) {
  (void)state;
  enum { N = 200 };
  dt_future *fs[N];
  chain("inc", N, -1, &(dt_submit_opts){.pure = DT_NO}, fs);
  assert_int_equal(result_int(fs[N - 1]), N);
  release_all(fs, N);
  chain("fail_at", N, 50, &(dt_submit_opts){.pure = DT_NO}, fs);
  dt_value *v = NULL;
  assert_int_not_equal(dt_future_result(fs[N - 1], 60000, &v), 0);
  release_all(fs, N);
  assert_drains();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_chain_values, setup2, stop),
      cmocka_unit_test_setup_teardown(test_chain_error, setup2, stop),
      cmocka_unit_test_setup_teardown(test_chain_retry, setup2, stop),
      cmocka_unit_test_setup_teardown(test_cancel_mid_chain, setup2, stop),
      cmocka_unit_test_setup_teardown(test_worker_killed_mid_chain, setup2, stop),
      cmocka_unit_test_setup_teardown(test_off_same_values, setup2_off, stop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
