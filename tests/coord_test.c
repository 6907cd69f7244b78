/* coord_test.c -- end to end on a real LocalCluster: the coordination
 * primitives (variables, queues, locks, multilocks, events, semaphores)
 * and published datasets, each used from two or more clients: mutual
 * exclusion under contention, a semaphore's bound, wake-ups, hand-offs,
 * futures held by a variable and a dataset, locks of a client that
 * disconnects, timeouts that take nothing, and errors. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define DT_MAX_KEY_TEST 1024 /* the longest name */

DT_TASK(inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

DT_TASK(slow_ms) { /* slow_ms(ms): sleeps, returns ms */
  int64_t ms;
  if (dt_task_arg_int(task, 0, &ms)) return NULL;
  usleep((useconds_t)ms * 1000);
  return dt_int(ms);
}

static dt_local_cluster *lc;
static dt_client *ca, *cb; /* two clients */

static dt_client *connect_client(void) {
  dt_client *c = NULL;
  if (dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c) != 0) {
    fprintf(stderr, "client: %s\n", dt_last_error());
    return NULL;
  }
  return c;
}

static int group_setup(void **state) {
  (void)state;
  dt_local_cluster_opts o = {.n_workers = 1, .threads_per_worker = 2, .no_dashboard = true};
  if (tu_local_start(o, (dt_client_opts){0}, &lc, &ca) != 0) return -1;
  cb = connect_client();
  return cb ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  dt_client_close(cb);
  tu_local_stop(&lc, &ca);
  return 0;
}

static int check_empty(void **state) {
  (void)state;
  if (tu_wait_tasks(ca, 0, 10) != 0) {
    fprintf(stderr, "scheduler still holds tasks after the test\n");
    return -1;
  }
  return 0;
}

#define OK(x) expect_rc((x), 0)
static void expect_rc(int rc, int want) {
  if (rc != want)
    fail_msg("rc %d (%s), wanted %s: %s", rc, dt_err_name(rc), dt_err_name(want), dt_last_error());
}

/* ---------------------------------------------------------------- variables */

static void test_variable_holds_a_value_and_a_future(void **state) {
  (void)state;
  dt_value *v = dt_int(7), *got = NULL;
  OK(dt_variable_set(ca, "var-x", v));
  dt_value_free(v);
  OK(dt_variable_get(cb, "var-x", 1000, &got));
  assert_int_equal(dt_value_int(got), 7);
  dt_value_free(got);
  /* a future: the first client lets go of its own, the second fetches it */
  dt_future *f;
  OK(dt_client_submit(ca, "inc", dt_list_of(1, dt_int(41)), NULL,
                      &(dt_submit_opts){.pure = DT_NO}, &f));
  dt_value *fv = dt_future_value(f);
  OK(dt_variable_set(ca, "var-x", fv)); /* replaces 7 */
  dt_value_free(fv);
  dt_future_release(f);
  usleep(100000); /* the release reaches the scheduler */
  OK(dt_variable_get(cb, "var-x", 1000, &got));
  assert_int_equal(dt_value_type(got), DT_FUTURE);
  dt_future *g = dt_value_future(got);
  assert_non_null(g);
  dt_value *r;
  OK(dt_future_result(g, 30000, &r));
  assert_int_equal(dt_value_int(r), 42);
  dt_value_free(r);
  dt_value_free(got);
  OK(dt_variable_delete(ca, "var-x"));
  expect_rc(dt_variable_get(cb, "var-x", 50, &got), DT_ETIMEDOUT);
  assert_null(got);
}

typedef struct {
  dt_client *c;
  const char *name;
  int timeout_ms;
  int rc;
  int64_t value;
} waiter_arg;

static void *var_getter(void *p) {
  waiter_arg *a = p;
  dt_value *v = NULL;
  a->rc = dt_variable_get(a->c, a->name, a->timeout_ms, &v);
  a->value = dt_value_int(v);
  dt_value_free(v);
  return NULL;
}

static void test_variable_get_waits_until_set(void **state) {
  (void)state;
  waiter_arg a = {cb, "var-wait", 20000, -99, 0};
  pthread_t t;
  pthread_create(&t, NULL, var_getter, &a);
  usleep(100000);
  dt_value *v = dt_int(5);
  OK(dt_variable_set(ca, "var-wait", v));
  dt_value_free(v);
  pthread_join(t, NULL);
  OK(a.rc);
  assert_int_equal(a.value, 5);
  OK(dt_variable_delete(ca, "var-wait"));
}

