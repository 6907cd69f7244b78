/*
 * future.c -- futures: the client's table of them (one per key), reference
 * counting, status, result, cancel, done callbacks, dt_wait and
 * dt_as_completed.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "../proto/alloc.h"
#include "../task/task.h"

/* ---------------------------------------------------------------- the table (locked) */

dt_future *dt__future_get(dt_client *c, const char *key, uint32_t klen, bool *created) {
  dt_future *f = dt__smap_get(&c->futs, key, klen);
  if (created) *created = f == NULL;
  if (f) {
    f->refs++;
    return f;
  }
  f = dt__try_calloc(1, sizeof(*f));
  if (!f || !(f->key = dt__try_strndup(key, klen)) || dt__client_map_room(&c->futs, 1)) {
    if (f) free(f->key);
    free(f);
    return NULL;
  }
  atomic_store_explicit(&f->hdr.release, dt_future_release, memory_order_relaxed);
  f->klen = klen;
  f->refs = 1;
  f->client = c;
  f->in_map = true;
  f->status = DT_PENDING;
  dt__smap_put(&c->futs, f->key, klen, f);
  return f;
}

/* cancelled_unlink: takes f off its client's list of cancelled futures */
static void cancelled_unlink(dt_future *f) {
  if (!f->on_cancelled) return;
  if (f->cx_prev) f->cx_prev->cx_next = f->cx_next;
  else if (f->client) f->client->cancelled = f->cx_next;
  if (f->cx_next) f->cx_next->cx_prev = f->cx_prev;
  f->cx_prev = f->cx_next = NULL;
  f->on_cancelled = false;
}

void dt__future_detach_cancelled(dt_client *c) {
  for (dt_future *f = c->cancelled, *n; f; f = n) {
    n = f->cx_next;
    f->cx_prev = f->cx_next = NULL;
    f->on_cancelled = false;
    f->client = NULL;
  }
  c->cancelled = NULL;
}

static void future_free(dt_future *f) {
  cancelled_unlink(f);
  free(f->key);
  free(f->worker);
  free(f->err_msg);
  dt_value_free(f->value);
  while (f->cbs) {
    cb_entry *n = f->cbs->next;
    free(f->cbs);
    f->cbs = n;
  }
  free(f);
}

void dt__futures_undo(dt_future **fs, size_t n) {
  /* a future in the table is held; one that drops to no hold here was
   * made by the calls undone */
  while (n--) {
    dt_future *f = fs[n];
    if (--f->refs > 0) continue;
    if (f->in_map && f->client) dt__smap_del(&f->client->futs, f->key, f->klen);
    future_free(f);
  }
}

void dt__future_unref_locked(dt_future *f) {
  if (--f->refs > 0) return;
  dt_client *c = f->client;
  if (c && f->actor_call) dt__smap_del(&c->acfuts, f->key, f->klen);
  if (c && f->in_map) {
    dt__smap_del(&c->futs, f->key, f->klen);
    if (c->sched && (c->state == CS_READY)) {
      if (dt__client_send_key(c, DT_OP_RELEASE_KEYS, f->key, f->klen) == 0)
        dt__client_wake(c);
      else /* kept at the scheduler until the client goes */
        DT_WARN("out of memory: key '%s' not released at the scheduler", f->key);
    }
  }
  future_free(f); /* takes it off the cancelled list */
}

void dt__future_finish(dt_future *f, dt_future_status st) {
  if (f->status != DT_PENDING && !(f->status == DT_FINISHED && st != DT_FINISHED)) return;
  f->status = st;
  dt_client *c = f->client;
  while (f->cbs) {
    cb_entry *e = f->cbs;
    f->cbs = e->next;
    e->next = NULL;
    e->f = f;
    f->refs++;
    if (c) {
      if (c->cbq_tail) c->cbq_tail->next = e;
      else c->cbq_head = e;
      c->cbq_tail = e;
    }
  }
  if (c) c->wake_waiters = true;
}

