/*
 * coord.c -- the coordination primitives and published datasets (dtask.h's
 * "coordination" section): each call is one COORD request that waits for
 * its COORD_REPLY.  The scheduler holds the state and times waiters out
 * (scheduler/coord.c), so a call waits for the reply however long the
 * timeout: only a lost connection ends it early.  A value received is
 * decoded on the I/O thread, and the futures it names become this client's
 * (the scheduler made this client want them before it sent the reply's
 * KEY_IN_MEMORY, which follows the reply).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "../proto/alloc.h"
#include "../proto/coord_ops.h"

static const char *const op_names[] = {
    "?",
#define DT__COORD_NAME(name, text) text,
    DT_COORD_OPS(DT__COORD_NAME)
#undef DT__COORD_NAME
};

/* a pending COORD request */
typedef struct {
  uint64_t req;
  bool done;
  bool nomem; /* the reply did not fit in memory */
  int code;
  char *error;
  int64_t count;
  dt_value *value; /* with its futures attached */
  char **names;    /* list_datasets */
  size_t nnames;
  /* the request, to send again after the scheduler restarted (borrowed
   * from call(), which waits): dt__client_coord_resend */
  int op;
  const char *const *rnames;
  size_t rn;
  const dt_payload *pl;
  const dt_vec *deps;
  size_t bytes;
  double deadline; /* dt__now_s(); 0: none */
  int64_t arg;
} coord_wait;

/* encode: w's COORD request on the scheduler connection (reserved first) */
static int encode(dt_client *c, coord_wait *w, int timeout_ms) {
  dt__msg_out o;
  if (dt__client_begin(&o, c->sched, DT_OP_COORD, w->bytes, w->pl->nframes)) return DT_ENOMEM;
  dt__e_uint(&o.e, w->req);
  dt__e_uint(&o.e, (uint64_t)w->op);
  dt__e_list(&o.e, (uint32_t)w->rn);
  for (size_t i = 0; i < w->rn; i++) dt__e_cstr(&o.e, w->rnames[i]);
  dt__e_payload(&o.e, w->pl);
  dt__e_list(&o.e, (uint32_t)w->deps->len);
  for (size_t i = 0; i < w->deps->len; i++) dt__e_cstr(&o.e, w->deps->v[i]);
  dt__e_int(&o.e, timeout_ms < 0 ? -1 : timeout_ms);
  dt__e_int(&o.e, w->arg);
  dt__client_end(&o);
  return 0;
}

/* dt__client_coord_resend: the scheduler restarted and this client is back
 * (RESUME sent): every request still waiting goes again, with what is left
 * of its timeout (I/O thread, locked) */
void dt__client_coord_resend(dt_client *c) {
  double now = dt__now_s();
  size_t n = 0;
  for (size_t i = 0; i < c->coords.len; i++) {
    coord_wait *w = c->coords.v[i];
    if (w->done || !w->pl) continue;
    int ms = -1;
    if (w->deadline > 0) ms = w->deadline > now ? (int)((w->deadline - now) * 1000) : 0;
    if (encode(c, w, ms) != 0) {
      w->done = true;
      w->code = DT_ENOMEM;
      c->wake_waiters = true;
      continue;
    }
    n++;
  }
  if (n) DT_INFO("%zu coordination requests sent again after the scheduler restarted", n);
}

/* attach: each DT_FUTURE node of v (fresh from the decoder) takes a
 * reference on this client's future for its key (locked) */
static int attach(dt_client *c, dt_value *v, int depth) {
  if (!v || depth > 200) return 0;
  switch (v->type) {
  case DT_FUTURE:
    if (!v->u.fut.fut) {
      dt_future *f = dt__future_get(c, v->u.fut.key, (uint32_t)strlen(v->u.fut.key), NULL);
      if (!f) return DT_ENOMEM;
      v->u.fut.fut = f;
    }
    return 0;
  case DT_LIST:
    for (size_t i = 0; i < v->u.list.len; i++)
      if (attach(c, v->u.list.items[i], depth + 1)) return DT_ENOMEM;
    return 0;
  case DT_MAP:
    for (size_t i = 0; i < v->u.map.len; i++)
      if (attach(c, v->u.map.vals[i], depth + 1)) return DT_ENOMEM;
    return 0;
  default: return 0;
  }
}

/* release_keys: a reply nobody waits for (or that could not be kept):
 * keys the scheduler made this client want that it has no future for go */
