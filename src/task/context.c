/*
 * context.c -- tasks from tasks: the worker's hooks and identity that task
 * functions and the client layer reach through the task layer (the worker
 * and the client never call each other), the thread's current task,
 * dt_task_secede / dt_task_rejoin / dt_task_reschedule, and the automatic
 * secede of a blocking client call made from inside a task.
 */
#include <stdio.h>
#include <string.h>

#include "task.h"

dt__task_env_t dt__task_env;
__thread dt_task *dt__task_current;

void dt__task_env_set(const dt__task_env_t *env) { dt__task_env = *env; }

void (*dt__task_sync_hook)(void);

void dt__task_after_run(dt_task *t) {
  if (t->submitted && dt__task_sync_hook) dt__task_sync_hook();
}

int dt_task_secede(dt_task *t) {
  if (!t) return dt__err(DT_EINVAL, "dt_task_secede: NULL task");
  if (t->seceded) return 0;
  if (!dt__task_env.secede) return dt__err(DT_EINVAL, "dt_task_secede: not running on a worker");
  int rc = dt__task_env.secede(t);
  if (rc == 0) t->seceded = true;
  return rc;
}

int dt_task_rejoin(dt_task *t) {
  if (!t) return dt__err(DT_EINVAL, "dt_task_rejoin: NULL task");
  if (!t->seceded) return 0;
  t->auto_seceded = false;
  int rc = dt__task_env.rejoin ? dt__task_env.rejoin(t) : 0;
  if (rc == 0) t->seceded = false;
  return rc;
}

dt_value *dt_task_reschedule(dt_task *t) {
  if (t) t->reschedule = true;
  return NULL;
}

const char *dt_task_worker_address(const dt_task *t) {
  (void)t;
  return dt__task_env.address ? dt__task_env.address : "";
}
const char *dt_task_worker_name(const dt_task *t) {
  (void)t;
  return dt__task_env.name ? dt__task_env.name : "";
}
int dt_task_worker_nthreads(const dt_task *t) {
  (void)t;
  return dt__task_env.nthreads;
}
const char *dt_task_scheduler_address(const dt_task *t) {
  (void)t;
  return dt__task_env.sched_addr ? dt__task_env.sched_addr : "";
}
dt_task *dt_task_current(void) { return dt__task_current; }

void dt__task_block_begin(void) {
  dt_task *t = dt__task_current;
  if (!t || t->seceded || !dt__task_env.secede) return;
  if (dt__task_env.secede(t) == 0) t->seceded = t->auto_seceded = true;
}

void dt__task_block_end(void) {
  dt_task *t = dt__task_current;
  if (!t || !t->auto_seceded) return;
  t->auto_seceded = false;
  if (dt__task_env.rejoin && dt__task_env.rejoin(t) == 0) t->seceded = false;
}
