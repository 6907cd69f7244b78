/*
 * hello.c -- the seed's example in C: a LocalCluster with 4 workers, a
 * client, submit(inc, 10), and the result, 11.
 *
 *   from dask.distributed import Client, LocalCluster
 *   cluster = LocalCluster(n_workers=4)
 *   client = Client(cluster)
 *   future = client.submit(lambda x: x + 1, 10)
 *   result = future.result()
 */
#include <inttypes.h>
#include <stdio.h>

#include "dtask.h"

DT_TASK(inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

int main(void) {
  dt_local_cluster *cluster;
  if (dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 4}, &cluster)) {
    fprintf(stderr, "hello: %s\n", dt_last_error());
    return 1;
  }
  dt_client *client;
  if (dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(cluster)}, &client)) {
    fprintf(stderr, "hello: %s\n", dt_last_error());
    return 1;
  }
  dt_future *future;
  dt_value *result;
  if (dt_client_submit(client, "inc", dt_list_of(1, dt_int(10)), NULL, NULL, &future) ||
      dt_future_result(future, -1, &result)) {
    fprintf(stderr, "hello: %s\n", dt_last_error());
    return 1;
  }
  printf("%" PRId64 "\n", dt_value_int(result));
  dt_value_free(result);
  dt_future_release(future);
  dt_client_close(client);
  dt_local_cluster_close(cluster);
  return 0;
}
