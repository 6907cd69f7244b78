/*
 * jobqueue.h -- the parts of a job-queue cluster (Slurm, PBS) shared by its
 * files: jobqueue.c (the public API: start, scale, adapt, close),
 * jobqueue_script.c (the job script), jobqueue_batch.c (the batch system's
 * commands: submit, cancel, job states) and jobqueue_monitor.c (the thread
 * that replaces ended jobs and drives adapt()).  Internal to src/cluster/.
 */
#ifndef DT_JOBQUEUE_H
#define DT_JOBQUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "../client/client.h"

typedef struct {
  char id[64];  /* as the batch system printed it */
  long num;     /* its number (worker names use it) */
  int state;    /* 'Q' pending, 'R' running, 'G' gone */
  char reason[64];
  double submitted;
  double started;  /* when it was first seen running (0: not yet) */
  bool expiring;   /* its workers retire soon (lifetime): its replacement is submitted */
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
  double lifetime_s, stagger_s, lead_s; /* o.lifetime...: seconds (0: none; lead 0: auto) */
  double queue_wait_s;                  /* how long jobs waited to run lately (0: none seen) */
};

/* ---- what differs between the systems */
static inline const char *dt__jq_sys_name(dt_jobqueue_system s) { return s == DT_JOBQUEUE_PBS ? "PBS" : "Slurm"; }
static inline const char *dt__jq_sys_submit(dt_jobqueue_system s) { return s == DT_JOBQUEUE_PBS ? "qsub" : "sbatch"; }
static inline const char *dt__jq_sys_cancel(dt_jobqueue_system s) { return s == DT_JOBQUEUE_PBS ? "qdel" : "scancel"; }
static inline const char *dt__jq_sys_status(dt_jobqueue_system s) { return s == DT_JOBQUEUE_PBS ? "qstat" : "squeue"; }

/* ---- the batch system (jobqueue_batch.c); "locked": with jc->lock held */
/* dt__jq_on_path: whether cmd is an executable (a path, or found on $PATH) */
bool dt__jq_on_path(const char *cmd);
/* dt__jq_submit: submits one job (locked); 0, or DT_ESPAWN with the
 * reason (also in jc->last_error) */
int dt__jq_submit(dt_jobqueue_cluster *jc);
/* dt__jq_cancel: cancels the n jobs js (locked); they are marked gone */
void dt__jq_cancel(dt_jobqueue_cluster *jc, job **js, size_t n);
/* dt__jq_refresh: job states from the batch system; forgets ended jobs
 * (locked; runs the status command) */
void dt__jq_refresh(dt_jobqueue_cluster *jc);

/* ---- the monitor (jobqueue_monitor.c) */
/* dt__jq_live_jobs: jobs not gone */
int dt__jq_live_jobs(const dt_jobqueue_cluster *jc);
/* dt__jq_expire: marks the running jobs whose workers retire soon (their
 * lifetime), so that converge submits their replacements now (locked) */
void dt__jq_expire(dt_jobqueue_cluster *jc);
/* dt__jq_converge: submits or cancels jobs to reach jc->target_jobs
 * (locked); 0, or the error of a submission */
int dt__jq_converge(dt_jobqueue_cluster *jc);
/* dt__jq_monitor_main: the monitor thread (arg: the cluster); runs until
 * jc->stop */
void *dt__jq_monitor_main(void *arg);

#endif
