/* transfer_test.c -- large data between two workers over TCP, as between
 * hosts (dt_local_cluster_opts.no_shm, worker --no-shm): chunks made on
 * worker 0 are each consumed on worker 1, a few in flight at a time, until
 * $DTASK_TRANSFER_TEST_MIB MiB (default 1024; 10240 for the 10 GiB run by
 * hand) have moved.  Every chunk arrives intact, the bytes really went
 * through worker 1's sockets (its /proc/PID/io), and neither worker's peak
 * memory (VmHWM) reaches its memory limit. */
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

#define CHUNK (64ll << 20)
#define WINDOW 4
/* per worker: a chunk is 1/16 of it.  Under ThreadSanitizer a process's
 * memory is several times its data (shadow memory counts in its RSS, which
 * the worker's limit watches): the limit is larger there and the default
 * amount smaller, the checks the same. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define LIMIT_MIB 4096
#define DEFAULT_MIB 256
#else
#define LIMIT_MIB 1024
#define DEFAULT_MIB 1024
#endif

/* make_chunk(n, i): n bytes of value (i % 251) + 1 */
DT_TASK(make_chunk) {
  int64_t n, i;
  if (dt_task_arg_int(task, 0, &n) || dt_task_arg_int(task, 1, &i)) return NULL;
  void *p;
  dt_value *v = dt_bytes_alloc((size_t)n, &p);
  if (!v) return dt_task_fail(task, "out of memory");
  memset(p, (int)(i % 251) + 1, (size_t)n);
  return v;
}

/* chunk_sum(b): the sum of one byte per 4 KiB page and of the last byte,
 * or -1 when the first and last bytes differ */
DT_TASK(chunk_sum) {
  size_t n = 0;
  const unsigned char *p = dt_value_bytes(dt_task_arg(task, 0), &n);
  if (!p || n == 0) return dt_task_fail(task, "not bytes");
  if (p[0] != p[n - 1]) return dt_int(-1);
  int64_t s = p[n - 1];
  for (size_t i = 0; i < n; i += 4096) s += p[i];
  return dt_int(s);
}

static dt_local_cluster *lc;
static dt_client *client;

static int64_t proc_field(pid_t pid, const char *file, const char *field) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  int64_t v = -1;
  size_t fl = strlen(field);
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, field, fl) == 0) {
      v = strtoll(line + fl, NULL, 10);
      break;
    }
  fclose(f);
  return v;
}

static int setup(void **state) {
  (void)state;
  char lim[32];
  snprintf(lim, sizeof(lim), "%dMiB", LIMIT_MIB);
  dt_local_cluster_opts o = {.n_workers = 2, .no_nanny = true, .no_shm = true, .no_dashboard = true,
                             .memory_limit = lim};
  return tu_local_start(o, (dt_client_opts){0}, &lc, &client);
}

static int teardown(void **state) {
  (void)state;
  tu_local_stop(&lc, &client);
  return 0;
}

static void test_big_over_tcp(void **state) {
  (void)state;
  const char *env = getenv("DTASK_TRANSFER_TEST_MIB");
  int64_t total = (env && atoll(env) > 0 ? atoll(env) : DEFAULT_MIB) << 20;
  int64_t n = (total + CHUNK - 1) / CHUNK;
  const char *w0[] = {"local-worker-0"}, *w1[] = {"local-worker-1"};
  pid_t p1 = dt_local_cluster_worker_pid(lc, 1), p0 = dt_local_cluster_worker_pid(lc, 0);
  int64_t read0 = proc_field(p1, "io", "rchar: ");
  assert_true(read0 >= 0);
  dt_future *made[WINDOW] = {0}, *sums[WINDOW] = {0};
  double t0 = tu_now();
  for (int64_t i = 0; i < n + WINDOW; i++) {
    int s = (int)(i % WINDOW);
    if (sums[s]) { /* the chunk submitted WINDOW steps ago: check it, release it */
      int64_t j = i - WINDOW;
      dt_value *v;
      OK(dt_future_result(sums[s], 120000, &v));
      int64_t b = (j % 251) + 1;
      assert_int_equal(dt_value_int(v), b * (CHUNK / 4096) + b);
      dt_value_free(v);
      dt_future_release(sums[s]);
      dt_future_release(made[s]);
      sums[s] = made[s] = NULL;
    }
    if (i >= n) continue;
    OK(dt_client_submit(client, "make_chunk", dt_list_of(2, dt_int(CHUNK), dt_int(i)), NULL,
                        &(dt_submit_opts){.workers = w0, .n_workers = 1, .pure = DT_NO}, &made[s]));
    OK(dt_client_submit(client, "chunk_sum", dt_list_of(1, dt_future_value(made[s])), NULL,
                        &(dt_submit_opts){.workers = w1, .n_workers = 1, .pure = DT_NO}, &sums[s]));
  }
  double dt = tu_now() - t0;
  int64_t got = proc_field(p1, "io", "rchar: ") - read0;
  int64_t hwm0 = proc_field(p0, "status", "VmHWM:"), hwm1 = proc_field(p1, "status", "VmHWM:");
  fprintf(stderr, "transfer_test: %lld MiB in %lld chunks over TCP in %.2f s (%.0f MB/s with making "
                  "them); worker 1 read %lld MiB from its sockets; peak memory %lld and %lld MiB, "
                  "limit %d MiB\n",
          (long long)(n * CHUNK >> 20), (long long)n, dt, (double)(n * CHUNK) / dt / 1e6,
          (long long)(got >> 20), (long long)(hwm0 >> 10), (long long)(hwm1 >> 10), LIMIT_MIB);
  assert_true(got >= n * CHUNK);                       /* through TCP, not shared memory */
  assert_true(hwm0 > 0 && hwm0 < (int64_t)LIMIT_MIB << 10); /* VmHWM is in KiB */
  assert_true(hwm1 > 0 && hwm1 < (int64_t)LIMIT_MIB << 10);
  /* both workers are still the ones started */
  dt_cluster_info info;
  OK(dt_client_cluster_info(client, 5000, &info));
  assert_int_equal(info.n_workers, 2);
  assert_true(tu_alive(p0) && tu_alive(p1));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_big_over_tcp, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
