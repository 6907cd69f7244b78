/* admin_test.c -- management end to end on a real LocalCluster (a scheduler
 * and two workers under nannies, over loopback): dt_client_restart cancels
 * the client's futures (a running one included), the workers come back as
 * fresh processes and run new work; dt_client_restart_workers restarts one
 * worker only; dt_client_upload_file makes a new shared library's task
 * callable on every worker, one started afterwards too; a cluster without
 * nannies refuses to restart, naming the worker. */
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

/* admin_sleep(ms) -> ms, sleeping in 10 ms steps (at most 60 s) */
DT_TASK(admin_sleep) {
  int64_t ms = 0;
  if (dt_task_arg_int(task, 0, &ms) != 0) return NULL;
  for (int64_t i = 0; i < ms / 10 && i < 6000; i++) usleep(10000);
  return dt_int(ms);
}

DT_TASK(admin_inc) {
  int64_t x = 0;
  if (dt_task_arg_int(task, 0, &x) != 0) return NULL;
  return dt_int(x + 1);
}

static dt_local_cluster *lc;
static dt_client *client;

static int group_setup(void **state) {
  (void)state;
  dt_local_cluster_opts o = {.n_workers = 2, .threads_per_worker = 1, .no_dashboard = true};
  if (tu_local_start(o, (dt_client_opts){0}, &lc, &client) != 0) return -1;
  return dt_client_wait_for_workers(client, 2, 30000) == 0 ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  tu_local_stop(&lc, &client);
  return 0;
}

static int64_t run_int(const char *func, int64_t x, const char *on_worker) {
  dt_submit_opts o = {.pure = DT_NO};
  if (on_worker) {
    o.workers = &on_worker;
    o.n_workers = 1;
  }
  dt_future *f = NULL;
  assert_int_equal(dt_client_submit(client, func, dt_list_of(1, dt_int(x)), NULL, &o, &f), 0);
  dt_value *v = NULL;
  int rc = dt_future_result(f, 30000, &v);
  if (rc) fprintf(stderr, "%s: %s\n", func, dt_last_error());
  assert_int_equal(rc, 0);
  int64_t n = dt_value_int(v);
  dt_value_free(v);
  dt_future_release(f);
  return n;
}

/* the workers' addresses and pids, sorted by address */
static size_t workers(char addr[][128], int *pids, size_t cap) {
  dt_worker_info *ws = NULL;
  size_t n = 0;
  assert_int_equal(dt_client_workers(client, 10000, &ws, &n), 0);
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (strcmp(ws[j].address, ws[i].address) < 0) {
        dt_worker_info t = ws[i];
        ws[i] = ws[j];
        ws[j] = t;
      }
  for (size_t i = 0; i < n && i < cap; i++) {
    snprintf(addr[i], 128, "%s", ws[i].address);
    pids[i] = ws[i].pid;
  }
  free(ws);
  return n;
}

static void test_restart_cancels_and_comes_back(void **state) {
  (void)state;
  char addr[4][128];
  int pids[4], after[4];
  assert_int_equal(workers(addr, pids, 4), 2);
  assert_int_equal(run_int("admin_inc", 1, NULL), 2);
  dt_future *running = NULL, *done = NULL;
  assert_int_equal(dt_client_submit(client, "admin_inc", dt_list_of(1, dt_int(5)), NULL, NULL, &done), 0);
  dt_value *v = NULL;
  assert_int_equal(dt_future_result(done, 30000, &v), 0);
  dt_value_free(v);
  assert_int_equal(
      dt_client_submit(client, "admin_sleep", dt_list_of(1, dt_int(50000)), NULL, NULL, &running), 0);
  usleep(200000); /* let it start */
  assert_int_equal(dt_client_restart(client, 60000, true), 0);
  assert_int_equal(dt_future_result(running, 1000, &v), DT_ECANCELLED);
  assert_int_equal(dt_future_status_get(running), DT_CANCELLED);
  assert_int_equal(dt_future_result(done, 1000, &v), DT_ECANCELLED);
  dt_future_release(running);
  dt_future_release(done);
  assert_int_equal(workers(addr, after, 4), 2);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 2; j++) assert_int_not_equal(after[i], pids[j]);
  assert_int_equal(run_int("admin_inc", 41, NULL), 42);
}

