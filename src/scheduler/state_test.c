/* state_test.c -- the scheduler's state machine driven event by event; the
 * events it emits are read back directly (each peer's conn handle is a
 * mailbox here): transitions, placement, saturation, errors, retries,
 * restrictions, releases, and the table of legal transitions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "scheduler/sched_int.h"
#include "scheduler/query.h"

/* tests list tasks with short positional initialisers */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static sched S;

/* ---- helpers */

typedef struct {
  int op; /* s_event_kind */
  char key[128];
} msg;

/* A peer's mailbox: its conn handle in these tests. */
typedef struct {
  msg *m;
  int n, cap;
} box;

/* collect: the sched's events into their peers' mailboxes, then drained */
static void collect(void) {
  size_t n;
  const s_event *ev = dt__sched_events(&S, &n);
  for (size_t i = 0; i < n; i++) {
    const s_event *e = &ev[i];
    box *b = e->worker ? e->worker->conn : e->client->conn;
    if (!b) continue;
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

/* take_msgs: the events for the peer whose handle is c (kind and key),
 * then empty its mailbox */
static int take_msgs(void *c, msg *out, int cap) {
  collect();
  box *b = c;
  int n = b->n;
  for (int i = 0; i < n && i < cap; i++) out[i] = b->m[i];
  b->n = 0;
  return n;
}

static int count_op(const msg *ms, int n, int op, const char *key) {
  int k = 0;
  for (int i = 0; i < n; i++) k += ms[i].op == op && (!key || strcmp(ms[i].key, key) == 0);
  return k;
}

typedef struct {
  const char *key;
  const char *deps[8];
  int retries;
  const char *restrict_to;
  const char *resource;
  double amount;
  int64_t priority;
  bool loose;
} tdef;

static void submit(s_client *c, const tdef *defs, int n, const char *const *wanted, int nw) {
  s_newtask *ts = calloc(n > 0 ? (size_t)n : 1, sizeof(*ts));
  uint32_t *wl = calloc((size_t)nw + 1, sizeof(uint32_t));
  for (int i = 0; i < n; i++) {
    s_newtask *t = &ts[i];
    t->key = defs[i].key;
    t->klen = (uint32_t)strlen(defs[i].key);
    t->func = "f";
    t->flen = 1;
    t->dep_keys = calloc(8, sizeof(char *));
    t->dep_lens = calloc(8, sizeof(uint32_t));
    for (int k = 0; k < 8 && defs[i].deps[k]; k++) {
      t->dep_keys[k] = defs[i].deps[k];
      t->dep_lens[k] = (uint32_t)strlen(defs[i].deps[k]);
      t->ndeps++;
    }
    t->retries = defs[i].retries;
    t->priority = defs[i].priority;
    t->loose = defs[i].loose;
    if (defs[i].restrict_to) {
      t->restrict_to = (const char **)&defs[i].restrict_to;
      static uint32_t rl[64];
      rl[i % 64] = (uint32_t)strlen(defs[i].restrict_to);
      t->restrict_lens = &rl[i % 64];
      t->nrestrict = 1;
    }
    if (defs[i].resource) {
      t->res_names = (const char **)&defs[i].resource;
      static uint32_t rnl[64];
      rnl[i % 64] = (uint32_t)strlen(defs[i].resource);
      t->res_name_lens = &rnl[i % 64];
      t->res_amounts = (double *)&defs[i].amount;
      t->nres = 1;
    }
  }
  for (int i = 0; i < nw; i++) wl[i] = (uint32_t)strlen(wanted[i]);
  dt__sched_update_graph(&S, c, ts, (uint32_t)n, (const char **)wanted, wl, (uint32_t)nw);
  for (int i = 0; i < n; i++) {
    free(ts[i].dep_keys);
    free(ts[i].dep_lens);
  }
  free(ts);
  free(wl);
}

static int state_of(const char *key) {
  s_task *t = dt__sched_get_task(&S, key, (uint32_t)strlen(key));
  return t ? (int)t->state : TS_FORGOTTEN;
}

static void finish(s_worker *w, const char *key) {
  dt__sched_task_finished(&S, w, key, (uint32_t)strlen(key), 100, 0.001, NULL, 0);
}

static void check(void) {
  char why[512] = "";
  if (dt__sched_check(&S, why, sizeof(why)) != 0) fail_msg("inconsistent state: %s", why);
}

static box *conns[512];
static int nconns;
static box *newconn(void) { return conns[nconns++] = calloc(1, sizeof(box)); }

static int setup(void **state) {
  (void)state;
  dt__sched_init(&S);
  nconns = 0;
  return 0;
}
static int teardown(void **state) {
  (void)state;
  check();
  dt__sched_destroy(&S);
  for (int i = 0; i < nconns; i++) {
    free(conns[i]->m);
    free(conns[i]);
  }
  return 0;
}

static s_worker *add_worker(const char *name, int nthreads) {
  return dt__sched_add_worker(&S, newconn(), name, name, nthreads, NULL, NULL, 0);
}

/* ---- tests */

static void test_one_task_lifecycle(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 2);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  msg ms[16];
  submit(c, (tdef[]){{"a"}}, 1, (const char *[]){"a"}, 1);
  assert_int_equal(state_of("a"), TS_PROCESSING);
  int n = take_msgs(w->conn, ms, 16);
  assert_int_equal(n, 1);
  assert_int_equal(ms[0].op, SEV_COMPUTE);
  assert_string_equal(ms[0].key, "a");
  check();
  finish(w, "a");
  assert_int_equal(state_of("a"), TS_MEMORY);
  n = take_msgs(c->conn, ms, 16);
  assert_int_equal(count_op(ms, n, SEV_IN_MEMORY, "a"), 1);
  dt__sched_client_release(&S, c, "a", 1);
  assert_int_equal(state_of("a"), TS_FORGOTTEN);
  n = take_msgs(w->conn, ms, 16);
  assert_int_equal(count_op(ms, n, SEV_FREE, "a"), 1);
  assert_int_equal(S.tasks.len, 0);
}

static void test_diamond_releases_intermediates(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 4);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  msg ms[16];
  submit(c, (tdef[]){{"a"}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}}, 4,
         (const char *[]){"d"}, 1);
  assert_int_equal(state_of("a"), TS_PROCESSING);
  assert_int_equal(state_of("b"), TS_WAITING);
  assert_int_equal(state_of("d"), TS_WAITING);
  check();
  finish(w, "a");
  assert_int_equal(state_of("b"), TS_PROCESSING);
  assert_int_equal(state_of("c"), TS_PROCESSING);
  take_msgs(w->conn, ms, 16);
  finish(w, "b");
  assert_int_equal(state_of("a"), TS_MEMORY); /* c still needs it */
  finish(w, "c");
  assert_int_equal(state_of("a"), TS_RELEASED); /* nobody needs its data */
  int n = take_msgs(w->conn, ms, 16);
  assert_int_equal(count_op(ms, n, SEV_FREE, "a"), 1);
  assert_int_equal(count_op(ms, n, SEV_COMPUTE, "d"), 1);
  check();
  finish(w, "d");
  assert_int_equal(state_of("b"), TS_RELEASED);
  assert_int_equal(state_of("d"), TS_MEMORY);
  n = take_msgs(c->conn, ms, 16);
  assert_int_equal(count_op(ms, n, SEV_IN_MEMORY, "d"), 1);
  assert_int_equal(count_op(ms, n, SEV_IN_MEMORY, "a"), 0); /* not wanted */
  dt__sched_client_release(&S, c, "d", 1);
  assert_int_equal(S.tasks.len, 0);
}

