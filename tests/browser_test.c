/* browser_test.c -- the dashboard in a real browser: a LocalCluster runs a
 * graph while headless Chromium (driven by playwright-core, from the npm
 * registry, in tests/browser) loads the page; tests/browser/dashboard.mjs
 * checks it.  Skipped, with a message, where Chromium or playwright-core is
 * missing (scripts/test.sh installs both, so CI never skips it). */
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

#define OK(x) do { int rc_ = (x); if (rc_) fail_msg("%s: %s", #x, dt_last_error()); } while (0)

DT_TASK(load) { /* a few milliseconds of work */
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  usleep(6000);
  return dt_int(x);
}
DT_TASK(combine) {
  int64_t a, b;
  if (dt_task_arg_int(task, 0, &a) || dt_task_arg_int(task, 1, &b)) return NULL;
  usleep(3000);
  return dt_int(a + b);
}

static char script[1024], node_modules[1024];

static void test_dashboard_in_chromium(void **state) {
  (void)state;
  const char *chromium = getenv("CHROMIUM") ? getenv("CHROMIUM") : "/usr/bin/chromium";
  if (access(chromium, X_OK) != 0 || access(node_modules, F_OK) != 0) {
    fprintf(stderr, "browser_test: skipped: needs %s and %s (scripts/test.sh installs them)\n",
            chromium, node_modules);
    skip();
  }
  dt_local_cluster *lc;
  OK(dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 3, .threads_per_worker = 2}, &lc));
  dt_client *c;
  OK(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c));
  const char *url = dt_local_cluster_dashboard(lc);
  assert_non_null(url);
  /* a graph of several seconds on 6 threads: 8,192 loads and a tree of combines */
  enum { N = 8192 };
  dt_graph *g = dt_graph_new();
  dt_value **lvl = malloc(N * sizeof(*lvl)), **refs = malloc(2 * N * sizeof(*refs));
  int nrefs = 0;
  for (int i = 0; i < N; i++) {
    OK(dt_graph_add(g, "load", dt_list_of(1, dt_int(i)), NULL, NULL, &lvl[i]));
    refs[nrefs++] = lvl[i];
  }
  for (int n = N; n > 1; n /= 2)
    for (int i = 0; i < n / 2; i++) {
      dt_value *v;
      OK(dt_graph_add(g, "combine", dt_list_of(2, dt_value_ref(lvl[2 * i]), dt_value_ref(lvl[2 * i + 1])),
                      NULL, NULL, &v));
      refs[nrefs++] = v;
      lvl[i] = v;
    }
  dt_future *root;
  OK(dt_graph_submit(c, g, &lvl[0], 1, &root));
  char shot[1100];
  snprintf(shot, sizeof(shot), "%s", getenv("DT_SCREENSHOT") ? getenv("DT_SCREENSHOT") : "dashboard.png");
  char *argv[] = {"node", script, (char *)url, "3", shot, NULL};
  char node[64] = "/usr/bin/node";
  argv[0] = node;
  pid_t p = tu_spawn(argv, NULL);
  assert_true(p > 0);
  int status = -1;
  double end = tu_now() + 120;
  while (waitpid(p, &status, WNOHANG) == 0 && tu_now() < end) usleep(50000);
  dt_value *v;
  OK(dt_future_result(root, 120000, &v));
  assert_int_equal(dt_value_int(v), (int64_t)N * (N - 1) / 2);
  dt_value_free(v);
  dt_future_release(root);
  dt_graph_free(g);
  for (int i = 0; i < nrefs; i++) dt_value_free(refs[i]);
  free(refs);
  free(lvl);
  dt_client_close(c);
  dt_local_cluster_close(lc);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(access(shot, F_OK), 0);
}

int main(int argc, char **argv) {
  (void)argc;
  const char *src = getenv("DTASK_SOURCE_DIR");
  if (!src) {
    fprintf(stderr, "run through ctest (DTASK_SOURCE_DIR)\n");
    return 1;
  }
  (void)argv;
  snprintf(script, sizeof(script), "%s/tests/browser/dashboard.mjs", src);
  snprintf(node_modules, sizeof(node_modules), "%s/tests/browser/node_modules/playwright-core", src);
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_dashboard_in_chromium)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
