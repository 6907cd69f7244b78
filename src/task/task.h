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

/* an actor type (actor_types.c): what dt_actor_register registered */
typedef struct {
  char *name;
  dt_actor_create_fn create;
  dt_actor_call_fn call;
  dt_actor_free_fn free_fn;
} dt__actor_type;
/* dt__actor_type_lookup: copies the type registered under name (or its
 * "ns:" fallback) into *out; 0 or DT_ENOTFOUND (no message). */
int dt__actor_type_lookup(const char *name, dt__actor_type *out);

#endif
