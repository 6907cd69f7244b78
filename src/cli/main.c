/*
 * main.c -- the dtask command: dtask scheduler | worker | local | version.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/common.h"
#include "roles.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: dtask COMMAND [options]\n"
          "commands:\n"
          "  scheduler   run a scheduler         (dtask scheduler --help)\n"
          "  worker      run a worker            (dtask worker ADDRESS --help)\n"
          "  local       run a local cluster     (dtask local -n 4)\n"
          "  status      a cluster's summary     (dtask status ADDRESS)\n"
          "  slurm       workers as Slurm jobs   (dtask slurm --help)\n"
          "  pbs         workers as PBS jobs     (dtask pbs --help)\n"
          "  version     print the version\n");
}

int dt__local_main(int argc, char **argv) {
  dt_local_cluster_opts o = {0};
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
    if ((strcmp(a, "-n") == 0 || strcmp(a, "--n-workers") == 0) && has) o.n_workers = atoi(argv[++i]);
    else if (strcmp(a, "--threads-per-worker") == 0 && has) o.threads_per_worker = atoi(argv[++i]);
    else if (strcmp(a, "--host") == 0 && has) o.host = argv[++i];
    else if (strcmp(a, "--port") == 0 && has) o.port = atoi(argv[++i]);
    else if (strcmp(a, "--resources") == 0 && has) o.resources = argv[++i];
    else if (strcmp(a, "--log-level") == 0 && has) o.log_level = argv[++i];
    else if (strcmp(a, "--no-auth") == 0) o.no_auth = true;
    else if (strcmp(a, "--no-nanny") == 0) o.no_nanny = true;
    else if (strcmp(a, "--worker-ttl") == 0 && has) o.worker_ttl = argv[++i];
    else {
      fprintf(stderr,
              "usage: dtask local [-n N] [--threads-per-worker T] [--host H] [--port P]\n"
              "                   [--resources NAME=N,...] [--log-level LEVEL]\n"
              "                   [--no-auth] [--no-nanny] [--worker-ttl DURATION]\n"
              "  the cluster's shared secret is in the auth file it prints: clients in\n"
              "  other processes use it with DTASK_AUTH_FILE=FILE (or --no-auth)\n");
      return 2;
    }
  }
  if (o.n_workers < 0 || o.threads_per_worker < 0) {
    fprintf(stderr, "dtask local: -n and --threads-per-worker must be positive\n");
    return 2;
  }
  /* block the signals before any thread exists; wait for them below */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  dt_local_cluster *lc;
  int rc = dt_local_cluster_start(&o, &lc);
  if (rc) {
    fprintf(stderr, "dtask local: %s\n", dt_last_error());
    return 1;
  }
  printf("scheduler at tcp://%s\n", dt_local_cluster_address(lc));
  if (dt_local_cluster_dashboard(lc)) printf("dashboard at %s\n", dt_local_cluster_dashboard(lc));
  if (dt_local_cluster_auth_file(lc)) printf("auth file %s\n", dt_local_cluster_auth_file(lc));
  fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  dt_local_cluster_close(lc);
  return 0;
}

/* dtask status ADDRESS: the cluster summary and the workers table */
static int status_main(int argc, char **argv) {
  const char *addr = NULL, *auth = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--auth-file") == 0 && i + 1 < argc) auth = argv[++i];
    else if (argv[i][0] != '-' && !addr) addr = argv[i];
    else {
      fprintf(stderr, "usage: dtask status SCHEDULER_ADDRESS [--auth-file FILE]\n");
      return 2;
    }
  }
  dt_client *c;
  if (dt_client_connect(&(dt_client_opts){.address = addr, .auth_file = auth, .name = "status",
                                          .timeout_ms = 5000},
                        &c) != 0) {
    fprintf(stderr, "dtask status: %s\n", dt_last_error());
    return 1;
  }
  dt_cluster_info in;
  dt_worker_info *ws = NULL;
  size_t nw = 0;
  if (dt_client_cluster_info(c, 5000, &in) != 0 || dt_client_workers(c, 5000, &ws, &nw) != 0) {
    fprintf(stderr, "dtask status: %s\n", dt_last_error());
    dt_client_close(c);
    return 1;
  }
  int threads = 0;
  for (size_t i = 0; i < nw; i++) threads += ws[i].nthreads;
  printf("scheduler %s: %d workers (%d threads), %d clients\n", addr ? addr : "(from the environment)",
         in.n_workers, threads, in.n_clients - 1);
  printf("tasks %lld: waiting %lld, queued %lld, no-worker %lld, processing %lld, memory %lld, "
         "erred %lld, released %lld; %lld completed\n",
         (long long)in.n_tasks, (long long)in.n_waiting, (long long)in.n_queued,
         (long long)in.n_no_worker, (long long)in.n_processing, (long long)in.n_memory,
         (long long)in.n_erred, (long long)in.n_released, (long long)in.n_completed);
  printf("\n%-28s %-22s %7s %8s %8s %12s %9s\n", "worker", "address", "threads", "running", "results",
         "bytes", "heartbeat");
  for (size_t i = 0; i < nw; i++)
    printf("%-28.28s %-22.22s %7d %8lld %8lld %12llu %7.1f s\n", ws[i].name, ws[i].address,
           ws[i].nthreads, (long long)ws[i].processing, (long long)ws[i].n_keys,
           (unsigned long long)ws[i].nbytes, ws[i].last_seen_s);
  free(ws);
  dt_client_close(c);
  return 0;
}

