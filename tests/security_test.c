/* security_test.c -- the shared secret and TLS, on a scheduler and a worker
 * started with the dtask command (their logs are read back): strangers
 * without the secret, with a wrong secret, with random bytes or a 4 GiB
 * length prefix, and one that says nothing, are each dropped and logged,
 * while a computation beside them finishes correctly. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/client.h"
#include "testutil.h"

#define OK(x) do { int rc_ = (x); if (rc_) fail_msg("%s: %s", #x, dt_last_error()); } while (0)

static char bin[1024], preload[1024], dir[256];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  chmod(path, 0600);
}

/* start a scheduler and one worker with extra options (NULL-terminated),
 * their logs in dir */
static void start(tu_cluster *cl, const char *tag, const char *const *extra) {
  tu_cluster_opts o = {.bin = bin, .preload = preload, .dir = dir, .tag = tag, .log_level = "info",
                       .logs = true, .n_workers = 1, .nthreads = 2, .sched_args = extra,
                       .worker_args = extra};
  assert_int_equal(tu_cluster_start(cl, &o), 0);
}

/* send bytes (maybe none) and expect the daemon to close (bounded wait) */
static void expect_dropped(const char *addr, const void *bytes, size_t n, int wait_s) {
  int fd = tu_connect(addr, wait_s);
  assert_true(fd >= 0);
  if (n) assert_int_equal(send(fd, bytes, n, MSG_NOSIGNAL), (ssize_t)n);
  char buf[256];
  ssize_t r;
  double t0 = tu_now();
  while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {}
  assert_true(r == 0 || (r < 0 && errno == ECONNRESET)); /* closed by the daemon, not our timeout */
  assert_true(tu_now() - t0 < wait_s);
  close(fd);
}

static void strangers(const char *addr, bool silent_one) {
  /* a client that does not know about secrets: its HELLO batch */
  unsigned char hello[8 + 9] = {9, 0, 0, 0, 0, 0, 0, 0, 0x93, DT_OP_HELLO_CLIENT, 1, 0xa5,
                                'e', 'v', 'i', 'l', '!'};
  expect_dropped(addr, hello, sizeof(hello), 5);
  /* random bytes */
  unsigned char junk[4096];
  unsigned seed = 12345;
  for (size_t i = 0; i < sizeof(junk); i++) junk[i] = (unsigned char)rand_r(&seed);
  expect_dropped(addr, junk, sizeof(junk), 5);
  /* a 4 GiB length prefix: a batch header, and a frame length of 4 GiB */
  unsigned char big[16] = {0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
  expect_dropped(addr, big, sizeof(big), 5);
  /* the right magic, a made-up proof */
  unsigned char fake[68] = {'D', 'T', 'A', '1'};
  expect_dropped(addr, fake, sizeof(fake), 5);
  /* one that connects and says nothing: dropped at the handshake deadline */
  if (silent_one) expect_dropped(addr, NULL, 0, 15);
}

static void test_strangers_are_dropped(void **state) {
  (void)state;
  char auth[300], wrong[300];
  snprintf(auth, sizeof(auth), "%s/secret", dir);
  snprintf(wrong, sizeof(wrong), "%s/wrong", dir);
  write_file(auth, "correct horse battery staple 42\n");
  write_file(wrong, "incorrect horse battery staple 7\n");
  tu_cluster cl;
  start(&cl, "auth", (const char *[]){"--auth-file", auth, NULL});
  dt_client *c;
  OK(dt_client_connect(&(dt_client_opts){.address = cl.addr, .auth_file = auth}, &c));
  OK(dt_client_wait_for_workers(c, 1, 10000));
  /* a computation runs while the strangers knock */
  enum { N = 3000 };
  static dt_value *args[N];
  static dt_future *fs[N];
  static dt_value *vs[N];
  for (int i = 0; i < N; i++) args[i] = dt_list_of(1, dt_int(i));
  OK(dt_client_map(c, "square", args, N, &(dt_submit_opts){.pure = DT_NO}, fs));
  dt_future *big;
  OK(dt_client_submit(c, "repeat", dt_list_of(2, dt_str("0123456789abcdef"), dt_int(65536)), NULL,
                      NULL, &big));
  dt_client *bad = NULL;
  double t0 = tu_now();
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = cl.addr, .auth_file = wrong}, &bad),
                   DT_EAUTH);
  assert_true(tu_now() - t0 < 5);
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = cl.addr, .auth_file = "/nonexistent"},
                                     &bad),
                   DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "/nonexistent"));
  strangers(cl.addr, true);
  /* the worker's own listener (for peers) is guarded the same way */
  dt_value *v;
  OK(dt_future_result(big, 20000, &v)); /* 1 MiB, fetched from the worker */
  size_t len;
  const char *p = dt_value_bytes(v, &len);
  assert_int_equal(len, 16 * 65536);
  assert_memory_equal(p + 16 * 4242, "0123456789abcdef", 16);
  dt_value_free(v);
  char worker_addr[128];
  snprintf(worker_addr, sizeof(worker_addr), "%s", big->worker);
  strangers(worker_addr, false);
  OK(dt_client_gather(c, fs, N, 30000, vs));
  for (int i = 0; i < N; i++) {
    assert_int_equal(dt_value_int(vs[i]), (int64_t)i * i);
    dt_value_free(vs[i]);
    dt_future_release(fs[i]);
  }
  dt_future_release(big);
  dt_cluster_info info;
  OK(dt_client_cluster_info(c, 5000, &info));
  assert_int_equal(info.n_workers, 1);
  assert_int_equal(info.n_clients, 1);
  dt_client_close(c);
  tu_cluster_stop(&cl);
  /* each stranger was dropped, and logged */
  char *log = tu_read_file(cl.sched_log);
  assert_non_null(log);
  int dropped = tu_count(log, "dropping incoming connection");
  fprintf(stderr, "scheduler log: %d connections dropped\n", dropped);
  assert_true(dropped >= 6); /* hello, junk, 4 GiB, fake proof, silent, wrong secret */
  assert_true(tu_count(log, "wrong shared secret") >= 2);
  assert_true(tu_count(log, "no authentication handshake") >= 3);
  assert_int_equal(tu_count(log, "handshake not completed in time"), 1);
  free(log);
  log = tu_read_file(cl.worker_log);
  assert_true(tu_count(log, "dropping incoming connection") >= 4);
  free(log);
}

