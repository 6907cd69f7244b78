/*
 * jobqueue_batch.c -- a job-queue cluster talking to its batch system:
 * running sbatch/qsub, scancel/qdel and squeue/qstat (bounded in time), and
 * reading the job ids and states they print.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobqueue.h"

bool dt__jq_on_path(const char *cmd) {
  if (strchr(cmd, '/')) return access(cmd, X_OK) == 0;
  const char *path = getenv("PATH");
  if (!path) path = "/usr/bin:/bin";
  char buf[4096];
  for (const char *p = path; *p;) {
    const char *e = strchr(p, ':');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, cmd);
    if (access(buf, X_OK) == 0) return true;
    p = e ? e + 1 : p + n;
  }
  return false;
}

/* run: argv, output into out (NUL-terminated, stdout then stderr); the exit
 * status, or -1 if it could not run */
static int run(char *const argv[], char *out, size_t cap, int timeout_ms) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  extern char **environ;
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    snprintf(out, cap, "%s", strerror(rc));
    return -1;
  }
  size_t got = 0;
  uint64_t end = dt__now_ns() + (uint64_t)timeout_ms * 1000000ull;
  for (;;) {
    int left = (int)((end - dt__now_ns()) / 1000000ull);
    struct pollfd p = {fds[0], POLLIN, 0};
    if (dt__now_ns() >= end || poll(&p, 1, left > 0 ? left : 1) <= 0) {
      kill(pid, SIGKILL);
      snprintf(out + got, cap - got, "%s(timed out)", got ? " " : "");
      break;
    }
    char tmp[4096];
    ssize_t n = read(fds[0], tmp, sizeof(tmp));
    if (n <= 0) break;
    size_t take = (size_t)n < cap - 1 - got ? (size_t)n : cap - 1 - got;
    memcpy(out + got, tmp, take);
    got += take;
  }
  close(fds[0]);
  out[got < cap ? got : cap - 1] = '\0';
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void trim(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r')) s[--n] = '\0';
}

/* submit one job (locked) */
int dt__jq_submit(dt_jobqueue_cluster *jc) {
  const char *cmd = dt__jq_sys_submit(jc->o.system);
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)cmd;
  char ob[700], eb[700];
  if (jc->o.system == DT_JOBQUEUE_SLURM) argv[n++] = "--parsable";
  else { /* output files on the command line (the Slurm qsub wrapper ignores
          * #PBS -o/-e): a folder for PBS, file names with %j for the wrapper */
    const char *ld = jc->o.log_directory;
    const char *nm = jc->o.job_name && *jc->o.job_name ? jc->o.job_name : "dtask-worker";
    if (jc->pbs_on_slurm) {
      snprintf(ob, sizeof(ob), "%s/%s-%%j.out", ld, nm);
      snprintf(eb, sizeof(eb), "%s/%s-%%j.err", ld, nm);
    } else {
      snprintf(ob, sizeof(ob), "%s/", ld);
      snprintf(eb, sizeof(eb), "%s/", ld);
    }
    argv[n++] = "-o";
    argv[n++] = ob;
    argv[n++] = "-e";
    argv[n++] = eb;
  }
  for (size_t i = 0; i < jc->o.n_submit_command_extra && n < 60; i++)
    argv[n++] = (char *)jc->o.submit_command_extra[i];
  argv[n++] = jc->script_path;
  argv[n] = NULL;
  char out[4096];
  int rc = run(argv, out, sizeof(out), 30000);
  trim(out);
  if (rc != 0) {
    snprintf(jc->last_error, sizeof(jc->last_error), "%s refused the job (exit %d): %.400s", cmd, rc, out);
    return dt__err(DT_ESPAWN, "%s", jc->last_error);
  }
  /* the id: the first token; Slurm's --parsable may add ";cluster" */
  char *line = strrchr(out, '\n');
  line = line ? line + 1 : out;
  char id[64];
  snprintf(id, sizeof(id), "%.*s", (int)strcspn(line, "; \t"), line);
  char *end;
  long num = strtol(id, &end, 10);
  if (end == id || num <= 0) {
    snprintf(jc->last_error, sizeof(jc->last_error), "%s printed no job id: '%.400s'", cmd, out);
    return dt__err(DT_ESPAWN, "%s", jc->last_error);
  }
  if (jc->njobs == jc->capjobs) {
    jc->capjobs = jc->capjobs ? 2 * jc->capjobs : 8;
    jc->jobs = dt__xrealloc(jc->jobs, jc->capjobs * sizeof(job));
  }
  job *j = &jc->jobs[jc->njobs++];
  memset(j, 0, sizeof(*j));
  snprintf(j->id, sizeof(j->id), "%s", id);
  j->num = num;
  j->state = 'Q';
  j->submitted = dt__now_s();
  DT_INFO("%s job %s submitted", dt__jq_sys_name(jc->o.system), j->id);
  return 0;
}

