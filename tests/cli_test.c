/* cli_test.c -- the dtask command as users run it: a scheduler with a
 * scheduler file, workers with --preload and --resources, `dtask local`,
 * and examples/hello printing 11.  Every process is stopped by PID. */
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

static char bin[4096], preload[4096], examples[4096], tmpdir[256];

static bool wait_file(const char *path, double seconds) {
  double end = tu_now() + seconds;
  while (tu_now() < end) {
    if (access(path, F_OK) == 0) return true;
    usleep(10000);
  }
  return false;
}

static char *read_file(const char *path) {
  static char buf[4096];
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

static int setup(void **state) {
  (void)state;
  const char *b = getenv("DTASK_BIN"), *p = getenv("DTASK_PRELOAD_LIB"), *e = getenv("DTASK_EXAMPLES_DIR");
  if (!b || !p || !e) {
    fprintf(stderr, "run through ctest (DTASK_BIN, DTASK_PRELOAD_LIB, DTASK_EXAMPLES_DIR)\n");
    return -1;
  }
  snprintf(bin, sizeof(bin), "%s", b);
  snprintf(preload, sizeof(preload), "%s", p);
  snprintf(examples, sizeof(examples), "%s", e);
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/dtask-cli-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_kill_all();
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_scheduler_file_preload_and_resources(void **state) {
  (void)state;
  char sfile[512];
  snprintf(sfile, sizeof(sfile), "%s/scheduler.json", tmpdir);
  char *sargv[] = {bin, "scheduler", "--port", "0", "--scheduler-file", sfile, "--log-level", "warning", NULL};
  pid_t sched = tu_spawn(sargv, NULL);
  assert_true(sched > 0);
  assert_true(wait_file(sfile, 10));
  assert_non_null(strstr(read_file(sfile), "\"address\": \"tcp://127.0.0.1:"));
  char *wargv[] = {bin, "worker", "--scheduler-file", sfile, "--preload", preload, "--name", "plain",
                   "--log-level", "warning", NULL};
  pid_t w1 = tu_spawn(wargv, NULL);
  assert_true(w1 > 0);
  dt_client *c;
  OK(dt_client_connect(&(dt_client_opts){.scheduler_file = sfile, .timeout_ms = 10000}, &c));
  OK(dt_client_wait_for_workers(c, 1, 10000));
  dt_future *f;
  dt_value *v;
  OK(dt_client_submit(c, "square", dt_list_of(1, dt_int(7)), NULL, NULL, &f));
  OK(dt_future_result(f, 10000, &v));
  assert_int_equal(dt_value_int(v), 49);
  dt_value_free(v);
  dt_future_release(f);
  OK(dt_client_submit(c, "shout", dt_list_of(1, dt_str("hi")), NULL, NULL, &f));
  OK(dt_future_result(f, 10000, &v));
  assert_string_equal(dt_value_str(v, NULL), "HI!");
  dt_value_free(v);
  dt_future_release(f);
  /* a task that needs a GPU waits until a worker with one joins */
  OK(dt_client_submit(c, "square", dt_list_of(1, dt_int(8)), NULL, &(dt_submit_opts){.resources = "GPU=1"}, &f));
  assert_int_equal(dt_future_result(f, 300, &v), DT_ETIMEDOUT);
  char addr[256];
  char *a = strstr(read_file(sfile), "tcp://");
  assert_non_null(a);
  snprintf(addr, sizeof(addr), "%s", a);
  *strchr(addr, '"') = '\0';
  char *gargv[] = {bin, "worker", addr, "--preload", preload, "--resources", "GPU=1", "--name", "gpu",
                   "--nthreads", "2", "--log-level", "warning", NULL};
  pid_t w2 = tu_spawn(gargv, NULL);
  assert_true(w2 > 0);
  OK(dt_future_result(f, 10000, &v));
  assert_int_equal(dt_value_int(v), 64);
  dt_value_free(v);
  dt_future_release(f);
  /* DTASK_SCHEDULER_ADDRESS is used when no address is given */
  setenv("DTASK_SCHEDULER_ADDRESS", addr, 1);
  dt_client *c2;
  OK(dt_client_connect(&(dt_client_opts){.timeout_ms = 5000}, &c2));
  dt_cluster_info info;
  OK(dt_client_cluster_info(c2, 5000, &info));
  assert_int_equal(info.n_workers, 2);
  assert_int_equal(info.n_clients, 2);
  dt_client_close(c2);
  unsetenv("DTASK_SCHEDULER_ADDRESS");
  dt_client_close(c);
  /* SIGTERM: the scheduler exits cleanly and removes its file; workers follow */
  tu_stop(sched, SIGTERM);
  assert_int_not_equal(access(sfile, F_OK), 0);
  for (int i = 0; i < 300 && (tu_alive(w1) || tu_alive(w2)); i++) usleep(10000);
  assert_false(tu_alive(w1));
  assert_false(tu_alive(w2));
}

static void test_bad_preload_is_reported(void **state) {
  (void)state;
  char *wargv[] = {bin, "worker", "127.0.0.1:1", "--preload", "/nonexistent/libnope.so", NULL};
  char out[512];
  snprintf(out, sizeof(out), "%s/out.txt", tmpdir);
  pid_t w = tu_spawn(wargv, out);
  int status = 0;
  double end = tu_now() + 10;
  while (waitpid(w, &status, WNOHANG) == 0 && tu_now() < end) usleep(10000);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 1);
}

static void test_hello_example_prints_11(void **state) {
  (void)state;
  char hello[4200], out[512];
  snprintf(hello, sizeof(hello), "%s/hello", examples);
  snprintf(out, sizeof(out), "%s/hello.txt", tmpdir);
  char *argv[] = {hello, NULL};
  pid_t p = tu_spawn(argv, out);
  int status = 0;
  double end = tu_now() + 30;
  while (waitpid(p, &status, WNOHANG) == 0 && tu_now() < end) usleep(10000);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_string_equal(read_file(out), "11\n");
}

static void test_dtask_local(void **state) {
  (void)state;
  char out[512];
  snprintf(out, sizeof(out), "%s/local.txt", tmpdir);
  char *argv[] = {bin, "local", "-n", "2", "--threads-per-worker", "2", NULL};
  pid_t p = tu_spawn(argv, out);
  char *txt = NULL;
  for (int i = 0; i < 1000; i++) {
    txt = read_file(out);
    if (txt && strstr(txt, "auth file") && strchr(strstr(txt, "auth file"), '\n')) break;
    usleep(10000);
  }
  assert_non_null(txt);
  char *a = strstr(txt, "tcp://");
  assert_non_null(a);
  char addr[128], auth[256];
  snprintf(addr, sizeof(addr), "%s", a);
  *strchr(addr, '\n') = '\0';
  assert_int_equal(sscanf(strstr(txt, "auth file "), "auth file %255s", auth), 1);
  dt_client *c;
  /* without the cluster's secret: refused, quickly, with a clear error */
  double t0 = tu_now();
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = addr}, &c), DT_EAUTH);
  assert_true(tu_now() - t0 < 5);
  assert_non_null(strstr(dt_last_error(), "secret"));
  OK(dt_client_connect(&(dt_client_opts){.address = addr, .auth_file = auth}, &c));
  dt_cluster_info info;
  OK(dt_client_cluster_info(c, 5000, &info));
  assert_int_equal(info.n_workers, 2);
  dt_client_close(c);
  tu_stop(p, SIGTERM);
  /* its scheduler went with it */
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = addr, .timeout_ms = 300}, &c), DT_ECONNECT);
}

