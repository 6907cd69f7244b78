/* actor_test.c -- actors end to end on a real LocalCluster (a scheduler and
 * two workers over loopback): a counter incremented 100 times from the
 * client, calls from two clients, attribute reads, method errors, unknown
 * methods, unknown types, a released actor, calls on one actor in order. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

/* Counter(start=0): increment(by=1) -> n; fail(msg); slow(ms) -> n; n */
typedef struct {
  int64_t n;
} counter;

static void *counter_create(dt_task *t) {
  counter *c = calloc(1, sizeof(*c));
  if (!c) {
    dt_task_fail(t, "out of memory");
    return NULL;
  }
  if (dt_task_nargs(t) > 0 && dt_task_arg_int(t, 0, &c->n)) {
    free(c);
    return NULL;
  }
  return c;
}

static dt_value *counter_call(void *state, const char *method, bool attribute, dt_task *t) {
  counter *c = state;
  if (attribute) {
    if (strcmp(method, "n") == 0) return dt_int(c->n);
    return dt_task_fail(t, "Counter has no attribute '%s'", method);
  }
  if (strcmp(method, "increment") == 0) {
    int64_t by = 1;
    if (dt_task_nargs(t) > 0 && dt_task_arg_int(t, 0, &by)) return NULL;
    /* read, pause, write: a lost update if two calls overlapped */
    int64_t n = c->n;
    if (by == 7) usleep(2000);
    c->n = n + by;
    return dt_int(c->n);
  }
  if (strcmp(method, "fail") == 0) {
    const char *msg = "boom";
    if (dt_task_nargs(t) > 0 && dt_task_arg_str(t, 0, &msg)) return NULL;
    return dt_task_fail(t, "Counter.fail: %s", msg);
  }
  return dt_task_fail(t, "Counter has no method '%s'", method);
}

static void counter_free(void *state) { free(state); }

DT_ACTOR(Counter, counter_create, counter_call, counter_free)

static dt_local_cluster *lc;
static dt_client *client;

static int group_setup(void **state) {
  (void)state;
  dt_local_cluster_opts o = {.n_workers = 2, .threads_per_worker = 1, .no_dashboard = true};
  return tu_local_start(o, (dt_client_opts){0}, &lc, &client);
}

static int group_teardown(void **state) {
  (void)state;
  tu_local_stop(&lc, &client);
  return 0;
}

/* a new Counter(start) and a handle on it */
static dt_future *new_counter(int64_t start, dt_actor **a) {
  dt_future *f = NULL;
  assert_int_equal(dt_client_submit_actor(client, "Counter", dt_list_of(1, dt_int(start)), NULL,
                                          NULL, &f),
                   0);
  assert_int_equal(dt_actor_from_future(f, 30000, a), 0);
  return f;
}

static int64_t call_int(dt_actor *a, const char *method, dt_value *args) {
  dt_future *f = NULL;
  assert_int_equal(dt_actor_call(a, method, args, NULL, &f), 0);
  dt_value *v = NULL;
  int rc = dt_future_result(f, 30000, &v);
  if (rc) fprintf(stderr, "%s: %s\n", method, dt_last_error());
  assert_int_equal(rc, 0);
  assert_int_equal(dt_value_type(v), DT_INT);
  int64_t n = dt_value_int(v);
  dt_value_free(v);
  dt_future_release(f);
  return n;
}

static void test_counter_100_increments(void **state) {
  (void)state;
  dt_actor *a;
  dt_future *f = new_counter(0, &a);
  /* the handle names the creating task's key and a worker */
  assert_string_equal(dt_actor_key(a), dt_future_key(f));
  assert_non_null(strchr(dt_actor_address(a), ':'));
  for (int i = 0; i < 100; i++) assert_int_equal(call_int(a, "increment", NULL), i + 1);
  dt_future *g = NULL;
  assert_int_equal(dt_actor_get(a, "n", &g), 0);
  dt_value *v = NULL;
  assert_int_equal(dt_future_result(g, 30000, &v), 0);
  assert_int_equal(dt_value_int(v), 100);
  dt_value_free(v);
  dt_future_release(g);
  dt_actor_free(a);
  dt_future_release(f);
}

/* 200 calls in flight at once on one actor: run one at a time, in order */
static void test_calls_in_flight_run_one_at_a_time(void **state) {
  (void)state;
  dt_actor *a;
  dt_future *f = new_counter(0, &a);
  enum { N = 200 };
  dt_future *fs[N];
  for (int i = 0; i < N; i++)
    assert_int_equal(dt_actor_call(a, "increment", dt_list_of(1, dt_int(7)), NULL, &fs[i]), 0);
  for (int i = 0; i < N; i++) {
    dt_value *v = NULL;
    assert_int_equal(dt_future_result(fs[i], 30000, &v), 0);
    assert_int_equal(dt_value_int(v), 7 * (i + 1)); /* in order of arrival */
    dt_value_free(v);
    dt_future_release(fs[i]);
  }
  dt_actor_free(a);
  dt_future_release(f);
}

static void test_two_clients(void **state) {
  (void)state;
  dt_actor *a;
  dt_future *f = new_counter(10, &a);
  dt_client *c2;
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c2),
                   0);
  dt_actor *b;
  assert_int_equal(dt_actor_new(c2, dt_actor_key(a), dt_actor_address(a), &b), 0);
  for (int i = 0; i < 20; i++) {
    call_int(a, "increment", NULL);
    call_int(b, "increment", dt_list_of(1, dt_int(2)));
  }
  assert_int_equal(call_int(b, "increment", dt_list_of(1, dt_int(0))), 10 + 20 * 3);
  dt_actor_free(b);
  dt_client_close(c2);
  dt_actor_free(a);
  dt_future_release(f);
}

