/*
 * server.c -- the scheduler daemon: options, one libuv loop, the listener,
 * the timers (heartbeats and worker ttl, memory trim, dashboard snapshots),
 * signals, and main; and dt__sched_fuzz, which drives the same handlers
 * without a loop.  The handlers are in dispatch.c and handle_*.c (see
 * server.h); the state machine, which they drive, in state.h's files.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord.h"
#include "dashboard.h"
#include "scheduler.h"
#include "query.h"
#include "server.h"

dt_srv dt__srv;
static dt_srv *const srv = &dt__srv;

/* ---------------------------------------------------------------- timers */

/* on_hb: heartbeats to workers; workers silent for worker_ttl are removed */
static void on_hb(uv_timer_t *h) {
  (void)h;
  double now = (double)uv_now(&srv->loop) / 1e3;
  for (size_t i = srv->s.workers.len; i-- > 0;) {
    s_worker *w = srv->s.workers.v[i];
    if (now - w->last_seen > srv->worker_ttl_s) {
      DT_WARN("worker %s (%s) silent for %.1f s (worker-ttl %.1f s): removing it", w->name,
              w->address, now - w->last_seen, srv->worker_ttl_s);
      dt__srv_drop_worker(w, true);
      continue;
    }
    dt_enc e; /* may pass the events of dropped workers: PING keeps no order */
    dt__e_begin(&e, dt__conn_out(w->conn), DT_OP_PING);
    dt__e_uint(&e, uv_now(&srv->loop) - srv->start_ms);
    dt__e_end(&e);
  }
  dt__query_tick(); /* questions to workers that waited too long */
  dt__srv_emit(); /* what dropping workers caused */
}

/* ---------------------------------------------------------------- daemon */

static void on_accept(dt_listener *l, dt_conn *c) {
  (void)l;
  DT_DEBUG("connection from %s", c->peer);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) {
    if (h->type == UV_TCP && h->data && h != (uv_handle_t *)&srv->listener.tcp) {
      dt__conn_close(h->data, false);
    } else {
      uv_close(h, NULL);
    }
  }
}

static void stop(void) {
  if (srv->stopping) return;
  srv->stopping = true;
  dt__journal_stop(); /* what leaves now stays in the journal: a restart resumes */
  DT_INFO("scheduler at %s stopping", srv->address);
  /* tell everyone, then close */
  for (size_t i = 0; i < srv->s.workers.len; i++) {
    s_worker *w = srv->s.workers.v[i];
    dt__srv_send_close(w->conn, "scheduler closing");
  }
  dt__net_flush(&srv->net);
  uv_walk(&srv->loop, close_walk, NULL);
}

/* on_trim: once a second, give memory back to the system when the graph has
 * shrunk to under half of its high-water mark (glibc keeps freed chunks) */
static void on_trim(uv_timer_t *h) {
  (void)h;
  size_t n = srv->s.tasks.len;
  if (srv->trim_high >= 4096 && n < srv->trim_high / 2) {
    dt__tmap_shrink(&srv->s.tasks);
    for (size_t i = 0; i < srv->s.clients.len; i++) /* what they want went too */
      dt__tmap_shrink(&((s_client *)srv->s.clients.v[i])->wants);
    malloc_trim(0);
    srv->trim_high = n;
  }
}

/* on_dash: once a second, a snapshot for the dashboard's HTTP threads */
static void on_dash(uv_timer_t *h) {
  (void)h;
  uint64_t now = uv_now(&srv->loop);
  dt_dash_extra x = {0};
  x.now_s = (double)now / 1e3;
  double dt = srv->dash_last_ms ? (double)(now - srv->dash_last_ms) / 1e3 : 1;
  x.tasks_per_s = dt > 0 ? (double)(srv->s.tasks_completed - srv->dash_completed) / dt : 0;
  x.loop_lag_s = srv->dash_last_ms && now > srv->dash_last_ms + 1000 ? (double)(now - srv->dash_last_ms - 1000) / 1e3 : 0;
  x.bytes_in = srv->net.bytes_in;
  x.bytes_out = srv->net.bytes_out;
  x.workers_lost = srv->s.workers_lost;
  dt_journal_stats js;
  dt__journal_stats(&js);
  x.journal_on = dt__journal_on;
  x.journal_bytes = js.file_bytes;
  x.journal_compactions = js.compactions;
  x.journal_replay_s = js.replay_s;
  srv->dash_completed = srv->s.tasks_completed;
  srv->dash_last_ms = now;
  dt__dashboard_publish(&srv->s, &x);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
  stop();
}

