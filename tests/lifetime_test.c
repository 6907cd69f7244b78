/* lifetime_test.c -- a worker's drain before it retires (--drain-file,
 * src/worker/lifetime.c; the batch jobs' --lifetime, docs/hpc.md): once the
 * file exists the worker reports itself paused and takes no new task, its
 * running task finishes, "idle" appears in the file; then the scheduler
 * retires it, moving the results only it held to the other worker, and
 * its process ends.  And the worker's own --lifetime (with
 * --lifetime-stagger, --lifetime-restart): it retires by itself (RETIRE_ME)
 * while a graph runs on two workers -- every result right, every task run
 * once (each run is logged), its results read from the other worker
 * afterwards -- and exits 0, or its nanny starts a fresh one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define OK(x) do { int rc_ = (x); if (rc_) fail_msg("%s: %s", #x, dt_last_error()); } while (0)

static char bin[1024], preload[1024], dir[256];
static tu_cluster cl; /* the scheduler, and the workers the tests start */
static pid_t wa; /* lt-a (its nanny, with --lifetime) */
static dt_client *client;

static pid_t start_worker(const char *name, const char *drain) {
  return tu_cluster_add_worker(&cl, (const char *[]){"--name", name, drain ? "--drain-file" : NULL,
                                                     drain, NULL});
}

