/*
 * dashboard.c -- see dashboard.h.  Payloads stay small whatever the graph:
 * everything is aggregated before it leaves (states and functions are
 * counters kept by the state machine, O(1) per transition); workers are one
 * row each; the task stream is the newest DT_DASH_STREAM_MAX tasks of the
 * last minute.  Nothing per task is ever sent to a browser.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "../net/net.h"
#include "dashboard.h"
#include "dashboard_html.h" /* generated from dashboard/index.html */

#define DT_DASH_STREAM_MAX 2000
#define DT_DASH_FUNCS_MAX 200
#define DT_DASH_WORKERS_MAX 2000

/* ---------------------------------------------------------------- strings */

typedef struct {
  char *p;
  size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (b->p && (size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    b->cap = (b->cap + (size_t)n + 1) * 2;
    b->p = dt__xrealloc(b->p, b->cap);
  }
}

/* a JSON string, escaped */
static void sb_jstr(sbuf *b, const char *s) {
  sb_printf(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') sb_printf(b, "\\%c", *p);
    else if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
    else sb_printf(b, "%c", *p);
  }
  sb_printf(b, "\"");
}

/* a Prometheus label value, escaped */
static void sb_lstr(sbuf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') sb_printf(b, "\\%c", *s);
    else if (*s == '\n') sb_printf(b, "\\n");
    else sb_printf(b, "%c", *s);
  }
}

static char *sb_done(sbuf *b) {
  if (!b->p) sb_printf(b, "%s", "");
  return b->p;
}

/* ---------------------------------------------------------------- renderers */

static uint64_t bytes_in_memory(const sched *s) {
  uint64_t n = 0;
  for (size_t i = 0; i < s->workers.len; i++) n += ((const s_worker *)s->workers.v[i])->nbytes;
  return n;
}

char *dt__dash_summary_json(const sched *s, const dt_dash_extra *x) {
  sbuf b = {0};
  sb_printf(&b, "{\"workers\":%zu,\"clients\":%zu,\"tasks\":%zu,\"threads\":", s->workers.len,
            s->clients.len, s->tasks.len);
  int threads = 0;
  for (size_t i = 0; i < s->workers.len; i++) threads += ((const s_worker *)s->workers.v[i])->nthreads;
  sb_printf(&b, "%d,\"states\":{", threads);
  for (int st = 0; st < TS_COUNT; st++)
    sb_printf(&b, "%s\"%s\":%lld", st ? "," : "", dt__task_state_name(st), (long long)s->count[st]);
  sb_printf(&b, "},\"completed\":%llu,\"tasks_per_s\":%.1f,\"memory_bytes\":%llu,\"workers_lost\":%llu",
            (unsigned long long)s->tasks_completed, x->tasks_per_s,
            (unsigned long long)bytes_in_memory(s), (unsigned long long)x->workers_lost);
  sb_printf(&b, ",\"journal\":{\"on\":%s,\"bytes\":%llu,\"compactions\":%llu,\"replay_s\":%.3f}}",
            x->journal_on ? "true" : "false", (unsigned long long)x->journal_bytes,
            (unsigned long long)x->journal_compactions, x->journal_replay_s);
  return sb_done(&b);
}

static int cmp_func(const void *a, const void *b) {
  const s_func *x = *(const s_func *const *)a, *y = *(const s_func *const *)b;
  int64_t tx = 0, ty = 0;
  for (int st = 0; st < TS_COUNT; st++) tx += x->count[st], ty += y->count[st];
  tx += (int64_t)x->finished;
  ty += (int64_t)y->finished;
  return tx < ty ? 1 : tx > ty ? -1 : strcmp(x->name, y->name);
}

