/*
 * admin.c -- what a client asks of a worker itself rather than of its
 * tasks: Client.run, restart, and plugins.
 *
 * Client.run and restart travel as ACTOR_CALL to two built-in actors that
 * every worker holds (actor.c runs their calls on its own threads, never
 * the task pool, so they run while tasks occupy every thread):
 *   "dtask:run"    method "run:<function>": runs the registered task
 *                  function <function> ("py:" for a pickled Python call)
 *                  with the call's arguments, and answers its result;
 *   "dtask:admin"  "restart": under a nanny, answers "OK" and exits with
 *                  DT__EXIT_RESTART once the answer is written (the nanny
 *                  starts a fresh worker at once); without one it fails,
 *                  naming the worker.  "info": {address, name, nthreads,
 *                  nanny, pid}.
 * The two are separate so that a restart is never queued behind a long
 * Client.run.
 *
 * PLUGIN (from the scheduler, which keeps the plugins and sends them to
 * every worker that registers, before any task) runs on the loop thread, so
 * the plugin is in place before the next COMPUTE_TASK is read: its function
 * "dtask:so" writes the data (a shared library) to a file here and dlopens
 * it (its DT_TASK functions register); any other function is a registered
 * task function (the Python worker's "py:") called with [data].  A worker
 * without that function logs that it has no runtime for the plugin.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "worker_int.h"

static uv_timer_t restart_timer;
static int restart_asked; /* atomic: set on an actor thread */
static bool started;

__attribute__((format(printf, 3, 4))) static dt_value *fail(dt_task *t, int code, const char *fmt,
                                                            ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  dt_task_fail(t, "%s", buf);
  t->err_code = code;
  return NULL;
}

/* run_fn: fn(ctx) on this thread, as a task that has seceded (a blocking
 * client call in it takes no pool slot), its context the current task's so
 * that get_worker() works */
static dt_value *run_fn(dt_task_fn fn, dt_task *ctx) {
  ctx->seceded = true;
  dt_task *prev = dt__task_current;
  dt__task_current = ctx;
  dt_value *r = fn(ctx);
  dt__task_current = prev;
  return r;
}

static dt_value *run_call(void *state, const char *method, bool attribute, dt_task *t) {
  (void)state;
  if (attribute || strncmp(method, "run:", 4) != 0 || !method[4])
    return fail(t, DT_EINVAL, "dtask:run takes run:<function> calls, not '%s'", method);
  dt_task_fn fn = dt_task_lookup(method + 4);
  if (!fn) return fail(t, DT_ENOFUNC, "no function '%s' on this worker", method + 4);
  struct dt_task ctx = {.key = t->key, .func = method + 4, .args = t->args, .kwargs = t->kwargs};
  dt_value *r = run_fn(fn, &ctx);
  t->err = ctx.err;
  t->err_code = ctx.err_code;
  return r;
}

static dt_value *admin_call(void *state, const char *method, bool attribute, dt_task *t) {
  (void)state, (void)attribute;
  if (strcmp(method, "restart") == 0) {
    if (!dt__link.nanny_token)
      return fail(t, DT_EINVAL,
                  "worker %s has no nanny: it cannot be restarted (start it without --no-nanny)",
                  dt__worker.address);
    __atomic_store_n(&restart_asked, 1, __ATOMIC_RELEASE);
    return dt_str("OK");
  }
  if (strcmp(method, "info") == 0) {
    dt_value *m = dt_map_new();
    if (!m || dt_map_set(m, "address", dt_str(dt__worker.address)) ||
        dt_map_set(m, "name", dt_str(dt__worker.name)) ||
        dt_map_set(m, "nthreads", dt_int(dt__worker.nthreads)) ||
        dt_map_set(m, "nanny", dt_bool(dt__link.nanny_token != 0)) ||
        dt_map_set(m, "pid", dt_int((int64_t)getpid()))) {
      dt_value_free(m);
      return fail(t, DT_ENOMEM, "out of memory");
    }
    return m;
  }
  return fail(t, DT_EINVAL, "unknown admin call '%s' (restart, info)", method);
}

static void on_restart(uv_timer_t *h) {
  (void)h;
  DT_INFO("restarting, as a client asked");
  dt__worker_stop(DT__EXIT_RESTART);
}

