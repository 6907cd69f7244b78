/*
 * local.c -- LocalCluster: a scheduler and N workers as processes on this
 * machine.  The processes re-execute the calling program (/proc/self/exe)
 * with DTASK_ROLE set; the constructor below takes over before main(), after
 * every DT_TASK registration ran, so the workers know the program's own task
 * functions.  Children get PR_SET_PDEATHSIG, and an atexit handler closes
 * every cluster still open: no orphans, even when the program dies.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../cli/roles.h"
#include "../client/client.h"
#include "../net/secure.h"

#define ARG_SEP '\x1f'

struct dt_local_cluster {
  char address[256];
  char dashboard[200];
  pid_t scheduler;
  pid_t *workers;
  int n_workers;
  char auth_file[256];
  char secret[65]; /* hex; "" with no_auth */
  struct dt_local_cluster *next;
};

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static dt_local_cluster *live;
static bool atexit_done;

/* ---------------------------------------------------------------- takeover */

static int run_role(const char *role, char *args) {
  char *argv[64];
  int argc = 0;
  if (args && *args) {
    char *p = args;
    while (p && argc < 63) {
      argv[argc++] = p;
      p = strchr(p, ARG_SEP);
      if (p) *p++ = '\0';
    }
  }
  argv[argc] = NULL;
  if (strcmp(role, "scheduler") == 0) return dt__scheduler_main(argc, argv);
  if (strcmp(role, "worker") == 0) return dt__worker_main(argc, argv);
  fprintf(stderr, "dtask: unknown DTASK_ROLE '%s'\n", role);
  return 2;
}

__attribute__((constructor)) static void dt__role_takeover(void) {
  const char *role = getenv("DTASK_ROLE");
  if (!role) return;
  char *r = dt__xstrdup(role);
  const char *a = getenv("DTASK_ROLE_ARGS");
  char *args = dt__xstrdup(a ? a : "");
  unsetenv("DTASK_ROLE");
  unsetenv("DTASK_ROLE_ARGS");
  int rc = run_role(r, args);
  free(r);
  free(args);
  fflush(NULL);
  _exit(rc);
}

/* ---------------------------------------------------------------- spawning */

/* child: only async-signal-safe calls until execve */
static void exec_child(pid_t parent, int keep_fd, const char *path, char *const *argv, char *const *env) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(1); /* the parent is already gone */
  if (keep_fd >= 0) fcntl(keep_fd, F_SETFD, 0);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL); /* the caller may block signals */
  setpgid(0, 0); /* not in the caller's process group: ^C goes to us only */
  execve(path, argv, env);
  _exit(127);
}

/* dt__spawn_role: start this program in a role.  keep_fd stays open in the child. */
pid_t dt__spawn_role(const char *role, const char *const *args, int nargs, int keep_fd) {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return -1;
  exe[n] = '\0';
  size_t len = 1;
  for (int i = 0; i < nargs; i++) len += strlen(args[i]) + 1;
  char *joined = dt__xmalloc(len + 32);
  joined[0] = '\0';
  for (int i = 0; i < nargs; i++) {
    if (i) strncat(joined, (char[]){ARG_SEP, 0}, 2);
    strcat(joined, args[i]);
  }
  char *role_env = dt__xmalloc(strlen(role) + 16);
  sprintf(role_env, "DTASK_ROLE=%s", role);
  char *args_env = dt__xmalloc(strlen(joined) + 32);
  sprintf(args_env, "DTASK_ROLE_ARGS=%s", joined);
  /* environment: ours minus any DTASK_ROLE*, plus the two */
  extern char **environ;
  size_t ne = 0;
  while (environ[ne]) ne++;
  char **env = dt__xcalloc(ne + 3, sizeof(char *));
  size_t k = 0;
  for (size_t i = 0; i < ne; i++)
    if (strncmp(environ[i], "DTASK_ROLE", 10) != 0) env[k++] = environ[i];
  env[k++] = role_env;
  env[k++] = args_env;
  env[k] = NULL;
  char *argv[] = {exe, NULL};
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) exec_child(parent, keep_fd, exe, argv, env);
  free(joined);
  free(role_env);
  free(args_env);
  free(env);
  return pid;
}

