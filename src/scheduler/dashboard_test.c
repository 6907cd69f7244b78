/* dashboard_test.c -- the dashboard's renderers: Prometheus text parsed
 * back line by line and compared with the state machine's counts; the JSON
 * per function and per worker; and the size of an update with a
 * 1,000,000-task graph on 100 workers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/net.h"
#include "scheduler/dashboard.h"

static sched S;

static void submit(s_client *c, const char *func, int n, int deps_from, const char *prefix) {
  /* n tasks of func; task i depends on prefix-(i) of an earlier batch if deps_from */
  s_newtask *ts = calloc((size_t)n, sizeof(*ts));
  char **keys = calloc((size_t)n, sizeof(char *));
  char **deps = calloc((size_t)n, sizeof(char *));
  const char **wanted = calloc((size_t)n, sizeof(char *));
  uint32_t *wl = calloc((size_t)n, sizeof(uint32_t));
  const char **dk = calloc((size_t)n, sizeof(char *));
  uint32_t *dl = calloc((size_t)n, sizeof(uint32_t));
  for (int i = 0; i < n; i++) {
    keys[i] = malloc(48);
    snprintf(keys[i], 48, "%s-%d", func, i);
    ts[i].key = keys[i];
    ts[i].klen = (uint32_t)strlen(keys[i]);
    ts[i].func = func;
    ts[i].flen = (uint32_t)strlen(func);
    if (deps_from) {
      deps[i] = malloc(48);
      snprintf(deps[i], 48, "%s-%d", prefix, i);
      dk[i] = deps[i];
      dl[i] = (uint32_t)strlen(deps[i]);
      ts[i].dep_keys = &dk[i];
      ts[i].dep_lens = &dl[i];
      ts[i].ndeps = 1;
    }
    wanted[i] = keys[i];
    wl[i] = ts[i].klen;
  }
  dt__sched_update_graph(&S, c, ts, (uint32_t)n, wanted, wl, (uint32_t)n);
  for (int i = 0; i < n; i++) {
    free(keys[i]);
    free(deps[i]);
  }
  free(ts);
  free(keys);
  free(deps);
  free(wanted);
  free(wl);
  free(dk);
  free(dl);
}

/* the value of a metric line "name{labels} value", or -1 */
static double metric(const char *text, const char *name_and_labels) {
  size_t n = strlen(name_and_labels);
  for (const char *p = text; p && *p;) {
    if (*p != '#' && strncmp(p, name_and_labels, n) == 0 && p[n] == ' ') return atof(p + n + 1);
    p = strchr(p, '\n');
    if (p) p++;
  }
  return -1;
}

static void test_metrics_parse_back(void **state) {
  (void)state;
  dt__sched_init(&S);
  dt_conn *wc = dt__conn_new_detached(), *cc = dt__conn_new_detached();
  s_worker *w = dt__sched_add_worker(&S, wc, "w\"1", "127.0.0.1:1", 2, NULL, NULL, 0);
  s_client *c = dt__sched_add_client(&S, cc, "c");
  submit(c, "load", 10, 0, NULL);
  submit(c, "clean", 10, 1, "load");
  /* finish 4 loads */
  for (int i = 0; i < 4; i++) {
    char k[32];
    snprintf(k, sizeof(k), "load-%d", i);
    dt__sched_task_finished(&S, w, k, (uint32_t)strlen(k), 1000, 0.01, NULL, 0);
  }
  dt_dash_extra x = {.now_s = 100, .tasks_per_s = 4, .bytes_in = 123, .bytes_out = 456,
                     .loop_lag_s = 0.002, .workers_lost = 1,
                     .journal_on = true, .journal_bytes = 4096, .journal_compactions = 2};
  char *m = dt__dash_metrics(&S, &x);
  /* every line is a comment or "name[{labels}] number" */
  int samples = 0;
  for (char *line = m; *line;) {
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    if (*line != '#') {
      *nl = '\0';
      char *sp = strrchr(line, ' ');
      assert_non_null(sp);
      char *end;
      strtod(sp + 1, &end);
      assert_ptr_equal(end, nl);
      *nl = '\n';
      samples++;
    } else {
      assert_true(strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0);
    }
    line = nl + 1;
  }
  assert_true(samples >= 14);
  for (int st = 0; st < TS_COUNT; st++) {
    if (st == TS_FORGOTTEN) continue;
    char name[64];
    snprintf(name, sizeof(name), "dtask_tasks{state=\"%s\"}", dt__task_state_name(st));
    assert_int_equal((int64_t)metric(m, name), S.count[st]);
  }
  assert_int_equal((int)metric(m, "dtask_workers"), 1);
  assert_int_equal((int)metric(m, "dtask_clients"), 1);
  assert_int_equal((int)metric(m, "dtask_tasks_completed_total"), 4);
  assert_int_equal((int)metric(m, "dtask_memory_bytes"), 4000);
  assert_int_equal((int)metric(m, "dtask_transfer_bytes_total{direction=\"in\"}"), 123);
  assert_int_equal((int)metric(m, "dtask_workers_lost_total"), 1);
  assert_int_equal((int)metric(m, "dtask_journal_bytes"), 4096);
  assert_int_equal((int)metric(m, "dtask_journal_compactions_total"), 2);
  assert_true(metric(m, "dtask_event_loop_latency_seconds") > 0.0019);
  assert_int_equal((int)metric(m, "dtask_worker_memory_bytes{worker=\"w\\\"1\"}"), 4000); /* escaped */
  free(m);
  /* per function: loads 4 in memory, 6 processing or queued; cleans waiting */
  char *f = dt__dash_functions_json(&S);
  assert_non_null(strstr(f, "{\"name\":\"load\","));
  assert_non_null(strstr(f, "\"memory\":4,"));
  assert_non_null(strstr(f, "\"finished\":4,"));
  assert_non_null(strstr(f, "{\"name\":\"clean\",\"waiting\":6,"));
  free(f);
  char *wj = dt__dash_workers_json(&S, &x);
  assert_non_null(strstr(wj, "\"name\":\"w\\\"1\""));
  assert_non_null(strstr(wj, "\"nthreads\":2"));
  free(wj);
  x.now_s = dt__now_s();
  char *sj = dt__dash_stream_json(&S, &x);
  assert_non_null(strstr(sj, "\"functions\":[\"load\"]"));
  free(sj);
  dt__sched_destroy(&S);
  dt__conn_free_detached(wc);
  dt__conn_free_detached(cc);
}

