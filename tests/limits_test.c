/* limits_test.c -- what peers that connect to a daemon may hold (issue 19,
 * docs/reliability.md "Limits on peers"), against a scheduler and a worker
 * started with the dtask command:
 * - a batch header announcing a 4 GiB frame, then one byte of it, after a
 *   proper HELLO_CLIENT: the scheduler's RSS stays small (memory is
 *   committed as a frame's bytes arrive) and a real client is served;
 * - a stranger that never says hello goes at the hello deadline, with no
 *   shared secret configured too;
 * - with RLIMIT_NOFILE 1024, 1,100 idle attacking connections (re-opened as
 *   they drop) do not lock a real client out;
 * - the dashboard listens on the scheduler's host (::1, localhost), checked
 *   in /proc/net/tcp{,6}. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/client.h"
#include "proto/msg.h"
#include "testutil.h"

#define OK(x) do { int rc_ = (x); if (rc_) fail_msg("%s: %s", #x, dt_last_error()); } while (0)

static char bin[1024], preload[1024], dir[256];

/* a scheduler with extra options (NULL-terminated) and RLIMIT_NOFILE
 * nofile (0: inherited), and a worker unless with_worker is false; their
 * logs in dir */
static void start(tu_cluster *cl, const char *tag, const char *const *extra, rlim_t nofile,
                  bool with_worker) {
  tu_cluster_opts o = {.bin = bin, .preload = preload, .dir = dir, .tag = tag, .log_level = "info",
                       .logs = true, .n_workers = with_worker ? 1 : 0, .nthreads = 2,
                       .sched_args = extra, .sched_nofile = nofile};
  assert_int_equal(tu_cluster_start(cl, &o), 0);
}

/* the resident memory of pid in KiB (VmRSS counts shared memory mapped) */
static long rss_kib(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  char *s = tu_read_file(path);
  if (!s) return -1;
  char *p = strstr(s, "VmRSS:");
  long v = p ? atol(p + 6) : -1;
  free(s);
  return v;
}

/* a real client runs a task and gets the right answer */
static void real_client_works(const char *addr, double *connect_s) {
  dt_client *c = NULL;
  double t0 = tu_now();
  OK(dt_client_connect(&(dt_client_opts){.address = addr, .timeout_ms = 20000}, &c));
  if (connect_s) *connect_s = tu_now() - t0;
  OK(dt_client_wait_for_workers(c, 1, 20000));
  dt_future *f;
  OK(dt_client_submit(c, "square", dt_list_of(1, dt_int(12)), NULL, NULL, &f));
  dt_value *v;
  OK(dt_future_result(f, 20000, &v));
  assert_int_equal(dt_value_int(v), 144);
  dt_value_free(v);
  dt_future_release(f);
  dt_client_close(c);
}

