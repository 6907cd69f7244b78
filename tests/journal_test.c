/* journal_test.c -- issue 18: a scheduler with a journal, killed with
 * SIGKILL in the middle of a 20,000-task graph (a map of 10,000 tasks from
 * one client, a tree reduction over 5,000 leaves from another) and started
 * again at the same address: the clients' gathers return every result,
 * correct, and no task ran twice (each task appends "key pid" to a file).
 * Then the same with a worker killed while the scheduler is down: only
 * tasks that had run on that worker may run twice.  And a journal from
 * another cluster, and a corrupt one, are refused with a clear message; and
 * --restart-on-crash starts a killed scheduler again by itself.
 * The scheduler and workers are this program re-executed (DTASK_ROLE), each
 * stopped by PID at the end. */
#include <fcntl.h>
#include <glob.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define OK(x) assert_int_equal((x), 0)

static char runs_path[256];

static void note_run(const dt_task *task) {
  char line[256];
  int n = snprintf(line, sizeof(line), "%s %d\n", dt_task_key(task), (int)getpid());
  int fd = open(runs_path[0] ? runs_path : getenv("JT_RUNS"), O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd >= 0) {
    if (write(fd, line, (size_t)n) != n) {}
    close(fd);
  }
  usleep(300);
}

DT_TASK(jinc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  note_run(task);
  return dt_int(x + 1);
}
DT_TASK(jleaf) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  note_run(task);
  return dt_int(x);
}
DT_TASK(jadd) {
  int64_t a, b;
  if (dt_task_arg_int(task, 0, &a) || dt_task_arg_int(task, 1, &b)) return NULL;
  note_run(task);
  return dt_int(a + b);
}

static char self[4096], addr[64], journal[256];
static int port;

static pid_t spawn_role(const char *role, const char *args, const char *log) {
  setenv("JT_RUNS", runs_path, 1);
  return tu_spawn_role(self, role, args, log);
}

static int nstart;
static pid_t start_scheduler(const char *jpath, const char *extra) {
  char args[1024], log[256];
  snprintf(args, sizeof(args),
           "--host\x1f" "127.0.0.1\x1f--port\x1f%d\x1f--no-dashboard\x1f--journal\x1f%s\x1f"
           "--journal-grace\x1f" "5s%s",
           port, jpath, extra ? extra : "");
  snprintf(log, sizeof(log), "/tmp/dtask-jt-%d-sched%d.log", (int)getpid(), nstart++);
  return spawn_role("scheduler", args, log);
}

static pid_t start_worker(int i) {
  char args[512], log[256];
  snprintf(args, sizeof(args), "%s\x1f--nthreads\x1f" "2\x1f--no-nanny\x1f--name\x1fw%d", addr, i);
  snprintf(log, sizeof(log), "/tmp/dtask-jt-%d-worker%d.log", (int)getpid(), i);
  return spawn_role("worker", args, log);
}

static dt_client *connect_client(const char *name) { return tu_connect_retry(addr, name, 20); }

enum { NMAP = 10000, NLEAF = 5000 };

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static void forget_pid(pid_t p) {
  tu_forget(p);
}

/* the tree: node i's key and its two inputs (-1 for a leaf); a node whose
 * result a dead worker held may take its inputs with it (they were
 * released once consumed): those may run again too ("tainted") */
enum { NTREE = 2 * 5000 - 1 };
static char tkey[NTREE][80];
static int tl[NTREE], tr[NTREE], ntree;
static bool tainted[NTREE];
static int node_of(const char *k, size_t kl) {
  for (int i = 0; i < ntree; i++) /* only for the few keys that ran twice */
    if (strlen(tkey[i]) == kl && strncmp(tkey[i], k, kl) == 0) return i;
  return -1;
}

