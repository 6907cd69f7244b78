/*
 * jobqueue_script.c -- the job script of a job-queue cluster: the batch
 * system's directives (#SBATCH / #PBS: cores, memory, walltime, queue,
 * account, extra lines), the prologue, and the command that starts the
 * job's workers, pointed back at the scheduler.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/parse.h"
#include "jobqueue.h"
#include "spawn.h"

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

/* sb_duration: a duration as given, or in seconds when it has blanks ("2
 * hours": the re-executed program's arguments cannot hold them) */
static void sb_duration(char **b, size_t *l, size_t *c, const char *d) {
  double sec;
  if (strchr(d, ' ') && dt__duration_parse(d, &sec) == 0) sb_add(b, l, c, "%.6gs", sec);
  else sb_quote(b, l, c, d);
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
  uint64_t mem = 0;
  if (o.memory && dt__size_parse(o.memory, &mem) != 0) mem = 0; /* start() refuses it */
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
  if (o.lifetime && *o.lifetime) { /* the worker's own (src/worker/lifetime.c) */
    sb_add(&args, &alen, &acap, " --lifetime ");
    sb_duration(&args, &alen, &acap, o.lifetime);
    if (o.lifetime_stagger && *o.lifetime_stagger) {
      sb_add(&args, &alen, &acap, " --lifetime-stagger ");
      sb_duration(&args, &alen, &acap, o.lifetime_stagger);
    }
    if (o.lifetime_restart) sb_add(&args, &alen, &acap, " --lifetime-restart");
  }
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
      if (*p == ' ') *p = DT_ROLE_ARG_SEP;
    sb_add(&b, &len, &cap, "env DTASK_ROLE=worker DTASK_ROLE_ARGS=\"$DTASK_ADDRESS\"$'\\x1f--name\\x1f'\"%s%s\"$'\\x1f'", name, suffix);
    /* quoted pieces of args keep their quotes: good enough for paths without blanks */
    sb_add(&b, &len, &cap, "$'");
    for (char *p = sep; *p; p++) {
      if (*p == DT_ROLE_ARG_SEP) sb_add(&b, &len, &cap, "\\x1f");
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

