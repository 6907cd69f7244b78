/*
 * journal_cli.c -- the scheduler's journal options (--journal FILE,
 * --journal-max-size, --journal-grace, --cluster-id), opening the journal
 * for the daemon, and --restart-on-crash: a small supervisor process that
 * forks the scheduler and forks it again when it dies by a signal (the
 * new one replays the journal at the same address).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/parse.h"
#include "server.h"

int dt__journal_cli(dt__journal_opts *o, int argc, char **argv, int *i) {
  const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
  if (strcmp(a, "--restart-on-crash") == 0) {
    o->restart = true;
    return 1;
  }
  if (!v) return 0;
  if (strcmp(a, "--journal") == 0) o->path = v;
  else if (strcmp(a, "--cluster-id") == 0) o->cluster_id = v;
  else if (strcmp(a, "--journal-max-size") == 0) {
    if (dt__parse_memory(v, 1, &o->max_bytes) != 0 || o->max_bytes < 4096) {
      fprintf(stderr, "dtask scheduler: --journal-max-size: invalid size '%s' (e.g. 64MiB)\n", v);
      return -1;
    }
  } else if (strcmp(a, "--journal-client-grace") == 0) {
    if (dt__parse_duration(v, &o->client_grace_s) != 0 || o->client_grace_s <= 0) {
      fprintf(stderr, "dtask scheduler: --journal-client-grace: invalid duration '%s' (e.g. 120s)\n",
              v);
      return -1;
    }
  } else if (strcmp(a, "--journal-grace") == 0) {
    if (dt__parse_duration(v, &o->grace_s) != 0 || o->grace_s < 0) {
      fprintf(stderr, "dtask scheduler: --journal-grace: invalid duration '%s' (e.g. 5s)\n", v);
      return -1;
    }
  } else return 0;
  (*i)++;
  return 1;
}

int dt__journal_open_srv(const dt__journal_opts *o, const char *address) {
  char name[300];
  char tok[65] = "";
  if (dt__srv.sec.auth) dt__sec_dashboard_token(&dt__srv.sec, tok);
  if (o->cluster_id) snprintf(name, sizeof(name), "id:%s", o->cluster_id);
  else snprintf(name, sizeof(name), "%s|%s", address, tok);
  uint8_t id[16];
  dt__journal_cluster_id(name, id);
  char why[600];
  if (dt__journal_start(&dt__srv.s, &dt__srv.loop, o->path, id, o->max_bytes,
                        o->grace_s > 0 ? o->grace_s : 5,
                        o->client_grace_s > 0 ? o->client_grace_s : 120, why, sizeof(why)) != 0) {
    fprintf(stderr, "dtask scheduler: %s\n", why);
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------- supervisor */

static volatile sig_atomic_t child_pid, stopping;
static void forward(int sig) {
  stopping = 1;
  if (child_pid > 0) kill((pid_t)child_pid, sig);
}

int dt__journal_supervise(int *ready_fd) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = forward;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  unsigned restarts = 0;
  for (;;) {
    time_t started = time(NULL);
    pid_t pid = fork();
    if (pid < 0) {
      fprintf(stderr, "dtask scheduler: --restart-on-crash: fork failed: %s\n", strerror(errno));
      return 1;
    }
    if (pid == 0) {
      signal(SIGTERM, SIG_DFL);
      signal(SIGINT, SIG_DFL);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      return -1; /* the scheduler runs in the child */
    }
    child_pid = pid;
    if (*ready_fd >= 0) { /* only the first scheduler reports readiness */
      close(*ready_fd);
      *ready_fd = -1;
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    child_pid = 0;
    if (!WIFSIGNALED(st) || stopping) return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    restarts++;
    unsigned delay_ms = time(NULL) - started < 2 ? (restarts < 6 ? 100u << restarts : 5000u) : 100u;
    if (delay_ms > 5000) delay_ms = 5000;
    fprintf(stderr, "dtask scheduler: the scheduler (pid %d) died by signal %d (%s); restarting it "
                    "in %u ms (restart %u)\n", (int)pid, WTERMSIG(st), strsignal(WTERMSIG(st)),
            delay_ms, restarts);
    struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stopping) {}
    if (stopping) return 0;
  }
}
