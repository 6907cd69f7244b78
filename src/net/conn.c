/*
 * conn.c -- see net.h.  Reading: a state machine over the batch layout,
 * sizes checked against the limits in proto.h before any allocation.
 * Writing: messages accumulate in c->out during a loop turn; the prepare
 * and check handles of dt_net send each dirty connection's batch with one
 * uv_write (header, body and frames as separate buffers: frames are never
 * copied).
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

#define STAGE_SIZE (64 * 1024)

static void flush_conn(dt_conn *c);

/* With a locked dt_net (the client library), every callback into the owner
 * runs with the lock held. */
#define NET_LOCK(n) do { if ((n) && (n)->lock) (n)->lock->acquire((n)->lock->arg); } while (0)
#define NET_UNLOCK(n) do { if ((n) && (n)->lock) (n)->lock->release((n)->lock->arg); } while (0)

/* ---------------------------------------------------------------- dt_net */

static void locked_flush(dt_net *n) {
  if (!n->lock) {
    dt_net_flush(n);
    return;
  }
  n->lock->acquire(n->lock->arg); /* other threads append under this lock */
  dt_net_flush(n);
  n->lock->release(n->lock->arg);
}
static void on_turn_prep(uv_prepare_t *h) { locked_flush(h->data); }
static void on_turn_chk(uv_check_t *h) { locked_flush(h->data); }

void dt_net_init(dt_net *n, uv_loop_t *loop) {
  memset(n, 0, sizeof(*n));
  n->loop = loop;
  uv_prepare_init(loop, &n->prep);
  uv_check_init(loop, &n->chk);
  n->prep.data = n->chk.data = n;
  uv_prepare_start(&n->prep, on_turn_prep);
  uv_check_start(&n->chk, on_turn_chk);
  uv_unref((uv_handle_t *)&n->prep);
  uv_unref((uv_handle_t *)&n->chk);
}

void dt_net_close(dt_net *n) {
  uv_close((uv_handle_t *)&n->prep, NULL);
  uv_close((uv_handle_t *)&n->chk, NULL);
}

void dt_net_flush(dt_net *n) {
  while (n->dirty) {
    dt_conn *c = n->dirty;
    n->dirty = c->dirty_next;
    c->dirty = false;
    c->dirty_next = NULL;
    flush_conn(c);
  }
}

/* ---------------------------------------------------------------- helpers */

int dt_resolve(const char *host, int port, struct sockaddr_storage *ss) {
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
  c->stage = dt__xmalloc(STAGE_SIZE);
  dt_wbuf_init(&c->out);
  c->tcp.data = c;
  return c;
}

static void reset_read(dt_conn *c) {
  free(c->flens);
  c->flens = NULL;
  free(c->body);
  c->body = NULL;
  if (c->frames) {
    for (uint32_t i = 0; i < c->nframes; i++) dt_blob_unref(c->frames[i].blob);
    free(c->frames);
    c->frames = NULL;
  }
  c->rstate = DT_RS_HEAD;
  c->got = 0;
  c->fi = 0;
}

static void conn_destroy(dt_conn *c) {
  reset_read(c);
  free(c->stage);
  dt_wbuf_clear(&c->out);
  for (size_t i = 0; i < c->nsealed; i++) dt_wbuf_clear(&c->sealed[i]);
  free(c->sealed);
  free(c);
}

dt_conn *dt_conn_new_detached(void) {
  dt_conn *c = conn_alloc(NULL, NULL, NULL);
  c->state = DT_CONN_DETACHED;
  snprintf(c->peer, sizeof(c->peer), "detached");
  return c;
}
void dt_conn_free_detached(dt_conn *c) { conn_destroy(c); }

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

void dt_conn_close(dt_conn *c, bool graceful) {
  if (c->state == DT_CONN_CLOSING) return;
  if (c->state == DT_CONN_DETACHED) return;
  bool was_open = c->state == DT_CONN_OPEN;
  c->state = DT_CONN_CLOSING;
  if (was_open) uv_read_stop((uv_stream_t *)&c->tcp);
  if (graceful && was_open) {
    c->close_after_flush = true;
    flush_conn(c);
    uv_shutdown_t *req = dt__xmalloc(sizeof(*req));
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) return;
    free(req);
  }
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void proto_error(dt_conn *c, const char *what) {
  DT_WARN("closing connection from %s: %s", c->peer, what);
  c->close_status = DT_EPROTO;
  dt_conn_close(c, false);
}