static void release_keys(dt_client *c, const dt_list *keys) {
  dt_list l = *keys;
  dt_sv k;
  while (dt__next_key(&l, &k))
    if (!dt__smap_get(&c->futs, k.p, k.len) && c->sched && c->state == CS_READY)
      (void)dt__client_send_key(c, DT_OP_RELEASE_KEYS, k.p, k.len);
  dt__client_wake(c);
}

int dt__client_on_coord_reply(dt_client *c, const dt_msg *msg) {
  const dt_msg_COORD_REPLY *m = &msg->COORD_REPLY;
  coord_wait *w = NULL;
  for (size_t i = 0; i < c->coords.len && !w; i++)
    if (((coord_wait *)c->coords.v[i])->req == m->req) w = c->coords.v[i];
  if (!w || w->done) {
    release_keys(c, &m->keys);
    return 0;
  }
  w->done = true;
  c->wake_waiters = true;
  w->code = m->code >= 0 || m->code < -100 ? (m->code ? DT_EPROTO : 0) : (int)m->code;
  w->count = m->count;
  if (m->error.p) w->error = dt__str_dup(m->error, 4096);
  if (m->value.len) {
    dt_value *v = NULL;
    if (dt__pref_decode(&m->value, &v) != 0) {
      w->code = DT_EPROTO;
      if (!w->error) w->error = dt__str_dup((dt_sv){"the scheduler sent a value that does not decode", 48}, 100);
      release_keys(c, &m->keys);
      return 0;
    }
    if (attach(c, v, 0)) w->nomem = true;
    w->value = v; /* freed by the caller (outside the lock: it may hold futures) */
  }
  if (m->names.n) {
    w->names = dt__try_calloc(m->names.n, sizeof(char *));
    if (!w->names) w->nomem = true;
    dt_list l = m->names;
    dt_sv s;
    while (w->names && dt__next_str(&l, &s))
      if (!(w->names[w->nnames++] = dt__str_dup(s, DT_MAX_KEY))) w->nomem = true;
  }
  return 0;
}

/* call: one request and its reply.  value borrowed (may be NULL); *out,
 * names, nnames (may be NULL) get what the reply carries. */
static int call(dt_client *c, int op, const char *const *names, size_t n, const dt_value *value,
                int timeout_ms, int64_t arg, int64_t *count, dt_value **out, char ***lnames,
                size_t *lcount) {
  dt__err_clear();
  const char *what = op_names[op];
  if (out) *out = NULL;
  if (!c || !names || n == 0 || n > DT_COORD_MAX_NAMES)
    return dt__err(DT_EINVAL, "%s: no client, or not 1 to %d names", what, DT_COORD_MAX_NAMES);
  size_t bytes = 2 * DT__WB_NUM + 3 * DT__WB_LIST + 2 * DT__WB_NUM;
  for (size_t i = 0; i < n; i++) {
    if (!names[i] || !names[i][0] || strlen(names[i]) > DT_MAX_KEY)
      return dt__err(DT_EINVAL, "%s: a name must be 1 to %d bytes", what, DT_MAX_KEY);
    bytes += DT__WB_STR(strlen(names[i]));
  }
  dt_payload pl = {0};
  dt_vec deps = {0};
  int rc;
  if (value && (rc = dt__payload_encode(value, &pl, &deps)) != 0) {
    dt__vec_free(&deps);
    return dt__err(rc, "%s '%s': the value cannot be sent", what, names[0]);
  }
  if (pl.len + 2 * (size_t)deps.len > DT_COORD_MAX_VALUE + 1024 * 1024 || deps.len > DT_COORD_MAX_KEYS) {
    dt__payload_clear(&pl);
    dt__vec_free(&deps);
    return dt__err(DT_ELIMIT, "%s '%s': the value is too large for the scheduler", what, names[0]);
  }
  bytes += DT__WB_PAYLOAD(&pl);
  for (size_t i = 0; i < deps.len; i++) bytes += DT__WB_STR(strlen(deps.v[i]));
  coord_wait *w = dt__try_calloc(1, sizeof(*w));
  pthread_mutex_lock(&c->lock);
  dt__client_enter(c);
  dt__msg_out o;
  if ((rc = dt__client_usable(c)) != 0) goto out;
  if (!w || dt__client_vec_room(&c->coords, 1) ||
      dt__client_begin(&o, c->sched, DT_OP_COORD, bytes, pl.nframes)) {
    rc = dt__err(DT_ENOMEM, "%s '%s': out of memory", what, names[0]);
    goto out;
  }
  w->req = ++c->next_req;
  dt__vec_push(&c->coords, w);
  w->op = op;
  w->rnames = names;
  w->rn = n;
  w->pl = &pl;
  w->deps = &deps;
  w->bytes = bytes;
  w->arg = arg;
  w->deadline = timeout_ms < 0 ? 0 : dt__now_s() + timeout_ms / 1000.0;
  dt__e_uint(&o.e, w->req);
  dt__e_uint(&o.e, (uint64_t)op);
  dt__e_list(&o.e, (uint32_t)n);
  for (size_t i = 0; i < n; i++) dt__e_cstr(&o.e, names[i]);
  dt__e_payload(&o.e, &pl);
  dt__e_list(&o.e, (uint32_t)deps.len);
  for (size_t i = 0; i < deps.len; i++) dt__e_cstr(&o.e, deps.v[i]);
  dt__e_int(&o.e, timeout_ms < 0 ? -1 : timeout_ms);
  dt__e_int(&o.e, arg);
  dt__client_end(&o);
  dt__client_wake(c);
  /* a scheduler that restarts (journal) does not end the wait: the request
   * goes again when this client is back (dt__client_coord_resend) */
  while (!w->done && (c->state == CS_READY || (c->resuming && c->state == CS_CONNECTING)))
    pthread_cond_wait(&c->cond, &c->lock);
  dt__vec_remove(&c->coords, w);
  if (!w->done && c->lost_why[0] && strstr(c->lost_why, "no scheduler for"))
    rc = dt__err(DT_ECONNLOST, "%s '%s': lost the scheduler, which was not restarted in time%s",
                 what, names[0], c->lost_why);
  else if (!w->done) rc = dt__client_usable(c);
  else if (w->nomem) rc = dt__err(DT_ENOMEM, "%s '%s': out of memory reading the reply", what, names[0]);
  else if (w->code) rc = dt__err(w->code, "%s: %s", what, w->error ? w->error : dt_strerror(w->code));
  if (rc == 0) {
    if (count) *count = w->count;
    if (out) {
      *out = w->value;
      w->value = NULL;
    }
    if (lnames) {
      *lnames = w->names;
      *lcount = w->nnames;
      w->names = NULL;
    }
  }
out:
  dt__client_leave(c);
  dt__payload_clear(&pl);
  dt__vec_free(&deps);
  if (w) {
    dt_value_free(w->value); /* unlocked: it may release futures */
    dt_strings_free(w->names, w->nnames);
    free(w->error);
    free(w);
  }
  return rc;
}