static bool closed_by_peer(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  char b[64];
  ssize_t r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
  return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* ---------------------------------------------------------------- 4 GiB frame */

static int hello_and_big_frame(const char *addr) {
  int fd = tu_connect(addr, 5);
  assert_true(fd >= 0);
  /* HELLO_CLIENT: [op, version, name] */
  unsigned char hello[8 + 8] = {8, 0, 0, 0, 0, 0, 0, 0, 0x93, DT_OP_HELLO_CLIENT, DT_PROTO_VERSION,
                                0xa4, 'e', 'v', 'i', 'l'};
  assert_int_equal(send(fd, hello, sizeof(hello), MSG_NOSIGNAL), (ssize_t)sizeof(hello));
  /* a batch of a 1-byte body and one frame of 4 GiB; the body; one byte */
  unsigned char big[8 + 8 + 1 + 1] = {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xc0, 'x'};
  assert_int_equal(send(fd, big, sizeof(big), MSG_NOSIGNAL), (ssize_t)sizeof(big));
  return fd;
}

static void test_big_frame_header(void **state) {
  (void)state;
  /* the client cap raised, so that the frame is accepted and read lazily */
  tu_cluster cl;
  start(&cl, "big", (const char *[]){"--no-dashboard", "--max-client-batch", "8GiB",
                                     "--max-in-flight", "8GiB", NULL},
        0, true);
  real_client_works(cl.addr, NULL);
  int fds[3];
  for (int i = 0; i < 3; i++) fds[i] = hello_and_big_frame(cl.addr);
  usleep(500000);
  long rss = rss_kib(cl.sched);
  fprintf(stderr, "scheduler RSS with 3 x (4 GiB header + 1 byte) held open: %ld KiB\n", rss);
  assert_true(rss > 0 && rss < 64 * 1024);
  for (int i = 0; i < 3; i++) assert_false(closed_by_peer(fds[i])); /* still reading it */
  real_client_works(cl.addr, NULL);
  assert_true(rss_kib(cl.sched) < 64 * 1024);
  for (int i = 0; i < 3; i++) close(fds[i]);
  tu_cluster_stop(&cl);

  /* the default caps: a client may not send a 4 GiB batch at all */
  start(&cl, "bigcap", (const char *[]){"--no-dashboard", NULL}, 0, true);
  int fd = hello_and_big_frame(cl.addr);
  char b[64];
  ssize_t r;
  while ((r = recv(fd, b, sizeof(b), 0)) > 0) {}
  assert_true(r == 0 || (r < 0 && errno == ECONNRESET)); /* closed, not our 5 s timeout */
  close(fd);
  rss = rss_kib(cl.sched);
  fprintf(stderr, "scheduler RSS after a refused 4 GiB batch: %ld KiB\n", rss);
  assert_true(rss > 0 && rss < 64 * 1024);
  real_client_works(cl.addr, NULL);
  tu_cluster_stop(&cl);
  char *log = tu_read_file(cl.sched_log);
  assert_non_null(strstr(log, "over this peer's limit"));
  free(log);
}

/* the bytes of incomplete batches from all peers together are bounded */
static void test_in_flight_bound(void **state) {
  (void)state;
  tu_cluster cl;
  start(&cl, "inflight", (const char *[]){"--no-dashboard", "--max-in-flight", "1MiB", NULL}, 0,
        true);
  int fd = tu_connect(cl.addr, 5);
  assert_true(fd >= 0);
  unsigned char hello[8 + 8] = {8, 0, 0, 0, 0, 0, 0, 0, 0x93, DT_OP_HELLO_CLIENT, DT_PROTO_VERSION,
                                0xa4, 'e', 'v', 'i', 'l'};
  assert_int_equal(send(fd, hello, sizeof(hello), MSG_NOSIGNAL), (ssize_t)sizeof(hello));
  /* an 8 MiB frame (under the client cap), of which 2 MiB are sent */
  unsigned char hdr[8 + 8 + 1] = {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0xc0};
  assert_int_equal(send(fd, hdr, sizeof(hdr), MSG_NOSIGNAL), (ssize_t)sizeof(hdr));
  static char chunk[2 << 20];
  ssize_t sent = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);
  assert_true(sent > (1 << 20) || sent < 0); /* closed while sending is fine too */
  char b[64];
  ssize_t r;
  while ((r = recv(fd, b, sizeof(b), 0)) > 0) {}
  assert_true(r == 0 || (r < 0 && errno == ECONNRESET)); /* closed, not our 5 s timeout */
  close(fd);
  real_client_works(cl.addr, NULL);
  tu_cluster_stop(&cl);
  char *log = tu_read_file(cl.sched_log);
  assert_non_null(strstr(log, "too many bytes of incomplete batches"));
  free(log);
}

/* ---------------------------------------------------------------- hello deadline */

