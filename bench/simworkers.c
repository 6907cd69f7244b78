/*
 * simworkers.c -- scheduler-only scale: one process holds N worker
 * connections to a real `dtask scheduler` and answers every COMPUTE_TASK at
 * once, while a client submits many trivial tasks.  It reports the
 * scheduler's CPU time per task (from /proc) for each N; the scheduler's
 * per-task work must not grow with the number of workers.
 *
 *   build/simworkers --dtask build/dtask [--tasks 200000] [--workers 10,100,1000,10000]
 *                    [--dashboard off,open] [--chunk N]
 *
 * --dashboard: run each size with the scheduler's dashboard off, and with it
 * on and "open" (a viewer holding the live event stream and fetching the
 * whole JSON state once a second, as the page does); it reports the largest
 * update the viewer received.
 *
 * --chunk N: submit the tasks as graphs of N (one map call each; default:
 * one graph of all of them).
 *
 * The simulated workers answer the tasks of one loop turn with one
 * TASKS_FINISHED per connection (as workers do); --single: one
 * TASK_FINISHED per task (as workers did before).
 *
 * "kernel": the part of the scheduler's CPU time spent in the kernel.
 *
 * Memory: the scheduler's RSS growth per task while the client holds every
 * result ("held B/t"), 1.5 s after it released them all ("freed B/t"), and
 * the scheduler's peak RSS (VmHWM) over the run.
 */
#include <arpa/inet.h>
#include <sys/socket.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"

static uv_loop_t loop;
static pid_t sched = -1; /* stopped by PID on every way out */

static void stop_scheduler(void) {
  if (sched > 0) {
    kill(sched, SIGTERM);
    waitpid(sched, NULL, 0);
    sched = -1;
  }
}
static dt_net net;
static int registered;
static uint64_t answered;

/* --single: one TASK_FINISHED per task (as workers did before TASKS_FINISHED) */
static bool single;
/* the open TASKS_FINISHED of each connection, as a worker's (src/worker/
 * link.c): where its record count is in the outbox, and its records */
typedef struct {
  size_t at;
  uint32_t n;
} fin_open;
static fin_open *fins;

static void fin_close(dt_conn *c) {
  fin_open *f = &fins[(uintptr_t)c->data];
  uint8_t *p = (uint8_t *)c->out.buf + f->at + 1;
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(f->n >> (24 - 8 * i));
  f->n = 0;
}

static int on_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  if (op == DT_OP_WELCOME) {
    registered++;
    return 0;
  }
  if (op == DT_OP_FREE_KEYS || op == DT_OP_CLOSE || op == DT_OP_PING) return 0;
  dt_msg m;
  if (op != DT_OP_COMPUTE_TASK || dt__msg_read(r, op, nf, &m) != 0) return DT_EPROTO;
  answered++;
  if (single) {
    dt_enc e; /* answered in this loop turn's batch */
    dt__e_begin(&e, dt__conn_out(c), DT_OP_TASK_FINISHED);
    dt__e_str(&e, m.COMPUTE_TASK.key.p, m.COMPUTE_TASK.key.len);
    dt__e_uint(&e, 8);
    dt__e_uint(&e, 1);
    dt__e_nil(&e);
    dt__e_end(&e);
    return 0;
  }
  /* the tasks answered in this loop turn: one TASKS_FINISHED */
  fin_open *f = &fins[(uintptr_t)c->data];
  if (c->close_open == fin_close && f->n >= DT_FINISHED_BATCH) dt__conn_close_open(c);
  dt_wbuf *w = &c->out;
  if (c->close_open != fin_close) {
    w = dt__conn_out(c);
    dt__wb_msg(w, DT_OP_TASKS_FINISHED, 1);
    f->at = w->len;
    uint8_t *p = (uint8_t *)dt__wbuf_reserve(w, 5);
    p[0] = 0xdd; /* array 32, its count written in by fin_close */
    memset(p + 1, 0, 4);
    w->len += 5;
    f->n = 0;
    c->close_open = fin_close;
  }
  dt__wb_array(w, 4);
  dt__wb_str(w, m.COMPUTE_TASK.key.p, m.COMPUTE_TASK.key.len);
  dt__wb_uint(w, 8);
  dt__wb_uint(w, 1);
  dt__wb_nil(w);
  f->n++;
  return 0;
}

