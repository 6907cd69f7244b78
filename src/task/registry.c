/*
 * registry.c -- task functions registered by name (DT_TASK), the dt_task
 * execution context handed to them, and loading shared libraries of tasks
 * (`dtask worker --preload`).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static dt_smap registry; /* name -> entry */

typedef struct {
  char *name;
  dt_task_fn fn;
} entry;

int dt_task_register(const char *name, dt_task_fn fn) {
  if (!name || !*name || !fn) return dt__err(DT_EINVAL, "dt_task_register: empty name or NULL fn");
  if (strlen(name) > 256) return dt__err(DT_EINVAL, "task function name too long: %.40s...", name);
  pthread_mutex_lock(&reg_lock);
  entry *e = dt__smap_get(&registry, name, strlen(name));
  if (e) {
    e->fn = fn;
  } else {
    e = dt__xmalloc(sizeof(*e));
    e->name = dt__xstrdup(name);
    e->fn = fn;
    dt__smap_put(&registry, e->name, strlen(e->name), e);
  }
  pthread_mutex_unlock(&reg_lock);
  return 0;
}

dt_task_fn dt_task_lookup(const char *name) {
  if (!name) return NULL;
  pthread_mutex_lock(&reg_lock);
  entry *e = dt__smap_get(&registry, name, strlen(name));
  if (!e) { /* "ns:name" falls back to a handler registered for "ns:" */
    const char *colon = strchr(name, ':');
    if (colon && colon > name) e = dt__smap_get(&registry, name, (size_t)(colon - name) + 1);
  }
  dt_task_fn fn = e ? e->fn : NULL;
  pthread_mutex_unlock(&reg_lock);
  return fn;
}

int dt__task_preload(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (!h) return dt__err(DT_ENOTFOUND, "cannot load preload library '%s': %s", path, dlerror());
  return 0;
}

/* ---------------------------------------------------------------- context */

size_t dt_task_nargs(const dt_task *t) { return dt_list_len(t->args); }

const dt_value *dt_task_arg(dt_task *t, size_t i) {
  const dt_value *v = dt_list_get(t->args, i);
  if (!v) {
    dt_task_fail(t, "%s() takes at least %zu positional argument%s but %zu were given", t->func,
                 i + 1, i ? "s" : "", dt_task_nargs(t));
    t->err_code = DT_EARGS;
  }
  return v;
}

const dt_value *dt_task_kwarg(dt_task *t, const char *name) { return dt_map_get(t->kwargs, name); }

static int typed(dt_task *t, size_t i, dt_type want, const dt_value **out) {
  const dt_value *v = dt_task_arg(t, i);
  if (!v) return DT_EARGS;
  if (dt_value_type(v) != want && !(want == DT_DOUBLE && dt_value_type(v) == DT_INT)) {
    dt_task_fail(t, "%s() argument %zu must be %s, not %s", t->func, i, dt_type_name(want),
                 dt_type_name(dt_value_type(v)));
    t->err_code = DT_ETYPE;
    return DT_ETYPE;
  }
  *out = v;
  return 0;
}

int dt_task_arg_int(dt_task *t, size_t i, int64_t *out) {
  const dt_value *v;
  int rc = typed(t, i, DT_INT, &v);
  if (!rc) *out = dt_value_int(v);
  return rc;
}
int dt_task_arg_double(dt_task *t, size_t i, double *out) {
  const dt_value *v;
  int rc = typed(t, i, DT_DOUBLE, &v);
  if (!rc) *out = dt_value_double(v);
  return rc;
}
int dt_task_arg_str(dt_task *t, size_t i, const char **out) {
  const dt_value *v;
  int rc = typed(t, i, DT_STR, &v);
  if (!rc) *out = dt_value_str(v, NULL);
  return rc;
}

dt_value *dt_task_fail(dt_task *t, const char *fmt, ...) {
  if (t->err) return NULL; /* keep the first failure */
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  t->err = dt__xstrdup(buf);
  if (!t->err_code) t->err_code = DT_ETASK;
  return NULL;
}

const char *dt_task_key(const dt_task *t) { return t->key; }
const char *dt_task_function(const dt_task *t) { return t->func; }