static void usage(void) {
  fprintf(stderr,
          "usage: dtask scheduler [--host HOST] [--port PORT] [--scheduler-file FILE]\n"
          "                       [--allowed-failures N] [--worker-ttl DURATION]\n"
          "                       [--auth-file FILE] [--log-level LEVEL]\n"
          "  --host HOST            address to listen on (default 127.0.0.1)\n"
          "  --port PORT            port (default 8786; 0 = any free port)\n"
          "  --scheduler-file FILE  write the address to FILE as JSON, for clients and\n"
          "                         workers on shared file systems\n"
          "  --allowed-failures N   worker deaths a task may cause before it fails with\n"
          "                         DT_EKILLED (default 3)\n"
          "  --worker-ttl DURATION  remove a worker silent this long (default 60s)\n"
          "  --heartbeat DURATION   heartbeat interval, both ways (default 1s)\n"
          "  --dashboard-address A  the dashboard's [host]:port (default :8787; another\n"
          "                         port if that one is taken)\n"
          "                         (default host: the scheduler's --host)\n"
          "  --no-dashboard         no dashboard, no /metrics\n"
          "  --print-dashboard-token  print the token the dashboard asks for (with\n"
          "                         --auth-file; docs/dashboard.md) and exit\n"
          "  --max-client-batch SZ  largest batch a client may send (default 1GiB)\n"
          "  --max-in-flight SZ     bytes of incomplete batches from all peers together\n"
          "                         (default 1GiB)\n"
          "  --max-strangers N[,P]  connections that have not said hello, in total and\n"
          "                         from one address (more while they are young)\n"
          "                         (default 4096 or half the descriptor limit,128)\n"
          "  --log-level LEVEL      debug, info, warning, error (default info)\n"
          "  --journal FILE         keep a journal: a scheduler restarted with it carries on\n"
          "                         (docs/reliability.md); --journal-max-size SZ (64MiB),\n"
          "                         --journal-grace DUR (5s), --cluster-id ID,\n"
          "                         --journal-client-grace DUR (120s: clients of before awaited)\n"
          "  --restart-on-crash     a supervisor restarts the scheduler when it dies by a signal\n"
          DT_SEC_USAGE);
}

