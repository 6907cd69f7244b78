/*
 * local.c -- LocalCluster: a scheduler and N workers as processes on this
 * machine.  The processes re-execute the calling program (see spawn.h), so
 * the workers know the program's own task functions.  Children die with
 * the program, and an atexit handler closes every cluster still open: no
 * orphans, even when the program dies.  The cluster's secret is registered
 * by address (net/secure.h), so that this process's clients find it.
 * dt_local_cluster_scale adds workers (new names, never reused) or retires
 * the newest ones (their results moved to the others first).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../client/client.h"
#include "../common/parse.h"
#include "../net/secure.h"
#include "spawn.h"

struct dt_local_cluster {
  char address[256];
  char dashboard[200];
  pid_t scheduler;
  pid_t *workers;  /* the running workers' pids, in the order started */
  int *worker_ids; /* their numbers: worker i is named local-worker-<id> */
  int n_workers, cap_workers, next_id;
  int timeout_ms;
  /* what a new worker is started with (see start_worker) */
  char **role_command;
  size_t n_role_command;
  char nthreads[16], mem[32], log_level[32], resources[256];
  bool no_nanny, has_resources, no_shm;
  char auth_file[256];
  char secret[65]; /* hex; "" with no_auth */
  pthread_mutex_t scale_lock; /* one scale at a time */
  struct dt_local_cluster *next;
};

static void free_cluster(dt_local_cluster *lc) {
  for (size_t i = 0; i < lc->n_role_command; i++) free(lc->role_command[i]);
  free(lc->role_command);
  free(lc->workers);
  free(lc->worker_ids);
  pthread_mutex_destroy(&lc->scale_lock);
  free(lc);
}

/* start_worker: starts worker number lc->next_id at slot lc->n_workers
 * (room reserved by the caller); its pid, or -1 */
static pid_t start_worker(dt_local_cluster *lc) {
  char name[64];
  int id = lc->next_id++;
  snprintf(name, sizeof(name), "local-worker-%d", id);
  const char *wargs[16] = {lc->address, "--nthreads", lc->nthreads, "--name", name, "--log-level",
                           lc->log_level, lc->no_nanny ? "--no-nanny" : "--nanny", "--memory-limit",
                           lc->mem};
  int nw = 10;
  if (lc->auth_file[0]) {
    wargs[nw++] = "--auth-file";
    wargs[nw++] = lc->auth_file;
  }
  if (lc->no_shm) wargs[nw++] = "--no-shm";
  if (lc->has_resources) {
    wargs[nw++] = "--resources";
    wargs[nw++] = lc->resources;
  }
  pid_t pid = dt__spawn_command((const char *const *)lc->role_command, lc->n_role_command, "worker",
                                wargs, nw, -1);
  if (pid >= 0) {
    lc->workers[lc->n_workers] = pid;
    lc->worker_ids[lc->n_workers] = id;
    lc->n_workers++;
  }
  return pid;
}

static int reserve_workers(dt_local_cluster *lc, int n) {
  if (n <= lc->cap_workers) return 0;
  pid_t *w = realloc(lc->workers, (size_t)n * sizeof(pid_t));
  if (!w) return DT_ENOMEM;
  lc->workers = w;
  int *ids = realloc(lc->worker_ids, (size_t)n * sizeof(int));
  if (!ids) return DT_ENOMEM;
  lc->worker_ids = ids;
  lc->cap_workers = n;
  return 0;
}

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static dt_local_cluster *live;
static bool atexit_done;

static void close_all_at_exit(void) {
  for (;;) {
    pthread_mutex_lock(&live_lock);
    dt_local_cluster *lc = live;
    pthread_mutex_unlock(&live_lock);
    if (!lc) return;
    dt_local_cluster_close(lc);
  }
}

/* start_failed: stops what started, frees lc, returns rc with msg */
static int start_failed(dt_local_cluster *lc, int rc) {
  char msg[1024];
  snprintf(msg, sizeof(msg), "%s", dt_last_error());
  dt__stop_pids(lc->workers, lc->n_workers);
  dt__stop_pids(&lc->scheduler, 1);
  if (lc->auth_file[0]) unlink(lc->auth_file);
  free_cluster(lc);
  return dt__err(rc, "%s", msg);
}