static void on_connect(dt_conn *c, int status) {
  if (status < 0) {
    fprintf(stderr, "simworkers: connect failed: %s\n", uv_strerror(status));
    exit(1);
  }
  char addr[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", 20000 + (int)(uintptr_t)c->data);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_HELLO_WORKER);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, addr);
  dt__e_cstr(&e, addr);
  dt__e_uint(&e, 1);
  dt__e_map(&e, 0);
  dt__e_uint(&e, (uint64_t)getpid());
  dt__e_uint(&e, 0);
  dt__e_list(&e, 0);
  dt__e_uint(&e, 0); /* no memory limit */
  dt__e_end(&e);
}

static const dt_conn_cbs cbs = {on_msg, on_connect, NULL};

static void close_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h)) return;
  if (h->type == UV_TCP) dt__conn_close(h->data, false);
  else uv_close(h, NULL);
}

static double sys_part; /* the kernel's part of the last cpu_seconds */
static double cpu_seconds(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  if (p) sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
  sys_part = (double)st / (double)sysconf(_SC_CLK_TCK);
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* a /proc/PID/status field (VmRSS, VmHWM) in bytes */
static double status_bytes(pid_t pid, const char *field) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  unsigned long kb = 0;
  size_t n = strlen(field);
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, field, n) == 0 && line[n] == ':') sscanf(line + n + 1, "%lu", &kb);
  fclose(f);
  return (double)kb * 1024;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_loop_until(int (*done)(void *), void *arg, double seconds) {
  double end = now() + seconds;
  while (!done(arg) && now() < end) uv_run(&loop, UV_RUN_NOWAIT), usleep(100);
}
static int all_registered(void *arg) { return registered >= *(int *)arg; }

/* submits (on its own thread: the main thread meanwhile runs the simulated
 * workers, or the scheduler's output to them and the submit would wait on
 * each other), then waits for every result */
typedef struct {
  dt_client *c;
  dt_value **args;
  dt_future **fs;
  size_t n, chunk;
  atomic_int done, failed;
} waiter;
static void *wait_all(void *arg) {
  waiter *w = arg;
  for (size_t at = 0; at < w->n; at += w->chunk) { /* one graph, or graphs of chunk tasks */
    size_t k = w->n - at < w->chunk ? w->n - at : w->chunk;
    if (dt_client_map(w->c, "noop", w->args + at, k, &(dt_submit_opts){.pure = DT_NO}, w->fs + at) != 0) {
      fprintf(stderr, "simworkers: %s\n", dt_last_error());
      exit(1); /* the scheduler is stopped by the atexit handler */
    }
  }
  if (dt_wait(w->fs, w->n, 600000, DT_ALL_COMPLETED) != 0) {
    fprintf(stderr, "simworkers: %s\n", dt_last_error());
    atomic_store(&w->failed, 1);
  }
  atomic_store(&w->done, 1);
  return NULL;
}
static int waiter_done(void *arg) { return atomic_load(&((waiter *)arg)->done); }

/* ---------------------------------------------------------------- viewer */

typedef struct {
  char host[64];
  int port;
  atomic_bool stop;
  size_t max_update;
  uint64_t event_bytes;
} viewer;

static int http_open(const viewer *v, const char *path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)v->port);
  inet_pton(AF_INET, v->host, &sa.sin_addr);
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  char req[256];
  int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, v->host);
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
    close(fd);
    return -1;
  }
  return fd;
}

static void *viewer_events(void *arg) { /* the page's live stream, read and dropped */
  viewer *v = arg;
  int fd = http_open(v, "/api/v1/events");
  char buf[65536];
  while (fd >= 0 && !atomic_load(&v->stop)) {
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r == 0) break;
    if (r > 0) v->event_bytes += (uint64_t)r;
  }
  if (fd >= 0) close(fd);
  return NULL;
}

