/* biggraph_test.c -- a graph or map bigger than one UPDATE_GRAPH slice
 * (src/client/slices.c) submitted in one call: the slices made small here
 * (DTASK_SLICE_TASKS, DTASK_SLICE_BYTES) and the scheduler started with
 * --max-client-batch 1MiB, so that the whole batch in one message would be
 * refused (the connection closed) while slices pass.  Dependencies cross
 * slice boundaries (a task needs one sent several slices before, which
 * nobody wants: it must not be forgotten in between), one node names a key
 * added later (the graph is sorted), every result is checked, and the
 * scheduler holds no task once the futures are released. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/client.h"
#include "testutil.h"

#define OK(x) ok_msg((x))
static void ok_msg(int rc) {
  if (rc != 0) fail_msg("rc %d (%s): %s", rc, dt_err_name(rc), dt_last_error());
}

DT_TASK(badd) { /* badd(a, b, padding): a + b */
  int64_t a, b;
  if (dt_task_arg_int(task, 0, &a) || dt_task_arg_int(task, 1, &b)) return NULL;
  return dt_int(a + b);
}

static char self[4096], addr[64];
static pid_t sched, workers[2];
static dt_client *client;
static char pad[201]; /* makes each task ~300 bytes on the wire */

static int setup(void **state) {
  (void)state;
  memset(pad, 'p', sizeof(pad) - 1);
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  int port = tu_free_port();
  if (n <= 0 || port <= 0) return -1;
  self[n] = '\0';
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  char args[512], log[256];
  snprintf(args, sizeof(args),
           "--host\x1f" "127.0.0.1\x1f--port\x1f%d\x1f--no-dashboard\x1f--max-client-batch\x1f" "1MiB",
           port);
  snprintf(log, sizeof(log), "/tmp/dtask-biggraph-%d-sched.log", (int)getpid());
  sched = tu_spawn_role(self, "scheduler", args, log);
  for (int i = 0; i < 2; i++) {
    snprintf(args, sizeof(args), "%s\x1f--nthreads\x1f" "2\x1f--no-nanny", addr);
    snprintf(log, sizeof(log), "/tmp/dtask-biggraph-%d-worker%d.log", (int)getpid(), i);
    workers[i] = tu_spawn_role(self, "worker", args, log);
  }
  client = tu_connect_retry(addr, "biggraph", 50);
  return client && tu_wait_workers(client, 2, 20) == 2 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  dt_client_close(client);
  for (int i = 0; i < 2; i++) tu_stop(workers[i], SIGTERM);
  tu_stop(sched, SIGTERM);
  return 0;
}

static int64_t result_int(dt_future *f) {
  dt_value *v = NULL;
  OK(dt_future_result(f, 60000, &v));
  assert_int_equal(dt_value_type(v), DT_INT);
  int64_t r = dt_value_int(v);
  dt_value_free(v);
  return r;
}

static void expect_clean(void) {
  dt_cluster_info info;
  OK(dt_client_cluster_info(client, 10000, &info));
  assert_int_equal(info.n_erred, 0);
}

/* badd(a, b, pad) */
static dt_value *call(dt_value *a, dt_value *b) { return dt_list_of(3, a, b, dt_str(pad)); }

/* A chain c(i) = c(i-1) + 1 and jumps j(i) = c(i/7) + c(i), only the jumps
 * wanted: 5,001 tasks in slices of 500 (and of 64 KiB), j(i) needing c(i/7)
 * from a slice long gone by, which nobody wants.  One more node, "fwd",
 * is made first and names the key "late" of a node made last. */
static void test_graph_in_slices(void **state) {
  (void)state;
  setenv("DTASK_SLICE_TASKS", "500", 1);
  setenv("DTASK_SLICE_BYTES", "65536", 1);
  enum { N = 2500 };
  dt_graph *g = dt_graph_new();
  assert_non_null(g);
  dt_value **c = calloc(N, sizeof(*c)), **j = calloc(N, sizeof(*j)), *fwd, *late;
  /* "late" is not made yet: a reference by key, as a client could build */
  OK(dt_graph_add(g, "badd", call(dt__future_ref_value("late", NULL), dt_int(1)), NULL, NULL, &fwd));
  for (int i = 0; i < N; i++) {
    OK(dt_graph_add(g, "badd", call(i ? dt_value_ref(c[i - 1]) : dt_int(0), dt_int(1)), NULL, NULL,
                    &c[i]));
    OK(dt_graph_add(g, "badd", call(dt_value_ref(c[i / 7]), dt_value_ref(c[i])), NULL, NULL, &j[i]));
  }
  OK(dt_graph_add(g, "badd", call(dt_int(1000), dt_int(2000)), NULL, &(dt_submit_opts){.key = "late"},
                  &late));
  dt_value **outs = calloc(N + 1, sizeof(*outs));
  for (int i = 0; i < N; i++) outs[i] = j[i];
  outs[N] = fwd;
  dt_future **fs = calloc(N + 1, sizeof(*fs));
  OK(dt_graph_submit(client, g, outs, N + 1, fs));
  for (int i = 0; i < N; i++) {
    int64_t want = (i / 7 + 1) + (i + 1);
    int64_t got = result_int(fs[i]);
    if (got != want) fail_msg("j(%d) = %lld, not %lld", i, (long long)got, (long long)want);
  }
  assert_int_equal(result_int(fs[N]), 3001);
  expect_clean();
  for (int i = 0; i <= N; i++) dt_future_release(fs[i]);
  assert_int_equal(tu_wait_tasks(client, 0, 20), 0); /* nothing held for the slices */
  for (int i = 0; i < N; i++) {
    dt_value_free(c[i]);
    dt_value_free(j[i]);
  }
  dt_value_free(fwd);
  dt_value_free(late);
  dt_graph_free(g);
  free(c);
  free(j);
  free(outs);
  free(fs);
}