/* ---------------------------------------------------------------- queues */

static void *queue_getter(void *p) {
  waiter_arg *a = p;
  dt_value *v = NULL;
  a->rc = dt_queue_get(a->c, a->name, a->timeout_ms, &v);
  a->value = dt_value_int(v);
  dt_value_free(v);
  return NULL;
}

static void test_queue_hand_off_order_and_bounds(void **state) {
  (void)state;
  /* a getter waiting on an empty queue gets the first put */
  waiter_arg a = {cb, "q1", 20000, -99, 0};
  pthread_t t;
  pthread_create(&t, NULL, queue_getter, &a);
  usleep(100000);
  dt_value *v = dt_int(42);
  OK(dt_queue_put(ca, "q1", v, 0, -1));
  dt_value_free(v);
  pthread_join(t, NULL);
  OK(a.rc);
  assert_int_equal(a.value, 42);
  /* FIFO, qsize */
  for (int i = 0; i < 5; i++) {
    v = dt_int(i);
    OK(dt_queue_put(ca, "q1", v, 0, 0));
    dt_value_free(v);
  }
  int64_t n = -1;
  OK(dt_queue_qsize(cb, "q1", &n));
  assert_int_equal(n, 5);
  for (int i = 0; i < 5; i++) {
    dt_value *got;
    OK(dt_queue_get(cb, "q1", 0, &got));
    assert_int_equal(dt_value_int(got), i);
    dt_value_free(got);
  }
  /* an empty queue: a get times out, and the timed-out getter never takes
   * the next item */
  dt_value *got = NULL;
  expect_rc(dt_queue_get(cb, "q1", 50, &got), DT_ETIMEDOUT);
  assert_null(got);
  v = dt_int(9);
  OK(dt_queue_put(ca, "q1", v, 0, 0));
  dt_value_free(v);
  OK(dt_queue_qsize(cb, "q1", &n));
  assert_int_equal(n, 1);
  OK(dt_queue_get(cb, "q1", 0, &got));
  assert_int_equal(dt_value_int(got), 9);
  dt_value_free(got);
  /* maxsize: a put to a full queue waits, and times out */
  v = dt_int(1);
  OK(dt_queue_put(ca, "q2", v, 1, 0));
  expect_rc(dt_queue_put(ca, "q2", v, 1, 50), DT_ETIMEDOUT);
  OK(dt_queue_qsize(cb, "q2", &n));
  assert_int_equal(n, 1);
  dt_value_free(v);
  OK(dt_queue_get(cb, "q2", 0, &got));
  dt_value_free(got);
  OK(dt_queue_qsize(cb, "q2", &n));
  assert_int_equal(n, 0);
}

static void test_queue_carries_futures(void **state) {
  (void)state;
  dt_future *f;
  OK(dt_client_submit(ca, "inc", dt_list_of(1, dt_int(1)), NULL, &(dt_submit_opts){.pure = DT_NO}, &f));
  dt_value *v = dt_list_of(2, dt_future_value(f), dt_str("tag"));
  OK(dt_queue_put(ca, "qf", v, 0, 0));
  dt_value_free(v);
  dt_future_release(f);
  dt_value *got;
  OK(dt_queue_get(cb, "qf", 5000, &got));
  assert_int_equal(dt_list_len(got), 2);
  dt_future *g = dt_value_future(dt_list_get(got, 0));
  assert_non_null(g);
  dt_value *r;
  OK(dt_future_result(g, 30000, &r));
  assert_int_equal(dt_value_int(r), 2);
  dt_value_free(r);
  dt_value_free(got);
}

/* ---------------------------------------------------------------- locks */

#define NTHREADS 4
#define ROUNDS 15
static int counter;         /* read and written under the lock only */
static atomic_int inside;   /* holders at once */
static atomic_int overlaps; /* times two were inside */

static void *lock_worker(void *p) {
  dt_client *c = p;
  for (int i = 0; i < ROUNDS; i++) {
    if (dt_lock_acquire(c, "lock-counter", 20000) != 0) return (void *)1;
    if (atomic_fetch_add(&inside, 1) != 0) atomic_fetch_add(&overlaps, 1);
    int x = counter;
    usleep(1000);
    counter = x + 1;
    atomic_fetch_sub(&inside, 1);
    if (dt_lock_release(c, "lock-counter") != 0) return (void *)2;
  }
  return NULL;
}

