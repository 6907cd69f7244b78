/* conn_test.c -- connections over real loopback sockets: batches with many
 * messages and large frames arrive intact and in order; malformed batches
 * close only the connection that sent them. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/net.h"

static struct {
  uv_loop_t loop;
  dt_net net;
  dt_listener lst;
  uv_timer_t guard;
  int got_msgs;
  int64_t sum;
  uint64_t frame_sum;
  size_t frame_len;
  int closed_proto, closed_total;
  bool timed_out;
  int want_msgs, want_closed;
} T;

static void maybe_stop(void) {
  if (T.got_msgs >= T.want_msgs && T.closed_proto >= T.want_closed) uv_stop(&T.loop);
}

static int server_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  (void)c;
  if (op == DT_OP_HEARTBEAT) {
    int64_t v;
    if (nf != 1 || dt__rd_int(r, &v)) return DT_EPROTO;
    T.sum += v;
  } else if (op == DT_OP_DATA) {
    dt_payload p;
    if (dt__rd_payload(r, &p)) return DT_EPROTO;
    dt_value *v;
    assert_int_equal(dt__payload_decode(&p, &v), 0);
    size_t len;
    const unsigned char *b = dt_value_bytes(v, &len);
    T.frame_len = len;
    for (size_t i = 0; i < len; i++) T.frame_sum += b[i];
    dt_value_free(v);
    dt__payload_clear(&p);
  } else {
    return DT_EPROTO;
  }
  T.got_msgs++;
  maybe_stop();
  return 0;
}

static void server_close(dt_conn *c) {
  T.closed_total++;
  if (c->close_status == DT_EPROTO) T.closed_proto++;
  maybe_stop();
}
static const dt_conn_cbs server_cbs = {server_msg, NULL, server_close};
static void on_accept(dt_listener *l, dt_conn *c) {
  (void)l;
  dt__conn_admit(c); /* a known peer: frames allowed */
}

static int client_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  (void)c; (void)op; (void)nf; (void)r;
  return 0;
}
static const dt_conn_cbs client_cbs = {client_msg, NULL, NULL};

static void on_guard(uv_timer_t *t) {
  (void)t;
  T.timed_out = true;
  uv_stop(&T.loop);
}

static void close_all(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h)) return;
  if (h->type == UV_TCP && h != (uv_handle_t *)&T.lst.tcp) dt__conn_close(h->data, false);
  else uv_close(h, NULL);
}

static int setup(void **state) {
  (void)state;
  memset(&T, 0, sizeof(T));
  uv_loop_init(&T.loop);
  dt__net_init(&T.net, &T.loop);
  assert_int_equal(dt__listener_start(&T.lst, &T.net, "127.0.0.1", 0, &server_cbs, on_accept, NULL), 0);
  uv_timer_init(&T.loop, &T.guard);
  uv_timer_start(&T.guard, on_guard, 10000, 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  uv_walk(&T.loop, close_all, NULL);
  uv_run(&T.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&T.loop), 0); /* nothing left open */
  return 0;
}

static void test_batches_and_frames(void **state) {
  (void)state;
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", T.lst.port);
  dt_conn *c;
  assert_int_equal(dt__conn_connect(&T.net, addr, &client_cbs, NULL, &c), 0);
  /* 10,000 small messages and a 32 MiB frame, queued before the connect
   * completes: they go out in batches once it does */
  int64_t want = 0;
  for (int i = 0; i < 10000; i++) {
    dt_wbuf *w = dt__conn_out(c);
    dt__wb_msg(w, DT_OP_HEARTBEAT, 1);
    dt__wb_int(w, i);
    want += i;
  }
  size_t n = 32u << 20;
  unsigned char *big = malloc(n);
  uint64_t bsum = 0;
  for (size_t i = 0; i < n; i++) {
    big[i] = (unsigned char)(i * 31 + 7);
    bsum += big[i];
  }
  dt_value *v = dt_bytes_take(big, n, free);
  dt_wbuf *w = dt__conn_out(c);
  dt__wb_msg(w, DT_OP_DATA, 3);
  assert_int_equal(dt__wb_value(w, v), 0);
  dt_value_free(v);
  T.want_msgs = 10001;
  uv_run(&T.loop, UV_RUN_DEFAULT);
  assert_false(T.timed_out);
  assert_int_equal(T.got_msgs, 10001);
  assert_int_equal(T.sum, want);
  assert_int_equal(T.frame_len, n);
  assert_int_equal(T.frame_sum, bsum);
  assert_int_equal(T.closed_proto, 0);
}

static int raw_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)T.lst.port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

static void send_raw(int fd, const void *p, size_t n) {
  assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void test_malformed_batches_close_only_their_connection(void **state) {
  (void)state;
  int fds[6];
  /* 1: body larger than the limit */
  uint32_t h1[2] = {0xFFFFFFFFu, 0};
  fds[0] = raw_connect();
  send_raw(fds[0], h1, 8);
  /* 2: too many frames */
  uint32_t h2[2] = {4, 0xFFFFFFu};
  fds[1] = raw_connect();
  send_raw(fds[1], h2, 8);
  /* 3: a frame larger than the limit */
  uint32_t h3[2] = {4, 1};
  uint64_t flen = ~0ull;
  fds[2] = raw_connect();
  send_raw(fds[2], h3, 8);
  send_raw(fds[2], &flen, 8);
  /* 4: a body that is not msgpack */
  uint32_t h4[2] = {1, 0};
  fds[3] = raw_connect();
  send_raw(fds[3], h4, 8);
  send_raw(fds[3], "\xc1", 1);
  /* 5: a message with an unknown op */
  uint32_t h5[2] = {4, 0};
  fds[4] = raw_connect();
  send_raw(fds[4], h5, 8);
  send_raw(fds[4], "\x92\xcd\x03\xe7", 4);
  /* 6: a known op with fields of the wrong type (handler rejects) */
  uint32_t h6[2] = {3, 0};
  fds[5] = raw_connect();
  send_raw(fds[5], h6, 8);
  char bad[3] = {(char)0x92, (char)DT_OP_HEARTBEAT, (char)0xc0};
  send_raw(fds[5], bad, 3);
  /* and a good connection that must still be served */
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", T.lst.port);
  dt_conn *c;
  assert_int_equal(dt__conn_connect(&T.net, addr, &client_cbs, NULL, &c), 0);
  dt_wbuf *w = dt__conn_out(c);
  dt__wb_msg(w, DT_OP_HEARTBEAT, 1);
  dt__wb_int(w, 42);
  T.want_msgs = 1;
  T.want_closed = 6;
  uv_run(&T.loop, UV_RUN_DEFAULT);
  assert_false(T.timed_out);
  assert_int_equal(T.closed_proto, 6);
  assert_int_equal(T.got_msgs, 1);
  assert_int_equal(T.sum, 42);
  for (int i = 0; i < 6; i++) {
    char b;
    assert_true(recv(fds[i], &b, 1, 0) <= 0); /* closed by the server */
    close(fds[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_batches_and_frames, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_batches_close_only_their_connection, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
