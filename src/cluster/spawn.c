/*
 * spawn.c -- the processes and the secret of a cluster (see spawn.h):
 * re-executing this program in a role (and taking over in the child before
 * main), starting the scheduler and reading the address it reports,
 * stopping processes, and making a fresh shared secret in a 0600 file.
 * Shared by LocalCluster (local.c) and the job-queue clusters (jobqueue*.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../client/bind.h" /* dt__scheduler_main, dt__worker_main */
#include "../common/common.h"
#include "../common/parse.h"
#include "../net/secure.h"
#include "spawn.h"

/* ---------------------------------------------------------------- takeover */

static int run_role(const char *role, char *args) {
  char *argv[64];
  int argc = 0;
  if (args && *args) {
    char *p = args;
    while (p && argc < 63) {
      argv[argc++] = p;
      p = strchr(p, DT_ROLE_ARG_SEP);
      if (p) *p++ = '\0';
    }
  }
  argv[argc] = NULL;
  if (strcmp(role, "scheduler") == 0) return dt__scheduler_main(argc, argv);
  if (strcmp(role, "worker") == 0) return dt__worker_main(argc, argv);
  fprintf(stderr, "dtask: unknown DTASK_ROLE '%s'\n", role);
  return 2;
}

/* glibc passes constructors argc, argv and envp */
__attribute__((constructor)) static void dt__role_takeover(int argc, char **argv, char **envp) {
  const char *role = getenv("DTASK_ROLE");
  if (!role) return;
  dt__run_program_constructors(argc, argv, envp); /* libdtask.so: the program's DT_TASKs */
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
    if (i) strncat(joined, (char[]){DT_ROLE_ARG_SEP, 0}, 2);
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

pid_t dt__spawn_command(const char *const *cmd, size_t ncmd, const char *role,
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

/* ---------------------------------------------------------------- scheduler */

int dt__scheduler_spawn(const char *const *cmd, size_t ncmd, const char *const *args, int nargs,
                        int timeout_ms, pid_t *pid, char *addr, size_t addrcap, char *dash,
                        size_t dashcap) {
  *pid = -1;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return dt__err(DT_ESPAWN, "pipe: %s", strerror(errno));
  char fdbuf[16];
  snprintf(fdbuf, sizeof(fdbuf), "%d", fds[1]);
  const char **all = dt__xcalloc((size_t)nargs + 2, sizeof(char *));
  for (int i = 0; i < nargs; i++) all[i] = args[i];
  all[nargs] = "--ready-fd";
  all[nargs + 1] = fdbuf;
  *pid = dt__spawn_command(cmd, ncmd, "scheduler", all, nargs + 2, fds[1]);
  int spawn_errno = errno;
  free(all);
  close(fds[1]);
  if (*pid < 0) {
    close(fds[0]);
    *pid = -1;
    return dt__err(DT_ESPAWN, "cannot start the scheduler: %s", strerror(spawn_errno));
  }
  /* the scheduler writes "ADDRESS DASHBOARD\n" ("-": none) when it listens */
  char buf[512];
  size_t got = 0;
  uint64_t deadline = dt__now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 30000) * 1000000ull;
  while (got < sizeof(buf) - 1 && !memchr(buf, '\n', got)) {
    uint64_t now = dt__now_ns();
    if (now >= deadline) break;
    int left = (int)((deadline - now) / 1000000ull);
    struct pollfd p = {fds[0], POLLIN, 0};
    int pr = poll(&p, 1, left > 0 ? left : 1);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) break;
    ssize_t n = read(fds[0], buf + got, sizeof(buf) - 1 - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fds[0]);
  buf[got] = '\0';
  char *nl = strchr(buf, '\n');
  char *sp = nl ? memchr(buf, ' ', (size_t)(nl - buf)) : NULL;
  if (nl) *nl = '\0';
  if (sp) *sp = '\0';
  if (!nl || !strrchr(buf, ':')) {
    dt__stop_pids(pid, 1);
    return dt__err(DT_ESPAWN, "the scheduler did not start (see its log above)");
  }
  snprintf(addr, addrcap, "%s", buf);
  snprintf(dash, dashcap, "%s", sp && strcmp(sp + 1, "-") != 0 ? sp + 1 : "");
  return 0;
}

/* ---------------------------------------------------------------- secret */

int dt__secret_new(const char *path_template, char *path, size_t pathcap, char hex[65]) {
  unsigned char rnd[32];
  hex[0] = '\0';
  if ((size_t)snprintf(path, pathcap, "%s", path_template) >= pathcap)
    return dt__err(DT_ESPAWN, "cannot write the auth file %s: the path is too long", path_template);
  if (dt__sec_random(rnd, sizeof(rnd)) != 0)
    return dt__err(DT_ESPAWN, "cannot write the auth file %s: no random bytes", path);
  for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", rnd[i]);
  size_t l = strlen(path);
  bool unique = l >= 6 && strcmp(path + l - 6, "XXXXXX") == 0;
  if (unique) { /* claim a fresh name (0600), then fill it atomically */
    int fd = mkstemp(path);
    if (fd < 0)
      return dt__err(DT_ESPAWN, "cannot write the auth file %s: %s", path, strerror(errno));
    close(fd);
  } else if (access(path, F_OK) == 0) {
    return dt__err(DT_ESPAWN, "cannot write the auth file %s: it exists", path);
  }
  if (dt__secret_file_write(path, hex, 64) != 0) {
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    if (unique) unlink(path);
    return dt__err(DT_ESPAWN, "cannot write the auth file %s: %s", path, msg);
  }
  return 0;
}
