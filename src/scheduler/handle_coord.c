/*
 * handle_coord.c -- COORD requests from clients (see coord.h): the checks
 * the decoder cannot make (names, the futures named), the replies
 * (COORD_REPLY), and the timer that expires waiters: one libuv timer armed
 * for the earliest deadline on coord.c's heap.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"

static dt_srv *const srv = &dt__srv;
static uv_timer_t timer;
static bool timer_ready;

uint64_t dt__coord_now(void) { return uv_now(&srv->loop); }

static void on_timer(uv_timer_t *h) {
  (void)h;
  dt__coord_expire(uv_now(&srv->loop));
  dt__srv_emit();
}

void dt__coord_arm(uint64_t deadline) {
  if (deadline == UINT64_MAX) {
    if (timer_ready) uv_timer_stop(&timer);
    return;
  }
  if (!timer_ready) {
    uv_timer_init(&srv->loop, &timer);
    uv_unref((uv_handle_t *)&timer);
    timer_ready = true;
  }
  uint64_t now = uv_now(&srv->loop);
  uv_timer_start(&timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

void dt__coord_reply(uint32_t client, uint64_t req, int code, const char *err, int64_t count,
                     const coord_val *v, const dt_vec *names) {
  s_client *cl = dt__srv_client_by_id(client);
  if (!cl || !cl->conn) return;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(cl->conn), DT_OP_COORD_REPLY);
  dt__e_uint(&e, req);
  dt__e_int(&e, code);
  dt__e_cstr(&e, err);
  dt__e_int(&e, count);
  dt_payload empty = {0};
  dt__e_payload(&e, v ? &v->pl : &empty);
  dt__e_list(&e, v ? v->nkeys : 0);
  for (uint32_t i = 0; v && i < v->nkeys; i++) dt__e_cstr(&e, v->keys[i]);
  dt__e_list(&e, names ? (uint32_t)names->len : 0);
  for (size_t i = 0; names && i < names->len; i++) dt__e_cstr(&e, names->v[i]);
  dt__e_end(&e);
}

static int reply_error(dt_conn *c, uint64_t req, int code, const char *msg) {
  dt__coord_reply(((s_client *)c->data)->id, req, code, msg, 0, NULL, NULL);
  return 0;
}

int dt__on_coord(dt_conn *c, const dt_msg *msg) {
  const dt_msg_COORD *m = &msg->COORD;
  if (m->names.n == 0 || m->names.n > DT_COORD_MAX_NAMES)
    return reply_error(c, m->req, DT_EINVAL, "a coordination request names 1 to 256 primitives");
  if (m->keys.n > DT_COORD_MAX_KEYS)
    return reply_error(c, m->req, DT_ELIMIT, "a value holds at most 4096 futures");
  dt_keylist names, keys;
  dt__keylist_of(&m->names, &names);
  for (uint32_t i = 0; i < names.n; i++)
    if (names.lens[i] == 0 || names.lens[i] > DT_MAX_KEY || memchr(names.keys[i], 0, names.lens[i])) {
      dt__keylist_free(&names);
      return reply_error(c, m->req, DT_EINVAL, "a primitive's name is 1 to 1024 bytes, without NUL");
    }
  dt__keylist_of(&m->keys, &keys);
  coord_val *v = NULL;
  if (m->value.len > 0) {
    v = dt__xcalloc(1, sizeof(*v));
    dt__pref_copy(&m->value, &v->pl);
    v->nbytes = dt__payload_nbytes(&v->pl);
    v->nkeys = keys.n;
    v->keys = dt__xcalloc(keys.n ? keys.n : 1, sizeof(char *));
    for (uint32_t i = 0; i < keys.n; i++) v->keys[i] = dt__xstrndup(keys.keys[i], keys.lens[i]);
  }
  int rc = 0;
  for (uint32_t i = 0; v && i < v->nkeys; i++)
    if (!dt__sched_get_task(&srv->s, v->keys[i], (uint32_t)strlen(v->keys[i]))) {
      char text[300];
      snprintf(text, sizeof(text), "the value holds a future the scheduler does not know: '%.200s'",
               v->keys[i]);
      reply_error(c, m->req, DT_ENOTFOUND, text);
      dt__coord_val_free(v);
      v = NULL;
      rc = 1;
      break;
    }
  if (rc == 0) {
    coord_req r = {.client = ((s_client *)c->data)->id,
                   .req = m->req,
                   .op = m->op < DT_COORD_COUNT ? (int)m->op : -1,
                   .names = names.keys,
                   .lens = names.lens,
                   .nnames = names.n,
                   .val = v,
                   .timeout_ms = m->timeout_ms < -1 ? -1 : m->timeout_ms > 864000000 ? 864000000 : m->timeout_ms,
                   .arg = m->arg};
    dt__coord_request(&r);
  }
  dt__keylist_free(&names);
  dt__keylist_free(&keys);
  return 0;
}