static void test_tls(void **state) {
  (void)state;
  char cmd[4096];
  /* a CA, and one certificate it signed for the whole cluster */
  snprintf(cmd, sizeof(cmd),
           "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=dtask-test-ca "
           "-keyout ca.key -out ca.pem 2>/dev/null && "
           "openssl req -newkey rsa:2048 -nodes -subj /CN=dtask-node -keyout node.key -out node.csr "
           "2>/dev/null && openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
           "-days 2 -out node.pem 2>/dev/null && "
           "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other -keyout other.key "
           "-out other.pem 2>/dev/null",
           dir);
  assert_int_equal(system(cmd), 0);
  char ca[300], cert[300], key[300], auth[300], ocert[300], okey[300];
  snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
  snprintf(cert, sizeof(cert), "%s/node.pem", dir);
  snprintf(key, sizeof(key), "%s/node.key", dir);
  snprintf(ocert, sizeof(ocert), "%s/other.pem", dir);
  snprintf(okey, sizeof(okey), "%s/other.key", dir);
  snprintf(auth, sizeof(auth), "%s/secret2", dir);
  write_file(auth, "another secret of enough length\n");
  tu_cluster cl;
  start(&cl, "tls",
        (const char *[]){"--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key, "--auth-file",
                         auth, NULL});
  dt_client *c;
  OK(dt_client_connect(&(dt_client_opts){.address = cl.addr, .auth_file = auth, .tls_ca_file = ca,
                                          .tls_cert = cert, .tls_key = key},
                       &c));
  OK(dt_client_wait_for_workers(c, 1, 10000));
  dt_future *f, *big;
  OK(dt_client_submit(c, "square", dt_list_of(1, dt_int(12)), NULL, NULL, &f));
  OK(dt_client_submit(c, "repeat", dt_list_of(2, dt_str("tls!"), dt_int(1 << 20)), NULL, NULL, &big));
  dt_value *v;
  OK(dt_future_result(f, 10000, &v));
  assert_int_equal(dt_value_int(v), 144);
  dt_value_free(v);
  OK(dt_future_result(big, 20000, &v)); /* 4 MiB from the worker, over TLS */
  size_t len;
  const char *p = dt_value_bytes(v, &len);
  assert_int_equal(len, 4u << 20);
  assert_memory_equal(p + (4u << 20) - 4, "tls!", 4);
  dt_value_free(v);
  dt_future_release(f);
  dt_future_release(big);
  /* no TLS at all, or a certificate the CA did not sign: refused */
  dt_client *bad = NULL;
  assert_int_not_equal(dt_client_connect(&(dt_client_opts){.address = cl.addr, .auth_file = auth,
                                                            .timeout_ms = 1500},
                                         &bad),
                       0);
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = cl.addr, .auth_file = auth,
                                                        .tls_ca_file = ca, .tls_cert = ocert,
                                                        .tls_key = okey, .timeout_ms = 3000},
                                     &bad),
                   DT_EAUTH);
  if (!strstr(dt_last_error(), "TLS")) fail_msg("%s", dt_last_error());
  dt_client_close(c);
  tu_cluster_stop(&cl);
  char *log = tu_read_file(cl.sched_log);
  assert_non_null(strstr(log, "connections use TLS"));
  assert_true(tu_count(log, "dropping incoming connection") >= 1);
  free(log);
}

int main(void) {
  if (tu_dtask_env(bin, preload, dir, "/tmp/dtask-sec-XXXXXX") != 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strangers_are_dropped),
      cmocka_unit_test(test_tls),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (tu_remove_dir(dir) != 0) rc = rc ? rc : 1;
  return rc;
}
