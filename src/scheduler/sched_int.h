/*
 * sched_int.h -- what the files of the scheduler's state machine share
 * among themselves (state.c, events.c, place.c, graph.c, clients.c,
 * workers.c); nothing outside src/scheduler/'s state machine includes it.
 * The public events are in state.h.
 */
#ifndef DT_SCHED_INT_H
#define DT_SCHED_INT_H

#include "state.h"
#include "journal.h"

/* ---- transitions (state.c) */
/* dt__task_transition_ok: to is allowed from from (the table in state.h). */
bool dt__task_transition_ok(int from, int to);
/* dt__task_transition: the one place a task's state changes: checks the
 * table, aborting with the key and both states if the move is illegal (a
 * bug in the scheduler), and keeps the per-state and per-function counts. */
void dt__task_transition(sched *s, s_task *t, s_task_state to);

/* dt__task_new: a RELEASED task with a copy of key, registered by key. */
s_task *dt__task_new(sched *s, const char *key, uint32_t klen, const char *func, uint32_t flen);
/* dt__task_rare: t's side struct, allocated on first use. */
s_task_rare *dt__task_rare(s_task *t);
/* dt__task_free: frees t and what it owns (not its dependencies). */
void dt__task_free(s_task *t);

/* dt__task_want: t (RELEASED) is needed: to WAITING, and so is every
 * RELEASED dependency it lacks, recursively; what is ready gets placed,
 * what depends on a failure errs. */
void dt__task_want(sched *s, s_task *t);
/* dt__task_in_memory: t's result is now held by w (t was not in memory):
 * tell the clients, wake the dependents, let go of the dependencies. */
void dt__task_in_memory(sched *s, s_task *t, s_worker *w, uint64_t nbytes, const char *inline_,
                        uint32_t ilen);
/* dt__task_erred: t failed (origin, func, worker, msg: what to report) and
 * so does every dependent not yet in memory; unwanted failures are then
 * forgotten (t may be freed: the caller must not use it afterwards). */
void dt__task_erred(sched *s, s_task *t, int code, const char *origin, const char *func,
                    const char *worker, const char *msg);
/* dt__task_wake: t is now in memory: each waiting dependent lacks one
 * dependency less, and is placed when it lacks none. */
void dt__task_wake(sched *s, s_task *t);
/* dt__task_lost: the last copy of t (MEMORY) is gone: back to RELEASED,
 * and its waiting dependents count it as missing again.  The caller wants
 * it again (dt__task_want) if anything still needs it. */
void dt__task_lost(sched *s, s_task *t);
/* dt__task_unrun: t (PROCESSING) was taken off its worker (that worker
 * left, it failed with retries left, or it could not fetch a dependency):
 * back to WAITING. */
void dt__task_unrun(sched *s, s_task *t);
/* dt__task_retry: t is WAITING with holds_deps: count what it lacks and, if
 * nothing, place it.  No-op for a task in any other state. */
void dt__task_retry(sched *s, s_task *t);
/* dt__task_unschedule: take t (not yet run) out of the queue, the no-worker
 * list or its worker (which is told to drop it).  No state change. */
void dt__task_unschedule(sched *s, s_task *t);
/* dt__task_gc: release and forget what nobody needs, from t down its
 * dependencies (t may be freed). */
void dt__task_gc(sched *s, s_task *t);
/* dt__task_gc_keys: gc each task named in keys (owned copies, freed here),
 * for where gc of one task may free another the caller points at. */
void dt__task_gc_keys(sched *s, dt_vec *keys);
/* dt__task_drop_holders: every worker holding t's result forgets it. */
void dt__task_drop_holders(sched *s, s_task *t);
/* dt__task_add_holder: w holds t's result (nbytes); false if it did already */
bool dt__task_add_holder(s_task *t, s_worker *w, uint64_t nbytes);

/* dt__story_note: the bounded ring of recent transitions (replicas.c) */
void dt__story_note(const char *key, uint32_t klen, int from, int to);

/* ---- placement (place.c) */
/* dt__place_ready: t (WAITING, or NO_WORKER when a worker came) has every
 * dependency in memory: to a worker, the queue, or the no-worker list. */
void dt__place_ready(sched *s, s_task *t);
/* dt__place_fill: hand queued root tasks to workers with free slots. */
void dt__place_fill(sched *s);
/* dt__place_unlink: t leaves the queue or the no-worker list it is on. */
void dt__place_unlink(sched *s, s_task *t);
/* dt__place_proc_remove: t leaves its worker's processing list (no-op when
 * it is on none); returns that worker. */
s_worker *dt__place_proc_remove(s_task *t);
/* free list: workers with free slots, round robin */
void dt__place_free_append(sched *s, s_worker *w);
void dt__place_free_remove(sched *s, s_worker *w);
void dt__place_update_free(sched *s, s_worker *w);

/* ---- events (events.c): append one event (O(1), no allocation once the
 * queue has grown) */
void dt__ev_compute(sched *s, s_worker *w, s_task *t);
void dt__ev_free(sched *s, s_worker *w, s_task *t);
void dt__ev_free_key(sched *s, s_worker *w, const char *key, uint32_t klen);
void dt__ev_acquire(sched *s, s_worker *to, s_task *t, s_worker *from);
void dt__ev_in_memory(sched *s, s_client *c, s_task *t, const char *inline_, uint32_t ilen);
void dt__ev_erred(sched *s, s_client *c, s_task *t);
void dt__ev_unknown(sched *s, s_client *c, const char *key, uint32_t klen);
void dt__ev_cancelled(sched *s, s_client *c, const char *key, uint32_t klen, const char *why);

/* ---- chains without the scheduler in the loop (speculate.c) */
/* dt__ahead_consider: t (WAITING) may go ahead to the worker of its only
 * dependency, and what waits only for it behind it */
void dt__ahead_consider(sched *s, s_task *t);
/* dt__ahead_placed: d is now PROCESSING: its dependents may go ahead */
void dt__ahead_placed(sched *s, s_task *d);
/* dt__ahead_transition: from dt__task_transition, for a task marked ahead
 * or with dependents ahead: withdraw what no longer holds */
void dt__ahead_transition(sched *s, s_task *t, int from, int to);
/* dt__ahead_promote: t (ahead) is ready: PROCESSING where it was sent, with
 * no COMPUTE_TASK (true), or withdrawn, to be placed as usual (false) */
bool dt__ahead_promote(sched *s, s_task *t);
/* dt__ahead_worker_gone: w leaves: forget what was sent ahead to it */
void dt__ahead_worker_gone(sched *s, s_worker *w);
/* dt__ahead_check: the invariant of speculate.c; 0 if it holds */
int dt__ahead_check(const sched *s, char *why, size_t cap);
/* place.c's, for speculate.c: w may run t; t (WAITING, ready) to
 * PROCESSING on w with no COMPUTE_TASK (w has it) */
bool dt__place_valid_for(const s_task *t, const s_worker *w);
void dt__place_attach(sched *s, s_task *t, s_worker *w);
void dt__ev_ahead(sched *s, s_worker *w, s_task *t);

/* ---- peers (workers.c, clients.c) */
void dt__worker_free(s_worker *w);
void dt__client_free(s_client *c);

#endif