void dt__jq_cancel(dt_jobqueue_cluster *jc, job **js, size_t n) {
  if (!n) return;
  char *argv[260];
  size_t k = 0;
  argv[k++] = (char *)dt__jq_sys_cancel(jc->o.system);
  for (size_t i = 0; i < n && k < 258; i++) argv[k++] = js[i]->id;
  argv[k] = NULL;
  char out[2048];
  run(argv, out, sizeof(out), 30000); /* jobs already gone make it complain: fine */
  for (size_t i = 0; i < n; i++) {
    DT_INFO("%s job %s cancelled", dt__jq_sys_name(jc->o.system), js[i]->id);
    js[i]->state = 'G';
  }
}

/* refresh: job states from the batch system (locked; runs the command) */
void dt__jq_refresh(dt_jobqueue_cluster *jc) {
  if (!jc->njobs) return;
  char out[65536];
  int rc;
  if (jc->o.system == DT_JOBQUEUE_SLURM) {
    char *argv[] = {"squeue", "-h", "--me", "-o", "%i|%T|%r", NULL};
    rc = run(argv, out, sizeof(out), 30000);
  } else {
    char *argv[] = {"qstat", NULL};
    rc = run(argv, out, sizeof(out), 30000);
  }
  if (rc != 0) {
    DT_WARN("%s failed (exit %d): %s", dt__jq_sys_status(jc->o.system), rc, out);
    return; /* keep what we knew */
  }
  for (size_t i = 0; i < jc->njobs; i++) {
    job *j = &jc->jobs[i];
    if (j->state == 'G') continue;
    int st = 'G';
    char reason[64] = "";
    for (char *line = out; line && *line;) {
      char *next = strchr(line, '\n');
      if (next) *next = '\0';
      char *end;
      long num = strtol(line, &end, 10);
      if (num == j->num && end != line) {
        if (jc->o.system == DT_JOBQUEUE_SLURM) { /* id|STATE|reason */
          char *s1 = strchr(line, '|');
          char *s2 = s1 ? strchr(s1 + 1, '|') : NULL;
          if (s1 && strncmp(s1 + 1, "PENDING", 7) == 0) st = 'Q';
          else if (s1 && (strncmp(s1 + 1, "RUNNING", 7) == 0 || strncmp(s1 + 1, "CONFIGURING", 11) == 0)) st = 'R';
          else st = 'G'; /* COMPLETING, CANCELLED, ...: on its way out */
          if (s2) snprintf(reason, sizeof(reason), "%s", s2 + 1);
        } else { /* Job id  Name  User  Time Use  S  Queue */
          char f[6][64] = {{0}};
          int nf = sscanf(line, "%63s %63s %63s %63s %63s %63s", f[0], f[1], f[2], f[3], f[4], f[5]);
          const char *s = nf >= 5 ? f[4] : "C";
          st = s[0] == 'R' || s[0] == 'E' ? 'R' : s[0] == 'Q' || s[0] == 'H' || s[0] == 'W' ? 'Q' : 'G';
        }
      }
      if (next) *next = '\n';
      line = next ? next + 1 : NULL;
    }
    if (st == 'R' && dt__now_s() - j->submitted > 15) jc->quick_ends = 0;
    if (st == 'R' && j->started == 0) { /* lifetime: counted from here; queue wait seen */
      j->started = dt__now_s();
      jc->queue_wait_s = j->started - j->submitted;
    }
    if (st == 'G' && j->state != 'G') {
      DT_INFO("%s job %s has ended", dt__jq_sys_name(jc->o.system), j->id);
      if (dt__now_s() - j->submitted < 15 && ++jc->quick_ends >= 3) {
        /* a job that ends as soon as it starts would be replaced forever */
        snprintf(jc->last_error, sizeof(jc->last_error),
                 "%d jobs in a row ended within seconds of being submitted (the last: %s); not "
                 "replacing them: see their output in %s",
                 jc->quick_ends, j->id, jc->o.log_directory);
        DT_ERROR("%s", jc->last_error);
      }
    }
    j->state = st;
    snprintf(j->reason, sizeof(j->reason), "%s", reason);
  }
  /* forget jobs that are gone */
  size_t k = 0;
  for (size_t i = 0; i < jc->njobs; i++)
    if (jc->jobs[i].state != 'G') jc->jobs[k++] = jc->jobs[i];
  jc->njobs = k;
}

