/*
 * jobqueue.c -- clusters whose workers are batch jobs, on Slurm (sbatch,
 * squeue, scancel) and PBS (qsub, qstat, qdel): dask-jobqueue's
 * SLURMCluster and PBSCluster.  One implementation; what differs between
 * the two is in jobqueue.h's dt__jq_sys_* table (commands) and the job
 * script (jobqueue_script.c).  This file is the public API: start (the
 * scheduler on this host, a child process as in LocalCluster, spawn.h),
 * scale, adapt, wait for workers, close.
 *
 * A monitor thread (jobqueue_monitor.c) polls the batch system
 * (jobqueue_batch.c) and the scheduler once a second: it notices jobs that
 * ended (finished, cancelled from outside, walltime) and replaces them
 * while they are still wanted, and it drives adapt().
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/parse.h"
#include "jobqueue.h"
#include "spawn.h"

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
  uint64_t mem;
  if (o->memory && (dt__size_parse(o->memory, &mem) != 0 || mem == 0))
    return dt__err(DT_EINVAL, "job queue: cannot read memory '%s' (e.g. 4GB, 512MiB)", o->memory);
  double wall;
  if (o->walltime && *o->walltime && strcasecmp(o->walltime, "unlimited") != 0 &&
      strcasecmp(o->walltime, "infinite") != 0 && dt__duration_parse(o->walltime, &wall) != 0) {
    char msg[600];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    return dt__err(DT_EINVAL, "job queue: walltime: %s", msg);
  }
  double life[3] = {0, 0, 0}; /* lifetime, stagger, lead */
  const char *lnames[3] = {"lifetime", "lifetime_stagger", "lifetime_lead"};
  const char *lvals[3] = {o->lifetime, o->lifetime_stagger, o->lifetime_lead};
  for (int i = 0; i < 3; i++)
    if (lvals[i] && *lvals[i] && dt__duration_parse(lvals[i], &life[i]) != 0) {
      char msg[600];
      snprintf(msg, sizeof(msg), "%s", dt_last_error());
      return dt__err(DT_EINVAL, "job queue: %s: %s", lnames[i], msg);
    }
  if ((o->lifetime_restart || life[1] > 0 || life[2] > 0) && !(life[0] > 0))
    return dt__err(DT_EINVAL, "job queue: lifetime_stagger, lifetime_restart and lifetime_lead "
                              "need a lifetime");
  if (life[0] > 0 && life[1] >= life[0])
    return dt__err(DT_EINVAL, "job queue: lifetime_stagger (%.0f s) must be shorter than the "
                              "lifetime (%.0f s)", life[1], life[0]);
  if (life[0] > 0 && o->walltime && *o->walltime && dt__duration_parse(o->walltime, &wall) == 0 &&
      life[0] + life[1] >= wall)
    DT_WARN("job queue: a lifetime of %.0f s (+- %.0f s) does not end before the walltime "
            "(%.0f s): the batch system may kill workers before they retire", life[0], life[1],
            wall);
  if (o->processes > (o->cores > 0 ? o->cores : 1))
    return dt__err(DT_EINVAL, "job queue: %d processes need at least as many cores (cores=%d)",
                   o->processes, o->cores);
  const char *cmds[] = {dt__jq_sys_submit(o->system), dt__jq_sys_cancel(o->system), dt__jq_sys_status(o->system)};
  for (int i = 0; i < 3; i++)
    if (!dt__jq_on_path(cmds[i]))
      return dt__err(DT_ENOTFOUND,
                     "job queue: '%s' not found on PATH: is %s installed here? (for tests: "
                     "scripts/start-slurm.sh)",
                     cmds[i], dt__jq_sys_name(o->system));
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
  jc->o.lifetime = keep(jc, o->lifetime);
  jc->o.lifetime_stagger = keep(jc, o->lifetime_stagger);
  jc->o.lifetime_lead = keep(jc, o->lifetime_lead);
  jc->lifetime_s = life[0], jc->stagger_s = life[1], jc->lead_s = life[2];
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
    char path[sizeof(jc->auth_file)], hex[65];
    snprintf(path, sizeof(path), "%s/auth", jc->dir);
    if (dt__secret_new(path, jc->auth_file, sizeof(jc->auth_file), hex) != 0) {
      char msg[800];
      snprintf(msg, sizeof(msg), "%s", dt_last_error());
      free_jc(jc);
      return dt__err(DT_ESPAWN, "job queue: %s", msg);
    }
  }

  /* the scheduler, here, listening where workers can reach it */
  char portbuf[16];
  snprintf(portbuf, sizeof(portbuf), "%d", o->port);
  const char *sargs[10] = {"--host", o->host && *o->host ? o->host : "0.0.0.0", "--port", portbuf,
                           "--log-level", jc->o.log_level, "--auth-file", jc->auth_file};
  int ns = jc->auth_file[0] ? 8 : 6;
  if (o->journal && *o->journal) { /* docs/hpc.md: a restart needs this port and auth file */
    sargs[ns++] = "--journal";
    sargs[ns++] = o->journal;
    if (o->port == 0)
      DT_WARN("job queue: --journal with port 0: a restarted scheduler must listen on the same "
              "port to carry on; give a fixed port");
  }
  char listen[256], dash[256];
  if (dt__scheduler_spawn(NULL, 0, sargs, ns, 30000, &jc->scheduler, listen,
                          sizeof(listen), dash, sizeof(dash)) != 0) {
    char msg[600];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    if (jc->auth_file[0]) unlink(jc->auth_file);
    rmdir(jc->dir);
    free_jc(jc);
    return dt__err(DT_ESPAWN, "job queue: %s", msg);
  }
  dt_addr la;
  int port = dt__addr_parse(listen, &la) == 0 ? la.port : 0;
  snprintf(la.host, sizeof(la.host), "%s", host);
  la.port = port;
  dt__addr_format(&la, jc->address, sizeof(jc->address));
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
  if (pthread_create(&jc->monitor, NULL, dt__jq_monitor_main, jc) != 0) {
    dt_client_close(jc->client);
    dt__stop_pids(&jc->scheduler, 1);
    free_jc(jc);
    return dt__err(DT_ENOMEM, "job queue: cannot start its monitor thread");
  }
  DT_INFO("%s cluster: scheduler at %s, jobs from %s", dt__jq_sys_name(o->system), jc->address,
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
  int rc = dt__jq_converge(jc);
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
  dt__jq_refresh(jc);
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
                     info.n_workers, n, dt__jq_sys_name(jc->o.system), stuck);
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
    dt__jq_refresh(jc);
    if (!dt__jq_live_jobs(jc)) break;
    job **all = dt__xcalloc(jc->njobs, sizeof(job *));
    size_t k = 0;
    for (size_t i = 0; i < jc->njobs; i++) all[k++] = &jc->jobs[i];
    if (round % 10 == 0) dt__jq_cancel(jc, all, k);
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
