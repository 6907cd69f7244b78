/*
 * conn.c -- see net.h.  The life of a connection: allocation, connecting,
 * accepting, closing (on_close exactly once, then free), and name
 * resolution.  The read state machine is in conn_read.c, the write path in
 * conn_write.c, the TLS and shared-secret handshakes in conn_handshake.c;
 * what they share is in conn_int.h.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"

/* ---------------------------------------------------------------- helpers */

int dt__resolve(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0 || !res) return UV_EAI_NONAME;
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  if (ss->ss_family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  else ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
  freeaddrinfo(res);
  return 0;
}

static void sockaddr_str(const struct sockaddr_storage *ss, char *buf, size_t cap) {
  char ip[64] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    uv_ip4_name((const struct sockaddr_in *)ss, ip, sizeof(ip));
    port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
    snprintf(buf, cap, "%s:%d", ip, port);
  } else if (ss->ss_family == AF_INET6) {
    uv_ip6_name((const struct sockaddr_in6 *)ss, ip, sizeof(ip));
    port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    snprintf(buf, cap, "[%s]:%d", ip, port);
  } else {
    snprintf(buf, cap, "?");
  }
}

static dt_conn *conn_alloc(dt_net *n, const dt_conn_cbs *cbs, void *data) {
  dt_conn *c = dt__xcalloc(1, sizeof(*c));
  c->net = n;
  c->cbs = cbs;
  c->data = data;
  dt__wbuf_init(&c->out);
  c->tcp.data = c;
  return c;
}

static void conn_destroy(dt_conn *c) {
  dt__conn_hs_unlink(c);
  dt__conn_tls_free(c);
  conn_reset_read(c);
  dt__wbuf_clear(&c->out);
  for (size_t i = 0; i < c->nsealed; i++) dt__wbuf_clear(&c->sealed[i]);
  free(c->sealed);
  free(c);
}

dt_conn *dt__conn_new_detached(void) {
  dt_conn *c = conn_alloc(NULL, NULL, NULL);
  c->state = DT_CONN_DETACHED;
  snprintf(c->peer, sizeof(c->peer), "detached");
  return c;
}
void dt__conn_free_detached(dt_conn *c) { conn_destroy(c); }

/* ---------------------------------------------------------------- closing */

static void on_closed(uv_handle_t *h) {
  dt_conn *c = h->data;
  dt_net *net = c->net;
  NET_LOCK(net);
  if (c->net) {
    /* unlink from the dirty list */
    dt_conn **pp = &c->net->dirty;
    while (*pp && *pp != c) pp = &(*pp)->dirty_next;
    if (*pp) *pp = c->dirty_next;
  }
  if (c->cbs && c->cbs->on_close) c->cbs->on_close(c);
  conn_destroy(c);
  NET_UNLOCK(net);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  dt_conn *c = req->data;
  free(req);
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

void dt__conn_close(dt_conn *c, bool graceful) {
  if (c->state == DT_CONN_CLOSING) return;
  if (c->state == DT_CONN_DETACHED) return;
  bool was_open = c->state == DT_CONN_OPEN;
  c->state = DT_CONN_CLOSING;
  if (was_open) uv_read_stop((uv_stream_t *)&c->tcp);
  if (graceful && was_open) {
    c->close_after_flush = true;
    dt__conn_flush(c);
    uv_shutdown_t *req = dt__xmalloc(sizeof(*req));
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) return;
    free(req);
  }
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* ---------------------------------------------------------------- connect */

typedef struct {
  uv_connect_t req;
  dt_conn *c;
} connect_req;

static void on_connected_locked(dt_conn *c, int status);
static void on_connected(uv_connect_t *req, int status) {
  connect_req *cr = (connect_req *)req;
  dt_conn *c = cr->c;
  free(cr);
  dt_net *net = c->net;
  NET_LOCK(net);
  on_connected_locked(c, status);
  NET_UNLOCK(net);
}

static void on_connected_locked(dt_conn *c, int status) {
  if (c->state == DT_CONN_CLOSING) return; /* closed while connecting */
  if (status < 0) {
    if (c->cbs->on_connect) c->cbs->on_connect(c, status);
    c->close_status = DT_ECONNECT;
    c->state = DT_CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return;
  }
  dt__conn_start_open(c); /* on_connect follows when the handshakes are done */
}

int dt__conn_connect(dt_net *n, const char *addr, const dt_conn_cbs *cbs, void *data,
                    dt_conn **out) {
  char host[256];
  int port;
  if (dt__addr_split(addr, host, sizeof(host), &port) != 0)
    return dt__err(DT_EINVAL, "invalid address '%s' (expected host:port)", addr ? addr : "(null)");
  struct sockaddr_storage ss;
  int rc = dt__resolve(host, port, &ss);
  if (rc != 0) return dt__err(DT_ECONNECT, "could not resolve host '%s' of address %s", host, addr);
  dt_conn *c = conn_alloc(n, cbs, data);
  snprintf(c->peer, sizeof(c->peer), "%s", addr);
  c->state = DT_CONN_CONNECTING;
  c->outgoing = true;
  c->admitted = true;
  uv_tcp_init(n->loop, &c->tcp);
  connect_req *cr = dt__xmalloc(sizeof(*cr));
  cr->c = c;
  rc = uv_tcp_connect(&cr->req, &c->tcp, (const struct sockaddr *)&ss, on_connected);
  if (rc < 0) {
    free(cr);
    c->cbs = NULL; /* the caller hears about it through the return value */
    c->state = DT_CONN_CLOSING;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return dt__err(DT_ECONNECT, "could not connect to %s: %s", addr, uv_strerror(rc));
  }
  *out = c;
  return 0;
}

int dt__conn_local_ip(dt_conn *c, char *buf, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return DT_EIO;
  if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, buf, cap);
  else uv_ip6_name((struct sockaddr_in6 *)&ss, buf, cap);
  return 0;
}

