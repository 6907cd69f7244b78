/* journal_coord_test.c -- issue 18: the coordination primitives survive a
 * scheduler killed with SIGKILL and started again on its journal.  Before
 * the crash: a Variable holding a list with a future, a Queue with items, a
 * set Event, a Lock and a Semaphore lease held by a client that survives
 * the crash, a Lock held by a client that does not come back, and two
 * calls blocked at the scheduler (Queue.get on an empty queue, Lock.acquire
 * of the held lock).  After the restart: the values and items are there,
 * the surviving client still holds its lock and lease, the blocked calls
 * complete with the right values once what they wait for happens, and the
 * lock of the client that did not come back is free after the client
 * grace.  The scheduler and worker are this program re-executed
 * (DTASK_ROLE), each stopped by PID at the end. */
#include <glob.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define OK(x) assert_int_equal((x), 0)

DT_TASK(jcinc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

static char self[4096], addr[64], journal[256];
static int port, nstart;

static pid_t spawn_role(const char *role, const char *args, const char *log) {
  setenv("JC_CHILD", "1", 1);
  pid_t p = tu_spawn_role(self, role, args, log);
  unsetenv("JC_CHILD");
  return p;
}

static pid_t start_scheduler(void) {
  char args[1024], log[256];
  snprintf(args, sizeof(args),
           "--host\x1f" "127.0.0.1\x1f--port\x1f%d\x1f--no-dashboard\x1f--journal\x1f%s\x1f"
           "--journal-grace\x1f" "3s\x1f--journal-client-grace\x1f" "4s",
           port, journal);
  snprintf(log, sizeof(log), "/tmp/dtask-jc-%d-sched%d.log", (int)getpid(), nstart++);
  return spawn_role("scheduler", args, log);
}

static pid_t start_worker(void) {
  char args[512], log[256];
  snprintf(args, sizeof(args), "%s\x1f--nthreads\x1f" "1\x1f--no-nanny\x1f--name\x1fjc-w", addr);
  snprintf(log, sizeof(log), "/tmp/dtask-jc-%d-worker.log", (int)getpid());
  return spawn_role("worker", args, log);
}

static dt_client *connect_client(const char *name) { return tu_connect_retry(addr, name, 50); }

/* the calls blocked across the restart */
typedef struct {
  dt_client *c;
  int rc;
  int64_t got;
  atomic_int done; /* set last: rc and got are read after seeing it */
} blocked;

static void *queue_getter(void *arg) {
  blocked *b = arg;
  dt_value *v = NULL;
  b->rc = dt_queue_get(b->c, "jc-Q2", 60000, &v);
  if (b->rc) fprintf(stderr, "blocked queue get: %s\n", dt_last_error());
  b->got = v ? dt_value_int(v) : -1;
  dt_value_free(v);
  b->done = 1;
  return NULL;
}

static void *lock_taker(void *arg) {
  blocked *b = arg;
  b->rc = dt_lock_acquire(b->c, "jc-L", 60000);
  if (b->rc) fprintf(stderr, "blocked lock acquire: %s\n", dt_last_error());
  b->done = 1;
  return NULL;
}

static void wait_done(blocked *b) {
  for (int i = 0; i < 3000 && !b->done; i++) usleep(10000);
  assert_true(b->done);
}

static void test_coordination_survives_restart(void **state) {
  (void)state;
  port = tu_free_port();
  assert_true(port > 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  snprintf(journal, sizeof(journal), "/tmp/dtask-jc-%d.journal", (int)getpid());
  unlink(journal);
  pid_t sched = start_scheduler();
  assert_true(sched > 0);
  pid_t w = start_worker();
  assert_true(w > 0);
  dt_client *a = connect_client("jc-a"), *b = connect_client("jc-b");
  dt_client *gone = connect_client("jc-gone");
  assert_non_null(a);
  assert_non_null(b);
  assert_non_null(gone);
  /* a future's result, held by a variable */
  dt_future *f;
  OK(dt_client_submit(a, "jcinc", dt_list_of(1, dt_int(41)), NULL, NULL, &f));
  dt_value *fv = NULL;
  OK(dt_future_result(f, 30000, &fv));
  assert_int_equal(dt_value_int(fv), 42);
  dt_value_free(fv);
  dt_value *var = dt_list_of(2, dt_int(7), dt_future_value(f));
  OK(dt_variable_set(a, "jc-V", var));
  dt_value_free(var);
  dt_future_release(f); /* only the variable holds it now */
  for (int i = 1; i <= 3; i++) {
    dt_value *x = dt_int(i);
    OK(dt_queue_put(a, "jc-Q", x, 0, 5000));
    dt_value_free(x);
  }
  dt_value *x = NULL;
  OK(dt_queue_get(b, "jc-Q", 5000, &x));
  assert_int_equal(dt_value_int(x), 1);
  dt_value_free(x);
  OK(dt_event_set(a, "jc-E"));
  OK(dt_lock_acquire(a, "jc-L", 5000));
  OK(dt_semaphore_acquire(a, "jc-S", 2, 5000));
  OK(dt_lock_acquire(gone, "jc-LG", 5000));
  /* b blocks on an empty queue and on the held lock */
  blocked qb = {.c = b}, lb = {.c = b};
  pthread_t t1, t2;
  assert_int_equal(pthread_create(&t1, NULL, queue_getter, &qb), 0);
  assert_int_equal(pthread_create(&t2, NULL, lock_taker, &lb), 0);
  usleep(500000); /* both requests reach the scheduler and wait there */
  assert_false(qb.done);
  assert_false(lb.done);
  /* the crash; the client "jc-gone" does not come back */
  tu_stop(sched, SIGKILL);
  dt_client_close(gone);
  usleep(200000);
  sched = start_scheduler();
  assert_true(sched > 0);
  /* a reconnects by itself: its calls work again within a bounded time */
  int64_t n = -1;
  int rc = -1;
  for (int i = 0; i < 300 && rc != 0; i++) {
    rc = dt_queue_qsize(a, "jc-Q", &n);
    if (rc) usleep(50000);
  }
  OK(rc);
  assert_int_equal(n, 2);
  assert_false(qb.done);
  assert_false(lb.done);
  /* the variable: its value and the future's result */
  dt_value *got = NULL;
  OK(dt_variable_get(a, "jc-V", 5000, &got));
  assert_int_equal(dt_value_type(got), DT_LIST);
  assert_int_equal(dt_value_int(dt_list_get(got, 0)), 7);
  dt_future *gf = dt_value_future(dt_list_get(got, 1));
  assert_non_null(gf);
  OK(dt_future_result(gf, 30000, &fv));
  assert_int_equal(dt_value_int(fv), 42);
  dt_value_free(fv);
  dt_value_free(got);
  /* the queue's items, in order */
  OK(dt_queue_get(a, "jc-Q", 5000, &x));
  assert_int_equal(dt_value_int(x), 2);
  dt_value_free(x);
  bool set = false;
  OK(dt_event_is_set(a, "jc-E", &set));
  assert_true(set);
  /* a still holds its lease and its lock */
  OK(dt_semaphore_value(a, "jc-S", &n));
  assert_int_equal(n, 1);
  OK(dt_semaphore_release(a, "jc-S"));
  OK(dt_semaphore_value(a, "jc-S", &n));
  assert_int_equal(n, 0);
  bool locked = false;
  OK(dt_lock_locked(a, "jc-L", &locked));
  assert_true(locked);
  /* b's blocked calls complete when what they wait for happens */
  x = dt_int(99);
  OK(dt_queue_put(a, "jc-Q2", x, 0, 5000));
  dt_value_free(x);
  wait_done(&qb);
  OK(qb.rc);
  assert_int_equal(qb.got, 99);
  assert_false(lb.done);
  OK(dt_lock_release(a, "jc-L")); /* a held it: the release is accepted */
  wait_done(&lb);
  OK(lb.rc);
  OK(dt_lock_release(b, "jc-L"));
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  /* the lock of the client that did not come back: free past the grace */
  OK(dt_lock_acquire(a, "jc-LG", 30000));
  OK(dt_lock_release(a, "jc-LG"));
  dt_client_close(a);
  dt_client_close(b);
  tu_stop(w, SIGKILL);
  tu_stop(sched, SIGTERM);
  unlink(journal);
}

int main(void) {
  if (getenv("JC_CHILD")) return 1; /* a child that did not take its role: never recurse */
  if (getenv("JC_NEVER_SET")) dt_local_cluster_start(NULL, NULL); /* links the role takeover */
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return 1;
  self[n] = '\0';
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_coordination_survives_restart),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (rc == 0) {
    glob_t g;
    char pat[128];
    snprintf(pat, sizeof(pat), "/tmp/dtask-jc-%d-*.log", (int)getpid());
    if (glob(pat, 0, NULL, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; i++) unlink(g.gl_pathv[i]);
    globfree(&g);
  }
  return rc;
}
