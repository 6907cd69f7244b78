/*
 * bench.c -- dtask's side of the benchmark suite: the workloads of
 * ../shared/reference/dask-baseline.md, over the public API, on a
 * LocalCluster (or an existing scheduler with --address).
 *
 *   build/bench [--workers 2] [--threads 1] [--scale 1.0] [--json out.json]
 *
 * Prints one line per workload and, with --json, writes them as JSON.
 * Speed is measured here, never asserted: the tests only run it small.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dtask.h"

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

DT_TASK(make_bytes) {
  int64_t n;
  if (dt_task_arg_int(task, 0, &n)) return NULL;
  char *p = malloc((size_t)n);
  if (!p) return dt_task_fail(task, "out of memory");
  memset(p, 7, (size_t)n);
  return dt_bytes_take(p, (size_t)n, free);
}

DT_TASK(byte_len) {
  size_t n = 0;
  if (!dt_value_bytes(dt_task_arg(task, 0), &n)) return dt_task_fail(task, "not bytes");
  return dt_int((int64_t)n);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define CHECK(x)                                                                   \
  do {                                                                             \
    if ((x) != 0) {                                                                \
      fprintf(stderr, "bench: %s: %s\n", #x, dt_last_error());                     \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

static FILE *json;
static int njson;

static void report(const char *name, double value, const char *unit, const char *what) {
  printf("%-28s %14.3f %-8s %s\n", name, value, unit, what);
  if (json)
    fprintf(json, "%s\n  {\"workload\": \"%s\", \"value\": %.6g, \"unit\": \"%s\"}", njson++ ? "," : "",
            name, value, unit);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void bench_latency(dt_client *c, int n) {
  double *t = malloc((size_t)n * sizeof(double));
  for (int i = -50; i < n; i++) { /* 50 warm-up calls */
    double t0 = now();
    dt_future *f;
    dt_value *v;
    CHECK(dt_client_submit(c, "inc", dt_list_of(1, dt_int(i)), NULL, &(dt_submit_opts){.pure = DT_NO}, &f));
    CHECK(dt_future_result(f, -1, &v));
    dt_value_free(v);
    dt_future_release(f);
    if (i >= 0) t[i] = now() - t0;
  }
  qsort(t, (size_t)n, sizeof(double), cmp_double);
  report("latency_median", t[n / 2] * 1e6, "us", "submit -> result of a trivial task");
  report("latency_p99", t[(int)(n * 0.99)] * 1e6, "us", "");
  free(t);
}

static void bench_map(dt_client *c, int n) {
  dt_value **args = malloc((size_t)n * sizeof(*args));
  dt_future **fs = malloc((size_t)n * sizeof(*fs));
  dt_value **vs = malloc((size_t)n * sizeof(*vs));
  for (int i = 0; i < n; i++) args[i] = dt_list_of(1, dt_int(i));
  double t0 = now();
  CHECK(dt_client_map(c, "inc", args, (size_t)n, &(dt_submit_opts){.pure = DT_NO}, fs));
  CHECK(dt_client_gather(c, fs, (size_t)n, -1, vs));
  double dt = now() - t0;
  for (int i = 0; i < n; i++) {
    if (dt_value_int(vs[i]) != i + 1) {
      fprintf(stderr, "bench: wrong result\n");
      exit(1);
    }
    dt_value_free(vs[i]);
    dt_future_release(fs[i]);
  }
  char name[64];
  snprintf(name, sizeof(name), "map_%d", n);
  report(name, n / dt, "tasks/s", "map(inc) + gather");
  free(args);
  free(fs);
  free(vs);
}

static void bench_tree(dt_client *c, int leaves) {
  dt_value **args = malloc((size_t)leaves * sizeof(*args));
  dt_future **fs = malloc((size_t)leaves * sizeof(*fs));
  for (int i = 0; i < leaves; i++) args[i] = dt_list_of(1, dt_int(i));
  double t0 = now();
  CHECK(dt_client_map(c, "inc", args, (size_t)leaves, &(dt_submit_opts){.pure = DT_NO}, fs));
  int n = leaves;
  while (n > 1) {
    for (int i = 0; i < n / 2; i++) {
      dt_future *r;
      CHECK(dt_client_submit(c, "add", dt_list_of(2, dt_future_value(fs[2 * i]), dt_future_value(fs[2 * i + 1])),
                             NULL, &(dt_submit_opts){.pure = DT_NO}, &r));
      dt_future_release(fs[2 * i]);
      dt_future_release(fs[2 * i + 1]);
      fs[i] = r;
    }
    n /= 2;
  }
  dt_value *v;
  CHECK(dt_future_result(fs[0], -1, &v));
  double dt = now() - t0;
  if (dt_value_int(v) != (int64_t)leaves * (leaves + 1) / 2) {
    fprintf(stderr, "bench: wrong tree sum\n");
    exit(1);
  }
  dt_value_free(v);
  dt_future_release(fs[0]);
  char name[64];
  snprintf(name, sizeof(name), "tree_%d", leaves);
  report(name, (2.0 * leaves - 1) / dt, "tasks/s", "binary tree reduction");
  free(args);
  free(fs);
}