static void test_error_propagates_to_dependents(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  msg ms[16];
  submit(c, (tdef[]){{"a"}, {"b", {"a"}}, {"x"}}, 3, (const char *[]){"b", "x"}, 2);
  dt__sched_task_erred(&S, w, "a", 1, DT_ETASK, "f", "boom");
  assert_int_equal(state_of("b"), TS_ERRED);
  int n = take_msgs(c->conn, ms, 16);
  assert_int_equal(count_op(ms, n, SEV_ERRED, "b"), 1);
  finish(w, "x"); /* the rest of the graph goes on */
  assert_int_equal(state_of("x"), TS_MEMORY);
  check();
  dt__sched_client_release(&S, c, "b", 1);
  dt__sched_client_release(&S, c, "x", 1);
  assert_int_equal(S.tasks.len, 0);
}

static void test_retries(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  msg ms[16];
  submit(c, (tdef[]){{"a", {0}, 1}}, 1, (const char *[]){"a"}, 1);
  take_msgs(w->conn, ms, 16);
  dt__sched_task_erred(&S, w, "a", 1, DT_ETASK, "f", "flaky");
  assert_int_equal(state_of("a"), TS_PROCESSING); /* sent again */
  assert_int_equal(count_op(ms, take_msgs(w->conn, ms, 16), SEV_COMPUTE, "a"), 1);
  dt__sched_task_erred(&S, w, "a", 1, DT_ETASK, "f", "flaky again");
  assert_int_equal(state_of("a"), TS_ERRED); /* out of retries */
  dt__sched_client_release(&S, c, "a", 1);
  assert_int_equal(S.tasks.len, 0);
}

/* Client.retry: the failed root and its failed dependent run again */
static void test_retry_erred(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  msg ms[16];
  submit(c, (tdef[]){{"a"}, {"b", {"a"}}}, 2, (const char *[]){"b"}, 1);
  take_msgs(w->conn, ms, 16);
  dt__sched_task_erred(&S, w, "a", 1, DT_ETASK, "f", "once");
  assert_int_equal(state_of("b"), TS_ERRED);
  check();
  s_task *b = dt__sched_get_task(&S, "b", 1);
  assert_int_equal(dt__sched_retry(&S, b), 2); /* b and its root a */
  assert_int_equal(state_of("a"), TS_PROCESSING);
  assert_int_equal(state_of("b"), TS_WAITING);
  assert_int_equal(count_op(ms, take_msgs(w->conn, ms, 16), SEV_COMPUTE, "a"), 1);
  check();
  assert_int_equal(dt__sched_retry(&S, b), 0); /* not erred: left alone */
  finish(w, "a");
  finish(w, "b");
  assert_int_equal(state_of("b"), TS_MEMORY);
  assert_int_equal(count_op(ms, take_msgs(c->conn, ms, 16), SEV_IN_MEMORY, "b"), 1);
  check();
  dt__sched_client_release(&S, c, "b", 1);
  assert_int_equal(S.tasks.len, 0);
}

