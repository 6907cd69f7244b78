/*
 * task.h -- internal side of task functions: the execution context passed
 * to a task function, and loading of preload libraries.
 */
#ifndef DT_TASK_INTERNAL_H
#define DT_TASK_INTERNAL_H

#include "../common/common.h"

struct dt_task {
  const char *key;
  const char *func;
  const dt_value *args;   /* list, borrowed */
  const dt_value *kwargs; /* map, borrowed */
  char *err;              /* set by dt_task_fail (owned) */
  int err_code;
};

int dt__task_preload(const char *path);

#endif
