/*
 * demo.c -- the main demo: starts a LocalCluster, runs the seed's example,
 * the map-reduce and the Monte Carlo estimate, and says what it did and how
 * long each step took.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#define DTASK_NO_MAIN
#include "mapreduce.c"
#include "pi.c"

DT_TASK(simulate) { /* simulate(seed): a few milliseconds of "work" */
  int64_t seed;
  if (dt_task_arg_int(task, 0, &seed)) return NULL;
  struct timespec ts = {0, 3000000};
  nanosleep(&ts, NULL);
  return dt_int(seed * 2);
}

DT_TASK(inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define CHECK(x)                                                                   \
  do {                                                                             \
    if ((x) != 0) {                                                                \
      fprintf(stderr, "demo: %s failed: %s\n", #x, dt_last_error());               \
      return 1;                                                                    \
    }                                                                              \
  } while (0)

int main(void) {
  double t0 = now();
  dt_local_cluster *lc;
  CHECK(dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 4}, &lc));
  double t1 = now();
  printf("LocalCluster with 4 workers at tcp://%s started in %.3f s\n",
         dt_local_cluster_address(lc), t1 - t0);
  if (dt_local_cluster_dashboard(lc)) printf("dashboard at %s\n", dt_local_cluster_dashboard(lc));
  dt_client *c;
  CHECK(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c));

  /* the seed's example */
  t0 = now();
  dt_future *f;
  dt_value *v;
  CHECK(dt_client_submit(c, "inc", dt_list_of(1, dt_int(10)), NULL, NULL, &f));
  CHECK(dt_future_result(f, -1, &v));
  t1 = now();
  printf("submit(inc, 10).result() = %" PRId64 "   (%.3f ms round trip)\n", dt_value_int(v),
         (t1 - t0) * 1e3);
  dt_value_free(v);
  dt_future_release(f);

  /* map-reduce */
  t0 = now();
  int64_t s;
  CHECK(run_mapreduce(c, 1000000, 10000, &s));
  t1 = now();
  const int64_t expect = (int64_t)1000000 * 1000001 * 2000001 / 6;
  printf("sum of squares of 1..10^6 = %" PRId64 " (%s) with 100 chunks and a tree of 99 "
         "adds in %.3f s\n", s, s == expect ? "exact" : "WRONG", t1 - t0);
  if (s != expect) return 1;

  /* Monte Carlo */
  t0 = now();
  double pi;
  CHECK(run_pi(c, 1000, 100000, &pi));
  t1 = now();
  printf("pi is about %.5f (error %.1e) from 10^8 random points in 1000 tasks in %.3f s\n", pi,
         fabs(pi - M_PI), t1 - t0);

  /* many tiny tasks: the scheduler's overhead */
  t0 = now();
  enum { N = 20000 };
  static dt_value *args[N];
  static dt_future *fs[N];
  static dt_value *vs[N];
  for (int i = 0; i < N; i++) args[i] = dt_list_of(1, dt_int(i));
  CHECK(dt_client_map(c, "inc", args, N, NULL, fs));
  CHECK(dt_client_gather(c, fs, N, -1, vs));
  int64_t sum = 0;
  for (int i = 0; i < N; i++) {
    sum += dt_value_int(vs[i]);
    dt_value_free(vs[i]);
    dt_future_release(fs[i]);
  }
  t1 = now();
  printf("%d independent inc tasks (sum %" PRId64 ") in %.3f s: %.0f tasks/s\n", N, sum, t1 - t0,
         N / (t1 - t0));

  /* a progress bar (and, meanwhile, the dashboard shows the same) */
  enum { P = 800 };
  static dt_value *pargs[P];
  static dt_future *pfs[P];
  for (int i = 0; i < P; i++) pargs[i] = dt_list_of(1, dt_int(i));
  printf("%d simulations of 3 ms:\n", P);
  CHECK(dt_client_map(c, "simulate", pargs, P, &(dt_submit_opts){.pure = DT_NO}, pfs));
  CHECK(dt_progress(c, pfs, P, -1));
  for (int i = 0; i < P; i++) dt_future_release(pfs[i]);

  dt_client_close(c);
  dt_local_cluster_close(lc);
  printf("cluster closed\n");
  return 0;
}
