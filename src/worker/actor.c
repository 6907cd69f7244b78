/*
 * actor.c -- the actors this worker holds (Dask's actors).  A task whose
 * function is "actor:<type>" runs the type's create on a pool thread and
 * keeps the state here under the task's key; the task's result is a small
 * handle {"actor": key, "address": ours, "type": type}.  Callers (clients,
 * tasks through their clients) send ACTOR_CALL straight to our serving
 * port (serve.c); each actor has a queue of calls, run one at a time in
 * arrival order on this file's own threads (never the task pool: a task
 * waiting on an actor must not take the thread the actor needs), calls to
 * different actors in parallel.  ACTOR_RESULT goes back on the caller's
 * connection (if it is still there).  FREE_KEYS of the key releases the
 * actor (link.c): queued calls fail, the state is freed once the running
 * call returns.
 *
 * Threads: the loop thread owns the queues and the connections; the table
 * of actors is also written by the pool thread that creates one, so it is
 * under A.lock, with the run queue and the done list.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_int.h"

#define ACTOR_MAX_THREADS 64      /* actors running at once */
#define ACTOR_MAX_QUEUED 100000   /* calls waiting on one actor */
#define ACTOR_MAX_METHOD 256      /* bytes in a method name */

typedef struct w_actor w_actor;

typedef struct w_acall {
  struct w_acall *next;               /* an actor's queue, the run queue, the done list */
  struct w_acall *all_prev, *all_next; /* every call in flight (loop thread) */
  w_actor *a;
  dt_conn *conn; /* the caller; NULL once it hung up */
  uint64_t req;
  char *method;
  bool attribute;
  dt_value *call; /* [args, kwargs] */
  dt_value *result;
  char *err;
  int err_code;
} w_acall;

struct w_actor {
  char *key;
  uint32_t klen;
  char *type_name;
  dt__actor_type type;
  void *state;
  w_acall *q_head, *q_tail; /* waiting calls (loop thread) */
  uint32_t queued;
  bool busy;     /* one call on an actor thread */
  bool released; /* out of the table: free once idle */
  bool builtin;  /* dt__actor_builtin's: never released */
};

static struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  dt_smap actors;           /* key -> w_actor (under lock) */
  dt_smap dead;             /* keys released while their create ran (under lock) */
  w_acall *run_head, *run_tail;
  w_acall *done_head;       /* newest first */
  int nthreads, idle;
  bool stop;
  bool started;
  uv_async_t done_async;
  w_acall *all;             /* calls in flight (loop thread) */
} A = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* ---------------------------------------------------------------- creating */

/* the "actor:" task handler, on a pool thread */
static dt_value *create_task(dt_task *t) {
  const char *tname = t->func + strlen("actor:");
  dt__actor_type type;
  if (!*tname || dt__actor_type_lookup(tname, &type) != 0) {
    dt_task_fail(t, "unknown actor type '%s' on worker %s", tname, dt__worker.address);
    t->err_code = DT_ENOFUNC;
    return NULL;
  }
  void *state = type.create(t);
  if (t->err) {
    if (state && type.free_fn) type.free_fn(state);
    pthread_mutex_lock(&A.lock);
    free(dt__smap_del(&A.dead, t->key, strlen(t->key)));
    pthread_mutex_unlock(&A.lock);
    return NULL;
  }
  dt_value *h = dt_map_new();
  if (!h || dt_map_set(h, "actor", dt_str(t->key)) ||
      dt_map_set(h, "address", dt_str(dt__worker.address)) || dt_map_set(h, "type", dt_str(tname))) {
    dt_value_free(h);
    if (state && type.free_fn) type.free_fn(state);
    return dt_task_fail(t, "out of memory creating actor '%s'", t->key);
  }
  uint32_t klen = (uint32_t)strlen(t->key);
  pthread_mutex_lock(&A.lock);
  char *dk = dt__smap_del(&A.dead, t->key, klen);
  bool dead = dk != NULL;
  free(dk);
  bool old = !dead && dt__smap_get(&A.actors, t->key, klen);
  if (!dead && !old) {
    w_actor *a = dt__xcalloc(1, sizeof(*a));
    a->klen = klen;
    a->key = dt__xstrndup(t->key, klen);
    a->type_name = dt__xstrdup(tname);
    a->type = type;
    a->state = state;
    dt__smap_put(&A.actors, a->key, a->klen, a);
  }
  pthread_mutex_unlock(&A.lock);
  if (dead || old) { /* released meanwhile, or a rerun here: the one held stays */
    if (state && type.free_fn) type.free_fn(state);
    if (old) DT_WARN("actor '%s' created again on this worker: the first one is kept", t->key);
  }
  return h;
}

static void actor_free(w_actor *a) {
  if (a->type.free_fn) a->type.free_fn(a->state);
  free(a->key);
  free(a->type_name);
  free(a);
}

/* ---------------------------------------------------------------- threads */

