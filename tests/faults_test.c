/* faults_test.c -- issue 19's faults, each on its own real LocalCluster
 * (scheduler, nannies, workers over loopback TCP): a worker stopped past
 * worker-ttl while another fetches from it, a cancelled task that never
 * returns, a task past its deadline, a frozen scheduler.  Every process is
 * stopped by PID at the end (the cluster's close, and tu_kill_all), stopped
 * ones continued first. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define OK(x) assert_int_equal((x), 0)

DT_TASK(inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

DT_TASK(add) {
  int64_t a, b;
  if (dt_task_arg_int(task, 0, &a) || dt_task_arg_int(task, 1, &b)) return NULL;
  return dt_int(a + b);
}

DT_TASK(forever) { /* never returns (the process is stopped around it) */
  (void)task;
  for (;;) sleep(1);
  return NULL;
}

static dt_local_cluster *lc;
static dt_client *client;
static pid_t stopped[4]; /* processes the test stopped: continued at the end */

static void cont_all(void) {
  for (int i = 0; i < 4; i++)
    if (stopped[i] > 0) {
      kill(stopped[i], SIGCONT);
      stopped[i] = 0;
    }
}

static void stop_pid(pid_t p) {
  for (int i = 0; i < 4; i++)
    if (stopped[i] <= 0) {
      stopped[i] = p;
      break;
    }
  assert_int_equal(kill(p, SIGSTOP), 0);
}

static int start(dt_local_cluster_opts o, int hb_ms) {
  atexit(cont_all);
  return tu_local_start(o, (dt_client_opts){.heartbeat_timeout_ms = hb_ms}, &lc, &client);
}

static int stop(void **state) {
  (void)state;
  cont_all();
  tu_local_stop(&lc, &client);
  return 0;
}

static pid_t worker_of(int i) { return tu_child_of(dt_local_cluster_worker_pid(lc, i)); }

/* run func(x) on worker w (strictly, or preferred when loose); its value */
static int64_t run_on(const char *func, dt_value *args, const char *w, bool loose, dt_future **keep) {
  const char *ws[] = {w};
  dt_future *f;
  dt_value *v = NULL;
  dt_submit_opts o = {.pure = DT_NO, .workers = ws, .n_workers = 1, .allow_other_workers = loose};
  if (dt_client_submit(client, func, args, NULL, &o, &f) != 0) return -1;
  int rc = dt_future_result(f, 20000, &v);
  int64_t r = rc == 0 ? dt_value_int(v) : -1000 - rc;
  dt_value_free(v);
  if (keep) *keep = f;
  else dt_future_release(f);
  return r;
}

/* ---------------------------------------------------------------- 2: a stopped worker */

static int setup_ttl(void **state) {
  (void)state;
  return start((dt_local_cluster_opts){.n_workers = 2, .threads_per_worker = 1, .worker_ttl = "2s"}, 0);
}

/* a is done on W0; W1 has a connection to W0 (it fetched from it before);
 * W0 is stopped.  b = inc(a) pinned to W1 fetches a from W0 and, today,
 * waits forever on that connection.  W0 is removed after worker-ttl: W1 is
 * told (WORKER_GONE), its fetch fails over, a is recomputed, b finishes,
 * and so does a graph over ten results only W0 held, all while W0 is still
 * stopped.  Continued, W0 re-registers and the cluster works on. */
