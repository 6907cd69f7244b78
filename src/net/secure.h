/*
 * secure.h -- shared-secret authentication (secure.c) and TLS (tls.c) for
 * connections.  conn.c runs the handshakes; the owner only sets dt_net.sec.
 */
#ifndef DT_SECURE_H
#define DT_SECURE_H

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
#define DT_SEC_USAGE                                                                  \
  "  --auth-file FILE       shared secret: every connection must prove it knows it\n" \
  "  --tls-cert FILE        TLS certificate (PEM); with --tls-key, connections use TLS\n" \
  "  --tls-key FILE         TLS private key (PEM)\n"                                   \
  "  --tls-ca-file FILE     CA (PEM) that must have signed the peer's certificate\n"

/* TLS (tls.c): contexts from PEM files; ca may be NULL (no peer checks). */
int dt__tls_setup(dt_sec *sec, const char *ca_file, const char *cert_file, const char *key_file);
void dt__tls_free(dt_sec *sec);

#endif
