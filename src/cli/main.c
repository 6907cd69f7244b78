/*
 * main.c -- the dtask command: dtask scheduler | worker | local | status |
 * slurm | pbs | version.  Each sub-command's options are a table read by
 * common/args.h.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/args.h"
#include "../common/common.h"
#include "../net/secure.h"
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

/* block SIGINT and SIGTERM before any thread exists; sigwait for them */
static void block_stop_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, set, NULL);
}

int dt__local_main(int argc, char **argv) {
  dt_local_cluster_opts o = {0};
  const dt_arg opts[] = {
      {DT_OPT_("--n-workers", DT_ARG_INT, &o.n_workers, "N", "worker processes (default: one per CPU)"),
       .alias = "-n", .min = 0, .max = 1024},
      DT_OPT_INT("--threads-per-worker", &o.threads_per_worker, "T", "threads in each worker (default 1)",
                 0, 4096),
      DT_OPT_STR("--host", &o.host, "H", "address the scheduler listens on (default 127.0.0.1)"),
      DT_OPT_INT("--port", &o.port, "P", "the scheduler's port (default 0: any free port)", 0, 65535),
      DT_OPT_CHECKED("--resources", &o.resources, "NAME=N,...", "what every worker declares, e.g. GPU=1",
                     dt__args_check_resources),
      DT_OPT_CHECKED("--memory-limit", &o.memory_limit, "LIMIT",
                     "memory per worker: 2GiB, 0.25 (of the machine), none, or auto\n"
                     "(default: the machine's memory divided among the workers)",
                     dt__args_check_memory_limit),
      DT_OPT_CHECKED("--log-level", &o.log_level, "LEVEL", "debug, info, warning, error (default warning)",
                     dt__args_check_log_level),
      DT_OPT_FLAG("--no-auth", &o.no_auth, "no shared secret"),
      DT_OPT_FLAG("--no-nanny", &o.no_nanny, "workers run without the nanny that restarts them"),
      DT_OPT_CHECKED("--worker-ttl", &o.worker_ttl, "DURATION",
                     "remove a worker silent this long (default 60s)", dt__args_check_duration),
      {0}};
  const dt_args spec = {
      "dtask local", "[options]",
      "Runs a scheduler and workers on this machine until SIGINT/SIGTERM.  The cluster's\n"
      "shared secret is in the auth file it prints: clients in other processes use it\n"
      "with DTASK_AUTH_FILE=FILE (or --no-auth).",
      opts, NULL, NULL};
  int exit_code;
  if (dt__args_run(&spec, argc, argv, &exit_code)) return exit_code;
  sigset_t set;
  block_stop_signals(&set);
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
  const char *addr = NULL;
  dt_sec_args sa = {0};
  const dt_arg opts[] = {DT_SEC_ARG_ROWS(sa), {0}};
  const dt_args spec = {"dtask status", "[options] SCHEDULER_ADDRESS",
                        "Prints a cluster's summary and its workers (the address may also come\n"
                        "from $DTASK_SCHEDULER_ADDRESS).",
                        opts, &addr, NULL};
  int exit_code;
  if (dt__args_run(&spec, argc, argv, &exit_code)) return exit_code;
  dt_client *c;
  if (dt_client_connect(&(dt_client_opts){.address = addr, .auth_file = sa.auth_file,
                                          .tls_ca_file = sa.tls_ca, .tls_cert = sa.tls_cert,
                                          .tls_key = sa.tls_key, .name = "status", .timeout_ms = 5000},
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

/* --adapt MIN:MAX */
typedef struct {
  int min, max;
} adapt_range;
static int parse_adapt(const char *v, void *dest) {
  adapt_range *r = dest;
  int a, b;
  char tail;
  if (sscanf(v, "%d:%d%c", &a, &b, &tail) != 2 || a < 0 || b < a)
    return dt__err(DT_EINVAL, "invalid range '%s' (MIN:MAX, with 0 <= MIN <= MAX)", v);
  r->min = a;
  r->max = b;
  return 0;
}

/* --walltime: a duration ("01:30:00", "90m"), or UNLIMITED */
static int check_walltime(const char *v) {
  if (strcasecmp(v, "unlimited") == 0 || strcasecmp(v, "infinite") == 0) return 0;
  return dt__args_check_duration(v);
}

int dt__jobqueue_main(int argc, char **argv, int system) {
  const char *prog = system == DT_JOBQUEUE_PBS ? "dtask pbs" : "dtask slurm";
  dt_jobqueue_opts o = {.system = (dt_jobqueue_system)system};
  const char *extra[64], *prologue[64], *submit[64], *wargs[64];
  dt_arg_list le = {extra, 0, 64}, lp = {prologue, 0, 64}, ls = {submit, 0, 64}, lw = {wargs, 0, 64};
  int scale = -1;
  adapt_range adapt = {-1, -1};
  bool dry = false;
  const dt_arg opts[] = {
      DT_OPT_INT("--cores", &o.cores, "N", "cores per job, shared by its workers (default 1)", 0, 1 << 20),
      DT_OPT_CHECKED("--memory", &o.memory, "SIZE", "memory per job, e.g. 4GB, 512MiB", dt__args_check_size),
      DT_OPT_INT("--processes", &o.processes, "N", "workers per job (default 1)", 0, 1 << 20),
      DT_OPT_STR("--queue", &o.queue, "Q", "Slurm partition / PBS queue"),
      DT_OPT_STR("--account", &o.account, "A", "account to charge"),
      DT_OPT_CHECKED("--walltime", &o.walltime, "HH:MM:SS", "each job's time limit (default 00:30:00)",
                     check_walltime),
      DT_OPT_STR("--job-name", &o.job_name, "NAME", "jobs' and workers' name (default dtask-worker)"),
      DT_OPT_LIST("--job-extra-directive", &le, "LINE", "another #SBATCH / #PBS line (repeatable)"),
      DT_OPT_LIST("--job-script-prologue", &lp, "LINE", "a line run before the workers (repeatable)"),
      DT_OPT_STR("--local-directory", &o.local_directory, "DIR", "the workers' working folder"),
      DT_OPT_STR("--log-directory", &o.log_directory, "DIR", "where the jobs' output goes"),
      DT_OPT_STR("--interface", &o.interface, "IF", "network interface the workers connect to"),
      DT_OPT_STR("--host", &o.host, "H", "address the scheduler listens on and workers connect to"),
      DT_OPT_INT("--port", &o.port, "P", "the scheduler's port (default 0: any free port)", 0, 65535),
      DT_OPT_LIST("--submit-command-extra", &ls, "ARG", "another sbatch / qsub argument (repeatable)"),
      DT_OPT_LIST("--worker-extra-arg", &lw, "ARG", "another `dtask worker` argument (repeatable)"),
      DT_OPT_STR("--worker-command", &o.worker_command, "CMD", "the command jobs run `worker` with"),
      DT_OPT_CHECKED("--log-level", &o.log_level, "L", "debug, info, warning, error (default warning)",
                     dt__args_check_log_level),
      DT_OPT_FLAG("--no-auth", &o.no_auth, "no shared secret"),
      DT_OPT_CHECKED("--lifetime", &o.lifetime, "D",
                     "each worker retires gracefully after D (e.g. 55m; before the walltime)",
                     dt__args_check_duration),
      DT_OPT_CHECKED("--lifetime-stagger", &o.lifetime_stagger, "S",
                     "D +- up to S, at random per worker", dt__args_check_duration),
      DT_OPT_FLAG("--lifetime-restart", &o.lifetime_restart,
                  "a fresh worker starts in the job after each retires"),
      DT_OPT_CHECKED("--lifetime-lead", &o.lifetime_lead, "L",
                     "submit a retiring job's replacement L ahead (default: from the queue wait)",
                     dt__args_check_duration),
      DT_OPT_STR("--journal", &o.journal, "FILE",
                 "the scheduler keeps a journal (restart it at the same --port: docs/hpc.md)"),
      DT_OPT_INT("--scale", &scale, "N", "start N workers", 0, 1 << 20),
      DT_OPT_CALL("--adapt", &adapt, "MIN:MAX", "between MIN and MAX workers, as the work needs",
                  parse_adapt),
      DT_OPT_FLAG("--dry-run", &dry, "print the job script and exit"),
      {0}};
  const dt_args spec = {
      prog, "[options]",
      "Starts a scheduler here and submits jobs whose workers connect back to it\n"
      "(dask-jobqueue's options and meanings); runs until SIGINT/SIGTERM, then cancels\n"
      "every job.",
      opts, NULL, NULL};
  int exit_code;
  if (dt__args_run(&spec, argc, argv, &exit_code)) return exit_code;
  o.job_extra_directives = extra;
  o.n_job_extra_directives = le.n;
  o.job_script_prologue = prologue;
  o.n_job_script_prologue = lp.n;
  o.submit_command_extra = submit;
  o.n_submit_command_extra = ls.n;
  o.worker_extra_args = wargs;
  o.n_worker_extra_args = lw.n;
  if (dry) {
    char *script = dt_jobqueue_job_script(&o, NULL, NULL);
    fputs(script, stdout);
    free(script);
    return 0;
  }
  sigset_t set;
  block_stop_signals(&set);
  dt_jobqueue_cluster *jc;
  if (dt_jobqueue_cluster_start(&o, &jc) != 0) {
    fprintf(stderr, "%s: %s\n", prog, dt_last_error());
    return 1;
  }
  printf("scheduler at tcp://%s\n", dt_jobqueue_cluster_address(jc));
  if (dt_jobqueue_cluster_auth_file(jc)) printf("auth file %s\n", dt_jobqueue_cluster_auth_file(jc));
  fflush(stdout);
  int rc = 0;
  if (scale >= 0) rc = dt_jobqueue_scale(jc, scale);
  else if (adapt.max >= 0) rc = dt_jobqueue_adapt(jc, adapt.min, adapt.max);
  if (rc) fprintf(stderr, "%s: %s\n", prog, dt_last_error());
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
