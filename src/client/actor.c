/*
 * actor.c -- the client side of actors: dt_client_submit_actor (the task
 * "actor:<type>"), handles (dt_actor) and their calls.  A call gets a
 * future that is no key of the scheduler (actor_call: it lives in
 * client->acfuts, never in futs, and releasing it tells no one); the user
 * thread queues the call (actorq) and wakes the I/O thread, which sends
 * ACTOR_CALL on the connection to the actor's worker (the same ones
 * fetch.c uses for GET_DATA) and finishes the future on ACTOR_RESULT, or
 * fails it when that connection goes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "../proto/alloc.h"

#define ACTOR_MAX_NAME 256 /* bytes in a method or attribute name */

struct dt_actor {
  dt_client *c; /* borrowed: the actor must not outlive it */
  char *key;
  char *addr;
  dt_future *f; /* the creating future (held), or NULL */
};

typedef struct {
  uint64_t req;
  dt_future *f; /* held */
  char *addr, *key, *method;
  bool attribute;
  dt_value *call; /* [args, kwargs] */
} acall;

static void acall_free(acall *k) {
  free(k->addr);
  free(k->key);
  free(k->method);
  dt_value_free(k->call);
  free(k);
}

/* finish k's future with an error and drop k (locked) */
static void acall_fail(acall *k, int code, const char *msg) {
  dt_future *f = k->f;
  if (f->status == DT_PENDING) {
    dt__future_set_error(f, code, msg);
    dt__future_finish(f, DT_ERROR);
  }
  dt__future_unref_locked(f);
  acall_free(k);
}

/* ---------------------------------------------------------------- submitting */

int dt_client_submit_actor(dt_client *c, const char *type, dt_value *args, dt_value *kwargs,
                           const dt_submit_opts *opts, dt_future **out) {
  if (!type || !*type || strlen(type) > ACTOR_MAX_NAME) {
    dt_value_free(args);
    dt_value_free(kwargs);
    return dt__err(DT_EINVAL, "dt_client_submit_actor: actor type name empty or too long");
  }
  char func[ACTOR_MAX_NAME + 16];
  snprintf(func, sizeof(func), "actor:%s", type);
  dt_submit_opts o = opts ? *opts : (dt_submit_opts){0};
  if (!o.key) o.pure = DT_NO; /* every actor is a new one */
  return dt_client_submit(c, func, args, kwargs, &o, out);
}

/* ---------------------------------------------------------------- handles */

int dt_actor_new(dt_client *c, const char *key, const char *address, dt_actor **out) {
  dt__err_clear();
  if (!c || !key || !address || !out) return dt__err(DT_EINVAL, "dt_actor_new: NULL argument");
  *out = NULL;
  if (!*key || strlen(key) > DT_MAX_KEY || !*address || strlen(address) > 255)
    return dt__err(DT_EINVAL, "dt_actor_new: bad key or address");
  dt_actor *a = dt__try_calloc(1, sizeof(*a));
  if (!a || !(a->key = dt__try_strdup(key)) || !(a->addr = dt__try_strdup(address))) {
    if (a) free(a->key);
    free(a);
    return dt__err(DT_ENOMEM, "dt_actor_new: out of memory");
  }
  a->c = c;
  *out = a;
  return 0;
}

int dt_actor_from_future(dt_future *f, int timeout_ms, dt_actor **out) {
  dt__err_clear();
  if (!f || !out) return dt__err(DT_EINVAL, "dt_actor_from_future: NULL argument");
  *out = NULL;
  dt_value *h = NULL;
  int rc = dt_future_result(f, timeout_ms, &h);
  if (rc) return rc;
  const char *key = dt_value_str(dt_map_get(h, "actor"), NULL);
  const char *addr = dt_value_str(dt_map_get(h, "address"), NULL);
  if (!key || !addr) {
    dt_value_free(h);
    return dt__err(DT_ETYPE, "the result of '%s' is not an actor (submit it with "
                   "dt_client_submit_actor)", dt_future_key(f));
  }
  if (!f->client) {
    dt_value_free(h);
    return dt__err(DT_ECLOSED, "future '%s' belongs to a closed client", dt_future_key(f));
  }
  rc = dt_actor_new(f->client, key, addr, out);
  dt_value_free(h);
  if (rc == 0) (*out)->f = dt_future_ref(f);
  return rc;
}