/* --death-timeout: a worker (with or without its nanny) that finds no
 * scheduler retries with backoff, then gives up with status 3 */
static void test_worker_death_timeout(void **state) {
  (void)state;
  for (int nanny = 0; nanny < 2; nanny++) {
    char *argv[] = {bin, "worker", "127.0.0.1:1", "--death-timeout", "1s", "--log-level", "error",
                    nanny ? "--nanny" : "--no-nanny", NULL};
    double t0 = tu_now();
    pid_t p = tu_spawn(argv, NULL);
    int status = 0;
    while (waitpid(p, &status, WNOHANG) == 0 && tu_now() - t0 < 20) usleep(20000);
    double took = tu_now() - t0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 3);
    assert_true(took >= 1.0 && took < 10.0);
  }
}

/* A worker outlives its scheduler: a new scheduler on the same address
 * gets it back (reconnect with backoff) */
static void test_worker_reconnects_to_new_scheduler(void **state) {
  (void)state;
  char sfile[512];
  snprintf(sfile, sizeof(sfile), "%s/first.json", tmpdir);
  char *sargv[] = {bin, "scheduler", "--port", "0", "--scheduler-file", sfile, "--log-level", "warning", NULL};
  pid_t s1 = tu_spawn(sargv, NULL);
  assert_true(wait_file(sfile, 10));
  char *a = strstr(read_file(sfile), "127.0.0.1:");
  assert_non_null(a);
  char addr[64], port[16];
  snprintf(addr, sizeof(addr), "%.*s", (int)strcspn(a, "\""), a);
  snprintf(port, sizeof(port), "%s", strchr(addr, ':') + 1);
  char *wargv[] = {bin, "worker", addr, "--name", "phoenix", "--log-level", "warning", NULL};
  pid_t w = tu_spawn(wargv, NULL);
  dt_client *c;
  OK(dt_client_connect(&(dt_client_opts){.address = addr}, &c));
  OK(dt_client_wait_for_workers(c, 1, 10000));
  dt_client_close(c);
  tu_stop(s1, SIGKILL);
  usleep(300000);
  assert_true(tu_alive(w)); /* still there, trying */
  char *s2argv[] = {bin, "scheduler", "--port", port, "--log-level", "warning", NULL};
  pid_t s2 = tu_spawn(s2argv, NULL);
  assert_true(s2 > 0);
  int rc = -1;
  for (int i = 0; i < 100 && rc != 0; i++) { /* the new one may take a moment to listen */
    rc = dt_client_connect(&(dt_client_opts){.address = addr, .timeout_ms = 200}, &c);
    if (rc) usleep(50000);
  }
  OK(rc);
  OK(dt_client_wait_for_workers(c, 1, 15000));
  dt_future *f;
  OK(dt_client_submit(c, "no_such_function_here", NULL, NULL, NULL, &f));
  dt_value *v;
  assert_int_equal(dt_future_result(f, 10000, &v), DT_ENOFUNC); /* it really works for the new one */
  dt_future_release(f);
  dt_client_close(c);
  /* dtask status shows it */
  char out[512], cmd[5200];
  snprintf(out, sizeof(out), "%s/status.txt", tmpdir);
  snprintf(cmd, sizeof(cmd), "%s status %s > %s", bin, addr, out);
  assert_int_equal(system(cmd), 0);
  char *st = read_file(out);
  assert_non_null(st);
  assert_non_null(strstr(st, ": 1 workers (1 threads), 0 clients"));
  assert_non_null(strstr(st, "phoenix"));
  tu_stop(w, SIGTERM);
  tu_stop(s2, SIGTERM);
}

