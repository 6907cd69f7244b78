/*
 * nanny.h -- the worker's supervisor.  `dtask worker` runs the worker as a
 * child of a small nanny process (unless --no-nanny): when the worker dies,
 * however it dies, the nanny tells the scheduler at once which tasks were
 * running (read from memory the two share) and starts a new worker.
 */
#ifndef DT_NANNY_H
#define DT_NANNY_H

#include <stdint.h>

#include "../net/net.h"

/* One slot per pool thread in the shared memory: uint32 key length (0 =
 * idle), then the key of the task that thread is running. */
#define DT__NANNY_SLOT (4 + DT_MAX_KEY + 4)

/* Worker exit statuses the nanny understands. */
#define DT__EXIT_OK 0       /* asked to close: the nanny exits too */
#define DT__EXIT_GIVE_UP 3  /* cannot work (bad configuration, death timeout) */
#define DT__EXIT_MEMORY 4   /* over the terminate threshold of its memory limit */
#define DT__EXIT_RESTART 5  /* asked to restart (Client.restart): a fresh one at once, no report */
#define DT__EXIT_LIFETIME 6 /* retired at the end of its --lifetime, with --lifetime-restart: the same */

/* dt__nanny_exit_intent: the worker is about to exit with code on purpose
 * (one of the DT__EXIT_* above).  The nanny believes an exit status only
 * when the worker said so first: a task that calls exit(0) or os._exit(3)
 * is a worker that died, restarted and reported, not one that was asked to
 * close or gave up.  No-op without a nanny. */
void dt__nanny_exit_intent(int code);

/* run: the worker proper, called in each new child process; token is the
 * worker's nanny token (sent in HELLO_WORKER), slots nthreads slots. */
typedef int (*dt__worker_run_fn)(uint64_t token, char *slots, void *arg);

/* dt__nanny_run: supervises workers until one exits with DT__EXIT_OK or
 * DT__EXIT_GIVE_UP, or the nanny gets SIGTERM/SIGINT (passed on to the
 * worker).  sec: how to reach the scheduler (auth/TLS), may be NULL. */
int dt__nanny_run(const char *sched_addr, int nthreads, const struct dt_sec *sec,
                  dt__worker_run_fn run, void *arg);
/* dt__nanny_memory: the nanny also kills its worker when its RSS goes over
 * bytes (0: no limit); set before dt__nanny_run. */
void dt__nanny_memory(uint64_t bytes);

#endif