static void test_stranger_deadline(void **state) {
  (void)state;
  tu_cluster cl;
  start(&cl, "silent", (const char *[]){"--no-dashboard", NULL}, 0, false);
  int fd = tu_connect(cl.addr, 20);
  assert_true(fd >= 0);
  double t0 = tu_now();
  char b[64];
  ssize_t r;
  while ((r = recv(fd, b, sizeof(b), 0)) > 0) {}
  assert_true(r == 0 || (r < 0 && errno == ECONNRESET)); /* dropped, not our 20 s timeout */
  fprintf(stderr, "silent stranger dropped after %.1f s\n", tu_now() - t0);
  close(fd);
  tu_cluster_stop(&cl);
  char *log = tu_read_file(cl.sched_log);
  assert_non_null(strstr(log, "no hello within"));
  free(log);
}

/* ---------------------------------------------------------------- descriptors */

enum { NATTACK = 1100 };
typedef struct {
  const char *addr;
  atomic_int stop;                 /* the main thread says when */
  atomic_int open_now, opened, max_open; /* the attacker's counts */
} attack;

/* a connection from 127.0.0.2 (another loopback address than the client's) */
static int attack_connect(const char *addr) {
  char host[64];
  int port;
  if (sscanf(addr, "%63[^:]:%d", host, &port) != 2) return -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in src = {0}, sa = {0};
  src.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.2", &src.sin_addr);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, host, &sa.sin_addr);
  if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
      connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void *attacker(void *arg) {
  attack *a = arg;
  static int fds[NATTACK];
  for (int i = 0; i < NATTACK; i++) fds[i] = -1;
  double end = tu_now() + 30; /* bounded, whatever happens */
  while (!a->stop && tu_now() < end) {
    int open_now = 0;
    for (int i = 0; i < NATTACK && !a->stop; i++) {
      if (fds[i] >= 0 && closed_by_peer(fds[i])) {
        close(fds[i]);
        fds[i] = -1;
      }
      if (fds[i] < 0 && (fds[i] = attack_connect(a->addr)) >= 0) a->opened++;
      if (fds[i] >= 0) open_now++;
    }
    a->open_now = open_now;
    usleep(20000);
  }
  /* how many the scheduler still holds: those it has not closed */
  usleep(200000);
  int held = 0;
  for (int i = 0; i < NATTACK; i++)
    if (fds[i] >= 0) {
      if (!closed_by_peer(fds[i])) held++;
      close(fds[i]);
    }
  a->max_open = held;
  return NULL;
}

static void test_descriptor_exhaustion(void **state) {
  (void)state;
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_max < NATTACK + 200) {
    fprintf(stderr, "skipped: the hard descriptor limit (%llu) is too low for the attack\n",
            (unsigned long long)rl.rlim_max);
    skip();
  }
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  tu_cluster cl;
  start(&cl, "fds", (const char *[]){"--no-dashboard", NULL}, 1024, true);
  real_client_works(cl.addr, NULL);
  attack a = {.addr = cl.addr};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, attacker, &a), 0);
  for (int i = 0; i < 500 && a.opened < NATTACK; i++) usleep(10000);
  usleep(500000); /* the attacker re-opens what was dropped */
  long rss_attacked = rss_kib(cl.sched);
  double connect_s = -1;
  real_client_works(cl.addr, &connect_s);
  int opened = a.opened;
  a.stop = 1;
  pthread_join(th, NULL);
  fprintf(stderr,
          "attack: %d connections opened, %d held by the scheduler at the end; a real client "
          "connected in %.3f s and ran a task; scheduler RSS under the attack %ld KiB\n",
          opened, a.max_open, connect_s, rss_attacked);
  assert_true(opened >= NATTACK);
  assert_true(a.max_open <= 512); /* strangers: at most half the descriptor limit */
  /* a stranger holds no read buffer (one per loop): 512 of them cost little
   * (a 64 KiB buffer each once cost ~180 MiB under TSan and ran it out of
   * mappings) */
  assert_true(rss_attacked > 0 && rss_attacked < 128 * 1024);
  real_client_works(cl.addr, NULL);
  tu_cluster_stop(&cl);
  char *log = tu_read_file(cl.sched_log);
  assert_non_null(strstr(log, "refusing connection from 127.0.0.2"));
  assert_non_null(strstr(log, "descriptor limit 1024"));
  assert_non_null(strstr(log, "at most 512 connections that have not said hello"));
  free(log);
}

