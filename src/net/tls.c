/*
 * tls.c -- TLS contexts for connections over untrusted networks (OpenSSL).
 * Like Dask's tls:// settings: each process has a certificate and key; with
 * a CA file, both ends must present a certificate signed by it (mutual
 * TLS).  Peers are identified by certificate, not host name: cluster
 * certificates are commonly issued for the cluster, not each node.
 */
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "secure.h"

static int ssl_err(const char *what, const char *file) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  return dt__err(DT_EINVAL, "TLS: %s '%s': %s", what, file ? file : "",
                 e ? ERR_reason_error_string(e) : "unknown error");
}

static SSL_CTX *make_ctx(bool server, const char *ca, const char *cert, const char *key) {
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) {
    ssl_err("cannot create a context", NULL);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    ssl_err("cannot load certificate", cert);
    goto fail;
  }
  if (key && SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    ssl_err("cannot load private key", key);
    goto fail;
  }
  if (cert && key && SSL_CTX_check_private_key(ctx) != 1) {
    ssl_err("the key does not match the certificate", key);
    goto fail;
  }
  if (ca) {
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
      ssl_err("cannot load CA file", ca);
      goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

int dt__tls_setup(dt_sec *sec, const char *ca, const char *cert, const char *key) {
  if (!cert || !key)
    return dt__err(DT_EINVAL, "TLS needs a certificate and a key (--tls-cert, --tls-key)");
  SSL_CTX *s = make_ctx(true, ca, cert, key);
  if (!s) return DT_EINVAL;
  SSL_CTX *c = make_ctx(false, ca, cert, key);
  if (!c) {
    SSL_CTX_free(s);
    return DT_EINVAL;
  }
  sec->tls_server = s;
  sec->tls_client = c;
  return 0;
}

void dt__tls_free(dt_sec *sec) {
  if (sec->tls_server) SSL_CTX_free(sec->tls_server);
  if (sec->tls_client) SSL_CTX_free(sec->tls_client);
  sec->tls_server = sec->tls_client = NULL;
}