static void bench_chain(dt_client *c, int n) {
  double t0 = now();
  dt_future *f;
  CHECK(dt_client_submit(c, "inc", dt_list_of(1, dt_int(0)), NULL, &(dt_submit_opts){.pure = DT_NO}, &f));
  for (int i = 1; i < n; i++) {
    dt_future *g;
    CHECK(dt_client_submit(c, "inc", dt_list_of(1, dt_future_value(f)), NULL, &(dt_submit_opts){.pure = DT_NO}, &g));
    dt_future_release(f);
    f = g;
  }
  dt_value *v;
  CHECK(dt_future_result(f, -1, &v));
  double dt = now() - t0;
  if (dt_value_int(v) != n) {
    fprintf(stderr, "bench: wrong chain result\n");
    exit(1);
  }
  dt_value_free(v);
  dt_future_release(f);
  report("chain_2000", n / dt, "tasks/s", "dependent tasks, x = submit(inc, x)");
}

static void bench_transfer(dt_client *c, int64_t bytes) {
  const char *w0[] = {"local-worker-0"}, *w1[] = {"local-worker-1"};
  dt_future *big, *len;
  CHECK(dt_client_submit(c, "make_bytes", dt_list_of(1, dt_int(bytes)), NULL,
                         &(dt_submit_opts){.workers = w0, .n_workers = 1, .pure = DT_NO}, &big));
  CHECK(dt_wait(&big, 1, -1, DT_ALL_COMPLETED));
  double t0 = now();
  CHECK(dt_client_submit(c, "byte_len", dt_list_of(1, dt_future_value(big)), NULL,
                         &(dt_submit_opts){.workers = w1, .n_workers = 1, .pure = DT_NO}, &len));
  dt_value *v;
  CHECK(dt_future_result(len, -1, &v));
  double dt = now() - t0;
  if (dt_value_int(v) != bytes) {
    fprintf(stderr, "bench: wrong transfer length\n");
    exit(1);
  }
  dt_value_free(v);
  dt_future_release(big);
  dt_future_release(len);
  report("transfer_200MB", (double)bytes / dt / 1e6, "MB/s", "worker to worker");
}

int main(int argc, char **argv) {
  int workers = 2, threads = 1;
  double scale = 1.0;
  const char *json_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) workers = atoi(argv[++i]);
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) scale = atof(argv[++i]);
    else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) json_path = argv[++i];
    else {
      fprintf(stderr, "usage: bench [--workers N] [--threads T] [--scale S] [--json FILE]\n");
      return 2;
    }
  }
  if (json_path) {
    json = fopen(json_path, "w");
    if (!json) {
      perror(json_path);
      return 1;
    }
    fprintf(json, "{\"system\": \"dtask\", \"workers\": %d, \"threads\": %d, \"results\": [", workers, threads);
  }
  double t0 = now();
  dt_local_cluster *lc;
  CHECK(dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = workers, .threads_per_worker = threads}, &lc));
  dt_client *c;
  CHECK(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c));
  report("cluster_start", (now() - t0) * 1e3, "ms", "LocalCluster start to a connected client");
  int s = (int)(scale * 1000);
  bench_latency(c, s / 2 > 10 ? s / 2 : 10);
  bench_map(c, (int)(20000 * scale) > 10 ? (int)(20000 * scale) : 10);
  bench_tree(c, scale >= 1 ? 8192 : 256);
  bench_chain(c, 2000);
  if (workers >= 2) bench_transfer(c, (int64_t)(200e6 * (scale < 1 ? scale : 1)));
  dt_client_close(c);
  dt_local_cluster_close(lc);
  if (json) {
    fprintf(json, "\n]}\n");
    fclose(json);
  }
  return 0;
}
