/*
 * query.c -- the table of named queries a client (or a worker) asks the
 * scheduler through QUERY {req, name, args}, answered by ANSWER {req,
 * error, value} (see query.h).  Arguments are a map; every handler checks
 * their types and answers bad input with a clear error, and bounds what it
 * returns (DT_QUERY_MAX items).  Stores kept here, each bounded (events on
 * topics are topics.c's): the metadata tree
 * (DT_META_MAX_BYTES), the task stream with keys (DT_TSTREAM_CAP), and the
 * worker-log requests waiting for their workers (answered when all replied
 * or after DT_QUERY_WAIT_S).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query.h"

static dt_srv *const srv = &dt__srv;

#define DT_QUERY_MAX 200000         /* items in one answer */
#define DT_EVENT_MAX_BYTES (1u << 20)
#define DT_META_MAX_BYTES (16u << 20)
#define DT_META_MAX_DEPTH 32
#define DT_TSTREAM_CAP 4096
#define DT_QUERY_WAIT_S 5.0
#define DT_ANSWER_MAX_BYTES (64u << 20)

/* ---------------------------------------------------------------- stores */

static dt_value *meta; /* the metadata tree (a map), or NULL */

typedef struct {
  char *key;     /* kcap bytes, reused by the next task in this slot */
  uint32_t kcap;
  char *worker;  /* kept while the next in this slot ran on the same worker */
  double start, stop;
  uint64_t nbytes;
  bool ok;
} q_tsev;
static q_tsev tstream[DT_TSTREAM_CAP];
static uint64_t tstream_n;

/* a question to the workers, waiting for their answers */
typedef struct {
  uint64_t id, client_req;
  uint32_t client_id;
  dt_vec workers; /* ids (as pointers) still to answer */
  dt_value *result; /* map: worker address -> answer */
  double deadline;
} q_pending;
static dt_vec pending;
static uint64_t next_pending;

void dt__query_task_done(s_worker *w, const char *key, uint32_t klen, uint64_t nbytes,
                         double duration_s, bool ok) {
  q_tsev *e = &tstream[tstream_n++ % DT_TSTREAM_CAP];
  if (klen + 1 > e->kcap) /* the slot's buffers are reused: no allocation per task */
    free(e->key), e->kcap = klen < 64 ? 64 : klen + 1, e->key = dt__xmalloc(e->kcap);
  memcpy(e->key, key, klen), e->key[klen] = '\0';
  if (!e->worker || strcmp(e->worker, w->address)) free(e->worker), e->worker = dt__xstrdup(w->address);
  e->stop = dt__wall_s();
  e->start = e->stop - (duration_s > 0 ? duration_s : 0);
  e->nbytes = nbytes;
  e->ok = ok;
}

/* ---------------------------------------------------------------- helpers */

typedef struct {
  dt_conn *c;
  int kind; /* PEER_CLIENT or PEER_WORKER */
  uint64_t req;
  const dt_value *args; /* a map, or nil */
  dt_value *out;
  char err[400];
  bool deferred; /* answered later (pending) */
} q_ctx;

static int fail(q_ctx *q, const char *fmt, const char *a) {
  snprintf(q->err, sizeof(q->err), fmt, a);
  return -1;
}

static const dt_value *arg(const q_ctx *q, const char *name) {
  const dt_value *v = dt_map_get(q->args, name);
  return v && dt_value_type(v) != DT_NIL ? v : NULL;
}

/* arg_strs: the argument name as a list of strings (a single string is a
 * list of one); NULL list when absent.  -1 with the error if it is another type. */
static int arg_strs(q_ctx *q, const char *name, const dt_value **list, bool *single) {
  const dt_value *v = arg(q, name);
  *list = v;
  if (single) *single = v && dt_value_type(v) == DT_STR;
  if (!v || dt_value_type(v) == DT_STR) return 0;
  if (dt_value_type(v) != DT_LIST) return fail(q, "argument '%s' must be a string or a list of strings", name);
  for (size_t i = 0; i < dt_list_len(v); i++)
    if (dt_value_type(dt_list_get(v, i)) != DT_STR)
      return fail(q, "argument '%s' must be a list of strings", name);
  if (dt_list_len(v) > DT_QUERY_MAX) return fail(q, "argument '%s' has too many items", name);
  return 0;
}
static size_t strs_len(const dt_value *l) {
  return !l ? 0 : dt_value_type(l) == DT_STR ? 1 : dt_list_len(l);
}
static const char *strs_at(const dt_value *l, size_t i, size_t *len) {
  return dt_value_str(dt_value_type(l) == DT_STR ? l : dt_list_get(l, i), len);
}

