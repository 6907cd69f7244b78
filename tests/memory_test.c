/* memory_test.c -- worker memory limits, on workers started with the dtask
 * command (preloading examples/mytasks.c): results several times the limit
 * spill to disk and come back right, a task that blows the limit is killed
 * and fails with DT_EKILLED after allowed_failures, a worker over its pause
 * threshold takes no new tasks until its memory falls, and a 1 GiB result
 * moves between workers byte for byte. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define OK(x) do { int rc_ = (x); if (rc_) fail_msg("%s: %s", #x, dt_last_error()); } while (0)

static char bin[1024], preload[1024], dir[256];
static tu_cluster cl;
static dt_client *client;

/* a scheduler and n workers, each with these extra options */
static void start(int n, const char *const *wopts) {
  tu_cluster_opts o = {.bin = bin, .preload = preload, .dir = dir, .log_level = "warning",
                       .nthreads = 2, .sched_args = (const char *[]){"--no-dashboard", NULL},
                       .worker_args = wopts};
  assert_int_equal(tu_cluster_start(&cl, &o), 0);
  for (int w = 0; w < n; w++) {
    char name[32], local[300];
    snprintf(name, sizeof(name), "mem-%d", w);
    snprintf(local, sizeof(local), "%s/%s", dir, name);
    tu_cluster_add_worker(&cl, (const char *[]){"--name", name, "--local-directory", local, NULL});
  }
  OK(dt_client_connect(&(dt_client_opts){.address = cl.addr}, &client));
  OK(dt_client_wait_for_workers(client, n, 20000));
}

static int stop(void **state) {
  (void)state;
  dt_client_close(client);
  client = NULL;
  tu_cluster_stop(&cl);
  return 0;
}

static int count_files(const char *path) { /* files below path, recursively */
  DIR *d = opendir(path);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
    struct stat st;
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) n += count_files(p);
    else n++;
  }
  closedir(d);
  return n;
}

static uint64_t chunk_sum(int64_t i, uint64_t mib) { /* what chunk(i, mib) sums to */
  uint64_t n = mib << 17;
  return ((uint64_t)i * 1000003u * n + n * (n - 1) / 2);
}

/* 2 GiB of results through a worker limited to 256 MiB (spilling on managed
 * bytes only, so that the test does not depend on the allocator's RSS) */
static void test_spill_more_than_memory(void **state) {
  (void)state;
  start(1, (const char *[]){"--memory-limit", "256MiB", "--memory-spill", "false", "--memory-pause",
                            "false", "--memory-terminate", "false", NULL});
  enum { N = 64, MIB = 32 };
  dt_value *args[N];
  dt_future *chunks[N], *sums[N];
  for (int i = 0; i < N; i++) args[i] = dt_list_of(2, dt_int(i), dt_int(MIB));
  OK(dt_client_map(client, "chunk", args, N, &(dt_submit_opts){.pure = DT_NO}, chunks));
  OK(dt_wait(chunks, N, 120000, DT_ALL_COMPLETED));
  /* all 2 GiB held: most of it on disk */
  dt_worker_info *ws;
  size_t nw;
  OK(dt_client_workers(client, 5000, &ws, &nw));
  /* heartbeats say so within a second */
  for (int i = 0; i < 50 && ws[0].spilled + ws[0].memory < (uint64_t)N * MIB << 20; i++) {
    free(ws);
    usleep(100000);
    OK(dt_client_workers(client, 5000, &ws, &nw));
  }
  uint64_t limit = 256u << 20, chunk = (uint64_t)MIB << 20;
  fprintf(stderr, "spill: %llu MiB in memory (peak %llu MiB), %llu MiB spilled\n",
          (unsigned long long)(ws[0].memory >> 20), (unsigned long long)(ws[0].peak_memory >> 20),
          (unsigned long long)(ws[0].spilled >> 20));
  assert_true(ws[0].spilled >= (uint64_t)N * chunk - limit);
  assert_true(ws[0].peak_memory <= limit + chunk);
  free(ws);
  char sdir[400];
  snprintf(sdir, sizeof(sdir), "%s/mem-0", dir);
  assert_true(count_files(sdir) >= 40);
  /* every chunk comes back right (read back from disk as each task needs it) */
  for (int i = 0; i < N; i++) {
    dt_value *a = dt_list_of(1, dt_future_value(chunks[i]));
    OK(dt_client_submit(client, "chunk_sum", a, NULL, &(dt_submit_opts){.pure = DT_NO}, &sums[i]));
  }
  for (int i = 0; i < N; i++) {
    dt_value *v;
    OK(dt_future_result(sums[i], 120000, &v));
    assert_int_equal((uint64_t)dt_value_int(v), chunk_sum(i, MIB) & ((1ull << 62) - 1));
    dt_value_free(v);
    dt_future_release(sums[i]);
  }
  OK(dt_client_workers(client, 5000, &ws, &nw));
  assert_true(ws[0].peak_memory <= limit + chunk);
  free(ws);
  for (int i = 0; i < N; i++) dt_future_release(chunks[i]);
  assert_int_equal(tu_wait_tasks(client, 0, 20), 0);
  /* forgotten keys leave no spill file behind */
  for (int i = 0; i < 50 && count_files(sdir) > 0; i++) usleep(100000);
  if (count_files(sdir)) {
    char cmd[500];
    snprintf(cmd, sizeof(cmd), "ls -laR %s | head -20 >&2", sdir);
    if (system(cmd) != 0) fprintf(stderr, "(find failed)\n");
  }
  assert_int_equal(count_files(sdir), 0);
}