/* spawn_command: cmd... role args... (cmd NULL: this program re-executed). */
static pid_t spawn_command(const char *const *cmd, size_t ncmd, const char *role,
                           const char *const *args, int nargs, int keep_fd) {
  if (!cmd || !ncmd) return dt__spawn_role(role, args, nargs, keep_fd);
  char **argv = dt__xcalloc(ncmd + (size_t)nargs + 2, sizeof(char *));
  size_t k = 0;
  for (size_t i = 0; i < ncmd; i++) argv[k++] = (char *)cmd[i];
  argv[k++] = (char *)role;
  for (int i = 0; i < nargs; i++) argv[k++] = (char *)args[i];
  argv[k] = NULL;
  extern char **environ;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) exec_child(parent, keep_fd, cmd[0], argv, environ);
  free(argv);
  return pid;
}

void dt__stop_pids(pid_t *pids, int n) {
  for (int i = 0; i < n; i++)
    if (pids[i] > 0) kill(pids[i], SIGTERM);
  uint64_t deadline = dt__now_ns() + 3000000000ull;
  for (int i = 0; i < n; i++) {
    if (pids[i] <= 0) continue;
    for (;;) {
      pid_t r = waitpid(pids[i], NULL, WNOHANG);
      if (r == pids[i] || (r < 0 && errno == ECHILD)) break;
      if (dt__now_ns() > deadline) {
        kill(pids[i], SIGKILL);
        waitpid(pids[i], NULL, 0);
        break;
      }
      usleep(5000);
    }
    pids[i] = -1;
  }
}

static void close_all_at_exit(void) {
  for (;;) {
    pthread_mutex_lock(&live_lock);
    dt_local_cluster *lc = live;
    pthread_mutex_unlock(&live_lock);
    if (!lc) return;
    dt_local_cluster_close(lc);
  }
}

