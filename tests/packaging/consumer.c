/*
 * consumer.c -- a program outside the dtask tree, built against an installed
 * dtask only (tests/packaging/consumer_test.sh builds it with pkg-config and
 * with CMake's find_package): the seed example, submit(inc, 10) on a
 * LocalCluster, prints 11.
 */
#include <inttypes.h>
#include <stdio.h>

#include <dtask.h>

DT_TASK(inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

int main(void) {
  dt_local_cluster *cluster;
  if (dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 2}, &cluster)) {
    fprintf(stderr, "consumer: %s\n", dt_last_error());
    return 1;
  }
  dt_client *client;
  if (dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(cluster)}, &client)) {
    fprintf(stderr, "consumer: %s\n", dt_last_error());
    dt_local_cluster_close(cluster);
    return 1;
  }
  dt_future *future;
  dt_value *result;
  if (dt_client_submit(client, "inc", dt_list_of(1, dt_int(10)), NULL, NULL, &future) ||
      dt_future_result(future, 60000, &result)) {
    fprintf(stderr, "consumer: %s\n", dt_last_error());
    dt_client_close(client);
    dt_local_cluster_close(cluster);
    return 1;
  }
  printf("%" PRId64 "\n", dt_value_int(result));
  dt_value_free(result);
  dt_future_release(future);
  dt_client_close(client);
  dt_local_cluster_close(cluster);
  return 0;
}