/* ---------------------------------------------------------------- listen */

static void on_connection(uv_stream_t *server, int status) {
  dt_listener *l = server->data;
  if (status < 0) {
    DT_WARN("accept failed: %s", uv_strerror(status));
    return;
  }
  dt_conn *c = conn_alloc(l->net, l->cbs, NULL);
  uv_tcp_init(l->net->loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    c->state = DT_CONN_CLOSING;
    c->cbs = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return;
  }
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    sockaddr_str(&ss, c->peer, sizeof(c->peer));
    if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, c->ip, sizeof(c->ip));
    else if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->ip, sizeof(c->ip));
  }
  c->accepted_ms = uv_now(l->net->loop);
  if (!dt__conn_stranger_ok(l->net, c->ip)) { /* over the limits on strangers: refused */
    c->state = DT_CONN_CLOSING;
    c->cbs = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return;
  }
  dt__conn_start_open(c);
  l->on_accept(l, c);
}

int dt__listener_start(dt_listener *l, dt_net *n, const char *host, int port,
                      const dt_conn_cbs *cbs, void (*on_accept)(dt_listener *, dt_conn *),
                      void *data) {
  memset(l, 0, sizeof(*l));
  l->net = n;
  l->cbs = cbs;
  l->on_accept = on_accept;
  l->data = data;
  snprintf(l->host, sizeof(l->host), "%s", host);
  struct sockaddr_storage ss;
  int rc = dt__resolve(host, port, &ss);
  if (rc) return dt__err(DT_EINVAL, "cannot resolve listen host '%s'", host);
  uv_tcp_init(n->loop, &l->tcp);
  l->tcp.data = l;
  rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection);
  if (rc < 0) {
    uv_close((uv_handle_t *)&l->tcp, NULL);
    return dt__err(DT_EIO, "cannot listen on %s:%d: %s", host, port, uv_strerror(rc));
  }
  int len = sizeof(ss);
  uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
  l->port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                    : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return 0;
}

void dt__listener_close(dt_listener *l) {
  if (!uv_is_closing((uv_handle_t *)&l->tcp)) uv_close((uv_handle_t *)&l->tcp, NULL);
}

/* ---------------------------------------------------------------- admission */

void dt__conn_admit(dt_conn *c) {
  c->admitted = true;
  c->max_batch = 0;
  if (c->secured) dt__conn_hs_unlink(c); /* the hello deadline is met */
}

void dt__conn_admit_client(dt_conn *c) {
  dt__conn_admit(c);
  c->max_batch = c->net && c->net->lim.client_max_batch ? c->net->lim.client_max_batch
                                                        : DT_NET_CLIENT_MAX_BATCH;
}
