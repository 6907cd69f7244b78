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
  /* tasks from tasks (context.c) */
  bool seceded;      /* its pool thread was handed back (dt_task_secede) */
  bool auto_seceded; /* seceded by a blocking client call, to rejoin after it */
  bool reschedule;   /* dt_task_reschedule: run it again, not a failure */
  bool submitted;    /* it submitted tasks through the worker's client */
};

/* ---- tasks from tasks (context.c).  The worker installs hooks and its
 * identity; the client layer (above) reads them.  dt__task_current is the
 * task the calling pool thread runs (NULL elsewhere). */
typedef struct {
  int (*secede)(dt_task *t); /* hand the thread back: 0 or an error */
  int (*rejoin)(dt_task *t); /* wait for a free slot again */
  const char *sched_addr;    /* the worker's scheduler ("host:port") */
  const char *name, *address; /* the worker's (live buffers: may fill later) */
  int nthreads;
} dt__task_env_t;
extern dt__task_env_t dt__task_env;
extern __thread dt_task *dt__task_current;
/* Tasks a task submits travel on the worker client's connection, its result
 * on the worker's: the scheduler could see the result (and a reader of it
 * want the futures it holds) before the submission.  The client layer sets
 * dt__task_sync_hook (a round trip on the worker client's connection) and
 * the pool calls dt__task_after_run for a task that submitted, before its
 * result is reported. */
extern void (*dt__task_sync_hook)(void);
void dt__task_after_run(dt_task *t);
/* the worker sets dt__task_env once, before its pool starts */
void dt__task_env_set(const dt__task_env_t *env);
/* a blocking client call is about to wait: secede the current task (if any
 * and not seceded), remembering to rejoin it after the call */
void dt__task_block_begin(void);
/* the blocking call returned (no lock held): rejoin what block_begin seceded */
void dt__task_block_end(void);

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