/* a client refused before the handshake is told so, not "wrong secret" */
static void test_refused_message(void **state) {
  (void)state;
  char auth[300];
  snprintf(auth, sizeof(auth), "%s/secret", dir);
  FILE *f = fopen(auth, "w");
  assert_non_null(f);
  fputs("a secret of sufficient length 123\n", f);
  fclose(f);
  chmod(auth, 0600);
  tu_cluster cl;
  start(&cl, "refused", (const char *[]){"--no-dashboard", "--auth-file", auth, "--max-strangers",
                                         "1", NULL},
        0, false);
  /* holds the only place for a stranger: it is younger than the grace
   * (1 s) during the client's 500 ms, so it is not dropped for room */
  int fd = tu_connect(cl.addr, 5);
  assert_true(fd >= 0);
  dt_client *c = NULL;
  int rc = dt_client_connect(&(dt_client_opts){.address = cl.addr, .auth_file = auth,
                                                .timeout_ms = 500},
                             &c);
  assert_int_not_equal(rc, 0);
  fprintf(stderr, "refused client: %s\n", dt_last_error());
  assert_null(strstr(dt_last_error(), "wrong or missing shared secret"));
  assert_non_null(strstr(dt_last_error(), "closed the connection before the handshake"));
  /* once it is old, a newcomer makes it go */
  usleep(1100000);
  OK(dt_client_connect(&(dt_client_opts){.address = cl.addr, .auth_file = auth, .timeout_ms = 5000},
                       &c));
  char b[256];
  ssize_t r;
  double t0 = tu_now();
  while ((r = recv(fd, b, sizeof(b), 0)) > 0) {} /* the challenge, then the close */
  assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
  assert_true(tu_now() - t0 < 5); /* dropped, not our receive timeout */
  close(fd);
  dt_client_close(c);
  tu_cluster_stop(&cl);
}

/* ---------------------------------------------------------------- dashboard */

/* the local address of the socket listening on port in /proc/net/tcp{,6}:
 * "0100007F" (127.0.0.1), "00000000000000000000000001000000" (::1),
 * "00000000" (every interface)...; "" if none */
static void listening_on(int port, char *out, size_t cap) {
  out[0] = '\0';
  const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  for (int k = 0; k < 2; k++) {
    char *s = tu_read_file(files[k]);
    if (!s) continue;
    char *line = strchr(s, '\n');
    while (line && *++line) {
      char local[80];
      unsigned p, st;
      if (sscanf(line, " %*d: %79[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", local, &p, &st) == 3 &&
          (int)p == port && st == 0x0A /* LISTEN */) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s", n ? "," : "", local);
      }
      line = strchr(line, '\n');
    }
    free(s);
  }
}

static void dashboard_on(const char *host, const char *const *ok_addrs) {
  tu_cluster cl;
  start(&cl, "dash", (const char *[]){"--host", host, "--dashboard-address", ":0", NULL}, 0, false);
  assert_true(cl.dash[0]);
  const char *colon = strrchr(cl.dash, ':');
  assert_non_null(colon);
  int port = atoi(colon + 1);
  char where[512];
  listening_on(port, where, sizeof(where));
  fprintf(stderr, "--host %s: dashboard %s, listening socket(s) %s\n", host, cl.dash, where);
  assert_true(where[0]);
  bool ok = false;
  for (int i = 0; ok_addrs[i]; i++) ok = ok || strcmp(where, ok_addrs[i]) == 0;
  if (!ok) fail_msg("dashboard for --host %s listens on %s", host, where);
  tu_cluster_stop(&cl);
  char *log = tu_read_file(cl.sched_log);
  assert_non_null(strstr(log, "dashboard listening on"));
  assert_null(strstr(log, "every interface"));
  free(log);
}

