/*
 * dashboard.h -- the scheduler's web dashboard, JSON API and Prometheus
 * metrics (dashboard.c).  The event loop renders a snapshot of its state
 * once a second (aggregated: counts, per function, per worker, the last
 * tasks); an HTTP server (libmicrohttpd, its own threads) serves only
 * snapshots, so a browser never touches, or waits on, the scheduler's loop.
 */
#ifndef DT_DASHBOARD_H
#define DT_DASHBOARD_H

#include "state.h"

/* What the renderers need besides the state machine. */
typedef struct {
  double now_s;           /* monotonic, as dt__now_s() */
  double tasks_per_s;     /* completions over the last second */
  uint64_t bytes_in, bytes_out; /* the scheduler's network totals */
  double loop_lag_s;      /* how late the last snapshot timer fired */
  uint64_t workers_lost;
  /* the journal (journal.h): on, file size, compactions, replay time */
  bool journal_on;
  uint64_t journal_bytes, journal_compactions;
  double journal_replay_s;
} dt_dash_extra;

/* Renderers (pure; malloc'd NUL-terminated strings). */
char *dt__dash_summary_json(const sched *s, const dt_dash_extra *x);
char *dt__dash_functions_json(const sched *s);
char *dt__dash_workers_json(const sched *s, const dt_dash_extra *x);
char *dt__dash_stream_json(const sched *s, const dt_dash_extra *x);
char *dt__dash_metrics(const sched *s, const dt_dash_extra *x);

/* dt__dashboard_start: serves on host:port (port 0: any; if fallback and
 * the port is taken, any).  Writes "http://host:port/" to url. */
int dt__dashboard_start(const char *host, int port, bool fallback, char *url, size_t cap);
/* dt__dashboard_publish: a new snapshot (called by the loop, ~1/s). */
void dt__dashboard_publish(const sched *s, const dt_dash_extra *x);
void dt__dashboard_stop(void);
/* dt__dashboard_set_token: with a shared secret, every request but /health
 * must carry this token (64 hex digits; docs/dashboard.md): an
 * "Authorization: Bearer" header, the dtask_token cookie, or ?token= (which
 * sets the cookie).  Call before dt__dashboard_start. */
void dt__dashboard_set_token(const char *token);

#endif
