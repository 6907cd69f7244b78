/*
 * lifetime.c -- draining a worker before it retires (`--drain-file FILE`,
 * used by the batch jobs' lifetime: python/dtask/jobqueue_worker.py, as
 * Dask's worker --lifetime).  Every 200 ms the worker looks for FILE; once
 * it exists the worker drains: it takes no new task (it reports itself
 * paused, so the scheduler sends it nothing more, and its executor starts
 * nothing), lets the running tasks finish, and then writes "idle" into FILE.
 * The supervisor then asks the scheduler to retire it (its results move to
 * other workers first); the tasks given to it but never started go
 * elsewhere when it leaves, so no task runs twice.
 */
#include <stdio.h>
#include <sys/stat.h>

#include "worker_int.h"

bool dt__lifetime_draining;
static const char *drain_file;
static uv_timer_t timer;
static bool told;

static void on_tick(uv_timer_t *h) {
  (void)h;
  if (dt__worker.stopping) return;
  if (!dt__lifetime_draining) {
    struct stat st;
    if (stat(drain_file, &st) != 0) return;
    dt__lifetime_draining = true;
    DT_INFO("draining before retiring (%s): no new tasks, %d running", drain_file,
            dt__exec.executing);
    dt__store.paused = true;
    dt__link_heartbeat_now();
  }
  if (!told && dt__exec.executing == 0) {
    FILE *f = fopen(drain_file, "w");
    if (!f) {
      DT_WARN("cannot write %s: the worker cannot say it is idle", drain_file);
      return;
    }
    fputs("idle\n", f);
    fclose(f);
    told = true;
    DT_INFO("drained: idle, ready to retire");
  }
}

void dt__lifetime_start(uv_loop_t *loop, const char *file) {
  drain_file = file;
  dt__lifetime_draining = told = false;
  if (!file) return;
  uv_timer_init(loop, &timer);
  uv_timer_start(&timer, on_tick, 200, 200);
}
