/* badinput_test.c -- every error a user (or a hostile peer) can cause gives
 * an error code and a message naming the thing; nothing hangs or crashes,
 * and the daemons keep serving everyone else. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/client.h"
#include "testutil.h"

DT_TASK(inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

DT_TASK(sleepy) {
  int64_t ms;
  if (dt_task_arg_int(task, 0, &ms)) return NULL;
  usleep((useconds_t)ms * 1000);
  return dt_int(ms);
}

#define OK(x) do { int rc_ = (x); if (rc_) fail_msg("%s: %s", #x, dt_last_error()); } while (0)

static void test_connect_to_nothing(void **state) {
  (void)state;
  dt_client *c = NULL;
  double t0 = tu_now();
  int rc = dt_client_connect(&(dt_client_opts){.address = "127.0.0.1:1", .timeout_ms = 300}, &c);
  double dt = tu_now() - t0;
  assert_int_equal(rc, DT_ECONNECT);
  assert_null(c);
  assert_non_null(strstr(dt_last_error(), "127.0.0.1:1"));
  assert_non_null(strstr(dt_last_error(), "refused"));
  assert_true(dt < 3.0); /* bounded by the timeout, not a hang */
}

static void test_bad_addresses(void **state) {
  (void)state;
  dt_client *c = NULL;
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = "not an address"}, &c), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "not an address"));
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = "127.0.0.1:99999"}, &c), DT_EINVAL);
  unsetenv("DTASK_SCHEDULER_ADDRESS");
  assert_int_equal(dt_client_connect(&(dt_client_opts){0}, &c), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "DTASK_SCHEDULER_ADDRESS"));
  assert_int_equal(dt_client_connect(&(dt_client_opts){.scheduler_file = "/nonexistent/sched.json"}, &c),
                   DT_ENOTFOUND);
  assert_non_null(strstr(dt_last_error(), "/nonexistent/sched.json"));
  assert_null(c);
  dt_local_cluster *lc;
  assert_int_equal(dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = -1}, &lc), DT_EINVAL);
  assert_int_equal(dt_local_cluster_start(&(dt_local_cluster_opts){.log_level = "loud"}, &lc), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "loud"));
}

static dt_local_cluster *lc;

static int cluster_setup(void **state) {
  (void)state;
  if (dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 1, .threads_per_worker = 2}, &lc)) {
    fprintf(stderr, "%s\n", dt_last_error());
    return -1;
  }
  return 0;
}
/* with no shared secret, hostile bytes reach the framing and the decoder
 * (with one, the handshake drops them first: security_test) */
static int open_cluster_setup(void **state) {
  (void)state;
  if (dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 1, .threads_per_worker = 2,
                                                      .no_auth = true},
                             &lc)) {
    fprintf(stderr, "%s\n", dt_last_error());
    return -1;
  }
  return 0;
}
static int cluster_teardown(void **state) {
  (void)state;
  dt_local_cluster_close(lc);
  lc = NULL;
  return 0;
}

static dt_client *connect_lc(void) {
  dt_client *c = NULL;
  OK(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c));
  return c;
}

static void test_future_from_closed_client(void **state) {
  (void)state;
  dt_client *c1 = connect_lc(), *c2 = connect_lc();
  dt_future *f, *g;
  OK(dt_client_submit(c1, "inc", dt_list_of(1, dt_int(1)), NULL, NULL, &f));
  dt_value *v;
  OK(dt_future_result(f, 5000, &v));
  dt_value_free(v);
  dt_client_close(c1);
  /* the handle survives its client; using it says why it cannot work */
  assert_int_equal(dt_client_submit(c2, "inc", dt_list_of(1, dt_future_value(f)), NULL, NULL, &g),
                   DT_ECLOSED);
  assert_non_null(strstr(dt_last_error(), dt_future_key(f)));
  assert_int_equal(dt_future_cancel(f), DT_ECLOSED);
  /* its cached value is still readable */
  OK(dt_future_result(f, 100, &v));
  assert_int_equal(dt_value_int(v), 2);
  dt_value_free(v);
  dt_future_release(f);
  /* a pending future of a closed client is cancelled, not left hanging */
  dt_client *c3 = connect_lc();
  OK(dt_client_submit(c3, "sleepy", dt_list_of(1, dt_int(300)), NULL, NULL, &f));
  dt_client_close(c3);
  assert_int_equal(dt_future_status_get(f), DT_CANCELLED);
  assert_int_equal(dt_future_result(f, 100, &v), DT_ECLOSED);
  dt_future_release(f);
  assert_int_equal(tu_wait_tasks(c2, 0, 10), 0); /* the scheduler released both */
  dt_client_close(c2);
}

/* send bytes and expect the peer to close the connection (bounded wait) */
static void expect_dropped(const char *addr, const void *bytes, size_t n) {
  int fd = tu_connect(addr, 5);
  assert_true(fd >= 0);
  assert_int_equal(send(fd, bytes, n, MSG_NOSIGNAL), (ssize_t)n);
  char buf[256];
  ssize_t r;
  while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {}
  assert_int_equal(r, 0); /* orderly close by the daemon, not our timeout */
  close(fd);
}

