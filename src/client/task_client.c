/*
 * task_client.c -- tasks from tasks, the client's side: dt_task_client,
 * the one client of a worker process that its tasks share (made on first
 * use under a lock, connected to the worker's scheduler; the worker
 * registered its secret and TLS under that address, which
 * dt_client_connect looks up first), and dt_client_fire_and_forget.
 *
 * Futures a task submits and returns inside its result (DT_FUTURE values)
 * hold references on this client's futures, so the worker client keeps
 * wanting those keys for as long as the worker holds the result value;
 * whoever reads the result wants them on its own before the parent result
 * can be released.  The client is never closed: it lives as long as the
 * worker process.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "../proto/alloc.h"
#include "../task/task.h"

static pthread_mutex_t tc_lock = PTHREAD_MUTEX_INITIALIZER;
static dt_client *tc_client;

/* sync_submissions: a task that submitted is about to report its result
 * (which may hold the new futures) on the worker's connection: one round
 * trip on this client's connection first, so the scheduler has taken the
 * submissions in (it reads a connection in order) before anyone reading the
 * result can ask for their keys.  A failure only costs that guarantee. */
static void sync_submissions(void) {
  pthread_mutex_lock(&tc_lock);
  dt_client *c = tc_client;
  pthread_mutex_unlock(&tc_lock);
  if (c) (void)dt__client_sync(c, 30000);
}

dt_client *dt_task_client(dt_task *t) {
  (void)t;
  dt__err_clear();
  pthread_mutex_lock(&tc_lock);
  dt_client *c = tc_client;
  if (c && dt__client_usable(c) != 0) c = NULL; /* lost: connect again (the old one leaks) */
  if (!c) {
    if (!dt__task_env.sched_addr) {
      pthread_mutex_unlock(&tc_lock);
      dt__err(DT_EINVAL, "dt_task_client: not running in a worker");
      return NULL;
    }
    char name[300];
    snprintf(name, sizeof(name), "worker-client-%s", dt__task_env.name ? dt__task_env.name : "");
    dt_client_opts o = {0};
    o.address = dt__task_env.sched_addr;
    o.name = name;
    int rc = dt_client_connect(&o, &c);
    if (rc != 0) c = NULL;
    else {
      c->task_client = true;
      tc_client = c;
      dt__task_sync_hook = sync_submissions;
    }
  }
  pthread_mutex_unlock(&tc_lock);
  return c;
}

int dt_client_fire_and_forget(dt_client *c, dt_future *const *fs, size_t n) {
  dt__err_clear();
  if (!c || (n && !fs)) return dt__err(DT_EINVAL, "dt_client_fire_and_forget: NULL argument");
  for (size_t i = 0; i < n; i++)
    if (!fs[i]) return dt__err(DT_EINVAL, "dt_client_fire_and_forget: future %zu is NULL", i);
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (fs[i]->client != c) {
      rc = dt__err(DT_EINVAL, "future '%s' belongs to another client", fs[i]->key);
      break;
    }
    if (dt__client_send_key(c, DT_OP_FIRE_AND_FORGET, fs[i]->key, fs[i]->klen) != 0)
      rc = dt__err(DT_ENOMEM, "dt_client_fire_and_forget: out of memory");
  }
  if (rc == 0) dt__client_wake(c);
  dt__client_unlock(c);
  return rc;
}

int dt_client_future(dt_client *c, const char *key, dt_future **out) {
  dt__err_clear();
  if (!c || !key || !out) return dt__err(DT_EINVAL, "dt_client_future: NULL argument");
  *out = NULL;
  size_t klen = strlen(key);
  if (klen == 0 || klen > DT_MAX_KEY) return dt__err(DT_EINVAL, "dt_client_future: bad key");
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  bool created = false;
  dt_future *f = rc ? NULL : dt__future_get(c, key, (uint32_t)klen, &created);
  if (!rc && !f) rc = dt__err(DT_ENOMEM, "dt_client_future: out of memory");
  if (f && created) {
    if (dt__client_send_key(c, DT_OP_WANT_KEYS, f->key, f->klen) != 0) {
      dt__future_unref_locked(f);
      f = NULL;
      rc = dt__err(DT_ENOMEM, "dt_client_future: out of memory");
    } else {
      dt__client_wake(c);
    }
  }
  dt__client_unlock(c);
  *out = f;
  return rc;
}
