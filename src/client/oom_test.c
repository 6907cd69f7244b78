/* oom_test.c -- out of memory in the client library: with a real scheduler
 * and worker (started from $DTASK_BIN, tasks from $DTASK_PRELOAD_LIB), a
 * short client session runs again and again while the Nth allocation the
 * library makes on this thread fails (dt__alloc_fail_hook), N = 0, 1, 2, ...
 * until a session makes fewer than N allocations; then again with every
 * allocation from the Nth on failing.  Every call must return 0 or
 * DT_ENOMEM with a message, nothing may abort, and once the hook is cleared
 * the same session must succeed.  (The ASan build checks that a failed
 * call leaks nothing.)  Loops are bounded in count and time; every process
 * started is stopped by PID, also when a check fails. */
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../tests/testutil.h"
#include "common/common.h"
#include "proto/alloc.h"

enum { MAX_N = 3000 };
static const double TIME_BUDGET_S = 200; /* both modes together */

static char dir[64], addr[128];
static pid_t sched_pid = -1, worker_pid = -1;

/* ---------------------------------------------------------------- fault injection */

/* Only allocations made on the test's thread inside a library call count:
 * the test's own values are built outside (a NULL argument would change
 * what the session means), and the client's I/O thread may abort on out of
 * memory by design (client.h). */
static pthread_t main_thread;
static bool in_lib;      /* set around library calls (main thread only) */
static long n_allocs;    /* allocations counted since arm() */
static long fail_at;     /* the first one to fail */
static bool fail_rest;   /* and every one after it */

static bool hook(size_t n) {
  (void)n;
  if (!pthread_equal(pthread_self(), main_thread) || !in_lib) return false;
  long k = n_allocs++;
  return fail_rest ? k >= fail_at : k == fail_at;
}
static void arm(long n, bool rest) {
  n_allocs = 0;
  fail_at = n;
  fail_rest = rest;
  dt__alloc_fail_hook = hook;
}
static bool disarm(void) { /* true if a failure was injected */
  dt__alloc_fail_hook = NULL;
  return n_allocs > fail_at;
}

/* ---------------------------------------------------------------- checks */

static int n_enomem;

/* check: 0 or DT_ENOMEM with a message; anything else fails the test */
static int check(int rc, const char *what) {
  if (rc == 0) return 0;
  if (rc == DT_ENOMEM) {
    if (!dt_last_error()[0]) fail_msg("%s: DT_ENOMEM without a message", what);
    n_enomem++;
    return rc;
  }
  fail_msg("%s: rc %d (%s): %s (allocation %ld of the session failed)", what, rc,
           dt_err_name(rc), dt_last_error(), fail_at);
  return rc;
}

/* CALL: a library call returning an error code, counted by the hook (so
 * its arguments are built before it) */
#define CALL(what, expr)                                                                 \
  do {                                                                                   \
    dt__err_clear();                                                                     \
    in_lib = true;                                                                       \
    int rc_ = (expr);                                                                    \
    in_lib = false;                                                                      \
    if ((rc = check(rc_, what)) != 0) goto out;                                          \
  } while (0)
/* CALLP: one returning a pointer (NULL: out of memory) */
#define CALLP(what, var, expr)                                                           \
  do {                                                                                   \
    dt__err_clear();                                                                     \
    in_lib = true;                                                                       \
    var = (expr);                                                                        \
    in_lib = false;                                                                      \
    if (!var && (rc = check(DT_ENOMEM, what)) != 0) goto out;                            \
  } while (0)

static dt_value *ints(int n, ...) { /* a list of ints, built outside the hook */
  dt_value *l = dt_list_new();
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) assert_int_equal(dt_list_push(l, dt_int(va_arg(ap, int))), 0);
  va_end(ap);
  assert_non_null(l);
  return l;
}

static int64_t int_of(const dt_value *v) {
  assert_non_null(v);
  assert_int_equal(dt_value_type(v), DT_INT);
  return dt_value_int(v);
}

