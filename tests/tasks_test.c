/* tasks_test.c -- tasks that launch tasks, end to end on a LocalCluster of
 * two workers with one thread each (where a recursive computation deadlocks
 * unless waiting tasks secede): recursive Fibonacci through the worker's
 * client (automatic secede in gather, and explicit secede/rejoin), a task
 * that fans out 10,000 subtasks, subtasks that outlive the task that made
 * them, killing the worker that runs the parent, Reschedule,
 * fire_and_forget after the client closed, and where a task runs. */
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

static dt_local_cluster *lc;
static dt_client *client;
static char tmpdir[256];

DT_TASK(inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

static dt_value *args1(int64_t x) {
  dt_value *a = dt_list_new();
  dt_list_push(a, dt_int(x));
  return a;
}

/* fib(n) through the worker's client: gather secedes while it waits */
DT_TASK(fib) {
  int64_t n;
  if (dt_task_arg_int(task, 0, &n)) return NULL;
  if (n < 2) return dt_int(n);
  dt_client *c = dt_task_client(task);
  if (!c) return dt_task_fail(task, "no client: %s", dt_last_error());
  dt_future *fs[2] = {NULL, NULL};
  dt_value *out[2] = {NULL, NULL};
  int rc = dt_client_submit(c, "fib", args1(n - 1), NULL, NULL, &fs[0]);
  if (!rc) rc = dt_client_submit(c, "fib", args1(n - 2), NULL, NULL, &fs[1]);
  if (!rc) rc = dt_client_gather(c, fs, 2, 60000, out);
  int64_t r = rc ? 0 : dt_value_int(out[0]) + dt_value_int(out[1]);
  dt_future_release(fs[0]);
  dt_future_release(fs[1]);
  dt_value_free(out[0]);
  dt_value_free(out[1]);
  if (rc) return dt_task_fail(task, "fib(%lld): %s", (long long)n, dt_last_error());
  return dt_int(r);
}

/* the same with explicit secede / rejoin around the waits */
DT_TASK(fib_sr) {
  int64_t n;
  if (dt_task_arg_int(task, 0, &n)) return NULL;
  if (n < 2) return dt_int(n);
  dt_client *c = dt_task_client(task);
  if (!c) return dt_task_fail(task, "no client: %s", dt_last_error());
  if (dt_task_secede(task) != 0) return dt_task_fail(task, "secede: %s", dt_last_error());
  dt_future *a = NULL, *b = NULL;
  dt_value *x = NULL, *y = NULL;
  int rc = dt_client_submit(c, "fib_sr", args1(n - 1), NULL, NULL, &a);
  if (!rc) rc = dt_client_submit(c, "fib_sr", args1(n - 2), NULL, NULL, &b);
  if (!rc) rc = dt_future_result(a, 60000, &x);
  if (!rc) rc = dt_future_result(b, 60000, &y);
  int64_t r = rc ? 0 : dt_value_int(x) + dt_value_int(y);
  dt_future_release(a);
  dt_future_release(b);
  dt_value_free(x);
  dt_value_free(y);
  if (dt_task_rejoin(task) != 0) return dt_task_fail(task, "rejoin: %s", dt_last_error());
  if (rc) return dt_task_fail(task, "fib_sr(%lld): %s", (long long)n, dt_last_error());
  return dt_int(r);
}

/* fan_out(n): n subtasks inc(i), gathered: sum of 1..n */
DT_TASK(fan_out) {
  int64_t n;
  if (dt_task_arg_int(task, 0, &n)) return NULL;
  dt_client *c = dt_task_client(task);
  if (!c) return dt_task_fail(task, "no client: %s", dt_last_error());
  dt_value **al = calloc((size_t)n, sizeof(*al));
  dt_future **fs = calloc((size_t)n, sizeof(*fs));
  dt_value **out = calloc((size_t)n, sizeof(*out));
  for (int64_t i = 0; i < n; i++) al[i] = args1(i);
  dt_submit_opts o = {.pure = DT_NO};
  int rc = dt_client_map(c, "inc", al, (size_t)n, &o, fs);
  if (!rc) rc = dt_client_gather(c, fs, (size_t)n, 120000, out);
  int64_t s = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!rc) s += dt_value_int(out[i]);
    dt_value_free(out[i]);
    dt_future_release(fs[i]);
  }
  free(al);
  free(fs);
  free(out);
  if (rc) return dt_task_fail(task, "fan_out: %s", dt_last_error());
  return dt_int(s);
}