/* ---------------------------------------------------------------- reading */

static void dispatch(dt_conn *c) {
  const char *p = c->body, *end = c->body + c->body_len;
  while (p < end && c->state != DT_CONN_CLOSING) {
    const char *q = p;
    if (dt__mp_validate(&q, end, DT_MAX_DEPTH) != 0) {
      proto_error(c, "malformed message");
      return;
    }
    dt_rd r = {p, q, c->frames, c->nframes};
    uint32_t n;
    uint64_t op;
    if (rd_array(&r, &n) || n < 1 || rd_uint(&r, &op) || op == 0 || op >= DT_OP_COUNT) {
      proto_error(c, "message is not [op, ...] with a known op");
      return;
    }
    int rc = c->cbs->on_msg(c, (int)op, n - 1, &r);
    if (rc < 0 && c->state != DT_CONN_CLOSING) {
      char what[128];
      snprintf(what, sizeof(what), "malformed %s message", dt__op_name((int)op));
      proto_error(c, what);
      return;
    }
    p = q;
  }
}

/* Advance the read state machine by n bytes, copying from data unless the
 * bytes were read in place (direct). */
static void feed(dt_conn *c, const char *data, size_t n, bool direct) {
  while (n > 0 && c->state != DT_CONN_CLOSING) {
    size_t want, take;
    switch (c->rstate) {
    case DT_RS_HEAD:
      want = 8 - c->got;
      take = n < want ? n : want;
      memcpy(c->hdr + c->got, data, take);
      c->got += take;
      data += take;
      n -= take;
      if (c->got < 8) break;
      c->body_len = (uint32_t)c->hdr[0] | (uint32_t)c->hdr[1] << 8 | (uint32_t)c->hdr[2] << 16 |
                    (uint32_t)c->hdr[3] << 24;
      c->nframes = (uint32_t)c->hdr[4] | (uint32_t)c->hdr[5] << 8 | (uint32_t)c->hdr[6] << 16 |
                   (uint32_t)c->hdr[7] << 24;
      if (c->body_len == 0 || c->body_len > DT_MAX_BODY) {
        proto_error(c, "batch body size out of limits");
        return;
      }
      if (c->nframes > DT_MAX_FRAMES) {
        proto_error(c, "too many frames in batch");
        return;
      }
      c->got = 0;
      if (c->nframes) {
        c->flens = dt__xmalloc(8 * (size_t)c->nframes);
        c->rstate = DT_RS_LENS;
      } else {
        c->body = malloc(c->body_len);
        if (!c->body) { proto_error(c, "out of memory for body"); return; }
        c->rstate = DT_RS_BODY;
      }
      break;
    case DT_RS_LENS:
      want = 8 * (size_t)c->nframes - c->got;
      take = n < want ? n : want;
      memcpy((char *)c->flens + c->got, data, take);
      c->got += take;
      data += take;
      n -= take;
      if (c->got < 8 * (size_t)c->nframes) break;
      for (uint32_t i = 0; i < c->nframes; i++) {
        const uint8_t *b = (const uint8_t *)&c->flens[i];
        uint64_t v = 0;
        for (int k = 7; k >= 0; k--) v = v << 8 | b[k];
        if (v > DT_MAX_FRAME) {
          proto_error(c, "frame size out of limits");
          return;
        }
        c->flens[i] = v;
      }
      c->frames = dt__xcalloc(c->nframes, sizeof(*c->frames));
      c->body = malloc(c->body_len);
      if (!c->body) { proto_error(c, "out of memory for body"); return; }
      c->got = 0;
      c->rstate = DT_RS_BODY;
      break;
    case DT_RS_BODY:
      want = c->body_len - c->got;
      take = n < want ? n : want;
      if (!direct) memcpy(c->body + c->got, data, take);
      c->got += take;
      data += take;
      n -= take;
      if (c->got < c->body_len) break;
      c->got = 0;
      c->fi = 0;
      c->rstate = DT_RS_FRAMES;
      break;
    case DT_RS_FRAMES: {
      dt_frame *f = &c->frames[c->fi];
      if (!f->blob) {
        f->blob = dt_blob_new(c->flens[c->fi]);
        if (!f->blob) { proto_error(c, "out of memory for frame"); return; }
        f->p = f->blob->data;
        f->len = c->flens[c->fi];
      }
      want = f->len - c->got;
      take = n < want ? n : want;
      if (!direct) memcpy(f->blob->data + c->got, data, take);
      c->got += take;
      data += take;
      n -= take;
      if (c->got == f->len) {
        c->got = 0;
        c->fi++;
      }
      break;
    }
    }
    /* a batch is complete when the body and every frame are in */
    while (c->rstate == DT_RS_FRAMES && c->fi < c->nframes && c->flens[c->fi] == 0 &&
           c->got == 0) {
      c->frames[c->fi].blob = dt_blob_new(0);
      c->frames[c->fi].p = c->frames[c->fi].blob->data;
      c->fi++;
    }
    if (c->rstate == DT_RS_FRAMES && c->fi == c->nframes) {
      c->net->bytes_in += c->body_len;
      dispatch(c);
      if (c->state == DT_CONN_CLOSING) return;
      reset_read(c);
    }
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  dt_conn *c = h->data;
  c->direct = false;
  if (c->rstate == DT_RS_BODY && c->body_len - c->got >= STAGE_SIZE) {
    *buf = uv_buf_init(c->body + c->got, c->body_len - (uint32_t)c->got);
    c->direct = true;
    return;
  }
  if (c->rstate == DT_RS_FRAMES && c->fi < c->nframes && c->flens[c->fi] - c->got >= STAGE_SIZE) {
    dt_frame *f = &c->frames[c->fi];
    if (!f->blob) {
      f->blob = dt_blob_new(c->flens[c->fi]);
      if (!f->blob) {
        *buf = uv_buf_init(NULL, 0);
        return;
      }
      f->p = f->blob->data;
      f->len = c->flens[c->fi];
    }
    size_t rem = f->len - c->got;
    if (rem > (1u << 30)) rem = 1u << 30;
    *buf = uv_buf_init(f->blob->data + c->got, (unsigned)rem);
    c->direct = true;
    return;
  }
  *buf = uv_buf_init(c->stage, STAGE_SIZE);
}

static void on_read_locked(dt_conn *c, ssize_t nread, const uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  dt_conn *c = s->data;
  dt_net *net = c->net;
  NET_LOCK(net);
  on_read_locked(c, nread, buf);
  NET_UNLOCK(net);
}

static void on_read_locked(dt_conn *c, ssize_t nread, const uv_buf_t *buf) {
  if (nread < 0) {
    if (nread != UV_EOF) DT_INFO("connection to %s: %s", c->peer, uv_strerror((int)nread));
    c->close_status = nread == UV_EOF ? 0 : DT_ECONNLOST;
    dt_conn_close(c, false);
    return;
  }
  if (nread == 0) return;
  if (c->direct) feed(c, buf->base, (size_t)nread, true);
  else feed(c, buf->base, (size_t)nread, false);
}

static void start_open(dt_conn *c) {
  c->state = DT_CONN_OPEN;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---------------------------------------------------------------- writing */

typedef struct {
  uv_write_t req;
  dt_wbuf w;
  dt_conn *c;
  uv_buf_t *bufs;
  char hdr[];
} write_req;

static void on_written_locked(uv_write_t *req, int status);
static void on_written(uv_write_t *req, int status) {
  dt_net *net = ((write_req *)req)->c->net;
  NET_LOCK(net);
  on_written_locked(req, status);
  NET_UNLOCK(net);
}

static void on_written_locked(uv_write_t *req, int status) {
  write_req *wr = (write_req *)req;
  dt_conn *c = wr->c;
  c->writes_in_flight--;
  if (status < 0 && status != UV_ECANCELED) DT_INFO("write to %s failed: %s", c->peer, uv_strerror(status));
  dt_wbuf_clear(&wr->w);
  free(wr->bufs);
  free(wr);
}

static void write_batch(dt_conn *c, dt_wbuf *w) {
  size_t hl = 8 + 8 * (size_t)w->nframes;
  write_req *wr = dt__xmalloc(sizeof(*wr) + hl);
  wr->w = *w;
  dt_wbuf_init(w);
  wr->c = c;
  uint32_t bl = (uint32_t)wr->w.len, nf = wr->w.nframes;
  uint8_t *h = (uint8_t *)wr->hdr;
  for (int i = 0; i < 4; i++) h[i] = (uint8_t)(bl >> (8 * i));
  for (int i = 0; i < 4; i++) h[4 + i] = (uint8_t)(nf >> (8 * i));
  size_t nb = 2;
  for (uint32_t f = 0; f < nf; f++) {
    uint64_t l = wr->w.frames[f].len;
    for (int i = 0; i < 8; i++) h[8 + 8 * f + i] = (uint8_t)(l >> (8 * i));
    /* a frame over 1 GiB is split in several iovecs (unsigned len) */
    nb += l ? (size_t)((l + (1ull << 30) - 1) >> 30) : 0;
  }
  wr->bufs = dt__xmalloc(nb * sizeof(uv_buf_t));
  size_t k = 0;
  wr->bufs[k++] = uv_buf_init(wr->hdr, (unsigned)hl);
  wr->bufs[k++] = uv_buf_init(wr->w.buf, bl);
  for (uint32_t f = 0; f < nf; f++) {
    const char *p = wr->w.frames[f].p;
    uint64_t l = wr->w.frames[f].len;
    while (l > 0) {
      unsigned part = l > (1ull << 30) ? (1u << 30) : (unsigned)l;
      wr->bufs[k++] = uv_buf_init((char *)p, part);
      p += part;
      l -= part;
    }
  }
  c->writes_in_flight++;
  c->net->bytes_out += bl;
  int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, wr->bufs, (unsigned)k, on_written);
  if (rc < 0) {
    DT_INFO("write to %s failed: %s", c->peer, uv_strerror(rc));
    on_written_locked(&wr->req, rc);
    c->close_status = DT_ECONNLOST;
    dt_conn_close(c, false);
  }
}

static void flush_conn(dt_conn *c) {
  if (c->state != DT_CONN_OPEN && !(c->state == DT_CONN_CLOSING && c->close_after_flush)) return;
  for (size_t i = 0; i < c->nsealed; i++) write_batch(c, &c->sealed[i]);
  c->nsealed = 0;
  if (c->out.len > 0) write_batch(c, &c->out);
}

dt_wbuf *dt_conn_out(dt_conn *c) {
  if (c->out.len >= DT_BATCH_SOFT_BODY || c->out.nframes >= DT_BATCH_SOFT_FRAMES) {
    if (c->nsealed == c->sealed_cap) {
      c->sealed_cap = c->sealed_cap ? c->sealed_cap * 2 : 4;
      c->sealed = dt__xrealloc(c->sealed, c->sealed_cap * sizeof(*c->sealed));
    }
    c->sealed[c->nsealed++] = c->out;
    dt_wbuf_init(&c->out);
  }
  if (!c->dirty && c->net && c->state != DT_CONN_DETACHED) {
    c->dirty = true;
    c->dirty_next = c->net->dirty;
    c->net->dirty = c;
  }
  return &c->out;
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
  start_open(c);
  if (c->cbs->on_connect) c->cbs->on_connect(c, 0);
  if (c->state == DT_CONN_OPEN && (c->out.len || c->nsealed)) dt_conn_out(c);
}

int dt_conn_connect(dt_net *n, const char *addr, const dt_conn_cbs *cbs, void *data,
                    dt_conn **out) {
  char host[256];
  int port;
  if (dt__addr_split(addr, host, sizeof(host), &port) != 0)
    return dt__err(DT_EINVAL, "invalid address '%s' (expected host:port)", addr ? addr : "(null)");
  struct sockaddr_storage ss;
  int rc = dt_resolve(host, port, &ss);
  if (rc != 0) return dt__err(DT_ECONNECT, "could not resolve host '%s' of address %s", host, addr);
  dt_conn *c = conn_alloc(n, cbs, data);
  snprintf(c->peer, sizeof(c->peer), "%s", addr);
  c->state = DT_CONN_CONNECTING;
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

int dt_conn_local_ip(dt_conn *c, char *buf, size_t cap) {
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
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
    sockaddr_str(&ss, c->peer, sizeof(c->peer));
  start_open(c);
  l->on_accept(l, c);
}

int dt_listener_start(dt_listener *l, dt_net *n, const char *host, int port,
                      const dt_conn_cbs *cbs, void (*on_accept)(dt_listener *, dt_conn *),
                      void *data) {
  memset(l, 0, sizeof(*l));
  l->net = n;
  l->cbs = cbs;
  l->on_accept = on_accept;
  l->data = data;
  snprintf(l->host, sizeof(l->host), "%s", host);
  struct sockaddr_storage ss;
  int rc = dt_resolve(host, port, &ss);
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

void dt_listener_close(dt_listener *l) {
  if (!uv_is_closing((uv_handle_t *)&l->tcp)) uv_close((uv_handle_t *)&l->tcp, NULL);
}
