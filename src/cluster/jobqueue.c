/*
 * jobqueue.c -- clusters whose workers are batch jobs, on Slurm (sbatch,
 * squeue, scancel) and PBS (qsub, qstat, qdel): dask-jobqueue's
 * SLURMCluster and PBSCluster.  One implementation; what differs between
 * the two is in the `sys_*` table below (directives and commands).
 *
 * The scheduler runs on this host (a child process, as in LocalCluster).
 * A monitor thread polls the batch system and the scheduler once a second:
 * it notices jobs that ended (finished, cancelled from outside, walltime)
 * and replaces them while they are still wanted, and it drives adapt().
 */
#include <errno.h>
#include <stdarg.h>
#include <strings.h>
#include <time.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../cli/roles.h"
#include "../client/client.h"
#include "../net/secure.h"

#define ARG_SEP '\x1f'

typedef struct {
  char id[64];  /* as the batch system printed it */
  long num;     /* its number (worker names use it) */
  int state;    /* 'Q' pending, 'R' running, 'G' gone */
  char reason[64];
  double submitted;
} job;

struct dt_jobqueue_cluster {
  dt_jobqueue_opts o;
  char **strings; /* copies of every string in o */
  size_t nstrings;
  char address[256], auth_file[700], dir[600], script_path[700];
  char *script;
  pid_t scheduler;
  dt_client *client;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_t monitor;
  bool stop;
  job *jobs;
  size_t njobs, capjobs;
  int target_jobs;
  bool pbs_on_slurm; /* qsub is Slurm's Torque wrapper */
  int quick_ends;    /* jobs in a row that ended within seconds of starting */
  bool adaptive;
  int amin, amax, idle_rounds;
  char last_error[512];
};

/* ---------------------------------------------------------------- systems */

static const char *sys_name(dt_jobqueue_system s) { return s == DT_JOBQUEUE_PBS ? "PBS" : "Slurm"; }
static const char *sys_submit(dt_jobqueue_system s) { return s == DT_JOBQUEUE_PBS ? "qsub" : "sbatch"; }
static const char *sys_cancel(dt_jobqueue_system s) { return s == DT_JOBQUEUE_PBS ? "qdel" : "scancel"; }
static const char *sys_status(dt_jobqueue_system s) { return s == DT_JOBQUEUE_PBS ? "qstat" : "squeue"; }

/* parse_bytes: "4GB", "4 GiB", "512MB", "1e9" -> bytes; 0 on error */
static uint64_t parse_bytes(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || v <= 0) return 0;
  while (*end == ' ') end++;
  static const struct { const char *u; double m; } units[] = {
      {"", 1},       {"b", 1},       {"kb", 1e3},    {"mb", 1e6},   {"gb", 1e9},
      {"tb", 1e12},  {"kib", 1024.}, {"mib", 1048576.}, {"gib", 1073741824.},
      {"tib", 1099511627776.}, {"k", 1024.}, {"m", 1048576.}, {"g", 1073741824.}};
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    if (strcasecmp(end, units[i].u) == 0) return (uint64_t)(v * units[i].m);
  return 0;
}

/* ---------------------------------------------------------------- the script */

static void sb_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void sb_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < *cap - *len) {
      *len += (size_t)n;
      return;
    }
    *cap = *cap * 2 + (size_t)(n > 0 ? n : 64);
    *buf = dt__xrealloc(*buf, *cap);
  }
}

/* sb_quote: s as one shell word: as is when it is plain, else 'quoted' */
static void sb_quote(char **b, size_t *l, size_t *c, const char *s) {
  bool plain = *s != '\0';
  for (const char *p = s; *p && plain; p++)
    plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("_./:=@%+,-", *p);
  if (plain) {
    sb_add(b, l, c, "%s", s);
    return;
  }
  sb_add(b, l, c, "'");
  for (; *s; s++) {
    if (*s == '\'') sb_add(b, l, c, "'\\''");
    else sb_add(b, l, c, "%c", *s);
  }
  sb_add(b, l, c, "'");
}

static bool is_dtask_binary(char *path, size_t cap) {
  ssize_t n = readlink("/proc/self/exe", path, cap - 1);
  if (n <= 0) return false;
  path[n] = '\0';
  const char *base = strrchr(path, '/');
  return strcmp(base ? base + 1 : path, "dtask") == 0;
}