static void test_dashboard_binds_scheduler_host(void **state) {
  (void)state;
  const char *loop6[] = {"00000000000000000000000001000000", NULL};
  const char *loop[] = {"0100007F", "00000000000000000000000001000000", NULL};
  if (access("/proc/net/tcp6", R_OK) == 0) dashboard_on("::1", loop6);
  dashboard_on("localhost", loop);
  dashboard_on("127.0.0.1", loop);
}

/* with a shared secret the dashboard asks for its token (but /health) */
static int http_code(const char *url, const char *path, const char *header) {
  int fd = tu_connect(url + 7, 5);
  assert_true(fd >= 0);
  char req[512];
  int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n%s\r\n", path,
                   header ? header : "");
  assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
  char buf[256] = "";
  ssize_t r = recv(fd, buf, sizeof(buf) - 1, MSG_WAITALL);
  close(fd);
  return r > 12 && strncmp(buf, "HTTP/1.", 7) == 0 ? atoi(buf + 9) : -1;
}

static void test_dashboard_token(void **state) {
  (void)state;
  char auth[300], cmd[1600];
  snprintf(auth, sizeof(auth), "%s/secret-dash", dir);
  FILE *f = fopen(auth, "w");
  assert_non_null(f);
  fputs("the dashboard secret of some length\n", f);
  fclose(f);
  chmod(auth, 0600);
  snprintf(cmd, sizeof(cmd), "%s scheduler --auth-file %s --print-dashboard-token", bin, auth);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char tok[128] = "";
  assert_non_null(fgets(tok, sizeof(tok), p));
  pclose(p);
  tok[strcspn(tok, "\n")] = '\0';
  assert_int_equal(strlen(tok), 64);
  tu_cluster cl;
  start(&cl, "dashtok", (const char *[]){"--auth-file", auth, "--dashboard-address", ":0", NULL}, 0,
        false);
  assert_true(cl.dash[0]);
  usleep(1200000); /* the first snapshot */
  char path[256], hdr[256];
  assert_int_equal(http_code(cl.dash, "/health", NULL), 200);
  assert_int_equal(http_code(cl.dash, "/api/v1/summary", NULL), 401);
  assert_int_equal(http_code(cl.dash, "/metrics", NULL), 401);
  assert_int_equal(http_code(cl.dash, "/", NULL), 401);
  assert_int_equal(http_code(cl.dash, "/metrics", "Authorization: Bearer 0123\r\n"), 401);
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", tok);
  assert_int_equal(http_code(cl.dash, "/metrics", hdr), 200);
  snprintf(hdr, sizeof(hdr), "Cookie: dtask_token=%s\r\n", tok);
  assert_int_equal(http_code(cl.dash, "/api/v1/summary", hdr), 200);
  snprintf(path, sizeof(path), "/api/v1/workers?token=%s", tok);
  char *body = tu_http_get(cl.dash, path);
  assert_non_null(body);
  free(body);
  tu_cluster_stop(&cl);
}

int main(void) {
  if (tu_dtask_env(bin, preload, dir, "/tmp/dtask-lim-XXXXXX") != 0) return 1;
  signal(SIGPIPE, SIG_IGN);
  atexit(tu_kill_all); /* every process started here is stopped by PID */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_big_frame_header),
      cmocka_unit_test(test_in_flight_bound),
      cmocka_unit_test(test_dashboard_binds_scheduler_host),
      cmocka_unit_test(test_dashboard_token),
      cmocka_unit_test(test_refused_message),
      cmocka_unit_test(test_descriptor_exhaustion),
      cmocka_unit_test(test_stranger_deadline),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (tu_remove_dir(dir) != 0) rc = rc ? rc : 1;
  return rc;
}
