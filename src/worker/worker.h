/*
 * worker.h -- what other folders call in src/worker/: the entry point of
 * the worker process (`dtask worker`, and the workers a LocalCluster
 * starts by re-executing its program).
 */
#ifndef DT_WORKER_H
#define DT_WORKER_H

#include <stdbool.h>
#include <stddef.h>

/* dt__worker_main: runs `dtask worker` with argv (the role name excluded):
 * under a nanny unless --no-nanny; returns the process's exit status.
 * Call on the process's main thread, once. */
int dt__worker_main(int argc, char **argv);

/* dt__worker_inproc: runs a worker (no nanny) on the calling thread of a
 * process that does other things (a Python client's: LocalCluster(
 * processes=False)), until dt__worker_inproc_stop or a fatal error; no
 * signal handlers, never exits the process, waits for the tasks running
 * and resets the worker's state before it returns (another may run
 * later).  One at a time per process (the worker's state is process-wide):
 * returns 3 (with a message on stderr) while one runs.
 * --local-directory is refused (it would change the process's folder).
 * Returns the worker's exit status (0 when stopped). */
int dt__worker_inproc(int argc, char **argv);
/* dt__worker_inproc_stop: asks the in-process worker to leave (any
 * thread); true if one was running or starting, false if none */
bool dt__worker_inproc_stop(void);

/* dt__read_scheduler_file: the "address" of the scheduler file at path
 * (as written, scheme included) into out (cap bytes); 0, DT_ENOTFOUND if
 * it cannot be read, DT_EINVAL if it has no address or it does not fit.
 * Kept for the client until it uses common/parse.h's
 * dt__scheduler_file_read instead; then this goes. */
int dt__read_scheduler_file(const char *path, char *out, size_t cap);

#endif