const char *dt_actor_key(const dt_actor *a) { return a ? a->key : NULL; }
const char *dt_actor_address(const dt_actor *a) { return a ? a->addr : NULL; }

void dt_actor_free(dt_actor *a) {
  if (!a) return;
  dt_future_release(a->f);
  free(a->key);
  free(a->addr);
  free(a);
}

/* ---------------------------------------------------------------- calls (user threads) */

static int call(dt_actor *a, const char *method, bool attribute, dt_value *args, dt_value *kwargs,
                dt_future **out) {
  dt__err_clear();
  if (out) *out = NULL;
  if (!a || !method || !out || !*method || strlen(method) > ACTOR_MAX_NAME ||
      (args && dt_value_type(args) != DT_LIST) || (kwargs && dt_value_type(kwargs) != DT_MAP)) {
    dt_value_free(args);
    dt_value_free(kwargs);
    return dt__err(DT_EINVAL, "dt_actor_call: NULL actor/out, bad method name, args not a list "
                              "or kwargs not a map");
  }
  if (!args) args = dt_list_new();
  if (!kwargs) kwargs = dt_map_new();
  dt_value *cv = args && kwargs ? dt_list_of(2, args, kwargs) : NULL;
  if (!cv) {
    if (!args || !kwargs) {
      dt_value_free(args);
      dt_value_free(kwargs);
    }
    return dt__err(DT_ENOMEM, "dt_actor_call: out of memory");
  }
  dt_client *c = a->c;
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  if (rc) {
    pthread_mutex_unlock(&c->lock);
    dt_value_free(cv);
    return rc;
  }
  char key[64];
  uint64_t n = ++c->next_acall;
  snprintf(key, sizeof(key), "actor-call-%" PRIu64, n);
  acall *k = dt__try_calloc(1, sizeof(*k));
  dt_future *f = dt__try_calloc(1, sizeof(*f));
  if (!k || !f || !(k->addr = dt__try_strdup(a->addr)) || !(k->key = dt__try_strdup(a->key)) ||
      !(k->method = dt__try_strdup(method)) || !(f->key = dt__try_strdup(key)) ||
      dt__client_vec_room(&c->actorq, 1) || dt__client_map_room(&c->acfuts, 1)) {
    pthread_mutex_unlock(&c->lock);
    if (f) free(f->key);
    free(f);
    if (k) k->call = NULL;
    if (k) acall_free(k);
    dt_value_free(cv);
    return dt__err(DT_ENOMEM, "dt_actor_call: out of memory");
  }
  atomic_store_explicit(&f->hdr.release, dt_future_release, memory_order_relaxed);
  f->klen = (uint32_t)strlen(key);
  f->refs = 2; /* the caller's and the call's */
  f->client = c;
  f->status = DT_PENDING;
  f->asked = true; /* nothing to ask the scheduler */
  f->actor_call = true;
  dt__smap_put(&c->acfuts, f->key, f->klen, f);
  k->f = f;
  k->attribute = attribute;
  k->call = cv;
  dt__vec_push(&c->actorq, k);
  dt__client_wake(c);
  pthread_mutex_unlock(&c->lock);
  *out = f;
  return 0;
}

int dt_actor_call(dt_actor *a, const char *method, dt_value *args, dt_value *kwargs,
                  dt_future **out) {
  return call(a, method, false, args, kwargs, out);
}

int dt_actor_get(dt_actor *a, const char *name, dt_future **out) {
  return call(a, name, true, NULL, NULL, out);
}

/* ---------------------------------------------------------------- the I/O thread (locked) */

