/*
 * scheduler.h -- the scheduler process's entry point (server.c), for the
 * dtask command and for programs that start a LocalCluster.
 */
#ifndef DT_SCHEDULER_H
#define DT_SCHEDULER_H

/* dt__scheduler_main: runs a scheduler with the options in argv (which
 * excludes the role name) until SIGINT or SIGTERM; returns the process
 * exit status (0, 1 on a failure to start, 2 on bad options). */
int dt__scheduler_main(int argc, char **argv);

#endif