/* runs: how often each key ran, and whether one of its runs was by pid */
typedef struct {
  int total, twice, twice_not_dead;
} runs_t;
static runs_t count_runs(pid_t dead) {
  runs_t r = {0};
  char *text = tu_read_file(runs_path);
  assert_non_null(text);
  /* keys are unique per line content "key pid"; count per key with a simple
   * sort of the lines */
  size_t n = 0;
  for (char *p = text; *p; p++) n += *p == '\n';
  char **lines = calloc(n + 1, sizeof(char *));
  size_t k = 0;
  for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
    lines[k++] = l;
  qsort(lines, k, sizeof(char *), cmp);
  memset(tainted, 0, sizeof(tainted));
  for (int i = 0; dead > 0 && i < ntree; i++) { /* nodes that ran on the dead worker */
    char pat[128];
    snprintf(pat, sizeof(pat), "%.80s %d", tkey[i], (int)dead);
    char *pp = pat;
    tainted[i] = bsearch(&pp, lines, k, sizeof(char *), cmp) != NULL;
  }
  for (int i = ntree; i-- > 0;) /* top down: a lost node's inputs are recomputed */
    if (tainted[i] && tl[i] >= 0) tainted[tl[i]] = tainted[tr[i]] = true;
  for (size_t i = 0; i < k;) {
    size_t j = i;
    char *sp = strrchr(lines[i], ' ');
    size_t kl = (size_t)(sp - lines[i]);
    bool by_dead = false;
    while (j < k && strncmp(lines[j], lines[i], kl) == 0 && lines[j][kl] == ' ') {
      if (atoi(lines[j] + kl + 1) == dead) by_dead = true;
      j++;
    }
    r.total++;
    if (j - i > 1) {
      r.twice++;
      int nd = node_of(lines[i], kl);
      if (!by_dead && !(nd >= 0 && tainted[nd])) {
        r.twice_not_dead++;
        fprintf(stderr, "ran %zu times, never on the dead worker: %.*s\n", j - i, (int)kl, lines[i]);
      }
    }
    i = j;
  }
  free(lines);
  free(text);
  return r;
}

/* one crash: kill the scheduler (and worker 0, if kill_worker) mid-graph,
 * restart it, gather everything */
