/* lifetime_test.c -- a worker's drain before it retires (--drain-file,
 * src/worker/lifetime.c; the batch jobs' --lifetime, docs/hpc.md): once the
 * file exists the worker reports itself paused and takes no new task, its
 * running task finishes, "idle" appears in the file; then the scheduler
 * retires it, moving the results only it held to the other worker, and
 * its process ends. */
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

static char bin[1024], preload[1024], dir[256];
static pid_t sched, wa, wb;
static char addr[128];
static dt_client *client;

static pid_t start_worker(const char *name, const char *drain) {
  char *argv[20] = {bin, "worker", addr, "--name", (char *)name, "--nthreads", "1", "--preload",
                    preload, "--log-level", "warning"};
  int k = 11;
  if (drain) {
    argv[k++] = "--drain-file";
    argv[k++] = (char *)drain;
  }
  argv[k] = NULL;
  return tu_spawn(argv, NULL);
}

static int setup(void **state) {
  (void)state;
  char file[300];
  snprintf(file, sizeof(file), "%s/sched.json", dir);
  char *sargv[] = {bin, "scheduler", "--port", "0", "--scheduler-file", file, "--log-level",
                   "warning", "--no-dashboard", NULL};
  sched = tu_spawn(sargv, NULL);
  char *txt = NULL;
  for (int i = 0; i < 500 && !(txt = tu_read_file(file)); i++) usleep(10000);
  assert_non_null(txt);
  char *a = strstr(txt, "tcp://");
  assert_non_null(a);
  snprintf(addr, sizeof(addr), "%s", a + 6);
  *strchr(addr, '"') = '\0';
  free(txt);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  dt_client_close(client);
  tu_stop(wa, SIGTERM);
  tu_stop(wb, SIGTERM);
  tu_stop(sched, SIGTERM);
  return 0;
}

/* lt-a's entry in the scheduler's worker list (false: not connected) */
static bool worker_a(dt_worker_info *out) {
  dt_worker_info *ws;
  size_t nw;
  OK(dt_client_workers(client, 5000, &ws, &nw));
  bool found = false;
  for (size_t i = 0; i < nw; i++)
    if (strcmp(ws[i].name, "lt-a") == 0) {
      *out = ws[i];
      found = true;
    }
  free(ws);
  return found;
}

static int64_t result_int(dt_future *f) {
  dt_value *v;
  OK(dt_future_result(f, 30000, &v));
  int64_t x = dt_value_int(v);
  dt_value_free(v);
  return x;
}

static void test_drain_then_retire(void **state) {
  (void)state;
  char drain[300];
  snprintf(drain, sizeof(drain), "%s/drain", dir);
  wa = start_worker("lt-a", drain);
  wb = start_worker("lt-b", NULL);
  OK(dt_client_connect(&(dt_client_opts){.address = addr}, &client));
  OK(dt_client_wait_for_workers(client, 2, 20000));
  const char *on_a[] = {"lt-a"};
  dt_submit_opts pin = {.pure = DT_NO, .workers = on_a, .n_workers = 1};
  /* a result only lt-a holds, then a task running there */
  dt_future *held, *slow;
  OK(dt_client_submit(client, "square", dt_list_of(1, dt_int(5)), NULL, &pin, &held));
  assert_int_equal(result_int(held), 25);
  OK(dt_client_submit(client, "slow_square", dt_list_of(2, dt_int(2), dt_int(1500)), NULL, &pin,
                      &slow));
  dt_worker_info w;
  double t0 = tu_now();
  while (tu_now() - t0 < 10 && !(worker_a(&w) && w.processing == 1)) usleep(20000);
  assert_int_equal(w.processing, 1);
  /* drain: lt-a says it is paused while its task still runs */
  FILE *f = fopen(drain, "w");
  assert_non_null(f);
  fclose(f);
  t0 = tu_now();
  while (tu_now() - t0 < 10 && !(worker_a(&w) && w.paused)) usleep(20000);
  assert_true(w.paused);
  assert_false(dt_future_done(slow));
  char *txt = tu_read_file(drain);
  assert_true(txt == NULL || strstr(txt, "idle") == NULL);
  free(txt);
  /* new tasks go to lt-b only */
  dt_future *more[6];
  for (int i = 0; i < 6; i++)
    OK(dt_client_submit(client, "square", dt_list_of(1, dt_int(10 + i)), NULL,
                        &(dt_submit_opts){.pure = DT_NO}, &more[i]));
  for (int i = 0; i < 6; i++) assert_int_equal(result_int(more[i]), (10 + i) * (10 + i));
  /* the running task finishes; then lt-a is idle */
  assert_int_equal(result_int(slow), 4);
  t0 = tu_now();
  txt = NULL;
  while (tu_now() - t0 < 10) {
    free(txt);
    txt = tu_read_file(drain);
    if (txt && strstr(txt, "idle")) break;
    usleep(50000);
  }
  assert_non_null(txt);
  assert_non_null(strstr(txt, "idle"));
  free(txt);
  assert_true(worker_a(&w));
  assert_int_equal(w.n_keys, 2); /* held and slow: nothing new ran there */
  /* retire it: its results move to lt-b, then it closes and its process ends */
  int retired = 0;
  OK(dt_client_retire_workers(client, on_a, 1, 30000, &retired));
  assert_int_equal(retired, 1);
  t0 = tu_now();
  while (tu_now() - t0 < 15 && tu_alive(wa)) usleep(50000);
  assert_false(tu_alive(wa));
  assert_false(worker_a(&w));
  dt_future_release(held);
  dt_future_release(slow);
  /* the results are still there (on lt-b): asked again by key, no recompute */
  dt_future *again;
  OK(dt_client_submit(client, "slow_square", dt_list_of(2, dt_int(3), dt_int(10)), NULL,
                      &(dt_submit_opts){.pure = DT_NO}, &again));
  assert_int_equal(result_int(again), 9);
  dt_future_release(again);
  for (int i = 0; i < 6; i++) dt_future_release(more[i]);
}