static void test_root_tasks_queue_on_scheduler(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  enum { N = 3000 };
  static tdef defs[N];
  static char keys[N][16];
  static const char *wanted[N];
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof(keys[i]), "t%d", i);
    defs[i] = (tdef){keys[i]};
    wanted[i] = keys[i];
  }
  submit(c, defs, N, wanted, N);
  int cap = dt__sched_worker_capacity(&S, w);
  assert_true(cap > 1 && cap < N);
  assert_int_equal(S.count[TS_PROCESSING], cap);
  assert_int_equal(S.count[TS_QUEUED], N - cap);
  check();
  /* a second worker joins and gets work at once */
  s_worker *w2 = add_worker("w2", 1);
  assert_true(w2->processing.len > 0);
  /* finishing one task hands out one more */
  int64_t queued = S.count[TS_QUEUED];
  s_task *first = w->processing.v[0];
  /* a duration equal to the default estimate keeps the capacity as it is */
  dt__sched_task_finished(&S, w, first->key, first->klen, 100, 0.0005, NULL, 0);
  assert_int_equal(S.count[TS_QUEUED], queued - 1);
  check();
}

static void test_placement_follows_data(void **state) {
  (void)state;
  s_worker *w1 = add_worker("w1", 1);
  s_worker *w2 = add_worker("w2", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  submit(c, (tdef[]){{"a", {0}, 0, "w2"}}, 1, (const char *[]){"a"}, 1);
  s_task *a = dt__sched_get_task(&S, "a", 1);
  assert_ptr_equal(a->processing_on, w2);
  finish(w2, "a");
  submit(c, (tdef[]){{"b", {"a"}}}, 1, (const char *[]){"b"}, 1);
  s_task *b = dt__sched_get_task(&S, "b", 1);
  assert_ptr_equal(b->processing_on, w2); /* where its data is */
  (void)w1;
}

static void test_restrictions_and_resources(void **state) {
  (void)state;
  add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  submit(c, (tdef[]){{"r", {0}, 0, "w2"}, {"g", {0}, 0, NULL, "GPU", 1}}, 2,
         (const char *[]){"r", "g"}, 2);
  assert_int_equal(state_of("r"), TS_NO_WORKER);
  assert_int_equal(state_of("g"), TS_NO_WORKER);
  s_worker *w2 = add_worker("w2", 1);
  assert_int_equal(state_of("r"), TS_PROCESSING);
  assert_ptr_equal(dt__sched_get_task(&S, "r", 1)->processing_on, w2);
  assert_int_equal(state_of("g"), TS_NO_WORKER); /* w2 has no GPU either */
  char **rn = malloc(sizeof(char *));
  double *ra = malloc(sizeof(double));
  rn[0] = strdup("GPU");
  ra[0] = 2;
  s_worker *w3 = dt__sched_add_worker(&S, newconn(), "w3", "w3", 1, rn, ra, 1);
  assert_int_equal(state_of("g"), TS_PROCESSING);
  assert_ptr_equal(dt__sched_get_task(&S, "g", 1)->processing_on, w3);
}

static void test_two_clients_share_a_key(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 1);
  s_client *c1 = dt__sched_add_client(&S, newconn(), "c1");
  s_client *c2 = dt__sched_add_client(&S, newconn(), "c2");
  msg ms[16];
  submit(c1, (tdef[]){{"x"}}, 1, (const char *[]){"x"}, 1);
  submit(c2, (tdef[]){{"x"}}, 1, (const char *[]){"x"}, 1);
  assert_int_equal(S.tasks.len, 1);
  finish(w, "x");
  assert_int_equal(count_op(ms, take_msgs(c1->conn, ms, 16), SEV_IN_MEMORY, "x"), 1);
  assert_int_equal(count_op(ms, take_msgs(c2->conn, ms, 16), SEV_IN_MEMORY, "x"), 1);
  take_msgs(w->conn, ms, 16);
  dt__sched_client_release(&S, c1, "x", 1);
  assert_int_equal(state_of("x"), TS_MEMORY);
  assert_int_equal(count_op(ms, take_msgs(w->conn, ms, 16), SEV_FREE, NULL), 0);
  dt__sched_remove_client(&S, c2); /* leaving releases what it held */
  assert_int_equal(S.tasks.len, 0);
  assert_int_equal(count_op(ms, take_msgs(w->conn, ms, 16), SEV_FREE, "x"), 1);
}

static void test_worker_loss_reschedules_and_recomputes(void **state) {
  (void)state;
  s_worker *w1 = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  submit(c, (tdef[]){{"a"}, {"b", {"a"}}}, 2, (const char *[]){"b"}, 1);
  finish(w1, "a");
  assert_int_equal(state_of("b"), TS_PROCESSING);
  s_worker *w2 = add_worker("w2", 1);
  dt__sched_remove_worker(&S, w1, true); /* held a, was running b */
  check();
  assert_int_equal(state_of("a"), TS_PROCESSING); /* recomputed on w2 */
  assert_ptr_equal(dt__sched_get_task(&S, "a", 1)->processing_on, w2);
  assert_int_equal(state_of("b"), TS_WAITING);
  finish(w2, "a");
  finish(w2, "b");
  assert_int_equal(state_of("b"), TS_MEMORY);
}