/* spawn(n): submits inc(100 + i) and returns their futures, not waiting */
DT_TASK(spawn) {
  int64_t n;
  if (dt_task_arg_int(task, 0, &n)) return NULL;
  dt_client *c = dt_task_client(task);
  if (!c) return dt_task_fail(task, "no client: %s", dt_last_error());
  dt_value *l = dt_list_new();
  dt_submit_opts o = {.pure = DT_NO};
  for (int64_t i = 0; i < n; i++) {
    dt_future *f;
    if (dt_client_submit(c, "inc", args1(100 + i), NULL, &o, &f) != 0) {
      dt_value_free(l);
      return dt_task_fail(task, "spawn: %s", dt_last_error());
    }
    dt_list_push(l, dt_future_value(f));
    dt_future_release(f); /* the value holds its own reference */
  }
  return l;
}

DT_TASK(sum_list) {
  const dt_value *v = dt_task_arg(task, 0);
  if (!v) return NULL;
  int64_t s = 0;
  for (size_t i = 0; i < dt_list_len(v); i++) s += dt_value_int(dt_list_get(v, i));
  return dt_int(s);
}

/* slow_parent(path, n): writes its pid to path, then fans out n subtasks
 * that sleep 50 ms each */
DT_TASK(nap_inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  usleep(50000);
  return dt_int(x + 1);
}
DT_TASK(slow_parent) {
  const char *path;
  int64_t n;
  if (dt_task_arg_str(task, 0, &path) || dt_task_arg_int(task, 1, &n)) return NULL;
  FILE *f = fopen(path, "a");
  if (f) {
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
  }
  dt_client *c = dt_task_client(task);
  if (!c) return dt_task_fail(task, "no client: %s", dt_last_error());
  dt_value **al = calloc((size_t)n, sizeof(*al));
  dt_future **fs = calloc((size_t)n, sizeof(*fs));
  dt_value **out = calloc((size_t)n, sizeof(*out));
  for (int64_t i = 0; i < n; i++) al[i] = args1(i);
  int rc = dt_client_map(c, "nap_inc", al, (size_t)n, NULL, fs);
  if (!rc) rc = dt_client_gather(c, fs, (size_t)n, 120000, out);
  int64_t s = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!rc) s += dt_value_int(out[i]);
    dt_value_free(out[i]);
    dt_future_release(fs[i]);
  }
  free(al);
  free(fs);
  free(out);
  if (rc) return dt_task_fail(task, "slow_parent: %s", dt_last_error());
  return dt_int(s);
}

/* resched(path): the first run creates path and asks to be rescheduled;
 * the next returns the number of runs it saw */
DT_TASK(resched) {
  const char *path;
  if (dt_task_arg_str(task, 0, &path)) return NULL;
  FILE *f = fopen(path, "a");
  if (!f) return dt_task_fail(task, "cannot open %s", path);
  fputs("run\n", f);
  long size = ftell(f);
  fclose(f);
  if (size <= 4) return dt_task_reschedule(task);
  return dt_int(size / 4);
}

/* write_later(path, ms): sleeps, then writes "done" to path */
DT_TASK(write_later) {
  const char *path;
  int64_t ms;
  if (dt_task_arg_str(task, 0, &path) || dt_task_arg_int(task, 1, &ms)) return NULL;
  usleep((useconds_t)ms * 1000);
  FILE *f = fopen(path, "w");
  if (!f) return dt_task_fail(task, "cannot open %s", path);
  fputs("done", f);
  fclose(f);
  return dt_int(1);
}

