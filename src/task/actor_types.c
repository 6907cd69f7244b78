/*
 * actor_types.c -- actor types registered by name (dt_actor_register,
 * DT_ACTOR): the three functions a worker uses to make, call and free the
 * state of an actor (src/worker/actor.c holds the actors themselves).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

static pthread_mutex_t types_lock = PTHREAD_MUTEX_INITIALIZER;
static dt_smap types; /* name -> dt__actor_type */

int dt_actor_register(const char *name, dt_actor_create_fn create, dt_actor_call_fn call,
                      dt_actor_free_fn free_fn) {
  if (!name || !*name || !create || !call)
    return dt__err(DT_EINVAL, "dt_actor_register: empty name or NULL create/call");
  if (strlen(name) > 256) return dt__err(DT_EINVAL, "actor type name too long: %.40s...", name);
  pthread_mutex_lock(&types_lock);
  dt__actor_type *t = dt__smap_get(&types, name, strlen(name));
  if (!t) {
    t = dt__xcalloc(1, sizeof(*t));
    t->name = dt__xstrdup(name);
    dt__smap_put(&types, t->name, strlen(t->name), t);
  }
  t->create = create;
  t->call = call;
  t->free_fn = free_fn;
  pthread_mutex_unlock(&types_lock);
  return 0;
}

int dt__actor_type_lookup(const char *name, dt__actor_type *out) {
  pthread_mutex_lock(&types_lock);
  dt__actor_type *t = dt__smap_get(&types, name, strlen(name));
  if (!t) { /* "ns:name" falls back to a type registered as "ns:" */
    const char *colon = strchr(name, ':');
    if (colon && colon > name) t = dt__smap_get(&types, name, (size_t)(colon - name) + 1);
  }
  if (t) *out = *t;
  pthread_mutex_unlock(&types_lock);
  return t ? 0 : DT_ENOTFOUND;
}