static void on_done(dt_future *f, void *arg) {
  (void)f;
  ++*(int *)arg;
}

/* ---------------------------------------------------------------- the session */

/* session: connect, submit, map, a dependency, gather, result, cancel, a
 * done callback, as_completed, wait, scatter, a graph, cluster info and the
 * workers' rows, close.  Stops at the first DT_ENOMEM and returns it, after
 * releasing everything (that part counted by the hook too). */
static int session(void) {
  int rc = 0, called = 0;
  dt_client *c = NULL;
  dt_future *f1 = NULL, *fs[4] = {0}, *fdep = NULL, *fslow = NULL, *fsc = NULL, *fg = NULL;
  dt_future *next = NULL;
  dt_value *vals[6] = {0}, *v = NULL, *fv = NULL, *gref = NULL;
  dt_as_completed *ac = NULL;
  dt_graph *g = NULL;
  dt_worker_info *ws = NULL;
  size_t nws = 0;

  CALL("dt_client_connect", dt_client_connect(&(dt_client_opts){.address = addr}, &c));
  dt_value *a3 = ints(1, 3); /* every argument is built before its call */
  CALL("dt_client_submit", dt_client_submit(c, "square", a3, NULL, NULL, &f1));
  dt_value *args[4] = {ints(1, 1), ints(1, 2), ints(1, 3), ints(1, 4)};
  CALL("dt_client_map", dt_client_map(c, "square", args, 4, NULL, fs));
  CALLP("dt_future_value", fv, dt_future_value(f1));
  dt_value *dep = dt_list_new();
  assert_non_null(dep);
  assert_int_equal(dt_list_push(dep, fv), 0); /* fv moves into the list */
  fv = NULL;
  CALL("dt_client_submit (dependency)", dt_client_submit(c, "square", dep, NULL, NULL, &fdep));
  dt_value *a530 = ints(2, 5, 30);
  CALL("dt_client_submit (to cancel)",
       dt_client_submit(c, "slow_square", a530, NULL, &(dt_submit_opts){.pure = DT_NO}, &fslow));
  dt_future *all[6] = {f1, fs[0], fs[1], fs[2], fs[3], fdep};
  CALL("dt_client_gather", dt_client_gather(c, all, 6, 30000, vals));
  const int64_t want[6] = {9, 1, 4, 9, 16, 81};
  for (int i = 0; i < 6; i++) assert_int_equal(int_of(vals[i]), want[i]);
  CALL("dt_future_result", dt_future_result(f1, 30000, &v));
  assert_int_equal(int_of(v), 9);
  CALL("dt_future_cancel", dt_future_cancel(fslow));
  CALL("dt_future_add_done_callback", dt_future_add_done_callback(f1, on_done, &called));
  assert_int_equal(called, 1); /* f1 is done: it ran at once */
  CALLP("dt_as_completed_new", ac, dt_as_completed_new(fs, 4));
  for (int i = 0; i < 4; i++) {
    CALL("dt_as_completed_next", dt_as_completed_next(ac, 10000, &next));
    dt_future_release(next);
    next = NULL;
  }
  CALL("dt_wait", dt_wait(fs, 4, 10000, DT_ALL_COMPLETED));
  dt_value *sv[1] = {dt_int(7)};
  assert_non_null(sv[0]);
  CALL("dt_client_scatter", dt_client_scatter(c, sv, 1, NULL, &fsc));
  dt_value_free(v);
  v = NULL;
  CALL("dt_future_result (scattered)", dt_future_result(fsc, 30000, &v));
  assert_int_equal(int_of(v), 7);
  CALLP("dt_graph_new", g, dt_graph_new());
  dt_value *a6 = ints(1, 6);
  CALL("dt_graph_add", dt_graph_add(g, "square", a6, NULL, NULL, &gref));
  dt_value *outs[1] = {gref};
  CALL("dt_graph_submit", dt_graph_submit(c, g, outs, 1, &fg));
  dt_value_free(v);
  v = NULL;
  CALL("dt_future_result (graph)", dt_future_result(fg, 30000, &v));
  assert_int_equal(int_of(v), 36);
  dt_cluster_info info;
  CALL("dt_client_cluster_info", dt_client_cluster_info(c, 10000, &info));
  assert_true(info.n_workers >= 1);
  CALL("dt_client_workers", dt_client_workers(c, 10000, &ws, &nws));
  assert_true(nws >= 1);

out:
  in_lib = true; /* the clean-up is the library's too */
  free(ws);
  dt_as_completed_free(ac);
  dt_graph_free(g);
  dt_value_free(gref);
  dt_value_free(fv);
  dt_value_free(v);
  for (int i = 0; i < 6; i++) dt_value_free(vals[i]);
  dt_future_release(f1);
  for (int i = 0; i < 4; i++) dt_future_release(fs[i]);
  dt_future_release(fdep);
  dt_future_release(fslow);
  dt_future_release(fsc);
  dt_future_release(fg);
  dt_client_close(c);
  in_lib = false;
  return rc;
}

