/*
 * conn_read.c -- the read side of a connection: a state machine over the
 * batch layout (net.h, proto.h), sizes checked against the limits in
 * proto.h before any allocation, large bodies and frames read straight
 * into their final buffers, then each message dispatched to the owner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "conn_int.h"

static void proto_error(dt_conn *c, const char *what) {
  DT_WARN("closing connection %s %s: %s", c->outgoing ? "to" : "from", c->peer, what);
  if (c->close_status != DT_EAUTH) c->close_status = DT_EPROTO;
  dt__conn_close(c, false);
}

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

/* count_in: take more bytes of the batch being read from an accepted
 * connection count against its net's bound on bytes in flight; false (and
 * c closed) past it */
static bool count_in(dt_conn *c, size_t take) {
  if (c->outgoing || !c->net) return true;
  c->in_flight += take;
  c->net->in_flight += take;
  if (c->net->lim.in_flight_max && c->net->in_flight > c->net->lim.in_flight_max) {
    proto_error(c, "too many bytes of incomplete batches from peers in flight here "
                   "(limit: --max-in-flight)");
    return false;
  }
  return true;
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
      if (c->body_len == 0 || c->body_len > (c->admitted ? DT_MAX_BODY : DT_PREADMIT_MAX_BODY) ||
          (c->max_batch && c->body_len > c->max_batch)) {
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
      uint64_t total = c->body_len;
      for (uint32_t i = 0; i < c->nframes; i++) {
        const uint8_t *b = (const uint8_t *)&c->flens[i];
        uint64_t v = 0;
        for (int k = 7; k >= 0; k--) v = v << 8 | b[k];
        if (v > DT_MAX_FRAME) {
          proto_error(c, "frame size out of limits");
          return;
        }
        c->flens[i] = v;
        total += v;
      }
      if (c->max_batch && total > c->max_batch) {
        char what[160];
        snprintf(what, sizeof(what), "batch of %llu bytes over this peer's limit of %llu",
                 (unsigned long long)total, (unsigned long long)c->max_batch);
        proto_error(c, what);
        return;
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
      if (!count_in(c, take)) return;
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
        f->blob = dt__blob_new_lazy(c->flens[c->fi]);
        if (!f->blob) { proto_error(c, "out of memory for frame"); return; }
        f->p = f->blob->data;
        f->len = c->flens[c->fi];
        c->committed = 0;
      }
      want = f->len - c->got;
      take = n < want ? n : want;
      if (!count_in(c, take)) return;
      if (!direct) memcpy(f->blob->data + c->got, data, take);
      c->got += take;
      data += take;
      n -= take;
      if (c->got == f->len) {
        c->got = 0;
        c->committed = 0;
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
      conn_reset_read(c);
    }
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  dt_conn *c = h->data;
  c->direct = false;
  if (c->ssl || !c->secured) {
    *buf = uv_buf_init(c->net->stage, DT_CONN_STAGE_SIZE);
    return;
  }
  if (c->rstate == DT_RS_BODY && c->body_len - c->got >= DT_CONN_STAGE_SIZE) {
    *buf = uv_buf_init(c->body + c->got, c->body_len - (uint32_t)c->got);
    c->direct = true;
    return;
  }
  if (c->rstate == DT_RS_FRAMES && c->fi < c->nframes && c->flens[c->fi] - c->got >= DT_CONN_STAGE_SIZE) {
    dt_frame *f = &c->frames[c->fi];
    if (!f->blob) {
      f->blob = dt__blob_new_lazy(c->flens[c->fi]);
      if (!f->blob) {
        *buf = uv_buf_init(NULL, 0);
        return;
      }
      f->p = f->blob->data;
      f->len = c->flens[c->fi];
      c->committed = 0;
    }
    /* memory is committed as the bytes come, a window ahead that grows
     * with what has arrived (a header announcing 4 GiB and then silence
     * costs DT_CONN_COMMIT_MIN, not 4 GiB); the window is pre-faulted in
     * one call, which is what makes large transfers fast */
    if (c->committed < c->got + DT_CONN_STAGE_SIZE) {
      size_t win = c->got < DT_CONN_COMMIT_MIN ? DT_CONN_COMMIT_MIN : c->got;
      if (win > DT_CONN_COMMIT_MAX) win = DT_CONN_COMMIT_MAX;
      if (c->committed < c->got) c->committed = c->got;
      dt__blob_commit(f->blob, c->committed, win);
      c->committed += win;
      if (c->committed > f->len) c->committed = f->len;
    }
    size_t rem = c->committed - c->got;
    *buf = uv_buf_init(f->blob->data + c->got, (unsigned)rem);
    c->direct = true;
    return;
  }
  *buf = uv_buf_init(c->net->stage, DT_CONN_STAGE_SIZE);
}

/* dt__conn_plain_in: see conn_int.h */
void dt__conn_plain_in(dt_conn *c, const char *data, size_t n, bool direct) {
  if (c->auth) {
    size_t used = dt__conn_auth_in(c, (const uint8_t *)data, n);
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

static void on_read_locked(dt_conn *c, ssize_t nread, const uv_buf_t *buf) {
  if (nread < 0 && c->outgoing && !c->secured) { /* refused during the handshakes */
    dt__conn_secure_fail(c,
                         dt__conn_hs_untouched(c)
                             ? "the peer closed the connection before the handshake began "
                               "(refused: too many connections, or not a dtask daemon; see "
                               "its log)"
                         : c->ssl && !SSL_is_init_finished(c->ssl)
                             ? "the peer closed the connection during the TLS handshake"
                         : c->ssl ? "the peer closed the connection after the TLS handshake "
                                    "(certificate refused, or no shared secret)"
                                  : "the peer closed the connection during authentication "
                                    "(wrong shared secret?)",
                         dt__conn_hs_untouched(c) ? UV_ECONNRESET
                         : c->ssl                 ? UV_EPROTO
                                                  : UV_EACCES);
    return;
  }
  if (nread < 0) {
    if (nread != UV_EOF) DT_INFO("connection to %s: %s", c->peer, uv_strerror((int)nread));
    c->close_status = nread == UV_EOF ? 0 : DT_ECONNLOST;
    dt__conn_close(c, false);
    return;
  }
  if (nread == 0) return;
  c->rx_ms = uv_now(c->tcp.loop);
  if (c->ssl) {
    dt__conn_tls_in(c, buf->base, (size_t)nread);
    return;
  }
  dt__conn_plain_in(c, buf->base, (size_t)nread, c->direct);
}

void dt__conn_start_open(dt_conn *c) {
  c->state = DT_CONN_OPEN;
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  dt__conn_secure_start(c);
}