int dt_local_cluster_start(const dt_local_cluster_opts *opts, dt_local_cluster **out) {
  dt__err_clear();
  if (!out) return dt__err(DT_EINVAL, "dt_local_cluster_start: out is NULL");
  *out = NULL;
  dt_local_cluster_opts o = opts ? *opts : (dt_local_cluster_opts){0};
  double ttl;
  if (o.worker_ttl && dt__parse_duration(o.worker_ttl, &ttl) != 0)
    return dt__err(DT_EINVAL, "LocalCluster: worker_ttl: %s", dt_last_error());
  uint64_t ml;
  if (o.memory_limit && dt__parse_memory(o.memory_limit, 1, &ml) != 0)
    return dt__err(DT_EINVAL, "LocalCluster: memory_limit: %s", dt_last_error());
  if (o.allowed_failures > 250)
    return dt__err(DT_EINVAL, "LocalCluster: allowed_failures %d is over 250", o.allowed_failures);
  if (o.n_workers < 0 || o.threads_per_worker < 0 || o.port < 0 || o.port > 65535)
    return dt__err(DT_EINVAL, "LocalCluster: n_workers, threads_per_worker and port must be >= 0");
  if (o.n_role_command && (!o.role_command || !o.role_command[0] || o.role_command[0][0] != '/'))
    return dt__err(DT_EINVAL, "LocalCluster: role_command[0] must be an absolute path");
  if (o.n_workers == 0) o.n_workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (o.n_workers <= 0) o.n_workers = 1;
  if (o.n_workers > 1024) return dt__err(DT_EINVAL, "LocalCluster: n_workers %d is over 1024", o.n_workers);
  if (o.threads_per_worker == 0) o.threads_per_worker = 1;
  if (!o.host) o.host = "127.0.0.1";
  if (o.timeout_ms <= 0) o.timeout_ms = 30000;
  if (!o.log_level) o.log_level = getenv("DTASK_LOG_LEVEL");
  if (!o.log_level) o.log_level = "warning";
  if (dt__log_parse_level(o.log_level) < 0)
    return dt__err(DT_EINVAL, "LocalCluster: unknown log level '%s'", o.log_level);

  pthread_mutex_lock(&live_lock);
  if (!atexit_done) {
    atexit(close_all_at_exit);
    atexit_done = true;
  }
  pthread_mutex_unlock(&live_lock);

  dt_local_cluster *lc = dt__xcalloc(1, sizeof(*lc));
  lc->workers = dt__xcalloc((size_t)o.n_workers, sizeof(pid_t));
  for (int i = 0; i < o.n_workers; i++) lc->workers[i] = -1;
  if (!o.no_auth) { /* a fresh secret, in a file only this user can read */
    unsigned char rnd[32];
    int fd = -1;
    if (dt__sec_random(rnd, sizeof(rnd)) == 0) {
      for (int i = 0; i < 32; i++) sprintf(lc->secret + 2 * i, "%02x", rnd[i]);
      const char *tmp = getenv("TMPDIR");
      snprintf(lc->auth_file, sizeof(lc->auth_file), "%s/dtask-auth-XXXXXX", tmp && *tmp ? tmp : "/tmp");
      fd = mkstemp(lc->auth_file);
    }
    if (fd < 0 || write(fd, lc->secret, 64) != 64 || close(fd) != 0) {
      int e = errno;
      if (fd >= 0) unlink(lc->auth_file);
      free(lc->workers);
      free(lc);
      return dt__err(DT_ESPAWN, "LocalCluster: cannot write the auth file: %s", strerror(e));
    }
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    free(lc->workers);
    free(lc);
    return dt__err(DT_ESPAWN, "LocalCluster: pipe: %s", strerror(errno));
  }
  char portbuf[16], fdbuf[16], afbuf[16];
  snprintf(portbuf, sizeof(portbuf), "%d", o.port);
  snprintf(fdbuf, sizeof(fdbuf), "%d", fds[1]);
  snprintf(afbuf, sizeof(afbuf), "%d", o.allowed_failures == 0 ? 3 : o.allowed_failures < 0 ? 0 : o.allowed_failures);
  char dash[96];
  snprintf(dash, sizeof(dash), "%s:%d", o.host, o.dashboard_port > 0 ? o.dashboard_port : 8787);
  const char *sargs[20] = {"--host", o.host, "--port", portbuf, "--ready-fd", fdbuf,
                           "--log-level", o.log_level, "--allowed-failures", afbuf,
                           "--worker-ttl", o.worker_ttl ? o.worker_ttl : "60s"};
  int ns = 12;
  if (o.no_dashboard) {
    sargs[ns++] = "--no-dashboard";
  } else {
    sargs[ns++] = "--dashboard-address";
    sargs[ns++] = dash;
  }
  if (lc->auth_file[0]) {
    sargs[ns++] = "--auth-file";
    sargs[ns++] = lc->auth_file;
  }
  lc->scheduler = spawn_command(o.role_command, o.n_role_command, "scheduler", sargs, ns, fds[1]);
  close(fds[1]);
  int rc = 0;
  if (lc->scheduler < 0) {
    rc = dt__err(DT_ESPAWN, "LocalCluster: cannot start the scheduler: %s", strerror(errno));
  } else {
    /* the scheduler writes its address when it listens */
    char buf[200];
    size_t got = 0;
    uint64_t deadline = dt__now_ns() + (uint64_t)o.timeout_ms * 1000000ull;
    while (got < sizeof(buf) - 1 && !memchr(buf, '\n', got)) {
      int left = (int)((deadline - dt__now_ns()) / 1000000ull);
      struct pollfd p = {fds[0], POLLIN, 0};
      if (dt__now_ns() >= deadline || poll(&p, 1, left > 0 ? left : 1) <= 0) break;
      ssize_t n = read(fds[0], buf + got, sizeof(buf) - 1 - got);
      if (n <= 0) break;
      got += (size_t)n;
    }
    buf[got] = '\0';
    char *nl = strchr(buf, '\n');
    if (!nl) {
      rc = dt__err(DT_ESPAWN,
                   "LocalCluster: the scheduler did not start on %s:%d (see its log above)",
                   o.host, o.port);
    } else {
      *nl = '\0';
      char *sp = strchr(buf, ' ');
      if (sp) {
        *sp = '\0';
        if (strcmp(sp + 1, "-") != 0) snprintf(lc->dashboard, sizeof(lc->dashboard), "%s", sp + 1);
      }
      snprintf(lc->address, sizeof(lc->address), "%s", buf);
    }
  }
  close(fds[0]);
  for (int i = 0; rc == 0 && i < o.n_workers; i++) {
    char nt[16], name[64];
    snprintf(nt, sizeof(nt), "%d", o.threads_per_worker);
    snprintf(name, sizeof(name), "local-worker-%d", i);
    char mem[64];
    if (o.memory_limit) snprintf(mem, sizeof(mem), "%s", o.memory_limit);
    else snprintf(mem, sizeof(mem), "%llu",
                  (unsigned long long)((double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) /
                                       o.n_workers));
    const char *wargs[14] = {lc->address, "--nthreads", nt, "--name", name, "--log-level", o.log_level,
                             o.no_nanny ? "--no-nanny" : "--nanny", "--memory-limit", mem};
    int nw = 10;
    if (lc->auth_file[0]) {
      wargs[nw++] = "--auth-file";
      wargs[nw++] = lc->auth_file;
    }
    if (o.resources) {
      wargs[nw++] = "--resources";
      wargs[nw++] = o.resources;
    }
    lc->workers[i] = spawn_command(o.role_command, o.n_role_command, "worker", wargs, nw, -1);
    if (lc->workers[i] < 0) rc = dt__err(DT_ESPAWN, "LocalCluster: cannot start worker %d", i);
  }
  lc->n_workers = o.n_workers;
  if (rc == 0) {
    dt_client *c = NULL;
    dt_client_opts co = {.address = lc->address, .timeout_ms = o.timeout_ms, .name = "local-cluster",
                         .auth_file = lc->auth_file[0] ? lc->auth_file : NULL};
    rc = dt_client_connect(&co, &c);
    if (rc == 0) rc = dt_client_wait_for_workers(c, o.n_workers, o.timeout_ms);
    if (rc) {
      char msg[600];
      snprintf(msg, sizeof(msg), "%s", dt_last_error());
      rc = dt__err(rc, "LocalCluster: %s", msg);
    }
    dt_client_close(c);
  }
  if (rc) {
    int saved = rc;
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    dt__stop_pids(lc->workers, lc->n_workers);
    dt__stop_pids(&lc->scheduler, 1);
    if (lc->auth_file[0]) unlink(lc->auth_file);
    free(lc->workers);
    free(lc);
    return dt__err(saved, "%s", msg);
  }
  pthread_mutex_lock(&live_lock);
  lc->next = live;
  live = lc;
  pthread_mutex_unlock(&live_lock);
  *out = lc;
  return 0;
}