/* ---------------------------------------------------------------- the cluster */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* The watchdog: a child process that kills the scheduler and the worker by
 * PID when this process dies in any way (an abort in the library is what
 * this test looks for; ASan's exit skips atexit), unless told 'q' first. */
static int watchdog_fd = -1;
static pid_t watchdog_pid = -1;

static void watchdog_start(void) {
  int p[2];
  if (pipe(p) != 0) return;
  pid_t pid = fork();
  if (pid == 0) { /* only async-signal-safe calls here */
    close(p[1]);
    char ch = 0;
    ssize_t r;
    while ((r = read(p[0], &ch, 1)) < 0) {
    }
    if (r == 0 || ch != 'q') {
      if (sched_pid > 0) kill(sched_pid, SIGKILL);
      if (worker_pid > 0) kill(worker_pid, SIGKILL);
    }
    _exit(0);
  }
  close(p[0]);
  if (pid < 0) {
    close(p[1]);
    return;
  }
  watchdog_fd = p[1];
  watchdog_pid = pid;
}

static int n_passed; /* tests that ran to their end */

static void stop_all(void) {
  if (watchdog_fd >= 0) {
    (void)!write(watchdog_fd, "q", 1);
    close(watchdog_fd);
    waitpid(watchdog_pid, NULL, 0);
    watchdog_fd = watchdog_pid = -1;
  }
  tu_stop(worker_pid, SIGTERM);
  tu_stop(sched_pid, SIGTERM);
  worker_pid = sched_pid = -1;
  if (!dir[0]) return;
  if (n_passed == 3) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  else fprintf(stderr, "oom_test: the processes' logs are in %s\n", dir);
}

static int cluster_up(void **state) {
  (void)state;
  main_thread = pthread_self();
  const char *b = getenv("DTASK_BIN"), *p = getenv("DTASK_PRELOAD_LIB");
  if (!b || !p) {
    fprintf(stderr, "run through ctest (DTASK_BIN, DTASK_PRELOAD_LIB)\n");
    return -1;
  }
  snprintf(dir, sizeof(dir), "/tmp/dtask-oom-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  char file[128], local[128], slog[128], sout[128], wlog[128], wout[128];
  snprintf(file, sizeof(file), "%s/sched.json", dir);
  snprintf(local, sizeof(local), "%s/worker", dir);
  snprintf(slog, sizeof(slog), "%s/scheduler.log", dir);
  snprintf(wlog, sizeof(wlog), "%s/worker.log", dir);
  snprintf(sout, sizeof(sout), "%s/scheduler.out", dir);
  snprintf(wout, sizeof(wout), "%s/worker.out", dir);
  char *sargv[] = {(char *)b, "scheduler", "--port", "0", "--scheduler-file", file, "--log-level",
                   "warning", "--no-dashboard", NULL};
  sched_pid = tu_spawn2(sargv, sout, slog);
  char *txt = NULL;
  for (int i = 0; i < 1000 && sched_pid > 0 && !(txt = tu_read_file(file)); i++) usleep(10000);
  char *a = txt ? strstr(txt, "tcp://") : NULL;
  if (!a || !strchr(a, '"')) {
    fprintf(stderr, "the scheduler wrote no address to %s\n", file);
    free(txt);
    stop_all();
    return -1;
  }
  snprintf(addr, sizeof(addr), "%s", a + 6);
  *strchr(addr, '"') = '\0';
  free(txt);
  char *wargv[] = {(char *)b, "worker", addr, "--nthreads", "4", "--preload", (char *)p,
                   "--no-nanny", "--local-directory", local, "--log-level", "warning", NULL};
  worker_pid = tu_spawn2(wargv, wout, wlog);
  watchdog_start(); /* before any thread of this process exists */
  dt_client *c = NULL;
  int rc = dt_client_connect(&(dt_client_opts){.address = addr}, &c);
  if (rc == 0) rc = dt_client_wait_for_workers(c, 1, 30000);
  if (rc) fprintf(stderr, "cluster: %s\n", dt_last_error());
  dt_client_close(c);
  if (rc) stop_all();
  return rc ? -1 : 0;
}

static int cluster_down(void **state) {
  (void)state;
  dt__alloc_fail_hook = NULL;
  in_lib = false;
  stop_all();
  return 0;
}

/* ---------------------------------------------------------------- tests */

/* run: N = 0, 1, ... until a session runs without an injected failure
 * (each failing one followed by a clean one when clean_after) */
static void run(bool rest, bool clean_after, double end) {
  long n;
  int sessions = 0, clean = 0;
  n_enomem = 0;
  for (n = 0; n < MAX_N; n++) {
    if (tu_now() > end) fail_msg("out of time at N = %ld (%d sessions)", n, sessions);
    arm(n, rest);
    int rc = session();
    bool injected = disarm();
    sessions++;
    if (!injected) {
      assert_int_equal(rc, 0); /* no failure: the session must have succeeded */
      break;
    }
    if (clean_after) {
      if (session() != 0) fail_msg("the session failed after the hook was cleared (N = %ld)", n);
      clean++;
    }
  }
  if (n == MAX_N) fail_msg("a session still made more than %d allocations", MAX_N);
  fprintf(stderr,
          "oom_test: %s: %ld allocations per session, %d sessions (%d clean), %d DT_ENOMEM\n",
          rest ? "every allocation from the Nth" : "the Nth allocation", n, sessions, clean,
          n_enomem);
  assert_true(n > 10);         /* the session allocates: the hook saw it */
  assert_true(n_enomem >= n / 2); /* and most failures came back as DT_ENOMEM */
}

static double t_end;

static void test_nth_allocation_fails(void **state) {
  (void)state;
  run(false, true, t_end);
  n_passed++;
}

static void test_every_allocation_from_nth_fails(void **state) {
  (void)state;
  int level = dt__log_level;
  dt__log_level = DT_LOG_ERROR; /* not one "key not released" warning per future */
  run(true, false, t_end);
  dt__log_level = level;
  assert_int_equal(session(), 0); /* and a clean one still works */
  n_passed++;
}

/* the scheduler holds nothing of the sessions once their clients closed */
static void test_nothing_left(void **state) {
  (void)state;
  dt_client *c = NULL;
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = addr}, &c), 0);
  int64_t n = tu_wait_tasks(c, 0, 20);
  dt_client_close(c);
  assert_int_equal(n, 0);
  n_passed++;
}

int main(void) {
  t_end = tu_now() + TIME_BUDGET_S;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nth_allocation_fails),
      cmocka_unit_test(test_every_allocation_from_nth_fails),
      cmocka_unit_test(test_nothing_left),
  };
  return cmocka_run_group_tests(tests, cluster_up, cluster_down);
}