void dt__future_set_error(dt_future *f, int code, const char *msg) {
  free(f->err_msg);
  f->err_msg = dt__try_strdup(msg);
  f->err_code = code;
}

/* ---------------------------------------------------------------- handles */

dt_future *dt_future_ref(dt_future *f) {
  if (!f) return NULL;
  dt_client *c = f->client;
  if (c) pthread_mutex_lock(&c->lock);
  f->refs++;
  if (c) pthread_mutex_unlock(&c->lock);
  return f;
}

void dt_future_release(dt_future *f) {
  if (!f) return;
  dt_client *c = f->client;
  if (c) pthread_mutex_lock(&c->lock);
  dt__future_unref_locked(f);
  if (c) pthread_mutex_unlock(&c->lock);
}

const char *dt_future_key(const dt_future *f) { return f ? f->key : NULL; }

dt_future_status dt_future_status_get(const dt_future *f) {
  if (!f) return DT_ERROR;
  dt_client *c = f->client;
  if (c) pthread_mutex_lock(&c->lock);
  dt_future_status st = f->status;
  if (c) pthread_mutex_unlock(&c->lock);
  return st;
}

bool dt_future_done(const dt_future *f) { return dt_future_status_get(f) != DT_PENDING; }

int dt_future_result(dt_future *f, int timeout_ms, dt_value **out) {
  dt__err_clear();
  if (!f || !out) return dt__err(DT_EINVAL, "dt_future_result: NULL argument");
  *out = NULL;
  dt_client *c = f->client;
  if (!c) {
    if (f->value) {
      *out = dt_value_ref(f->value);
      return 0;
    }
    if (f->err_msg) return dt__err(f->err_code ? f->err_code : DT_ECLOSED, "%s", f->err_msg);
    return dt__err(DT_ECLOSED, "future '%s' belongs to a closed client", f->key);
  }
  pthread_mutex_lock(&c->lock);
  dt__client_enter(c);
  int rc = dt__future_result_locked(c, f, timeout_ms, out);
  dt__client_leave(c);
  dt__task_block_end();
  return rc;
}

const char *dt_future_exception(const dt_future *f) {
  if (!f) return NULL;
  dt_client *c = f->client;
  if (c) pthread_mutex_lock(&c->lock);
  const char *m = f->status == DT_ERROR || f->status == DT_LOST || f->status == DT_CANCELLED
                      ? f->err_msg
                      : NULL;
  if (c) pthread_mutex_unlock(&c->lock);
  return m;
}

static int cancel(dt_future *f, bool force);
int dt_future_cancel(dt_future *f) { return cancel(f, false); }
int dt_future_cancel_force(dt_future *f) { return cancel(f, true); }

static int cancel(dt_future *f, bool force) {
  dt__err_clear();
  if (!f) return dt__err(DT_EINVAL, "dt_future_cancel: NULL future");
  dt_client *c = f->client;
  if (!c) return dt__err(DT_ECLOSED, "future '%s' belongs to a closed client", f->key);
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  if (rc == 0 && f->in_map) {
    size_t n = f->klen + 64;
    char *msg = f->status == DT_PENDING ? dt__try_malloc(n) : NULL;
    if ((f->status == DT_PENDING && !msg) ||
        (force && dt__client_send_key(c, DT_OP_CANCEL_FORCE, f->key, f->klen) != 0) ||
        dt__client_send_key(c, DT_OP_CANCEL_KEYS, f->key, f->klen) != 0) {
      free(msg);
      rc = dt__err(DT_ENOMEM, "dt_future_cancel: out of memory");
    } else {
      dt__client_wake(c);
      /* the key is no longer this client's: a new submit makes a new future */
      dt__smap_del(&c->futs, f->key, f->klen);
      f->in_map = false;
      f->cx_prev = NULL; /* still c's: close must detach it (future_free unlinks) */
      f->cx_next = c->cancelled;
      if (c->cancelled) c->cancelled->cx_prev = f;
      c->cancelled = f;
      f->on_cancelled = true;
      if (f->status == DT_PENDING) {
        free(f->err_msg);
        snprintf(msg, n, "future '%s' was cancelled", f->key);
        f->err_msg = msg;
        f->err_code = DT_ECANCELLED;
        dt__future_finish(f, DT_CANCELLED);
      } else if (f->status == DT_FINISHED || f->status == DT_ERROR) {
        /* done already: cancelled too, its result dropped (as in Dask); its
         * done callbacks ran when it finished */
        char *m2 = dt__try_malloc(f->klen + 64);
        if (m2) {
          snprintf(m2, f->klen + 64, "future '%s' was cancelled", f->key);
          free(f->err_msg);
          f->err_msg = m2;
        }
        f->err_code = DT_ECANCELLED;
        dt_value_free(f->value);
        f->value = NULL;
        f->status = DT_CANCELLED;
      }
    }
  }
  dt__client_unlock(c);
  return rc;
}