static void test_stopped_worker_fetch(void **state) {
  (void)state;
  const char *W0 = "local-worker-0", *W1 = "local-worker-1";
  dt_future *warm, *a, *leaves[10];
  assert_int_equal(run_on("inc", dt_list_of(1, dt_int(5)), W0, true, &warm), 6);
  /* W1 fetches from W0: a connection W1 -> W0 is open from now on */
  assert_int_equal(run_on("inc", dt_list_of(1, dt_future_value(warm)), W1, false, NULL), 7);
  assert_int_equal(run_on("inc", dt_list_of(1, dt_int(1)), W0, true, &a), 2);
  for (int i = 0; i < 10; i++)
    assert_int_equal(run_on("inc", dt_list_of(1, dt_int(10 * i)), W0, true, &leaves[i]), 10 * i + 1);
  pid_t w0 = worker_of(0);
  assert_true(w0 > 0);
  stop_pid(w0);
  double t0 = tu_now();
  /* the minimal case */
  assert_int_equal(run_on("inc", dt_list_of(1, dt_future_value(a)), W1, false, NULL), 3);
  double minimal = tu_now() - t0;
  /* a dependent graph: pairs summed on W1, then their sum */
  dt_future *sums[5], *total;
  const char *ws[] = {W1};
  dt_submit_opts o = {.pure = DT_NO, .workers = ws, .n_workers = 1};
  for (int i = 0; i < 5; i++)
    OK(dt_client_submit(client, "add",
                        dt_list_of(2, dt_future_value(leaves[2 * i]), dt_future_value(leaves[2 * i + 1])),
                        NULL, &o, &sums[i]));
  OK(dt_client_submit(client, "add", dt_list_of(2, dt_future_value(sums[0]), dt_future_value(sums[1])),
                      NULL, &(dt_submit_opts){.pure = DT_NO}, &total));
  dt_value *vs[5], *tv;
  OK(dt_client_gather(client, sums, 5, 20000, vs));
  OK(dt_future_result(total, 20000, &tv));
  double graph = tu_now() - t0;
  for (int i = 0; i < 5; i++) {
    assert_int_equal(dt_value_int(vs[i]), (20 * i + 1) + (20 * i + 11));
    dt_value_free(vs[i]);
    dt_future_release(sums[i]);
  }
  assert_int_equal(dt_value_int(tv), 1 + 11 + 21 + 31);
  dt_value_free(tv);
  dt_future_release(total);
  /* all of it while W0 was stopped */
  char st = 0;
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)w0);
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  assert_int_equal(sscanf(strrchr(buf, ')') + 1, " %c", &st), 1);
  assert_int_equal(st, 'T');
  fprintf(stderr, "stopped worker: b=inc(a) %.1f s, the graph %.1f s after SIGSTOP (worker-ttl 2 s)\n",
          minimal, graph);
  /* continued, it re-registers (its old connection was dropped) */
  cont_all();
  assert_int_equal(tu_wait_workers(client, 2, 30), 2);
  assert_int_equal(run_on("inc", dt_list_of(1, dt_int(41)), W0, false, NULL), 42);
  assert_int_equal(run_on("inc", dt_list_of(1, dt_future_value(a)), W1, false, NULL), 3);
  assert_int_equal(run_on("inc", dt_list_of(1, dt_future_value(a)), W0, false, NULL), 3);
  dt_future_release(a);
  dt_future_release(warm);
  for (int i = 0; i < 10; i++) dt_future_release(leaves[i]);
}

/* ---------------------------------------------------------------- 3: cancelled, still running */

static int setup_2x1(void **state) {
  (void)state;
  return start((dt_local_cluster_opts){.n_workers = 2, .threads_per_worker = 1}, 0);
}

/* submit forever() on worker w (strictly) and wait until it runs there */
static dt_future *start_forever(const char *w, double timeout) {
  const char *ws[] = {w};
  dt_future *f;
  dt_submit_opts o = {.pure = DT_NO, .workers = ws, .n_workers = 1, .timeout = timeout};
  if (dt_client_submit(client, "forever", NULL, NULL, &o, &f) != 0) return NULL;
  dt_cluster_info info = {0};
  for (int i = 0; i < 500; i++) {
    if (dt_client_cluster_info(client, 2000, &info) == 0 && info.n_processing == 1) break;
    usleep(10000);
  }
  usleep(300000); /* on its thread by now */
  return f;
}

/* 50 tasks after a cancelled endless task: each returns the right value
 * (today about half wait forever behind the cancelled one's thread) */
static void run_50(void) {
  enum { N = 50 };
  dt_value *args[N], *vs[N];
  dt_future *fs[N];
  for (int i = 0; i < N; i++) args[i] = dt_list_of(1, dt_int(i));
  OK(dt_client_map(client, "inc", args, N, &(dt_submit_opts){.pure = DT_NO}, fs));
  OK(dt_client_gather(client, fs, N, 20000, vs));
  for (int i = 0; i < N; i++) {
    assert_int_equal(dt_value_int(vs[i]), i + 1);
    dt_value_free(vs[i]);
    dt_future_release(fs[i]);
  }
}

/* A cancelled task that never returns keeps its worker's only thread: the
 * scheduler counts it busy, and 50 later tasks all run on the other worker.
 * cancel(force=True) of one on the other worker restarts that worker (a new
 * process), and the tasks pinned to it run there. */