char *dt__dash_functions_json(const sched *s) {
  /* the functions with the most tasks, at most DT_DASH_FUNCS_MAX */
  const s_func **fs = dt__xcalloc(s->funcs.len + 1, sizeof(*fs));
  size_t n = 0;
  for (size_t i = 0; i < s->funcs.cap; i++)
    if (s->funcs.slots[i].key) fs[n++] = DT_FUNC_OF(s->funcs.slots[i].val);
  qsort(fs, n, sizeof(*fs), cmp_func);
  if (n > DT_DASH_FUNCS_MAX) n = DT_DASH_FUNCS_MAX;
  sbuf b = {0};
  sb_printf(&b, "[");
  size_t shown = 0;
  for (size_t i = 0; i < n; i++) {
    const s_func *f = fs[i];
    int64_t live = 0;
    for (int st = 0; st < TS_COUNT; st++) live += f->count[st];
    if (!live && !f->finished && !f->failed) continue;
    sb_printf(&b, "%s{\"name\":", shown++ ? "," : "");
    sb_jstr(&b, f->name);
    sb_printf(&b,
              ",\"waiting\":%lld,\"queued\":%lld,\"no_worker\":%lld,\"processing\":%lld,"
              "\"memory\":%lld,\"erred\":%lld,\"released\":%lld,\"finished\":%llu,\"failed\":%llu}",
              (long long)f->count[TS_WAITING], (long long)f->count[TS_QUEUED],
              (long long)f->count[TS_NO_WORKER], (long long)f->count[TS_PROCESSING],
              (long long)f->count[TS_MEMORY], (long long)f->count[TS_ERRED],
              (long long)f->count[TS_RELEASED], (unsigned long long)f->finished,
              (unsigned long long)f->failed);
  }
  sb_printf(&b, "]");
  free(fs);
  return sb_done(&b);
}

char *dt__dash_workers_json(const sched *s, const dt_dash_extra *x) {
  sbuf b = {0};
  sb_printf(&b, "[");
  for (size_t i = 0; i < s->workers.len && i < DT_DASH_WORKERS_MAX; i++) {
    const s_worker *w = s->workers.v[i];
    sb_printf(&b, "%s{\"id\":%u,\"name\":", i ? "," : "", w->id);
    sb_jstr(&b, w->name);
    sb_printf(&b, ",\"address\":");
    sb_jstr(&b, w->address);
    double age = x->now_s - w->last_seen;
    sb_printf(&b,
              ",\"nthreads\":%d,\"pid\":%d,\"processing\":%zu,\"executing\":%lld,\"keys\":%llu,"
              "\"bytes\":%llu,\"spilled\":%llu,\"cpu\":%.1f,\"rss\":%llu,\"last_seen_s\":%.1f,"
              "\"retiring\":%s,\"paused\":%s}",
              w->nthreads, w->pid, w->processing.len, (long long)w->executing,
              (unsigned long long)w->nkeys, (unsigned long long)w->nbytes,
              (unsigned long long)w->spilled, w->cpu, (unsigned long long)w->rss,
              age > 0 ? age : 0, w->retiring ? "true" : "false", w->paused ? "true" : "false");
  }
  sb_printf(&b, "]");
  return sb_done(&b);
}

char *dt__dash_stream_json(const sched *s, const dt_dash_extra *x) {
  /* the newest tasks of the last minute: [worker id, function index,
   * seconds ago it started, duration]; functions named once */
  sbuf b = {0}, names = {0};
  const char *seen[64];
  size_t nseen = 0;
  uint64_t n = s->stream_n < DT_STREAM_CAP ? s->stream_n : DT_STREAM_CAP;
  if (n > DT_DASH_STREAM_MAX) n = DT_DASH_STREAM_MAX;
  sb_printf(&b, "{\"window_s\":60,\"tasks\":[");
  size_t shown = 0;
  for (uint64_t k = 0; k < n; k++) {
    const s_stream_ev *e = &s->stream[(s->stream_n - 1 - k) % DT_STREAM_CAP];
    double ago = x->now_s - e->end_s + e->dur_s;
    if (ago > 60) break;
    size_t fi = 0;
    while (fi < nseen && seen[fi] != e->func) fi++;
    if (fi == nseen) {
      if (nseen == 64) fi = 63; /* the 64th and later share a colour */
      else seen[nseen++] = e->func;
    }
    sb_printf(&b, "%s[%u,%zu,%.4f,%.4f]", shown++ ? "," : "", e->worker, fi, ago, (double)e->dur_s);
  }
  sb_printf(&names, "[");
  for (size_t i = 0; i < nseen; i++) {
    if (i) sb_printf(&names, ",");
    sb_jstr(&names, seen[i]);
  }
  sb_printf(&names, "]");
  sb_printf(&b, "],\"functions\":%s}", sb_done(&names));
  free(names.p);
  return sb_done(&b);
}