static int call1(dt_client *c, int op, const char *name, const dt_value *value, int timeout_ms,
                 int64_t arg, int64_t *count, dt_value **out) {
  const char *names[1] = {name};
  return call(c, op, name ? names : NULL, 1, value, timeout_ms, arg, count, out, NULL, NULL);
}

static int need_value(const char *what, const dt_value *v, void *out) {
  (void)out;
  if (!v) return dt__err(DT_EINVAL, "%s: NULL value", what);
  return 0;
}

/* ---------------------------------------------------------------- variables */

int dt_variable_set(dt_client *c, const char *name, const dt_value *value) {
  if (need_value("variable set", value, NULL)) return DT_EINVAL;
  return call1(c, DT_COORD_VAR_SET, name, value, -1, 0, NULL, NULL);
}

int dt_variable_get(dt_client *c, const char *name, int timeout_ms, dt_value **out) {
  if (!out) return dt__err(DT_EINVAL, "variable get: NULL out");
  return call1(c, DT_COORD_VAR_GET, name, NULL, timeout_ms, 0, NULL, out);
}

int dt_variable_delete(dt_client *c, const char *name) {
  return call1(c, DT_COORD_VAR_DELETE, name, NULL, 0, 0, NULL, NULL);
}

/* ---------------------------------------------------------------- queues */

int dt_queue_put(dt_client *c, const char *name, const dt_value *value, int64_t maxsize,
                 int timeout_ms) {
  if (need_value("queue put", value, NULL)) return DT_EINVAL;
  return call1(c, DT_COORD_QUEUE_PUT, name, value, timeout_ms, maxsize < 0 ? 0 : maxsize, NULL, NULL);
}

int dt_queue_get(dt_client *c, const char *name, int timeout_ms, dt_value **out) {
  if (!out) return dt__err(DT_EINVAL, "queue get: NULL out");
  return call1(c, DT_COORD_QUEUE_GET, name, NULL, timeout_ms, 0, NULL, out);
}

int dt_queue_qsize(dt_client *c, const char *name, int64_t *out) {
  if (!out) return dt__err(DT_EINVAL, "queue qsize: NULL out");
  return call1(c, DT_COORD_QUEUE_SIZE, name, NULL, 0, 0, out, NULL);
}

