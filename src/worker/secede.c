/*
 * secede.c -- tasks from tasks on the worker's side.  A task that secedes
 * (dt_task_secede, or a blocking client call inside it) leaves its pool
 * thread to wait; pool.c starts or wakes another thread, and here, on the
 * loop thread, the scheduler hears TASK_SECEDED (so that it stops counting
 * the task against our threads) and the next ready tasks start.  The task
 * client (src/client/task_client.c) finds the scheduler's secret here: the
 * worker registers its security under the scheduler's address in net/'s
 * registry, where a client connecting to that address looks first.
 */
#include <string.h>

#include "worker_int.h"

static void on_secede(const char *key) {
  if (!dt__smap_get(&dt__exec.tasks, key, (uint32_t)strlen(key))) return; /* cancelled */
  dt__link_seceded(key);
  dt__exec_start();
}

void dt__secede_init(void) {
  dt__pool_on_secede(on_secede);
  if (dt__link.sched_addr && dt__sec_register(dt__link.sched_addr, &dt__worker.sec) != 0)
    DT_WARN("tasks from tasks: cannot register the scheduler's security: %s", dt_last_error());
}