/* the moved results: a task needing a result lt-a alone held runs after lt-a is gone */
static void test_moved_results_survive(void **state) {
  (void)state;
  char drain[300];
  snprintf(drain, sizeof(drain), "%s/drain2", dir);
  wa = start_worker("lt-a", drain);
  wb = start_worker("lt-b", NULL);
  OK(dt_client_connect(&(dt_client_opts){.address = addr}, &client));
  OK(dt_client_wait_for_workers(client, 2, 20000));
  const char *on_a[] = {"lt-a"};
  dt_future *held;
  OK(dt_client_submit(client, "square", dt_list_of(1, dt_int(12)), NULL,
                      &(dt_submit_opts){.pure = DT_NO, .workers = on_a, .n_workers = 1}, &held));
  assert_int_equal(result_int(held), 144);
  FILE *f = fopen(drain, "w");
  assert_non_null(f);
  fclose(f);
  double t0 = tu_now();
  char *txt = NULL;
  while (tu_now() - t0 < 10) {
    free(txt);
    txt = tu_read_file(drain);
    if (txt && strstr(txt, "idle")) break;
    usleep(50000);
  }
  assert_non_null(txt);
  free(txt);
  int retired = 0;
  OK(dt_client_retire_workers(client, on_a, 1, 30000, &retired));
  assert_int_equal(retired, 1);
  t0 = tu_now();
  while (tu_now() - t0 < 15 && tu_alive(wa)) usleep(50000);
  assert_false(tu_alive(wa));
  /* a task that depends on the moved result runs on lt-b with it */
  dt_future *dep;
  OK(dt_client_submit(client, "square", dt_list_of(1, dt_future_value(held)), NULL,
                      &(dt_submit_opts){.pure = DT_NO}, &dep));
  assert_int_equal(result_int(dep), 144 * 144);
  dt_future_release(dep);
  dt_future_release(held);
}

int main(void) {
  const char *b = getenv("DTASK_BIN"), *p = getenv("DTASK_PRELOAD_LIB");
  if (!b || !p) {
    fprintf(stderr, "run through ctest (DTASK_BIN, DTASK_PRELOAD_LIB)\n");
    return 1;
  }
  snprintf(bin, sizeof(bin), "%s", b);
  snprintf(preload, sizeof(preload), "%s", p);
  snprintf(dir, sizeof(dir), "/tmp/dtask-lifetime-XXXXXX");
  if (!mkdtemp(dir)) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_drain_then_retire, setup, teardown),
      cmocka_unit_test_setup_teardown(test_moved_results_survive, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0 && rc == 0) rc = 1;
  return rc;
}