/* ---------------------------------------------------------------- locks */

int dt_lock_acquire(dt_client *c, const char *name, int timeout_ms) {
  return call1(c, DT_COORD_LOCK_ACQUIRE, name, NULL, timeout_ms, 0, NULL, NULL);
}

int dt_lock_release(dt_client *c, const char *name) {
  return call1(c, DT_COORD_LOCK_RELEASE, name, NULL, 0, 0, NULL, NULL);
}

int dt_lock_locked(dt_client *c, const char *name, bool *out) {
  if (!out) return dt__err(DT_EINVAL, "lock locked: NULL out");
  int64_t n = 0;
  int rc = call1(c, DT_COORD_LOCK_LOCKED, name, NULL, 0, 0, &n, NULL);
  *out = n != 0;
  return rc;
}

int dt_multilock_acquire(dt_client *c, const char *const *names, size_t n, size_t num_locks,
                         int timeout_ms) {
  return call(c, DT_COORD_MLOCK_ACQUIRE, names, n, NULL, timeout_ms, (int64_t)num_locks, NULL, NULL,
              NULL, NULL);
}

int dt_multilock_release(dt_client *c, const char *const *names, size_t n) {
  return call(c, DT_COORD_MLOCK_RELEASE, names, n, NULL, 0, 0, NULL, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------- events */

int dt_event_set(dt_client *c, const char *name) {
  return call1(c, DT_COORD_EVENT_SET, name, NULL, 0, 0, NULL, NULL);
}

int dt_event_clear(dt_client *c, const char *name) {
  return call1(c, DT_COORD_EVENT_CLEAR, name, NULL, 0, 0, NULL, NULL);
}

int dt_event_wait(dt_client *c, const char *name, int timeout_ms) {
  return call1(c, DT_COORD_EVENT_WAIT, name, NULL, timeout_ms, 0, NULL, NULL);
}

int dt_event_is_set(dt_client *c, const char *name, bool *out) {
  if (!out) return dt__err(DT_EINVAL, "event is_set: NULL out");
  int64_t n = 0;
  int rc = call1(c, DT_COORD_EVENT_IS_SET, name, NULL, 0, 0, &n, NULL);
  *out = n != 0;
  return rc;
}

/* ---------------------------------------------------------------- semaphores */

int dt_semaphore_acquire(dt_client *c, const char *name, int max_leases, int timeout_ms) {
  if (max_leases < 1) return dt__err(DT_EINVAL, "semaphore acquire: max_leases must be at least 1");
  return call1(c, DT_COORD_SEM_ACQUIRE, name, NULL, timeout_ms, max_leases, NULL, NULL);
}

int dt_semaphore_release(dt_client *c, const char *name) {
  return call1(c, DT_COORD_SEM_RELEASE, name, NULL, 0, 0, NULL, NULL);
}

int dt_semaphore_value(dt_client *c, const char *name, int64_t *out) {
  if (!out) return dt__err(DT_EINVAL, "semaphore get_value: NULL out");
  return call1(c, DT_COORD_SEM_VALUE, name, NULL, 0, 0, out, NULL);
}

/* ---------------------------------------------------------------- datasets */

int dt_client_publish_dataset(dt_client *c, const char *name, const dt_value *value, bool override) {
  if (need_value("publish_dataset", value, NULL)) return DT_EINVAL;
  return call1(c, DT_COORD_DS_PUBLISH, name, value, 0, override, NULL, NULL);
}

int dt_client_get_dataset(dt_client *c, const char *name, dt_value **out) {
  if (!out) return dt__err(DT_EINVAL, "get_dataset: NULL out");
  return call1(c, DT_COORD_DS_GET, name, NULL, 0, 0, NULL, out);
}

int dt_client_list_datasets(dt_client *c, char ***names, size_t *n) {
  if (!names || !n) return dt__err(DT_EINVAL, "list_datasets: NULL out");
  *names = NULL;
  *n = 0;
  const char *any[1] = {"*"};
  return call(c, DT_COORD_DS_LIST, any, 1, NULL, 0, 0, NULL, NULL, names, n);
}

int dt_client_unpublish_dataset(dt_client *c, const char *name) {
  return call1(c, DT_COORD_DS_UNPUBLISH, name, NULL, 0, 0, NULL, NULL);
}

void dt_strings_free(char **names, size_t n) {
  for (size_t i = 0; names && i < n; i++) free(names[i]);
  free(names);
}

dt_future *dt_value_future(const dt_value *v) {
  return v && v->type == DT_FUTURE ? v->u.fut.fut : NULL;
}