const char *dt_local_cluster_address(const dt_local_cluster *lc) { return lc ? lc->address : NULL; }

int dt_local_cluster_worker_pid(const dt_local_cluster *lc, int i) {
  if (!lc || i < 0 || i >= lc->n_workers) return -1;
  return lc->workers[i];
}

int dt_local_cluster_scheduler_pid(const dt_local_cluster *lc) { return lc ? lc->scheduler : -1; }

const char *dt_local_cluster_dashboard(const dt_local_cluster *lc) {
  return lc && lc->dashboard[0] ? lc->dashboard : NULL;
}

const char *dt_local_cluster_auth_file(const dt_local_cluster *lc) {
  return lc && lc->auth_file[0] ? lc->auth_file : NULL;
}

void dt_local_cluster_close(dt_local_cluster *lc) {
  if (!lc) return;
  pthread_mutex_lock(&live_lock);
  dt_local_cluster **pp = &live;
  while (*pp && *pp != lc) pp = &(*pp)->next;
  if (*pp) *pp = lc->next;
  pthread_mutex_unlock(&live_lock);
  dt__stop_pids(lc->workers, lc->n_workers);
  dt__stop_pids(&lc->scheduler, 1);
  if (lc->auth_file[0]) unlink(lc->auth_file);
  free(lc->workers);
  free(lc);
}

bool dt__local_secret(const char *addr, dt_sec *out) {
  bool found = false;
  pthread_mutex_lock(&live_lock);
  for (dt_local_cluster *lc = live; lc && !found; lc = lc->next)
    if (lc->secret[0] && strcmp(lc->address, addr) == 0) {
      memset(out, 0, sizeof(*out));
      found = dt__sec_set_secret(out, lc->secret, 64) == 0;
    }
  pthread_mutex_unlock(&live_lock);
  return found;
}