static void jobqueue_usage(const char *sys) {
  fprintf(stderr,
          "usage: dtask %s [--cores N] [--memory 4GB] [--processes N] [--queue Q]\n"
          "       [--account A] [--walltime HH:MM:SS] [--job-name NAME]\n"
          "       [--job-extra-directive LINE]... [--job-script-prologue LINE]...\n"
          "       [--local-directory DIR] [--log-directory DIR] [--interface IF | --host H]\n"
          "       [--port P] [--submit-command-extra ARG]... [--worker-extra-arg ARG]...\n"
          "       [--no-auth] [--log-level L] [--scale N | --adapt MIN:MAX] [--dry-run]\n"
          "Starts a scheduler here and submits jobs whose workers connect back to it\n"
          "(dask-jobqueue's options and meanings); runs until SIGINT/SIGTERM, then cancels\n"
          "every job.  --dry-run prints the job script and exits.\n",
          sys);
}

int dt__jobqueue_main(int argc, char **argv, int system) {
  const char *sys = system == DT_JOBQUEUE_PBS ? "pbs" : "slurm";
  dt_jobqueue_opts o = {.system = (dt_jobqueue_system)system};
  const char *extra[64], *prologue[64], *submit[64], *wargs[64];
  size_t ne = 0, np = 0, ns = 0, nw = 0;
  int scale = -1, amin = -1, amax = -1;
  bool dry = false;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
#define OPT(flag) (strcmp(a, flag) == 0 && has)
    if (OPT("--cores")) o.cores = atoi(argv[++i]);
    else if (OPT("--memory")) o.memory = argv[++i];
    else if (OPT("--processes")) o.processes = atoi(argv[++i]);
    else if (OPT("--queue")) o.queue = argv[++i];
    else if (OPT("--account")) o.account = argv[++i];
    else if (OPT("--walltime")) o.walltime = argv[++i];
    else if (OPT("--job-name")) o.job_name = argv[++i];
    else if (OPT("--job-extra-directive") && ne < 64) extra[ne++] = argv[++i];
    else if (OPT("--job-script-prologue") && np < 64) prologue[np++] = argv[++i];
    else if (OPT("--local-directory")) o.local_directory = argv[++i];
    else if (OPT("--log-directory")) o.log_directory = argv[++i];
    else if (OPT("--interface")) o.interface = argv[++i];
    else if (OPT("--host")) o.host = argv[++i];
    else if (OPT("--port")) o.port = atoi(argv[++i]);
    else if (OPT("--submit-command-extra") && ns < 64) submit[ns++] = argv[++i];
    else if (OPT("--worker-extra-arg") && nw < 64) wargs[nw++] = argv[++i];
    else if (OPT("--worker-command")) o.worker_command = argv[++i];
    else if (OPT("--log-level")) o.log_level = argv[++i];
    else if (OPT("--scale")) scale = atoi(argv[++i]);
    else if (OPT("--adapt")) {
      if (sscanf(argv[++i], "%d:%d", &amin, &amax) != 2 || amin < 0 || amax < amin) {
        fprintf(stderr, "dtask %s: --adapt takes MIN:MAX, not '%s'\n", sys, argv[i]);
        return 2;
      }
    } else if (strcmp(a, "--no-auth") == 0) o.no_auth = true;
    else if (strcmp(a, "--dry-run") == 0) dry = true;
    else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      jobqueue_usage(sys);
      return 0;
    } else {
      fprintf(stderr, "dtask %s: unknown or incomplete option '%s'\n", sys, a);
      jobqueue_usage(sys);
      return 2;
    }
#undef OPT
  }
  o.job_extra_directives = extra;
  o.n_job_extra_directives = ne;
  o.job_script_prologue = prologue;
  o.n_job_script_prologue = np;
  o.submit_command_extra = submit;
  o.n_submit_command_extra = ns;
  o.worker_extra_args = wargs;
  o.n_worker_extra_args = nw;
  if (dry) {
    char *script = dt_jobqueue_job_script(&o, NULL, NULL);
    fputs(script, stdout);
    free(script);
    return 0;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  dt_jobqueue_cluster *jc;
  if (dt_jobqueue_cluster_start(&o, &jc) != 0) {
    fprintf(stderr, "dtask %s: %s\n", sys, dt_last_error());
    return 1;
  }
  printf("scheduler at tcp://%s\n", dt_jobqueue_cluster_address(jc));
  if (dt_jobqueue_cluster_auth_file(jc)) printf("auth file %s\n", dt_jobqueue_cluster_auth_file(jc));
  fflush(stdout);
  int rc = 0;
  if (scale >= 0) rc = dt_jobqueue_scale(jc, scale);
  else if (amax >= 0) rc = dt_jobqueue_adapt(jc, amin, amax);
  if (rc) fprintf(stderr, "dtask %s: %s\n", sys, dt_last_error());
  int sig;
  if (rc == 0) sigwait(&set, &sig);
  dt_jobqueue_cluster_close(jc);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "scheduler") == 0) return dt__scheduler_main(argc - 2, argv + 2);
  if (strcmp(cmd, "worker") == 0) return dt__worker_main(argc - 2, argv + 2);
  if (strcmp(cmd, "local") == 0) return dt__local_main(argc - 2, argv + 2);
  if (strcmp(cmd, "status") == 0) return status_main(argc - 2, argv + 2);
  if (strcmp(cmd, "slurm") == 0) return dt__jobqueue_main(argc - 2, argv + 2, DT_JOBQUEUE_SLURM);
  if (strcmp(cmd, "pbs") == 0) return dt__jobqueue_main(argc - 2, argv + 2, DT_JOBQUEUE_PBS);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("dtask %d.%d.%d\n", DT_VERSION_MAJOR, DT_VERSION_MINOR, DT_VERSION_PATCH);
    return 0;
  }
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "dtask: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