static void crash_run(bool kill_worker) {
  port = tu_free_port();
  assert_true(port > 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  snprintf(journal, sizeof(journal), "/tmp/dtask-jt-%d-%d.journal", (int)getpid(), kill_worker);
  snprintf(runs_path, sizeof(runs_path), "/tmp/dtask-jt-%d-%d.runs", (int)getpid(), kill_worker);
  unlink(journal);
  unlink(runs_path);
  pid_t sched = start_scheduler(journal, NULL);
  assert_true(sched > 0);
  pid_t w[2] = {start_worker(0), start_worker(1)};
  dt_client *a = connect_client("map-client"), *b = connect_client("tree-client");
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(tu_wait_workers(a, 2, 15), 2);
  /* client a: a map of NMAP tasks */
  dt_value **args = calloc(NMAP, sizeof(*args));
  dt_future **mf = calloc(NMAP, sizeof(*mf));
  for (int i = 0; i < NMAP; i++) args[i] = dt_list_of(1, dt_int(i));
  OK(dt_client_map(a, "jinc", args, NMAP, NULL, mf));
  free(args);
  /* client b: a tree reduction over NLEAF leaves; it keeps only the root */
  dt_future **level = calloc(NLEAF, sizeof(*level));
  int *lidx = calloc(NLEAF, sizeof(int));
  ntree = 0;
  for (int i = 0; i < NLEAF; i++) {
    OK(dt_client_submit(b, "jleaf", dt_list_of(1, dt_int(i)), NULL, NULL, &level[i]));
    snprintf(tkey[ntree], sizeof(tkey[0]), "%s", dt_future_key(level[i]));
    tl[ntree] = tr[ntree] = -1;
    lidx[i] = ntree++;
  }
  size_t n = NLEAF;
  while (n > 1) {
    size_t m = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
      dt_future *f;
      OK(dt_client_submit(b, "jadd", dt_list_of(2, dt_future_value(level[i]), dt_future_value(level[i + 1])),
                          NULL, NULL, &f));
      snprintf(tkey[ntree], sizeof(tkey[0]), "%s", dt_future_key(f));
      tl[ntree] = lidx[i];
      tr[ntree] = lidx[i + 1];
      lidx[m] = ntree++;
      dt_future_release(level[i]);
      dt_future_release(level[i + 1]);
      level[m++] = f;
    }
    if (n % 2) {
      lidx[m] = lidx[n - 1];
      level[m++] = level[n - 1];
    }
    n = m;
  }
  dt_future *root = level[0];
  free(lidx);
  /* a published dataset (a value and a future) outlives the crash too; the
   * future is client a's, submitted on a's connection: once it has a result
   * the scheduler knows it when b's publish arrives (else DT_ENOTFOUND) */
  dt_value *r7 = NULL;
  OK(dt_future_result(mf[7], 60000, &r7));
  dt_value_free(r7);
  dt_value *ds = dt_list_of(2, dt_int(42), dt_future_value(mf[7]));
  OK(dt_client_publish_dataset(b, "jt-dataset", ds, false));
  dt_value_free(ds);
  /* wait until a good part has run, then kill the scheduler */
  dt_cluster_info info = {0};
  for (int i = 0; i < 600; i++) {
    if (dt_client_cluster_info(a, 2000, &info) == 0 && info.n_completed >= 4000) break;
    usleep(10000);
  }
  assert_true(info.n_completed >= 4000);
  assert_true(info.n_completed < NMAP + 2 * NLEAF - 1); /* mid-graph */
  tu_stop(sched, SIGKILL);
  pid_t dead = -1;
  if (kill_worker) {
    dead = w[0];
    tu_stop(w[0], SIGKILL);
    w[0] = start_worker(2); /* a fresh one, at another address */
  }
  usleep(300000);
  sched = start_scheduler(journal, NULL);
  assert_true(sched > 0);
  /* the clients' waiting calls go on */
  dt_value **mv = calloc(NMAP, sizeof(*mv));
  int rc = dt_client_gather(a, mf, NMAP, 120000, mv);
  if (rc) fprintf(stderr, "gather a: %s\n", dt_last_error());
  OK(rc);
  for (int i = 0; i < NMAP; i++) {
    assert_int_equal(dt_value_int(mv[i]), i + 1);
    dt_value_free(mv[i]);
  }
  dt_value *rv = NULL;
  rc = dt_client_gather(b, &root, 1, 120000, &rv);
  if (rc) fprintf(stderr, "gather b: %s\n", dt_last_error());
  OK(rc);
  assert_int_equal(dt_value_int(rv), (int64_t)NLEAF * (NLEAF - 1) / 2);
  dt_value_free(rv);
  dt_value *got = NULL;
  rc = dt_client_get_dataset(b, "jt-dataset", &got);
  if (rc) fprintf(stderr, "get_dataset: %s\n", dt_last_error());
  OK(rc);
  assert_int_equal(dt_value_int(dt_list_get(got, 0)), 42);
  assert_non_null(dt_list_get(got, 1));
  dt_value_free(got);
  OK(dt_client_unpublish_dataset(b, "jt-dataset"));
  runs_t r = count_runs(dead);
  fprintf(stderr, "journal_test: %d tasks ran, %d of them twice (%d not on the killed worker)\n",
          r.total, r.twice, r.twice_not_dead);
  assert_int_equal(r.total, NMAP + 2 * NLEAF - 1);
  assert_int_equal(r.twice_not_dead, 0);
  if (!kill_worker) assert_int_equal(r.twice, 0);
  /* the restarted scheduler reports its journal */
  OK(dt_client_cluster_info(a, 5000, &info));
  assert_true(info.journal_bytes > 0);
  fprintf(stderr, "journal_test: the restarted scheduler replayed its journal in %.3f s; %lld "
                  "bytes now\n", info.journal_replay_s, (long long)info.journal_bytes);
  for (int i = 0; i < NMAP; i++) dt_future_release(mf[i]);
  dt_future_release(root);
  free(mf);
  free(mv);
  free(level);
  dt_client_close(a);
  dt_client_close(b);
  tu_stop(w[0], SIGKILL);
  tu_stop(w[1], SIGKILL);
  tu_stop(sched, SIGTERM);
  unlink(journal);
  unlink(runs_path);
}

static void test_scheduler_crash(void **state) {
  (void)state;
  crash_run(false);
}

static void test_scheduler_crash_and_worker_death(void **state) {
  (void)state;
  crash_run(true);
}

/* --restart-on-crash: the supervisor starts the scheduler again when it is
 * killed; a client's pending futures resolve */
