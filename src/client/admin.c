/*
 * admin.c -- the client's management calls (Dask's Client.restart,
 * restart_workers, register_plugin, unregister_worker_plugin,
 * upload_file for a C shared library).
 *
 * Plugins go to the scheduler (PLUGIN_ADD / PLUGIN_REMOVE), which keeps
 * them and sends them to every worker, joining ones too.  A restart asks
 * each worker's built-in "dtask:admin" actor (src/worker/admin.c) to
 * "restart": a worker under a nanny answers "OK" and exits, and its nanny
 * starts a fresh one at once; a worker without a nanny refuses, naming
 * itself.  dt_client_restart first forgets every future of this client
 * (each becomes cancelled, as Dask's futures do on restart), then
 * restarts every worker and waits for as many workers as there were.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.h"

static int send_plugin(dt_client *c, int op, const char *name, const char *func, const void *data,
                       size_t len, const char *who) {
  dt__err_clear();
  if (!c || !name || !func || (len && !data)) return dt__err(DT_EINVAL, "%s: NULL argument", who);
  size_t nl = strlen(name), fl = strlen(func);
  if (nl == 0 || nl > DT_PLUGIN_MAX_NAME || fl == 0 || fl > DT_PLUGIN_MAX_NAME)
    return dt__err(DT_EINVAL, "%s: name and function must be 1..%d bytes", who, DT_PLUGIN_MAX_NAME);
  if (len > DT_PLUGIN_MAX_BYTES)
    return dt__err(DT_ELIMIT, "%s: plugin '%s' has %zu bytes, more than the %u a plugin may have",
                   who, name, len, DT_PLUGIN_MAX_BYTES);
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  if (rc == 0) {
    dt__msg_out o;
    if (dt__client_begin(&o, c->sched, op, DT__WB_STR(nl) + DT__WB_STR(fl) + DT__WB_STR(len), 0)) {
      rc = dt__err(DT_ENOMEM, "%s: out of memory", who);
    } else {
      dt__e_str(&o.e, name, (uint32_t)nl);
      dt__e_str(&o.e, func, (uint32_t)fl);
      dt__e_bin(&o.e, data ? data : "", len);
      dt__client_end(&o);
      dt__client_wake(c);
    }
  }
  dt__client_unlock(c);
  return rc;
}

int dt_client_register_plugin(dt_client *c, const char *name, const char *func, const void *data,
                              size_t len) {
  return send_plugin(c, DT_OP_PLUGIN_ADD, name, func, data, len, "dt_client_register_plugin");
}

int dt_client_unregister_plugin(dt_client *c, const char *name, const char *func, const void *data,
                                size_t len) {
  return send_plugin(c, DT_OP_PLUGIN_REMOVE, name, func, data, len, "dt_client_unregister_plugin");
}

int dt_client_upload_file(dt_client *c, const char *path) {
  dt__err_clear();
  if (!c || !path) return dt__err(DT_EINVAL, "dt_client_upload_file: NULL argument");
  size_t pl = strlen(path);
  if (pl < 4 || strcmp(path + pl - 3, ".so") != 0)
    return dt__err(DT_EINVAL, "dt_client_upload_file: '%s' is not a shared library (.so); Python "
                              "files (.py, .zip, .egg) go through the Python client's upload_file",
                   path);
  FILE *f = fopen(path, "rb");
  if (!f) return dt__err(DT_ENOTFOUND, "dt_client_upload_file: cannot read '%s'", path);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (len == cap) {
      if (cap >= DT_PLUGIN_MAX_BYTES) {
        rc = dt__err(DT_ELIMIT, "dt_client_upload_file: '%s' is over %u bytes", path,
                     DT_PLUGIN_MAX_BYTES);
        break;
      }
      cap = cap ? cap * 2 : 1 << 16;
      char *nb = realloc(buf, cap);
      if (!nb) {
        rc = dt__err(DT_ENOMEM, "dt_client_upload_file: out of memory");
        break;
      }
      buf = nb;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    if (n == 0) break;
    len += n;
  }
  fclose(f);
  if (rc == 0) {
    const char *base = strrchr(path, '/');
    char name[DT_PLUGIN_MAX_NAME + 1];
    snprintf(name, sizeof(name), "upload-%s", base ? base + 1 : path);
    rc = dt_client_register_plugin(c, name, "dtask:so", buf, len);
  }
  free(buf);
  return rc;
}

/* ---------------------------------------------------------------- restart */

