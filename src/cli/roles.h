/*
 * roles.h -- the entry points of the dtask processes.  The dtask command
 * calls them by sub-command; a program that starts a LocalCluster
 * re-executes itself and calls them before main() (see cluster/local.c).
 */
#ifndef DT_ROLES_H
#define DT_ROLES_H

/* Each returns a process exit status; argv excludes the role name. */
int dt__scheduler_main(int argc, char **argv);
int dt__worker_main(int argc, char **argv);
int dt__local_main(int argc, char **argv);

int dt__jobqueue_main(int argc, char **argv, int system);

/* Process helpers (cluster/local.c). */
#include <sys/types.h>
/* dt__spawn_role: this program again, as role (scheduler, worker) with
 * args; keep_fd stays open in the child; the child dies with us. */
pid_t dt__spawn_role(const char *role, const char *const *args, int nargs, int keep_fd);
/* dt__stop_pids: SIGTERM, then SIGKILL after 3 s; reaps; sets each to -1. */
void dt__stop_pids(pid_t *pids, int n);

#endif
