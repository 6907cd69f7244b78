/*
 * coord.h -- the coordination primitives and published datasets the
 * scheduler holds (coord.c), and what coord.c asks of the daemon
 * (handle_coord.c: replies, the clock, the timer).  Event loop's thread
 * only.
 *
 * Every primitive lives in one namespace of names (a name used as a lock
 * is not a queue while the lock exists); datasets have their own.  A
 * primitive exists while it holds something (a value, items, a holder, a
 * lease, a set flag) or has waiters, and is freed when it holds nothing.
 * A held value's futures are wanted by one internal holder client while
 * any held value names them, so their results stay on the workers.
 */
#ifndef DT_SCHED_COORD_H
#define DT_SCHED_COORD_H

#include "server.h"
#include "../proto/coord_ops.h"

/* A value the scheduler holds: its encoding and the futures inside it. */
typedef struct coord_val {
  dt_payload pl;
  char **keys; /* owned */
  uint32_t nkeys;
  size_t nbytes;
} coord_val;

/* coord_val_free: frees v (not its keys' holds; NULL ignored). */
void dt__coord_val_free(coord_val *v);

/* One decoded COORD request (names borrowed for the call). */
typedef struct {
  uint32_t client;
  uint64_t req;
  int op;
  const char **names;
  const uint32_t *lens;
  uint32_t nnames;
  coord_val *val; /* consumed by dt__coord_request (may be NULL) */
  int64_t timeout_ms, arg;
} coord_req;

/* dt__coord_request: does r: replies at once, or later (a waiter) */
void dt__coord_request(coord_req *r);
/* dt__coord_client_left: its waiters go; its locks, multilocks and
 * semaphore leases are released (and passed to the next waiters) */
void dt__coord_client_left(uint32_t client);
/* dt__coord_expire: waiters whose deadline is <= now_ms get DT_ETIMEDOUT */
void dt__coord_expire(uint64_t now_ms);
/* dt__coord_client_state: locks, leases and waiters held for clients
 * (0 once every client left) */
size_t dt__coord_client_state(void);
/* dt__coord_free_all: forgets everything (variables, queues, events,
 * datasets too), releasing the futures held */
void dt__coord_free_all(void);

/* ---- handle_coord.c */
/* dt__coord_reply: COORD_REPLY to client (skipped if it left); v's payload
 * and keys are encoded (v borrowed, may be NULL) */
void dt__coord_reply(uint32_t client, uint64_t req, int code, const char *err, int64_t count,
                     const coord_val *v, const dt_vec *names);
uint64_t dt__coord_now(void);          /* the loop's clock, ms */
void dt__coord_arm(uint64_t deadline); /* the next expiry (UINT64_MAX: none) */
int dt__on_coord(dt_conn *c, const dt_msg *m);

#endif