/* add_cb: e (cb and arg set) waits on f, or runs now and is freed if f is
 * done; it cannot fail */
static void add_cb(dt_future *f, cb_entry *e) {
  dt_client *c = f->client;
  if (c) pthread_mutex_lock(&c->lock);
  bool done = f->status != DT_PENDING;
  if (!done) {
    e->next = f->cbs;
    f->cbs = e;
  }
  if (c) pthread_mutex_unlock(&c->lock);
  if (done) {
    e->cb(f, e->arg);
    free(e);
  }
}

int dt_future_add_done_callback(dt_future *f, dt_future_cb cb, void *arg) {
  if (!f || !cb) return dt__err(DT_EINVAL, "dt_future_add_done_callback: NULL argument");
  cb_entry *e = dt__try_calloc(1, sizeof(*e));
  if (!e) return dt__err(DT_ENOMEM, "dt_future_add_done_callback: out of memory");
  e->cb = cb;
  e->arg = arg;
  add_cb(f, e);
  return 0;
}

dt_value *dt_future_value(dt_future *f) {
  if (!f) return NULL;
  /* the value releases its reference through f's header (proto.h, set
   * when f was made), never calling client code by name */
  dt_value *v = dt__future_ref_value(f->key, f);
  if (v) dt_future_ref(f);
  else dt__err(DT_ENOMEM, "dt_future_value: out of memory");
  return v;
}

/* ---------------------------------------------------------------- wait */

int dt_wait(dt_future *const *fs, size_t n, int timeout_ms, dt_wait_mode mode) {
  dt__err_clear();
  if (n == 0) return 0;
  if (!fs) return dt__err(DT_EINVAL, "dt_wait: NULL futures");
  dt_client *c = NULL;
  for (size_t i = 0; i < n; i++) {
    if (!fs[i]) return dt__err(DT_EINVAL, "dt_wait: future %zu is NULL", i);
    if (fs[i]->client) {
      if (c && fs[i]->client != c) return dt__err(DT_EINVAL, "dt_wait: futures of several clients");
      c = fs[i]->client;
    }
  }
  if (!c) return 0; /* all detached: nothing more will happen */
  struct timespec dl;
  dt__deadline(&dl, timeout_ms >= 0 ? timeout_ms : 0);
  pthread_mutex_lock(&c->lock);
  dt__client_enter(c);
  size_t cursor = 0;
  int rc = 0;
  for (;;) {
    if (mode == DT_FIRST_COMPLETED) {
      bool any = false;
      for (size_t i = 0; i < n && !any; i++) any = fs[i]->status != DT_PENDING;
      if (any) break;
    } else {
      while (cursor < n && fs[cursor]->status != DT_PENDING) cursor++;
      if (cursor == n) break;
    }
    if (c->state != CS_READY && c->state != CS_CONNECTING) {
      rc = dt__client_usable(c);
      break;
    }
    dt__task_block_begin();
    if (timeout_ms < 0) {
      pthread_cond_wait(&c->cond, &c->lock);
    } else if (pthread_cond_timedwait(&c->cond, &c->lock, &dl) != 0 && dt__passed(&dl)) {
      rc = dt__err(DT_ETIMEDOUT, "dt_wait: timed out after %d ms", timeout_ms);
      break;
    }
  }
  dt__client_leave(c);
  dt__task_block_end();
  return rc;
}

