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

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "secure.h"

#define STAGE_SIZE (64 * 1024)

static void flush_conn(dt_conn *c);
static void secure_start(dt_conn *c);
static void hs_unlink(dt_conn *c);
static void raw_write(dt_conn *c, const void *data, size_t len);
static bool tls_in(dt_conn *c, const char *data, size_t n);
static void tls_free(dt_conn *c);

/* With a locked dt_net (the client library), every callback into the owner
 * runs with the lock held. */
#define NET_LOCK(n) do { if ((n) && (n)->lock) (n)->lock->acquire((n)->lock->arg); } while (0)
#define NET_UNLOCK(n) do { if ((n) && (n)->lock) (n)->lock->release((n)->lock->arg); } while (0)

/* ---------------------------------------------------------------- dt_net */

static void locked_flush(dt_net *n) {
  if (!n->lock) {
    dt__net_flush(n);
    return;
  }
  n->lock->acquire(n->lock->arg); /* other threads append under this lock */
  dt__net_flush(n);
  n->lock->release(n->lock->arg);
}
static void on_turn_prep(uv_prepare_t *h) { locked_flush(h->data); }
static void on_turn_chk(uv_check_t *h) { locked_flush(h->data); }

void dt__net_init(dt_net *n, uv_loop_t *loop) {
  memset(n, 0, sizeof(*n));
  n->loop = loop;
  uv_prepare_init(loop, &n->prep);
  uv_check_init(loop, &n->chk);
  n->prep.data = n->chk.data = n;
  uv_prepare_start(&n->prep, on_turn_prep);
  uv_check_start(&n->chk, on_turn_chk);
  uv_unref((uv_handle_t *)&n->prep);
  uv_unref((uv_handle_t *)&n->chk);
  uv_timer_init(loop, &n->hs_timer);
  n->hs_timer.data = n;
  uv_unref((uv_handle_t *)&n->hs_timer);
}

void dt__net_close(dt_net *n) {
  uv_close((uv_handle_t *)&n->prep, NULL);
  uv_close((uv_handle_t *)&n->chk, NULL);
  uv_close((uv_handle_t *)&n->hs_timer, NULL);
}

void dt__net_flush(dt_net *n) {
  while (n->dirty) {
    dt_conn *c = n->dirty;
    n->dirty = c->dirty_next;
    c->dirty = false;
    c->dirty_next = NULL;
    flush_conn(c);
  }
}

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
  c->stage = dt__xmalloc(STAGE_SIZE);
  dt__wbuf_init(&c->out);
  c->tcp.data = c;
  return c;
}

static void reset_read(dt_conn *c) {
  free(c->flens);
  c->flens = NULL;
  free(c->body);
  c->body = NULL;
  if (c->frames) {
    for (uint32_t i = 0; i < c->nframes; i++) dt__blob_unref(c->frames[i].blob);
    free(c->frames);
    c->frames = NULL;
  }
  c->rstate = DT_RS_HEAD;
  c->got = 0;
  c->fi = 0;
}