/* 1,000,000 tasks in 10 functions on 100 workers, 8,192 tasks in the
 * stream: every payload of an update stays under 100 kB */
static void test_payloads_stay_small(void **state) {
  (void)state;
  dt__sched_init(&S);
  dt_conn *conns[101];
  s_worker *ws[100];
  for (int i = 0; i < 100; i++) {
    char nm[32];
    snprintf(nm, sizeof(nm), "worker-%03d", i);
    conns[i] = dt__conn_new_detached();
    ws[i] = dt__sched_add_worker(&S, conns[i], nm, nm, 8, NULL, NULL, 0);
  }
  conns[100] = dt__conn_new_detached();
  s_client *c = dt__sched_add_client(&S, conns[100], "c");
  for (int f = 0; f < 10; f++) {
    char fn[32];
    snprintf(fn, sizeof(fn), "function_%d", f);
    submit(c, fn, 100000, 0, NULL);
    /* keep the detached outboxes from growing without bound */
    for (int i = 0; i < 101; i++) {
      dt__wbuf_clear(&conns[i]->out);
      dt__wbuf_init(&conns[i]->out);
      for (size_t k = 0; k < conns[i]->nsealed; k++) dt__wbuf_clear(&conns[i]->sealed[k]);
      conns[i]->nsealed = 0;
    }
  }
  assert_int_equal(S.tasks.len, 1000000);
  /* finish some, to fill the stream */
  size_t done = 0;
  for (int round = 0; round < 100 && done < 9000; round++)
    for (int i = 0; i < 100 && done < 9000; i++)
      if (ws[i]->processing.len) {
        s_task *t = ws[i]->processing.v[0];
        dt__sched_task_finished(&S, ws[i], t->key, t->klen, 64, 0.001, NULL, 0);
        done++;
      }
  assert_true(S.stream_n >= 8192);
  dt_dash_extra x = {.now_s = dt__now_s(), .tasks_per_s = 12345};
  char *parts[5] = {dt__dash_summary_json(&S, &x), dt__dash_functions_json(&S),
                    dt__dash_workers_json(&S, &x), dt__dash_stream_json(&S, &x),
                    dt__dash_metrics(&S, &x)};
  size_t total = 0;
  for (int i = 0; i < 5; i++) total += strlen(parts[i]);
  fprintf(stderr, "update with 1,000,000 tasks and 100 workers: summary %zu B, functions %zu B, "
                  "workers %zu B, stream %zu B (all: %zu B); metrics %zu B\n",
          strlen(parts[0]), strlen(parts[1]), strlen(parts[2]), strlen(parts[3]),
          total - strlen(parts[4]), strlen(parts[4]));
  assert_true(total - strlen(parts[4]) < 100 * 1000); /* what the page receives */
  assert_true(strlen(parts[4]) < 100 * 1000);
  for (int i = 0; i < 5; i++) free(parts[i]);
  dt__sched_destroy(&S);
  for (int i = 0; i < 101; i++) dt__conn_free_detached(conns[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metrics_parse_back),
      cmocka_unit_test(test_payloads_stay_small),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
