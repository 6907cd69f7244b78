/* testutil.h -- helpers for end-to-end tests: bounded polling and child
 * processes stopped by PID at the end, even when a test fails.  Clusters,
 * three ways (every wait bounded):
 * - tu_local_start/tu_local_stop: a LocalCluster (dt_local_cluster_*) and a
 *   client connected to it;
 * - tu_cluster_start/tu_cluster_add_worker/tu_cluster_stop: a scheduler and
 *   workers started with the dtask command (tu_dtask_env finds it), each
 *   stopped by PID;
 * - tu_free_port/tu_spawn_role/tu_connect_retry: this test program
 *   re-executed as a scheduler or worker (DTASK_ROLE) at a fixed address,
 *   for tests that kill and restart the scheduler. */
#ifndef DT_TESTUTIL_H
#define DT_TESTUTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dtask.h"

static inline double tu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* processes started by the test, killed by PID at exit */
static pid_t tu_pids[256];
static int tu_npids;

static void tu_kill_all(void) {
  for (int i = 0; i < tu_npids; i++)
    if (tu_pids[i] > 0) {
      kill(tu_pids[i], SIGKILL);
      waitpid(tu_pids[i], NULL, 0);
      tu_pids[i] = 0;
    }
}

/* tu_spawn2: argv[0] is a path; stdout and stderr go to files when given */
static inline pid_t tu_spawn2(char *const argv[], const char *out_path, const char *err_path);
static inline pid_t tu_spawn(char *const argv[], const char *out_path) {
  return tu_spawn2(argv, out_path, NULL);
}
/* tu_track: pid is stopped at exit (tu_kill_all) unless tu_stop stops it first */
static inline void tu_track(pid_t pid) {
  static int registered;
  if (!registered) {
    atexit(tu_kill_all);
    registered = 1;
  }
  if (pid <= 0) return;
  if (tu_npids == 256) { /* a test that starts more processes must say so here */
    fprintf(stderr, "testutil: more than 256 processes started\n");
    abort();
  }
  tu_pids[tu_npids++] = pid;
}
/* tu_forget: pid was reaped (waitpid): it is no longer ours to stop, and its
 * number may be reused by another process */
static inline void tu_forget(pid_t pid) {
  for (int i = 0; i < tu_npids; i++)
    if (tu_pids[i] == pid) tu_pids[i] = 0;
}
/* tu_tracked: pid was started here and not reaped yet */
static inline bool tu_tracked(pid_t pid) {
  for (int i = 0; pid > 0 && i < tu_npids; i++)
    if (tu_pids[i] == pid) return true;
  return false;
}
static inline pid_t tu_spawn2(char *const argv[], const char *out_path, const char *err_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out_path) posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (err_path) posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  extern char **environ;
  pid_t pid;
  if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  tu_track(pid);
  return pid;
}

/* tu_spawn_nofile: as tu_spawn2(argv, NULL, err_path), with RLIMIT_NOFILE
 * soft = hard = nofile in the child */
static inline pid_t tu_spawn_nofile(char *const argv[], const char *err_path, rlim_t nofile) {
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit rl = {nofile, nofile};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(126);
    int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, 2);
    execv(argv[0], argv);
    _exit(127);
  }
  tu_track(pid);
  return pid;
}

static inline void tu_stop(pid_t pid, int sig) {
  if (!tu_tracked(pid)) return; /* never started here, or reaped already */
  kill(pid, sig);
  for (int i = 0; i < 500; i++) {
    if (waitpid(pid, NULL, WNOHANG) == pid) goto done;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
done:
  tu_forget(pid);
}

/* tu_alive: pid still runs (one that ended is reaped and forgotten) */
static inline bool tu_alive(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  if (waitpid(pid, NULL, WNOHANG) == 0) return true;
  tu_forget(pid);
  return false;
}

/* tu_child_of: a child process of pid (the worker under a nanny), or -1.
 * Reads /proc/PID/stat of every process: the kernel here has no
 * /proc/PID/task/TID/children. */
static inline pid_t tu_child_of(pid_t parent) {
  DIR *d = opendir("/proc");
  if (!d) return -1;
  pid_t found = -1;
  struct dirent *e;
  while (found < 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    char path[300], buf[512];
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    char st;
    int ppid;
    if (rp && sscanf(rp + 1, " %c %d", &st, &ppid) == 2 && ppid == parent && st != 'Z')
      found = (pid_t)atoi(e->d_name);
  }
  closedir(d);
  return found;
}

/* tu_worker_pid: the worker process under nanny pid, waiting (bounded) for
 * the nanny to have started one */
static inline pid_t tu_worker_pid(pid_t nanny) {
  for (int i = 0; i < 500; i++) {
    pid_t p = tu_child_of(nanny);
    if (p > 0) return p;
    usleep(10000);
  }
  return -1;
}

/* tu_read_file: the whole file (malloc'd, NUL-terminated), or NULL */
static inline char *tu_read_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  size_t r;
  while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
    n += r;
    if (cap - n - 1 == 0) buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  buf[n] = '\0';
  return buf;
}