static void *viewer_poll(void *arg) { /* and the whole state once a second */
  viewer *v = arg;
  static char buf[4 << 20];
  while (!atomic_load(&v->stop)) {
    int fd = http_open(v, "/api/v1/all");
    size_t got = 0;
    ssize_t r;
    while (fd >= 0 && got < sizeof(buf) && (r = recv(fd, buf + got, sizeof(buf) - got, 0)) > 0) {
      got += (size_t)r;
      char *body = memmem(buf, got, "\r\n\r\n", 4);
      const char *cl = memmem(buf, got, "Content-Length: ", 16);
      if (body && cl && got >= (size_t)(body + 4 - buf) + (size_t)atol(cl + 16)) break;
    }
    if (fd >= 0) close(fd);
    char *body = memmem(buf, got, "\r\n\r\n", 4);
    if (body && got - (size_t)(body + 4 - buf) > v->max_update) v->max_update = got - (size_t)(body + 4 - buf);
    for (int i = 0; i < 10 && !atomic_load(&v->stop); i++) usleep(100000);
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *dtask = "build/dtask", *list = "10,100,1000,10000", *dash = NULL;
  int tasks = 200000, chunk = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--dtask") == 0 && i + 1 < argc) dtask = argv[++i];
    else if (strcmp(argv[i], "--tasks") == 0 && i + 1 < argc) tasks = atoi(argv[++i]);
    else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) list = argv[++i];
    else if (strcmp(argv[i], "--dashboard") == 0 && i + 1 < argc) dash = argv[++i];
    else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) chunk = atoi(argv[++i]);
    else if (strcmp(argv[i], "--single") == 0) single = true;
    else {
      fprintf(stderr, "usage: simworkers [--dtask PATH] [--tasks N] [--workers N,N,...] "
                      "[--dashboard off,open] [--chunk N] [--single]\n");
      return 2;
    }
  }
  if (chunk <= 0) chunk = tasks;
  atexit(stop_scheduler);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl); /* the scheduler inherits it */
  signal(SIGPIPE, SIG_IGN);
  printf("%-10s %12s %14s %7s %14s %10s %10s %10s%s\n", "workers", "tasks", "sched us/task", "kernel", "tasks/s",
         "held B/t", "freed B/t", "peak MiB",
         dash ? "  dashboard  largest update" : "");
  /* the runs: each worker count, with each dashboard mode */
  int sizes[64], nsizes = 0;
  char *copy = strdup(list);
  for (char *tok = strtok(copy, ","); tok && nsizes < 64; tok = strtok(NULL, ",")) sizes[nsizes++] = atoi(tok);
  bool modes_open[2] = {false, true};
  int nmodes = dash ? 2 : 1;
  if (dash && strcmp(dash, "open") == 0) modes_open[0] = true, nmodes = 1;
  if (dash && strcmp(dash, "off") == 0) nmodes = 1;
  for (int run = 0; run < nsizes * nmodes; run++) {
    int nw = sizes[run / nmodes];
    bool open_dash = dash && modes_open[run % nmodes];
    if (nw < 1 || (rlim_t)nw + 64 > rl.rlim_cur) {
      printf("%-10d skipped: the file descriptor limit is %lu\n", nw, (unsigned long)rl.rlim_cur);
      continue;
    }
    char sfile[] = "/tmp/dtask-sim-XXXXXX";
    int fd = mkstemp(sfile);
    close(fd);
    unlink(sfile);
    char *sargv[] = {(char *)dtask, "scheduler", "--port", "0", "--scheduler-file", sfile,
                     "--log-level", "error", open_dash ? "--dashboard-address" : "--no-dashboard",
                     open_dash ? "127.0.0.1:0" : NULL, NULL};
    if (!dash) sargv[8] = NULL; /* as configured by default */
    extern char **environ;
    if (posix_spawn(&sched, dtask, NULL, NULL, sargv, environ) != 0) {
      perror(dtask);
      return 1;
    }
    dt_client *c = NULL;
    if (dt_client_connect(&(dt_client_opts){.scheduler_file = sfile, .timeout_ms = 20000}, &c) != 0) {
      /* the file may not be there yet: the connect retries only the socket */
      for (int i = 0; i < 200 && access(sfile, F_OK) != 0; i++) usleep(20000);
      if (dt_client_connect(&(dt_client_opts){.scheduler_file = sfile, .timeout_ms = 20000}, &c) != 0) {
        fprintf(stderr, "simworkers: %s\n", dt_last_error());
        return 1;
      }
    }
    char addr[128] = "";
    FILE *f = fopen(sfile, "r");
    char buf[512] = "";
    if (f) {
      size_t n = fread(buf, 1, sizeof(buf) - 1, f);
      buf[n] = '\0';
      fclose(f);
    }
    char *a = strstr(buf, "tcp://");
    if (a) sscanf(a + 6, "%127[^\"]", addr);
    viewer vw = {0};
    pthread_t vth[2];
    char *d = strstr(buf, "\"dashboard\": \"http://");
    bool viewing = open_dash && d && sscanf(d + 21, "%63[^:]:%d", vw.host, &vw.port) == 2;
    if (viewing) {
      pthread_create(&vth[0], NULL, viewer_events, &vw);
      pthread_create(&vth[1], NULL, viewer_poll, &vw);
    }
    uv_loop_init(&loop);
    dt__net_init(&net, &loop);
    registered = 0;
    answered = 0;
    free(fins);
    fins = calloc((size_t)nw, sizeof(*fins));
    for (int i = 0; i < nw; i++) {
      dt_conn *wc;
      if (dt__conn_connect(&net, addr, &cbs, (void *)(uintptr_t)i, &wc) != 0) {
        fprintf(stderr, "simworkers: %s\n", dt_last_error());
        return 1;
      }
    }
    run_loop_until(all_registered, &nw, 60);
    if (registered < nw) {
      fprintf(stderr, "simworkers: only %d of %d workers registered\n", registered, nw);
      return 1;
    }
    dt_value **args = malloc((size_t)tasks * sizeof(*args));
    dt_future **fs = malloc((size_t)tasks * sizeof(*fs));
    for (int i = 0; i < tasks; i++) args[i] = dt_list_of(1, dt_int(i));
    double rss0 = status_bytes(sched, "VmRSS");
    double cpu0 = cpu_seconds(sched), sys0 = sys_part, t0 = now();
    waiter wt = {c, args, fs, (size_t)tasks, (size_t)chunk, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, wait_all, &wt);
    run_loop_until(waiter_done, &wt, 600);
    pthread_join(th, NULL);
    if (atomic_load(&wt.failed)) return 1;
    double cpu = cpu_seconds(sched) - cpu0, sys = sys_part - sys0, dt = now() - t0;
    double held = status_bytes(sched, "VmRSS"), peak = status_bytes(sched, "VmHWM");
    if (viewing) {
      atomic_store(&vw.stop, true);
      pthread_join(vth[0], NULL);
      pthread_join(vth[1], NULL);
    }
    for (int i = 0; i < tasks; i++) dt_future_release(fs[i]);
    /* as bench.c's sched_mem: every release arrives (the scheduler knows
     * no task), then 1.5 s for the scheduler's trim (once a second) */
    dt_cluster_info info = {0};
    for (int i = 0; i < 6000 && dt_client_cluster_info(c, 10000, &info) == 0 && info.n_tasks; i++) {
      double next = now() + 0.05; /* the simulated workers read what they are sent meanwhile */
      while (now() < next) uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    }
    if (info.n_tasks)
      fprintf(stderr, "simworkers: the scheduler still knows %lld tasks after 300 s\n", (long long)info.n_tasks);
    double until = now() + 1.5;
    while (now() < until) uv_run(&loop, UV_RUN_NOWAIT), usleep(1000);
    double released = status_bytes(sched, "VmRSS");
    printf("%-10d %12d %14.2f %6.0f%% %14.0f %10.0f %10.0f %10.0f", nw, tasks, cpu / tasks * 1e6,
           cpu > 0 ? 100 * sys / cpu : 0, tasks / dt, (held - rss0) / tasks, (released - rss0) / tasks,
           peak / 1048576);
    if (dash && viewing) printf("  open       %zu B", vw.max_update);
    else if (dash) printf("  off");
    printf("\n");
    fflush(stdout);
    free(args);
    free(fs);
    dt_client_close(c);
    stop_scheduler();
    /* every connection sees the scheduler go; then close what is left */
    uv_walk(&loop, close_handle, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    unlink(sfile);
  }
  free(copy);
  return 0;
}
