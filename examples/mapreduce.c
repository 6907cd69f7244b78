/*
 * mapreduce.c -- sum of squares of 1..10^6: split in chunks, map
 * sum_squares over them, reduce the partial sums with a tree of adds.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tasks_common.h"

int run_mapreduce(dt_client *c, int64_t n, int64_t chunk, int64_t *out) {
  size_t nchunks = (size_t)((n + chunk - 1) / chunk);
  dt_value **args = calloc(nchunks, sizeof(*args));
  dt_future **fs = calloc(nchunks, sizeof(*fs));
  for (size_t i = 0; i < nchunks; i++) {
    int64_t lo = 1 + (int64_t)i * chunk, hi = lo + chunk > n + 1 ? n + 1 : lo + chunk;
    args[i] = dt_list_of(2, dt_int(lo), dt_int(hi));
  }
  int rc = dt_client_map(c, "sum_squares", args, nchunks, NULL, fs);
  free(args);
  dt_future *total = rc ? NULL : tree_reduce(c, fs, nchunks);
  free(fs);
  if (!total) return -1;
  dt_value *v;
  rc = dt_future_result(total, -1, &v);
  dt_future_release(total);
  if (rc) return rc;
  *out = dt_value_int(v);
  dt_value_free(v);
  return 0;
}

#ifndef DTASK_NO_MAIN
int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : NULL;
  dt_local_cluster *lc = NULL;
  if (!addr) {
    if (dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 2}, &lc)) {
      fprintf(stderr, "mapreduce: %s\n", dt_last_error());
      return 1;
    }
    addr = dt_local_cluster_address(lc);
  }
  dt_client *c;
  if (dt_client_connect(&(dt_client_opts){.address = addr}, &c)) {
    fprintf(stderr, "mapreduce: %s\n", dt_last_error());
    return 1;
  }
  int64_t s;
  if (run_mapreduce(c, 1000000, 10000, &s)) {
    fprintf(stderr, "mapreduce: %s\n", dt_last_error());
    return 1;
  }
  printf("sum of squares of 1..10^6 = %lld\n", (long long)s);
  dt_client_close(c);
  dt_local_cluster_close(lc);
  return 0;
}
#endif