static int arg_int(q_ctx *q, const char *name, int64_t dflt, int64_t *out) {
  const dt_value *v = arg(q, name);
  *out = dflt;
  if (!v) return 0;
  if (dt_value_type(v) != DT_INT) return fail(q, "argument '%s' must be an integer", name);
  *out = dt_value_int(v);
  return 0;
}

static int arg_num(q_ctx *q, const char *name, double *out, bool *given) {
  const dt_value *v = arg(q, name);
  *given = v != NULL;
  if (!v) return 0;
  if (dt_value_type(v) != DT_INT && dt_value_type(v) != DT_DOUBLE)
    return fail(q, "argument '%s' must be a number", name);
  *out = dt_value_double(v);
  return 0;
}

/* the connected workers named (by name or address) in l; all when l is NULL */
static void workers_of(const dt_value *l, dt_vec *out) {
  for (size_t i = 0; i < srv->s.workers.len; i++) {
    s_worker *w = srv->s.workers.v[i];
    bool ok = !l;
    for (size_t k = 0; l && k < strs_len(l) && !ok; k++) {
      size_t n;
      const char *s = strs_at(l, k, &n);
      if (n > 6 && memcmp(s, "tcp://", 6) == 0) s += 6, n -= 6;
      ok = (strlen(w->name) == n && memcmp(w->name, s, n) == 0) ||
           (strlen(w->address) == n && memcmp(w->address, s, n) == 0);
    }
    if (ok) dt__vec_push(out, w);
  }
}

#define too_many(q) fail(q, "the answer would hold more than %s items: name the keys or workers", "200000")

/* every task in memory, or the named ones that are known */
static int tasks_of(q_ctx *q, const dt_value *keys, dt_vec *out, bool memory_only) {
  if (keys) {
    for (size_t i = 0; i < strs_len(keys); i++) {
      size_t n;
      const char *k = strs_at(keys, i, &n);
      s_task *t = dt__sched_get_task(&srv->s, k, (uint32_t)n);
      if (t && (!memory_only || t->state == TS_MEMORY)) dt__vec_push(out, t);
    }
    return 0;
  }
  for (size_t i = 0; i < srv->s.tasks.cap; i++) {
    s_task *t = srv->s.tasks.slots[i].t;
    if (!t || (memory_only && t->state != TS_MEMORY)) continue;
    if (out->len >= DT_QUERY_MAX) return too_many(q);
    dt__vec_push(out, t);
  }
  return 0;
}

/* ---------------------------------------------------------------- queries */

static int q_who_has(q_ctx *q) {
  const dt_value *keys;
  dt_vec ts = {0};
  if (arg_strs(q, "keys", &keys, NULL) || tasks_of(q, keys, &ts, false)) return dt__vec_free(&ts), -1;
  q->out = dt_map_new();
  for (size_t i = 0; keys && i < strs_len(keys); i++) { /* unknown keys: [] as in Dask */
    size_t n;
    const char *k = strs_at(keys, i, &n);
    char *kz = dt__xstrndup(k, n);
    dt_map_set(q->out, kz, dt_list_new());
    free(kz);
  }
  for (size_t i = 0; i < ts.len; i++) {
    s_task *t = ts.v[i];
    if (!keys && !t->who_has.len) continue;
    dt_value *l = dt_list_new();
    for (uint32_t k = 0; k < t->who_has.len; k++)
      dt_list_push(l, dt_str(((s_worker *)t->who_has.v[k])->address));
    dt_map_set(q->out, t->key, l);
  }
  dt__vec_free(&ts);
  return 0;
}

