/*
 * lifetime.c -- a worker that retires by itself (`--lifetime D`,
 * `--lifetime-stagger S`, `--lifetime-restart`, as Dask's worker), and the
 * drain it starts with (also alone: `--drain-file FILE`, for a supervisor
 * that retires the worker itself).
 *
 * Lifetime: D +- a uniform random S after it starts (drawn per worker
 * process, so that a job's workers do not all leave at once), the worker
 * drains, then says RETIRE_ME to the scheduler, which retires it as
 * RETIRE_WORKERS would (the results only it holds are copied to other
 * workers first) and then tells it to CLOSE.  It then exits 0 (its nanny
 * exits too: not a crash), or, with --lifetime-restart, exits
 * DT__EXIT_LIFETIME so that its nanny starts a fresh worker at once (which
 * has a lifetime of its own).  While no other worker can take its results
 * the scheduler keeps it, and it asks again every second.
 *
 * Drain: every 200 ms the worker looks at its deadline (and for FILE); once
 * due it takes no new task (it reports itself paused, so the scheduler
 * sends it nothing more, and its executor starts nothing), lets the running
 * tasks finish, and then (with FILE) writes "idle" into FILE or (lifetime)
 * says RETIRE_ME.  The tasks given to it but never started go elsewhere
 * when it leaves, so no task runs twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "worker_int.h"

bool dt__lifetime_draining;
static dt__lifetime_opts opt;
static uv_timer_t timer;
static bool told, by_lifetime;
static double deadline, last_ask; /* dt__now_s() */
static uint64_t attempts;

static void drain(const char *why) {
  dt__lifetime_draining = true;
  DT_INFO("draining before retiring (%s): no new tasks, %d running", why, dt__exec.executing);
  dt__store.paused = true;
  dt__link_heartbeat_now();
}

static void on_tick(uv_timer_t *h) {
  (void)h;
  if (dt__worker.stopping) return;
  if (!dt__lifetime_draining) {
    struct stat st;
    if (opt.lifetime_s > 0 && dt__now_s() >= deadline) {
      by_lifetime = true;
      char why[64];
      snprintf(why, sizeof(why), "lifetime of %.1f s reached", dt__now_s() - (deadline - opt.life_s));
      drain(why);
    } else if (opt.drain_file && stat(opt.drain_file, &st) == 0) {
      drain(opt.drain_file);
    } else {
      return;
    }
  }
  if (dt__exec.executing != 0) return;
  if (by_lifetime) {
    /* drained: ask to be retired, again every second until CLOSE comes */
    double now = dt__now_s();
    if (attempts > 0 && now - last_ask < 1.0) return;
    if (!dt__link_retire_me(attempts + 1, "lifetime")) return; /* not registered: later */
    if (attempts == 0) DT_INFO("drained: asking the scheduler to retire this worker");
    attempts++;
    last_ask = now;
    return;
  }
  if (!told) {
    FILE *f = fopen(opt.drain_file, "w");
    if (!f) {
      DT_WARN("cannot write %s: the worker cannot say it is idle", opt.drain_file);
      return;
    }
    fputs("idle\n", f);
    fclose(f);
    told = true;
    DT_INFO("drained: idle, ready to retire");
  }
}

void dt__lifetime_start(uv_loop_t *loop, const dt__lifetime_opts *o) {
  opt = *o;
  dt__lifetime_draining = told = by_lifetime = false;
  attempts = 0;
  last_ask = 0;
  if (!opt.drain_file && !(opt.lifetime_s > 0)) return;
  opt.life_s = opt.lifetime_s;
  if (opt.lifetime_s > 0 && opt.stagger_s > 0) {
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r)) r = dt__now_ns() * 0x9E3779B97F4A7C15ull;
    double u = (double)(r >> 11) / (double)(1ull << 53); /* [0, 1) */
    opt.life_s = opt.lifetime_s + (2 * u - 1) * opt.stagger_s;
    if (opt.life_s < 0) opt.life_s = 0;
  }
  deadline = dt__now_s() + opt.life_s;
  if (opt.lifetime_s > 0)
    DT_INFO("lifetime: retiring in %.1f s%s", opt.life_s,
            opt.restart ? ", then restarting" : "");
  uv_timer_init(loop, &timer);
  uv_timer_start(&timer, on_tick, 200, 200);
}

int dt__lifetime_close_code(void) {
  if (!by_lifetime) return DT__EXIT_OK;
  return opt.restart ? DT__EXIT_LIFETIME : DT__EXIT_OK;
}
