/* wakeups_test.c -- a worker running short tasks hands them to its pool and
 * hears of finished ones in batches (src/worker/pool.c, exec.c): many short
 * tasks give the right values; results finished before a task that blocks
 * (with many more queued behind it, on the worker's only thread) still
 * reach the client while it blocks; and tasks cancelled while queued in the
 * pool are forgotten by the whole cluster. */
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

/* wait_at(x, k, path): x + 1; when x == k, only once path exists (at most
 * 60 s, a failure then) */
DT_TASK(wait_at) {
  int64_t x, k;
  if (dt_task_arg_int(task, 0, &x) || dt_task_arg_int(task, 1, &k)) return NULL;
  const char *path = dt_value_str(dt_task_arg(task, 2), NULL);
  if (!path) return dt_task_fail(task, "no path");
  for (int i = 0; x == k && access(path, F_OK) != 0; i++) {
    if (i >= 6000) return dt_task_fail(task, "%s never appeared", path);
    usleep(10000);
  }
  return dt_int(x + 1);
}

static dt_local_cluster *lc;
static dt_client *client;
static char path[64];

static int setup(void **state) {
  (void)state;
  snprintf(path, sizeof(path), "/tmp/wakeups_test.%d", (int)getpid());
  unlink(path);
  /* one worker with one thread: a task that blocks holds the whole pool */
  dt_local_cluster_opts o = {.n_workers = 1, .threads_per_worker = 1, .no_dashboard = true};
  return tu_local_start(o, (dt_client_opts){0}, &lc, &client);
}

static int teardown(void **state) {
  (void)state;
  tu_local_stop(&lc, &client);
  unlink(path);
  return 0;
}

static void release_all(dt_future **fs, int n) {
  for (int i = 0; i < n; i++)
    if (fs[i]) dt_future_release(fs[i]);
}

static void assert_drains(void) {
  dt_cluster_info info = {0};
  for (int i = 0; i < 1000; i++) {
    OK(dt_client_cluster_info(client, 5000, &info));
    if (info.n_tasks == 0) return;
    usleep(10000);
  }
  fail_msg("the scheduler still knows %lld tasks", (long long)info.n_tasks);
}

/* map: n calls of inc from first */
static void map_inc(int n, int64_t first, dt_future **fs) {
  dt_value **args = malloc((size_t)n * sizeof(*args));
  assert_non_null(args);
  for (int i = 0; i < n; i++) args[i] = dt_list_of(1, dt_int(first + i));
  OK(dt_client_map(client, "inc", args, (size_t)n, &(dt_submit_opts){.pure = DT_NO}, fs));
  free(args);
}

/* many short tasks, twice (the second time the worker queues more ahead) */
static void test_short_batches(void **state) {
  (void)state;
  enum { N = 20000 };
  dt_future **fs = calloc(N, sizeof(*fs));
  dt_value **vs = calloc(N, sizeof(*vs));
  assert_true(fs && vs);
  for (int round = 0; round < 2; round++) {
    map_inc(N, round * N, fs);
    OK(dt_client_gather(client, fs, N, 120000, vs));
    for (int i = 0; i < N; i++) {
      assert_int_equal(dt_value_int(vs[i]), round * N + i + 1);
      dt_value_free(vs[i]);
    }
    release_all(fs, N);
  }
  free(fs);
  free(vs);
  assert_drains();
}

/* wait_at over 0..n-1 blocking at k, every future in fs */
static void map_wait_at(int n, int64_t k, dt_future **fs) {
  dt_value **args = malloc((size_t)n * sizeof(*args));
  assert_non_null(args);
  for (int i = 0; i < n; i++) args[i] = dt_list_of(3, dt_int(i), dt_int(k), dt_str(path));
  OK(dt_client_map(client, "wait_at", args, (size_t)n, &(dt_submit_opts){.pure = DT_NO}, fs));
  free(args);
}

/* the results before a blocking task are not held back by it */
static void test_not_held_by_blocker(void **state) {
  (void)state;
  enum { W = 3000, N = 2000, K = 100 };
  dt_future *warm[W], *fs[N];
  dt_value *vs[W];
  map_inc(W, 0, warm); /* short tasks in a row: the worker queues ahead */
  OK(dt_client_gather(client, warm, W, 120000, vs));
  for (int i = 0; i < W; i++) dt_value_free(vs[i]);
  release_all(warm, W);
  map_wait_at(N, K, fs);
  for (int i = 0; i < K; i++) { /* while task K blocks, with many behind it */
    dt_value *v = NULL;
    OK(dt_future_result(fs[i], 30000, &v));
    assert_int_equal(dt_value_int(v), i + 1);
    dt_value_free(v);
  }
  assert_false(dt_future_done(fs[K])); /* it waits for the file still */
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  OK(dt_client_gather(client, fs, N, 120000, vs));
  for (int i = 0; i < N; i++) {
    assert_int_equal(dt_value_int(vs[i]), i + 1);
    dt_value_free(vs[i]);
  }
  release_all(fs, N);
  assert_drains();
  unlink(path);
}

/* tasks cancelled while queued in the pool behind a blocking one */
static void test_cancel_queued(void **state) {
  (void)state;
  enum { W = 3000, N = 2000, K = 10 };
  dt_future *warm[W], *fs[N];
  dt_value *vs[W];
  map_inc(W, 0, warm);
  OK(dt_client_gather(client, warm, W, 120000, vs));
  for (int i = 0; i < W; i++) dt_value_free(vs[i]);
  release_all(warm, W);
  map_wait_at(N, K, fs);
  dt_value *v = NULL;
  OK(dt_future_result(fs[K - 1], 30000, &v)); /* K is running (or next) now */
  dt_value_free(v);
  for (int i = K + 1; i < N; i++) OK(dt_future_cancel(fs[i]));
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
  v = NULL;
  OK(dt_future_result(fs[K], 60000, &v));
  assert_int_equal(dt_value_int(v), K + 1);
  dt_value_free(v);
  release_all(fs, N);
  assert_drains();
  /* the worker runs new tasks as before */
  map_inc(W, 7, warm);
  OK(dt_client_gather(client, warm, W, 120000, vs));
  for (int i = 0; i < W; i++) {
    assert_int_equal(dt_value_int(vs[i]), 7 + i + 1);
    dt_value_free(vs[i]);
  }
  release_all(warm, W);
  assert_drains();
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_short_batches, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_held_by_blocker, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_queued, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
