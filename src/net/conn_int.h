/*
 * conn_int.h -- what the files of a connection share, private to src/net:
 * conn.c (life: alloc, connect, accept, close), conn_read.c (the read
 * state machine), conn_write.c (batches and raw bytes out) and
 * conn_handshake.c (TLS and the shared-secret handshake).  Every function
 * here runs on the connection's loop thread, with the dt_net lock held
 * when there is one.
 */
#ifndef DT_CONN_INT_H
#define DT_CONN_INT_H

#include <stdlib.h>

#include "secure.h"

/* a frame read in place: memory committed ahead of the bytes received,
 * at least MIN, as much as has arrived, at most MAX */
#define DT_CONN_COMMIT_MIN (256u * 1024)
#define DT_CONN_COMMIT_MAX (32u << 20)

/* With a locked dt_net (the client library), every callback into the owner
 * runs with the lock held. */
#define NET_LOCK(n) do { if ((n) && (n)->lock) (n)->lock->acquire((n)->lock->arg); } while (0)
#define NET_UNLOCK(n) do { if ((n) && (n)->lock) (n)->lock->release((n)->lock->arg); } while (0)

/* conn_reset_read: drops the batch being read; the reader waits for the
 * next header.  (Inline: it runs once per batch.) */
static inline void conn_reset_read(dt_conn *c) {
  if (c->in_flight && c->net) c->net->in_flight -= c->in_flight;
  c->in_flight = 0;
  c->committed = 0;
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

/* ---- conn_read.c */
/* dt__conn_start_open: the socket is connected: reads start, then the
 * handshakes (dt__conn_secure_start). */
void dt__conn_start_open(dt_conn *c);
/* dt__conn_plain_in: n bytes of the stream (decrypted, with TLS): the rest
 * of the authentication handshake first, then batches.  direct: the bytes
 * were read in place, into the body or frame being read. */
void dt__conn_plain_in(dt_conn *c, const char *data, size_t n, bool direct);

/* ---- limits.c */
/* dt__conn_stranger_ok: an accepted connection is within the limits on
 * strangers (in total, per source address); false: refuse it. */
bool dt__conn_stranger_ok(dt_net *n, const char *ip);
/* dt__conn_refused: counts and logs (at most once a second) a refusal. */
void dt__conn_refused(dt_net *n, const char *peer, const char *why);

/* ---- conn_write.c */
/* dt__conn_flush: writes c's sealed batches and its current one, if c is
 * open (or closing gracefully) and its handshakes are done. */
void dt__conn_flush(dt_conn *c);
/* dt__conn_raw_write: bytes of the stream, copied (encrypted first, with
 * TLS); a failed write closes c. */
void dt__conn_raw_write(dt_conn *c, const void *data, size_t len);
/* dt__conn_tls_flush: sends the TLS records OpenSSL has ready. */
void dt__conn_tls_flush(dt_conn *c);

/* ---- conn_handshake.c */
/* dt__conn_secure_start: TLS and authentication, if the process has them,
 * before any batch; otherwise c is secured at once. */
void dt__conn_secure_start(dt_conn *c);
/* dt__conn_secure_fail: logs why and closes c (DT_EAUTH); an outgoing
 * connection not yet secured hears on_connect(uvcode) first. */
void dt__conn_secure_fail(dt_conn *c, const char *why, int uvcode);
/* dt__conn_hs_untouched: an outgoing connection heard nothing of the
 * handshake it waits for (the peer closed before it began). */
bool dt__conn_hs_untouched(const dt_conn *c);
/* dt__conn_hs_unlink: takes c off its net's list of handshakes in progress. */
void dt__conn_hs_unlink(dt_conn *c);
/* dt__conn_auth_in: feeds handshake bytes; returns how many it used. */
size_t dt__conn_auth_in(dt_conn *c, const uint8_t *data, size_t n);
/* dt__conn_tls_in: feeds TLS records read from the socket; false if c was
 * closed. */
bool dt__conn_tls_in(dt_conn *c, const char *data, size_t n);
/* dt__conn_tls_free: frees c's TLS state, if any. */
void dt__conn_tls_free(dt_conn *c);

#endif
