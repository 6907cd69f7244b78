/* testutil.h -- helpers for end-to-end tests: bounded polling and child
 * processes stopped by PID at the end, even when a test fails. */
#ifndef DT_TESTUTIL_H
#define DT_TESTUTIL_H

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
static pid_t tu_pids[64];
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
static inline pid_t tu_spawn2(char *const argv[], const char *out_path, const char *err_path) {
  static int registered;
  if (!registered) {
    atexit(tu_kill_all);
    registered = 1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out_path) posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (err_path) posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  extern char **environ;
  pid_t pid;
  if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  if (pid > 0 && tu_npids < 64) tu_pids[tu_npids++] = pid;
  return pid;
}

static inline void tu_stop(pid_t pid, int sig) {
  if (pid <= 0) return;
  kill(pid, sig);
  for (int i = 0; i < 500; i++) {
    if (waitpid(pid, NULL, WNOHANG) == pid) goto done;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
done:
  for (int i = 0; i < tu_npids; i++)
    if (tu_pids[i] == pid) tu_pids[i] = 0;
}

static inline bool tu_alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0 && waitpid(pid, NULL, WNOHANG) == 0; }

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

#endif