int dt_local_cluster_start(const dt_local_cluster_opts *opts, dt_local_cluster **out) {
  dt__err_clear();
  if (!out) return dt__err(DT_EINVAL, "dt_local_cluster_start: out is NULL");
  *out = NULL;
  dt_local_cluster_opts o = opts ? *opts : (dt_local_cluster_opts){0};
  double ttl;
  if (o.worker_ttl && dt__duration_parse(o.worker_ttl, &ttl) != 0) {
    char msg[600];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    return dt__err(DT_EINVAL, "LocalCluster: worker_ttl: %s", msg);
  }
  if (o.allowed_failures > 250)
    return dt__err(DT_EINVAL, "LocalCluster: allowed_failures %d is over 250", o.allowed_failures);
  if (o.n_workers < 0 || o.threads_per_worker < 0 || o.port < 0 || o.port > 65535)
    return dt__err(DT_EINVAL, "LocalCluster: n_workers, threads_per_worker and port must be >= 0");
  if (o.n_role_command && (!o.role_command || !o.role_command[0] || o.role_command[0][0] != '/'))
    return dt__err(DT_EINVAL, "LocalCluster: role_command[0] must be an absolute path");
  if (o.n_workers == 0 && !o.start_empty) o.n_workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (o.n_workers <= 0 && !o.start_empty) o.n_workers = 1;
  if (o.start_empty) o.n_workers = 0;
  if (o.n_workers > 1024) return dt__err(DT_EINVAL, "LocalCluster: n_workers %d is over 1024", o.n_workers);
  if (o.threads_per_worker == 0) o.threads_per_worker = 1;
  if (!o.host) o.host = "127.0.0.1";
  if (o.timeout_ms <= 0) o.timeout_ms = 30000;
  if (!o.log_level) o.log_level = getenv("DTASK_LOG_LEVEL");
  if (!o.log_level) o.log_level = "warning";
  if (dt__log_parse_level(o.log_level) < 0)
    return dt__err(DT_EINVAL, "LocalCluster: unknown log level '%s'", o.log_level);
  /* the memory limit, read once: "auto" (or none given) divides the
   * machine among the workers; each worker gets the bytes */
  uint64_t mem_limit;
  if (dt__memory_limit_parse(o.memory_limit, 1, o.n_workers ? o.n_workers : 1, &mem_limit) != 0) {
    char msg[600];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    return dt__err(DT_EINVAL, "LocalCluster: memory_limit: %s", msg);
  }

  pthread_mutex_lock(&live_lock);
  if (!atexit_done) {
    atexit(close_all_at_exit);
    atexit_done = true;
  }
  pthread_mutex_unlock(&live_lock);

  dt_local_cluster *lc = dt__xcalloc(1, sizeof(*lc));
  lc->scheduler = -1;
  pthread_mutex_init(&lc->scale_lock, NULL);
  lc->cap_workers = o.n_workers ? o.n_workers : 1;
  lc->workers = dt__xcalloc((size_t)lc->cap_workers, sizeof(pid_t));
  lc->worker_ids = dt__xcalloc((size_t)lc->cap_workers, sizeof(int));
  lc->timeout_ms = o.timeout_ms;
  if (o.n_role_command) {
    lc->role_command = dt__xcalloc(o.n_role_command + 1, sizeof(char *));
    for (size_t i = 0; i < o.n_role_command; i++) lc->role_command[i] = dt__xstrdup(o.role_command[i]);
    lc->n_role_command = o.n_role_command;
  }
  snprintf(lc->log_level, sizeof(lc->log_level), "%s", o.log_level);
  lc->no_nanny = o.no_nanny;
  lc->no_shm = o.no_shm;
  if (o.resources) {
    if (strlen(o.resources) >= sizeof(lc->resources)) {
      free_cluster(lc);
      return dt__err(DT_EINVAL, "LocalCluster: resources '%.40s...' is over %zu bytes", o.resources,
                     sizeof(lc->resources) - 1);
    }
    snprintf(lc->resources, sizeof(lc->resources), "%s", o.resources);
    lc->has_resources = true;
  }
  if (!o.no_auth) { /* a fresh secret, in a file only this user can read */
    const char *tmp = getenv("TMPDIR");
    char tmpl[256];
    snprintf(tmpl, sizeof(tmpl), "%s/dtask-auth-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (dt__secret_new(tmpl, lc->auth_file, sizeof(lc->auth_file), lc->secret) != 0) {
      lc->auth_file[0] = '\0';
      char msg[600];
      snprintf(msg, sizeof(msg), "%s", dt_last_error());
      dt__err(DT_ESPAWN, "LocalCluster: %s", msg);
      return start_failed(lc, DT_ESPAWN);
    }
  }
  char portbuf[16], afbuf[16];
  snprintf(portbuf, sizeof(portbuf), "%d", o.port);
  snprintf(afbuf, sizeof(afbuf), "%d", o.allowed_failures == 0 ? 3 : o.allowed_failures < 0 ? 0 : o.allowed_failures);
  char dash[96];
  snprintf(dash, sizeof(dash), "%s:%d", o.host, o.dashboard_port > 0 ? o.dashboard_port : 8787);
  const char *sargs[20] = {"--host", o.host, "--port", portbuf, "--log-level", o.log_level,
                           "--allowed-failures", afbuf, "--worker-ttl", o.worker_ttl ? o.worker_ttl : "60s"};
  int ns = 10;
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
  if (o.journal) {
    sargs[ns++] = "--journal";
    sargs[ns++] = o.journal;
  }
  if (dt__scheduler_spawn(o.role_command, o.n_role_command, sargs, ns, o.timeout_ms, &lc->scheduler,
                          lc->address, sizeof(lc->address), lc->dashboard, sizeof(lc->dashboard)) != 0) {
    if (strstr(dt_last_error(), "did not start"))
      dt__err(DT_ESPAWN, "LocalCluster: the scheduler did not start on %s:%d (see its log above)",
              o.host, o.port);
    else {
      char msg[600];
      snprintf(msg, sizeof(msg), "%s", dt_last_error());
      dt__err(DT_ESPAWN, "LocalCluster: %s", msg);
    }
    return start_failed(lc, DT_ESPAWN);
  }
  snprintf(lc->nthreads, sizeof(lc->nthreads), "%d", o.threads_per_worker);
  snprintf(lc->mem, sizeof(lc->mem), "%llu", (unsigned long long)mem_limit);
  for (int i = 0; i < o.n_workers; i++)
    if (start_worker(lc) < 0)
      return start_failed(lc, dt__err(DT_ESPAWN, "LocalCluster: cannot start worker %d", i));
  dt_sec sec = {0};
  if (lc->secret[0] && (dt__sec_set_secret(&sec, lc->secret, 64) != 0 ||
                        dt__sec_register(lc->address, &sec) != 0))
    return start_failed(lc, DT_EINVAL);
  dt_client *c = NULL;
  dt_client_opts co = {.address = lc->address, .timeout_ms = o.timeout_ms, .name = "local-cluster",
                       .auth_file = lc->auth_file[0] ? lc->auth_file : NULL};
  int rc = dt_client_connect(&co, &c);
  if (rc == 0) rc = dt_client_wait_for_workers(c, o.n_workers, o.timeout_ms);
  if (rc) {
    char msg[600];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    dt__err(rc, "LocalCluster: %s", msg);
  }
  dt_client_close(c);
  if (rc) {
    if (lc->secret[0]) dt__sec_unregister(lc->address);
    return start_failed(lc, rc);
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
  if (lc->secret[0]) dt__sec_unregister(lc->address);
  dt__stop_pids(lc->workers, lc->n_workers);
  dt__stop_pids(&lc->scheduler, 1);
  if (lc->auth_file[0]) unlink(lc->auth_file);
  free_cluster(lc);
}

int dt_local_cluster_n_workers(const dt_local_cluster *lc) { return lc ? lc->n_workers : 0; }

int dt_local_cluster_worker_name(const dt_local_cluster *lc, int i, char *buf, size_t cap) {
  if (!lc || i < 0 || i >= lc->n_workers || !buf || cap == 0)
    return dt__err(DT_EINVAL, "dt_local_cluster_worker_name: no worker %d", i);
  snprintf(buf, cap, "local-worker-%d", lc->worker_ids[i]);
  return 0;
}

/* scale_client: a short-lived client of the cluster's scheduler */
static int scale_client(dt_local_cluster *lc, dt_client **c) {
  dt_client_opts co = {.address = lc->address, .timeout_ms = lc->timeout_ms, .name = "local-cluster",
                       .auth_file = lc->auth_file[0] ? lc->auth_file : NULL};
  return dt_client_connect(&co, c);
}

int dt_local_cluster_scale(dt_local_cluster *lc, int n, int timeout_ms) {
  dt__err_clear();
  if (!lc) return dt__err(DT_EINVAL, "dt_local_cluster_scale: lc is NULL");
  if (n < 0 || n > 1024) return dt__err(DT_EINVAL, "LocalCluster.scale: %d workers (0 to 1024)", n);
  if (timeout_ms <= 0) timeout_ms = lc->timeout_ms;
  pthread_mutex_lock(&lc->scale_lock);
  dt_client *c = NULL;
  int rc = 0;
  if (n > lc->n_workers) {
    rc = reserve_workers(lc, n);
    while (rc == 0 && lc->n_workers < n)
      if (start_worker(lc) < 0) rc = dt__err(DT_ESPAWN, "LocalCluster.scale: cannot start a worker");
    if (rc == 0) rc = scale_client(lc, &c);
    if (rc == 0) rc = dt_client_wait_for_workers(c, n, timeout_ms);
  } else if (n < lc->n_workers) {
    /* the newest go first; their results move to the others (retire) */
    int nold = lc->n_workers - n;
    char(*names)[64] = calloc((size_t)nold, sizeof(*names));
    const char **np = calloc((size_t)nold, sizeof(char *));
    if (!names || !np) rc = dt__err(DT_ENOMEM, "LocalCluster.scale: out of memory");
    for (int i = 0; rc == 0 && i < nold; i++) {
      snprintf(names[i], sizeof(names[i]), "local-worker-%d", lc->worker_ids[n + i]);
      np[i] = names[i];
    }
    if (rc == 0) rc = scale_client(lc, &c);
    if (rc == 0 && n > 0) rc = dt_client_retire_workers(c, np, (size_t)nold, timeout_ms, NULL);
    if (rc == 0 || n == 0) { /* none left to take their results: just stop them */
      rc = 0;
      dt__stop_pids(lc->workers + n, nold);
      lc->n_workers = n;
    }
    free(names);
    free(np);
  }
  if (rc) {
    char msg[600];
    snprintf(msg, sizeof(msg), "%s", dt_last_error());
    dt__err(rc, "LocalCluster.scale(%d): %s", n, msg);
  }
  dt_client_close(c);
  pthread_mutex_unlock(&lc->scale_lock);
  return rc;
}

