/*
 * dispatch.c -- the scheduler's table of message handlers: who may send
 * each message (a stranger before hello, a client, a worker, anyone), the
 * checked decode, the handler, and then the events it caused sent on
 * (dt__srv_emit); and a connection closing, which removes its worker or
 * client.
 */
#include "coord.h"
#include "query.h"
#include "server.h"

static dt_srv *const srv = &dt__srv;

int dt__srv_peer_kind(const dt_conn *c) { return c->data ? *(const int *)c->data : 0; }

typedef int (*handler_fn)(dt_conn *, const dt_msg *);
static const struct {
  int kind; /* who may send it: 0 = before hello */
  handler_fn fn;
} handlers[DT_OP_COUNT] = {
    [DT_OP_HELLO_CLIENT] = {0, dt__on_hello_client},
    [DT_OP_HELLO_WORKER] = {0, dt__on_hello_worker},
    [DT_OP_UPDATE_GRAPH] = {PEER_CLIENT, dt__on_update_graph},
    [DT_OP_RELEASE_KEYS] = {PEER_CLIENT, dt__on_release_keys},
    [DT_OP_WANT_KEYS] = {PEER_CLIENT, dt__on_want_keys},
    [DT_OP_CANCEL_KEYS] = {PEER_CLIENT, dt__on_cancel_keys},
    [DT_OP_WANT_RESULT] = {PEER_CLIENT, dt__on_want_result},
    [DT_OP_WHO_HAS] = {PEER_CLIENT, dt__on_who_has},
    [DT_OP_RETIRE_WORKERS] = {PEER_CLIENT, dt__on_retire_workers},
    [DT_OP_ACQUIRED] = {PEER_WORKER, dt__on_acquired},
    [DT_OP_SCATTER] = {PEER_CLIENT, dt__on_scatter},
    [DT_OP_INFO_REQUEST] = {PEER_CLIENT, dt__on_info_request},
    [DT_OP_TASK_FINISHED] = {PEER_WORKER, dt__on_task_finished},
    [DT_OP_TASK_ERRED] = {PEER_WORKER, dt__on_task_erred},
    [DT_OP_MISSING_DATA] = {PEER_WORKER, dt__on_missing_data},
    [DT_OP_PUT_DATA_DONE] = {PEER_WORKER, dt__on_put_data_done},
    [DT_OP_HEARTBEAT] = {PEER_WORKER, dt__on_heartbeat},
    [DT_OP_CLOSE] = {-1, dt__on_close_msg},
    [DT_OP_NANNY_REPORT] = {0, dt__on_nanny_report},
    [DT_OP_TASK_SECEDED] = {PEER_WORKER, dt__on_task_seceded},
    [DT_OP_TASK_RESCHEDULE] = {PEER_WORKER, dt__on_task_reschedule},
    [DT_OP_FIRE_AND_FORGET] = {PEER_CLIENT, dt__on_fire_and_forget},
    [DT_OP_COORD] = {PEER_CLIENT, dt__on_coord},
    [DT_OP_QUERY] = {-1, dt__on_query}, /* clients and workers: checked there */
    [DT_OP_ANSWER] = {PEER_WORKER, dt__on_answer},
    [DT_OP_PLUGIN_ADD] = {PEER_CLIENT, dt__on_plugin_add},
    [DT_OP_PLUGIN_REMOVE] = {PEER_CLIENT, dt__on_plugin_remove},
    [DT_OP_TASK_RELEASED] = {PEER_WORKER, dt__on_task_released},
    [DT_OP_CANCEL_FORCE] = {PEER_CLIENT, dt__on_cancel_force},
    [DT_OP_RESUME] = {PEER_CLIENT, dt__journal_on_resume},
    [DT_OP_RETIRE_ME] = {PEER_WORKER, dt__on_retire_me},
    [DT_OP_RESUME_AS] = {PEER_CLIENT, dt__journal_on_resume_as},
    [DT_OP_SYNC] = {PEER_CLIENT, dt__on_sync},
    [DT_OP_TASKS_FINISHED] = {PEER_WORKER, dt__on_tasks_finished},
};

int dt__srv_on_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  if (dt__srv_peer_kind(c) == PEER_WORKER) /* any message shows it is alive (loop time: no syscall) */
    ((s_worker *)c->data)->last_seen = (double)uv_now(&srv->loop) / 1e3;
  if (!handlers[op].fn) {
    DT_WARN("unexpected %s message from %s", dt__op_name(op), c->peer);
    return DT_EPROTO;
  }
  int want = handlers[op].kind;
  if (want != -1 && want != dt__srv_peer_kind(c)) {
    int kind = dt__srv_peer_kind(c);
    DT_WARN("%s message from %s which is a %s", dt__op_name(op), c->peer,
            kind == PEER_WORKER ? "worker" : kind == PEER_CLIENT ? "client" : "stranger");
    return DT_EPROTO;
  }
  dt_msg m;
  if (dt__msg_read(r, op, nf, &m) != 0) {
    DT_WARN("malformed message from %s: %s", c->peer, dt__msg_error());
    return DT_EPROTO;
  }
  dt__story_msg(true);
  int rc = handlers[op].fn(c, &m);
  dt__story_msg(false);
  dt__srv_emit(); /* while the message (inline results) is valid */
  return rc;
}

void dt__srv_on_conn_close(dt_conn *c) {
  switch (dt__srv_peer_kind(c)) {
  case PEER_WORKER: {
    s_worker *w = c->data;
    if (w->closing) DT_INFO("worker %s (%s) left", w->name, w->address);
    else DT_WARN("lost worker %s (%s)%s", w->name, w->address,
                 w->nanny_token ? "; its nanny will say what it was running" : "");
    dt__srv_worker_leaves(w);
    /* with a nanny, only the keys it reports as running count as suspects */
    if (!srv->stopping) dt__sched_remove_worker(&srv->s, w, !w->nanny_token && !w->closing);
    break;
  }
  case PEER_CLIENT: {
    s_client *cl = c->data;
    DT_INFO("client %s left", cl->name);
    if (!srv->stopping) dt__coord_client_left(cl->id); /* its locks and leases go to the next waiters */
    dt__topics_client_gone(cl->id); /* and its waits for events */
    if (!srv->stopping) dt__sched_remove_client(&srv->s, cl);
    break;
  }
  default: break;
  }
  if (!srv->stopping) dt__sched_ff_peers_changed(&srv->s);
  c->data = NULL;
  dt__srv_emit();
}

const dt_conn_cbs dt__srv_conn_cbs = {dt__srv_on_msg, NULL, dt__srv_on_conn_close};