void dt__admin_replied(void) {
  /* the answer is written: leave shortly, once it is on its way */
  if (__atomic_exchange_n(&restart_asked, 0, __ATOMIC_ACQ_REL) && !dt__worker.stopping)
    uv_timer_start(&restart_timer, on_restart, 100, 0);
}

void dt__admin_stop(void) {
  started = false;
  __atomic_store_n(&restart_asked, 0, __ATOMIC_RELEASE);
}

void dt__admin_start(uv_loop_t *loop) {
  if (started) return;
  started = true;
  uv_timer_init(loop, &restart_timer);
  dt__actor_builtin("dtask:admin", admin_call);
  dt__actor_builtin("dtask:run", run_call);
}

/* ---------------------------------------------------------------- plugins */

/* install_so: data is a shared library: to a file of our own, dlopened */
static void install_so(const char *name, const void *data, size_t len) {
  static unsigned seq;
  char base[DT_PLUGIN_MAX_NAME + 1];
  const char *slash = strrchr(name, '/');
  snprintf(base, sizeof(base), "%s", slash ? slash + 1 : name);
  for (char *p = base; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '.' || *p == '_' || *p == '-'))
      *p = '_';
  if (mkdir("dtask-uploads", 0700) != 0 && errno != EEXIST) {
    DT_WARN("plugin '%s': cannot make dtask-uploads: %s", name, strerror(errno));
    return;
  }
  char path[DT_PLUGIN_MAX_NAME + 128];
  /* a fresh path each time: dlopen of a path already loaded would return
   * the old library */
  snprintf(path, sizeof(path), "dtask-uploads/%d-%u-%s", (int)getpid(), ++seq, base);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
    DT_WARN("plugin '%s': cannot write %s: %s", name, path, strerror(errno));
    if (f) fclose(f);
    unlink(path);
    return;
  }
  char abs[4096 + sizeof(path)];
  char cwd[4096];
  snprintf(abs, sizeof(abs), "%s/%s", getcwd(cwd, sizeof(cwd)) ? cwd : ".", path);
  if (dt__task_preload(abs) != 0) DT_WARN("plugin '%s': %s", name, dt_last_error());
  else DT_INFO("loaded %s (plugin '%s')", abs, name);
  unlink(abs); /* the mapping stays */
}

int dt__admin_plugin(const dt_msg *msg) {
  const dt_msg_PLUGIN *m = &msg->PLUGIN;
  if (m->name.len == 0 || m->name.len > DT_PLUGIN_MAX_NAME || m->func.len == 0 ||
      m->func.len > DT_PLUGIN_MAX_NAME || m->data.len > DT_PLUGIN_MAX_BYTES)
    return DT_EPROTO;
  char name[DT_PLUGIN_MAX_NAME + 1], func[DT_PLUGIN_MAX_NAME + 1];
  snprintf(name, sizeof(name), "%.*s", (int)m->name.len, m->name.p);
  snprintf(func, sizeof(func), "%.*s", (int)m->func.len, m->func.p);
  if (strcmp(func, "dtask:so") == 0) {
    if (!m->remove) install_so(name, m->data.p, m->data.len);
    return 0; /* a library stays loaded: its functions may be running */
  }
  dt_task_fn fn = dt_task_lookup(func);
  if (!fn) {
    DT_WARN("plugin '%s' needs the function '%s' (a Python worker's plugin runtime): this worker "
            "has no such runtime; the plugin is not %s here",
            name, func, m->remove ? "removed" : "installed");
    return 0;
  }
  dt_value *b = dt_bytes(m->data.p ? m->data.p : "", m->data.len);
  dt_value *args = b ? dt_list_of(1, b) : NULL;
  dt_value *kw = dt_map_new();
  if (!args || !kw) {
    dt_value_free(args);
    dt_value_free(kw);
    DT_WARN("plugin '%s': out of memory", name);
    return 0;
  }
  char key[DT_PLUGIN_MAX_NAME + 16];
  snprintf(key, sizeof(key), "plugin-%s", name);
  struct dt_task ctx = {.key = key, .func = func, .args = args, .kwargs = kw};
  dt_value *r = run_fn(fn, &ctx);
  if (ctx.err) DT_WARN("plugin '%s' %s failed: %s", name, m->remove ? "removal" : "setup", ctx.err);
  else DT_DEBUG("plugin '%s' %s", name, m->remove ? "removed" : "installed");
  free(ctx.err);
  dt_value_free(r);
  dt_value_free(args);
  dt_value_free(kw);
  return 0;
}