/* admin_call: method on the "dtask:admin" actor of the worker at addr;
 * *out (may be NULL) its value */
static int admin_call(dt_client *c, const char *addr, const char *method, int timeout_ms,
                      dt_value **out) {
  dt_actor *a = NULL;
  dt_future *f = NULL;
  int rc = dt_actor_new(c, "dtask:admin", addr, &a);
  if (rc == 0) rc = dt_actor_call(a, method, dt_list_new(), NULL, &f);
  dt_actor_free(a);
  if (rc) return rc;
  dt_value *v = NULL;
  rc = dt_future_result(f, timeout_ms, &v);
  dt_future_release(f);
  if (out) *out = v;
  else dt_value_free(v);
  return rc;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* left_ms: what is left of timeout_ms (-1: none) since t0 */
static int left_ms(int timeout_ms, double t0) {
  if (timeout_ms < 0) return -1;
  double left = (double)timeout_ms - (now_s() - t0) * 1000;
  return left > 0 ? (int)left : 0;
}

/* restart_addrs: restart the workers at addrs (after checking every one
 * has a nanny), then wait until want workers are connected (want <= 0:
 * no wait) */
static int restart_addrs(dt_client *c, char **addrs, size_t n, int want, int timeout_ms,
                         double t0, bool (*before)(dt_client *)) {
  char bad[1024] = "";
  size_t nbad = 0;
  for (size_t i = 0; i < n; i++) {
    dt_value *v = NULL;
    int rc = admin_call(c, addrs[i], "info", left_ms(timeout_ms, t0), &v);
    if (rc) return dt__err(rc, "restart: worker %s did not answer: %s", addrs[i], dt_last_error());
    const dt_value *nanny = dt_map_get(v, "nanny");
    if (!nanny || dt_value_type(nanny) != DT_BOOL || !dt_value_bool(nanny)) {
      size_t l = strlen(bad);
      snprintf(bad + l, sizeof(bad) - l, "%s%s", nbad++ ? ", " : "", addrs[i]);
    }
    dt_value_free(v);
  }
  if (nbad)
    return dt__err(DT_EINVAL, "cannot restart worker%s %s: %s no nanny (start workers without "
                              "--no-nanny to restart them)", nbad > 1 ? "s" : "", bad,
                   nbad > 1 ? "they have" : "it has");
  if (before && !before(c)) return dt__err(DT_ECLOSED, "restart: the client is closed");
  for (size_t i = 0; i < n; i++) {
    int rc = admin_call(c, addrs[i], "restart", left_ms(timeout_ms, t0), NULL);
    /* the worker may be gone before its answer: that is a restart too */
    if (rc && rc != DT_ELOST && rc != DT_ECONNECT)
      return dt__err(rc, "restart of worker %s failed: %s", addrs[i], dt_last_error());
  }
  if (want <= 0) return 0;
  /* the old workers leave, then fresh ones come: wait for the old ones to
   * go first, so that counting them does not end the wait too early */
  for (;;) {
    dt_worker_info *ws = NULL;
    size_t nw = 0;
    int rc = dt_client_workers(c, left_ms(timeout_ms, t0), &ws, &nw);
    if (rc) return rc;
    size_t old = 0;
    for (size_t i = 0; i < nw; i++)
      for (size_t j = 0; j < n; j++)
        if (strcmp(ws[i].address, addrs[j]) == 0) old++;
    free(ws);
    if (old == 0 && (int)nw >= want) return 0;
    if (timeout_ms >= 0 && left_ms(timeout_ms, t0) == 0)
      return dt__err(DT_ETIMEDOUT, "restart: %zu of %d workers back after %d ms", nw - old, want,
                     timeout_ms);
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
  }
}

static int worker_addrs(dt_client *c, int timeout_ms, char ***out, size_t *n) {
  dt_worker_info *ws = NULL;
  int rc = dt_client_workers(c, timeout_ms, &ws, n);
  if (rc) return rc;
  *out = calloc(*n ? *n : 1, sizeof(char *));
  for (size_t i = 0; *out && i < *n; i++)
    if (!((*out)[i] = strdup(ws[i].address))) {
      for (size_t j = 0; j < i; j++) free((*out)[j]);
      free(*out);
      *out = NULL;
    }
  free(ws);
  return *out ? 0 : dt__err(DT_ENOMEM, "restart: out of memory");
}

static void addrs_free(char **a, size_t n) {
  for (size_t i = 0; a && i < n; i++) free(a[i]);
  free(a);
}

int dt_client_restart_workers(dt_client *c, const char *const *workers, size_t n, int timeout_ms) {
  dt__err_clear();
  if (!c || (n && !workers)) return dt__err(DT_EINVAL, "dt_client_restart_workers: NULL argument");
  double t0 = now_s();
  char **all = NULL;
  size_t nall = 0;
  int rc = worker_addrs(c, timeout_ms, &all, &nall);
  if (rc) return rc;
  char **pick = calloc(n ? n : 1, sizeof(char *));
  size_t np = 0;
  for (size_t i = 0; pick && i < n && rc == 0; i++) {
    const char *w = workers[i] ? workers[i] : "";
    if (strncmp(w, "tcp://", 6) == 0) w += 6;
    size_t j = 0;
    while (j < nall && strcmp(all[j], w) != 0) j++;
    if (j == nall) rc = dt__err(DT_ENOTFOUND, "restart_workers: no worker at '%s'", workers[i]);
    else pick[np++] = all[j];
  }
  if (!pick) rc = dt__err(DT_ENOMEM, "restart_workers: out of memory");
  if (rc == 0) rc = restart_addrs(c, pick, np, (int)nall, timeout_ms, t0, NULL);
  free(pick);
  addrs_free(all, nall);
  return rc;
}

/* forget_all: every future of c becomes cancelled and its key released */
static bool forget_all(dt_client *c) {
  pthread_mutex_lock(&c->lock);
  bool ok = dt__client_usable(c) == 0;
  dt_vec fs = {0};
  for (size_t i = 0; ok && i < c->futs.cap; i++)
    if (c->futs.slots[i].key) dt__vec_push(&fs, c->futs.slots[i].val);
  for (size_t i = 0; i < fs.len; i++) {
    dt_future *f = fs.v[i];
    if (dt__client_send_key(c, DT_OP_CANCEL_KEYS, f->key, f->klen) != 0) continue;
    dt__smap_del(&c->futs, f->key, f->klen);
    f->in_map = false;
    char msg[DT_MAX_KEY + 80];
    snprintf(msg, sizeof(msg), "'%s' was cancelled: the cluster restarted", f->key);
    if (f->status == DT_PENDING) {
      dt__future_set_error(f, DT_ECANCELLED, msg);
      dt__future_finish(f, DT_CANCELLED);
    } else {
      dt__future_set_error(f, DT_ECANCELLED, msg);
      f->status = DT_CANCELLED;
      c->wake_waiters = true;
    }
  }
  dt__vec_free(&fs);
  if (ok) dt__client_wake(c);
  dt__client_unlock(c);
  return ok;
}

int dt_client_restart(dt_client *c, int timeout_ms, bool wait_for_workers) {
  dt__err_clear();
  if (!c) return dt__err(DT_EINVAL, "dt_client_restart: NULL client");
  double t0 = now_s();
  char **all = NULL;
  size_t n = 0;
  int rc = worker_addrs(c, timeout_ms, &all, &n);
  if (rc == 0)
    rc = restart_addrs(c, all, n, wait_for_workers ? (int)n : 0, timeout_ms, t0, forget_all);
  addrs_free(all, n);
  return rc;
}
