/*
 * worker.h -- what other folders call in src/worker/: the entry point of
 * the worker process (`dtask worker`, and the workers a LocalCluster
 * starts by re-executing its program).
 */
#ifndef DT_WORKER_H
#define DT_WORKER_H

#include <stddef.h>

/* dt__worker_main: runs `dtask worker` with argv (the role name excluded):
 * under a nanny unless --no-nanny; returns the process's exit status.
 * Call on the process's main thread, once. */
int dt__worker_main(int argc, char **argv);

/* dt__read_scheduler_file: the "address" of the scheduler file at path
 * (as written, scheme included) into out (cap bytes); 0, DT_ENOTFOUND if
 * it cannot be read, DT_EINVAL if it has no address or it does not fit.
 * Kept for the client until it uses common/parse.h's
 * dt__scheduler_file_read instead; then this goes. */
int dt__read_scheduler_file(const char *path, char *out, size_t cap);

#endif