static int q_has_what(q_ctx *q) {
  const dt_value *names;
  dt_vec ws = {0};
  if (arg_strs(q, "workers", &names, NULL)) return -1;
  workers_of(names, &ws);
  dt_value **lists = dt__xcalloc(ws.len ? ws.len : 1, sizeof(*lists));
  for (size_t i = 0; i < ws.len; i++) lists[i] = dt_list_new();
  size_t total = 0;
  for (size_t i = 0; i < srv->s.tasks.cap && total <= DT_QUERY_MAX; i++) {
    s_task *t = srv->s.tasks.slots[i].t;
    for (uint32_t h = 0; t && h < t->who_has.len; h++)
      for (size_t k = 0; k < ws.len; k++)
        if (t->who_has.v[h] == ws.v[k]) dt_list_push(lists[k], dt_str(t->key)), total++;
  }
  q->out = dt_map_new();
  for (size_t i = 0; i < ws.len; i++) dt_map_set(q->out, ((s_worker *)ws.v[i])->address, lists[i]);
  free(lists);
  dt__vec_free(&ws);
  return total > DT_QUERY_MAX ? too_many(q) : 0;
}

static int q_processing(q_ctx *q) {
  const dt_value *names;
  dt_vec ws = {0};
  if (arg_strs(q, "workers", &names, NULL)) return -1;
  workers_of(names, &ws);
  q->out = dt_map_new();
  for (size_t i = 0; i < ws.len; i++) {
    s_worker *w = ws.v[i];
    dt_value *l = dt_list_new();
    for (size_t k = 0; k < w->processing.len && k < DT_QUERY_MAX; k++)
      dt_list_push(l, dt_str(((s_task *)w->processing.v[k])->key));
    dt_map_set(q->out, w->address, l);
  }
  dt__vec_free(&ws);
  return 0;
}

static int q_ncores(q_ctx *q) {
  const dt_value *names;
  dt_vec ws = {0};
  if (arg_strs(q, "workers", &names, NULL)) return -1;
  workers_of(names, &ws);
  q->out = dt_map_new();
  for (size_t i = 0; i < ws.len; i++)
    dt_map_set(q->out, ((s_worker *)ws.v[i])->address, dt_int(((s_worker *)ws.v[i])->nthreads));
  dt__vec_free(&ws);
  return 0;
}

static int q_nbytes(q_ctx *q) {
  const dt_value *keys;
  dt_vec ts = {0};
  if (arg_strs(q, "keys", &keys, NULL) || tasks_of(q, keys, &ts, true)) return dt__vec_free(&ts), -1;
  q->out = dt_map_new();
  for (size_t i = 0; i < ts.len; i++)
    dt_map_set(q->out, ((s_task *)ts.v[i])->key, dt_int((int64_t)((s_task *)ts.v[i])->nbytes));
  dt__vec_free(&ts);
  return 0;
}

static int q_story(q_ctx *q) {
  const dt_value *keys;
  if (arg_strs(q, "keys", &keys, NULL)) return -1;
  if (!keys) return fail(q, "story needs %s", "'keys': the keys whose transitions to show");
  q->out = dt_list_new();
  for (size_t i = 0; i < strs_len(keys); i++) {
    size_t n;
    const char *k = strs_at(keys, i, &n);
    dt__story_of(k, (uint32_t)n, q->out, 10000);
  }
  return 0;
}

static int q_log_event(q_ctx *q) {
  const dt_value *tl;
  bool single;
  if (arg_strs(q, "topic", &tl, &single)) return -1;
  if (!tl || !strs_len(tl)) return fail(q, "log_event needs %s", "'topic': a string or a list of strings");
  const dt_value *msg = dt_map_get(q->args, "msg");
  if (!msg) return fail(q, "log_event needs %s", "'msg'");
  if (dt__value_nbytes(msg) > DT_EVENT_MAX_BYTES) return fail(q, "the event is over %s", "1 MiB");
  dt_value *row = dt_list_of(2, dt_double(dt__wall_s()), dt_value_ref((dt_value *)msg));
  for (size_t i = 0; i < strs_len(tl) && i < 100; i++) {
    size_t n;
    const char *t = strs_at(tl, i, &n);
    if (n == 0 || n > 1024) continue;
    dt__topic_push(t, n, row);
  }
  dt_value_free(row);
  return 0;
}