static void test_restart_on_crash(void **state) {
  (void)state;
  port = tu_free_port();
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  snprintf(journal, sizeof(journal), "/tmp/dtask-jt-%d-roc.journal", (int)getpid());
  snprintf(runs_path, sizeof(runs_path), "/tmp/dtask-jt-%d-roc.runs", (int)getpid());
  unlink(journal);
  pid_t sup = start_scheduler(journal, "\x1f--restart-on-crash");
  assert_true(sup > 0);
  pid_t w = start_worker(0);
  dt_client *c = connect_client("roc-client");
  assert_non_null(c);
  assert_int_equal(tu_wait_workers(c, 1, 15), 1);
  enum { N = 2000 };
  dt_value **args = calloc(N, sizeof(*args));
  dt_future **fs = calloc(N, sizeof(*fs));
  for (int i = 0; i < N; i++) args[i] = dt_list_of(1, dt_int(1000 + i));
  OK(dt_client_map(c, "jinc", args, N, NULL, fs));
  free(args);
  dt_cluster_info info = {0};
  for (int i = 0; i < 600; i++) {
    if (dt_client_cluster_info(c, 2000, &info) == 0 && info.n_completed >= 200) break;
    usleep(10000);
  }
  pid_t sched = tu_worker_pid(sup); /* the supervisor's child */
  assert_true(sched > 0);
  assert_int_equal(kill(sched, SIGKILL), 0);
  dt_value **vs = calloc(N, sizeof(*vs));
  int rc = dt_client_gather(c, fs, N, 120000, vs);
  if (rc) fprintf(stderr, "gather: %s\n", dt_last_error());
  OK(rc);
  for (int i = 0; i < N; i++) {
    assert_int_equal(dt_value_int(vs[i]), 1001 + i);
    dt_value_free(vs[i]);
    dt_future_release(fs[i]);
  }
  pid_t again = tu_child_of(sup);
  assert_true(again > 0 && again != sched); /* a new scheduler, same supervisor */
  free(vs);
  free(fs);
  dt_client_close(c);
  tu_stop(w, SIGKILL);
  tu_stop(sup, SIGTERM); /* the supervisor passes it on and exits with it */
  unlink(journal);
  unlink(runs_path);
}

/* a journal of another cluster, or corrupt in the middle, is refused */
static void test_refuses_bad_journal(void **state) {
  (void)state;
  port = tu_free_port();
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  snprintf(journal, sizeof(journal), "/tmp/dtask-jt-%d-bad.journal", (int)getpid());
  unlink(journal);
  pid_t s = start_scheduler(journal, NULL);
  dt_client *c = connect_client("c");
  assert_non_null(c);
  dt_future *f;
  OK(dt_client_submit(c, "jinc", dt_list_of(1, dt_int(1)), NULL, NULL, &f));
  usleep(200000);
  dt_future_release(f);
  dt_client_close(c);
  tu_stop(s, SIGKILL);
  /* another cluster: another --cluster-id */
  char log[256];
  snprintf(log, sizeof(log), "/tmp/dtask-jt-%d-sched%d.log", (int)getpid(), nstart);
  s = start_scheduler(journal, "\x1f--cluster-id\x1fother");
  int st = -1;
  for (int i = 0; i < 500 && waitpid(s, &st, WNOHANG) == 0; i++) usleep(10000);
  forget_pid(s);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
  char *text = tu_read_file(log);
  assert_non_null(text);
  assert_non_null(strstr(text, "another cluster"));
  free(text);
  /* corrupt: a byte flipped in the first record (more follow it) */
  int fd = open(journal, O_RDWR);
  assert_true(fd >= 0);
  unsigned char byte;
  assert_int_equal(pread(fd, &byte, 1, 50), 1);
  byte ^= 0x5a;
  assert_int_equal(pwrite(fd, &byte, 1, 50), 1);
  close(fd);
  snprintf(log, sizeof(log), "/tmp/dtask-jt-%d-sched%d.log", (int)getpid(), nstart);
  s = start_scheduler(journal, NULL);
  for (int i = 0; i < 500 && waitpid(s, &st, WNOHANG) == 0; i++) usleep(10000);
  forget_pid(s);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
  text = tu_read_file(log);
  assert_non_null(text);
  assert_non_null(strstr(text, "corrupt"));
  free(text);
  unlink(journal);
}

int main(void) {
  if (getenv("JT_RUNS")) return 1; /* a child that did not take its role: never recurse */
  /* the role takeover (cluster/spawn.c) must be linked in: this test uses no LocalCluster */
  if (getenv("JT_NEVER_SET")) dt_local_cluster_start(NULL, NULL);
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return 1;
  self[n] = '\0';
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refuses_bad_journal),
      cmocka_unit_test(test_scheduler_crash),
      cmocka_unit_test(test_scheduler_crash_and_worker_death),
      cmocka_unit_test(test_restart_on_crash),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (rc == 0) { /* the processes' logs: kept only when something failed */
    glob_t g;
    char pat[128];
    snprintf(pat, sizeof(pat), "/tmp/dtask-jt-%d-*.log", (int)getpid());
    if (glob(pat, 0, NULL, &g) == 0)
      for (size_t i = 0; i < g.gl_pathc; i++) unlink(g.gl_pathv[i]);
    globfree(&g);
  }
  return rc;
}