static void hostile_batches(const char *addr) {
  uint32_t oversized[2] = {0x7FFFFFFF, 0};
  expect_dropped(addr, oversized, 8);
  uint32_t frames[2] = {4, 0x00FFFFFF};
  expect_dropped(addr, frames, 8);
  unsigned char garbage[9] = {1, 0, 0, 0, 0, 0, 0, 0, 0xc1};
  expect_dropped(addr, garbage, 9);
  /* a deep nest: 200 fixarrays */
  unsigned char deep[8 + 201];
  uint32_t len = 201;
  memcpy(deep, &len, 4);
  memset(deep + 4, 0, 4);
  memset(deep + 8, 0x91, 200);
  deep[208] = 0x01;
  expect_dropped(addr, deep, sizeof(deep));
  /* well-formed msgpack, wrong message: COMPUTE_TASK with no fields */
  unsigned char wrong[8 + 2] = {2, 0, 0, 0, 0, 0, 0, 0, 0x91, DT_OP_COMPUTE_TASK};
  expect_dropped(addr, wrong, sizeof(wrong));
  /* a 4 GiB frame announced by a peer that has not said hello */
  unsigned char big[16] = {4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
  expect_dropped(addr, big, sizeof(big));
  uint32_t big_body[2] = {0xFFFFFFFF, 0};
  expect_dropped(addr, big_body, 8);
  /* an array claiming 4 billion elements */
  unsigned char huge[8 + 6] = {6, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
  expect_dropped(addr, huge, sizeof(huge));
}

static void test_hostile_bytes_to_scheduler_and_worker(void **state) {
  (void)state;
  dt_client *c = connect_lc();
  dt_future *f;
  OK(dt_client_submit(c, "inc", dt_list_of(1, dt_int(1)), NULL, NULL, &f));
  dt_value *v;
  OK(dt_future_result(f, 5000, &v));
  dt_value_free(v);
  char worker_addr[128];
  snprintf(worker_addr, sizeof(worker_addr), "%s", f->worker);
  hostile_batches(dt_local_cluster_address(lc));
  hostile_batches(worker_addr);
  /* a stranger sending a worker's message before saying hello */
  unsigned char early[8 + 6] = {6, 0, 0, 0, 0, 0, 0, 0, 0x95, DT_OP_HEARTBEAT, 0, 0, 0, 0};
  expect_dropped(dt_local_cluster_address(lc), early, sizeof(early));
  /* everyone else is still served, and the old result is still there */
  dt_future *g;
  OK(dt_client_submit(c, "inc", dt_list_of(1, dt_future_value(f)), NULL, NULL, &g));
  OK(dt_future_result(g, 5000, &v));
  assert_int_equal(dt_value_int(v), 3);
  dt_value_free(v);
  dt_cluster_info info;
  OK(dt_client_cluster_info(c, 5000, &info));
  assert_int_equal(info.n_workers, 1);
  dt_future_release(f);
  dt_future_release(g);
  dt_client_close(c);
}

static void test_scheduler_goes_away(void **state) {
  (void)state;
  dt_client *c = connect_lc();
  dt_future *f;
  OK(dt_client_submit(c, "sleepy", dt_list_of(1, dt_int(5000)), NULL, NULL, &f));
  usleep(100000);
  kill(dt_local_cluster_scheduler_pid(lc), SIGKILL);
  dt_value *v;
  double t0 = tu_now();
  assert_int_equal(dt_future_result(f, 20000, &v), DT_ECONNLOST);
  assert_true(tu_now() - t0 < 3.0);
  assert_non_null(strstr(dt_last_error(), dt_local_cluster_address(lc)));
  assert_int_equal(dt_future_status_get(f), DT_LOST);
  dt_future *g;
  assert_int_equal(dt_client_submit(c, "inc", dt_list_of(1, dt_int(1)), NULL, NULL, &g), DT_ECONNLOST);
  assert_int_equal(dt_client_cluster_info(c, 1000, &(dt_cluster_info){0}), DT_ECONNLOST);
  /* the worker (under its nanny) keeps trying to reconnect, with backoff,
   * until the cluster is closed; cli_test checks --death-timeout */
  pid_t w = dt_local_cluster_worker_pid(lc, 0);
  usleep(500000);
  assert_true(tu_alive(w));
  dt_future_release(f);
  dt_client_close(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_connect_to_nothing),
      cmocka_unit_test(test_bad_addresses),
      cmocka_unit_test_setup_teardown(test_future_from_closed_client, cluster_setup, cluster_teardown),
      cmocka_unit_test_setup_teardown(test_hostile_bytes_to_scheduler_and_worker, open_cluster_setup,
                                      cluster_teardown),
      cmocka_unit_test_setup_teardown(test_scheduler_goes_away, cluster_setup, cluster_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
