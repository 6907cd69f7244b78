/* speculate_test.c -- tasks sent ahead to the worker computing their only
 * input (speculate.c), driven event by event: a chain goes ahead behind its
 * first link and each link is promoted to PROCESSING without a second
 * COMPUTE_TASK; a failing input withdraws what was ahead (FREE) and fails
 * it; a retried input withdraws and sends again; a cancelled link
 * chain withdraws everything ahead; a worker leaving forgets what was
 * ahead there; strict restrictions elsewhere keep a task back.  Every step
 * is checked against dt__sched_check (which includes speculate.c's
 * invariant). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/sched_int.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static sched S;

typedef struct {
  int op;
  char key[128];
} msg;
typedef struct {
  msg *m;
  int n, cap;
} box;

static void collect(void) {
  size_t n;
  const s_event *ev = dt__sched_events(&S, &n);
  for (size_t i = 0; i < n; i++) {
    const s_event *e = &ev[i];
    box *b = e->worker ? e->worker->conn : e->client->conn;
    if (!b || (e->worker && e->worker->gone)) continue;
    uint32_t kl;
    const char *k = dt__sched_event_key(&S, e, &kl);
    if (b->n == b->cap) {
      b->cap = b->cap ? b->cap * 2 : 64;
      b->m = realloc(b->m, (size_t)b->cap * sizeof(*b->m));
    }
    msg *m = &b->m[b->n++];
    m->op = e->kind;
    snprintf(m->key, sizeof(m->key), "%.*s", (int)kl, k);
  }
  dt__sched_events_done(&S);
}

/* take: the events for the peer c as one string "OP:key OP:key ..." */
static const char *opname(int op) {
  switch (op) {
  case SEV_COMPUTE: return "C";
  case SEV_FREE: return "F";
  case SEV_AHEAD: return "A";
  default: return "?";
  }
}
static char *take(void *c) {
  static char out[4096];
  collect();
  box *b = c;
  out[0] = '\0';
  for (int i = 0; i < b->n; i++) {
    if (b->m[i].op != SEV_COMPUTE && b->m[i].op != SEV_FREE && b->m[i].op != SEV_AHEAD) continue;
    size_t l = strlen(out);
    snprintf(out + l, sizeof(out) - l, "%s%s:%s", l ? " " : "", opname(b->m[i].op), b->m[i].key);
  }
  b->n = 0;
  return out;
}

static box *conns[64];
static int nconns;
static box *newconn(void) { return conns[nconns++] = calloc(1, sizeof(box)); }

static void check(void) {
  char why[512] = "";
  if (dt__sched_check(&S, why, sizeof(why)) != 0) fail_msg("inconsistent state: %s", why);
}

static int setup(void **state) {
  (void)state;
  dt__sched_init(&S);
  nconns = 0;
  return 0;
}
static int teardown(void **state) {
  (void)state;
  check();
  collect();
  dt__sched_destroy(&S);
  for (int i = 0; i < nconns; i++) {
    free(conns[i]->m);
    free(conns[i]);
  }
  return 0;
}

static s_worker *add_worker(const char *name) {
  return dt__sched_add_worker(&S, newconn(), name, name, 1, NULL, NULL, 0);
}

/* submit a chain keys[0] <- keys[1] <- ... (each depends on the one
 * before), wanting the last one; the first may be retried */
static void chain(s_client *c, const char **keys, int n, int retries_first) {
  s_newtask ts[16] = {0};
  uint32_t dl[16];
  for (int i = 0; i < n; i++) {
    ts[i].key = keys[i];
    ts[i].klen = (uint32_t)strlen(keys[i]);
    ts[i].func = "f";
    ts[i].flen = 1;
    ts[i].retries = i == 0 ? retries_first : 0;
    if (i) {
      ts[i].dep_keys = &keys[i - 1];
      dl[i] = (uint32_t)strlen(keys[i - 1]);
      ts[i].dep_lens = &dl[i];
      ts[i].ndeps = 1;
    }
  }
  uint32_t wl = (uint32_t)strlen(keys[n - 1]);
  dt__sched_update_graph(&S, c, ts, (uint32_t)n, &keys[n - 1], &wl, 1);
}

static int state_of(const char *key) {
  s_task *t = dt__sched_get_task(&S, key, (uint32_t)strlen(key));
  return t ? (int)t->state : TS_FORGOTTEN;
}
static bool ahead(const char *key) {
  s_task *t = dt__sched_get_task(&S, key, (uint32_t)strlen(key));
  return t && t->ahead;
}
static void finish(s_worker *w, const char *key) {
  dt__sched_task_finished(&S, w, key, (uint32_t)strlen(key), 8, 0.001, NULL, 0);
}

static const char *K[] = {"a", "b", "c", "d"};