static void *actor_thread(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  pthread_mutex_lock(&A.lock);
  for (;;) {
    while (!A.run_head && !A.stop) {
      A.idle++;
      pthread_cond_wait(&A.cond, &A.lock);
      A.idle--;
    }
    if (A.stop) break;
    w_acall *k = A.run_head;
    A.run_head = k->next;
    if (!A.run_head) A.run_tail = NULL;
    pthread_mutex_unlock(&A.lock);

    struct dt_task ctx = {.key = k->a->key, .func = k->method, .args = dt_list_get(k->call, 0),
                          .kwargs = dt_list_get(k->call, 1)};
    dt_value *res = k->a->type.call(k->a->state, k->method, k->attribute, &ctx);
    if (res && ctx.err) {
      dt_value_free(res);
      res = NULL;
    }
    if (!res && !ctx.err) {
      ctx.err = dt__xstrdup("actor method returned NULL without calling dt_task_fail()");
      ctx.err_code = DT_ETASK;
    }
    k->result = res;
    k->err = ctx.err;
    k->err_code = ctx.err_code ? ctx.err_code : DT_ETASK;

    pthread_mutex_lock(&A.lock);
    k->next = A.done_head;
    A.done_head = k;
    uv_async_send(&A.done_async);
  }
  A.nthreads--;
  pthread_mutex_unlock(&A.lock);
  return NULL;
}

/* run: k (its actor idle) to an actor thread; a new thread when none is
 * idle, up to ACTOR_MAX_THREADS (loop thread) */
static void run(w_acall *k) {
  k->a->busy = true;
  pthread_mutex_lock(&A.lock);
  k->next = NULL;
  if (A.run_tail) A.run_tail->next = k;
  else A.run_head = k;
  A.run_tail = k;
  if (A.idle == 0 && A.nthreads < ACTOR_MAX_THREADS) {
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &at, actor_thread, NULL) == 0) A.nthreads++;
    pthread_attr_destroy(&at);
  }
  pthread_cond_signal(&A.cond);
  pthread_mutex_unlock(&A.lock);
}

/* ---------------------------------------------------------------- replies (loop thread) */

static void reply(dt_conn *c, uint64_t req, const dt_value *v, int code, const char *err) {
  if (!c) return;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_ACTOR_RESULT);
  dt__e_uint(&e, req);
  dt__e_bool(&e, v != NULL);
  dt__e_int(&e, v ? 0 : code);
  if (v) dt__e_value(&e, v);
  else dt__e_empty_payload(&e);
  dt__e_cstr(&e, v ? NULL : err);
  dt__e_end(&e);
}

static void call_free(w_acall *k) {
  if (k->all_prev) k->all_prev->all_next = k->all_next;
  else if (A.all == k) A.all = k->all_next;
  if (k->all_next) k->all_next->all_prev = k->all_prev;
  free(k->method);
  dt_value_free(k->call);
  dt_value_free(k->result);
  free(k->err);
  free(k);
}

static void fail_queued(w_actor *a) {
  char msg[DT_MAX_KEY + 100];
  snprintf(msg, sizeof(msg), "actor '%s' was released", a->key);
  while (a->q_head) {
    w_acall *k = a->q_head;
    a->q_head = k->next;
    reply(k->conn, k->req, NULL, DT_ENOTFOUND, msg);
    call_free(k);
  }
  a->q_tail = NULL;
  a->queued = 0;
}

static void on_done(uv_async_t *h) {
  (void)h;
  pthread_mutex_lock(&A.lock);
  w_acall *list = A.done_head;
  A.done_head = NULL;
  pthread_mutex_unlock(&A.lock);
  w_acall *rev = NULL; /* completion order */
  while (list) {
    w_acall *n = list->next;
    list->next = rev;
    rev = list;
    list = n;
  }
  for (w_acall *k = rev, *n; k; k = n) {
    n = k->next;
    w_actor *a = k->a;
    if (k->result) reply(k->conn, k->req, k->result, 0, NULL);
    else reply(k->conn, k->req, NULL, k->err_code, k->err);
    if (a->builtin) dt__admin_replied();
    call_free(k);
    a->busy = false;
    if (a->released) {
      fail_queued(a);
      actor_free(a);
    } else if (a->q_head) {
      w_acall *next = a->q_head;
      a->q_head = next->next;
      if (!a->q_head) a->q_tail = NULL;
      a->queued--;
      run(next);
    }
  }
}

/* ---------------------------------------------------------------- entry points */

void dt__actor_start(uv_loop_t *loop) {
  if (A.started) return;
  A.started = true;
  pthread_mutex_lock(&A.lock);
  A.stop = false;
  pthread_mutex_unlock(&A.lock);
  uv_async_init(loop, &A.done_async, on_done);
  dt_task_register("actor:", create_task);
  dt__admin_start(loop);
}

void dt__actor_builtin(const char *key, dt_actor_call_fn call) {
  w_actor *a = dt__xcalloc(1, sizeof(*a));
  a->klen = (uint32_t)strlen(key);
  a->key = dt__xstrndup(key, a->klen);
  a->type_name = dt__xstrdup("dtask");
  a->type.call = call;
  a->builtin = true;
  pthread_mutex_lock(&A.lock);
  dt__smap_put(&A.actors, a->key, a->klen, a);
  pthread_mutex_unlock(&A.lock);
}