static int q_get_events(q_ctx *q) {
  const dt_value *tl;
  bool single;
  int64_t since;
  if (arg_strs(q, "topic", &tl, &single) || arg_int(q, "since", -1, &since)) return -1;
  if (tl && !single) return fail(q, "argument '%s' must be one string", "topic");
  if (!tl) {
    q->out = dt__topics_all_events(since);
    return 0;
  }
  size_t n;
  const char *t = dt_value_str(tl, &n);
  q->out = dt__topic_events(t, n, since);
  return 0;
}

static void send_answer(dt_conn *c, uint64_t req, const char *err, const dt_value *v);
static void answer_client(uint32_t client_id, uint64_t req, const dt_value *v) {
  s_client *cl = dt__srv_client_by_id(client_id);
  if (cl && cl->conn && !cl->gone) send_answer(cl->conn, req, NULL, v);
}

/* wait_events {topics: {topic: first number wanted}, timeout: s}: the
 * events there are, or (none yet) the first to come, or none at timeout */
static int q_wait_events(q_ctx *q) {
  double timeout = 5;
  bool given;
  if (arg_num(q, "timeout", &timeout, &given)) return -1;
  const dt_value *want = arg(q, "topics");
  q->out = dt__topics_wait(((s_client *)q->c->data)->id, q->req, want,
                           timeout, answer_client, q->err, sizeof(q->err));
  if (!q->out && q->err[0]) return -1;
  q->deferred = q->out == NULL;
  return 0;
}

static int meta_keys(q_ctx *q, const dt_value **keys) {
  bool single;
  if (arg_strs(q, "keys", keys, &single)) return -1;
  if (!*keys || !strs_len(*keys)) return fail(q, "argument '%s' must name at least one key", "keys");
  if (strs_len(*keys) > DT_META_MAX_DEPTH) return fail(q, "argument '%s' is nested too deep", "keys");
  return 0;
}

static int q_set_metadata(q_ctx *q) {
  const dt_value *keys;
  if (meta_keys(q, &keys)) return -1;
  const dt_value *v = dt_map_get(q->args, "value");
  if (!v) return fail(q, "set_metadata needs %s", "'value'");
  if (dt__value_nbytes(v) + (meta ? dt__value_nbytes(meta) : 0) > DT_META_MAX_BYTES)
    return fail(q, "the metadata would be over %s", "16 MiB");
  if (!meta) meta = dt_map_new();
  dt_value *m = meta;
  size_t n = strs_len(keys);
  for (size_t i = 0; i + 1 < n; i++) {
    size_t kl;
    const char *k = strs_at(keys, i, &kl);
    char *kz = dt__xstrndup(k, kl);
    dt_value *next = (dt_value *)dt_map_get(m, kz);
    if (!next || dt_value_type(next) != DT_MAP) {
      next = dt_map_new();
      dt_map_set(m, kz, next);
    }
    free(kz);
    m = next;
  }
  size_t kl;
  const char *last = strs_at(keys, n - 1, &kl);
  char *kz = dt__xstrndup(last, kl);
  dt_map_set(m, kz, dt_value_ref((dt_value *)v));
  free(kz);
  return 0;
}

static int q_get_metadata(q_ctx *q) {
  const dt_value *keys;
  if (meta_keys(q, &keys)) return -1;
  const dt_value *m = meta;
  for (size_t i = 0; m && i < strs_len(keys); i++) {
    size_t kl;
    const char *k = strs_at(keys, i, &kl);
    char *kz = dt__xstrndup(k, kl);
    m = dt_value_type(m) == DT_MAP ? dt_map_get(m, kz) : NULL;
    free(kz);
  }
  if (m) {
    q->out = dt_value_ref((dt_value *)m);
    return 0;
  }
  const dt_value *dflt = dt_map_get(q->args, "default");
  const dt_value *has = dt_map_get(q->args, "has_default");
  if (dflt && has && dt_value_bool(has)) {
    q->out = dt_value_ref((dt_value *)dflt);
    return 0;
  }
  size_t kl;
  const char *k = strs_at(keys, strs_len(keys) - 1, &kl);
  char kz[300];
  snprintf(kz, sizeof(kz), "%.*s", (int)(kl < 256 ? kl : 256), k);
  return fail(q, "KeyError: no metadata at key '%s'", kz);
}