char *dt__dash_metrics(const sched *s, const dt_dash_extra *x) {
  sbuf b = {0};
  sb_printf(&b, "# HELP dtask_tasks Tasks the scheduler knows, by state.\n# TYPE dtask_tasks gauge\n");
  for (int st = 0; st < TS_COUNT; st++)
    if (st != TS_FORGOTTEN)
      sb_printf(&b, "dtask_tasks{state=\"%s\"} %lld\n", dt__task_state_name(st), (long long)s->count[st]);
  sb_printf(&b, "# HELP dtask_workers Workers connected.\n# TYPE dtask_workers gauge\ndtask_workers %zu\n",
            s->workers.len);
  sb_printf(&b, "# HELP dtask_clients Clients connected.\n# TYPE dtask_clients gauge\ndtask_clients %zu\n",
            s->clients.len);
  sb_printf(&b, "# HELP dtask_memory_bytes Bytes of results held by workers.\n"
                "# TYPE dtask_memory_bytes gauge\ndtask_memory_bytes %llu\n",
            (unsigned long long)bytes_in_memory(s));
  sb_printf(&b, "# HELP dtask_tasks_completed_total Tasks finished since the scheduler started.\n"
                "# TYPE dtask_tasks_completed_total counter\ndtask_tasks_completed_total %llu\n",
            (unsigned long long)s->tasks_completed);
  sb_printf(&b, "# HELP dtask_transfer_bytes_total Bytes the scheduler received and sent.\n"
                "# TYPE dtask_transfer_bytes_total counter\n"
                "dtask_transfer_bytes_total{direction=\"in\"} %llu\n"
                "dtask_transfer_bytes_total{direction=\"out\"} %llu\n",
            (unsigned long long)x->bytes_in, (unsigned long long)x->bytes_out);
  sb_printf(&b, "# HELP dtask_workers_lost_total Workers that left without saying goodbye.\n"
                "# TYPE dtask_workers_lost_total counter\ndtask_workers_lost_total %llu\n",
            (unsigned long long)x->workers_lost);
  sb_printf(&b, "# HELP dtask_journal_bytes The scheduler journal's size (0: no journal).\n"
                "# TYPE dtask_journal_bytes gauge\ndtask_journal_bytes %llu\n"
                "# HELP dtask_journal_compactions_total Journal compactions since the start.\n"
                "# TYPE dtask_journal_compactions_total counter\ndtask_journal_compactions_total %llu\n"
                "# HELP dtask_journal_replay_seconds How long replaying the journal took at the start.\n"
                "# TYPE dtask_journal_replay_seconds gauge\ndtask_journal_replay_seconds %.6f\n",
            (unsigned long long)x->journal_bytes, (unsigned long long)x->journal_compactions,
            x->journal_replay_s);
  sb_printf(&b, "# HELP dtask_event_loop_latency_seconds How late the scheduler's once-a-second "
                "timer last fired.\n# TYPE dtask_event_loop_latency_seconds gauge\n"
                "dtask_event_loop_latency_seconds %.6f\n",
            x->loop_lag_s);
  sb_printf(&b, "# HELP dtask_worker_memory_bytes Bytes of results each worker holds.\n"
                "# TYPE dtask_worker_memory_bytes gauge\n");
  for (size_t i = 0; i < s->workers.len && i < DT_DASH_WORKERS_MAX; i++) {
    const s_worker *w = s->workers.v[i];
    sb_printf(&b, "dtask_worker_memory_bytes{worker=\"");
    sb_lstr(&b, w->name);
    sb_printf(&b, "\"} %llu\n", (unsigned long long)w->nbytes);
  }
  return sb_done(&b);
}

/* ---------------------------------------------------------------- snapshots */

typedef struct snap {
  int refs;
  uint64_t gen;
  char *summary, *functions, *workers, *stream, *all, *metrics;
} snap;

static struct {
  struct MHD_Daemon *d;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  snap *cur;
  uint64_t gen;
  bool stopping;
} D = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void snap_unref(snap *s) { /* locked */
  if (!s || --s->refs > 0) return;
  free(s->summary);
  free(s->functions);
  free(s->workers);
  free(s->stream);
  free(s->all);
  free(s->metrics);
  free(s);
}

static snap *snap_get(void) {
  pthread_mutex_lock(&D.lock);
  snap *s = D.cur;
  if (s) s->refs++;
  pthread_mutex_unlock(&D.lock);
  return s;
}

static void snap_put(snap *s) {
  pthread_mutex_lock(&D.lock);
  snap_unref(s);
  pthread_mutex_unlock(&D.lock);
}

