/*
 * conn_handshake.c -- what a connection does before its first batch: TLS
 * (OpenSSL over memory BIOs, records carried by dt__conn_raw_write) and the
 * shared-secret challenge and response (the proof itself is in secure.c),
 * with a deadline for peers that never finish.  dt_conn.secured says when
 * batches may flow; the owner hears on_connect only then.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn_int.h"

enum { AUTH_SRV_WAIT_RESPONSE = 1, AUTH_CLI_WAIT_CHALLENGE, AUTH_CLI_WAIT_PROOF };

void dt__conn_hs_unlink(dt_conn *c) {
  if (!c->net) return;
  if (c->hs_prev) c->hs_prev->hs_next = c->hs_next;
  else if (c->net->hs_head == c) c->net->hs_head = c->hs_next;
  if (c->hs_next) c->hs_next->hs_prev = c->hs_prev;
  c->hs_prev = c->hs_next = NULL;
}

void dt__conn_secure_fail(dt_conn *c, const char *why, int uvcode) {
  if (c->state == DT_CONN_CLOSING) return;
  DT_WARN("dropping %s connection %s %s: %s", c->outgoing ? "outgoing" : "incoming",
          c->outgoing ? "to" : "from", c->peer, why);
  dt__conn_hs_unlink(c);
  c->close_status = DT_EAUTH;
  if (c->outgoing && !c->secured && c->cbs && c->cbs->on_connect) c->cbs->on_connect(c, uvcode);
  dt__conn_close(c, false);
}

bool dt__conn_hs_untouched(const dt_conn *c) {
  return c->outgoing && !c->ssl && c->auth == AUTH_CLI_WAIT_CHALLENGE && c->hs_got == 0;
}

static void on_hs_timer(uv_timer_t *h) {
  dt_net *n = h->data;
  NET_LOCK(n);
  uint64_t now = uv_now(n->loop);
  dt_conn *c = n->hs_head;
  while (c) {
    dt_conn *next = c->hs_next;
    if (c->hs_deadline <= now && !c->secured)
      dt__conn_secure_fail(c, "handshake not completed in time", UV_ETIMEDOUT);
    else if (c->hs_deadline <= now) { /* secured, but never said hello */
      DT_WARN("dropping incoming connection from %s: no hello within %u ms", c->peer,
              (unsigned)n->lim.hello_ms);
      dt__conn_hs_unlink(c);
      c->close_status = DT_EPROTO;
      dt__conn_close(c, false);
    }
    c = next;
  }
  if (!n->hs_head) uv_timer_stop(h);
  NET_UNLOCK(n);
}

/* secured: the handshakes are done; batches may flow both ways */
static void secured(dt_conn *c) {
  c->auth = 0;
  c->secured = true;
  /* an accepted connection stays on the deadline list until it says hello
   * (dt__conn_admit) */
  if (c->outgoing || c->admitted) dt__conn_hs_unlink(c);
  if (c->outgoing && c->cbs && c->cbs->on_connect) c->cbs->on_connect(c, 0);
  if (c->state == DT_CONN_OPEN && (c->out.len || c->nsealed)) dt__conn_out(c);
}

/* auth_begin: TLS, if any, is up: the shared-secret handshake starts (the
 * accepting side sends its challenge), or there is none */
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
    dt__conn_secure_fail(c, dt_last_error(), UV_EIO);
    return;
  }
  memcpy(ch + 8, c->ns, DT_AUTH_NONCE);
  c->auth = AUTH_SRV_WAIT_RESPONSE;
  dt__conn_raw_write(c, ch, sizeof(ch));
}