static int q_task_stream(q_ctx *q) {
  double start = 0, stop = 0;
  bool hs, hp;
  int64_t count;
  if (arg_num(q, "start", &start, &hs) || arg_num(q, "stop", &stop, &hp) ||
      arg_int(q, "count", -1, &count))
    return -1;
  uint64_t first = tstream_n > DT_TSTREAM_CAP ? tstream_n - DT_TSTREAM_CAP : 0;
  if (count >= 0 && tstream_n - first > (uint64_t)count) first = tstream_n - (uint64_t)count;
  q->out = dt_list_new();
  for (uint64_t i = first; i < tstream_n; i++) {
    const q_tsev *e = &tstream[i % DT_TSTREAM_CAP];
    if ((hs && e->stop < start) || (hp && e->start > stop)) continue;
    dt_value *ss = dt_map_new();
    dt_map_set(ss, "action", dt_str("compute"));
    dt_map_set(ss, "start", dt_double(e->start));
    dt_map_set(ss, "stop", dt_double(e->stop));
    dt_value *r = dt_map_new();
    dt_map_set(r, "key", dt_str(e->key));
    dt_map_set(r, "worker", dt_str(e->worker));
    dt_map_set(r, "status", dt_str(e->ok ? "OK" : "error"));
    dt_map_set(r, "nbytes", dt_int((int64_t)e->nbytes));
    dt_map_set(r, "startstops", dt_list_of(1, ss));
    dt_list_push(q->out, r);
  }
  return 0;
}

static int q_logs(q_ctx *q) {
  int64_t n;
  if (arg_int(q, "n", 100, &n)) return -1;
  q->out = dt__log_recent_value(n);
  return 0;
}

static int q_worker_logs(q_ctx *q) {
  const dt_value *names;
  int64_t n;
  if (arg_strs(q, "workers", &names, NULL) || arg_int(q, "n", 100, &n)) return -1;
  dt_vec ws = {0};
  if (pending.len >= 64) return fail(q, "%s", "too many questions to the workers are waiting");
  workers_of(names, &ws);
  q->out = dt_map_new();
  if (!ws.len) return dt__vec_free(&ws), 0;
  q_pending *p = dt__xcalloc(1, sizeof(*p));
  p->id = ++next_pending;
  p->client_req = q->req;
  p->client_id = ((s_client *)q->c->data)->id;
  p->result = q->out;
  q->out = NULL;
  p->deadline = dt__now_s() + DT_QUERY_WAIT_S;
  dt_value *a = dt_map_new();
  dt_map_set(a, "n", dt_int(n));
  dt_payload pl;
  if (dt__payload_encode(a, &pl, NULL) != 0) pl = (dt_payload){0};
  dt_value_free(a);
  for (size_t i = 0; i < ws.len; i++) {
    s_worker *w = ws.v[i];
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(w->conn), DT_OP_QUERY);
    dt__e_uint(&e, p->id);
    dt__e_cstr(&e, "logs");
    dt__e_payload(&e, &pl);
    dt__e_end(&e);
    dt__vec_push(&p->workers, (void *)(uintptr_t)w->id);
  }
  dt__payload_clear(&pl);
  dt__vec_push(&pending, p);
  dt__vec_free(&ws);
  q->deferred = true;
  return 0;
}

static int q_replicate(q_ctx *q) {
  const dt_value *keys, *names;
  int64_t n;
  if (arg_strs(q, "keys", &keys, NULL) || arg_strs(q, "workers", &names, NULL) ||
      arg_int(q, "n", -1, &n))
    return -1;
  if (!keys) return fail(q, "replicate needs %s", "'keys'");
  dt_vec ws = {0}, ts = {0};
  workers_of(names, &ws);
  tasks_of(q, keys, &ts, true);
  int asked = 0;
  for (size_t i = 0; i < ts.len; i++)
    asked += dt__sched_replicate(&srv->s, ts.v[i], n < 0 ? (int)ws.len : (int)(n > 100000 ? 100000 : n),
                                 (s_worker **)ws.v, ws.len);
  if (ws.len == 0) asked = 0;
  q->out = dt_int(asked);
  dt__vec_free(&ws);
  dt__vec_free(&ts);
  return 0;
}