static void test_killed_worker_after_allowed_failures(void **state) {
  (void)state;
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  s_worker *w = add_worker("w0", 1);
  submit(c, (tdef[]){{"bad"}, {"dep", {"bad"}}, {"ok"}}, 3, (const char *[]){"dep", "ok"}, 2);
  finish(w, "ok");
  /* Dask's rule for a worker with no nanny: every task processing there is
   * suspect; the 4th death (allowed_failures 3) fails it */
  for (int i = 1; i <= 4; i++) {
    assert_int_equal(state_of("bad"), TS_PROCESSING);
    char nm[8];
    snprintf(nm, sizeof(nm), "w%d", i);
    s_worker *next = add_worker(nm, 1);
    dt__sched_remove_worker(&S, w, true);
    check();
    w = next;
  }
  s_task *dep = dt__sched_get_task(&S, "dep", 3);
  assert_non_null(dep);
  assert_int_equal(dep->state, TS_ERRED);
  assert_int_equal(RARE(dep)->err_code, DT_EKILLED);
  assert_non_null(strstr(RARE(dep)->err_msg, "on 4 different workers"));
  /* "ok" was lost with the first worker and recomputed */
  assert_true(state_of("ok") == TS_PROCESSING || state_of("ok") == TS_MEMORY);
}

static void test_nanny_report_counts_only_running_keys(void **state) {
  (void)state;
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  s_worker *w = add_worker("w0", 2);
  w->nanny_token = 7;
  submit(c, (tdef[]){{"crash"}, {"innocent"}}, 2, (const char *[]){"crash", "innocent"}, 2);
  const char *keys[] = {"crash"};
  uint32_t lens[] = {5};
  for (int i = 1; i <= 3; i++) {
    s_worker *next = add_worker(i == 1 ? "w1" : i == 2 ? "w2" : "w3", 2);
    next->nanny_token = 7 + (uint64_t)i;
    dt__sched_remove_worker(&S, w, false); /* connection drop of a nanny's worker */
    dt__sched_worker_died(&S, "w", "killed by signal 11", keys, lens, 1);
    check();
    w = next;
  }
  assert_int_equal(dt__sched_get_task(&S, "crash", 5)->suspicious, 3);
  assert_int_equal(dt__sched_get_task(&S, "innocent", 8)->suspicious, 0);
  assert_int_equal(state_of("crash"), TS_PROCESSING); /* 3 deaths allowed */
  dt__sched_worker_died(&S, "w", "killed by signal 11", keys, lens, 1);
  assert_int_equal(state_of("crash"), TS_ERRED);
  assert_int_equal(RARE(dt__sched_get_task(&S, "crash", 5))->err_code, DT_EKILLED);
  assert_int_equal(state_of("innocent"), TS_PROCESSING);
  check();
}

static void test_worker_reregisters_held_keys(void **state) {
  (void)state;
  msg ms[16];
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  s_worker *w1 = add_worker("w1", 1);
  submit(c, (tdef[]){{"a"}, {"b", {"a"}}}, 2, (const char *[]){"b"}, 1);
  finish(w1, "a");
  dt__sched_remove_worker(&S, w1, false); /* connection lost; no worker left */
  assert_int_equal(state_of("a"), TS_NO_WORKER);
  /* the same process comes back holding "a", and something forgotten */
  s_worker *w2 = dt__sched_add_worker_only(&S, newconn(), "w1-again", "w1-again", 1, NULL, NULL, 0);
  dt__sched_worker_has_key(&S, w2, "a", 1, 10);
  dt__sched_worker_has_key(&S, w2, "zzz", 3, 10);
  dt__sched_worker_place(&S, w2);
  check();
  assert_int_equal(state_of("a"), TS_MEMORY);
  assert_int_equal(state_of("b"), TS_PROCESSING);
  int n = take_msgs(w2->conn, ms, 16);
  assert_int_equal(count_op(ms, n, SEV_FREE, "zzz"), 1);
  assert_int_equal(count_op(ms, n, SEV_COMPUTE, "b"), 1);
  assert_int_equal(count_op(ms, n, SEV_COMPUTE, "a"), 0); /* not recomputed */
  assert_int_equal(count_op(ms, n, SEV_FREE, "a"), 0);    /* and kept */
}