/* ---------------------------------------------------------------- as_completed */

struct dt_as_completed {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int refs; /* the user + one per callback not yet run */
  dt_future **done;
  size_t ndone, head, total, returned;
};

static void ac_unref(dt_as_completed *ac) {
  pthread_mutex_lock(&ac->lock);
  int left = --ac->refs;
  pthread_mutex_unlock(&ac->lock);
  if (left) return;
  for (size_t i = ac->head; i < ac->ndone; i++) dt_future_release(ac->done[i]);
  free(ac->done);
  pthread_mutex_destroy(&ac->lock);
  pthread_cond_destroy(&ac->cond);
  free(ac);
}

static void ac_cb(dt_future *f, void *arg) {
  dt_as_completed *ac = arg;
  dt_future_ref(f);
  pthread_mutex_lock(&ac->lock);
  ac->done[ac->ndone++] = f;
  pthread_cond_broadcast(&ac->cond);
  pthread_mutex_unlock(&ac->lock);
  ac_unref(ac);
}

dt_as_completed *dt_as_completed_new(dt_future *const *fs, size_t n) {
  /* everything is allocated before the first callback is registered, so
   * that out of memory leaves no callback behind */
  dt_as_completed *ac = dt__try_calloc(1, sizeof(*ac));
  cb_entry **es = dt__try_calloc(n ? n : 1, sizeof(*es));
  if (ac) ac->done = dt__try_calloc(n ? n : 1, sizeof(*ac->done));
  bool ok = ac && es && ac->done;
  for (size_t i = 0; ok && i < n; i++) ok = (es[i] = dt__try_calloc(1, sizeof(*es[i]))) != NULL;
  if (!ok) {
    for (size_t i = 0; es && i < n; i++) free(es[i]);
    free(es);
    if (ac) free(ac->done);
    free(ac);
    dt__err(DT_ENOMEM, "dt_as_completed_new: out of memory");
    return NULL;
  }
  pthread_mutex_init(&ac->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ac->cond, &ca);
  pthread_condattr_destroy(&ca);
  ac->total = n;
  ac->refs = 1 + (int)n;
  for (size_t i = 0; i < n; i++) {
    if (!fs[i]) { /* nothing to wait for */
      free(es[i]);
      ac->total--;
      ac->refs--;
      continue;
    }
    es[i]->cb = ac_cb;
    es[i]->arg = ac;
    add_cb(fs[i], es[i]);
  }
  free(es);
  return ac;
}

int dt_as_completed_next(dt_as_completed *ac, int timeout_ms, dt_future **out) {
  if (!ac || !out) return dt__err(DT_EINVAL, "dt_as_completed_next: NULL argument");
  *out = NULL;
  struct timespec dl;
  dt__deadline(&dl, timeout_ms >= 0 ? timeout_ms : 0);
  pthread_mutex_lock(&ac->lock);
  int rc = 0;
  for (;;) {
    if (ac->head < ac->ndone) {
      *out = ac->done[ac->head++];
      ac->returned++;
      break;
    }
    if (ac->returned == ac->total) {
      rc = DT_EOF;
      break;
    }
    dt__task_block_begin();
    if (timeout_ms < 0) {
      pthread_cond_wait(&ac->cond, &ac->lock);
    } else if (pthread_cond_timedwait(&ac->cond, &ac->lock, &dl) != 0 && dt__passed(&dl)) {
      rc = DT_ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&ac->lock);
  dt__task_block_end();
  if (rc == DT_ETIMEDOUT) dt__err(rc, "dt_as_completed_next: timed out after %d ms", timeout_ms);
  if (rc == DT_EOF) dt__err(rc, "dt_as_completed_next: every future was returned");
  return rc;
}

void dt_as_completed_free(dt_as_completed *ac) {
  if (ac) ac_unref(ac);
}
