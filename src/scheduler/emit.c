/*
 * emit.c -- the state machine's events (state.h) as messages: each event
 * in the queue is encoded with the checked encoder (proto/msg.h) onto its
 * peer's connection, except COMPUTE_TASK, KEY_IN_MEMORY and FREE_KEYS (a
 * few per task: hotenc.c's raw writers, same bytes); net/ sends what a
 * connection collected in one loop turn as one batch.  Events for a peer
 * that left meanwhile are dropped, and so is a COMPUTE_TASK whose task no
 * longer runs there (a FREE_KEYS for it follows in the queue).
 */
#include <string.h>

#include "hotenc.h"
#include "server.h"

static const char *unknown_msg = "key is not known to the scheduler (released, or from a closed client)";

static void key_erred(dt_conn *conn, const char *key, uint32_t klen, int code, const char *origin,
                      uint32_t olen, const char *func, const char *worker, const char *msg) {
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(conn), DT_OP_KEY_ERRED);
  dt__e_str(&e, key, klen);
  dt__e_int(&e, code);
  dt__e_str(&e, origin, olen);
  dt__e_cstr(&e, func);
  dt__e_cstr(&e, worker);
  dt__e_cstr(&e, msg);
  dt__e_end(&e);
}

static void encode(const sched *s, const s_event *ev) {
  bool to_worker = ev->kind == SEV_COMPUTE || ev->kind == SEV_FREE || ev->kind == SEV_ACQUIRE ||
                   ev->kind == SEV_AHEAD;
  if (to_worker ? ev->worker->gone : ev->client->gone) return;
  dt_conn *conn = to_worker ? ev->worker->conn : ev->client->conn;
  if (!conn) return;
  const s_task *t = ev->task;
  uint32_t klen;
  const char *key = dt__sched_event_key(s, ev, &klen);
  dt_enc e;
  switch (ev->kind) {
  case SEV_COMPUTE:
    if (t->state == TS_PROCESSING && t->processing_on == ev->worker)
      dt__hot_compute_task(dt__conn_out(conn), t, false);
    else dt__ghost_del((sched *)s, ev->worker, key, klen); /* never sent: nothing runs there */
    break;
  case SEV_AHEAD: /* sent whatever became of it: a FREE follows if it was withdrawn */
    dt__hot_compute_task(dt__conn_out(conn), t, true); /* ahead: no holder named (speculate.c) */
    break;
  case SEV_FREE:
    dt__hot_free_key(dt__conn_out(conn), key, klen);
    break;
  case SEV_ACQUIRE:
    dt__e_begin(&e, dt__conn_out(conn), DT_OP_ACQUIRE);
    dt__e_list(&e, 1);
    dt__e_rec(&e);
    dt__e_str(&e, key, klen);
    dt__e_uint(&e, t->nbytes);
    dt__e_cstr(&e, ev->other->address);
    dt__e_uint(&e, ev->other->id);
    dt__e_end(&e);
    break;
  case SEV_IN_MEMORY:
    dt__hot_key_in_memory(dt__conn_out(conn), key, klen, ev->other ? ev->other->address : "",
                          t->nbytes, ev->inline_, ev->ilen);
    break;
  case SEV_ERRED: {
    const s_task_rare *r = RARE(t);
    const char *origin = r->err_key ? r->err_key : t->key;
    key_erred(conn, key, klen, r->err_code, origin, (uint32_t)strlen(origin),
              r->err_func ? r->err_func : t->func, r->err_worker ? r->err_worker : "",
              r->err_msg ? r->err_msg : "unknown error");
    break;
  }
  case SEV_UNKNOWN:
    key_erred(conn, key, klen, DT_ENOTFOUND, key, klen, "", "", unknown_msg);
    break;
  case SEV_CANCELLED: {
    uint32_t wl;
    const char *why = dt__sched_event_text(s, ev, &wl);
    dt__e_begin(&e, dt__conn_out(conn), DT_OP_KEY_CANCELLED);
    dt__e_str(&e, key, klen);
    dt__e_str(&e, why, wl);
    dt__e_end(&e);
    break;
  }
  default: break;
  }
}

void dt__srv_emit(void) {
  sched *s = &dt__srv.s;
  size_t n;
  const s_event *ev = dt__sched_events(s, &n);
  if (n == 0 && !s->dead_tasks.len && !s->dead_peers.len) return;
  for (size_t i = 0; i < n; i++) encode(s, &ev[i]);
  dt__sched_events_done(s);
  if (dt__ghost_refill(s)) dt__srv_emit(); /* a thread found free while sending */
}

void dt__srv_send_close(dt_conn *c, const char *reason) {
  dt__srv_emit();
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_CLOSE);
  dt__e_cstr(&e, reason);
  dt__e_end(&e);
}