static int q_rebalance(q_ctx *q) {
  const dt_value *keys, *names;
  if (arg_strs(q, "keys", &keys, NULL) || arg_strs(q, "workers", &names, NULL)) return -1;
  dt_vec ws = {0}, ts = {0};
  workers_of(names, &ws);
  if (keys) tasks_of(q, keys, &ts, true);
  int asked = ws.len ? dt__sched_rebalance(&srv->s, keys ? (s_task **)ts.v : NULL, ts.len,
                                           (s_worker **)ws.v, ws.len)
                     : 0;
  q->out = dt_int(asked);
  dt__vec_free(&ws);
  dt__vec_free(&ts);
  return 0;
}

static int q_call_stack(q_ctx *q) {
  return fail(q, "call_stack is not available in dtask: %s", "its workers do not sample stacks; "
              "use get_task_stream or processing to see what runs where");
}

static int q_retry(q_ctx *q) { /* retry.c: Client.retry */
  const dt_value *keys;
  if (arg_strs(q, "keys", &keys, NULL)) return -1;
  return (q->out = dt__query_retry(keys, q->err, sizeof(q->err))) ? 0 : -1;
}
static int q_task_spec(q_ctx *q) {
  const dt_value *r = arg(q, "root");
  q->out = dt__query_task_spec(arg(q, "key"), !r || dt_value_type(r) != DT_BOOL || dt_value_bool(r),
                               q->err, sizeof(q->err));
  return q->out ? 0 : -1;
}

typedef int (*q_fn)(q_ctx *);
static const struct {
  const char *name;
  int who; /* PEER_CLIENT, or 0: clients and workers */
  q_fn fn;
} queries[] = {
    {"who_has", PEER_CLIENT, q_who_has},       {"has_what", PEER_CLIENT, q_has_what},
    {"processing", PEER_CLIENT, q_processing}, {"ncores", PEER_CLIENT, q_ncores},
    {"nbytes", PEER_CLIENT, q_nbytes},         {"story", PEER_CLIENT, q_story},
    {"log_event", 0, q_log_event},             {"get_events", PEER_CLIENT, q_get_events},
    {"wait_events", PEER_CLIENT, q_wait_events},
    {"set_metadata", PEER_CLIENT, q_set_metadata},
    {"get_metadata", PEER_CLIENT, q_get_metadata},
    {"task_stream", PEER_CLIENT, q_task_stream},
    {"logs", PEER_CLIENT, q_logs},             {"worker_logs", PEER_CLIENT, q_worker_logs},
    {"replicate", PEER_CLIENT, q_replicate},   {"rebalance", PEER_CLIENT, q_rebalance},
    {"call_stack", PEER_CLIENT, q_call_stack}, {"retry", PEER_CLIENT, q_retry},
    {"task_spec", PEER_CLIENT, q_task_spec},
};

/* ---------------------------------------------------------------- messages */

static void send_answer(dt_conn *c, uint64_t req, const char *err, const dt_value *v) {
  dt_payload pl = {0};
  char buf[160];
  if (!err) {
    dt_value *nil = v ? NULL : dt_nil();
    if (dt__payload_encode(v ? v : nil, &pl, NULL) != 0) err = "the answer cannot be encoded";
    else if (dt__payload_nbytes(&pl) > DT_ANSWER_MAX_BYTES) {
      snprintf(buf, sizeof(buf), "the answer is over %u MiB: ask for fewer keys or workers",
               DT_ANSWER_MAX_BYTES >> 20);
      err = buf;
    }
    dt_value_free(nil);
  }
  if (err) {
    dt__payload_clear(&pl);
    dt_value *nil = dt_nil();
    dt__payload_encode(nil, &pl, NULL);
    dt_value_free(nil);
  }
  dt__srv_emit(); /* after the events the question may have caused */
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_ANSWER);
  dt__e_uint(&e, req);
  dt__e_cstr(&e, err);
  dt__e_payload(&e, &pl);
  dt__e_end(&e);
  dt__payload_clear(&pl);
}