void dt__dashboard_publish(const sched *s, const dt_dash_extra *x) {
  if (!D.d) return;
  snap *n = dt__xcalloc(1, sizeof(*n));
  n->refs = 1;
  n->summary = dt__dash_summary_json(s, x);
  n->functions = dt__dash_functions_json(s);
  n->workers = dt__dash_workers_json(s, x);
  n->stream = dt__dash_stream_json(s, x);
  n->metrics = dt__dash_metrics(s, x);
  sbuf all = {0};
  sb_printf(&all, "{\"summary\":%s,\"functions\":%s,\"workers\":%s,\"stream\":%s}", n->summary,
            n->functions, n->workers, n->stream);
  n->all = sb_done(&all);
  pthread_mutex_lock(&D.lock);
  snap *old = D.cur;
  n->gen = ++D.gen;
  D.cur = n;
  snap_unref(old);
  pthread_cond_broadcast(&D.cond);
  pthread_mutex_unlock(&D.lock);
}

/* ---------------------------------------------------------------- HTTP */

/* server-sent events: one snapshot per message, as they come */
typedef struct {
  uint64_t gen;
  char *msg;
  size_t len, off;
} sse;

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  sse *e = cls;
  if (e->off == e->len) { /* wait for the next snapshot (bounded: stop or 5 s) */
    free(e->msg);
    e->msg = NULL;
    pthread_mutex_lock(&D.lock);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    while (!D.stopping && D.gen == e->gen)
      if (pthread_cond_timedwait(&D.cond, &D.lock, &dl) != 0) break;
    snap *s = D.cur;
    bool stop = D.stopping;
    if (s) s->refs++;
    pthread_mutex_unlock(&D.lock);
    if (stop) {
      snap_put(s);
      return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (!s || s->gen == e->gen) { /* nothing new: a comment keeps the line alive */
      snap_put(s);
      e->msg = dt__xstrdup(": idle\n\n");
    } else {
      sbuf m = {0};
      sb_printf(&m, "data: %s\n\n", s->all);
      e->msg = sb_done(&m);
      e->gen = s->gen;
      snap_put(s);
    }
    e->len = strlen(e->msg);
    e->off = 0;
  }
  size_t n = e->len - e->off < max ? e->len - e->off : max;
  memcpy(buf, e->msg + e->off, n);
  e->off += n;
  return (ssize_t)n;
}

static void sse_free(void *cls) {
  sse *e = cls;
  free(e->msg);
  free(e);
}

/* the token asked for when the scheduler has a shared secret ("" if not) */
static char token[65];

void dt__dashboard_set_token(const char *t) { snprintf(token, sizeof(token), "%s", t ? t : ""); }

static bool token_is(const char *t) {
  size_t n = strlen(token);
  if (!t || strlen(t) != n) return false;
  unsigned char d = 0;
  for (size_t i = 0; i < n; i++) d |= (unsigned char)(t[i] ^ token[i]);
  return d == 0;
}

/* authorized: no secret, or the request carries the token */
static bool authorized(struct MHD_Connection *c) {
  if (!token[0]) return true;
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (h && strncmp(h, "Bearer ", 7) == 0 && token_is(h + 7)) return true;
  if (token_is(MHD_lookup_connection_value(c, MHD_COOKIE_KIND, "dtask_token"))) return true;
  return token_is(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token"));
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
                             const char *body, size_t len, bool copy) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      len, (void *)body, copy ? MHD_RESPMEM_MUST_COPY : MHD_RESPMEM_PERSISTENT);
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  if (token[0] && token_is(MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token"))) {
    char cookie[128]; /* the page's own requests carry it from now on */
    snprintf(cookie, sizeof(cookie), "dtask_token=%s; Path=/; HttpOnly; SameSite=Strict", token);
    MHD_add_response_header(r, "Set-Cookie", cookie);
  }
  enum MHD_Result ret = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  (void)cls, (void)version, (void)upload, (void)upload_size, (void)con_cls;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply(c, 405, "text/plain", "only GET\n", 9, false);
  if (strcmp(url, "/health") == 0) return reply(c, 200, "text/plain", "ok\n", 3, false);
  if (!authorized(c)) {
    static const char msg[] =
        "this dashboard needs its token (the scheduler has a shared secret): open /?token=TOKEN "
        "once, or send 'Authorization: Bearer TOKEN'; 'dtask scheduler --auth-file FILE "
        "--print-dashboard-token' prints it\n";
    return reply(c, 401, "text/plain", msg, sizeof(msg) - 1, false);
  }
  if (strcmp(url, "/") == 0 || strcmp(url, "/status") == 0 || strcmp(url, "/index.html") == 0)
    return reply(c, 200, "text/html; charset=utf-8", (const char *)dashboard_html,
                 sizeof(dashboard_html) - 1, false);
  if (strcmp(url, "/api/v1/events") == 0) {
    sse *e = dt__xcalloc(1, sizeof(*e));
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, sse_read, e, sse_free);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
  }
  snap *s = snap_get();
  if (!s) return reply(c, 503, "text/plain", "starting\n", 9, false);
  const char *body = NULL, *type = "application/json";
  if (strcmp(url, "/metrics") == 0) {
    body = s->metrics;
    type = "text/plain; version=0.0.4; charset=utf-8";
  } else if (strcmp(url, "/api/v1/summary") == 0) body = s->summary;
  else if (strcmp(url, "/api/v1/functions") == 0) body = s->functions;
  else if (strcmp(url, "/api/v1/workers") == 0) body = s->workers;
  else if (strcmp(url, "/api/v1/stream") == 0) body = s->stream;
  else if (strcmp(url, "/api/v1/all") == 0) body = s->all;
  enum MHD_Result ret = body ? reply(c, 200, type, body, strlen(body), true)
                             : reply(c, 404, "text/plain", "not found\n", 10, false);
  snap_put(s);
  return ret;
}