static void test_dependency_cycles_fail_and_are_released(void **state) {
  (void)state;
  add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  msg ms[16];
  /* b -> c -> b (and c also needs a key nobody knows), d depends on the
   * cycle, e is fine */
  submit(c, (tdef[]){{"a"}, {"b", {"a", "c"}}, {"c", {"b", "zz"}}, {"d", {"b"}}, {"e", {"a"}}}, 5,
         (const char *[]){"d", "e"}, 2);
  check();
  assert_int_equal(state_of("d"), TS_ERRED);
  s_task *d = dt__sched_get_task(&S, "d", 1);
  assert_true(RARE(d)->err_code == DT_EINVAL || RARE(d)->err_code == DT_ENOTFOUND);
  assert_int_equal(count_op(ms, take_msgs(c->conn, ms, 16), SEV_ERRED, "d"), 1);
  assert_int_not_equal(state_of("e"), TS_ERRED);
  /* a plain two-task cycle says so */
  submit(c, (tdef[]){{"x", {"y"}}, {"y", {"x"}}}, 2, (const char *[]){"x"}, 1);
  check();
  assert_int_equal(state_of("x"), TS_ERRED);
  assert_int_equal(RARE(dt__sched_get_task(&S, "x", 1))->err_code, DT_EINVAL);
  assert_non_null(strstr(RARE(dt__sched_get_task(&S, "x", 1))->err_msg, "cycle"));
  dt__sched_remove_client(&S, c); /* nothing may stay behind */
  check();
  assert_int_equal(S.tasks.len, 0);
}

static void test_missing_data_forgets_that_copy(void **state) {
  (void)state;
  msg ms[16];
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  s_worker *w1 = add_worker("w1", 1);
  submit(c, (tdef[]){{"a"}}, 1, (const char *[]){"a"}, 1);
  finish(w1, "a");
  s_worker *w2 = add_worker("w2", 1);
  dt__sched_worker_paused(&S, w1, true); /* so that b goes to w2 */
  submit(c, (tdef[]){{"b", {"a"}}}, 1, (const char *[]){"b"}, 1);
  dt__sched_worker_paused(&S, w1, false);
  s_task *b = dt__sched_get_task(&S, "b", 1);
  assert_ptr_equal(b->processing_on, w2);
  take_msgs(w1->conn, ms, 16);
  /* w2 could not fetch a from w1 (it died, say, and we do not know yet) */
  dt__sched_missing_data(&S, w2, "b", 1, "a", 1, "w1");
  check();
  assert_int_equal(count_op(ms, take_msgs(w1->conn, ms, 16), SEV_FREE, "a"), 1);
  assert_int_equal(dt__sched_get_task(&S, "a", 1)->who_has.len, 0);
  assert_int_equal(state_of("a"), TS_PROCESSING); /* recomputed */
  assert_int_equal(state_of("b"), TS_WAITING);
  s_worker *on = dt__sched_get_task(&S, "a", 1)->processing_on;
  finish(on, "a");
  assert_int_equal(state_of("b"), TS_PROCESSING);
  check();
}

static void test_unknown_dependency_errs(void **state) {
  (void)state;
  add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  msg ms[16];
  submit(c, (tdef[]){{"b", {"nope"}}}, 1, (const char *[]){"b"}, 1);
  assert_int_equal(state_of("b"), TS_ERRED);
  s_task *b = dt__sched_get_task(&S, "b", 1);
  assert_non_null(strstr(RARE(b)->err_msg, "'nope'"));
  assert_int_equal(count_op(ms, take_msgs(c->conn, ms, 16), SEV_ERRED, "b"), 1);
  dt__sched_client_release(&S, c, "b", 1);
  assert_int_equal(S.tasks.len, 0);
}

static void test_graph_order_finishes_branches(void **state) {
  (void)state;
  /* a tree over 8 leaves submitted as one graph: leaves run in depth-first
   * order, so sibling pairs finish together and their parent can run */
  s_worker *w = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  tdef defs[] = {{"l0"}, {"l1"}, {"l2"}, {"l3"}, {"l4"}, {"l5"}, {"l6"}, {"l7"},
                 {"p0", {"l0", "l1"}}, {"p1", {"l2", "l3"}}, {"p2", {"l4", "l5"}}, {"p3", {"l6", "l7"}},
                 {"q0", {"p0", "p1"}}, {"q1", {"p2", "p3"}}, {"r", {"q0", "q1"}}};
  /* submitted in a scrambled order */
  tdef scr[15];
  int perm[15] = {7, 3, 5, 1, 6, 2, 4, 0, 8, 9, 10, 11, 12, 13, 14};
  for (int i = 0; i < 15; i++) scr[i] = defs[perm[i]];
  submit(c, scr, 15, (const char *[]){"r"}, 1);
  int cap = dt__sched_worker_capacity(&S, w);
  (void)cap;
  uint64_t o[8];
  for (int i = 0; i < 8; i++) {
    char k[4];
    snprintf(k, sizeof(k), "l%d", i);
    o[i] = dt__sched_get_task(&S, k, 2)->order;
  }
  for (int i = 0; i < 7; i++) assert_true(o[i] < o[i + 1]);
}

static void test_cancel_releases(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  msg ms[16];
  submit(c, (tdef[]){{"a"}}, 1, (const char *[]){"a"}, 1);
  take_msgs(w->conn, ms, 16);
  dt__sched_client_cancel(&S, c, "a", 1);
  assert_int_equal(S.tasks.len, 0);
  assert_int_equal(count_op(ms, take_msgs(c->conn, ms, 16), SEV_CANCELLED, "a"), 1);
  assert_int_equal(count_op(ms, take_msgs(w->conn, ms, 16), SEV_FREE, "a"), 1);
  finish(w, "a"); /* late result from the worker: it is told to drop it */
  assert_int_equal(count_op(ms, take_msgs(w->conn, ms, 16), SEV_FREE, "a"), 1);
}