static void test_errors_reach_the_caller(void **state) {
  (void)state;
  dt_actor *a;
  dt_future *f = new_counter(0, &a);
  dt_future *g = NULL;
  dt_value *v = NULL;
  /* a failing method */
  assert_int_equal(dt_actor_call(a, "fail", dt_list_of(1, dt_str("kaput")), NULL, &g), 0);
  assert_int_equal(dt_future_result(g, 30000, &v), DT_ETASK);
  assert_non_null(strstr(dt_last_error(), "Counter.fail: kaput"));
  assert_int_equal(dt_future_status_get(g), DT_ERROR);
  dt_future_release(g);
  /* an unknown method */
  assert_int_equal(dt_actor_call(a, "nope", NULL, NULL, &g), 0);
  assert_int_equal(dt_future_result(g, 30000, &v), DT_ETASK);
  assert_non_null(strstr(dt_last_error(), "no method 'nope'"));
  dt_future_release(g);
  /* a wrong argument type */
  assert_int_equal(dt_actor_call(a, "increment", dt_list_of(1, dt_str("x")), NULL, &g), 0);
  assert_int_equal(dt_future_result(g, 30000, &v), DT_ETYPE);
  dt_future_release(g);
  /* the actor still works */
  assert_int_equal(call_int(a, "increment", NULL), 1);
  /* an unknown actor key on that worker */
  dt_actor *bad;
  assert_int_equal(dt_actor_new(client, "no-such-actor", dt_actor_address(a), &bad), 0);
  assert_int_equal(dt_actor_call(bad, "increment", NULL, NULL, &g), 0);
  assert_int_equal(dt_future_result(g, 30000, &v), DT_ENOTFOUND);
  assert_non_null(strstr(dt_last_error(), "no actor 'no-such-actor'"));
  dt_future_release(g);
  dt_actor_free(bad);
  /* bad arguments of the API */
  assert_int_equal(dt_actor_call(a, "", NULL, NULL, &g), DT_EINVAL);
  assert_int_equal(dt_actor_call(a, "increment", dt_int(1), NULL, &g), DT_EINVAL);
  dt_actor_free(a);
  dt_future_release(f);
  /* an unknown actor type fails the creating task */
  assert_int_equal(dt_client_submit_actor(client, "NoSuchType", NULL, NULL, NULL, &f), 0);
  assert_int_equal(dt_actor_from_future(f, 30000, &a), DT_ENOFUNC);
  assert_non_null(strstr(dt_last_error(), "unknown actor type 'NoSuchType'"));
  dt_future_release(f);
  /* a create that fails */
  assert_int_equal(dt_client_submit_actor(client, "Counter", dt_list_of(1, dt_str("x")), NULL, NULL,
                                          &f),
                   0);
  assert_int_equal(dt_actor_from_future(f, 30000, &a), DT_ETYPE);
  dt_future_release(f);
}

static void test_released_actor(void **state) {
  (void)state;
  dt_actor *a;
  dt_future *f = new_counter(0, &a);
  char key[256], addr[256];
  snprintf(key, sizeof(key), "%s", dt_actor_key(a));
  snprintf(addr, sizeof(addr), "%s", dt_actor_address(a));
  assert_int_equal(call_int(a, "increment", NULL), 1);
  dt_actor_free(a); /* drops its reference on f */
  dt_future_release(f); /* the last one: the scheduler releases the key */
  dt_actor *b;
  assert_int_equal(dt_actor_new(client, key, addr, &b), 0);
  /* the worker drops the actor once FREE_KEYS arrives: bounded wait */
  int rc = 0;
  for (int i = 0; i < 200; i++) {
    dt_future *g = NULL;
    assert_int_equal(dt_actor_call(b, "increment", NULL, NULL, &g), 0);
    dt_value *v = NULL;
    rc = dt_future_result(g, 30000, &v);
    dt_value_free(v);
    dt_future_release(g);
    if (rc) break;
    usleep(20000);
  }
  assert_int_equal(rc, DT_ENOTFOUND);
  assert_non_null(strstr(dt_last_error(), "no actor"));
  dt_actor_free(b);
}

/* a future of a call outlives its client: handles stay valid */
static void test_call_after_close(void **state) {
  (void)state;
  dt_client *c2;
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c2),
                   0);
  dt_future *f = NULL;
  assert_int_equal(dt_client_submit_actor(c2, "Counter", NULL, NULL, NULL, &f), 0);
  dt_actor *a;
  assert_int_equal(dt_actor_from_future(f, 30000, &a), 0);
  dt_future *g = NULL;
  assert_int_equal(dt_actor_call(a, "increment", NULL, NULL, &g), 0);
  dt_value *v = NULL;
  assert_int_equal(dt_future_result(g, 30000, &v), 0);
  dt_value_free(v);
  dt_actor_free(a);
  dt_future_release(f);
  dt_client_close(c2);
  assert_int_equal(dt_future_status_get(g), DT_FINISHED);
  dt_future_release(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counter_100_increments),
      cmocka_unit_test(test_calls_in_flight_run_one_at_a_time),
      cmocka_unit_test(test_two_clients),
      cmocka_unit_test(test_errors_reach_the_caller),
      cmocka_unit_test(test_released_actor),
      cmocka_unit_test(test_call_after_close),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