static void test_chain_goes_ahead_and_is_promoted(void **state) {
  (void)state;
  s_worker *w = add_worker("w1");
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  chain(c, K, 4, 0);
  check();
  assert_string_equal(take(w->conn), "C:a A:b A:c A:d");
  assert_true(ahead("b") && ahead("c") && ahead("d"));
  assert_int_equal(state_of("b"), TS_WAITING);
  finish(w, "a");
  check();
  assert_int_equal(state_of("b"), TS_PROCESSING);
  assert_false(ahead("b"));
  assert_string_equal(take(w->conn), ""); /* no COMPUTE of b: w has it */
  finish(w, "b");
  finish(w, "c");
  finish(w, "d");
  check();
  assert_int_equal(state_of("d"), TS_MEMORY);
  assert_int_equal(S.ahead.len, 0);
}

static void test_failure_withdraws(void **state) {
  (void)state;
  s_worker *w = add_worker("w1");
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  chain(c, K, 4, 0);
  take(w->conn);
  dt__sched_task_erred(&S, w, "b", 1, DT_ETASK, "f", "not yet"); /* stale: b is not processing */
  assert_true(ahead("b"));
  dt__sched_task_erred(&S, w, "a", 1, DT_ETASK, "f", "boom");
  check();
  assert_int_equal(state_of("d"), TS_ERRED);
  char *ev = take(w->conn);
  assert_non_null(strstr(ev, "F:b"));
  assert_non_null(strstr(ev, "F:c"));
  assert_non_null(strstr(ev, "F:d"));
  assert_int_equal(S.ahead.len, 0);
}

static void test_retry_withdraws_and_sends_again(void **state) {
  (void)state;
  s_worker *w = add_worker("w1");
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  chain(c, K, 3, 1);
  take(w->conn);
  dt__sched_task_erred(&S, w, "a", 1, DT_ETASK, "f", "once");
  check();
  assert_int_equal(state_of("a"), TS_PROCESSING);
  assert_string_equal(take(w->conn), "F:b F:c C:a A:b A:c");
  finish(w, "a");
  finish(w, "b");
  finish(w, "c");
  check();
  assert_int_equal(state_of("c"), TS_MEMORY);
}

static void test_cancel_withdraws_what_follows(void **state) {
  (void)state;
  s_worker *w = add_worker("w1");
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  chain(c, K, 4, 0);
  take(w->conn);
  dt__sched_client_cancel(&S, c, "d", 1); /* the wanted end: the whole chain goes */
  check();
  char *ev = take(w->conn);
  assert_non_null(strstr(ev, "F:a")); /* running: released there */
  assert_non_null(strstr(ev, "F:b"));
  assert_non_null(strstr(ev, "F:c"));
  assert_non_null(strstr(ev, "F:d"));
  assert_int_equal(state_of("b"), TS_FORGOTTEN);
  dt__sched_remove_client(&S, c);
  check();
  assert_int_equal(S.ahead.len, 0);
}

static void test_worker_gone(void **state) {
  (void)state;
  s_worker *w1 = add_worker("w1");
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  chain(c, K, 4, 0);
  take(w1->conn);
  s_worker *w2 = add_worker("w2");
  dt__sched_remove_worker(&S, w1, false);
  check();
  assert_int_equal(state_of("a"), TS_PROCESSING);
  assert_string_equal(take(w2->conn), "C:a A:b A:c A:d"); /* ahead again, on w2 */
  finish(w2, "a");
  check();
  assert_int_equal(state_of("b"), TS_PROCESSING);
  dt__sched_remove_worker(&S, w2, false);
  check();
  assert_int_equal(S.ahead.len, 0);
  dt__sched_remove_client(&S, c);
  check();
  assert_int_equal(S.tasks.len, 0);
}

static void test_restricted_elsewhere_stays_back(void **state) {
  (void)state;
  s_worker *w1 = add_worker("w1");
  s_worker *w2 = add_worker("w2");
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  const char *L[] = {"x", "y"};
  const char *r1 = "w1", *r2 = "w2";
  uint32_t dl = 1, rl = 2, wl = 1;
  s_newtask ts[2] = {
      {.key = "x", .klen = 1, .func = "f", .flen = 1, .restrict_to = &r1, .restrict_lens = &rl, .nrestrict = 1},
      {.key = "y", .klen = 1, .func = "f", .flen = 1, .dep_keys = &L[0], .dep_lens = &dl, .ndeps = 1,
       .restrict_to = &r2, .restrict_lens = &rl, .nrestrict = 1}};
  dt__sched_update_graph(&S, c, ts, 2, &L[1], &wl, 1);
  check();
  assert_int_equal(state_of("x"), TS_PROCESSING);
  assert_false(ahead("y")); /* it may only run on w2 */
  assert_string_equal(take(w1->conn), "C:x");
  assert_string_equal(take(w2->conn), "");
  finish(w1, "x");
  check();
  assert_int_equal(state_of("y"), TS_PROCESSING);
  assert_string_equal(take(w2->conn), "C:y");
  dt__sched_remove_client(&S, c);
  check();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_chain_goes_ahead_and_is_promoted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failure_withdraws, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retry_withdraws_and_sends_again, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_withdraws_what_follows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_worker_gone, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restricted_elsewhere_stays_back, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