static void test_user_priority_jumps_the_queue(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  msg ms[64];
  static char keys[20][8];
  tdef low[20];
  const char *wanted[20];
  for (int i = 0; i < 20; i++) {
    snprintf(keys[i], sizeof(keys[i]), "low%d", i);
    low[i] = (tdef){keys[i]};
    wanted[i] = keys[i];
  }
  submit(c, low, 20, wanted, 20);
  tdef high = {"high"};
  high.priority = 10;
  submit(c, &high, 1, (const char *[]){"high"}, 1);
  assert_int_equal(state_of("high"), TS_QUEUED); /* the worker is full */
  take_msgs(w->conn, ms, 64);
  s_task *first = w->processing.v[0];
  dt__sched_task_finished(&S, w, first->key, first->klen, 1, 0.0005, NULL, 0);
  int n = take_msgs(w->conn, ms, 64);
  assert_int_equal(n, 1);
  assert_string_equal(ms[0].key, "high"); /* before 15 older, lower tasks */
}

static void test_loose_restrictions_fall_back(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  tdef strict = {"strict", {0}, 0, "elsewhere"};
  tdef loose = {"loose", {0}, 0, "elsewhere"};
  loose.loose = true;
  submit(c, (tdef[]){strict, loose}, 2, (const char *[]){"strict", "loose"}, 2);
  assert_int_equal(state_of("strict"), TS_NO_WORKER);
  assert_int_equal(state_of("loose"), TS_PROCESSING);
  assert_ptr_equal(dt__sched_get_task(&S, "loose", 5)->processing_on, w);
}

/* Random graphs and random events; after each one every invariant holds,
 * and once every client is gone the scheduler holds nothing. */
static void test_random_events_keep_invariants(void **state) {
  (void)state;
  unsigned seed = getenv("DT_SEED") ? (unsigned)atoi(getenv("DT_SEED")) : 20261129u;
  srand(seed);
  s_worker *ws[8];
  int nw = 0;
  char wname[32];
  for (; nw < 3; nw++) {
    snprintf(wname, sizeof(wname), "w%d", nw);
    ws[nw] = add_worker(wname, 1 + nw);
  }
  s_client *cs[2] = {dt__sched_add_client(&S, newconn(), "c0"), dt__sched_add_client(&S, newconn(), "c1")};
  static char keys[4000][16];
  static int owner[4000]; /* client index holding the key, -1 when released */
  int nkeys = 0;
  msg ms[1];
  for (int step = 0; step < 6000; step++) {
    int what = rand() % 100;
    if (what < 25 && nkeys < 4000 - 8) {
      /* a client submits a batch of up to 8 tasks depending on its keys or
       * on earlier tasks of the batch */
      int ci = rand() % 2;
      int n = 1 + rand() % 8;
      tdef defs[8];
      const char *wanted[8];
      int nwant = 0;
      memset(defs, 0, sizeof(defs));
      for (int i = 0; i < n; i++) {
        int k = nkeys++;
        snprintf(keys[k], sizeof(keys[k]), "k%d", k);
        owner[k] = -1;
        defs[i].key = keys[k];
        defs[i].retries = rand() % 4 == 0;
        int nd = rand() % 3;
        for (int d = 0; d < nd; d++) {
          int cand = rand() % 2 ? k - 1 - rand() % (i + 1) : rand() % nkeys;
          /* mostly keys it holds or new ones; sometimes any key, which may
           * be another client's, or forgotten (an unknown dependency) */
          if (cand >= 0 && cand < k && (cand >= k - i || owner[cand] == ci || rand() % 20 == 0))
            defs[i].deps[d] = keys[cand];
          else break;
        }
        if (rand() % 3 || i == n - 1) {
          wanted[nwant++] = keys[k];
          owner[k] = ci;
        }
      }
      submit(cs[ci], defs, n, wanted, nwant);
    } else if (what < 80) {
      /* a worker finishes (or fails) one of its tasks */
      s_worker *w = ws[rand() % nw];
      if (!w->processing.len) continue;
      s_task *t = w->processing.v[rand() % w->processing.len];
      if (rand() % 10) dt__sched_task_finished(&S, w, t->key, t->klen, 1 + rand() % 1000, 0.001, NULL, 0);
      else dt__sched_task_erred(&S, w, t->key, t->klen, DT_ETASK, "f", "random failure");
    } else if (what < 92) {
      /* a client releases (or cancels) a key it holds */
      int k = rand() % (nkeys ? nkeys : 1);
      if (!nkeys || owner[k] < 0) continue;
      if (rand() % 4) dt__sched_client_release(&S, cs[owner[k]], keys[k], (uint32_t)strlen(keys[k]));
      else dt__sched_client_cancel(&S, cs[owner[k]], keys[k], (uint32_t)strlen(keys[k]));
      owner[k] = -1;
    } else if (what < 96 && nw > 1) {
      /* a worker leaves; another joins */
      int i = rand() % nw;
      dt__sched_remove_worker(&S, ws[i], true);
      ws[i] = ws[--nw];
      snprintf(wname, sizeof(wname), "w%d", 100 + step);
      ws[nw++] = add_worker(wname, 1 + rand() % 3);
    } else if (what < 98) {
      /* a stale message about a key the worker does not run */
      s_worker *w = ws[rand() % nw];
      dt__sched_task_finished(&S, w, "nope", 4, 1, 0.001, NULL, 0);
      dt__sched_task_erred(&S, w, "nope", 4, DT_ETASK, "f", "x");
    }
    for (int i = 0; i < nconns; i++) take_msgs(conns[i], ms, 0);
    char why[512] = "";
    if (dt__sched_check(&S, why, sizeof(why)) != 0) fail_msg("after step %d: %s", step, why);
  }
  assert_true(S.tasks_completed > 500);
  /* everyone leaves: nothing may stay behind */
  dt__sched_remove_client(&S, cs[0]);
  dt__sched_remove_client(&S, cs[1]);
  check();
  if (getenv("DEBUG_LEAK"))
    for (size_t i = 0, shown = 0; i < S.tasks.cap && shown < 12; i++) {
      if (!S.tasks.slots[i].t) continue;
      s_task *t = S.tasks.slots[i].t;
      fprintf(stderr, "left: %s state=%s wanted=%u waiters=%u dependents=%zu deps=%u holds=%d\n", t->key,
              dt__task_state_name(t->state), t->wanted_by.len, t->waiters, (size_t)t->dependents.len, t->ndeps, t->holds_deps);
      shown++;
    }
  assert_int_equal(S.tasks.len, 0);
  for (int st = 0; st < TS_COUNT; st++) assert_int_equal(S.count[st], 0);
  assert_int_equal(S.queued.len, 0);
  assert_null(S.nw_head);
  for (int i = 0; i < nw; i++) assert_int_equal(ws[i]->processing.len, 0);
}