/* The client already holds futures for two chain keys that a later slice
 * needs (c(200) and c(250), needed by j(1000..) and j(1250..)): the slices'
 * hold on them must not end the client's own interest.  c(250)'s result is
 * asked for only after the graph is done and released: the scheduler must
 * still have it. */
static void test_held_keys_stay_wanted(void **state) {
  (void)state;
  setenv("DTASK_SLICE_TASKS", "300", 1);
  setenv("DTASK_SLICE_BYTES", "1048576", 1);
  enum { N = 1500 };
  dt_graph *g = dt_graph_new();
  dt_value **c = calloc(N, sizeof(*c)), **j = calloc(N, sizeof(*j));
  for (int i = 0; i < N; i++) {
    OK(dt_graph_add(g, "badd", call(i ? dt_value_ref(c[i - 1]) : dt_int(0), dt_int(1)), NULL, NULL,
                    &c[i]));
    OK(dt_graph_add(g, "badd", call(dt_value_ref(c[i / 5]), dt_value_ref(c[i])), NULL, NULL, &j[i]));
  }
  dt_future *early[2];
  OK(dt_graph_submit(client, g, (dt_value *[]){c[200], c[250]}, 2, early));
  assert_int_equal(result_int(early[0]), 201);
  dt_future **fs = calloc(N, sizeof(*fs));
  OK(dt_graph_submit(client, g, j, N, fs));
  for (int i = 0; i < N; i++) {
    int64_t want = (i / 5 + 1) + (i + 1);
    int64_t got = result_int(fs[i]);
    if (got != want) fail_msg("j(%d) = %lld, not %lld", i, (long long)got, (long long)want);
  }
  expect_clean();
  for (int i = 0; i < N; i++) dt_future_release(fs[i]);
  assert_int_equal(result_int(early[1]), 251); /* still wanted, still there */
  dt_future_release(early[0]);
  dt_future_release(early[1]);
  assert_int_equal(tu_wait_tasks(client, 0, 20), 0);
  for (int i = 0; i < N; i++) {
    dt_value_free(c[i]);
    dt_value_free(j[i]);
  }
  dt_graph_free(g);
  free(c);
  free(j);
  free(fs);
}

/* dt_client_map over 4,000 calls: ~1.2 MB, cut by the 64 KiB byte cap
 * (the task cap left at its default) */
static void test_map_over_byte_cap(void **state) {
  (void)state;
  unsetenv("DTASK_SLICE_TASKS");
  setenv("DTASK_SLICE_BYTES", "65536", 1);
  enum { N = 4000 };
  dt_value **args = calloc(N, sizeof(*args));
  for (int i = 0; i < N; i++) args[i] = call(dt_int(i), dt_int(i));
  dt_future **fs = calloc(N, sizeof(*fs));
  OK(dt_client_map(client, "badd", args, N, NULL, fs));
  for (int i = 0; i < N; i++) {
    int64_t got = result_int(fs[i]);
    if (got != 2 * i) fail_msg("add(%d, %d) = %lld", i, i, (long long)got);
  }
  expect_clean();
  for (int i = 0; i < N; i++) dt_future_release(fs[i]);
  assert_int_equal(tu_wait_tasks(client, 0, 20), 0);
  free(args);
  free(fs);
}

int main(void) {
  if (getenv("BG_CHILD")) return 1; /* a child that did not take its role: never recurse */
  setenv("BG_CHILD", "1", 1);       /* (children inherit it; this process never reads it again) */
  /* the role takeover (cluster/spawn.c) must be linked in: this test uses no LocalCluster */
  if (getenv("BG_NEVER_SET")) dt_local_cluster_start(NULL, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_graph_in_slices),
      cmocka_unit_test(test_held_keys_stay_wanted),
      cmocka_unit_test(test_map_over_byte_cap),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