static int setup(void **state) {
  (void)state;
  tu_cluster_opts o = {.bin = bin, .preload = preload, .dir = dir, .log_level = "warning",
                       .nthreads = 1, .sched_args = (const char *[]){"--no-dashboard", NULL}};
  assert_int_equal(tu_cluster_start(&cl, &o), 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  dt_client_close(client);
  tu_cluster_stop(&cl);
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

/* the client, once both workers are there */
static void connect_both(void) {
  OK(dt_client_connect(&(dt_client_opts){.address = cl.addr}, &client));
  OK(dt_client_wait_for_workers(client, 2, 20000));
}

/* lt-a draining on the file DIR/name (its path in drain), lt-b, the client */
static void start_drain_pair(char *drain, size_t n, const char *name) {
  snprintf(drain, n, "%s/%s", dir, name);
  wa = start_worker("lt-a", drain);
  start_worker("lt-b", NULL);
  connect_both();
}

/* the drain file once it says "idle" (bounded: 10 s), or what it held last */
static char *drain_file_idle(const char *drain) {
  double t0 = tu_now();
  char *txt = NULL;
  while (tu_now() - t0 < 10) {
    free(txt);
    txt = tu_read_file(drain);
    if (txt && strstr(txt, "idle")) break;
    usleep(50000);
  }
  return txt;
}

/* retire lt-a: it leaves and its process ends (bounded: 15 s) */
static void retire_a(void) {
  const char *on_a[] = {"lt-a"};
  int retired = 0;
  OK(dt_client_retire_workers(client, on_a, 1, 30000, &retired));
  assert_int_equal(retired, 1);
  double t0 = tu_now();
  while (tu_now() - t0 < 15 && tu_alive(wa)) usleep(50000);
  assert_false(tu_alive(wa));
}

static void test_drain_then_retire(void **state) {
  (void)state;
  char drain[300];
  start_drain_pair(drain, sizeof(drain), "drain");
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
  txt = drain_file_idle(drain);
  assert_non_null(txt);
  assert_non_null(strstr(txt, "idle"));
  free(txt);
  assert_true(worker_a(&w));
  assert_int_equal(w.n_keys, 2); /* held and slow: nothing new ran there */
  /* retire it: its results move to lt-b, then it closes and its process ends */
  retire_a();
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
  start_drain_pair(drain, sizeof(drain), "drain2");
  const char *on_a[] = {"lt-a"};
  dt_future *held;
  OK(dt_client_submit(client, "square", dt_list_of(1, dt_int(12)), NULL,
                      &(dt_submit_opts){.pure = DT_NO, .workers = on_a, .n_workers = 1}, &held));
  assert_int_equal(result_int(held), 144);
  FILE *f = fopen(drain, "w");
  assert_non_null(f);
  fclose(f);
  char *txt = drain_file_idle(drain);
  assert_non_null(txt);
  free(txt);
  retire_a();
  /* a task that depends on the moved result runs on lt-b with it */
  dt_future *dep;
  OK(dt_client_submit(client, "square", dt_list_of(1, dt_future_value(held)), NULL,
                      &(dt_submit_opts){.pure = DT_NO}, &dep));
  assert_int_equal(result_int(dep), 144 * 144);
  dt_future_release(dep);
  dt_future_release(held);
}

/* ---------------------------------------------------------------- --lifetime */

static pid_t start_worker_lifetime(const char *name, bool restart) {
  return tu_cluster_add_worker(&cl, (const char *[]){"--name", name, "--lifetime", "2s",
                                                     "--lifetime-stagger", "0.5s",
                                                     restart ? "--lifetime-restart" : NULL, NULL});
}

#define NLEAF 40
#define NSUM 10

/* runs: how many times each tag ran (the log "tag pid" lines), and how many
 * of the runs were in process pid */
static void read_log(const char *path, int *runs, int ntags, pid_t pid, int *on_pid) {
  memset(runs, 0, sizeof(int) * (size_t)ntags);
  *on_pid = 0;
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  long tag;
  int p;
  while (fscanf(f, "%ld %d", &tag, &p) == 2) {
    assert_true(tag >= 0 && tag < ntags);
    runs[tag]++;
    if (p == pid) (*on_pid)++;
  }
  fclose(f);
}

static dt_value *logged_args(int ms, const char *path, int tag, dt_future **deps, int ndeps) {
  dt_value *v = dt_list_of(3 + (size_t)ndeps, dt_int(ms), dt_str(path), dt_int(tag),
                           ndeps > 0 ? dt_future_value(deps[0]) : NULL,
                           ndeps > 1 ? dt_future_value(deps[1]) : NULL,
                           ndeps > 2 ? dt_future_value(deps[2]) : NULL,
                           ndeps > 3 ? dt_future_value(deps[3]) : NULL);
  return v;
}

/* a graph on lt-a (whose lifetime is 2 s +- 0.5 s) and lt-b: 40 leaves of
 * 200 ms (tag i: i*i), 10 sums of 4 leaves (tag 100+j); lt-a retires by
 * itself meanwhile.  Returns lt-a's first pid. */
static pid_t graph_while_retiring(const char *log, dt_future **leaf, dt_future **sum) {
  connect_both();
  dt_worker_info w;
  assert_true(worker_a(&w));
  pid_t apid = w.pid;
  dt_submit_opts o = {.pure = DT_NO};
  for (int i = 0; i < NLEAF; i++)
    OK(dt_client_submit(client, "logged", logged_args(200, log, i, NULL, 0), NULL, &o, &leaf[i]));
  for (int j = 0; j < NSUM; j++)
    OK(dt_client_submit(client, "logged", logged_args(50, log, 100 + j, &leaf[4 * j], 4), NULL,
                        &o, &sum[j]));
  for (int i = 0; i < NLEAF; i++) assert_int_equal(result_int(leaf[i]), i * i);
  for (int j = 0; j < NSUM; j++) {
    int64_t want = (100 + j) * (100 + j);
    for (int k = 0; k < 4; k++) want += (4 * j + k) * (4 * j + k);
    assert_int_equal(result_int(sum[j]), want);
  }
  return apid;
}

/* after lt-a (first pid apid) retired: every task ran once, some on lt-a,
 * and the leaves it computed are read from elsewhere by new tasks (tag
 * 200+i), which do not run any leaf again */
static void check_runs(const char *log, pid_t apid, dt_future **leaf) {
  int runs[300], on_a;
  read_log(log, runs, 300, apid, &on_a);
  for (int i = 0; i < NLEAF; i++) assert_int_equal(runs[i], 1);
  for (int j = 0; j < NSUM; j++) assert_int_equal(runs[100 + j], 1);
  assert_true(on_a > 0); /* lt-a took part before it retired */
  /* the leaves that ran on lt-a, read by new tasks after it left */
  FILE *f = fopen(log, "r");
  assert_non_null(f);
  long tag;
  int p;
  bool ran_on_a[NLEAF] = {false};
  while (fscanf(f, "%ld %d", &tag, &p) == 2)
    if (tag < NLEAF && p == apid) ran_on_a[tag] = true;
  fclose(f);
  dt_future *reads[NLEAF] = {NULL};
  int nread = 0;
  for (int i = 0; i < NLEAF; i++)
    if (ran_on_a[i]) {
      OK(dt_client_submit(client, "logged", logged_args(0, log, 200 + i, &leaf[i], 1), NULL,
                          &(dt_submit_opts){.pure = DT_NO}, &reads[i]));
      nread++;
    }
  for (int i = 0; i < NLEAF; i++)
    if (reads[i]) {
      assert_int_equal(result_int(reads[i]), (200 + i) * (200 + i) + i * i);
      dt_future_release(reads[i]);
    }
  read_log(log, runs, 300, apid, &on_a);
  for (int i = 0; i < NLEAF; i++) assert_int_equal(runs[i], 1); /* nothing recomputed */
  int nreads = 0;
  for (int i = 0; i < NLEAF; i++) nreads += runs[200 + i];
  assert_int_equal(nreads, nread);
}

/* --lifetime 2s --lifetime-stagger 0.5s: lt-a retires by itself while the
 * graph runs, its process (a nanny and its worker) exits 0 */
static void test_lifetime_retires(void **state) {
  (void)state;
  char log[300];
  snprintf(log, sizeof(log), "%s/runs1", dir);
  start_worker("lt-b", NULL);
  wa = start_worker_lifetime("lt-a", false);
  dt_future *leaf[NLEAF], *sum[NSUM];
  pid_t apid = graph_while_retiring(log, leaf, sum);
  /* lt-a leaves (within its lifetime + stagger + drain, well under 20 s) */
  int status = -1;
  double t0 = tu_now();
  while (tu_now() - t0 < 20 && waitpid(wa, &status, WNOHANG) != wa) usleep(50000);
  tu_forget(wa);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0); /* not a crash: its nanny exited too */
  for (int i = 0; i < cl.n_workers; i++) /* reaped: not to be stopped again */
    if (cl.workers[i] == wa) cl.workers[i] = 0;
  dt_worker_info w;
  assert_false(worker_a(&w));
  check_runs(log, apid, leaf);
  for (int i = 0; i < NLEAF; i++) dt_future_release(leaf[i]);
  for (int j = 0; j < NSUM; j++) dt_future_release(sum[j]);
}

/* --lifetime-restart: lt-a retires by itself while the graph runs, and its
 * nanny starts a fresh lt-a (another process and address): two workers again */
static void test_lifetime_restart(void **state) {
  (void)state;
  char log[300];
  snprintf(log, sizeof(log), "%s/runs2", dir);
  start_worker("lt-b", NULL);
  wa = start_worker_lifetime("lt-a", true);
  dt_future *leaf[NLEAF], *sum[NSUM];
  pid_t apid = graph_while_retiring(log, leaf, sum);
  /* a fresh lt-a: another pid, two workers again (bounded wait) */
  dt_worker_info w;
  bool back = false;
  double t0 = tu_now();
  while (tu_now() - t0 < 20 && !back) {
    dt_worker_info *ws;
    size_t nw;
    OK(dt_client_workers(client, 5000, &ws, &nw));
    back = nw == 2 && worker_a(&w) && w.pid != apid;
    free(ws);
    if (!back) usleep(50000);
  }
  assert_true(back);
  assert_true(tu_alive(wa)); /* the nanny stayed */
  check_runs(log, apid, leaf);
  for (int i = 0; i < NLEAF; i++) dt_future_release(leaf[i]);
  for (int j = 0; j < NSUM; j++) dt_future_release(sum[j]);
}

/* ---------------------------------------------------------------- options */

static int run_status(char **argv) {
  pid_t p = tu_spawn2(argv, "/dev/null", "/dev/null");
  int st = -1;
  if (p > 0) waitpid(p, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* the worker's and the job queue's lifetime options, checked (no batch system) */
static void test_lifetime_options(void **state) {
  (void)state;
  char *bad1[] = {bin, "worker", "127.0.0.1:9", "--lifetime", "soon", NULL};
  assert_int_equal(run_status(bad1), 2);
  char *bad2[] = {bin, "worker", "127.0.0.1:9", "--lifetime", "1h", "--lifetime-restart",
                  "--no-nanny", NULL};
  assert_int_equal(run_status(bad2), 2);
  char *bad3[] = {bin, "worker", "127.0.0.1:9", "--lifetime-restart", NULL};
  assert_int_equal(run_status(bad3), 2);
  /* the jobs' worker command line */
  dt_jobqueue_opts o = {.system = DT_JOBQUEUE_SLURM, .worker_command = "dtask",
                        .lifetime = "55m", .lifetime_stagger = "4m", .lifetime_restart = true};
  char *sc = dt_jobqueue_job_script(&o, "10.0.0.5:8786", NULL);
  assert_non_null(sc);
  assert_non_null(strstr(sc, " --lifetime 55m --lifetime-stagger 4m --lifetime-restart"));
  free(sc);
  o.lifetime = "2 hours", o.lifetime_stagger = NULL, o.lifetime_restart = false;
  o.system = DT_JOBQUEUE_PBS;
  sc = dt_jobqueue_job_script(&o, "10.0.0.5:8786", NULL);
  assert_non_null(strstr(sc, " --lifetime 7200s"));
  assert_null(strstr(sc, "--lifetime-stagger"));
  assert_null(strstr(sc, "--lifetime-restart"));
  free(sc);
  o.lifetime = NULL;
  sc = dt_jobqueue_job_script(&o, "10.0.0.5:8786", NULL);
  assert_null(strstr(sc, "--lifetime"));
  free(sc);
  /* refused before any batch command runs */
  dt_jobqueue_cluster *jc = NULL;
  dt_jobqueue_opts r = {.system = DT_JOBQUEUE_SLURM, .lifetime_restart = true};
  assert_int_equal(dt_jobqueue_cluster_start(&r, &jc), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "need a lifetime"));
  r = (dt_jobqueue_opts){.system = DT_JOBQUEUE_SLURM, .lifetime = "1 fortnight"};
  assert_int_equal(dt_jobqueue_cluster_start(&r, &jc), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "lifetime"));
  r = (dt_jobqueue_opts){.system = DT_JOBQUEUE_SLURM, .lifetime = "10m", .lifetime_stagger = "10m"};
  assert_int_equal(dt_jobqueue_cluster_start(&r, &jc), DT_EINVAL);
  assert_null(jc);
}

int main(void) {
  if (tu_dtask_env(bin, preload, dir, "/tmp/dtask-lifetime-XXXXXX") != 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_drain_then_retire, setup, teardown),
      cmocka_unit_test_setup_teardown(test_moved_results_survive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lifetime_retires, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lifetime_restart, setup, teardown),
      cmocka_unit_test(test_lifetime_options),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (tu_remove_dir(dir) != 0 && rc == 0) rc = 1;
  return rc;
}
