/*
 * conn_write.c -- the write side of connections.  Messages accumulate in
 * c->out during a loop turn; the prepare and check handles of dt_net send
 * each dirty connection's batch with one uv_write (header, body and frames
 * as separate buffers: frames are never copied).  Handshake bytes and TLS
 * records go out through dt__conn_raw_write.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "../proto/alloc.h"
#include "conn_int.h"

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
  n->lim.in_flight_max = DT_NET_IN_FLIGHT_MAX;
  n->lim.client_max_batch = DT_NET_CLIENT_MAX_BATCH;
  n->lim.strangers_max = DT_NET_STRANGERS_MAX;
  n->lim.strangers_per_ip = DT_NET_STRANGERS_PER_IP;
  n->lim.hello_ms = DT_NET_HELLO_MS;
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
    dt__conn_flush(c);
  }
}

/* ---------------------------------------------------------------- writing */

void dt__conn_close_open(dt_conn *c) {
  void (*close_open)(dt_conn *) = c->close_open;
  if (!close_open) return;
  c->close_open = NULL;
  close_open(c);
}

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
  c->out_hint = w->len < DT_OUT_HINT_MAX ? w->len : DT_OUT_HINT_MAX;
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
    for (size_t i = 0; i < k; i++) dt__conn_raw_write(c, wr->bufs[i].base, wr->bufs[i].len);
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

void dt__conn_flush(dt_conn *c) {
  if (c->close_open) dt__conn_close_open(c);
  if (c->state != DT_CONN_OPEN && !(c->state == DT_CONN_CLOSING && c->close_after_flush)) return;
  if (!c->secured) return; /* held until the handshakes are done */
  for (size_t i = 0; i < c->nsealed; i++) write_batch(c, &c->sealed[i]);
  c->nsealed = 0;
  if (c->out.len > 0) write_batch(c, &c->out);
}

dt_wbuf *dt__conn_out(dt_conn *c) {
  if (c->close_open) dt__conn_close_open(c);
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
  /* best effort: out of memory here, the writes grow it (or the client's
   * checked reservation fails) as before */
  if (!c->out.cap && c->out_hint) (void)dt__wbuf_try_reserve(&c->out, c->out_hint, 0);
  return &c->out;
}

/* ---------------------------------------------------------------- raw bytes */

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

void dt__conn_tls_flush(dt_conn *c) {
  BIO *wb = SSL_get_wbio(c->ssl);
  char buf[16384];
  int n;
  while ((n = BIO_read(wb, buf, sizeof(buf))) > 0) raw_bytes(c, buf, (size_t)n);
}

/* dt__conn_raw_write: bytes of the stream (encrypted first, with TLS) */
void dt__conn_raw_write(dt_conn *c, const void *data, size_t len) {
  if (!c->ssl) {
    raw_bytes(c, data, len);
    return;
  }
  const char *p = data;
  while (len > 0) {
    int part = len > (1u << 30) ? (1 << 30) : (int)len;
    int w = SSL_write(c->ssl, p, part);
    if (w <= 0) {
      dt__conn_secure_fail(c, "TLS write failed", UV_EPROTO);
      return;
    }
    p += w;
    len -= (size_t)w;
    dt__conn_tls_flush(c);
  }
}