/* a task that allocates far past the limit: killed each time, then DT_EKILLED */
static void test_task_over_the_limit(void **state) {
  (void)state;
  start(1, (const char *[]){"--memory-limit", "256MiB", NULL});
  dt_future *f, *ok;
  OK(dt_client_submit(client, "hog", dt_list_of(2, dt_int(1024), dt_int(3000)), NULL,
                      &(dt_submit_opts){.pure = DT_NO}, &f));
  dt_value *v;
  assert_int_equal(dt_future_result(f, 120000, &v), DT_EKILLED);
  fprintf(stderr, "over the limit: %s\n", dt_future_exception(f));
  assert_non_null(strstr(dt_future_exception(f), "memory"));
  dt_future_release(f);
  /* and the worker (restarted by its nanny) still works */
  OK(dt_client_submit(client, "square", dt_list_of(1, dt_int(9)), NULL, NULL, &ok));
  OK(dt_future_result(ok, 30000, &v));
  assert_int_equal(dt_value_int(v), 81);
  dt_value_free(v);
  dt_future_release(ok);
}

/* over the pause threshold (RSS), no new task starts until memory falls */
static void test_pause(void **state) {
  (void)state;
  start(1, (const char *[]){"--memory-limit", "400MiB", "--memory-pause", "0.5", "--memory-spill",
                            "false", "--memory-terminate", "false", NULL});
  dt_future *hog, *quick;
  OK(dt_client_submit(client, "hog", dt_list_of(2, dt_int(260), dt_int(2500)), NULL,
                      &(dt_submit_opts){.pure = DT_NO}, &hog));
  /* wait until the worker says it is paused */
  bool paused = false;
  double t0 = tu_now();
  while (!paused && tu_now() - t0 < 20) {
    dt_worker_info *ws;
    size_t nw;
    OK(dt_client_workers(client, 5000, &ws, &nw));
    paused = nw == 1 && ws[0].paused;
    free(ws);
    if (!paused) usleep(50000);
  }
  assert_true(paused);
  /* a task submitted now waits (the worker has a free thread, but is paused) */
  OK(dt_client_submit(client, "square", dt_list_of(1, dt_int(7)), NULL, &(dt_submit_opts){.pure = DT_NO}, &quick));
  usleep(800000);
  assert_false(dt_future_done(quick));
  assert_false(dt_future_done(hog));
  dt_value *v;
  OK(dt_future_result(hog, 30000, &v)); /* the hog frees its memory: the worker resumes */
  dt_value_free(v);
  OK(dt_future_result(quick, 30000, &v));
  assert_int_equal(dt_value_int(v), 49);
  dt_value_free(v);
  dt_future_release(hog);
  dt_future_release(quick);
}

/* 1 GiB made on one worker, checked on another: every byte arrives */
static void test_one_gib_between_workers(void **state) {
  (void)state;
  start(2, (const char *[]){"--memory-limit", "0", NULL});
  const char *w0[] = {"mem-0"}, *w1[] = {"mem-1"};
  dt_future *big, *sum;
  OK(dt_client_submit(client, "chunk", dt_list_of(2, dt_int(5), dt_int(1024)), NULL,
                      &(dt_submit_opts){.pure = DT_NO, .workers = w0, .n_workers = 1}, &big));
  OK(dt_client_submit(client, "chunk_sum", dt_list_of(1, dt_future_value(big)), NULL,
                      &(dt_submit_opts){.pure = DT_NO, .workers = w1, .n_workers = 1}, &sum));
  dt_value *v;
  double t0 = tu_now();
  OK(dt_future_result(sum, 300000, &v));
  assert_int_equal((uint64_t)dt_value_int(v), chunk_sum(5, 1024) & ((1ull << 62) - 1));
  fprintf(stderr, "1 GiB made, moved and checked in %.1f s\n", tu_now() - t0);
  dt_value_free(v);
  dt_future_release(sum);
  dt_future_release(big);
}

int main(void) {
  if (tu_dtask_env(bin, preload, dir, "/tmp/dtask-mem-XXXXXX") != 0) return 1;
  if (getenv("DT_TEST_FILTER")) cmocka_set_test_filter(getenv("DT_TEST_FILTER"));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_spill_more_than_memory, stop),
      cmocka_unit_test_teardown(test_task_over_the_limit, stop),
      cmocka_unit_test_teardown(test_pause, stop),
      cmocka_unit_test_teardown(test_one_gib_between_workers, stop),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (tu_remove_dir(dir) != 0 && rc == 0) rc = 1;
  return rc;
}
