/*
 * bench.c -- dtask's side of the benchmark suite: the workloads of
 * ../shared/reference/dask-baseline.md, over the public API, on a
 * LocalCluster (or an existing scheduler with --address).
 *
 *   build/bench [--workers 2] [--threads 1] [--scale 1.0] [--skip-large] [--json out.json]
 *
 * Prints one line per workload and, with --json, writes them as JSON.
 * Speed is measured here, never asserted: the tests only run it small.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dtask.h"
#include "physical.h"

DT_TASK(inc) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x + 1);
}

DT_TASK(add) {
  int64_t a, b;
  if (dt_task_arg_int(task, 0, &a) || dt_task_arg_int(task, 1, &b)) return NULL;
  return dt_int(a + b);
}

DT_TASK(make_bytes) {
  int64_t n;
  if (dt_task_arg_int(task, 0, &n)) return NULL;
  void *p;
  dt_value *v = dt_bytes_alloc((size_t)n, &p); /* shared memory when large */
  if (!v) return dt_task_fail(task, "out of memory");
  memset(p, 7, (size_t)n);
  return v;
}

DT_TASK(page_sum) { /* one byte per 4 KiB page: every page is read */
  size_t n = 0;
  const unsigned char *p = dt_value_bytes(dt_task_arg(task, 0), &n);
  if (!p) return dt_task_fail(task, "not bytes");
  int64_t s = 0;
  for (size_t i = 0; i < n; i += 4096) s += p[i];
  return dt_int(s);
}

DT_TASK(byte_len) {
  size_t n = 0;
  if (!dt_value_bytes(dt_task_arg(task, 0), &n)) return dt_task_fail(task, "not bytes");
  return dt_int((int64_t)n);
}