/* tu_count: occurrences of needle in hay */
static inline int tu_count(const char *hay, const char *needle) {
  int k = 0;
  for (const char *p = hay; hay && (p = strstr(p, needle)) != NULL; p += strlen(needle)) k++;
  return k;
}

#include <arpa/inet.h>
#include <sys/socket.h>

/* tu_connect: a plain TCP connection to "ipv4:port" (loopback in tests),
 * with a receive timeout of timeout_s; the fd, or -1 */
static inline int tu_connect(const char *hostport, int timeout_s) {
  char host[64];
  int port;
  if (sscanf(hostport, "%63[^:]:%d", host, &port) != 2) return -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {0};
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, host, &sa.sin_addr);
  struct timeval tv = {timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* tu_http_get: GET path from url's host:port ("http://h:p/"); the body
 * (malloc'd) or NULL.  Loopback only, bounded by a 5 s timeout. */
static inline char *tu_http_get(const char *url, const char *path) {
  char host[64];
  if (strncmp(url, "http://", 7) != 0 || sscanf(url + 7, "%63[^:/]", host) != 1) return NULL;
  int fd = tu_connect(url + 7, 5);
  if (fd < 0) return NULL;
  char req[512];
  /* a URL with the dashboard's token (a cluster with a shared secret) */
  const char *tok = strstr(url, "?token=");
  int n = snprintf(req, sizeof(req), "GET %s%s%s HTTP/1.0\r\nHost: %s\r\n\r\n", path,
                   tok ? (strchr(path, '?') ? "&" : "?") : "", tok ? tok + 1 : "", host);
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
    close(fd);
    return NULL;
  }
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  ssize_t r;
  while ((r = recv(fd, buf + len, cap - len - 1, 0)) > 0) {
    len += (size_t)r;
    if (cap - len < 4096) buf = realloc(buf, cap *= 2);
  }
  close(fd);
  buf[len] = '\0';
  char *body = strstr(buf, "\r\n\r\n");
  if (strncmp(buf, "HTTP/1.", 7) != 0 || !body || atoi(buf + 9) != 200) {
    free(buf);
    return NULL;
  }
  memmove(buf, body + 4, len - (size_t)(body + 4 - buf) + 1);
  return buf;
}

/* tu_metric: a sample's value in Prometheus text ("name{labels}"), or -1 */
static inline double tu_metric(const char *text, const char *name) {
  size_t n = strlen(name);
  for (const char *p = text; p && *p;) {
    if (*p != '#' && strncmp(p, name, n) == 0 && p[n] == ' ') return atof(p + n + 1);
    p = strchr(p, '\n');
    if (p) p++;
  }
  return -1;
}

/* tu_wait_tasks: poll the scheduler (bounded) until it holds n tasks */
static inline int64_t tu_wait_tasks(dt_client *c, int64_t n, double seconds) {
  dt_cluster_info info = {0};
  double end = tu_now() + seconds;
  do {
    if (dt_client_cluster_info(c, 2000, &info) != 0) return -1;
    if (info.n_tasks == n) return n;
    usleep(10000);
  } while (tu_now() < end);
  return info.n_tasks;
}

/* ---------------------------------------------------------------- clusters */

/* tu_wait_workers: poll the scheduler (bounded) until it counts exactly n
 * workers; the count last seen */
static inline int tu_wait_workers(dt_client *c, int n, double seconds) {
  dt_cluster_info info = {0};
  double end = tu_now() + seconds;
  do {
    if (dt_client_cluster_info(c, 2000, &info) == 0 && info.n_workers == n) return n;
    usleep(20000);
  } while (tu_now() < end);
  return info.n_workers;
}

/* tu_local_start: a LocalCluster with options o and a client connected to
 * it with options co (its address set here); 0, or -1 with the error
 * printed.  tu_local_stop closes both (dt_local_cluster_close stops its
 * processes) and clears the pointers. */
static inline int tu_local_start(dt_local_cluster_opts o, dt_client_opts co, dt_local_cluster **lc,
                                 dt_client **c) {
  if (dt_local_cluster_start(&o, lc) != 0) {
    fprintf(stderr, "cluster: %s\n", dt_last_error());
    return -1;
  }
  co.address = dt_local_cluster_address(*lc);
  if (dt_client_connect(&co, c) != 0) {
    fprintf(stderr, "client: %s\n", dt_last_error());
    return -1;
  }
  return 0;
}
static inline void tu_local_stop(dt_local_cluster **lc, dt_client **c) {
  dt_client_close(*c);
  dt_local_cluster_close(*lc);
  *c = NULL;
  *lc = NULL;
}

/* tu_dtask_env: the dtask command and the library workers preload, from
 * ctest's environment (DTASK_BIN, DTASK_PRELOAD_LIB), into bin and preload
 * (1024 bytes each), and a fresh directory made from template (ending in
 * XXXXXX) into dir (256 bytes); 0, or -1 with a message.  tu_remove_dir:
 * removes it and all below it; 0 when done. */
static inline int tu_dtask_env(char *bin, char *preload, char *dir, const char *template) {
  const char *b = getenv("DTASK_BIN"), *p = getenv("DTASK_PRELOAD_LIB");
  if (!b || !p) {
    fprintf(stderr, "run through ctest (DTASK_BIN, DTASK_PRELOAD_LIB)\n");
    return -1;
  }
  snprintf(bin, 1024, "%s", b);
  snprintf(preload, 1024, "%s", p);
  snprintf(dir, 256, "%s", template);
  return mkdtemp(dir) ? 0 : -1;
}
static inline int tu_remove_dir(const char *dir) {
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  return system(cmd);
}

/* tu_cluster: a scheduler and workers started with the dtask command, each
 * stopped by PID (tu_cluster_stop, or at exit).  The scheduler listens on a
 * free port of its choice and writes DIR/TAG.json, which tu_cluster_start
 * waits for (bounded) and reads the address and dashboard from. */
enum { TU_MAX_WORKERS = 8 };
typedef struct {
  const char *bin, *preload, *dir; /* see tu_dtask_env */
  const char *tag;                 /* the files' prefix ("sched" when NULL) */
  const char *log_level;           /* every daemon's --log-level */
  bool logs;                       /* stderr to DIR/TAG-scheduler.log, DIR/TAG-worker[I].log */
  int n_workers;                   /* how many workers tu_cluster_start starts */
  int nthreads;                    /* each worker's --nthreads */
  const char *const *sched_args;   /* more scheduler options, NULL-terminated (or NULL) */
  const char *const *worker_args;  /* more options of every worker, likewise */
  rlim_t sched_nofile;             /* the scheduler's RLIMIT_NOFILE (0: inherited) */
} tu_cluster_opts;

typedef struct {
  tu_cluster_opts o;
  pid_t sched, workers[TU_MAX_WORKERS];
  int n_workers;
  char addr[128], dash[128], sched_log[300], worker_log[300]; /* worker_log: worker 0's */
} tu_cluster;

/* tu_argv_add: args (NULL-terminated, or NULL) appended to argv at *k, within cap - 1 */
static inline void tu_argv_add(char **argv, int *k, int cap, const char *const *args) {
  for (int i = 0; args && args[i] && *k < cap - 1; i++) argv[(*k)++] = (char *)args[i];
  argv[*k] = NULL;
}

/* tu_cluster_add_worker: one more worker, with the options of every worker
 * and then these (NULL-terminated, or NULL); its pid, or -1 */
static inline pid_t tu_cluster_add_worker(tu_cluster *cl, const char *const *args) {
  const tu_cluster_opts *o = &cl->o;
  if (cl->n_workers >= TU_MAX_WORKERS) return -1;
  char threads[16], log[300];
  snprintf(threads, sizeof(threads), "%d", o->nthreads > 0 ? o->nthreads : 1);
  char *argv[48] = {(char *)o->bin, "worker", cl->addr, "--nthreads", threads, "--preload",
                    (char *)o->preload, "--log-level", (char *)o->log_level};
  int k = 9;
  tu_argv_add(argv, &k, 48, o->worker_args);
  tu_argv_add(argv, &k, 48, args);
  const char *tag = o->tag ? o->tag : "sched";
  if (cl->n_workers == 0)
    snprintf(log, sizeof(log), "%s/%s-worker.log", o->dir, tag);
  else
    snprintf(log, sizeof(log), "%s/%s-worker%d.log", o->dir, tag, cl->n_workers);
  if (cl->n_workers == 0 && o->logs) snprintf(cl->worker_log, sizeof(cl->worker_log), "%s", log);
  pid_t p = tu_spawn2(argv, NULL, o->logs ? log : NULL);
  if (p > 0) cl->workers[cl->n_workers++] = p;
  return p;
}

/* tu_cluster_start: the scheduler, then o->n_workers workers; 0, or -1
 * with a message (what started is stopped by tu_cluster_stop) */
static inline int tu_cluster_start(tu_cluster *cl, const tu_cluster_opts *o) {
  memset(cl, 0, sizeof(*cl));
  cl->o = *o;
  const char *tag = o->tag ? o->tag : "sched";
  char file[300];
  snprintf(file, sizeof(file), "%s/%s.json", o->dir, tag);
  unlink(file);
  if (o->logs) snprintf(cl->sched_log, sizeof(cl->sched_log), "%s/%s-scheduler.log", o->dir, tag);
  char *argv[48] = {(char *)o->bin, "scheduler", "--port", "0", "--scheduler-file", file,
                    "--log-level", (char *)o->log_level};
  int k = 8;
  tu_argv_add(argv, &k, 48, o->sched_args);
  if (o->sched_nofile)
    cl->sched = tu_spawn_nofile(argv, cl->sched_log, o->sched_nofile);
  else
    cl->sched = tu_spawn2(argv, NULL, o->logs ? cl->sched_log : NULL);
  char *txt = NULL;
  for (int i = 0; i < 500 && !(txt = tu_read_file(file)); i++) usleep(10000);
  char *a = txt ? strstr(txt, "://") : NULL;
  if (!a || !strchr(a, '"')) {
    fprintf(stderr, "tu_cluster_start: no address in %s\n", file);
    free(txt);
    return -1;
  }
  snprintf(cl->addr, sizeof(cl->addr), "%s", a + 3);
  *strchr(cl->addr, '"') = '\0';
  char *d = strstr(txt, "\"dashboard\": \"");
  if (d) {
    snprintf(cl->dash, sizeof(cl->dash), "%s", d + 14);
    if (strchr(cl->dash, '"')) *strchr(cl->dash, '"') = '\0';
  }
  free(txt);
  for (int i = 0; i < o->n_workers; i++)
    if (tu_cluster_add_worker(cl, NULL) <= 0) return -1;
  return 0;
}

/* tu_cluster_stop: the workers, then the scheduler, each by PID with SIGTERM */
static inline void tu_cluster_stop(tu_cluster *cl) {
  for (int i = 0; i < cl->n_workers; i++) {
    tu_stop(cl->workers[i], SIGTERM);
    cl->workers[i] = 0;
  }
  tu_stop(cl->sched, SIGTERM);
  cl->sched = 0;
}

/* ---------------------------------------------------------------- roles */

/* tu_free_port: a loopback port free now (for a scheduler started again at
 * the same address), or -1 */
static inline int tu_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof(a);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || getsockname(fd, (struct sockaddr *)&a, &l)) {
    close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

/* tu_spawn_role: this program (self) re-executed as a scheduler or worker
 * (DTASK_ROLE, cluster/spawn.c) with args separated by \x1f, stderr to log */
static inline pid_t tu_spawn_role(const char *self, const char *role, const char *args, const char *log) {
  setenv("DTASK_ROLE", role, 1);
  setenv("DTASK_ROLE_ARGS", args, 1);
  char *argv[] = {(char *)self, NULL};
  pid_t p = tu_spawn2(argv, NULL, log);
  unsetenv("DTASK_ROLE");
  unsetenv("DTASK_ROLE_ARGS");
  return p;
}

/* tu_connect_retry: a client named name connected to addr, trying up to
 * tries times 100 ms apart (a scheduler still starting); NULL if none */
static inline dt_client *tu_connect_retry(const char *addr, const char *name, int tries) {
  dt_client_opts co = {.address = addr, .timeout_ms = 2000, .name = name};
  dt_client *c = NULL;
  for (int i = 0; i < tries && dt_client_connect(&co, &c) != 0; i++) usleep(100000);
  return c;
}

#endif