DT_TASK(where) {
  dt_value *m = dt_list_new();
  dt_list_push(m, dt_str(dt_task_worker_address(task)));
  dt_list_push(m, dt_str(dt_task_worker_name(task)));
  dt_list_push(m, dt_int(dt_task_worker_nthreads(task)));
  dt_list_push(m, dt_int(dt_task_current() == task));
  return m;
}

static int64_t run1(const char *func, dt_value *args, int timeout_ms) {
  dt_future *f = NULL;
  dt_value *v = NULL;
  assert_int_equal(dt_client_submit(client, func, args, NULL, NULL, &f), 0);
  int rc = dt_future_result(f, timeout_ms, &v);
  if (rc) fprintf(stderr, "%s: %s\n", func, dt_last_error());
  assert_int_equal(rc, 0);
  int64_t r = dt_value_int(v);
  dt_value_free(v);
  dt_future_release(f);
  return r;
}

static void test_fib_auto_secede(void **state) {
  (void)state;
  assert_int_equal(run1("fib", args1(20), 120000), 6765);
}

static void test_fib_secede_rejoin(void **state) {
  (void)state;
  assert_int_equal(run1("fib_sr", args1(20), 120000), 6765);
}

static void test_fan_out_10000(void **state) {
  (void)state;
  assert_int_equal(run1("fan_out", args1(10000), 180000), 10000LL * 10001 / 2);
}

static void test_subtasks_outlive_parent(void **state) {
  (void)state;
  dt_future *p = NULL, *s = NULL;
  dt_value *futs = NULL, *v = NULL;
  assert_int_equal(dt_client_submit(client, "spawn", args1(5), NULL, NULL, &p), 0);
  assert_int_equal(dt_future_result(p, 60000, &futs), 0);
  assert_int_equal(dt_value_type(futs), DT_LIST);
  assert_int_equal(dt_list_len(futs), 5);
  assert_int_equal(dt_value_type(dt_list_get(futs, 0)), DT_FUTURE);
  usleep(300000); /* the parent finished long ago: its children must still be there */
  dt_value *a = dt_list_new();
  dt_list_push(a, futs); /* the parent's futures as dependencies */
  assert_int_equal(dt_client_submit(client, "sum_list", a, NULL, NULL, &s), 0);
  assert_int_equal(dt_future_result(s, 60000, &v), 0);
  assert_int_equal(dt_value_int(v), 101 + 102 + 103 + 104 + 105);
  dt_value_free(v);
  dt_future_release(s);
  dt_future_release(p);
}

static void test_kill_parent_worker(void **state) {
  (void)state;
  char path[300];
  snprintf(path, sizeof(path), "%s/parent.pid", tmpdir);
  dt_value *a = dt_list_new();
  dt_list_push(a, dt_str(path));
  dt_list_push(a, dt_int(40));
  dt_future *f = NULL;
  assert_int_equal(dt_client_submit(client, "slow_parent", a, NULL, NULL, &f), 0);
  /* wait (bounded) for the parent to say where it runs, let it get going */
  pid_t pid = 0;
  for (double end = tu_now() + 30; !pid && tu_now() < end; usleep(20000)) {
    FILE *pf = fopen(path, "r");
    int p = 0;
    if (pf && fscanf(pf, "%d", &p) == 1) pid = p;
    if (pf) fclose(pf);
  }
  assert_true(pid > 0);
  usleep(300000);
  assert_int_equal(kill(pid, SIGKILL), 0);
  dt_value *v = NULL;
  int rc = dt_future_result(f, 120000, &v);
  if (rc) fprintf(stderr, "slow_parent: %s\n", dt_last_error());
  assert_int_equal(rc, 0);
  assert_int_equal(dt_value_int(v), 40 * 41 / 2);
  dt_value_free(v);
  dt_future_release(f);
  assert_int_equal(dt_client_wait_for_workers(client, 2, 30000), 0); /* the nanny restarted it */
}