static void conn_destroy(dt_conn *c) {
  hs_unlink(c);
  tls_free(c);
  reset_read(c);
  free(c->stage);
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
    flush_conn(c);
    uv_shutdown_t *req = dt__xmalloc(sizeof(*req));
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) == 0) return;
    free(req);
  }
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void proto_error(dt_conn *c, const char *what) {
  DT_WARN("closing connection %s %s: %s", c->outgoing ? "to" : "from", c->peer, what);
  if (c->close_status != DT_EAUTH) c->close_status = DT_EPROTO;
  dt__conn_close(c, false);
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
    if (dt__rd_array(&r, &n) || n < 1 || dt__rd_uint(&r, &op) || op == 0 || op >= DT_OP_COUNT) {
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
      if ((!c->net || !c->net->sec || !c->net->sec->auth) &&
          memcmp(c->hdr, "DTA1\0\0\0\0", 8) == 0) {
        c->close_status = DT_EAUTH;
        proto_error(c, "the peer requires authentication, and no shared secret is configured "
                       "here (--auth-file, or DTASK_AUTH_FILE for clients)");
        return;
      }
      if (c->body_len == 0 || c->body_len > (c->admitted ? DT_MAX_BODY : DT_PREADMIT_MAX_BODY)) {
        proto_error(c, "batch body size out of limits");
        return;
      }
      if (c->nframes > DT_MAX_FRAMES || (c->nframes && !c->admitted)) {
        proto_error(c, c->nframes > DT_MAX_FRAMES ? "too many frames in batch"
                                                  : "frames from a peer that has not said hello");
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
        f->blob = dt__blob_new(c->flens[c->fi]);
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
      c->frames[c->fi].blob = dt__blob_new(0);
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
  if (c->ssl || !c->secured) {
    *buf = uv_buf_init(c->stage, STAGE_SIZE);
    return;
  }
  if (c->rstate == DT_RS_BODY && c->body_len - c->got >= STAGE_SIZE) {
    *buf = uv_buf_init(c->body + c->got, c->body_len - (uint32_t)c->got);
    c->direct = true;
    return;
  }
  if (c->rstate == DT_RS_FRAMES && c->fi < c->nframes && c->flens[c->fi] - c->got >= STAGE_SIZE) {
    dt_frame *f = &c->frames[c->fi];
    if (!f->blob) {
      f->blob = dt__blob_new(c->flens[c->fi]);
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

static size_t auth_in(dt_conn *c, const uint8_t *data, size_t n);

/* plain_in: bytes of the stream (decrypted, with TLS): handshake first */
static void plain_in(dt_conn *c, const char *data, size_t n, bool direct) {
  if (c->auth) {
    size_t used = auth_in(c, (const uint8_t *)data, n);
    if (c->state == DT_CONN_CLOSING || c->auth) return;
    data += used;
    n -= used;
    direct = false;
  }
  if (n > 0) feed(c, data, n, direct);
}

static void on_read_locked(dt_conn *c, ssize_t nread, const uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  dt_conn *c = s->data;
  dt_net *net = c->net;
  NET_LOCK(net);
  on_read_locked(c, nread, buf);
  NET_UNLOCK(net);
}

static void secure_fail(dt_conn *c, const char *why, int uvcode);

static void on_read_locked(dt_conn *c, ssize_t nread, const uv_buf_t *buf) {
  if (nread < 0 && c->outgoing && !c->secured) { /* refused during the handshakes */
    secure_fail(c,
                c->ssl && !SSL_is_init_finished(c->ssl)
                    ? "the peer closed the connection during the TLS handshake"
                : c->ssl ? "the peer closed the connection after the TLS handshake (certificate "
                           "refused, or no shared secret)"
                         : "the peer closed the connection during authentication (wrong shared "
                           "secret?)",
                c->ssl ? UV_EPROTO : UV_EACCES);
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF) DT_INFO("connection to %s: %s", c->peer, uv_strerror((int)nread));
    c->close_status = nread == UV_EOF ? 0 : DT_ECONNLOST;
    dt__conn_close(c, false);
    return;
  }
  if (nread == 0) return;
  if (c->ssl) {
    tls_in(c, buf->base, (size_t)nread);
    return;
  }
  plain_in(c, buf->base, (size_t)nread, c->direct);
}

static void start_open(dt_conn *c) {
  c->state = DT_CONN_OPEN;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  secure_start(c);
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
  dt__wbuf_clear(&wr->w);
  free(wr->bufs);
  free(wr);
}

static void write_batch(dt_conn *c, dt_wbuf *w) {
  size_t hl = 8 + 8 * (size_t)w->nframes;
  write_req *wr = dt__xmalloc(sizeof(*wr) + hl);
  wr->w = *w;
  dt__wbuf_init(w);
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
  c->net->bytes_out += bl;
  if (c->ssl) { /* encrypted into TLS records (copied): the batch is done with */
    for (size_t i = 0; i < k; i++) raw_write(c, wr->bufs[i].base, wr->bufs[i].len);
    dt__wbuf_clear(&wr->w);
    free(wr->bufs);
    free(wr);
    return;
  }
  c->writes_in_flight++;
  int rc = uv_write(&wr->req, (uv_stream_t *)&c->tcp, wr->bufs, (unsigned)k, on_written);
  if (rc < 0) {
    DT_INFO("write to %s failed: %s", c->peer, uv_strerror(rc));
    on_written_locked(&wr->req, rc);
    c->close_status = DT_ECONNLOST;
    dt__conn_close(c, false);
  }
}

static void flush_conn(dt_conn *c) {
  if (c->state != DT_CONN_OPEN && !(c->state == DT_CONN_CLOSING && c->close_after_flush)) return;
  if (!c->secured) return; /* held until the handshakes are done */
  for (size_t i = 0; i < c->nsealed; i++) write_batch(c, &c->sealed[i]);
  c->nsealed = 0;
  if (c->out.len > 0) write_batch(c, &c->out);
}

dt_wbuf *dt__conn_out(dt_conn *c) {
  if (c->out.len >= DT_BATCH_SOFT_BODY || c->out.nframes >= DT_BATCH_SOFT_FRAMES) {
    if (c->nsealed == c->sealed_cap) {
      c->sealed_cap = c->sealed_cap ? c->sealed_cap * 2 : 4;
      c->sealed = dt__xrealloc(c->sealed, c->sealed_cap * sizeof(*c->sealed));
    }
    c->sealed[c->nsealed++] = c->out;
    dt__wbuf_init(&c->out);
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
  start_open(c); /* on_connect follows when the handshakes are done */
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
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
    sockaddr_str(&ss, c->peer, sizeof(c->peer));
  start_open(c);
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

/* ---------------------------------------------------------------- security */

enum { AUTH_SRV_WAIT_RESPONSE = 1, AUTH_CLI_WAIT_CHALLENGE, AUTH_CLI_WAIT_PROOF };

void dt__conn_admit(dt_conn *c) { c->admitted = true; }

static void hs_unlink(dt_conn *c) {
  if (!c->net) return;
  if (c->hs_prev) c->hs_prev->hs_next = c->hs_next;
  else if (c->net->hs_head == c) c->net->hs_head = c->hs_next;
  if (c->hs_next) c->hs_next->hs_prev = c->hs_prev;
  c->hs_prev = c->hs_next = NULL;
}

static void secure_fail(dt_conn *c, const char *why, int uvcode) {
  if (c->state == DT_CONN_CLOSING) return;
  DT_WARN("dropping %s connection %s %s: %s", c->outgoing ? "outgoing" : "incoming",
          c->outgoing ? "to" : "from", c->peer, why);
  hs_unlink(c);
  c->close_status = DT_EAUTH;
  if (c->outgoing && !c->secured && c->cbs && c->cbs->on_connect) c->cbs->on_connect(c, uvcode);
  dt__conn_close(c, false);
}

static void on_hs_timer(uv_timer_t *h) {
  dt_net *n = h->data;
  NET_LOCK(n);
  uint64_t now = uv_now(n->loop);
  dt_conn *c = n->hs_head;
  while (c) {
    dt_conn *next = c->hs_next;
    if (c->hs_deadline <= now) secure_fail(c, "handshake not completed in time", UV_ETIMEDOUT);
    c = next;
  }
  if (!n->hs_head) uv_timer_stop(h);
  NET_UNLOCK(n);
}

/* secured: the handshakes are done; batches may flow both ways */
static void secured(dt_conn *c) {
  c->auth = 0;
  c->secured = true;
  hs_unlink(c);
  if (c->outgoing && c->cbs && c->cbs->on_connect) c->cbs->on_connect(c, 0);
  if (c->state == DT_CONN_OPEN && (c->out.len || c->nsealed)) dt__conn_out(c);
}

typedef struct {
  uv_write_t req;
  dt_conn *c;
  char data[];
} raw_req;

static void on_raw_written(uv_write_t *req, int status) {
  raw_req *rr = (raw_req *)req;
  dt_net *net = rr->c->net;
  NET_LOCK(net);
  rr->c->writes_in_flight--;
  if (status < 0 && status != UV_ECANCELED)
    DT_INFO("write to %s failed: %s", rr->c->peer, uv_strerror(status));
  free(rr);
  NET_UNLOCK(net);
}

/* raw_bytes: bytes straight onto the socket (copied) */
static void raw_bytes(dt_conn *c, const void *data, size_t len) {
  if (c->state != DT_CONN_OPEN && !(c->state == DT_CONN_CLOSING && c->close_after_flush)) return;
  raw_req *rr = dt__xmalloc(sizeof(*rr) + len);
  memcpy(rr->data, data, len);
  rr->c = c;
  uv_buf_t b = uv_buf_init(rr->data, (unsigned)len);
  c->writes_in_flight++;
  int rc = uv_write(&rr->req, (uv_stream_t *)&c->tcp, &b, 1, on_raw_written);
  if (rc < 0) {
    c->writes_in_flight--;
    free(rr);
    DT_INFO("write to %s failed: %s", c->peer, uv_strerror(rc));
    c->close_status = DT_ECONNLOST;
    dt__conn_close(c, false);
  }
}

static void tls_flush(dt_conn *c) {
  BIO *wb = SSL_get_wbio(c->ssl);
  char buf[16384];
  int n;
  while ((n = BIO_read(wb, buf, sizeof(buf))) > 0) raw_bytes(c, buf, (size_t)n);
}

/* raw_write: bytes of the stream (encrypted first, with TLS) */
static void raw_write(dt_conn *c, const void *data, size_t len) {
  if (!c->ssl) {
    raw_bytes(c, data, len);
    return;
  }
  const char *p = data;
  while (len > 0) {
    int part = len > (1u << 30) ? (1 << 30) : (int)len;
    int w = SSL_write(c->ssl, p, part);
    if (w <= 0) {
      secure_fail(c, "TLS write failed", UV_EPROTO);
      return;
    }
    p += w;
    len -= (size_t)w;
    tls_flush(c);
  }
}

static void auth_begin(dt_conn *c) {
  if (!c->net->sec->auth) {
    secured(c);
    return;
  }
  if (c->outgoing) {
    c->auth = AUTH_CLI_WAIT_CHALLENGE;
    return;
  }
  uint8_t ch[DT_AUTH_CHALLENGE] = {'D', 'T', 'A', '1', 0, 0, 0, 0};
  if (dt__sec_random(c->ns, DT_AUTH_NONCE) != 0) {
    secure_fail(c, dt_last_error(), UV_EIO);
    return;
  }
  memcpy(ch + 8, c->ns, DT_AUTH_NONCE);
  c->auth = AUTH_SRV_WAIT_RESPONSE;
  raw_write(c, ch, sizeof(ch));
}

static size_t auth_in(dt_conn *c, const uint8_t *data, size_t n) {
  const dt_sec *sec = c->net->sec;
  size_t need = c->auth == AUTH_SRV_WAIT_RESPONSE    ? DT_AUTH_RESPONSE
                : c->auth == AUTH_CLI_WAIT_CHALLENGE ? DT_AUTH_CHALLENGE
                                                     : DT_AUTH_MAC;
  size_t take = n < need - c->hs_got ? n : need - c->hs_got;
  memcpy(c->hs + c->hs_got, data, take);
  c->hs_got += take;
  if (c->hs_got < need) {
    /* a stranger that is obviously not doing the handshake goes at once */
    if (c->auth != AUTH_CLI_WAIT_PROOF && c->hs_got >= 4 && memcmp(c->hs, "DTA1", 4) != 0)
      secure_fail(c, "no authentication handshake (a peer without the shared secret?)",
                  UV_EACCES);
    return take;
  }
  c->hs_got = 0;
  uint8_t mac[DT_AUTH_MAC];
  switch (c->auth) {
  case AUTH_SRV_WAIT_RESPONSE:
    if (memcmp(c->hs, "DTA1", 4) != 0) {
      secure_fail(c, "no authentication handshake (a peer without the shared secret?)", UV_EACCES);
      return take;
    }
    memcpy(c->nc, c->hs + 4, DT_AUTH_NONCE);
    dt__sec_proof(sec, "dtask-client", c->ns, c->nc, mac);
    if (!dt__sec_equal(mac, c->hs + 4 + DT_AUTH_NONCE, DT_AUTH_MAC)) {
      secure_fail(c, "authentication failed: wrong shared secret", UV_EACCES);
      return take;
    }
    dt__sec_proof(sec, "dtask-server", c->nc, c->ns, mac);
    raw_write(c, mac, DT_AUTH_MAC);
    secured(c);
    return take;
  case AUTH_CLI_WAIT_CHALLENGE: {
    static const uint8_t magic[8] = {'D', 'T', 'A', '1', 0, 0, 0, 0};
    if (memcmp(c->hs, magic, 8) != 0) {
      secure_fail(c, "the peer did not start the authentication handshake (no secret there?)",
                  UV_EACCES);
      return take;
    }
    memcpy(c->ns, c->hs + 8, DT_AUTH_NONCE);
    uint8_t resp[DT_AUTH_RESPONSE] = {'D', 'T', 'A', '1'};
    if (dt__sec_random(c->nc, DT_AUTH_NONCE) != 0) {
      secure_fail(c, dt_last_error(), UV_EIO);
      return take;
    }
    memcpy(resp + 4, c->nc, DT_AUTH_NONCE);
    dt__sec_proof(sec, "dtask-client", c->ns, c->nc, resp + 4 + DT_AUTH_NONCE);
    c->auth = AUTH_CLI_WAIT_PROOF;
    raw_write(c, resp, sizeof(resp));
    return take;
  }
  default:
    dt__sec_proof(sec, "dtask-server", c->nc, c->ns, mac);
    if (!dt__sec_equal(mac, c->hs, DT_AUTH_MAC)) {
      secure_fail(c, "authentication failed: the peer does not know the shared secret",
                  UV_EACCES);
      return take;
    }
    secured(c);
    return take;
  }
}

static void tls_error(dt_conn *c, const char *what) {
  char msg[300];
  unsigned long e = ERR_get_error();
  snprintf(msg, sizeof(msg), "%s: %s", what, e ? ERR_reason_error_string(e) : "connection closed");
  ERR_clear_error();
  secure_fail(c, msg, UV_EPROTO);
}

static bool tls_in(dt_conn *c, const char *data, size_t n) {
  if (BIO_write(SSL_get_rbio(c->ssl), data, (int)n) != (int)n) {
    tls_error(c, "TLS input");
    return false;
  }
  if (!SSL_is_init_finished(c->ssl)) {
    int r = SSL_do_handshake(c->ssl);
    tls_flush(c);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
      tls_error(c, "TLS handshake failed");
      return false;
    }
    DT_DEBUG("TLS with %s: %s", c->peer, SSL_get_version(c->ssl));
    auth_begin(c);
    if (c->state == DT_CONN_CLOSING) return false;
  }
  char buf[16384];
  for (;;) {
    int r = SSL_read(c->ssl, buf, sizeof(buf));
    if (r > 0) {
      plain_in(c, buf, (size_t)r, false);
      if (c->state == DT_CONN_CLOSING) return false;
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    tls_flush(c);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
    if (e == SSL_ERROR_ZERO_RETURN) {
      c->close_status = 0;
      dt__conn_close(c, false);
      return false;
    }
    tls_error(c, "TLS read failed");
    return false;
  }
}

static void tls_free(dt_conn *c) {
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
}

/* secure_start: the TCP connection is up: TLS and authentication, if the
 * process has them, before anything else */
static void secure_start(dt_conn *c) {
  const dt_sec *sec = c->net ? c->net->sec : NULL;
  void *ctx = sec ? (c->outgoing ? sec->tls_client : sec->tls_server) : NULL;
  if (!sec || (!sec->auth && !ctx)) {
    secured(c);
    return;
  }
  dt_net *n = c->net;
  c->hs_deadline = uv_now(n->loop) + DT_AUTH_TIMEOUT_MS;
  c->hs_next = n->hs_head;
  if (n->hs_head) n->hs_head->hs_prev = c;
  n->hs_head = c;
  if (!uv_is_active((uv_handle_t *)&n->hs_timer)) uv_timer_start(&n->hs_timer, on_hs_timer, 1000, 1000);
  if (!ctx) {
    auth_begin(c);
    return;
  }
  SSL *ssl = SSL_new(ctx);
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
  if (!ssl || !rb || !wb) {
    if (ssl) SSL_free(ssl);
    BIO_free(rb);
    BIO_free(wb);
    secure_fail(c, "cannot set up TLS", UV_ENOMEM);
    return;
  }
  BIO_set_mem_eof_return(rb, -1);
  SSL_set_bio(ssl, rb, wb);
  c->ssl = ssl;
  if (c->outgoing) {
    SSL_set_connect_state(ssl);
    int r = SSL_do_handshake(ssl); /* ClientHello */
    tls_flush(c);
    if (r != 1 && SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) tls_error(c, "TLS handshake failed");
  } else {
    SSL_set_accept_state(ssl);
  }
}
