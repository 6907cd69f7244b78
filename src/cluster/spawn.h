/*
 * spawn.h -- what every cluster (LocalCluster, the job-queue clusters)
 * does with processes and secrets: start this program again in a role
 * (scheduler, worker), start the scheduler and wait for its address, stop
 * processes, and make the cluster's shared secret and its file.
 *
 * A role process is this program re-executed (/proc/self/exe) with
 * DTASK_ROLE=<role> and DTASK_ROLE_ARGS=<args joined by DT_ROLE_ARG_SEP>;
 * spawn.c's constructor takes over before main(), after every DT_TASK
 * registration ran, so the workers know the program's own task functions.
 * Children get PR_SET_PDEATHSIG: they die with the process that started
 * them.
 */
#ifndef DT_SPAWN_H
#define DT_SPAWN_H

#include <stddef.h>
#include <sys/types.h>

#define DT_ROLE_ARG_SEP '\x1f'

/* dt__spawn_role: this program again, as role ("scheduler", "worker") with
 * args; keep_fd (or -1) stays open in the child; the child dies with us.
 * The pid, or -1 (errno set).  Call from any thread. */
pid_t dt__spawn_role(const char *role, const char *const *args, int nargs, int keep_fd);

/* dt__spawn_command: cmd[0..ncmd) followed by role and args (cmd[0] a
 * path), or, with no cmd, dt__spawn_role. */
pid_t dt__spawn_command(const char *const *cmd, size_t ncmd, const char *role,
                        const char *const *args, int nargs, int keep_fd);

/* dt__stop_pids: SIGTERM to each pid > 0, then SIGKILL to those still
 * alive after 3 s; reaps them and sets each to -1. */
void dt__stop_pids(pid_t *pids, int n);

/* dt__scheduler_spawn: starts a scheduler (through cmd as
 * dt__spawn_command does) with args plus "--ready-fd N", and waits up to
 * timeout_ms for the line it writes when it listens.  Returns 0 with *pid,
 * its address ("host:port") in addr and its dashboard URL in dash ("" if
 * none).  Otherwise DT_ESPAWN: *pid is -1 if it could not be started
 * ("cannot start the scheduler: REASON"), else it was started, did not
 * report, and has been stopped ("the scheduler did not start (see its log
 * above)"); *pid is then -1 too. */
int dt__scheduler_spawn(const char *const *cmd, size_t ncmd, const char *const *args, int nargs,
                        int timeout_ms, pid_t *pid, char *addr, size_t addrcap, char *dash,
                        size_t dashcap);

/* dt__secret_new: a fresh random secret (64 hex digits, NUL-terminated, in
 * hex) written to a new file only this user can read.  path_template is
 * the file's path; if it ends in "XXXXXX" those become a unique suffix
 * (mkstemp).  The path written is copied to path.  0, or DT_ESPAWN
 * ("cannot write the auth file PATH: REASON"), with no file left. */
int dt__secret_new(const char *path_template, char *path, size_t pathcap, char hex[65]);

/* dt__run_program_constructors: from the role takeover in libdtask.so, runs
 * the program's own constructors (DT_INIT, DT_INIT_ARRAY: its DT_TASK
 * registrations), which would otherwise run only after the library's; does
 * nothing when the library is linked into the program.  Main thread. */
void dt__run_program_constructors(int argc, char **argv, char **envp);

#endif