char *dt_jobqueue_job_script(const dt_jobqueue_opts *op, const char *address, const char *auth_file) {
  dt_jobqueue_opts o = op ? *op : (dt_jobqueue_opts){0};
  int cores = o.cores > 0 ? o.cores : 1, procs = o.processes > 0 ? o.processes : 1;
  int threads = cores / procs > 0 ? cores / procs : 1;
  const char *name = o.job_name && *o.job_name ? o.job_name : "dtask-worker";
  const char *wall = o.walltime && *o.walltime ? o.walltime : "00:30:00";
  uint64_t mem = o.memory ? parse_bytes(o.memory) : 0;
  unsigned long mem_mb = mem ? (unsigned long)((mem + 999999) / 1000000) : 0;
  size_t len = 0, cap = 1024;
  char *b = dt__xmalloc(cap);
  b[0] = '\0';
  sb_add(&b, &len, &cap, "#!/usr/bin/env bash\n");
  if (o.system == DT_JOBQUEUE_PBS) {
    sb_add(&b, &len, &cap, "#PBS -N %s\n", name);
    if (o.queue && *o.queue) sb_add(&b, &len, &cap, "#PBS -q %s\n", o.queue);
    if (o.account && *o.account) sb_add(&b, &len, &cap, "#PBS -A %s\n", o.account);
    if (mem_mb) sb_add(&b, &len, &cap, "#PBS -l select=1:ncpus=%d:mem=%luMB\n", cores, mem_mb);
    else sb_add(&b, &len, &cap, "#PBS -l select=1:ncpus=%d\n", cores);
    sb_add(&b, &len, &cap, "#PBS -l walltime=%s\n", wall);
    for (size_t i = 0; i < o.n_job_extra_directives; i++)
      sb_add(&b, &len, &cap, "#PBS %s\n", o.job_extra_directives[i]);
  } else {
    sb_add(&b, &len, &cap, "#SBATCH -J %s\n", name);
    if (o.queue && *o.queue) sb_add(&b, &len, &cap, "#SBATCH -p %s\n", o.queue);
    if (o.account && *o.account) sb_add(&b, &len, &cap, "#SBATCH -A %s\n", o.account);
    sb_add(&b, &len, &cap, "#SBATCH -n 1\n#SBATCH --cpus-per-task=%d\n", cores);
    if (mem_mb) sb_add(&b, &len, &cap, "#SBATCH --mem=%luM\n", (unsigned long)((mem + 1048575) / 1048576));
    sb_add(&b, &len, &cap, "#SBATCH -t %s\n", wall);
    if (o.log_directory && *o.log_directory)
      sb_add(&b, &len, &cap, "#SBATCH -o %s/%%x-%%j.out\n", o.log_directory);
    for (size_t i = 0; i < o.n_job_extra_directives; i++)
      sb_add(&b, &len, &cap, "#SBATCH %s\n", o.job_extra_directives[i]);
  }
  sb_add(&b, &len, &cap, "\n");
  for (size_t i = 0; i < o.n_job_script_prologue; i++)
    sb_add(&b, &len, &cap, "%s\n", o.job_script_prologue[i]);
  sb_add(&b, &len, &cap,
         "JOB_ID=${SLURM_JOB_ID:-${PBS_JOBID%%%%.*}}\n"
         "DTASK_ADDRESS=%s\n",
         address ? address : "SCHEDULER_ADDRESS");
  /* the worker command and its arguments */
  char exe[4096];
  bool dtask_bin = is_dtask_binary(exe, sizeof(exe));
  char *args = NULL;
  size_t alen = 0, acap = 256;
  args = dt__xmalloc(acap);
  args[0] = '\0';
  sb_add(&args, &alen, &acap, " --nthreads %d --death-timeout 60s", threads);
  if (auth_file || !o.no_auth) {
    sb_add(&args, &alen, &acap, " --auth-file ");
    sb_quote(&args, &alen, &acap, auth_file ? auth_file : "AUTH_FILE");
  }
  if (o.local_directory && *o.local_directory) {
    sb_add(&args, &alen, &acap, " --local-directory ");
    sb_quote(&args, &alen, &acap, o.local_directory);
  }
  if (o.log_level) sb_add(&args, &alen, &acap, " --log-level %s", o.log_level);
  for (size_t i = 0; i < o.n_worker_extra_args; i++) {
    sb_add(&args, &alen, &acap, " ");
    sb_quote(&args, &alen, &acap, o.worker_extra_args[i]);
  }
  const char *suffix = procs > 1 ? "-$JOB_ID-$i" : "-$JOB_ID";
  char cmd[4300];
  if (o.worker_command && *o.worker_command) snprintf(cmd, sizeof(cmd), "%s worker", o.worker_command);
  else if (dtask_bin) snprintf(cmd, sizeof(cmd), "%s worker", exe);
  else cmd[0] = '\0'; /* this program, in the worker role */
  if (procs > 1) sb_add(&b, &len, &cap, "for i in $(seq 0 %d); do\n  ", procs - 1);
  else sb_add(&b, &len, &cap, "exec ");
  if (cmd[0]) {
    sb_add(&b, &len, &cap, "%s \"$DTASK_ADDRESS\" --name \"%s%s\"%s", cmd, name, suffix, args);
  } else {
    /* the program re-executes itself as a worker (its DT_TASKs come along),
     * arguments separated by \x1f as LocalCluster passes them */
    char *sep = dt__xstrdup(args + 1);
    for (char *p = sep; *p; p++)
      if (*p == ' ') *p = ARG_SEP;
    sb_add(&b, &len, &cap, "env DTASK_ROLE=worker DTASK_ROLE_ARGS=\"$DTASK_ADDRESS\"$'\\x1f--name\\x1f'\"%s%s\"$'\\x1f'", name, suffix);
    /* quoted pieces of args keep their quotes: good enough for paths without blanks */
    sb_add(&b, &len, &cap, "$'");
    for (char *p = sep; *p; p++) {
      if (*p == ARG_SEP) sb_add(&b, &len, &cap, "\\x1f");
      else if (*p == '\'') continue;
      else if (*p == '\\') sb_add(&b, &len, &cap, "\\\\");
      else sb_add(&b, &len, &cap, "%c", *p);
    }
    sb_add(&b, &len, &cap, "' %s", exe);
    free(sep);
  }
  if (procs > 1) sb_add(&b, &len, &cap, " &\ndone\nwait\n");
  else sb_add(&b, &len, &cap, "\n");
  free(args);
  return b;
}

