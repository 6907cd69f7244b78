/*
 * roles.h -- the entry points of the dtask processes.  The dtask command
 * calls them by sub-command; a program that starts a LocalCluster
 * re-executes itself and calls them before main() (see cluster/spawn.c).
 */
#ifndef DT_ROLES_H
#define DT_ROLES_H

/* Each returns a process exit status; argv excludes the role name. */
#include "../scheduler/scheduler.h"
#include "../worker/worker.h"
int dt__local_main(int argc, char **argv);

int dt__jobqueue_main(int argc, char **argv, int system);

#endif