int dt__actor_call(dt_conn *c, const dt_msg *msg) {
  const dt_msg_ACTOR_CALL *m = &msg->ACTOR_CALL;
  char err[DT_MAX_KEY + 400];
  if (m->method.len == 0 || m->method.len > ACTOR_MAX_METHOD || memchr(m->method.p, 0, m->method.len)) {
    snprintf(err, sizeof(err), "bad method name for actor '%.*s' (1..%d bytes, no NUL)",
             (int)m->key.len, m->key.p, ACTOR_MAX_METHOD);
    reply(c, m->req, NULL, DT_EINVAL, err);
    return 0;
  }
  pthread_mutex_lock(&A.lock);
  w_actor *a = dt__smap_get(&A.actors, m->key.p, m->key.len);
  pthread_mutex_unlock(&A.lock);
  if (!a) {
    snprintf(err, sizeof(err), "no actor '%.*s' on worker %s (released, or never created there)",
             (int)m->key.len, m->key.p, dt__worker.address);
    reply(c, m->req, NULL, DT_ENOTFOUND, err);
    return 0;
  }
  if (a->queued >= ACTOR_MAX_QUEUED) {
    snprintf(err, sizeof(err), "actor '%s' has %d calls waiting already", a->key, ACTOR_MAX_QUEUED);
    reply(c, m->req, NULL, DT_ELIMIT, err);
    return 0;
  }
  dt_value *call = NULL;
  int rc = dt__pref_decode(&m->spec, &call);
  if (rc == 0 && (dt_value_type(call) != DT_LIST || dt_list_len(call) != 2 ||
                  dt_value_type(dt_list_get(call, 0)) != DT_LIST ||
                  dt_value_type(dt_list_get(call, 1)) != DT_MAP))
    rc = DT_EPROTO;
  if (rc) {
    dt_value_free(call);
    snprintf(err, sizeof(err), "arguments of %.*s on actor '%s' are not [args, kwargs]",
             (int)m->method.len, m->method.p, a->key);
    reply(c, m->req, NULL, DT_EPROTO, err);
    return 0;
  }
  w_acall *k = dt__xcalloc(1, sizeof(*k));
  k->a = a;
  k->conn = c;
  k->req = m->req;
  k->method = dt__xstrndup(m->method.p, m->method.len);
  k->attribute = m->attribute;
  k->call = call;
  k->all_next = A.all;
  if (A.all) A.all->all_prev = k;
  A.all = k;
  if (!a->busy) {
    run(k);
    return 0;
  }
  if (a->q_tail) a->q_tail->next = k;
  else a->q_head = k;
  a->q_tail = k;
  a->queued++;
  return 0;
}

void dt__actor_conn_closed(dt_conn *c) {
  for (w_acall *k = A.all; k; k = k->all_next)
    if (k->conn == c) k->conn = NULL;
}

void dt__actor_release(const char *key, uint32_t klen) {
  /* its create still running: it must not keep what it makes */
  w_task *t = dt__smap_get(&dt__exec.tasks, key, klen);
  bool creating = t && t->state == WT_EXECUTING && strncmp(t->func, "actor:", 6) == 0;
  pthread_mutex_lock(&A.lock);
  w_actor *a = dt__smap_get(&A.actors, key, klen);
  if (a && a->builtin) a = NULL; /* a task's key that happens to be ours */
  else if (a) dt__smap_del(&A.actors, key, klen);
  else if (creating) {
    char *k = dt__xstrndup(key, klen);
    dt__smap_put(&A.dead, k, klen, k);
  }
  pthread_mutex_unlock(&A.lock);
  if (!a) return;
  DT_DEBUG("actor '%s' released", a->key);
  a->released = true;
  fail_queued(a);
  if (!a->busy) actor_free(a);
}

void dt__actor_destroy(void) {
  pthread_mutex_lock(&A.lock);
  A.stop = true;
  pthread_cond_broadcast(&A.cond);
  dt_vec idle = {0};
  for (size_t i = 0; i < A.actors.cap; i++)
    if (A.actors.slots[i].key && !((w_actor *)A.actors.slots[i].val)->busy)
      dt__vec_push(&idle, A.actors.slots[i].val);
  for (size_t i = 0; i < idle.len; i++) {
    w_actor *a = idle.v[i];
    dt__smap_del(&A.actors, a->key, a->klen);
  }
  for (size_t i = 0; i < A.dead.cap; i++)
    if (A.dead.slots[i].key) free(A.dead.slots[i].val);
  dt__smap_destroy(&A.dead);
  pthread_mutex_unlock(&A.lock);
  for (size_t i = 0; i < idle.len; i++) {
    fail_queued(idle.v[i]);
    actor_free(idle.v[i]);
  }
  dt__vec_free(&idle);
  /* a worker may start again in this process (in-process workers) */
  pthread_mutex_lock(&A.lock);
  A.started = false;
  A.all = NULL;
  A.done_head = NULL;
  pthread_mutex_unlock(&A.lock);
  dt__admin_stop();
}