static void test_transition_table(void **state) {
  (void)state;
  /* as documented in state.h */
  assert_true(dt__task_transition_ok(TS_RELEASED, TS_WAITING));
  assert_true(dt__task_transition_ok(TS_WAITING, TS_PROCESSING));
  assert_true(dt__task_transition_ok(TS_NO_WORKER, TS_QUEUED));
  assert_true(dt__task_transition_ok(TS_QUEUED, TS_PROCESSING));
  assert_true(dt__task_transition_ok(TS_PROCESSING, TS_WAITING));
  assert_true(dt__task_transition_ok(TS_PROCESSING, TS_MEMORY));
  assert_true(dt__task_transition_ok(TS_MEMORY, TS_RELEASED));
  assert_true(dt__task_transition_ok(TS_ERRED, TS_FORGOTTEN));
  assert_false(dt__task_transition_ok(TS_RELEASED, TS_PROCESSING));
  assert_false(dt__task_transition_ok(TS_NO_WORKER, TS_WAITING)); /* no faked states */
  assert_false(dt__task_transition_ok(TS_MEMORY, TS_ERRED));
  assert_false(dt__task_transition_ok(TS_MEMORY, TS_FORGOTTEN));
  assert_false(dt__task_transition_ok(TS_ERRED, TS_WAITING));
  assert_true(dt__task_transition_ok(TS_ERRED, TS_RELEASED)); /* retry */
  assert_false(dt__task_transition_ok(TS_QUEUED, TS_QUEUED));
  for (int st = 0; st < TS_COUNT; st++) assert_false(dt__task_transition_ok(TS_FORGOTTEN, st));
  assert_false(dt__task_transition_ok(-1, TS_WAITING));
  assert_false(dt__task_transition_ok(TS_WAITING, TS_COUNT));
}

/* an illegal transition aborts, naming the key and both states */
static void test_illegal_transition_aborts(void **state) {
  (void)state;
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    s_task *t = dt__task_new(&S, "the-key", 7, "f", 1);
    dt__task_transition(&S, t, TS_MEMORY); /* legal */
    dt__task_transition(&S, t, TS_PROCESSING);
    _exit(0);
  }
  close(fds[1]);
  char out[512] = "";
  ssize_t got, n = 0;
  while (n < (ssize_t)sizeof(out) - 1 && (got = read(fds[0], out + n, sizeof(out) - 1 - (size_t)n)) > 0) n += got;
  close(fds[0]);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFSIGNALED(st));
  assert_int_equal(WTERMSIG(st), SIGABRT);
  assert_non_null(strstr(out, "'the-key': memory -> processing"));
}