int dt__scheduler_main(int argc, char **argv) {
  const char *host = "127.0.0.1", *file = NULL, *level = getenv("DTASK_LOG_LEVEL");
  int port = 8786, ready_fd = -1, allowed_failures = 3;
  double ttl = 60, hb = 1;
  dt_sec_args sa = {0};
  dt__journal_opts jo = {0};
  const char *dash = ":8787";
  bool dash_default = true, print_token = false;
  dt_net_limits lim = {DT_NET_IN_FLIGHT_MAX, DT_NET_CLIENT_MAX_BATCH, DT_NET_STRANGERS_MAX,
                       DT_NET_STRANGERS_PER_IP, DT_NET_HELLO_MS};
  if (!level) level = "info";
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int took = dt__sec_cli(&sa, argc, argv, &i);
    if (took < 0) {
      fprintf(stderr, "dtask scheduler: %s\n", dt_last_error());
      return 2;
    }
    if (took) continue;
    if ((took = dt__journal_cli(&jo, argc, argv, &i)) < 0) return 2;
    if (took) continue;
    if (strcmp(a, "--host") == 0 && v) host = argv[++i];
    else if (strcmp(a, "--port") == 0 && v) port = atoi(argv[++i]);
    else if (strcmp(a, "--scheduler-file") == 0 && v) file = argv[++i];
    else if (strcmp(a, "--log-level") == 0 && v) level = argv[++i];
    else if (strcmp(a, "--ready-fd") == 0 && v) ready_fd = atoi(argv[++i]);
    else if (strcmp(a, "--dashboard-address") == 0 && v) {
      dash = argv[++i];
      dash_default = false;
    } else if (strcmp(a, "--no-dashboard") == 0) dash = NULL;
    else if (strcmp(a, "--print-dashboard-token") == 0) print_token = true;
    else if ((strcmp(a, "--max-client-batch") == 0 || strcmp(a, "--max-in-flight") == 0) && v) {
      uint64_t sz = 0;
      if (dt__parse_memory(argv[++i], 1, &sz) != 0 || sz < 4096) {
        fprintf(stderr, "dtask scheduler: %s: invalid size '%s' (e.g. 256MiB)\n", a, argv[i]);
        return 2;
      }
      if (a[6] == 'c') lim.client_max_batch = sz;
      else lim.in_flight_max = sz;
    } else if (strcmp(a, "--max-strangers") == 0 && v) {
      unsigned t = 0, p = 0;
      int k = sscanf(argv[++i], "%u,%u", &t, &p);
      if (k < 1 || t < 1 || (k == 2 && p < 1)) {
        fprintf(stderr, "dtask scheduler: --max-strangers: expected N or N,P, not '%s'\n", argv[i]);
        return 2;
      }
      lim.strangers_max = t;
      if (k == 2) lim.strangers_per_ip = p;
    }
    else if (strcmp(a, "--allowed-failures") == 0 && v) {
      char *end;
      long n = strtol(argv[++i], &end, 10);
      if (*end || n < 0 || n > 250) {
        fprintf(stderr, "dtask scheduler: --allowed-failures must be 0..250, not '%s'\n", argv[i]);
        return 2;
      }
      allowed_failures = (int)n;
    } else if ((strcmp(a, "--worker-ttl") == 0 || strcmp(a, "--heartbeat") == 0) && v) {
      double d;
      if (dt__parse_duration(argv[++i], &d) != 0 || d < 0.01) {
        fprintf(stderr, "dtask scheduler: %s: invalid duration '%s' (e.g. 30s, 500ms)\n", a,
                argv[i]);
        return 2;
      }
      if (a[2] == 'w') ttl = d;
      else hb = d;
    }
    else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(); return 0; }
    else {
      fprintf(stderr, "dtask scheduler: unknown or incomplete option '%s'\n", a);
      usage();
      return 2;
    }
  }
  if (port < 0 || port > 65535) {
    fprintf(stderr, "dtask scheduler: invalid port %d\n", port);
    return 2;
  }
  if (jo.restart && port == 0) {
    fprintf(stderr, "dtask scheduler: --restart-on-crash needs a fixed --port (a restart must listen where the first did)\n");
    return 2;
  }
  if (jo.restart) {
    int rc = dt__journal_supervise(&ready_fd);
    if (rc >= 0) return rc;
  }
  dt__log_init("scheduler", level);
  signal(SIGPIPE, SIG_IGN);
  memset(srv, 0, sizeof(*srv));
  uv_loop_init(&srv->loop);
  srv->start_ms = uv_now(&srv->loop);
  dt__net_init(&srv->net, &srv->loop);
  srv->net.lim = lim;
  if (dt__sec_from_args(&srv->sec, &sa) != 0) {
    fprintf(stderr, "dtask scheduler: %s\n", dt_last_error());
    return 2;
  }
  srv->net.sec = &srv->sec;
  if (print_token) {
    if (!srv->sec.auth) {
      fprintf(stderr, "dtask scheduler: --print-dashboard-token needs --auth-file (with no "
                      "secret the dashboard asks for no token)\n");
      return 2;
    }
    char tok[65];
    dt__sec_dashboard_token(&srv->sec, tok);
    printf("%s\n", tok);
    return 0;
  }
  uint64_t nofile = dt__net_raise_nofile();
  if (nofile && srv->net.lim.strangers_max > nofile / 2) {
    srv->net.lim.strangers_max = (uint32_t)(nofile / 2);
    DT_INFO("at most %u connections that have not said hello at once (half the descriptor limit)",
            srv->net.lim.strangers_max);
  }
  if (srv->sec.auth) {
    char tok[65];
    dt__sec_dashboard_token(&srv->sec, tok);
    dt__dashboard_set_token(tok); /* the dashboard asks for it */
  }
  if (srv->sec.auth) DT_INFO("connections must prove they know the shared secret");
  if (srv->sec.tls_server) DT_INFO("connections use TLS");
  dt__sched_init(&srv->s);
  srv->s.allowed_failures = allowed_failures;
  srv->worker_ttl_s = ttl;
  srv->heartbeat_ms = (int)(hb * 1000);
  if (srv->heartbeat_ms < 10) srv->heartbeat_ms = 10;
  if (dt__listener_start(&srv->listener, &srv->net, host, port, &dt__srv_conn_cbs, on_accept, NULL) != 0) {
    fprintf(stderr, "dtask scheduler: %s\n", dt_last_error());
    return 1;
  }
  if (strchr(host, ':')) snprintf(srv->address, sizeof(srv->address), "[%s]:%d", host, srv->listener.port);
  else snprintf(srv->address, sizeof(srv->address), "%s:%d", host, srv->listener.port);
  DT_INFO("scheduler at tcp://%s", srv->address);
  if (jo.path && dt__journal_open_srv(&jo, srv->address) != 0) return 1;
  if (dash) {
    char dhost[64] = "";
    int dport = 8787;
    const char *colon = strrchr(dash, ':');
    if (colon) {
      snprintf(dhost, sizeof(dhost), "%.*s", (int)(colon - dash), dash);
      dport = atoi(colon + 1);
    } else {
      dport = atoi(dash);
    }
    /* the dashboard listens where the scheduler does, unless told otherwise */
    if (!dhost[0]) snprintf(dhost, sizeof(dhost), "%s", host);
    if (dport < 0 || dport > 65535 ||
        dt__dashboard_start(dhost, dport, dash_default || dport == 8787, srv->dashboard_url,
                            sizeof(srv->dashboard_url)) != 0) {
      fprintf(stderr, "dtask scheduler: %s\n", dt_last_error());
      return 1;
    }
    DT_INFO("dashboard at %s%s", srv->dashboard_url,
            srv->sec.auth ? " (asks for its token: --print-dashboard-token)" : "");
  }
  if (file) {
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", file, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "{\"type\": \"Scheduler\", \"address\": \"%s://%s\", \"pid\": %d, "
                         "\"dashboard\": \"%s\"}\n",
                      srv->sec.tls_server ? "tls" : "tcp", srv->address, (int)getpid(),
                      srv->dashboard_url) < 0 || fclose(f) != 0 || rename(tmp, file) != 0) {
      fprintf(stderr, "dtask scheduler: cannot write scheduler file %s: %s\n", file,
              strerror(errno));
      return 1;
    }
    srv->scheduler_file = dt__xstrdup(file);
  }
  if (ready_fd >= 0) {
    char line[400];
    /* the parent (LocalCluster, a job queue cluster) gets the dashboard's
     * URL with its token, as Jupyter shows one; the scheduler file and the
     * log do not carry it */
    char tok[65] = "";
    if (srv->sec.auth && srv->dashboard_url[0]) dt__sec_dashboard_token(&srv->sec, tok);
    int n = snprintf(line, sizeof(line), "%s %s%s%s\n", srv->address,
                     srv->dashboard_url[0] ? srv->dashboard_url : "-", tok[0] ? "?token=" : "", tok);
    if (write(ready_fd, line, (size_t)n) != n) DT_WARN("could not report readiness");
    close(ready_fd);
  }
  uv_timer_init(&srv->loop, &srv->trim);
  uv_timer_start(&srv->trim, on_trim, 1000, 1000);
  uv_unref((uv_handle_t *)&srv->trim);
  if (srv->dashboard_url[0]) {
    uv_timer_init(&srv->loop, &srv->dash);
    uv_timer_start(&srv->dash, on_dash, 0, 1000);
    uv_unref((uv_handle_t *)&srv->dash);
  }
  uv_timer_init(&srv->loop, &srv->hb);
  uv_timer_start(&srv->hb, on_hb, (uint64_t)srv->heartbeat_ms, (uint64_t)srv->heartbeat_ms);
  uv_unref((uv_handle_t *)&srv->hb);
  uv_signal_init(&srv->loop, &srv->sigint);
  uv_signal_init(&srv->loop, &srv->sigterm);
  uv_signal_start(&srv->sigint, on_signal, SIGINT);
  uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  dt__dashboard_stop();
  if (srv->scheduler_file) unlink(srv->scheduler_file);
  free(srv->scheduler_file);
  dt__srv_scatters_free_all();
  dt__coord_free_all();
  dt__query_free_all();
  dt__srv_plugins_free();
  dt__sched_destroy(&srv->s);
  uv_loop_close(&srv->loop);
  dt__tls_free(&srv->sec);
  return 0;
}