static void test_reschedule(void **state) {
  (void)state;
  char path[300];
  snprintf(path, sizeof(path), "%s/resched", tmpdir);
  dt_value *a = dt_list_new();
  dt_list_push(a, dt_str(path));
  assert_int_equal(run1("resched", a, 60000), 2); /* ran twice, did not fail */
}

static void test_fire_and_forget_after_close(void **state) {
  (void)state;
  char path[300];
  snprintf(path, sizeof(path), "%s/ff", tmpdir);
  dt_client *c2 = NULL;
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c2), 0);
  dt_value *a = dt_list_new();
  dt_list_push(a, dt_str(path));
  dt_list_push(a, dt_int(500));
  dt_future *f = NULL;
  assert_int_equal(dt_client_submit(c2, "write_later", a, NULL, NULL, &f), 0);
  assert_int_equal(dt_client_fire_and_forget(c2, &f, 1), 0);
  dt_future_release(f);
  dt_client_close(c2);
  struct stat st;
  bool seen = false;
  for (double end = tu_now() + 30; !seen && tu_now() < end; usleep(20000)) seen = stat(path, &st) == 0;
  assert_true(seen);
}

static void test_where_it_runs(void **state) {
  (void)state;
  dt_future *f = NULL;
  dt_value *v = NULL;
  assert_int_equal(dt_client_submit(client, "where", NULL, NULL, NULL, &f), 0);
  assert_int_equal(dt_future_result(f, 30000, &v), 0);
  const char *addr = dt_value_str(dt_list_get(v, 0), NULL);
  dt_worker_info *ws = NULL;
  size_t n = 0;
  assert_int_equal(dt_client_workers(client, 10000, &ws, &n), 0);
  bool found = false;
  for (size_t i = 0; i < n; i++) found |= strcmp(ws[i].address, addr) == 0;
  assert_true(found);
  assert_true(strlen(dt_value_str(dt_list_get(v, 1), NULL)) > 0);
  assert_int_equal(dt_value_int(dt_list_get(v, 2)), 1);
  assert_int_equal(dt_value_int(dt_list_get(v, 3)), 1);
  free(ws);
  dt_value_free(v);
  dt_future_release(f);
  /* outside a task */
  assert_null(dt_task_current());
  assert_int_not_equal(dt_task_secede(NULL), 0);
}

static int group_setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/dtask-tasks-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  dt_local_cluster_opts o = {.n_workers = 2, .threads_per_worker = 1, .no_dashboard = true};
  return tu_local_start(o, (dt_client_opts){0}, &lc, &client);
}

static int group_teardown(void **state) {
  (void)state;
  dt_client_close(client);
  int pids[4] = {dt_local_cluster_worker_pid(lc, 0), dt_local_cluster_worker_pid(lc, 1),
                 tu_child_of(dt_local_cluster_worker_pid(lc, 0)),
                 tu_child_of(dt_local_cluster_worker_pid(lc, 1))};
  dt_local_cluster_close(lc);
  usleep(100000);
  for (int i = 0; i < 4; i++)
    if (pids[i] > 0) kill(pids[i], SIGKILL);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
  if (system(cmd) != 0) return -1;
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_where_it_runs),
      cmocka_unit_test(test_fib_auto_secede),
      cmocka_unit_test(test_fib_secede_rejoin),
      cmocka_unit_test(test_fan_out_10000),
      cmocka_unit_test(test_subtasks_outlive_parent),
      cmocka_unit_test(test_reschedule),
      cmocka_unit_test(test_fire_and_forget_after_close),
      cmocka_unit_test(test_kill_parent_worker),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