int dt__dashboard_start(const char *host, int port, bool fallback, char *url, size_t cap) {
  /* the host is resolved as the scheduler's is (IPv4, IPv6 or a name); what
   * was really bound is read back from the socket and shown */
  struct sockaddr_storage ss;
  const char *h = host && *host ? host : "127.0.0.1";
  if (dt__resolve(h, 0, &ss) != 0)
    return dt__err(DT_EINVAL, "dashboard: cannot resolve host '%s'", h);
  bool v6 = ss.ss_family == AF_INET6;
  for (int attempt = 0; attempt < 2 && !D.d; attempt++) {
    int p = attempt == 0 ? port : 0;
    if (v6) ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)p);
    else ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)p);
    D.d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                               (v6 ? MHD_USE_IPv6 : 0),
                           (uint16_t)p, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &ss,
                           MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!D.d && (!fallback || p == 0))
      return dt__err(DT_EIO, "dashboard: cannot listen on %s:%d", h, p);
    if (!D.d) DT_INFO("dashboard: port %d is taken; using another", port);
  }
  const union MHD_DaemonInfo *i = MHD_get_daemon_info(D.d, MHD_DAEMON_INFO_LISTEN_FD);
  struct sockaddr_storage b;
  socklen_t blen = sizeof(b);
  char ip[64] = "?";
  int bound = port;
  if (i && getsockname(i->listen_fd, (struct sockaddr *)&b, &blen) == 0) {
    if (b.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&b)->sin6_addr, ip, sizeof(ip));
      bound = ntohs(((struct sockaddr_in6 *)&b)->sin6_port);
    } else {
      inet_ntop(AF_INET, &((struct sockaddr_in *)&b)->sin_addr, ip, sizeof(ip));
      bound = ntohs(((struct sockaddr_in *)&b)->sin_port);
    }
  }
  DT_INFO("dashboard listening on %s%s%s:%d%s", b.ss_family == AF_INET6 ? "[" : "", ip,
          b.ss_family == AF_INET6 ? "]" : "", bound,
          strcmp(ip, "0.0.0.0") == 0 || strcmp(ip, "::") == 0 ? " (every interface)" : "");
  /* the URL to show: the address bound, or loopback for a wildcard */
  const char *shown = strcmp(ip, "0.0.0.0") == 0 ? "127.0.0.1" : strcmp(ip, "::") == 0 ? "::1" : ip;
  if (strchr(shown, ':')) snprintf(url, cap, "http://[%s]:%d/", shown, bound);
  else snprintf(url, cap, "http://%s:%d/", shown, bound);
  return 0;
}

void dt__dashboard_stop(void) {
  if (!D.d) return;
  pthread_mutex_lock(&D.lock);
  D.stopping = true;
  pthread_cond_broadcast(&D.cond);
  pthread_mutex_unlock(&D.lock);
  MHD_stop_daemon(D.d);
  D.d = NULL;
  pthread_mutex_lock(&D.lock);
  snap_unref(D.cur);
  D.cur = NULL;
  pthread_mutex_unlock(&D.lock);
}
