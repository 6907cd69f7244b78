/*
 * bind.c -- the internals that language bindings need beyond dtask.h
 * (declared in bind.h): wrapped buffers with a release argument, which
 * bytes belong to the binding, future keys of values, and failing a task
 * with an unformatted message.
 */
#include "bind.h"

#include <stdlib.h>
#include <string.h>

#include "../proto/alloc.h"
#include "../proto/proto.h"
#include "../task/task.h"
#include "client.h"

dt_value *dt__bind_bytes_take_arg(void *data, size_t len, void (*free_fn)(void *), void *arg) {
  return dt__bytes_take_arg(data, len, free_fn, arg);
}

bool dt__bind_bytes_wrapped_by(const dt_value *v, void (*free_fn)(void *)) {
  if (!v || v->type != DT_BYTES || !v->u.bytes.blob) return false;
  return v->u.bytes.blob->free_fn == free_fn;
}

const char *dt__bind_future_key(const dt_value *v) {
  return v && v->type == DT_FUTURE ? v->u.fut.key : NULL;
}

int dt__bind_task_fail(dt_task *t, const char *msg) {
  if (t->err) return 0; /* keep the first failure */
  t->err = dt__try_strdup(msg ? msg : "task failed");
  t->err_code = DT_ETASK;
  return t->err ? 0 : DT_ENOMEM;
}

dt_future *dt__bind_client_future(dt_client *c, const char *key) {
  if (!c || !key) return NULL;
  pthread_mutex_lock(&c->lock);
  dt_future *f = dt__smap_get(&c->futs, key, (uint32_t)strlen(key));
  if (f) f->refs++;
  pthread_mutex_unlock(&c->lock);
  return f;
}