/* the actor of actor_call: a counter */
static void *counter_create(dt_task *task) {
  (void)task;
  return calloc(1, sizeof(int64_t));
}
static dt_value *counter_call(void *state, const char *method, bool attribute, dt_task *task) {
  if (attribute || strcmp(method, "increment") != 0) return dt_task_fail(task, "no %s", method);
  return dt_int(++*(int64_t *)state);
}
DT_ACTOR(Counter, counter_create, counter_call, free)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define CHECK(x)                                                                   \
  do {                                                                             \
    if ((x) != 0) {                                                                \
      fprintf(stderr, "bench: %s: %s\n", #x, dt_last_error());                     \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

static FILE *json;
static int map_large_n = -1;
static int njson;
/* the physical figures of this run (physical.c) and the dtask figures given
 * as ratios to them */
static double phys_rtt_us = -1, last_latency_us = -1, last_transfer_mbs = -1;

static const char *prefix = ""; /* --journal: journal_off_ / journal_on_ */
static void report(const char *name0, double value, const char *unit, const char *what) {
  char name[128];
  snprintf(name, sizeof(name), "%s%s", prefix, name0);
  printf("%-28s %14.3f %-8s %s\n", name, value, unit, what);
  if (json)
    fprintf(json, "%s\n  {\"workload\": \"%s\", \"value\": %.6g, \"unit\": \"%s\"}", njson++ ? "," : "",
            name, value, unit);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void bench_latency(dt_client *c, int n) {
  double *t = malloc((size_t)n * sizeof(double));
  for (int i = -50; i < n; i++) { /* 50 warm-up calls */
    double t0 = now();
    dt_future *f;
    dt_value *v;
    CHECK(dt_client_submit(c, "inc", dt_list_of(1, dt_int(i)), NULL, &(dt_submit_opts){.pure = DT_NO}, &f));
    CHECK(dt_future_result(f, -1, &v));
    dt_value_free(v);
    dt_future_release(f);
    if (i >= 0) t[i] = now() - t0;
  }
  qsort(t, (size_t)n, sizeof(double), cmp_double);
  report("latency_median", t[n / 2] * 1e6, "us", "submit -> result of a trivial task");
  last_latency_us = t[n / 2] * 1e6;
  report("latency_p99", t[(int)(n * 0.99)] * 1e6, "us", "");
  free(t);
}

/* sequential actor calls: client -> the actor's worker -> client */
static void bench_actor(dt_client *c, int n) {
  dt_future *af;
  dt_actor *a;
  CHECK(dt_client_submit_actor(c, "Counter", NULL, NULL, NULL, &af));
  CHECK(dt_actor_from_future(af, -1, &a));
  double *t = malloc((size_t)n * sizeof(double));
  int64_t last = 0;
  for (int i = -20; i < n; i++) { /* 20 warm-up calls */
    double t0 = now();
    dt_future *f;
    dt_value *v;
    CHECK(dt_actor_call(a, "increment", NULL, NULL, &f));
    CHECK(dt_future_result(f, -1, &v));
    last = dt_value_int(v);
    dt_value_free(v);
    dt_future_release(f);
    if (i >= 0) t[i] = now() - t0;
  }
  if (last != n + 20) {
    fprintf(stderr, "actor_call: counter is %lld, not %d\n", (long long)last, n + 20);
    exit(1);
  }
  qsort(t, (size_t)n, sizeof(double), cmp_double);
  report("actor_call_median", t[n / 2] * 1e6, "us", "actor method call round trip");
  free(t);
  dt_actor_free(a);
  dt_future_release(af);
}

static void bench_map(dt_client *c, int n) {
  dt_value **args = malloc((size_t)n * sizeof(*args));
  dt_future **fs = malloc((size_t)n * sizeof(*fs));
  dt_value **vs = malloc((size_t)n * sizeof(*vs));
  for (int i = 0; i < n; i++) args[i] = dt_list_of(1, dt_int(i));
  double t0 = now();
  CHECK(dt_client_map(c, "inc", args, (size_t)n, &(dt_submit_opts){.pure = DT_NO}, fs));
  CHECK(dt_client_gather(c, fs, (size_t)n, -1, vs));
  double dt = now() - t0;
  for (int i = 0; i < n; i++) {
    if (dt_value_int(vs[i]) != i + 1) {
      fprintf(stderr, "bench: wrong result\n");
      exit(1);
    }
    dt_value_free(vs[i]);
    dt_future_release(fs[i]);
  }
  report(n >= 1000000 || n == map_large_n ? "map_large" : "map_small", n / dt, "tasks/s",
         "map(inc) + gather");
  free(args);
  free(fs);
  free(vs);
}

static void bench_tree(dt_client *c, int leaves) {
  dt_value **args = malloc((size_t)leaves * sizeof(*args));
  dt_future **fs = malloc((size_t)leaves * sizeof(*fs));
  for (int i = 0; i < leaves; i++) args[i] = dt_list_of(1, dt_int(i));
  double t0 = now();
  CHECK(dt_client_map(c, "inc", args, (size_t)leaves, &(dt_submit_opts){.pure = DT_NO}, fs));
  int n = leaves;
  while (n > 1) {
    for (int i = 0; i < n / 2; i++) {
      dt_future *r;
      CHECK(dt_client_submit(c, "add", dt_list_of(2, dt_future_value(fs[2 * i]), dt_future_value(fs[2 * i + 1])),
                             NULL, &(dt_submit_opts){.pure = DT_NO}, &r));
      dt_future_release(fs[2 * i]);
      dt_future_release(fs[2 * i + 1]);
      fs[i] = r;
    }
    n /= 2;
  }
  dt_value *v;
  CHECK(dt_future_result(fs[0], -1, &v));
  double dt = now() - t0;
  if (dt_value_int(v) != (int64_t)leaves * (leaves + 1) / 2) {
    fprintf(stderr, "bench: wrong tree sum\n");
    exit(1);
  }
  dt_value_free(v);
  dt_future_release(fs[0]);
  report(leaves > 8192 ? "tree_1m" : "tree", (2.0 * leaves - 1) / dt, "tasks/s",
         "binary tree reduction");
  free(args);
  free(fs);
}

/* chain: n dependent links; one_worker: every link pinned to one worker */
static void bench_chain(dt_client *c, int n, bool one_worker) {
  const char *w0[] = {"local-worker-0"};
  dt_submit_opts o = {.pure = DT_NO};
  if (one_worker) o.workers = w0, o.n_workers = 1;
  double t0 = now();
  dt_future *f;
  CHECK(dt_client_submit(c, "inc", dt_list_of(1, dt_int(0)), NULL, &o, &f));
  for (int i = 1; i < n; i++) {
    dt_future *g;
    CHECK(dt_client_submit(c, "inc", dt_list_of(1, dt_future_value(f)), NULL, &o, &g));
    dt_future_release(f);
    f = g;
  }
  dt_value *v;
  CHECK(dt_future_result(f, -1, &v));
  double dt = now() - t0;
  if (dt_value_int(v) != n) {
    fprintf(stderr, "bench: wrong chain result\n");
    exit(1);
  }
  dt_value_free(v);
  dt_future_release(f);
  const char *name = one_worker ? "chain_one_worker" : "chain";
  report(name, n / dt, "tasks/s", one_worker ? "the same, every link on one worker"
                                             : "dependent tasks, x = submit(inc, x)");
  if (phys_rtt_us > 0) {
    char rn[64];
    snprintf(rn, sizeof(rn), "%s_link_rtt", name);
    report(rn, dt / n * 1e6 / phys_rtt_us, "RTT", "time per link in loopback round trips");
  }
}

/* transfer_read: a large result made on worker 0 and read on worker 1 (one
 * byte per page, so every page is there); beside memcpy of the same size */
static void bench_transfer_read(dt_client *c, int64_t bytes, const char *name) {
  const char *w0[] = {"local-worker-0"}, *w1[] = {"local-worker-1"};
  dt_future *big, *sum;
  CHECK(dt_client_submit(c, "make_bytes", dt_list_of(1, dt_int(bytes)), NULL,
                         &(dt_submit_opts){.workers = w0, .n_workers = 1, .pure = DT_NO}, &big));
  CHECK(dt_wait(&big, 1, -1, DT_ALL_COMPLETED));
  double t0 = now();
  CHECK(dt_client_submit(c, "page_sum", dt_list_of(1, dt_future_value(big)), NULL,
                         &(dt_submit_opts){.workers = w1, .n_workers = 1, .pure = DT_NO}, &sum));
  dt_value *v;
  CHECK(dt_future_result(sum, -1, &v));
  double dt = now() - t0;
  if (dt_value_int(v) != 7 * ((bytes + 4095) / 4096)) {
    fprintf(stderr, "bench: wrong %s sum\n", name);
    exit(1);
  }
  dt_value_free(v);
  dt_future_release(big);
  dt_future_release(sum);
  report(name, (double)bytes / dt / 1e6, "MB/s", "moved, every page read");
  last_transfer_mbs = (double)bytes / dt / 1e6;
}

static void bench_memcpy(int64_t bytes) { /* the machine's memcpy, for comparison */
  char *a = malloc((size_t)bytes), *b = malloc((size_t)bytes);
  if (!a || !b) exit(1);
  memset(a, 1, (size_t)bytes);
  memset(b, 2, (size_t)bytes);
  double best = 1e9;
  for (int i = 0; i < 3; i++) {
    double t0 = now();
    memcpy(b, a, (size_t)bytes);
    double dt = now() - t0;
    if (dt < best) best = dt;
  }
  if (b[bytes - 1] != 1) exit(1);
  free(a);
  free(b);
  report("memcpy", (double)bytes / best / 1e6, "MB/s", "one copy in this process, for comparison");
}

/* submit_graph: n tasks, then a high-priority follower whose result comes
 * back as soon as the scheduler has accepted the graph */
static void bench_submit(dt_client *c, int n) {
  dt_value **args = malloc((size_t)n * sizeof(*args));
  dt_future **fs = malloc((size_t)n * sizeof(*fs));
  for (int i = 0; i < n; i++) args[i] = dt_list_of(1, dt_int(i));
  double t0 = now();
  CHECK(dt_client_map(c, "inc", args, (size_t)n, &(dt_submit_opts){.pure = DT_NO}, fs));
  dt_future *f;
  dt_value *v;
  CHECK(dt_client_submit(c, "inc", dt_list_of(1, dt_int(-1)), NULL,
                         &(dt_submit_opts){.pure = DT_NO, .priority = 1000}, &f));
  CHECK(dt_future_result(f, -1, &v));
  report("submit_graph", now() - t0, "s", "tasks accepted by the scheduler");
  dt_value_free(v);
  dt_future_release(f);
  CHECK(dt_wait(fs, (size_t)n, -1, DT_ALL_COMPLETED));
  for (int i = 0; i < n; i++) dt_future_release(fs[i]);
  free(args);
  free(fs);
}

static double rss_of(int pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/statm", pid);
  FILE *f = fopen(path, "r");
  long pages = 0, rss = 0;
  if (!f) return 0;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  fclose(f);
  return (double)rss * (double)sysconf(_SC_PAGESIZE);
}

/* scheduler RSS growth per task held in memory, and after release */
static void bench_memory(dt_client *c, int sched_pid, int n) {
  dt_value **args = malloc((size_t)n * sizeof(*args));
  dt_future **fs = malloc((size_t)n * sizeof(*fs));
  for (int i = 0; i < n; i++) args[i] = dt_list_of(1, dt_int(i));
  double base = rss_of(sched_pid);
  CHECK(dt_client_map(c, "inc", args, (size_t)n, &(dt_submit_opts){.pure = DT_NO}, fs));
  CHECK(dt_wait(fs, (size_t)n, -1, DT_ALL_COMPLETED));
  dt_cluster_info info;
  CHECK(dt_client_cluster_info(c, -1, &info));
  char name[64];
  snprintf(name, sizeof(name), "sched_mem_%d", n);
  report(name, (rss_of(sched_pid) - base) / n, "B/task", "scheduler RSS growth per task held");
  for (int i = 0; i < n; i++) dt_future_release(fs[i]);
  for (int i = 0; i < 2000; i++) {
    CHECK(dt_client_cluster_info(c, -1, &info));
    if (info.n_tasks == 0) break;
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  struct timespec settle = {1, 500000000}; /* the scheduler trims once a second */
  nanosleep(&settle, NULL);
  snprintf(name, sizeof(name), "sched_mem_%d_released", n);
  report(name, (rss_of(sched_pid) - base) / n, "B/task", "after every future is released");
  free(args);
  free(fs);
}

/* drain: wait until the scheduler has forgotten everything, so that the
 * clean-up of one workload does not slow the next */
static void drain(dt_client *c) {
  for (int i = 0; i < 6000; i++) {
    dt_cluster_info info;
    CHECK(dt_client_cluster_info(c, -1, &info));
    if (info.n_tasks == 0) return;
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
}

/* --only GROUP,...: run only these groups (latency, actor, map, tree, chain,
 * transfer, submit, tcp, memory); NULL: all */
static const char *only;
static bool want(const char *group) {
  if (!only) return true;
  size_t n = strlen(group);
  for (const char *p = only; (p = strstr(p, group)) != NULL; p += n)
    if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
  return false;
}

static int scaled(double x, double scale, int lo) {
  int n = (int)(x * scale);
  return n > lo ? n : lo;
}

/* the CPU time of every thread of process pid, in seconds
 * (/proc/PID/task/TID/schedstat: nanoseconds on a CPU), or -1 */
static double proc_cpu_s(int pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return -1;
  double total = 0;
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char p2[128];
    snprintf(p2, sizeof(p2), "%s/%.32s/schedstat", path, e->d_name);
    FILE *f = fopen(p2, "r");
    if (!f) continue;
    unsigned long long ns;
    if (fscanf(f, "%llu", &ns) == 1) {
      total += (double)ns * 1e-9;
      found++;
    }
    fclose(f);
  }
  closedir(d);
  return found ? total : -1;
}

/* --journal: the same workloads on a cluster whose scheduler keeps a
 * journal (docs/reliability.md) and on one that does not, alternating;
 * beside each rate, the scheduler's CPU time per task (less noisy than
 * wall-clock rates on a shared machine) */
static void bench_journal(int workers, int threads, double scale, int leaves, int rounds) {
  char path[256];
  snprintf(path, sizeof(path), "/tmp/dtask-bench-%d.journal", (int)getpid());
  for (int round = 0; round < 2 * rounds; round++) {
    bool on = round % 2;
    unlink(path);
    prefix = on ? "journal_on_" : "journal_off_";
    dt_local_cluster *lc;
    /* $DTASK_BENCH_ROLE_COMMAND: the scheduler and workers run under a
     * command, e.g. "valgrind --tool=callgrind build/dtask" to count the
     * instructions each spends (words split at spaces) */
    const char *role[16];
    size_t nrole = 0;
    char *rc = getenv("DTASK_BENCH_ROLE_COMMAND") ? strdup(getenv("DTASK_BENCH_ROLE_COMMAND")) : NULL;
    for (char *w = rc ? strtok(rc, " ") : NULL; w && nrole < 16; w = strtok(NULL, " ")) role[nrole++] = w;
    CHECK(dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = workers, .threads_per_worker = threads,
                                                          .journal = on ? path : NULL,
                                                          .role_command = nrole ? role : NULL,
                                                          .n_role_command = nrole}, &lc));
    dt_client *c;
    CHECK(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c));
    if (want("latency")) bench_latency(c, scaled(500, scale, 20));
    drain(c);
    int spid = dt_local_cluster_scheduler_pid(lc);
    fprintf(stderr, "bench: journal %s: the scheduler is pid %d\n", on ? "on" : "off", spid);
    double cpu0 = proc_cpu_s(spid);
    int nmap = scaled(20000, scale, 100);
    if (want("map")) {
      bench_map(c, nmap);
      drain(c);
      double cpu1 = proc_cpu_s(spid);
      if (cpu0 >= 0 && cpu1 >= 0)
        report("map_small_sched_cpu", (cpu1 - cpu0) * 1e6 / nmap, "us/task", "the scheduler's CPU time per task");
      cpu0 = cpu1;
    }
    if (want("tree")) {
      bench_tree(c, leaves);
      drain(c);
      double cpu1 = proc_cpu_s(spid);
      if (cpu0 >= 0 && cpu1 >= 0)
        report("tree_sched_cpu", (cpu1 - cpu0) * 1e6 / (2 * leaves - 1), "us/task", "the scheduler's CPU time per task");
    }
    if (want("submit")) bench_submit(c, scaled(100000, scale, 1000));
    if (on) {
      dt_cluster_info info;
      CHECK(dt_client_cluster_info(c, 5000, &info));
      report("bytes", (double)info.journal_bytes, "bytes", "the journal's size at the end");
    }
    dt_client_close(c);
    dt_local_cluster_close(lc);
    free(rc);
  }
  prefix = "";
  unlink(path);
}

int main(int argc, char **argv) {
  int workers = 2, threads = 1;
  bool journal_only = false;
  int rounds = 2; /* --journal: off/on pairs */
  double scale = 1.0;
  bool skip_large = false;
  const char *json_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) workers = atoi(argv[++i]);
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) scale = atof(argv[++i]);
    else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) json_path = argv[++i];
    else if (strcmp(argv[i], "--skip-large") == 0) skip_large = true;
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else if (strcmp(argv[i], "--journal") == 0) journal_only = true;
    else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: bench [--workers N] [--threads T] [--scale S] [--skip-large] [--only G,...] [--journal [--rounds N]] [--json FILE]\n");
      return 2;
    }
  }
  if (workers < 1 || threads < 1 || scale <= 0 || rounds < 1) {
    fprintf(stderr, "bench: workers, threads, scale and rounds must be positive\n");
    return 2;
  }
  /* the sizes of bench/workloads.py */
  int leaves = 8192;
  while (leaves > 64 && leaves > 8192 * scale) leaves /= 2;
  int big_leaves = 1048576;
  while (big_leaves > 1024 && big_leaves > 1048576 * scale) big_leaves /= 2;
  map_large_n = scaled(1000000, scale, 1000);
  if (json_path) {
    json = fopen(json_path, "w");
    if (!json) {
      perror(json_path);
      return 1;
    }
    fprintf(json, "{\"system\": \"dtask\", \"version\": \"%d.%d.%d\", \"workers\": %d, \"threads\": %d, \"results\": [",
            DT_VERSION_MAJOR, DT_VERSION_MINOR, DT_VERSION_PATCH, workers, threads);
  }
  if (journal_only) {
    bench_journal(workers, threads, scale, leaves, rounds);
    if (json) {
      fprintf(json, "\n]}\n");
      fclose(json);
    }
    return 0;
  }
  phys_rtt_us = dt_bench_phys_rtt_us(scaled(20000, scale, 500), -1);
  report("phys_rtt", phys_rtt_us, "us", "loopback TCP round trip between two processes (median)");
  report("phys_rtt_same_cpu", dt_bench_phys_rtt_us(scaled(20000, scale, 500), 0), "us", "the same, both on one CPU");
  report("phys_rtt_cross_cpu", dt_bench_phys_rtt_us(scaled(20000, scale, 500), 1), "us", "the same, on two CPUs");
  double t0 = now();
  dt_local_cluster *lc;
  CHECK(dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = workers, .threads_per_worker = threads}, &lc));
  dt_client *c;
  CHECK(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c));
  report("cluster_start", (now() - t0) * 1e3, "ms", "LocalCluster start to a connected client");
  if (want("latency")) bench_latency(c, scaled(500, scale, 20));
  if (phys_rtt_us > 0 && last_latency_us > 0)
    report("latency_rtt", last_latency_us / phys_rtt_us, "RTT", "latency_median in loopback round trips");
  drain(c);
  if (want("actor")) bench_actor(c, scaled(1000, scale, 20));
  drain(c);
  if (want("map")) bench_map(c, scaled(20000, scale, 100));
  drain(c);
  if (!skip_large && want("map")) {
    bench_map(c, map_large_n);
    drain(c);
  }
  if (want("tree")) bench_tree(c, leaves);
  drain(c);
  if (want("tree")) bench_tree(c, big_leaves);
  drain(c);
  if (want("chain")) bench_chain(c, scaled(2000, scale, 50), false);
  drain(c);
  if (want("chain")) bench_chain(c, scaled(2000, scale, 50), true);
  drain(c);
  if (workers >= 2 && want("transfer")) {
    bench_transfer_read(c, scaled(200e6, scale, 1000000), "transfer");
    bench_transfer_read(c, scaled(256.0 * 1048576, scale, 1 << 20), "transfer_256m");
    bench_transfer_read(c, scaled(1073741824.0, scale, 1 << 20), "transfer_1g");
    bench_memcpy(scaled(256.0 * 1048576, scale, 1 << 20));
  }
  drain(c);
  if (want("submit")) bench_submit(c, scaled(100000, scale, 1000));
  dt_client_close(c);
  dt_local_cluster_close(lc);
  if (workers >= 2 && want("tcp")) { /* over TCP as between hosts, beside loopback TCP itself */
    CHECK(dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = 2, .threads_per_worker = threads,
                                                           .no_shm = true}, &lc));
    CHECK(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c));
    /* three rounds of each, interleaved (this machine is noisy): the best */
    int64_t tb = scaled(256.0 * 1048576, scale, 1 << 20);
    double tcp = 0, best = 0;
    FILE *j = json;
    json = NULL; /* the rounds are reported once, below */
    for (int k = 0; k < 3; k++) {
      bench_transfer_read(c, tb, "transfer_tcp_round");
      if (last_transfer_mbs > best) best = last_transfer_mbs;
      double t = dt_bench_phys_tcp_mbs((size_t)tb, 1);
      if (t > tcp) tcp = t;
    }
    json = j;
    report("transfer_tcp", best, "MB/s", "the same over TCP (workers --no-shm), best of 3");
    report("phys_tcp", tcp, "MB/s", "loopback TCP between two processes, same size (best of 3)");
    if (tcp > 0) report("transfer_tcp_pct", 100 * best / tcp, "%", "transfer_tcp as % of phys_tcp");
    dt_client_close(c);
    dt_local_cluster_close(lc);
  }
  /* memory: a fresh scheduler, as the Dask side does with its own process */
  int mem_sizes[2] = {scaled(100000, scale, 1000), skip_large ? 0 : scaled(1000000, scale, 10000)};
  for (int k = 0; k < 2 && mem_sizes[k] && want("memory"); k++) {
    CHECK(dt_local_cluster_start(&(dt_local_cluster_opts){.n_workers = workers, .threads_per_worker = threads}, &lc));
    CHECK(dt_client_connect(&(dt_client_opts){.address = dt_local_cluster_address(lc)}, &c));
    bench_memory(c, dt_local_cluster_scheduler_pid(lc), mem_sizes[k]);
    dt_client_close(c);
    dt_local_cluster_close(lc);
  }
  if (json) {
    fprintf(json, "\n]}\n");
    fclose(json);
  }
  return 0;
}
