/*
 * query.c -- the worker's side of QUERY / ANSWER (see
 * src/scheduler/query.h): the scheduler asks for this worker's recent log
 * lines ("logs"), and task functions log events (dt_log_event), which wait
 * in a bounded queue until the loop thread sends them to the scheduler as
 * QUERY "log_event" with no answer wanted -- before the TASK_FINISHED of
 * the task that logged them, and at each heartbeat.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_int.h"

#define MAX_QUEUED_EVENTS 10000

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static dt_vec queued; /* dt_value* args */
static atomic_bool running;
static atomic_uint dropped;
static atomic_size_t nqueued; /* queued.len, read without the lock */

void dt__wquery_init(void) { atomic_store(&running, true); }

int dt_log_event(const char *topic, dt_value *msg) {
  dt__err_clear();
  if (!topic || !*topic || strlen(topic) > 1024 || !msg) {
    dt_value_free(msg);
    return dt__err(DT_EINVAL, "dt_log_event: the topic must be 1 to 1024 bytes and msg not NULL");
  }
  if (!atomic_load(&running)) {
    dt_value_free(msg);
    return dt__err(DT_EINVAL, "dt_log_event: not inside a dtask worker (a client logs events "
                              "with dt_client_query(c, \"log_event\", ...))");
  }
  dt_value *args = dt_map_new();
  if (!args || dt_map_set(args, "topic", dt_str(topic)) || dt_map_set(args, "msg", msg)) {
    dt_value_free(args);
    return dt__err(DT_ENOMEM, "dt_log_event: out of memory");
  }
  pthread_mutex_lock(&qlock);
  bool full = queued.len >= MAX_QUEUED_EVENTS;
  if (!full) dt__vec_push(&queued, args);
  atomic_store(&nqueued, queued.len);
  pthread_mutex_unlock(&qlock);
  if (full) {
    dt_value_free(args);
    atomic_fetch_add(&dropped, 1);
    return dt__err(DT_ENOMEM, "dt_log_event: too many events waiting to be sent");
  }
  return 0;
}

bool dt__wquery_pending(void) { return atomic_load(&nqueued) > 0; }

void dt__wquery_flush(dt_wbuf *w) {
  if (!w) return;
  pthread_mutex_lock(&qlock);
  dt_vec take = queued;
  queued = (dt_vec){0};
  atomic_store(&nqueued, 0);
  pthread_mutex_unlock(&qlock);
  for (size_t i = 0; i < take.len; i++) {
    dt_payload pl;
    if (dt__payload_encode(take.v[i], &pl, NULL) == 0) {
      dt_enc e;
      dt__e_begin(&e, w, DT_OP_QUERY);
      dt__e_uint(&e, 0);
      dt__e_cstr(&e, "log_event");
      dt__e_payload(&e, &pl);
      dt__e_end(&e);
      dt__payload_clear(&pl);
    } else {
      DT_WARN("an event logged by a task cannot be encoded: dropped");
    }
    dt_value_free(take.v[i]);
  }
  dt__vec_free(&take);
  unsigned d = atomic_exchange(&dropped, 0);
  if (d) DT_WARN("%u event(s) logged by tasks were dropped (more than %d waiting)", d, MAX_QUEUED_EVENTS);
}

static void answer(dt_conn *c, uint64_t req, const char *err, const dt_value *v) {
  dt_value *nil = dt_nil();
  dt_payload pl;
  if (dt__payload_encode(v && !err ? v : nil, &pl, NULL) != 0) {
    err = "the answer cannot be encoded";
    dt__payload_encode(nil, &pl, NULL);
  }
  dt_value_free(nil);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_ANSWER);
  dt__e_uint(&e, req);
  dt__e_cstr(&e, err);
  dt__e_payload(&e, &pl);
  dt__e_end(&e);
  dt__payload_clear(&pl);
}

int dt__wquery_on_query(dt_conn *c, const dt_msg *msg) {
  const dt_msg_QUERY *m = &msg->QUERY;
  if (!(m->name.len == 4 && memcmp(m->name.p, "logs", 4) == 0)) {
    if (m->req) answer(c, m->req, "unknown query for a worker", NULL);
    return 0;
  }
  dt_value *args = NULL;
  int64_t n = 100;
  if (dt__pref_decode(&m->args, &args) == 0 && dt_value_type(args) == DT_MAP) {
    const dt_value *nv = dt_map_get(args, "n");
    if (nv && dt_value_type(nv) == DT_INT) n = dt_value_int(nv);
  }
  dt_value_free(args);
  dt_value *l = dt__log_recent_value(n);
  if (m->req) answer(c, m->req, NULL, l);
  dt_value_free(l);
  return 0;
}
