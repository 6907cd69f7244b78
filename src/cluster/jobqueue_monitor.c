/*
 * jobqueue_monitor.c -- the monitor of a job-queue cluster: a thread that
 * polls the batch system and the scheduler once a second, replaces jobs
 * that ended while they are still wanted, and, when adaptive, picks the
 * number of jobs from the work waiting (retiring idle jobs' workers first,
 * so that their results move elsewhere before the jobs are cancelled).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobqueue.h"

int dt__jq_live_jobs(const dt_jobqueue_cluster *jc) {
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
      if (j->state != 'R' || j->expiring) continue; /* expiring: leaving by itself */
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
  dt__jq_cancel(jc, drop, k);
  free(names);
  free(ws);
  free(drop);
}

/* converge: submit or cancel to reach target_jobs (locked) */
int dt__jq_converge(dt_jobqueue_cluster *jc) {
  int live = dt__jq_live_jobs(jc), rc = 0;
  for (size_t i = 0; i < jc->njobs; i++) /* retiring by themselves: replaced already */
    live -= jc->jobs[i].state != 'G' && jc->jobs[i].expiring;
  while (live < jc->target_jobs && rc == 0 && jc->quick_ends < 3) {
    rc = dt__jq_submit(jc);
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
    dt__jq_cancel(jc, drop, k);
    size_t left = want - k;
    free(drop);
    if (left > 0) retire_jobs(jc, left);
  }
  return rc;
}

/* ---------------------------------------------------------------- lifetime */

void dt__jq_expire(dt_jobqueue_cluster *jc) {
  if (!(jc->lifetime_s > 0) || jc->o.lifetime_restart) return;
  double first = jc->lifetime_s - jc->stagger_s; /* the earliest a worker retires */
  double lead = jc->lead_s;
  if (!(lead > 0)) { /* twice the queue wait seen, at least a minute, at most half */
    lead = 2 * jc->queue_wait_s;
    if (lead < 60) lead = 60;
    if (lead > first / 2) lead = first / 2;
  }
  double now = dt__now_s();
  for (size_t i = 0; i < jc->njobs; i++) {
    job *j = &jc->jobs[i];
    if (j->state != 'R' || j->expiring || j->started == 0 || now - j->started < first - lead)
      continue;
    j->expiring = true;
    DT_INFO("%s job %s: its workers retire within %.0f s: submitting its replacement",
            dt__jq_sys_name(jc->o.system), j->id,
            first - (now - j->started) + 2 * jc->stagger_s);
  }
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

void *dt__jq_monitor_main(void *arg) {
  dt_jobqueue_cluster *jc = arg;
  pthread_mutex_lock(&jc->lock);
  while (!jc->stop) {
    struct timespec dl;
    dt__deadline(&dl, 1000);
    pthread_cond_timedwait(&jc->cond, &jc->lock, &dl);
    if (jc->stop) break;
    dt__jq_refresh(jc);
    dt__jq_expire(jc);
    if (jc->adaptive) adapt_step(jc);
    if (dt__jq_converge(jc) != 0) DT_WARN("%s", jc->last_error);
  }
  pthread_mutex_unlock(&jc->lock);
  return NULL;
}