void dt__client_process_actorq(dt_client *c) {
  dt_vec q = c->actorq;
  c->actorq = (dt_vec){0};
  for (size_t i = 0; i < q.len; i++) {
    acall *k = q.v[i];
    wconn *wc = dt__smap_get(&c->wconns, k->addr, (uint32_t)strlen(k->addr));
    if (!wc) {
      wc = dt__xcalloc(1, sizeof(*wc));
      wc->client = c;
      wc->addr = dt__xstrdup(k->addr);
      if (dt__conn_connect(&c->net, wc->addr, &dt__client_worker_cbs, wc, &wc->conn) != 0) {
        char why[600];
        snprintf(why, sizeof(why), "cannot reach the worker %s of actor '%s': %s", k->addr, k->key,
                 dt_last_error());
        free(wc->addr);
        free(wc);
        acall_fail(k, DT_ELOST, why);
        continue;
      }
      dt__smap_put(&c->wconns, wc->addr, (uint32_t)strlen(wc->addr), wc);
    }
    k->req = ++c->next_req;
    dt__vec_push(&wc->acalls, k);
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(wc->conn), DT_OP_ACTOR_CALL);
    dt__e_uint(&e, k->req);
    dt__e_str(&e, k->key, strlen(k->key));
    dt__e_cstr(&e, k->method);
    dt__e_bool(&e, k->attribute);
    dt__e_value(&e, k->call); /* a nil payload if it cannot: the worker says so */
    dt__e_end(&e);
    dt_value_free(k->call);
    k->call = NULL;
  }
  dt__vec_free(&q);
}

int dt__client_actor_result(wconn *wc, uint32_t nf, dt_rd *r) {
  dt_msg msg;
  if (dt__msg_read(r, DT_OP_ACTOR_RESULT, nf, &msg) != 0) {
    DT_WARN("malformed ACTOR_RESULT from worker %s: %s", wc->addr, dt__msg_error());
    return DT_EPROTO;
  }
  const dt_msg_ACTOR_RESULT *m = &msg.ACTOR_RESULT;
  acall *k = NULL;
  for (size_t i = 0; i < wc->acalls.len && !k; i++)
    if (((acall *)wc->acalls.v[i])->req == m->req) k = wc->acalls.v[i];
  if (!k) return 0;
  dt__vec_remove(&wc->acalls, k);
  dt_future *f = k->f;
  char text[4096];
  if (m->ok) {
    dt_value *v = NULL;
    int rc = dt__pref_decode(&m->value, &v);
    if (rc) {
      snprintf(text, sizeof(text), "the result of %s on actor '%s' could not be decoded", k->method,
               k->key);
      acall_fail(k, rc, text);
      return 0;
    }
    if (f->status == DT_PENDING) {
      f->value = v;
      dt__future_finish(f, DT_FINISHED);
    } else {
      dt_value_free(v);
    }
    dt__future_unref_locked(f);
    acall_free(k);
    return 0;
  }
  int code = (int)m->code;
  if (code >= 0 || code < DT_EAUTH) code = DT_ETASK; /* only the codes we know */
  snprintf(text, sizeof(text), "%.*s", (int)(m->error.p ? m->error.len : 0),
           m->error.p ? m->error.p : "");
  if (!text[0]) snprintf(text, sizeof(text), "%s on actor '%s' failed", k->method, k->key);
  acall_fail(k, code, text);
  return 0;
}

void dt__client_actor_conn_lost(wconn *wc) {
  for (size_t i = 0; i < wc->acalls.len; i++) {
    acall *k = wc->acalls.v[i];
    char why[600];
    snprintf(why, sizeof(why), "lost the connection to worker %s while calling %s on actor '%s'",
             wc->addr, k->method, k->key);
    acall_fail(k, DT_ELOST, why);
  }
  dt__vec_free(&wc->acalls);
}

void dt__client_actor_close(dt_client *c) {
  for (size_t i = 0; i < c->actorq.len; i++) acall_fail(c->actorq.v[i], DT_ECLOSED, "client was closed");
  c->actorq.len = 0;
  for (size_t i = 0; i < c->acfuts.cap; i++) {
    if (!c->acfuts.slots[i].key) continue;
    dt_future *f = c->acfuts.slots[i].val;
    if (f->status == DT_PENDING) {
      dt__future_set_error(f, DT_ECLOSED, "client was closed while an actor call was pending");
      dt__future_finish(f, DT_CANCELLED);
    }
    f->client = NULL;
  }
  dt__smap_destroy(&c->acfuts);
}