static void test_restart_workers_only_those(void **state) {
  (void)state;
  char addr[4][128], addr2[4][128];
  int pids[4], after[4];
  assert_int_equal(workers(addr, pids, 4), 2);
  const char *one = addr[0];
  assert_int_equal(dt_client_restart_workers(client, &one, 1, 60000), 0);
  assert_int_equal(workers(addr2, after, 4), 2);
  int kept = 0;
  for (int i = 0; i < 2; i++) {
    if (strcmp(addr2[i], addr[1]) == 0) {
      assert_int_equal(after[i], pids[1]);
      kept++;
    } else {
      assert_int_not_equal(after[i], pids[0]);
    }
  }
  assert_int_equal(kept, 1);
  const char *nobody = "127.0.0.1:1";
  assert_int_equal(dt_client_restart_workers(client, &nobody, 1, 10000), DT_ENOTFOUND);
  assert_int_equal(run_int("admin_inc", 1, NULL), 2);
}

static void test_upload_so(void **state) {
  (void)state;
  const char *so = getenv("ADMIN_UPLOAD_SO");
  assert_non_null(so);
  /* not there yet: the task fails */
  dt_future *f = NULL;
  assert_int_equal(dt_client_submit(client, "admin_uploaded_double", dt_list_of(1, dt_int(1)), NULL,
                                    NULL, &f), 0);
  dt_value *v = NULL;
  assert_int_not_equal(dt_future_result(f, 30000, &v), 0);
  dt_future_release(f);
  assert_int_equal(dt_client_upload_file(client, so), 0);
  char addr[4][128];
  int pids[4];
  assert_int_equal(workers(addr, pids, 4), 2);
  for (int i = 0; i < 2; i++) assert_int_equal(run_int("admin_uploaded_double", 10 + i, addr[i]), 20 + 2 * i);
  /* a worker started afterwards gets it too */
  assert_int_equal(dt_local_cluster_scale(lc, 3, 30000), 0);
  assert_int_equal(dt_client_wait_for_workers(client, 3, 30000), 0);
  char addr3[4][128];
  assert_int_equal(workers(addr3, pids, 4), 3);
  const char *fresh = NULL;
  for (int i = 0; i < 3; i++)
    if (strcmp(addr3[i], addr[0]) != 0 && strcmp(addr3[i], addr[1]) != 0) fresh = addr3[i];
  assert_non_null(fresh);
  assert_int_equal(run_int("admin_uploaded_double", 21, fresh), 42);
  /* not a .so, or missing */
  assert_int_equal(dt_client_upload_file(client, "x.py"), DT_EINVAL);
  assert_int_equal(dt_client_upload_file(client, "/nonexistent/lib.so"), DT_ENOTFOUND);
  /* a plugin whose function these C workers lack: logged there, no harm */
  assert_int_equal(dt_client_register_plugin(client, "needs-python", "py:", "abc", 3), 0);
  assert_int_equal(run_int("admin_inc", 2, NULL), 3);
  assert_int_equal(dt_client_unregister_plugin(client, "needs-python", "py:", NULL, 0), 0);
  char longname[300];
  memset(longname, 'x', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_int_equal(dt_client_register_plugin(client, longname, "py:", NULL, 0), DT_EINVAL);
  assert_int_equal(dt_local_cluster_scale(lc, 2, 30000), 0);
}

static void test_no_nanny_refused(void **state) {
  (void)state;
  dt_local_cluster *l2 = NULL;
  dt_local_cluster_opts o = {.n_workers = 1, .threads_per_worker = 1, .no_dashboard = true,
                             .no_nanny = true};
  assert_int_equal(dt_local_cluster_start(&o, &l2), 0);
  dt_client *c2 = NULL;
  assert_int_equal(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(l2)}, &c2), 0);
  assert_int_equal(dt_client_wait_for_workers(c2, 1, 30000), 0);
  dt_worker_info *ws = NULL;
  size_t n = 0;
  assert_int_equal(dt_client_workers(c2, 10000, &ws, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(dt_client_restart(c2, 30000, true), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "no nanny"));
  assert_non_null(strstr(dt_last_error(), ws[0].address));
  free(ws);
  dt_client_close(c2);
  dt_local_cluster_close(l2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_restart_cancels_and_comes_back),
      cmocka_unit_test(test_restart_workers_only_those),
      cmocka_unit_test(test_upload_so),
      cmocka_unit_test(test_no_nanny_refused),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
