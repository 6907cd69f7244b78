/*
 * reconnect.c -- a client carries on after its scheduler restarts.  A
 * scheduler with a journal says RECONNECTABLE (with how long to keep
 * trying) after WELCOME.  When the connection is then lost, the client does
 * not fail its futures: it stays CS_CONNECTING (waiting calls keep
 * waiting; new submissions fail with "not connected" until it is back),
 * reconnects with backoff (0.1 s doubling to 2 s, with jitter) and, on
 * WELCOME, sends RESUME with the key of every future it holds: the
 * restarted scheduler wants them again for it and says KEY_IN_MEMORY /
 * KEY_ERRED as they settle (a future that already finished is not finished
 * twice: dt__future_finish ignores it).  Past the grace period the futures
 * fail as before (DT_ECONNLOST).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

static void on_connect(dt_conn *conn, int status);
static void on_close(dt_conn *conn);
static const dt_conn_cbs recon_cbs = {dt__client_on_sched_msg, on_connect, on_close};

int dt__client_on_reconnectable(dt_client *c, const dt_msg *m) {
  uint64_t ms = m->RECONNECTABLE.grace_ms;
  c->reconnect_s = ms > 86400000 ? 86400 : (double)ms / 1000;
  return 0;
}

static void on_timer(uv_timer_t *t) {
  dt_client *c = t->data;
  pthread_mutex_lock(&c->lock);
  if (!c->stop && c->resuming && !c->sched &&
      dt__conn_connect(&c->net, c->addr, &recon_cbs, c, &c->sched) != 0)
    c->sched = NULL; /* retried below, when the timer fires again */
  if (!c->stop && c->resuming && !c->sched) uv_timer_start(&c->retry, on_timer, 500, 0);
  dt__client_unlock(c);
}

static void schedule(dt_client *c) {
  unsigned k = c->reconnects < 5 ? c->reconnects : 5;
  double delay = 0.1 * (double)(1u << k);
  if (delay > 2) delay = 2;
  delay *= 0.75 + 0.5 * (double)(dt__now_ns() % 1000) / 1000.0;
  c->reconnects++;
  uv_timer_start(&c->retry, on_timer, (uint64_t)(delay * 1000), 0);
}

bool dt__client_reconnect_begin(dt_client *c) {
  if (c->reconnect_s <= 0 || c->stop) return false;
  if (!c->resuming) {
    c->resuming = true;
    c->resume_id = c->id;
    c->lost_at = dt__now_s();
    c->reconnects = 0;
    DT_WARN("lost connection to the scheduler at %s%s; reconnecting (for up to %.0f s)", c->addr,
            c->lost_why, c->reconnect_s);
  }
  c->state = CS_CONNECTING;
  schedule(c);
  return true;
}

static void on_connect(dt_conn *conn, int status) {
  dt_client *c = conn->data;
  if (status < 0) return; /* on_close follows */
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(conn), DT_OP_HELLO_CLIENT);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, c->name);
  dt__e_end(&e);
}

static void on_close(dt_conn *conn) {
  dt_client *c = conn->data;
  if (c->state == CS_READY || !c->resuming || c->stop) { /* a later loss, or closing */
    dt__client_sched_lost(conn);
    return;
  }
  c->sched = NULL;
  if (dt__now_s() - c->lost_at < c->reconnect_s) {
    schedule(c);
    return;
  }
  /* given up: the futures fail as they would have without a journal */
  snprintf(c->lost_why, sizeof(c->lost_why), " (no scheduler for %.0f s)", c->reconnect_s);
  c->resuming = false;
  c->reconnect_s = 0;
  c->state = CS_READY;
  dt__client_sched_lost(conn);
}

void dt__client_resume(dt_client *c) {
  c->resuming = false;
  c->last_heard = dt__now_s();
  uint32_t n = 0;
  for (size_t i = 0; i < c->futs.cap; i++) n += c->futs.slots[i].key != NULL;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_RESUME_AS); /* its locks and leases */
  dt__e_uint(&e, c->resume_id);
  dt__e_end(&e);
  dt__e_begin(&e, dt__conn_out(c->sched), DT_OP_RESUME);
  dt__e_list(&e, n);
  for (size_t i = 0; i < c->futs.cap; i++)
    if (c->futs.slots[i].key) dt__e_str(&e, c->futs.slots[i].key, c->futs.slots[i].klen);
  dt__e_end(&e);
  DT_INFO("reconnected to the scheduler at %s after %.1f s; %u futures resumed", c->addr,
          dt__now_s() - c->lost_at, n);
  dt__client_coord_resend(c); /* waiting coordination calls keep waiting */
}