/* ---------------------------------------------------------------- commands */

static bool on_path(const char *cmd) {
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
static int submit(dt_jobqueue_cluster *jc) {
  const char *cmd = sys_submit(jc->o.system);
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
  DT_INFO("%s job %s submitted", sys_name(jc->o.system), j->id);
  return 0;
}

static void cancel(dt_jobqueue_cluster *jc, job **js, size_t n) {
  if (!n) return;
  char *argv[260];
  size_t k = 0;
  argv[k++] = (char *)sys_cancel(jc->o.system);
  for (size_t i = 0; i < n && k < 258; i++) argv[k++] = js[i]->id;
  argv[k] = NULL;
  char out[2048];
  run(argv, out, sizeof(out), 30000); /* jobs already gone make it complain: fine */
  for (size_t i = 0; i < n; i++) {
    DT_INFO("%s job %s cancelled", sys_name(jc->o.system), js[i]->id);
    js[i]->state = 'G';
  }
}

/* refresh: job states from the batch system (locked; runs the command) */
static void refresh(dt_jobqueue_cluster *jc) {
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
    DT_WARN("%s failed (exit %d): %s", sys_status(jc->o.system), rc, out);
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
    if (st == 'G' && j->state != 'G') {
      DT_INFO("%s job %s has ended", sys_name(jc->o.system), j->id);
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

static int live_jobs(const dt_jobqueue_cluster *jc) {
  int n = 0;
  for (size_t i = 0; i < jc->njobs; i++) n += jc->jobs[i].state != 'G';
  return n;
}

/* job_of: the job number in a worker's name ("<job_name>-<num>[-<i>]"), or -1 */
static long job_of(const dt_jobqueue_cluster *jc, const char *worker) {
  const char *nm = jc->o.job_name && *jc->o.job_name ? jc->o.job_name : "dtask-worker";
  size_t l = strlen(nm);
  if (strncmp(worker, nm, l) != 0 || worker[l] != '-') return -1;
  char *end;
  long n = strtol(worker + l + 1, &end, 10);
  return end != worker + l + 1 && (*end == '\0' || *end == '-') ? n : -1;
}

/* retire_jobs: stop n running jobs (locked): idle ones first, newest first;
 * their workers retire (results moved), then the jobs are cancelled */
static void retire_jobs(dt_jobqueue_cluster *jc, size_t n) {
  dt_worker_info *ws = NULL;
  size_t nw = 0;
  if (dt_client_workers(jc->client, 10000, &ws, &nw) != 0) nw = 0;
  job **drop = dt__xcalloc(n, sizeof(job *));
  size_t k = 0;
  for (int pass = 0; pass < 2 && k < n; pass++)
    for (size_t i = jc->njobs; i-- > 0 && k < n;) {
      job *j = &jc->jobs[i];
      if (j->state != 'R') continue;
      bool busy = false, taken = false;
      for (size_t w = 0; w < nw; w++)
        if (job_of(jc, ws[w].name) == j->num && ws[w].processing > 0) busy = true;
      for (size_t d = 0; d < k; d++) taken |= drop[d] == j;
      if (!taken && (pass == 1 || !busy)) drop[k++] = j;
    }
  const char **names = dt__xcalloc(nw ? nw : 1, sizeof(char *));
  size_t nn = 0;
  for (size_t w = 0; w < nw; w++)
    for (size_t d = 0; d < k; d++)
      if (job_of(jc, ws[w].name) == drop[d]->num) names[nn++] = ws[w].name;
  int retired = 0;
  if (nn && dt_client_retire_workers(jc->client, names, nn, 120000, &retired) != 0) {
    /* some hold results no other worker can take: keep their jobs */
    DT_WARN("%s", dt_last_error());
    size_t kept = 0;
    dt_worker_info *now = NULL;
    size_t nnow = 0;
    if (dt_client_workers(jc->client, 10000, &now, &nnow) != 0) nnow = 0;
    for (size_t d = 0; d < k; d++) {
      bool alive = false;
      for (size_t w = 0; w < nnow; w++) alive |= job_of(jc, now[w].name) == drop[d]->num;
      if (!alive) drop[kept++] = drop[d];
    }
    free(now);
    k = kept;
  }
  cancel(jc, drop, k);
  free(names);
  free(ws);
  free(drop);
}

/* converge: submit or cancel to reach target_jobs (locked) */
static int converge(dt_jobqueue_cluster *jc) {
  int live = live_jobs(jc), rc = 0;
  while (live < jc->target_jobs && rc == 0 && jc->quick_ends < 3) {
    rc = submit(jc);
    if (rc == 0) live++;
  }
  if (live > jc->target_jobs) {
    /* pending jobs first (newest first), then running ones, idle ones first;
     * a running job's workers are retired before it is cancelled, so the
     * results only they hold are copied elsewhere */
    size_t want = (size_t)(live - jc->target_jobs), k = 0;
    job **drop = dt__xcalloc(want, sizeof(job *));
    for (size_t i = jc->njobs; i-- > 0 && k < want;)
      if (jc->jobs[i].state == 'Q') drop[k++] = &jc->jobs[i];
    cancel(jc, drop, k);
    size_t left = want - k;
    free(drop);
    if (left > 0) retire_jobs(jc, left);
  }
  return rc;
}

/* ---------------------------------------------------------------- monitor */

static void adapt_step(dt_jobqueue_cluster *jc) {
  dt_cluster_info info;
  if (dt_client_cluster_info(jc->client, 5000, &info) != 0) return;
  int procs = jc->o.processes > 0 ? jc->o.processes : 1;
  int64_t pending = info.n_waiting + info.n_queued + info.n_no_worker + info.n_processing;
  int threads = (jc->o.cores > 0 ? jc->o.cores : 1) / procs;
  if (threads < 1) threads = 1;
  int want_workers;
  if (pending > 0) {
    jc->idle_rounds = 0;
    want_workers = (int)((pending + threads - 1) / threads);
  } else {
    /* idle: shrink after a few quiet rounds (Dask's wait_count) */
    want_workers = ++jc->idle_rounds >= 3 ? 0 : (jc->target_jobs * procs);
  }
  if (want_workers < jc->amin) want_workers = jc->amin;
  if (want_workers > jc->amax) want_workers = jc->amax;
  int want_jobs = (want_workers + procs - 1) / procs;
  if (want_jobs != jc->target_jobs)
    DT_INFO("adapt: %lld tasks to do, %d workers connected: %d job(s)", (long long)pending,
            info.n_workers, want_jobs);
  jc->target_jobs = want_jobs;
}

static void *monitor_main(void *arg) {
  dt_jobqueue_cluster *jc = arg;
  pthread_mutex_lock(&jc->lock);
  while (!jc->stop) {
    struct timespec dl;
    dt__deadline(&dl, 1000);
    pthread_cond_timedwait(&jc->cond, &jc->lock, &dl);
    if (jc->stop) break;
    refresh(jc);
    if (jc->adaptive) adapt_step(jc);
    if (converge(jc) != 0) DT_WARN("%s", jc->last_error);
  }
  pthread_mutex_unlock(&jc->lock);
  return NULL;
}

/* ---------------------------------------------------------------- cluster */

static const char *keep(dt_jobqueue_cluster *jc, const char *s) {
  if (!s) return NULL;
  jc->strings = dt__xrealloc(jc->strings, (jc->nstrings + 1) * sizeof(char *));
  return jc->strings[jc->nstrings++] = dt__xstrdup(s);
}
static const char *const *keep_list(dt_jobqueue_cluster *jc, const char *const *l, size_t n) {
  if (!n) return NULL;
  const char **copy = dt__xcalloc(n, sizeof(char *));
  for (size_t i = 0; i < n; i++) copy[i] = keep(jc, l[i]);
  jc->strings = dt__xrealloc(jc->strings, (jc->nstrings + 1) * sizeof(char *));
  jc->strings[jc->nstrings++] = (char *)copy;
  return copy;
}

/* the address workers connect to: host, or the interface's IPv4, or the
 * first non-loopback IPv4, or 127.0.0.1 */
static int pick_host(const dt_jobqueue_opts *o, char *out, size_t cap) {
  if (o->host && *o->host) {
    snprintf(out, cap, "%s", o->host);
    return 0;
  }
  struct ifaddrs *ifs = NULL;
  if (getifaddrs(&ifs) != 0) {
    snprintf(out, cap, "127.0.0.1");
    return 0;
  }
  bool found = false;
  for (struct ifaddrs *i = ifs; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    bool loop = strcmp(i->ifa_name, "lo") == 0;
    if (o->interface && *o->interface ? strcmp(i->ifa_name, o->interface) != 0 : loop) continue;
    inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out, (socklen_t)cap);
    found = true;
  }
  freeifaddrs(ifs);
  if (!found && o->interface && *o->interface)
    return dt__err(DT_EINVAL, "network interface '%s' has no IPv4 address here", o->interface);
  if (!found) snprintf(out, cap, "127.0.0.1");
  return 0;
}

static void free_jc(dt_jobqueue_cluster *jc) {
  for (size_t i = 0; i < jc->nstrings; i++) free(jc->strings[i]);
  free(jc->strings);
  free(jc->jobs);
  free(jc->script);
  pthread_mutex_destroy(&jc->lock);
  pthread_cond_destroy(&jc->cond);
  free(jc);
}

int dt_jobqueue_cluster_start(const dt_jobqueue_opts *opts, dt_jobqueue_cluster **out) {
  dt__err_clear();
  if (!opts || !out) return dt__err(DT_EINVAL, "dt_jobqueue_cluster_start: NULL argument");
  *out = NULL;
  const dt_jobqueue_opts *o = opts;
  if (o->system != DT_JOBQUEUE_SLURM && o->system != DT_JOBQUEUE_PBS)
    return dt__err(DT_EINVAL, "job queue: unknown batch system %d", (int)o->system);
  if (o->cores < 0 || o->processes < 0 || o->port < 0 || o->port > 65535)
    return dt__err(DT_EINVAL, "job queue: cores, processes and port must be >= 0");
  if (o->memory && !parse_bytes(o->memory))
    return dt__err(DT_EINVAL, "job queue: cannot read memory '%s' (e.g. 4GB, 512MiB)", o->memory);
  if (o->processes > (o->cores > 0 ? o->cores : 1))
    return dt__err(DT_EINVAL, "job queue: %d processes need at least as many cores (cores=%d)",
                   o->processes, o->cores);
  const char *cmds[] = {sys_submit(o->system), sys_cancel(o->system), sys_status(o->system)};
  for (int i = 0; i < 3; i++)
    if (!on_path(cmds[i]))
      return dt__err(DT_ENOTFOUND,
                     "job queue: '%s' not found on PATH: is %s installed here? (for tests: "
                     "scripts/start-slurm.sh)",
                     cmds[i], sys_name(o->system));
  char host[128];
  if (pick_host(o, host, sizeof(host)) != 0) return DT_EINVAL;

  dt_jobqueue_cluster *jc = dt__xcalloc(1, sizeof(*jc));
  pthread_mutex_init(&jc->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* dt__deadline's clock */
  pthread_cond_init(&jc->cond, &ca);
  pthread_condattr_destroy(&ca);
  jc->o = *o;
  jc->o.memory = keep(jc, o->memory);
  jc->o.queue = keep(jc, o->queue);
  jc->o.account = keep(jc, o->account);
  jc->o.walltime = keep(jc, o->walltime);
  jc->o.job_name = keep(jc, o->job_name);
  jc->o.job_extra_directives = keep_list(jc, o->job_extra_directives, o->n_job_extra_directives);
  jc->o.job_script_prologue = keep_list(jc, o->job_script_prologue, o->n_job_script_prologue);
  jc->o.local_directory = keep(jc, o->local_directory);
  jc->o.log_directory = keep(jc, o->log_directory);
  jc->o.interface = keep(jc, o->interface);
  jc->o.host = keep(jc, o->host);
  jc->o.submit_command_extra = keep_list(jc, o->submit_command_extra, o->n_submit_command_extra);
  jc->o.worker_command = keep(jc, o->worker_command);
  jc->o.worker_extra_args = keep_list(jc, o->worker_extra_args, o->n_worker_extra_args);
  jc->o.log_level = keep(jc, o->log_level ? o->log_level : "warning");
  if (jc->o.job_start_timeout_ms <= 0) jc->o.job_start_timeout_ms = 300000;
  if (o->system == DT_JOBQUEUE_PBS) { /* Slurm's Torque wrapper is a Perl script calling sbatch */
    char path[4096];
    const char *pv = getenv("PATH");
    for (const char *p = pv ? pv : ""; *p && !jc->pbs_on_slurm;) {
      const char *e = strchr(p, ':');
      size_t n = e ? (size_t)(e - p) : strlen(p);
      snprintf(path, sizeof(path), "%.*s/qsub", (int)n, p);
      FILE *f = fopen(path, "r");
      if (f) {
        char head[65536];
        size_t got = fread(head, 1, sizeof(head) - 1, f);
        head[got] = '\0';
        jc->pbs_on_slurm = strstr(head, "sbatch") != NULL;
        fclose(f);
        break;
      }
      p = e ? e + 1 : p + n;
    }
  }

  /* a folder for the script (and the logs, unless log_directory): on a file
   * system the compute nodes see, so under $HOME */
  const char *home = getenv("HOME");
  char base[400];
  snprintf(base, sizeof(base), "%s/.dtask", home && *home ? home : "/tmp");
  mkdir(base, 0700);
  snprintf(jc->dir, sizeof(jc->dir), "%s/jobqueue-XXXXXX", base);
  int rc = 0;
  if (!mkdtemp(jc->dir)) {
    rc = dt__err(DT_ESPAWN, "job queue: cannot make a folder in %s: %s", base, strerror(errno));
    free_jc(jc);
    return rc;
  }
  if (!jc->o.log_directory) jc->o.log_directory = keep(jc, jc->dir);
  else mkdir(jc->o.log_directory, 0755);
  if (!o->no_auth) {
    unsigned char rnd[32];
    char hex[65];
    snprintf(jc->auth_file, sizeof(jc->auth_file), "%s/auth", jc->dir);
    int fd = dt__sec_random(rnd, sizeof(rnd)) == 0
                 ? open(jc->auth_file, O_WRONLY | O_CREAT | O_EXCL, 0600) : -1;
    for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", rnd[i]);
    if (fd < 0 || write(fd, hex, 64) != 64 || close(fd) != 0) {
      rc = dt__err(DT_ESPAWN, "job queue: cannot write the auth file %s", jc->auth_file);
      free_jc(jc);
      return rc;
    }
  }

  /* the scheduler, here, listening where workers can reach it */
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    free_jc(jc);
    return dt__err(DT_ESPAWN, "job queue: pipe: %s", strerror(errno));
  }
  char portbuf[16], fdbuf[16];
  snprintf(portbuf, sizeof(portbuf), "%d", o->port);
  snprintf(fdbuf, sizeof(fdbuf), "%d", fds[1]);
  const char *sargs[] = {"--host", o->host && *o->host ? o->host : "0.0.0.0", "--port", portbuf,
                         "--ready-fd", fdbuf, "--log-level", jc->o.log_level,
                         "--auth-file", jc->auth_file};
  jc->scheduler = dt__spawn_role("scheduler", sargs, jc->auth_file[0] ? 10 : 8, fds[1]);
  close(fds[1]);
  char buf[200];
  size_t got = 0;
  uint64_t deadline = dt__now_ns() + 30000000000ull;
  while (jc->scheduler > 0 && got < sizeof(buf) - 1 && !memchr(buf, '\n', got)) {
    struct pollfd p = {fds[0], POLLIN, 0};
    if (dt__now_ns() >= deadline || poll(&p, 1, 1000) < 0) break;
    ssize_t n = read(fds[0], buf + got, sizeof(buf) - 1 - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  close(fds[0]);
  buf[got] = '\0';
  char *sp = strchr(buf, ' ');
  if (sp) *sp = '\0'; /* then the dashboard's URL */
  char *colon = strrchr(buf, ':');
  if (!strchr(sp ? sp + 1 : buf, '\n') || !colon) {
    if (jc->scheduler > 0) dt__stop_pids(&jc->scheduler, 1);
    free_jc(jc);
    return dt__err(DT_ESPAWN, "job queue: the scheduler did not start (see its log above)");
  }
  int port = atoi(colon + 1);
  if (strchr(host, ':')) snprintf(jc->address, sizeof(jc->address), "[%s]:%d", host, port);
  else snprintf(jc->address, sizeof(jc->address), "%s:%d", host, port);
  dt_client_opts co = {.address = jc->address, .name = "jobqueue",
                       .auth_file = jc->auth_file[0] ? jc->auth_file : NULL};
  if ((rc = dt_client_connect(&co, &jc->client)) != 0) {
    char msg[600];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    dt__stop_pids(&jc->scheduler, 1);
    free_jc(jc);
    return dt__err(rc, "job queue: %s", msg);
  }
  jc->script = dt_jobqueue_job_script(&jc->o, jc->address, jc->auth_file[0] ? jc->auth_file : NULL);
  snprintf(jc->script_path, sizeof(jc->script_path), "%s/job.sh", jc->dir);
  FILE *f = fopen(jc->script_path, "w");
  if (!f || fputs(jc->script, f) < 0 || fclose(f) != 0) {
    dt_client_close(jc->client);
    dt__stop_pids(&jc->scheduler, 1);
    free_jc(jc);
    return dt__err(DT_ESPAWN, "job queue: cannot write %s", jc->script_path);
  }
  chmod(jc->script_path, 0700);
  if (pthread_create(&jc->monitor, NULL, monitor_main, jc) != 0) {
    dt_client_close(jc->client);
    dt__stop_pids(&jc->scheduler, 1);
    free_jc(jc);
    return dt__err(DT_ENOMEM, "job queue: cannot start its monitor thread");
  }
  DT_INFO("%s cluster: scheduler at %s, jobs from %s", sys_name(o->system), jc->address,
          jc->script_path);
  *out = jc;
  return 0;
}

const char *dt_jobqueue_cluster_address(const dt_jobqueue_cluster *jc) { return jc ? jc->address : NULL; }
const char *dt_jobqueue_cluster_auth_file(const dt_jobqueue_cluster *jc) {
  return jc && jc->auth_file[0] ? jc->auth_file : NULL;
}
const char *dt_jobqueue_cluster_script(const dt_jobqueue_cluster *jc) { return jc ? jc->script : NULL; }

int dt_jobqueue_scale_jobs(dt_jobqueue_cluster *jc, int n) {
  dt__err_clear();
  if (!jc || n < 0) return dt__err(DT_EINVAL, "dt_jobqueue_scale_jobs: bad arguments");
  pthread_mutex_lock(&jc->lock);
  jc->adaptive = false;
  jc->target_jobs = n;
  jc->quick_ends = 0; /* asked again: try again */
  int rc = converge(jc);
  pthread_mutex_unlock(&jc->lock);
  return rc;
}

int dt_jobqueue_scale(dt_jobqueue_cluster *jc, int n) {
  if (!jc || n < 0) return dt__err(DT_EINVAL, "dt_jobqueue_scale: bad arguments");
  int procs = jc->o.processes > 0 ? jc->o.processes : 1;
  return dt_jobqueue_scale_jobs(jc, (n + procs - 1) / procs);
}

int dt_jobqueue_adapt(dt_jobqueue_cluster *jc, int minimum, int maximum) {
  dt__err_clear();
  if (!jc || minimum < 0 || maximum < minimum)
    return dt__err(DT_EINVAL, "dt_jobqueue_adapt: need 0 <= minimum <= maximum");
  pthread_mutex_lock(&jc->lock);
  jc->adaptive = true;
  jc->amin = minimum;
  jc->amax = maximum;
  jc->idle_rounds = 0;
  pthread_cond_signal(&jc->cond);
  pthread_mutex_unlock(&jc->lock);
  return 0;
}

int dt_jobqueue_jobs(dt_jobqueue_cluster *jc, int *pending, int *running) {
  if (!jc) return dt__err(DT_EINVAL, "dt_jobqueue_jobs: NULL cluster");
  pthread_mutex_lock(&jc->lock);
  refresh(jc);
  int p = 0, r = 0;
  for (size_t i = 0; i < jc->njobs; i++) {
    p += jc->jobs[i].state == 'Q';
    r += jc->jobs[i].state == 'R';
  }
  pthread_mutex_unlock(&jc->lock);
  if (pending) *pending = p;
  if (running) *running = r;
  return 0;
}

int dt_jobqueue_wait_for_workers(dt_jobqueue_cluster *jc, int n, int timeout_ms) {
  if (!jc) return dt__err(DT_EINVAL, "dt_jobqueue_wait_for_workers: NULL cluster");
  uint64_t end = dt__now_ns() + (uint64_t)(timeout_ms >= 0 ? timeout_ms : 3600000) * 1000000ull;
  for (;;) {
    dt_cluster_info info;
    int rc = dt_client_cluster_info(jc->client, 5000, &info);
    if (rc) return rc;
    if (info.n_workers >= n) return 0;
    pthread_mutex_lock(&jc->lock);
    char stuck[400] = "";
    size_t sl = 0;
    double now = dt__now_s();
    for (size_t i = 0; i < jc->njobs && sl < sizeof(stuck) - 80; i++) {
      job *j = &jc->jobs[i];
      if (j->state == 'Q' && (now - j->submitted) * 1000 > jc->o.job_start_timeout_ms)
        sl += (size_t)snprintf(stuck + sl, sizeof(stuck) - sl, "%sjob %s pending for %.0f s%s%s%s",
                               sl ? "; " : "", j->id, now - j->submitted,
                               j->reason[0] ? " (reason: " : "", j->reason, j->reason[0] ? ")" : "");
    }
    char lasterr[512];
    snprintf(lasterr, sizeof(lasterr), "%s", jc->last_error);
    pthread_mutex_unlock(&jc->lock);
    if (stuck[0])
      return dt__err(DT_ETIMEDOUT, "%d of %d workers connected; %s did not start in time: %s",
                     info.n_workers, n, sys_name(jc->o.system), stuck);
    if (dt__now_ns() >= end)
      return dt__err(DT_ETIMEDOUT, "%d of %d workers connected within %d ms%s%s", info.n_workers,
                     n, timeout_ms, lasterr[0] ? "; last error: " : "", lasterr);
    usleep(100000);
  }
}

void dt_jobqueue_cluster_close(dt_jobqueue_cluster *jc) {
  if (!jc) return;
  pthread_mutex_lock(&jc->lock);
  jc->stop = true;
  pthread_cond_signal(&jc->cond);
  pthread_mutex_unlock(&jc->lock);
  pthread_join(jc->monitor, NULL);
  /* cancel every job, and wait (bounded) until the batch system agrees */
  for (int round = 0; round < 50; round++) {
    refresh(jc);
    if (!live_jobs(jc)) break;
    job **all = dt__xcalloc(jc->njobs, sizeof(job *));
    size_t k = 0;
    for (size_t i = 0; i < jc->njobs; i++) all[k++] = &jc->jobs[i];
    if (round % 10 == 0) cancel(jc, all, k);
    for (size_t i = 0; i < k; i++) all[i]->state = 'Q'; /* until refresh says gone */
    free(all);
    usleep(200000);
  }
  dt_client_close(jc->client);
  dt__stop_pids(&jc->scheduler, 1);
  if (jc->auth_file[0]) unlink(jc->auth_file);
  unlink(jc->script_path);
  rmdir(jc->dir); /* stays if it holds job logs */
  free_jc(jc);
}
