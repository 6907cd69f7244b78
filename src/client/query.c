/*
 * query.c -- the client's named questions to the scheduler (QUERY /
 * ANSWER, see src/scheduler/query.c for the table of names): the generic
 * dt_client_query and a few typed calls over it.  A pending question is a
 * record in c->queries that the I/O thread completes (dt__client_on_answer).
 * User threads only: out of memory gives DT_ENOMEM with nothing sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "../proto/alloc.h"

typedef struct {
  uint64_t req;
  bool done;
  char *error;     /* the scheduler's reason, or NULL */
  dt_value *value; /* the answer */
} query_req;

int dt__client_on_answer(dt_client *c, const dt_msg *msg) {
  const dt_msg_ANSWER *m = &msg->ANSWER;
  for (size_t i = 0; i < c->queries.len; i++) {
    query_req *q = c->queries.v[i];
    if (q->req != m->req || q->done) continue;
    q->done = true;
    if (m->error.p) q->error = dt__str_dup(m->error, 4096);
    else if (dt__pref_decode(&m->value, &q->value) != 0)
      q->error = dt__xstrdup("the scheduler's answer is malformed");
    c->wake_waiters = true;
  }
  return 0;
}

int dt_client_query(dt_client *c, const char *name, const dt_value *args, int timeout_ms,
                    dt_value **out) {
  dt__err_clear();
  if (out) *out = NULL;
  if (!c || !name || !*name) return dt__err(DT_EINVAL, "dt_client_query: NULL argument");
  if (strlen(name) > 128) return dt__err(DT_EINVAL, "dt_client_query: query name too long");
  if (args && dt_value_type(args) != DT_MAP && dt_value_type(args) != DT_NIL)
    return dt__err(DT_EINVAL, "dt_client_query: the arguments must be a map (or NULL)");
  dt_payload pl;
  dt_value *nil = args ? NULL : dt_nil();
  if (!args && !nil) return dt__err(DT_ENOMEM, "dt_client_query: out of memory");
  int rc = dt__payload_encode(args ? args : nil, &pl, NULL);
  dt_value_free(nil);
  if (rc) return dt__err(DT_EINVAL, "dt_client_query: the arguments cannot be encoded");
  struct timespec dl;
  dt__deadline(&dl, timeout_ms >= 0 ? timeout_ms : 3600 * 1000);
  pthread_mutex_lock(&c->lock);
  if ((rc = dt__client_usable(c)) != 0) {
    pthread_mutex_unlock(&c->lock);
    dt__payload_clear(&pl);
    return rc;
  }
  query_req *q = dt__try_calloc(1, sizeof(*q));
  dt__msg_out o;
  if (!q || dt__client_vec_room(&c->queries, 1) ||
      dt__client_begin(&o, c->sched, DT_OP_QUERY,
                       DT__WB_NUM + DT__WB_STR(strlen(name)) + DT__WB_PAYLOAD(&pl), pl.nframes)) {
    free(q);
    pthread_mutex_unlock(&c->lock);
    dt__payload_clear(&pl);
    return dt__err(DT_ENOMEM, "dt_client_query: out of memory");
  }
  q->req = ++c->next_req;
  dt__vec_push(&c->queries, q);
  dt__e_uint(&o.e, q->req);
  dt__e_cstr(&o.e, name);
  dt__e_payload(&o.e, &pl);
  dt__client_end(&o);
  dt__client_wake(c);
  dt__client_enter(c);
  while (!q->done && c->state == CS_READY)
    if (!dt__client_wait_until(c, &dl)) break;
  if (q->done && q->error) {
    rc = dt__err(strncmp(q->error, "KeyError", 8) == 0 ? DT_ENOTFOUND : DT_EINVAL, "query '%s': %s",
                 name, q->error);
  } else if (q->done) {
    if (out) *out = q->value;
    else dt_value_free(q->value);
    q->value = NULL;
  } else if (c->state != CS_READY) {
    rc = dt__client_usable(c);
  } else {
    rc = dt__err(DT_ETIMEDOUT, "query '%s': no answer from the scheduler within %d ms", name,
                 timeout_ms);
  }
  dt__vec_remove(&c->queries, q);
  free(q->error);
  dt_value_free(q->value);
  free(q);
  dt__client_leave(c);
  dt__payload_clear(&pl);
  return rc;
}

/* keys_args: {name: [keys...]} (NULL keys: {} -- every key) */
static dt_value *keys_args(const char *name, const char *const *keys, size_t n) {
  dt_value *a = dt_map_new();
  if (!a || !keys) return a;
  dt_value *l = dt_list_new();
  if (!l || dt_map_set(a, name, l)) {
    dt_value_free(a);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    dt_value *s = keys[i] ? dt_str(keys[i]) : NULL;
    if (!s || dt_list_push(l, s)) { /* pushing consumes s, also on failure */
      dt_value_free(a);
      return NULL;
    }
  }
  return a;
}

static int keys_query(dt_client *c, const char *q, const char *argname, const char *const *keys,
                      size_t n, int timeout_ms, dt_value **out) {
  for (size_t i = 0; keys && i < n; i++)
    if (!keys[i]) return dt__err(DT_EINVAL, "dt_client_%s: key %zu is NULL", q, i);
  dt_value *a = keys_args(argname, keys, n);
  if (!a) return dt__err(DT_ENOMEM, "dt_client_%s: out of memory", q);
  int rc = dt_client_query(c, q, a, timeout_ms, out);
  dt_value_free(a);
  return rc;
}

int dt_client_who_has(dt_client *c, const char *const *keys, size_t n, int timeout_ms,
                      dt_value **out) {
  return keys_query(c, "who_has", "keys", keys, n, timeout_ms, out);
}

int dt_client_has_what(dt_client *c, const char *const *workers, size_t n, int timeout_ms,
                       dt_value **out) {
  return keys_query(c, "has_what", "workers", workers, n, timeout_ms, out);
}

int dt_client_story(dt_client *c, const char *const *keys, size_t n, int timeout_ms,
                    dt_value **out) {
  if (!keys || !n) return dt__err(DT_EINVAL, "dt_client_story: no keys");
  return keys_query(c, "story", "keys", keys, n, timeout_ms, out);
}

int dt_client_log_event(dt_client *c, const char *topic, dt_value *msg) {
  dt__err_clear();
  if (!c || !topic || !*topic || !msg) {
    dt_value_free(msg);
    return dt__err(DT_EINVAL, "dt_client_log_event: NULL or empty argument");
  }
  dt_value *a = dt_map_new();
  if (!a || dt_map_set(a, "topic", dt_str(topic))) { /* a NULL value fails, nothing leaks */
    dt_value_free(a);
    dt_value_free(msg);
    return dt__err(DT_ENOMEM, "dt_client_log_event: out of memory");
  }
  if (dt_map_set(a, "msg", msg)) {
    dt_value_free(a);
    return dt__err(DT_ENOMEM, "dt_client_log_event: out of memory");
  }
  int rc = dt_client_query(c, "log_event", a, 30000, NULL);
  dt_value_free(a);
  return rc;
}

int dt_client_get_events(dt_client *c, const char *topic, int timeout_ms, dt_value **out) {
  dt__err_clear();
  dt_value *a = dt_map_new();
  if (!a || (topic && dt_map_set(a, "topic", dt_str(topic)))) {
    dt_value_free(a);
    if (out) *out = NULL;
    return dt__err(DT_ENOMEM, "dt_client_get_events: out of memory");
  }
  int rc = dt_client_query(c, "get_events", a, timeout_ms, out);
  dt_value_free(a);
  return rc;
}
