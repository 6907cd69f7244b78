/*
 * secure.c -- what every connection must prove before its first message:
 * knowledge of the cluster's shared secret, by challenge and response, so
 * that the secret itself never crosses the wire.  (TLS, when configured,
 * wraps the whole byte stream; see tls.c.)
 *
 * The handshake, before any batch (sizes fixed: nothing is allocated for a
 * stranger, and nothing it sends is parsed as a message):
 *
 *   accepting side  -> "DTA1" 0 0 0 0 Ns            (40 bytes, Ns random)
 *   connecting side -> "DTA1" Nc HMAC(k, "dtask-client" Ns Nc)  (68 bytes)
 *   accepting side  -> HMAC(k, "dtask-server" Nc Ns)            (32 bytes)
 *
 * HMAC is HMAC-SHA256 from OpenSSL; k the secret.  Both sides prove the
 * secret, so a worker never registers with an impostor scheduler.  A peer
 * that sends anything else, or not all of it within DT_AUTH_TIMEOUT_MS, is
 * dropped and logged.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "../common/parse.h"
#include "secure.h"

int dt__sec_set_secret(dt_sec *sec, const void *secret, size_t len) {
  if (len < DT_AUTH_MIN_SECRET)
    return dt__err(DT_EINVAL, "the shared secret is %zu bytes; at least %d are needed", len,
                   DT_AUTH_MIN_SECRET);
  if (len > sizeof(sec->secret))
    return dt__err(DT_EINVAL, "the shared secret is %zu bytes; at most %zu are used", len,
                   sizeof(sec->secret));
  memcpy(sec->secret, secret, len);
  sec->secret_len = len;
  sec->auth = true;
  return 0;
}

int dt__sec_load_auth_file(dt_sec *sec, const char *path) {
  unsigned char buf[sizeof(sec->secret)];
  size_t n;
  if (dt__secret_file_read(path, buf, sizeof(buf), &n) != 0) return DT_EINVAL;
  if (dt__sec_set_secret(sec, buf, n) != 0) {
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    return dt__err(DT_EINVAL, "auth file '%s': %s", path, msg);
  }
  return 0;
}

int dt__sec_random(void *out, size_t len) {
  return RAND_bytes(out, (int)len) == 1 ? 0 : dt__err(DT_EIO, "no random bytes from OpenSSL");
}

void dt__sec_proof(const dt_sec *sec, const char *label, const uint8_t *n1, const uint8_t *n2,
                   uint8_t out[DT_AUTH_MAC]) {
  uint8_t msg[16 + 2 * DT_AUTH_NONCE];
  size_t ll = strlen(label);
  memcpy(msg, label, ll);
  memcpy(msg + ll, n1, DT_AUTH_NONCE);
  memcpy(msg + ll + DT_AUTH_NONCE, n2, DT_AUTH_NONCE);
  unsigned int len = DT_AUTH_MAC;
  HMAC(EVP_sha256(), sec->secret, (int)sec->secret_len, msg, ll + 2 * DT_AUTH_NONCE, out, &len);
}

void dt__sec_dashboard_token(const dt_sec *sec, char hex[65]) {
  static const char label[] = "dtask-dashboard-token";
  uint8_t mac[32];
  unsigned int len = sizeof(mac);
  HMAC(EVP_sha256(), sec->secret, (int)sec->secret_len, (const uint8_t *)label, sizeof(label) - 1,
       mac, &len);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
}

bool dt__sec_equal(const uint8_t *a, const uint8_t *b, size_t n) {
  return CRYPTO_memcmp(a, b, n) == 0;
}

int dt__sec_cli(dt_sec_args *a, int argc, char **argv, int *i) {
  const char *o = argv[*i];
  const char **slot = strcmp(o, "--auth-file") == 0     ? &a->auth_file
                      : strcmp(o, "--tls-ca-file") == 0 ? &a->tls_ca
                      : strcmp(o, "--tls-cert") == 0    ? &a->tls_cert
                      : strcmp(o, "--tls-key") == 0     ? &a->tls_key
                                                        : NULL;
  if (!slot) return 0;
  if (*i + 1 >= argc) return dt__err(DT_EINVAL, "%s needs a file name", o), -1;
  *slot = argv[++*i];
  return 1;
}

int dt__sec_from_args(dt_sec *sec, const dt_sec_args *a) {
  memset(sec, 0, sizeof(*sec));
  const char *af = a->auth_file ? a->auth_file : getenv("DTASK_AUTH_FILE");
  if (af && *af && dt__sec_load_auth_file(sec, af) != 0) return DT_EINVAL;
  if (a->tls_cert || a->tls_key || a->tls_ca)
    if (dt__tls_setup(sec, a->tls_ca, a->tls_cert, a->tls_key) != 0) return DT_EINVAL;
  return 0;
}

/* ---------------------------------------------------------------- registry */

typedef struct sec_entry {
  char address[256]; /* without a scheme */
  dt_sec sec;
  struct sec_entry *next;
} sec_entry;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static sec_entry *reg_head;

static const char *no_scheme(const char *a) {
  return strncmp(a, "tcp://", 6) == 0 || strncmp(a, "tls://", 6) == 0 ? a + 6 : a;
}

/* ref: another reference to sec's TLS contexts */
static void ref(const dt_sec *sec) {
  if (sec->tls_server) SSL_CTX_up_ref(sec->tls_server);
  if (sec->tls_client) SSL_CTX_up_ref(sec->tls_client);
}

/* take: unlinks address's entry (locked), or NULL */
static sec_entry *take(const char *a) {
  for (sec_entry **pp = &reg_head; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->address, a) == 0) {
      sec_entry *e = *pp;
      *pp = e->next;
      return e;
    }
  return NULL;
}

int dt__sec_register(const char *address, const dt_sec *sec) {
  const char *a = address ? no_scheme(address) : "";
  if (!*a || strlen(a) >= sizeof(((sec_entry *)0)->address))
    return dt__err(DT_EINVAL, "dt__sec_register: bad address '%s'", address ? address : "(null)");
  sec_entry *e = dt__xcalloc(1, sizeof(*e));
  snprintf(e->address, sizeof(e->address), "%s", a);
  e->sec = *sec;
  ref(&e->sec);
  pthread_mutex_lock(&reg_lock);
  sec_entry *old = take(a);
  e->next = reg_head;
  reg_head = e;
  pthread_mutex_unlock(&reg_lock);
  if (old) {
    dt__tls_free(&old->sec);
    free(old);
  }
  return 0;
}

void dt__sec_unregister(const char *address) {
  if (!address) return;
  pthread_mutex_lock(&reg_lock);
  sec_entry *e = take(no_scheme(address));
  pthread_mutex_unlock(&reg_lock);
  if (e) {
    dt__tls_free(&e->sec);
    OPENSSL_cleanse(e->sec.secret, sizeof(e->sec.secret));
    free(e);
  }
}

bool dt__sec_lookup(const char *address, dt_sec *out) {
  if (!address) return false;
  const char *a = no_scheme(address);
  bool found = false;
  pthread_mutex_lock(&reg_lock);
  for (sec_entry *e = reg_head; e && !found; e = e->next)
    if (strcmp(e->address, a) == 0) {
      *out = e->sec;
      ref(out);
      found = true;
    }
  pthread_mutex_unlock(&reg_lock);
  return found;
}
