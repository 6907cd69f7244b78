/*
 * pi.c -- a Monte Carlo estimate of pi: many independent tasks each throw
 * random points at the unit square; the hit counts are gathered.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "tasks_common.h"

int run_pi(dt_client *c, size_t ntasks, int64_t per_task, double *out) {
  dt_value **args = calloc(ntasks, sizeof(*args));
  dt_future **fs = calloc(ntasks, sizeof(*fs));
  dt_value **vs = calloc(ntasks, sizeof(*vs));
  for (size_t i = 0; i < ntasks; i++) args[i] = dt_list_of(2, dt_int((int64_t)i), dt_int(per_task));
  int rc = dt_client_map(c, "monte_carlo", args, ntasks, NULL, fs);
  if (rc == 0) rc = dt_client_gather(c, fs, ntasks, -1, vs);
  int64_t hits = 0;
  for (size_t i = 0; rc == 0 && i < ntasks; i++) {
    hits += dt_value_int(vs[i]);
    dt_value_free(vs[i]);
  }
  for (size_t i = 0; i < ntasks; i++) dt_future_release(fs[i]);
  free(args);
  free(fs);
  free(vs);
  if (rc == 0) *out = 4.0 * (double)hits / ((double)ntasks * (double)per_task);
  return rc;
}

#ifndef DTASK_NO_MAIN
int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : NULL;
  dt_local_cluster *lc = NULL;
  if (!addr) {
    if (dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 2}, &lc)) {
      fprintf(stderr, "pi: %s\n", dt_last_error());
      return 1;
    }
    addr = dt_local_cluster_address(lc);
  }
  dt_client *c;
  if (dt_client_connect(&(dt_client_opts){.address = addr}, &c)) {
    fprintf(stderr, "pi: %s\n", dt_last_error());
    return 1;
  }
  double pi;
  if (run_pi(c, 200, 100000, &pi)) {
    fprintf(stderr, "pi: %s\n", dt_last_error());
    return 1;
  }
  printf("pi is about %.6f\n", pi);
  dt_client_close(c);
  dt_local_cluster_close(lc);
  return 0;
}
#endif
