/*
 * query.h -- the client's questions to the scheduler (issue 15: who_has,
 * has_what, nbytes, processing, story, events, metadata, task stream, logs,
 * replicate, rebalance), asked through one message pair: QUERY {req, name,
 * args} -> ANSWER {req, error, value}.  query.c holds the table of named
 * queries (one handler each, each bounded in what it returns) and the
 * server-side stores (events, metadata, the task stream with keys, the
 * pending worker-log requests); replicas.c is the state machine's side
 * (the bounded ring of recent transitions behind story, and the moves
 * that replicate and rebalance ask for, reusing ACQUIRE / ACQUIRED).
 */
#ifndef DT_SCHED_QUERY_H
#define DT_SCHED_QUERY_H

#include "server.h"

/* ---- replicas.c (state machine; scheduler thread) */
/* dt__story_note: key went from one state to another (state.c's one place
 * a state changes calls it); O(1), no allocation after the first call. */
void dt__story_note(const char *key, uint32_t klen, int from, int to);
/* dt__story_msg: the handling of a message begins (true) or ends (false):
 * its transitions share one clock read */
void dt__story_msg(bool begin);
/* dt__story_of: the recorded transitions of key, oldest first, as a list
 * of [key, from, to, stimulus, time] appended to out; at most max. */
void dt__story_of(const char *key, uint32_t klen, dt_value *out, size_t max);
/* dt__wall_s: seconds since the epoch (the times queries answer with) */
double dt__wall_s(void);
/* dt__story_free: the ring's memory (at exit) */
void dt__story_free(void);
/* dt__sched_replicate: copies of t on up to n workers of targets (all
 * workers when ntargets is 0); returns how many copies were asked for. */
int dt__sched_replicate(sched *s, s_task *t, int n, s_worker **targets, size_t ntargets);
/* dt__sched_rebalance: moves results among workers (all, or the given
 * ones) so that each holds about the mean of their bytes; keys NULL: every
 * result in memory.  Each move is an ACQUIRE; the source's copy is freed
 * when the destination has it (dt__sched_moved).  Returns the moves asked. */
int dt__sched_rebalance(sched *s, s_task **keys, size_t nkeys, s_worker **targets, size_t ntargets);
/* dt__sched_moved: w fetched key for an ACQUIRE: a rebalance's source copy
 * goes (kept when it is the last one). */
void dt__sched_moved(sched *s, s_worker *w, const char *key, uint32_t klen, bool ok);
/* dt__sched_moves_forget: w left: its pending moves are dropped */
void dt__sched_moves_forget(s_worker *w);
void dt__sched_moves_free(void);

/* ---- query.c (server; scheduler thread) */
int dt__on_query(dt_conn *c, const dt_msg *m);
int dt__on_answer(dt_conn *c, const dt_msg *m);
/* dt__query_task_done: a task finished (or failed) on w: the task stream */
void dt__query_task_done(s_worker *w, const char *key, uint32_t klen, uint64_t nbytes,
                         double duration_s, bool ok);
/* dt__query_tick: every heartbeat: pending worker-log requests that waited
 * too long are answered with what came */
void dt__query_tick(void);
/* dt__query_worker_leaves: w will not answer */
void dt__query_worker_leaves(s_worker *w);
/* dt__query_free_all: at exit, and after a fuzz input */
void dt__query_free_all(void);

/* ---- topics.c (scheduler thread): events on topics, and long polls */
/* dt__topic_push: row ([time, msg]) is the next event of topic name; the
 * clients waiting on it are answered */
void dt__topic_push(const char *name, size_t nlen, dt_value *row);
/* dt__topic_events: name's events (since < 0: each [time, msg]; else those
 * numbered since or later, each [seq, time, msg]), a list */
dt_value *dt__topic_events(const char *name, size_t nlen, int64_t since);
/* dt__topics_all_events: {topic: dt__topic_events(topic, since)} */
dt_value *dt__topics_all_events(int64_t since);
/* dt__topics_wait: the events of want's topics ({topic: first number
 * wanted}) as [topic, seq, time, msg]s if there are any (or timeout_s is
 * 0: then maybe none); else NULL with err empty: answer(client_id, req,
 * events) is called when one comes, or with none when timeout_s passes.
 * NULL with err set: refused. */
typedef void (*dt__topics_answer_fn)(uint32_t client_id, uint64_t req, const dt_value *v);
dt_value *dt__topics_wait(uint32_t client_id, uint64_t req, const dt_value *want, double timeout_s,
                          dt__topics_answer_fn answer, char *err, size_t errcap);
void dt__topics_tick(void); /* waits past their time are answered (none) */
void dt__topics_client_gone(uint32_t client_id);
void dt__topics_free_all(void);

/* ---- retry.c (scheduler thread): the "retry" query (Client.retry) */
/* dt__query_retry: each named ERRED task and the ERRED tasks it depends on
 * go ERRED -> RELEASED and are wanted again (WAITING, then placed), as
 * Dask's stimulus_retry; keys is a string or a list of strings.  Returns
 * the number of tasks moved (an int value), or NULL with err filled. */
dt_value *dt__query_retry(const dt_value *keys, char *err, size_t errcap);
/* dt__sched_retry: the same for one task; returns the tasks moved */
int dt__sched_retry(sched *s, s_task *t);
/* dt__query_task_spec: the "task_spec" query (recreate_error_locally):
 * {key, func, state, payload: the first argument when it is bytes (a
 * Python call), deps: the keys of its future arguments, in order}; root:
 * for an ERRED task, the dependency whose own failure it inherited. */
dt_value *dt__query_task_spec(const dt_value *key, bool root, char *err, size_t errcap);

#endif
