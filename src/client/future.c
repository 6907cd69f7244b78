/*
 * future.c -- future handles: reference counting, status, result, cancel,
 * done callbacks, dt_wait and dt_as_completed.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"

int dt__future_result_locked(dt_client *c, dt_future *f, int timeout_ms, dt_value **out);

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
  int rc = dt__future_result_locked(c, f, timeout_ms, out);
  dt__client_unlock(c);
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

int dt_future_cancel(dt_future *f) {
  dt__err_clear();
  if (!f) return dt__err(DT_EINVAL, "dt_future_cancel: NULL future");
  dt_client *c = f->client;
  if (!c) return dt__err(DT_ECLOSED, "future '%s' belongs to a closed client", f->key);
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  if (rc == 0 && f->in_map) {
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_CANCEL_KEYS);
    dt__e_list(&e, 1);
    dt__e_str(&e, f->key, f->klen);
    dt__e_end(&e);
    dt__client_wake(c);
    /* the key is no longer this client's: a new submit makes a new future */
    dt__smap_del(&c->futs, f->key, f->klen);
    f->in_map = false;
    if (f->status == DT_PENDING) {
      free(f->err_msg);
      size_t n = f->klen + 64;
      f->err_msg = dt__xmalloc(n);
      snprintf(f->err_msg, n, "future '%s' was cancelled", f->key);
      f->err_code = DT_ECANCELLED;
      dt__future_finish(f, DT_CANCELLED);
    }
  }
  dt__client_unlock(c);
  return rc;
}

int dt_future_add_done_callback(dt_future *f, dt_future_cb cb, void *arg) {
  if (!f || !cb) return dt__err(DT_EINVAL, "dt_future_add_done_callback: NULL argument");
  dt_client *c = f->client;
  if (c) pthread_mutex_lock(&c->lock);
  bool done = f->status != DT_PENDING;
  if (!done) {
    cb_entry *e = dt__xcalloc(1, sizeof(*e));
    e->cb = cb;
    e->arg = arg;
    e->next = f->cbs;
    f->cbs = e;
  }
  if (c) pthread_mutex_unlock(&c->lock);
  if (done) cb(f, arg);
  return 0;
}

dt_value *dt_future_value(dt_future *f) {
  if (!f) return NULL;
  /* the value releases its reference through f's header (proto.h, set
   * when f was made), never calling client code by name */
  dt_value *v = dt__future_ref_value(f->key, f);
  if (v) dt_future_ref(f);
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
    if (timeout_ms < 0) {
      pthread_cond_wait(&c->cond, &c->lock);
    } else if (pthread_cond_timedwait(&c->cond, &c->lock, &dl) != 0 && dt__passed(&dl)) {
      rc = dt__err(DT_ETIMEDOUT, "dt_wait: timed out after %d ms", timeout_ms);
      break;
    }
  }
  dt__client_unlock(c);
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
  dt_as_completed *ac = dt__xcalloc(1, sizeof(*ac));
  pthread_mutex_init(&ac->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ac->cond, &ca);
  pthread_condattr_destroy(&ca);
  ac->done = dt__xcalloc(n ? n : 1, sizeof(*ac->done));
  ac->total = n;
  ac->refs = 1 + (int)n;
  for (size_t i = 0; i < n; i++) dt_future_add_done_callback(fs[i], ac_cb, ac);
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
    if (timeout_ms < 0) {
      pthread_cond_wait(&ac->cond, &ac->lock);
    } else if (pthread_cond_timedwait(&ac->cond, &ac->lock, &dl) != 0 && dt__passed(&dl)) {
      rc = DT_ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&ac->lock);
  if (rc == DT_ETIMEDOUT) dt__err(rc, "dt_as_completed_next: timed out after %d ms", timeout_ms);
  if (rc == DT_EOF) dt__err(rc, "dt_as_completed_next: every future was returned");
  return rc;
}

void dt_as_completed_free(dt_as_completed *ac) {
  if (ac) ac_unref(ac);
}