int dt__on_query(dt_conn *c, const dt_msg *msg) {
  const dt_msg_QUERY *m = &msg->QUERY;
  int kind = dt__srv_peer_kind(c);
  if (kind != PEER_CLIENT && kind != PEER_WORKER) return DT_EPROTO;
  q_ctx q = {.c = c, .kind = kind, .req = m->req};
  int fi = -1;
  for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]) && fi < 0; i++)
    if (strlen(queries[i].name) == m->name.len && memcmp(queries[i].name, m->name.p, m->name.len) == 0)
      fi = (int)i;
  dt_value *args = NULL;
  if (fi < 0) {
    char nm[80];
    snprintf(nm, sizeof(nm), "%.*s", (int)(m->name.len < 64 ? m->name.len : 64), m->name.p);
    fail(&q, "unknown query '%s'", nm);
  } else if (queries[fi].who && queries[fi].who != kind) {
    fail(&q, "query '%s' is for clients", queries[fi].name);
  } else if (dt__pref_decode(&m->args, &args) != 0) {
    fail(&q, "malformed arguments for query '%s'", queries[fi].name);
  } else if (dt_value_type(args) != DT_MAP && dt_value_type(args) != DT_NIL) {
    fail(&q, "the arguments of query '%s' must be a map", queries[fi].name);
  } else {
    q.args = args;
    if (queries[fi].fn(&q) != 0 && !q.err[0]) fail(&q, "query '%s' failed", queries[fi].name);
  }
  if (!q.deferred && m->req) send_answer(c, m->req, q.err[0] ? q.err : NULL, q.out);
  if (q.err[0] && !m->req) DT_WARN("query from %s: %s", c->peer, q.err);
  dt_value_free(q.out);
  dt_value_free(args);
  return 0;
}

static void pending_finish(q_pending *p) {
  s_client *cl = dt__srv_client_by_id(p->client_id);
  if (cl && cl->conn && !cl->gone) send_answer(cl->conn, p->client_req, NULL, p->result);
  dt__vec_remove(&pending, p);
  dt_value_free(p->result);
  dt__vec_free(&p->workers);
  free(p);
}

int dt__on_answer(dt_conn *c, const dt_msg *msg) {
  const dt_msg_ANSWER *m = &msg->ANSWER;
  s_worker *w = c->data;
  q_pending *p = NULL;
  for (size_t i = 0; i < pending.len && !p; i++)
    if (((q_pending *)pending.v[i])->id == m->req) p = pending.v[i];
  if (!p || !dt__vec_remove(&p->workers, (void *)(uintptr_t)w->id)) return 0; /* late */
  dt_value *v = NULL;
  if (m->error.p) {
    v = dt_list_new();
    dt_list_push(v, dt_list_of(2, dt_str("ERROR"), dt_strn(m->error.p, m->error.len)));
  } else if (dt__pref_decode(&m->value, &v) != 0) {
    v = dt_list_new();
  }
  dt_map_set(p->result, w->address, v);
  if (!p->workers.len) pending_finish(p);
  return 0;
}

void dt__query_tick(void) {
  dt__topics_tick();
  double now = dt__now_s();
  for (size_t i = pending.len; i-- > 0;) {
    q_pending *p = pending.v[i];
    if (now >= p->deadline) pending_finish(p);
  }
}

void dt__query_worker_leaves(s_worker *w) {
  dt__sched_moves_forget(w);
  for (size_t i = pending.len; i-- > 0;) {
    q_pending *p = pending.v[i];
    if (dt__vec_remove(&p->workers, (void *)(uintptr_t)w->id) && !p->workers.len) pending_finish(p);
  }
}

void dt__query_free_all(void) {
  while (pending.len) {
    q_pending *p = pending.v[pending.len - 1];
    dt__vec_remove(&pending, p);
    dt_value_free(p->result);
    dt__vec_free(&p->workers);
    free(p);
  }
  dt__vec_free(&pending);
  dt__topics_free_all();
  dt_value_free(meta);
  meta = NULL;
  for (size_t i = 0; i < DT_TSTREAM_CAP; i++) {
    free(tstream[i].key);
    free(tstream[i].worker);
    tstream[i].key = tstream[i].worker = NULL, tstream[i].kcap = 0;
  }
  tstream_n = 0;
  dt__sched_moves_free();
  dt__story_free();
}