/* As a child: start a LocalCluster, print the pids, and end the hard way. */
static int orphan_child(const char *how) {
  dt_local_cluster *lc;
  if (dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 2}, &lc)) return 2;
  pid_t n0 = dt_local_cluster_worker_pid(lc, 0), n1 = dt_local_cluster_worker_pid(lc, 1);
  printf("%d %d %d %d %d\n", dt_local_cluster_scheduler_pid(lc), n0, n1, tu_worker_pid(n0),
         tu_worker_pid(n1));
  fflush(stdout);
  if (strcmp(how, "kill") == 0) raise(SIGKILL); /* no atexit, no cleanup at all */
  exit(3);                                        /* an error exit without closing */
}

static void check_no_orphans(const char *how) {
  char self[4096], out[512];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  assert_true(n > 0);
  self[n] = '\0';
  snprintf(out, sizeof(out), "%s/orphan-%s.txt", tmpdir, how);
  setenv("DT_TEST_ORPHAN", how, 1);
  char *argv[] = {self, NULL};
  pid_t p = tu_spawn(argv, out);
  unsetenv("DT_TEST_ORPHAN");
  int status = 0;
  double end = tu_now() + 30;
  while (waitpid(p, &status, WNOHANG) == 0 && tu_now() < end) usleep(10000);
  if (strcmp(how, "kill") == 0) assert_true(WIFSIGNALED(status));
  else assert_int_equal(WEXITSTATUS(status), 3);
  int pids[5] = {0}; /* scheduler, two nannies, the two workers under them */
  char *txt = read_file(out);
  assert_non_null(txt);
  assert_int_equal(sscanf(txt, "%d %d %d %d %d", &pids[0], &pids[1], &pids[2], &pids[3], &pids[4]), 5);
  for (int i = 0; i < 5; i++) {
    assert_true(pids[i] > 0);
    /* they are not our children: poll until the pid is gone (bounded) */
    for (int k = 0; k < 500 && kill(pids[i], 0) == 0; k++) {
      char st[64], buf[512];
      snprintf(st, sizeof(st), "/proc/%d/stat", pids[i]);
      FILE *f = fopen(st, "r");
      if (f) {
        size_t m = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[m] = '\0';
        char *rp = strrchr(buf, ')');
        if (rp && rp[2] == 'Z') break; /* a zombie: exited, waiting for a reaper */
      }
      usleep(10000);
    }
    char st[64];
    snprintf(st, sizeof(st), "/proc/%d/stat", pids[i]);
    FILE *f = fopen(st, "r");
    if (f) {
      char buf[512];
      size_t m = fread(buf, 1, sizeof(buf) - 1, f);
      fclose(f);
      buf[m] = '\0';
      char *rp = strrchr(buf, ')');
      if (!(rp && rp[2] == 'Z')) fail_msg("process %d outlived the program that started it", pids[i]);
    }
  }
}

static void test_no_orphans_after_error_exit(void **state) {
  (void)state;
  check_no_orphans("exit");
}

static void test_no_orphans_after_kill(void **state) {
  (void)state;
  check_no_orphans("kill");
}

int main(void) {
  const char *orphan = getenv("DT_TEST_ORPHAN");
  if (orphan) return orphan_child(orphan);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_no_orphans_after_error_exit),
      cmocka_unit_test(test_no_orphans_after_kill),
      cmocka_unit_test(test_scheduler_file_preload_and_resources),
      cmocka_unit_test(test_bad_preload_is_reported),
      cmocka_unit_test(test_hello_example_prints_11),
      cmocka_unit_test(test_dtask_local),
      cmocka_unit_test(test_worker_death_timeout),
      cmocka_unit_test(test_worker_reconnects_to_new_scheduler),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