size_t dt__conn_auth_in(dt_conn *c, const uint8_t *data, size_t n) {
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
      dt__conn_secure_fail(c, "no authentication handshake (a peer without the shared secret?)",
                           UV_EACCES);
    return take;
  }
  c->hs_got = 0;
  uint8_t mac[DT_AUTH_MAC];
  switch (c->auth) {
  case AUTH_SRV_WAIT_RESPONSE:
    if (memcmp(c->hs, "DTA1", 4) != 0) {
      dt__conn_secure_fail(c, "no authentication handshake (a peer without the shared secret?)",
                           UV_EACCES);
      return take;
    }
    memcpy(c->nc, c->hs + 4, DT_AUTH_NONCE);
    dt__sec_proof(sec, "dtask-client", c->ns, c->nc, mac);
    if (!dt__sec_equal(mac, c->hs + 4 + DT_AUTH_NONCE, DT_AUTH_MAC)) {
      dt__conn_secure_fail(c, "authentication failed: wrong shared secret", UV_EACCES);
      return take;
    }
    dt__sec_proof(sec, "dtask-server", c->nc, c->ns, mac);
    dt__conn_raw_write(c, mac, DT_AUTH_MAC);
    secured(c);
    return take;
  case AUTH_CLI_WAIT_CHALLENGE: {
    static const uint8_t magic[8] = {'D', 'T', 'A', '1', 0, 0, 0, 0};
    if (memcmp(c->hs, magic, 8) != 0) {
      dt__conn_secure_fail(c,
                           "the peer did not start the authentication handshake (no secret "
                           "there?)",
                           UV_EACCES);
      return take;
    }
    memcpy(c->ns, c->hs + 8, DT_AUTH_NONCE);
    uint8_t resp[DT_AUTH_RESPONSE] = {'D', 'T', 'A', '1'};
    if (dt__sec_random(c->nc, DT_AUTH_NONCE) != 0) {
      dt__conn_secure_fail(c, dt_last_error(), UV_EIO);
      return take;
    }
    memcpy(resp + 4, c->nc, DT_AUTH_NONCE);
    dt__sec_proof(sec, "dtask-client", c->ns, c->nc, resp + 4 + DT_AUTH_NONCE);
    c->auth = AUTH_CLI_WAIT_PROOF;
    dt__conn_raw_write(c, resp, sizeof(resp));
    return take;
  }
  default:
    dt__sec_proof(sec, "dtask-server", c->nc, c->ns, mac);
    if (!dt__sec_equal(mac, c->hs, DT_AUTH_MAC)) {
      dt__conn_secure_fail(c, "authentication failed: the peer does not know the shared secret",
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
  dt__conn_secure_fail(c, msg, UV_EPROTO);
}

bool dt__conn_tls_in(dt_conn *c, const char *data, size_t n) {
  if (BIO_write(SSL_get_rbio(c->ssl), data, (int)n) != (int)n) {
    tls_error(c, "TLS input");
    return false;
  }
  if (!SSL_is_init_finished(c->ssl)) {
    int r = SSL_do_handshake(c->ssl);
    dt__conn_tls_flush(c);
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
      dt__conn_plain_in(c, buf, (size_t)r, false);
      if (c->state == DT_CONN_CLOSING) return false;
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    dt__conn_tls_flush(c);
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

void dt__conn_tls_free(dt_conn *c) {
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
}

/* dt__conn_secure_start: the TCP connection is up: TLS and authentication,
 * if the process has them, before anything else */
static void deadline_start(dt_conn *c) {
  dt_net *n = c->net;
  c->hs_deadline = uv_now(n->loop) + (n->lim.hello_ms ? n->lim.hello_ms : DT_AUTH_TIMEOUT_MS);
  c->hs_next = n->hs_head;
  if (n->hs_head) n->hs_head->hs_prev = c;
  n->hs_head = c;
  if (!uv_is_active((uv_handle_t *)&n->hs_timer)) uv_timer_start(&n->hs_timer, on_hs_timer, 1000, 1000);
}

void dt__conn_secure_start(dt_conn *c) {
  const dt_sec *sec = c->net ? c->net->sec : NULL;
  void *ctx = sec ? (c->outgoing ? sec->tls_client : sec->tls_server) : NULL;
  if (!sec || (!sec->auth && !ctx)) {
    /* no handshakes, but a stranger still says hello in time, or goes */
    if (c->net && !c->outgoing && !c->admitted) deadline_start(c);
    secured(c);
    return;
  }
  deadline_start(c);
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
    dt__conn_secure_fail(c, "cannot set up TLS", UV_ENOMEM);
    return;
  }
  BIO_set_mem_eof_return(rb, -1);
  SSL_set_bio(ssl, rb, wb);
  c->ssl = ssl;
  if (c->outgoing) {
    SSL_set_connect_state(ssl);
    int r = SSL_do_handshake(ssl); /* ClientHello */
    dt__conn_tls_flush(c);
    if (r != 1 && SSL_get_error(ssl, r) != SSL_ERROR_WANT_READ) tls_error(c, "TLS handshake failed");
  } else {
    SSL_set_accept_state(ssl);
  }
}