static void test_cancelled_running(void **state) {
  (void)state;
  const char *W1 = "local-worker-1";
  dt_future *f = start_forever("local-worker-0", 0);
  assert_non_null(f);
  OK(dt_future_cancel(f));
  dt_future_release(f);
  run_50();
  run_50(); /* and again: the thread is still held */
  /* force */
  pid_t w1 = worker_of(1);
  assert_true(w1 > 0);
  f = start_forever(W1, 0);
  assert_non_null(f);
  OK(dt_future_cancel_force(f));
  dt_future_release(f);
  assert_int_equal(run_on("inc", dt_list_of(1, dt_int(7)), W1, false, NULL), 8);
  pid_t now = worker_of(1);
  assert_true(now > 0);
  assert_true(now != w1); /* restarted by its nanny */
}

/* A task with timeout=1 s that never returns fails with DT_ETIMEDOUT naming
 * its deadline; its worker restarts and runs tasks again. */
static void test_deadline(void **state) {
  (void)state;
  const char *W0 = "local-worker-0";
  pid_t w0 = worker_of(0);
  dt_future *f = start_forever(W0, 1.0);
  assert_non_null(f);
  dt_value *v = NULL;
  double t0 = tu_now();
  int rc = dt_future_result(f, 20000, &v);
  char err[600];
  snprintf(err, sizeof(err), "%s", dt_last_error());
  fprintf(stderr, "deadline: failed %.1f s after it started: %s\n", tu_now() - t0, err);
  assert_int_equal(rc, DT_ETIMEDOUT);
  assert_int_equal(dt_future_status_get(f), DT_ERROR);
  assert_non_null(strstr(err, "past its deadline of 1 s"));
  dt_future_release(f);
  assert_int_equal(tu_wait_workers(client, 2, 30), 2);
  assert_int_equal(run_on("inc", dt_list_of(1, dt_int(1)), W0, false, NULL), 2);
  assert_true(worker_of(0) != w0);
  run_50();
}

/* ---------------------------------------------------------------- 4: a frozen scheduler */

static int setup_hb(void **state) {
  (void)state;
  return start((dt_local_cluster_opts){.n_workers = 2, .threads_per_worker = 1}, 2000);
}

/* With the scheduler stopped, a client waiting for a result hears nothing;
 * after its heartbeat timeout (2 s here) the wait ends with DT_ECONNLOST,
 * naming the scheduler and the silence. */
static void test_frozen_scheduler(void **state) {
  (void)state;
  dt_future *f;
  OK(dt_client_submit(client, "forever", NULL, NULL, &(dt_submit_opts){.pure = DT_NO}, &f));
  pid_t s = dt_local_cluster_scheduler_pid(lc);
  assert_true(s > 0);
  usleep(200000);
  stop_pid(s);
  double t0 = tu_now();
  dt_value *v = NULL;
  int rc = dt_future_result(f, 30000, &v); /* today: DT_ETIMEDOUT after 30 s */
  double took = tu_now() - t0;
  char err[600];
  snprintf(err, sizeof(err), "%s", dt_last_error());
  cont_all();
  fprintf(stderr, "frozen scheduler: the wait returned after %.1f s (heartbeat timeout 2 s): %s\n", took, err);
  assert_int_equal(rc, DT_ECONNLOST);
  assert_non_null(strstr(err, dt_local_cluster_address(lc)));
  assert_non_null(strstr(err, "not answered"));
  dt_future_release(f);
  /* continued, the scheduler serves a new client */
  dt_client_close(client);
  client = NULL;
  OK(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &client));
  OK(dt_client_submit(client, "inc", dt_list_of(1, dt_int(1)), NULL, &(dt_submit_opts){.pure = DT_NO}, &f));
  /* (one worker's only thread is still in forever(): the other runs it) */
  OK(dt_future_result(f, 20000, &v));
  assert_int_equal(dt_value_int(v), 2);
  dt_value_free(v);
  dt_future_release(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_stopped_worker_fetch, setup_ttl, stop),
      cmocka_unit_test_setup_teardown(test_cancelled_running, setup_2x1, stop),
      cmocka_unit_test_setup_teardown(test_deadline, setup_2x1, stop),
      cmocka_unit_test_setup_teardown(test_frozen_scheduler, setup_hb, stop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
