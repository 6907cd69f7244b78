/*
 * main.c -- the dtask command: dtask scheduler | worker | local | version.
 */
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
  if (dt_local_cluster_auth_file(lc)) printf("auth file %s\n", dt_local_cluster_auth_file(lc));
  fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  dt_local_cluster_close(lc);
  return 0;
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