/* the events carry what the server encodes */
static void test_events_carry_the_details(void **state) {
  (void)state;
  s_worker *w = add_worker("w1", 1);
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  submit(c, (tdef[]){{"a"}}, 1, (const char *[]){"a"}, 1);
  collect();
  dt__sched_client_want_result(&S, c, "a", 1);
  static const char result[] = "\x93\x01\x02\x03";
  dt__sched_task_finished(&S, w, "a", 1, 42, 0.001, result, 4);
  size_t n;
  const s_event *ev = dt__sched_events(&S, &n);
  assert_int_equal(n, 1);
  assert_int_equal(ev[0].kind, SEV_IN_MEMORY);
  assert_ptr_equal(ev[0].client, c);
  assert_ptr_equal(ev[0].other, w); /* the holder */
  assert_ptr_equal(ev[0].inline_, result);
  assert_int_equal(ev[0].ilen, 4);
  assert_int_equal(ev[0].task->nbytes, 42);
  collect();
  /* a key nobody knows */
  dt__sched_client_want(&S, c, "nope", 4);
  ev = dt__sched_events(&S, &n);
  assert_int_equal(n, 1);
  assert_int_equal(ev[0].kind, SEV_UNKNOWN);
  assert_null(ev[0].task);
  uint32_t kl, tl;
  const char *k = dt__sched_event_key(&S, &ev[0], &kl);
  assert_int_equal(kl, 4);
  assert_memory_equal(k, "nope", 4);
  collect();
  /* retiring: the result only w holds goes to w2 (ACQUIRE) */
  s_worker *w2 = add_worker("w2", 1);
  assert_int_equal(dt__sched_retire_worker(&S, w), 1);
  ev = dt__sched_events(&S, &n);
  assert_int_equal(n, 1);
  assert_int_equal(ev[0].kind, SEV_ACQUIRE);
  assert_ptr_equal(ev[0].worker, w2);
  assert_ptr_equal(ev[0].other, w);
  collect();
  dt__sched_unretire_worker(&S, w);
  /* cancelling says why */
  dt__sched_client_cancel(&S, c, "a", 1);
  ev = dt__sched_events(&S, &n);
  assert_true(n >= 1);
  assert_int_equal(ev[0].kind, SEV_CANCELLED);
  const char *why = dt__sched_event_text(&S, &ev[0], &tl);
  assert_int_equal(tl, 9);
  assert_memory_equal(why, "cancelled", 9);
  /* the task is forgotten, but the events may still read it until drained */
  assert_int_equal(S.tasks.len, 0);
  assert_int_equal(ev[n - 1].kind, SEV_FREE);
  k = dt__sched_event_key(&S, &ev[n - 1], &kl);
  assert_memory_equal(k, "a", 1);
  assert_int_equal(ev[n - 1].task->state, TS_FORGOTTEN);
  collect();
  assert_int_equal(S.dead_tasks.len, 0);
}

/* fetch failures have their own counter: the user's retries stay */
static void test_fetch_failures_keep_retries(void **state) {
  (void)state;
  s_client *c = dt__sched_add_client(&S, newconn(), "c");
  s_worker *w = add_worker("w1", 1);
  submit(c, (tdef[]){{"a"}}, 1, (const char *[]){"a"}, 1);
  finish(w, "a");
  submit(c, (tdef[]){{"b", {"a"}, 2}}, 1, (const char *[]){"b"}, 1);
  s_task *b = dt__sched_get_task(&S, "b", 1);
  for (int i = 1; i <= 5; i++) {
    assert_int_equal(b->state, TS_PROCESSING);
    dt__sched_missing_data(&S, w, "b", 1, "a", 1, NULL); /* no holder named */
    check();
    assert_int_equal(b->retries, 2);
    assert_int_equal(RARE(b)->fetch_failures, (uint32_t)i);
  }
  dt__sched_missing_data(&S, w, "b", 1, "a", 1, NULL); /* the 6th fails it */
  assert_int_equal(b->state, TS_ERRED);
  assert_int_equal(RARE(b)->err_code, DT_ELOST);
  check();
}

static void test_every_message_type_has_a_row(void **state) {
  (void)state;
  for (int op = 1; op < DT_OP_COUNT; op++) {
    assert_non_null(dt__msgs[op].name);
    assert_true(strlen(dt__msgs[op].doc) > 5);
  }
  assert_string_equal(dt__op_name(DT_OP_COMPUTE_TASK), "COMPUTE_TASK");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_one_task_lifecycle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_diamond_releases_intermediates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_propagates_to_dependents, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_retry_erred, setup, teardown),
      cmocka_unit_test_setup_teardown(test_root_tasks_queue_on_scheduler, setup, teardown),
      cmocka_unit_test_setup_teardown(test_placement_follows_data, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restrictions_and_resources, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_clients_share_a_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_worker_loss_reschedules_and_recomputes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_killed_worker_after_allowed_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(test_nanny_report_counts_only_running_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_worker_reregisters_held_keys, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dependency_cycles_fail_and_are_released, setup, teardown),
      cmocka_unit_test_setup_teardown(test_missing_data_forgets_that_copy, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_dependency_errs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_graph_order_finishes_branches, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel_releases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_user_priority_jumps_the_queue, setup, teardown),
      cmocka_unit_test_setup_teardown(test_loose_restrictions_fall_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_random_events_keep_invariants, setup, teardown),
      cmocka_unit_test(test_every_message_type_has_a_row),
      cmocka_unit_test(test_transition_table),
      cmocka_unit_test_setup_teardown(test_illegal_transition_aborts, setup, teardown),
      cmocka_unit_test_setup_teardown(test_events_carry_the_details, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fetch_failures_keep_retries, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
