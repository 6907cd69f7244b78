/*
 * secure.h -- shared-secret authentication (secure.c) and TLS (tls.c) for
 * connections.  conn.c runs the handshakes; the owner only sets dt_net.sec.
 */
#ifndef DT_SECURE_H
#define DT_SECURE_H

#include "../common/args.h"
#include "net.h"

#define DT_AUTH_NONCE 32
#define DT_AUTH_MAC 32
#define DT_AUTH_MIN_SECRET 16
#define DT_AUTH_CHALLENGE (8 + DT_AUTH_NONCE)             /* "DTA1" 0000 Ns */
#define DT_AUTH_RESPONSE (4 + DT_AUTH_NONCE + DT_AUTH_MAC) /* "DTA1" Nc mac */
#define DT_AUTH_TIMEOUT_MS 10000

/* dt__sec_set_secret: copies secret (>= 16 bytes) into sec and turns auth on. */
int dt__sec_set_secret(dt_sec *sec, const void *secret, size_t len);
/* dt__sec_load_auth_file: the secret is the file's content, trailing
 * newlines removed. */
int dt__sec_load_auth_file(dt_sec *sec, const char *path);
int dt__sec_random(void *out, size_t len);
/* dt__sec_proof: HMAC-SHA256(secret, label n1 n2) */
void dt__sec_proof(const dt_sec *sec, const char *label, const uint8_t *n1, const uint8_t *n2,
                   uint8_t out[DT_AUTH_MAC]);
/* dt__sec_dashboard_token: the token the dashboard asks for when a secret
 * is set (docs/dashboard.md): HMAC-SHA256(secret, "dtask-dashboard-token")
 * in hex -- knowing it gives the dashboard, not the cluster. */
void dt__sec_dashboard_token(const dt_sec *sec, char hex[65]);
bool dt__sec_equal(const uint8_t *a, const uint8_t *b, size_t n); /* constant time */

/* dt__sec_cli: parses --auth-file F, --tls-ca-file F, --tls-cert F,
 * --tls-key F at argv[*i]; 1 if it took the option (advancing *i), 0 if it
 * is not one of them, -1 on error (message in dt_last_error()). */
typedef struct {
  const char *auth_file, *tls_ca, *tls_cert, *tls_key;
} dt_sec_args;
int dt__sec_cli(dt_sec_args *a, int argc, char **argv, int *i);
/* dt__sec_from_args: sets sec up from parsed arguments (and, if no
 * --auth-file, $DTASK_AUTH_FILE). */
int dt__sec_from_args(dt_sec *sec, const dt_sec_args *a);
/* DT_SEC_ARG_ROWS(sa): the four options as rows of an args.h table, filling
 * the dt_sec_args sa (its help is in DT_SEC_USAGE: give that as epilog, or
 * these rows' own help lines). */
#define DT_SEC_ARG_ROWS(sa)                                                                  \
  DT_OPT_STR("--auth-file", &(sa).auth_file, "FILE",                                         \
             "shared secret: every connection must prove it knows it"),                      \
      DT_OPT_STR("--tls-cert", &(sa).tls_cert, "FILE",                                       \
                 "TLS certificate (PEM); with --tls-key, connections use TLS"),              \
      DT_OPT_STR("--tls-key", &(sa).tls_key, "FILE", "TLS private key (PEM)"),               \
      DT_OPT_STR("--tls-ca-file", &(sa).tls_ca, "FILE",                                      \
                 "CA (PEM) that must have signed the peer's certificate")
#define DT_SEC_USAGE                                                                  \
  "  --auth-file FILE       shared secret: every connection must prove it knows it\n" \
  "  --tls-cert FILE        TLS certificate (PEM); with --tls-key, connections use TLS\n" \
  "  --tls-key FILE         TLS private key (PEM)\n"                                   \
  "  --tls-ca-file FILE     CA (PEM) that must have signed the peer's certificate\n"

/* ---- the secrets of this process's own clusters, by address.  A
 * LocalCluster registers its scheduler's address when it starts and
 * unregisters it when it closes; a client connecting to that address finds
 * the secret there (lower than both, so neither calls the other).  Every
 * function is thread-safe.  Addresses match with or without tcp:// or
 * tls://. */
/* dt__sec_register: remembers a copy of sec under address (replacing an
 * entry there): the secret is copied; the TLS contexts, if any, get one more
 * reference each, dropped by dt__sec_unregister.  0, or DT_EINVAL if the
 * address is empty or longer than 255 bytes. */
int dt__sec_register(const char *address, const dt_sec *sec);
/* dt__sec_unregister: forgets address (no-op if it is not registered). */
void dt__sec_unregister(const char *address);
/* dt__sec_lookup: true, with *out a copy of the entry for address (its TLS
 * contexts referenced again: release with dt__tls_free(out)); false, out
 * untouched, if none. */
bool dt__sec_lookup(const char *address, dt_sec *out);

/* TLS (tls.c): contexts from PEM files; ca may be NULL (no peer checks). */
int dt__tls_setup(dt_sec *sec, const char *ca_file, const char *cert_file, const char *key_file);
void dt__tls_free(dt_sec *sec);

#endif
