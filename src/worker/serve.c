/*
 * serve.c -- serving the results held here.  The worker listens for peers
 * (other workers fetching dependencies, clients gathering results) on the
 * interface its scheduler connection uses; they only ask GET_DATA, and get
 * DATA back: each value inline, or, for large bytes asked by a peer on the
 * same host (same boot id), the name of shared memory to map.  The
 * scheduler's own GET_DATA is answered here too.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "worker_int.h"

#define DT_SHM_MIN (1u << 20) /* from this size, same-host peers map the memory */

static dt_listener listener;

int dt__peer_msg_read(dt_conn *c, int op, uint32_t nf, dt_rd *r, dt_msg *m) {
  if (dt__msg_read(r, op, nf, m) == 0) return 0;
  DT_WARN("malformed message from peer %s: %s", c->peer, dt__msg_error());
  return DT_EPROTO;
}

/* GET_DATA from a peer worker, a client or the scheduler: reply with what
 * we hold. */
int dt__serve_get_data(dt_conn *c, const dt_msg *msg) {
  const dt_msg_GET_DATA *m = &msg->GET_DATA;
  bool shm = m->boot_id.p && dt__worker.boot_id[0] && dt__str_eq(m->boot_id, dt__worker.boot_id);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_DATA);
  dt__e_uint(&e, m->req);
  dt__e_list(&e, m->keys.n);
  dt_list keys = m->keys;
  dt_sv k;
  while (dt__next_key(&keys, &k)) {
    const char *key = k.p;
    uint32_t klen = k.len;
    w_data *d = dt__store_get(key, klen);
    if (d && dt__store_unspill(d) != 0) d = NULL;
    int fd;
    const char *name;
    dt__e_rec(&e);
    dt__e_str(&e, key, klen);
    dt__e_bool(&e, d != NULL);
    if (d && shm && d->v->type == DT_BYTES && d->v->u.bytes.len >= DT_SHM_MIN &&
        dt__blob_share(d->v->u.bytes.blob, &fd, &name) == 0) {
      /* a peer on this host maps it */
      DT_DEBUG("%.*s to %s through shared memory (%s)", (int)klen, key, c->peer, name);
      dt__e_empty_payload(&e);
      dt__e_cstr(&e, name);
      dt__e_uint(&e, (uint64_t)getpid());
      dt__e_uint(&e, (uint64_t)fd);
      dt__e_uint(&e, (uint64_t)(d->v->u.bytes.p - d->v->u.bytes.blob->data));
      dt__e_uint(&e, d->v->u.bytes.len);
      dt__transfer_log(true, 0, c->peer, key, klen, d->v->u.bytes.len);
      continue;
    }
    if (d) {
      dt__e_value(&e, d->v); /* writes a nil payload if it cannot encode */
      dt__transfer_log(true, 0, c->peer, key, klen, dt__value_nbytes(d->v));
    } else {
      dt__e_empty_payload(&e);
    }
    dt__e_nil(&e);
    dt__e_uint(&e, 0);
    dt__e_uint(&e, 0);
    dt__e_uint(&e, 0);
    dt__e_uint(&e, 0);
  }
  dt__e_end(&e);
  return 0;
}

/* peers that connect to us (workers and clients) only ask for data */
static int on_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  dt_msg m;
  if (op == DT_OP_GET_DATA || op == DT_OP_ACTOR_CALL) {
    if (dt__peer_msg_read(c, op, nf, r, &m)) return DT_EPROTO;
    if (!c->admitted) dt__conn_admit_client(c); /* a request is its hello */
    return op == DT_OP_GET_DATA ? dt__serve_get_data(c, &m) : dt__actor_call(c, &m);
  }
  if (op == DT_OP_CLOSE) {
    dt__conn_close(c, true);
    return 0;
  }
  DT_WARN("unexpected %s message from peer %s", dt__op_name(op), c->peer);
  return DT_EPROTO;
}
static const dt_conn_cbs serve_cbs = {on_msg, NULL, dt__actor_conn_closed};

static void on_accept(dt_listener *l, dt_conn *c) {
  (void)l;
  (void)c;
}

int dt__serve_start(dt_conn *c) {
  w_worker *w = &dt__worker;
  char ip[64];
  if (w->listen_host) snprintf(ip, sizeof(ip), "%s", w->listen_host);
  else if (dt__conn_local_ip(c, ip, sizeof(ip)) != 0) snprintf(ip, sizeof(ip), "127.0.0.1");
  dt__actor_start(&w->loop);
  int rc = dt__listener_start(&listener, &w->net, ip, w->listen_port, &serve_cbs, on_accept, NULL);
  if (rc != 0) return rc;
  if (strchr(ip, ':')) snprintf(w->address, sizeof(w->address), "[%s]:%d", ip, listener.port);
  else snprintf(w->address, sizeof(w->address), "%s:%d", ip, listener.port);
  if (!w->name[0]) memcpy(w->name, w->address, sizeof(w->address)); /* name < address */
  return 0;
}

bool dt__serve_is_listener(const uv_handle_t *h) {
  return h == (const uv_handle_t *)&listener.tcp || h->data == &listener;
}