/* ---------------------------------------------------------------- fuzzing */

/* dt__sched_fuzz: one fuzz input through the scheduler's message handlers,
 * as its event loop would run them (fuzz/fuzz_scheduler.c).  The input is a
 * sequence of [selector byte, msgpack message]: the selector picks the
 * sender (a stranger, a client that said hello, a worker that said hello).
 * Afterwards the state machine's invariants must hold, and every peer
 * leaves (which exercises client and worker removal). */
int dt__sched_fuzz(const uint8_t *data, size_t size) {
  static bool ready;
  if (!ready) {
    uv_loop_init(&srv->loop);
    dt__log_init("fuzz", getenv("DTASK_FUZZ_LOG") ? getenv("DTASK_FUZZ_LOG") : "off");
    ready = true;
  }
  dt__sched_init(&srv->s);
  srv->worker_ttl_s = 60;
  srv->heartbeat_ms = 1000;
  dt_conn *peers[3];
  for (int i = 0; i < 3; i++) peers[i] = dt__conn_new_detached();
  /* the client and the worker introduce themselves properly */
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_HELLO_CLIENT);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, "fuzz-client");
  dt__e_end(&e);
  dt__e_begin(&e, &w, DT_OP_HELLO_WORKER);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, "fuzz-worker");
  dt__e_cstr(&e, "127.0.0.1:1");
  dt__e_uint(&e, 2);
  dt__e_map(&e, 1);
  dt__e_cstr(&e, "GPU");
  dt__e_double(&e, 1);
  dt__e_uint(&e, 4242);
  dt__e_uint(&e, 7);
  dt__e_list(&e, 0);
  dt__e_uint(&e, 1 << 30);
  dt__e_end(&e);
  const char *hp = w.buf, *hend = w.buf + w.len;
  for (int i = 1; i <= 2; i++) {
    const char *q = hp;
    if (dt__mp_validate(&q, hend, DT_MAX_DEPTH) != 0) abort();
    dt_rd r = {hp, q, NULL, 0};
    uint32_t n;
    uint64_t op;
    if (dt__rd_array(&r, &n) || dt__rd_uint(&r, &op) || dt__srv_on_msg(peers[i], (int)op, n - 1, &r) != 0) abort();
    hp = q;
  }
  dt__wbuf_clear(&w);
  const char *p = (const char *)data, *end = p + size;
  while (end - p > 1) {
    dt_conn *c = peers[(uint8_t)*p++ % 3];
    if (!c) break;
    const char *q = p;
    if (dt__mp_validate(&q, end, DT_MAX_DEPTH) != 0) break;
    dt_rd r = {p, q, NULL, 0};
    uint32_t n;
    uint64_t op;
    if (dt__rd_array(&r, &n) || n < 1 || dt__rd_uint(&r, &op) || op == 0 || op >= DT_OP_COUNT) break;
    if (dt__srv_on_msg(c, (int)op, n - 1, &r) != 0) break; /* the connection would be closed */
    p = q;
  }
  char why[512];
  if (dt__sched_check(&srv->s, why, sizeof(why)) != 0) {
    fprintf(stderr, "scheduler invariants broken: %s\n", why);
    abort();
  }
  for (int i = 2; i >= 0; i--) {
    dt__srv_on_conn_close(peers[i]);
    dt__conn_free_detached(peers[i]);
  }
  if (dt__coord_client_state() != 0) { /* locks, leases, waiters: their clients left */
    fprintf(stderr, "scheduler holds %zu coordination locks, leases or waiters after every peer left\n",
            dt__coord_client_state());
    abort();
  }
  dt__coord_free_all(); /* variables, queues, events, datasets outlive clients */
  dt__srv_emit();
  if (srv->s.tasks.len != 0) { /* everyone left: nothing may be held */
    fprintf(stderr, "scheduler holds %zu tasks after every peer left\n", srv->s.tasks.len);
    for (size_t i = 0; i < srv->s.tasks.cap; i++)
      if (srv->s.tasks.slots[i].t) {
        s_task *t = srv->s.tasks.slots[i].t;
        fprintf(stderr, "  %s: %s, wanted by %u, waiters %u, dependents %zu, holds_deps %d\n",
                t->key, dt__task_state_name(t->state), t->wanted_by.len, t->waiters,
                (size_t)t->dependents.len, t->holds_deps);
      }
    abort();
  }
  dt__srv_scatters_free_all();
  dt__query_free_all();
  dt__srv_plugins_free();
  dt__sched_destroy(&srv->s);
  return 0;
}