static void test_lock_mutual_exclusion(void **state) {
  (void)state;
  dt_client *cs[NTHREADS];
  pthread_t ts[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) assert_non_null(cs[i] = connect_client());
  for (int i = 0; i < NTHREADS; i++) pthread_create(&ts[i], NULL, lock_worker, cs[i]);
  for (int i = 0; i < NTHREADS; i++) {
    void *r;
    pthread_join(ts[i], &r);
    assert_null(r);
  }
  assert_int_equal(counter, NTHREADS * ROUNDS);
  assert_int_equal(atomic_load(&overlaps), 0);
  bool locked = true;
  OK(dt_lock_locked(ca, "lock-counter", &locked));
  assert_false(locked);
  for (int i = 0; i < NTHREADS; i++) dt_client_close(cs[i]);
}

static void test_lock_timeouts_errors_and_disconnect(void **state) {
  (void)state;
  dt_client *c3 = connect_client();
  assert_non_null(c3);
  OK(dt_lock_acquire(c3, "lock-d", 0));
  expect_rc(dt_lock_acquire(cb, "lock-d", 0), DT_ETIMEDOUT);
  expect_rc(dt_lock_acquire(cb, "lock-d", 50), DT_ETIMEDOUT);
  assert_non_null(strstr(dt_last_error(), "lock-d"));
  expect_rc(dt_lock_release(cb, "lock-d"), DT_EINVAL); /* not its lock */
  expect_rc(dt_lock_release(cb, "lock-nobody"), DT_EINVAL);
  /* wrong kind */
  dt_value *v = dt_int(1);
  expect_rc(dt_queue_put(cb, "lock-d", v, 0, 0), DT_ETYPE);
  expect_rc(dt_variable_set(cb, "lock-d", v), DT_ETYPE);
  dt_value_free(v);
  expect_rc(dt_event_set(cb, "lock-d"), DT_ETYPE);
  /* the holder disconnects: the lock is free */
  dt_client_close(c3);
  OK(dt_lock_acquire(cb, "lock-d", 10000));
  bool locked = false;
  OK(dt_lock_locked(ca, "lock-d", &locked));
  assert_true(locked);
  OK(dt_lock_release(cb, "lock-d"));
  /* bad names */
  char big[DT_MAX_KEY_TEST + 2];
  memset(big, 'n', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  expect_rc(dt_lock_acquire(cb, big, 0), DT_EINVAL);
  expect_rc(dt_lock_acquire(cb, "", 0), DT_EINVAL);
  expect_rc(dt_lock_acquire(cb, NULL, 0), DT_EINVAL);
}

typedef struct {
  dt_client *c;
  int rc;
} ml_arg;

static void *mlock_waiter(void *p) {
  ml_arg *a = p;
  const char *names[2] = {"ml-y", "ml-z"};
  a->rc = dt_multilock_acquire(a->c, names, 2, 0, 20000);
  return NULL;
}

static void test_multilock_all_or_nothing(void **state) {
  (void)state;
  const char *xy[2] = {"ml-x", "ml-y"}, *yz[2] = {"ml-y", "ml-z"};
  OK(dt_multilock_acquire(ca, xy, 2, 0, 0));
  expect_rc(dt_multilock_acquire(cb, yz, 2, 0, 0), DT_ETIMEDOUT);
  /* num_locks 1: ml-z alone is free */
  OK(dt_multilock_acquire(cb, yz, 2, 1, 0));
  OK(dt_multilock_release(cb, yz, 2));
  ml_arg a = {cb, -99};
  pthread_t t;
  pthread_create(&t, NULL, mlock_waiter, &a);
  usleep(100000);
  expect_rc(dt_lock_acquire(cb, "ml-x", 0), DT_ETYPE); /* a multilock's name */
  OK(dt_multilock_release(ca, xy, 2));
  pthread_join(t, NULL);
  OK(a.rc);
  /* the waiter holds ml-y and ml-z; ml-x is free */
  const char *x[1] = {"ml-x"};
  OK(dt_multilock_acquire(ca, x, 1, 0, 0));
  OK(dt_multilock_release(ca, x, 1));
  expect_rc(dt_multilock_release(ca, yz, 2), DT_EINVAL);
  OK(dt_multilock_release(cb, yz, 2));
}

/* ---------------------------------------------------------------- events */

static void *event_waiter(void *p) {
  waiter_arg *a = p;
  a->rc = dt_event_wait(a->c, a->name, a->timeout_ms);
  return NULL;
}

static void test_event_wakes_waiters(void **state) {
  (void)state;
  bool set = true;
  OK(dt_event_is_set(cb, "ev", &set));
  assert_false(set);
  expect_rc(dt_event_wait(cb, "ev", 50), DT_ETIMEDOUT);
  waiter_arg a1 = {cb, "ev", 20000, -99, 0}, a2 = {ca, "ev", 20000, -99, 0};
  pthread_t t1, t2;
  pthread_create(&t1, NULL, event_waiter, &a1);
  pthread_create(&t2, NULL, event_waiter, &a2);
  usleep(100000);
  OK(dt_event_set(ca, "ev"));
  pthread_join(t1, NULL);
  pthread_join(t2, NULL);
  OK(a1.rc);
  OK(a2.rc);
  OK(dt_event_is_set(cb, "ev", &set));
  assert_true(set);
  OK(dt_event_wait(cb, "ev", 0));
  OK(dt_event_clear(cb, "ev"));
  OK(dt_event_is_set(ca, "ev", &set));
  assert_false(set);
}

/* ---------------------------------------------------------------- semaphores */

#define SEM_THREADS 5
#define SEM_MAX 2
static atomic_int sem_now, sem_max;

static void *sem_worker(void *p) {
  dt_client *c = p;
  for (int i = 0; i < 4; i++) {
    if (dt_semaphore_acquire(c, "sem", SEM_MAX, 20000) != 0) return (void *)1;
    int n = atomic_fetch_add(&sem_now, 1) + 1;
    int m = atomic_load(&sem_max);
    while (n > m && !atomic_compare_exchange_weak(&sem_max, &m, n)) {}
    usleep(5000);
    atomic_fetch_sub(&sem_now, 1);
    if (dt_semaphore_release(c, "sem") != 0) return (void *)2;
  }
  return NULL;
}

static void test_semaphore_bounds_concurrency(void **state) {
  (void)state;
  dt_client *cs[SEM_THREADS];
  pthread_t ts[SEM_THREADS];
  for (int i = 0; i < SEM_THREADS; i++) assert_non_null(cs[i] = connect_client());
  for (int i = 0; i < SEM_THREADS; i++) pthread_create(&ts[i], NULL, sem_worker, cs[i]);
  for (int i = 0; i < SEM_THREADS; i++) {
    void *r;
    pthread_join(ts[i], &r);
    assert_null(r);
  }
  assert_true(atomic_load(&sem_max) >= 1);
  assert_true(atomic_load(&sem_max) <= SEM_MAX);
  int64_t held = -1;
  OK(dt_semaphore_value(ca, "sem", &held));
  assert_int_equal(held, 0);
  /* exhausted: the third lease times out; a lease of a client that goes
   * comes back */
  dt_client *c3 = connect_client();
  OK(dt_semaphore_acquire(ca, "sem", SEM_MAX, 0));
  OK(dt_semaphore_acquire(c3, "sem", SEM_MAX, 0));
  expect_rc(dt_semaphore_acquire(cb, "sem", SEM_MAX, 50), DT_ETIMEDOUT);
  expect_rc(dt_semaphore_acquire(cb, "sem", SEM_MAX + 1, 0), DT_EINVAL); /* inconsistent */
  expect_rc(dt_semaphore_release(cb, "sem"), DT_EINVAL);                  /* holds none */
  OK(dt_semaphore_value(cb, "sem", &held));
  assert_int_equal(held, 2);
  dt_client_close(c3);
  OK(dt_semaphore_acquire(cb, "sem", SEM_MAX, 10000));
  OK(dt_semaphore_release(cb, "sem"));
  OK(dt_semaphore_release(ca, "sem"));
  for (int i = 0; i < SEM_THREADS; i++) dt_client_close(cs[i]);
}

/* ---------------------------------------------------------------- datasets */

static void test_dataset_outlives_its_client(void **state) {
  (void)state;
  dt_client *pub = connect_client();
  assert_non_null(pub);
  dt_future *f;
  OK(dt_client_submit(pub, "inc", dt_list_of(1, dt_int(99)), NULL, &(dt_submit_opts){.pure = DT_NO}, &f));
  dt_value *v = dt_list_of(2, dt_future_value(f), dt_int(7));
  OK(dt_client_publish_dataset(pub, "ds-1", v, false));
  expect_rc(dt_client_publish_dataset(pub, "ds-1", v, false), DT_EINVAL);
  dt_value_free(v);
  dt_future_release(f);
  dt_client_close(pub);
  char **names = NULL;
  size_t n = 0;
  OK(dt_client_list_datasets(cb, &names, &n));
  assert_int_equal(n, 1);
  assert_string_equal(names[0], "ds-1");
  dt_strings_free(names, n);
  dt_value *got;
  OK(dt_client_get_dataset(cb, "ds-1", &got));
  dt_value *r;
  OK(dt_future_result(dt_value_future(dt_list_get(got, 0)), 30000, &r));
  assert_int_equal(dt_value_int(r), 100);
  assert_int_equal(dt_value_int(dt_list_get(got, 1)), 7);
  dt_value_free(r);
  dt_value_free(got);
  OK(dt_client_unpublish_dataset(ca, "ds-1"));
  expect_rc(dt_client_get_dataset(cb, "ds-1", &got), DT_ENOTFOUND);
  assert_non_null(strstr(dt_last_error(), "ds-1"));
  expect_rc(dt_client_unpublish_dataset(ca, "ds-1"), DT_ENOTFOUND);
  OK(dt_client_list_datasets(cb, &names, &n));
  assert_int_equal(n, 0);
  dt_strings_free(names, n);
}

/* a client closed while other threads wait in calls on it: each call
 * returns an error, and the client is freed only after they have left (ASan
 * in CI: a heap-use-after-free here before dt_client_close waited) */
typedef struct {
  dt_client *c;
  dt_future *f;
  int which, rc;
  atomic_int done;
} close_waiter;
static void *close_wait_thread(void *arg) {
  close_waiter *w = arg;
  dt_value *v = NULL;
  if (w->which == 0) w->rc = dt_queue_get(w->c, "close-q", 20000, &v);
  else if (w->which == 1) w->rc = dt_future_result(w->f, 20000, &v);
  else w->rc = dt_client_gather(w->c, &w->f, 1, 20000, &v);
  dt_value_free(v);
  atomic_store(&w->done, 1);
  return NULL;
}
static void test_close_while_others_wait(void **state) {
  (void)state;
  for (int round = 0; round < 5; round++) {
    dt_client *cc = connect_client();
    assert_non_null(cc);
    dt_future *f;
    assert_int_equal(dt_client_submit(cc, "slow_ms", dt_list_of(1, dt_int(1500)), NULL,
                                      &(dt_submit_opts){.pure = DT_NO}, &f), 0);
    enum { NW = 24 };
    close_waiter w[NW];
    pthread_t th[NW];
    for (int i = 0; i < NW; i++) {
      w[i] = (close_waiter){.c = cc, .f = f, .which = i % 3, .rc = 0};
      assert_int_equal(pthread_create(&th[i], NULL, close_wait_thread, &w[i]), 0);
    }
    usleep(200000); /* they are waiting */
    for (int i = 0; i < NW; i++) assert_int_equal(atomic_load(&w[i].done), 0);
    dt_client_close(cc);
    for (int i = 0; i < NW; i++) {
      for (int k = 0; k < 500 && !atomic_load(&w[i].done); k++) usleep(10000);
      assert_int_equal(atomic_load(&w[i].done), 1); /* returned, did not hang */
      pthread_join(th[i], NULL);
      assert_int_not_equal(w[i].rc, 0); /* the client was closed under it */
    }
    dt_future_release(f);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_variable_holds_a_value_and_a_future, check_empty),
      cmocka_unit_test_teardown(test_close_while_others_wait, check_empty),
      cmocka_unit_test_teardown(test_variable_get_waits_until_set, check_empty),
      cmocka_unit_test_teardown(test_queue_hand_off_order_and_bounds, check_empty),
      cmocka_unit_test_teardown(test_queue_carries_futures, check_empty),
      cmocka_unit_test_teardown(test_lock_mutual_exclusion, check_empty),
      cmocka_unit_test_teardown(test_lock_timeouts_errors_and_disconnect, check_empty),
      cmocka_unit_test_teardown(test_multilock_all_or_nothing, check_empty),
      cmocka_unit_test_teardown(test_event_wakes_waiters, check_empty),
      cmocka_unit_test_teardown(test_semaphore_bounds_concurrency, check_empty),
      cmocka_unit_test_teardown(test_dataset_outlives_its_client, check_empty),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
