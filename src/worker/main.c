/*
 * main.c -- `dtask worker`: reads the options, then runs the worker under
 * a nanny (nanny.c: a supervisor that restarts it when it dies) or alone.
 * The worker proper (worker_run) starts its parts -- the store, the task
 * bookkeeping, the pool, the scheduler link (which starts serving peers
 * once connected) -- runs the event loop until it is stopped, and frees
 * what is left.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/parse.h"
#include "worker.h"
#include "worker_int.h"

w_worker dt__worker;
#define W dt__worker

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h)) return;
  if (h->type == UV_TCP && h->data && !dt__serve_is_listener(h)) dt__conn_close(h->data, false);
  else uv_close(h, NULL);
}

/* the in-process worker (dt__worker_inproc): 0 none, 1 starting, 2 running
 * (stop_async live), 3 stop asked while starting, 4 stopping */
static pthread_mutex_t inproc_lock = PTHREAD_MUTEX_INITIALIZER;
static int inproc_state;

void dt__worker_stop(int code) {
  if (W.stopping) return;
  W.stopping = true;
  if (W.inproc) {
    pthread_mutex_lock(&inproc_lock);
    inproc_state = 4; /* stop_async is about to close: no more sends */
    pthread_mutex_unlock(&inproc_lock);
  }
  W.exit_code = code;
  dt__link_close(); /* leaving on purpose: nothing to suspect */
  uv_walk(&W.loop, close_walk, NULL);
}

static void on_stop_async(uv_async_t *h) {
  (void)h;
  DT_INFO("stopping, as this process asked");
  dt__worker_stop(0);
}

bool dt__worker_inproc_stop(void) {
  pthread_mutex_lock(&inproc_lock);
  int st = inproc_state;
  if (st == 1) inproc_state = 3;
  else if (st == 2) uv_async_send(&W.stop_async);
  pthread_mutex_unlock(&inproc_lock);
  return st != 0;
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  DT_INFO("signal %d: stopping", signum);
  dt__worker_stop(0);
}

/* the store paused or resumed: tell the scheduler now */
static void on_pause(bool paused) {
  dt__link_heartbeat_now();
  if (!paused) dt__exec_start();
}

static void usage(void) {
  fprintf(stderr,
          "usage: dtask worker SCHEDULER_ADDRESS [--nthreads N] [--name NAME]\n"
          "                    [--preload LIB.so]... [--resources NAME=N,...]\n"
          "                    [--listen-host HOST] [--worker-port PORT] [--log-level LEVEL]\n"
          "                    [--no-nanny] [--death-timeout DURATION] [--auth-file FILE]\n"
          "  SCHEDULER_ADDRESS  host:port, or --scheduler-file FILE\n"
          "  --no-nanny         run without the nanny that restarts a worker that dies\n"
          "  --no-shm           results go to workers on this host over TCP, as between\n"
          "                     hosts, not through shared memory (also $DTASK_NO_SHM=1)\n"
          "  --local-directory D  scratch folder (made if missing; the worker runs there)\n"
          "  --memory-limit M   e.g. 4GiB, 0 for none (default auto: the machine's memory\n"
          "                     times nthreads / CPUs); --memory-target, -spill, -pause,\n"
          "                     -terminate: fractions of it (0.6, 0.7, 0.8, 0.95)\n"
          "  --death-timeout D  exit after D without a scheduler (default: keep trying)\n"
          "  --lifetime D       retire after D (e.g. 55m, 1h, 01:55:00): take no new task,\n"
          "                     finish the running ones, have the scheduler copy the results\n"
          "                     only this worker holds to others, then exit 0 (Dask's option)\n"
          "  --lifetime-stagger S  D +- up to S, at random per worker (default 0)\n"
          "  --lifetime-restart after retiring, the nanny starts a fresh worker (same name,\n"
          "                     a new lifetime) instead of exiting\n"
          "  --drain-file F     drain once F exists, then write \"idle\" into it (lifetime.c)\n"
          "  --fetch-timeout D  give up a peer silent for D while fetching from it (default 60s;\n"
          "                     also $DTASK_FETCH_TIMEOUT)\n"
          DT_SEC_USAGE);
}

int dt__read_scheduler_file(const char *path, char *out, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f) return dt__err(DT_ENOTFOUND, "cannot read scheduler file '%s'", path);
  char buf[4096];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *a = strstr(buf, "\"address\"");
  char *q1 = a ? strchr(a + 9, '"') : NULL;
  char *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
  if (!q2 || (size_t)(q2 - q1 - 1) >= cap)
    return dt__err(DT_EINVAL, "scheduler file '%s' has no \"address\"", path);
  memcpy(out, q1 + 1, (size_t)(q2 - q1 - 1));
  out[q2 - q1 - 1] = '\0';
  return 0;
}

/* parse_fraction: --memory-target and friends: (0, 1], or 0/false/off */
static int parse_fraction(const char *opt, const char *fv, double *out) {
  char *end = NULL;
  bool off = strcmp(fv, "false") == 0 || strcmp(fv, "off") == 0;
  double f = off ? 0 : strtod(fv, &end);
  if ((f != 0 && (*end || f < 0 || f > 1)) || (f == 0 && !off && strcmp(fv, "0") != 0)) {
    fprintf(stderr, "dtask worker: %s takes a fraction of the limit in (0, 1], or 0/false "
                    "for none, not '%s'\n", opt, fv);
    return 2;
  }
  *out = f;
  return 0;
}

static dt__lifetime_opts lifetime; /* --lifetime..., --drain-file (lifetime.c) */

/* parse_lifetime: a duration (30s, 55m, 1h30m, 2 hours, 01:55:00...) */
static int parse_lifetime(const char *opt, const char *v, double *out) {
  if (dt__duration_parse(v, out) == 0) return 0;
  fprintf(stderr, "dtask worker: %s: %s\n", opt, dt_last_error());
  return 2;
}

/* worker_run: the worker proper (in the nanny's child, or alone) */
static int worker_run(uint64_t token, char *slots, void *arg) {
  const char *level = arg;
  dt__link.nanny_token = token;
  /* without a boot id, peers on this host are peers on other hosts: TCP */
  FILE *bf = W.no_shm ? NULL : fopen("/proc/sys/kernel/random/boot_id", "r");
  if (W.no_shm && !W.inproc) dt__blob_anonymous = true; /* nothing of ours is mapped by peers */
  if (bf) {
    if (!fgets(W.boot_id, sizeof(W.boot_id), bf)) W.boot_id[0] = '\0';
    W.boot_id[strcspn(W.boot_id, "\n")] = '\0';
    fclose(bf);
  }
  if (!W.inproc) dt__log_init("worker", level); /* in-process: the process's own */
  uv_loop_init(&W.loop);
  dt__net_init(&W.net, &W.loop);
  uint64_t nofile = dt__net_raise_nofile();
  if (nofile && W.net.lim.strangers_max > nofile / 2) W.net.lim.strangers_max = (uint32_t)(nofile / 2);
  W.net.sec = &W.sec;
  dt__exec_init();
  dt__store_init(&W.loop, on_pause);
  if (W.inproc) {
    uv_async_init(&W.loop, &W.stop_async, on_stop_async);
    pthread_mutex_lock(&inproc_lock);
    if (inproc_state == 3) uv_async_send(&W.stop_async); /* asked already */
    inproc_state = 2;
    pthread_mutex_unlock(&inproc_lock);
  } else {
    uv_signal_init(&W.loop, &W.sigint);
    uv_signal_init(&W.loop, &W.sigterm);
    uv_signal_start(&W.sigint, on_signal, SIGINT);
    uv_signal_start(&W.sigterm, on_signal, SIGTERM);
  }
  dt__secede_init();
  dt__pool_start(&W.loop, W.nthreads, slots, dt__exec_done);
  dt__link_start(&W.loop);
  if (!W.inproc) dt__lifetime_start(&W.loop, &lifetime);
  uv_run(&W.loop, UV_RUN_DEFAULT);
  if (dt__exec.executing > 0 && W.inproc) /* in-process: they finish first */
    DT_INFO("waiting for %d tasks still running", dt__exec.executing);
  else if (dt__exec.executing > 0) {
    /* tasks still running on pool threads: do not wait for them */
    DT_INFO("exiting with %d tasks still running", dt__exec.executing);
    dt__nanny_exit_intent(W.exit_code);
    fflush(NULL);
    _exit(W.exit_code);
  }
  dt__pool_stop();
  dt__actor_destroy();
  /* free what is left */
  dt__store_destroy();
  dt__exec_destroy();
  dt__fetch_destroy();
  dt__ahead_destroy();
  if (W.inproc) dt__sec_unregister(dt__link.sched_addr);
  free(dt__link.sched_addr);
  dt__tls_free(&W.sec);
  uv_loop_close(&W.loop);
  return W.exit_code;
}

static int worker_main(int argc, char **argv, bool inproc);

int dt__worker_main(int argc, char **argv) { return worker_main(argc, argv, false); }

int dt__worker_inproc(int argc, char **argv) {
  pthread_mutex_lock(&inproc_lock);
  int st = inproc_state;
  if (st == 0) inproc_state = 1;
  pthread_mutex_unlock(&inproc_lock);
  if (st != 0) {
    fprintf(stderr, "dtask worker: a worker runs in this process already (its state is "
                    "process-wide: one in-process worker at a time)\n");
    return 3;
  }
  int rc = worker_main(argc, argv, true);
  memset(&W, 0, sizeof(W));
  pthread_mutex_lock(&inproc_lock);
  inproc_state = 0;
  pthread_mutex_unlock(&inproc_lock);
  return rc;
}

static int worker_main(int argc, char **argv, bool inproc) {
  const char *addr = NULL, *level = getenv("DTASK_LOG_LEVEL"), *res = NULL, *file = NULL;
  int nthreads = 1;
  bool nanny = true;
  double death_timeout = 0;
  if (getenv("DTASK_FETCH_TIMEOUT") && dt__parse_duration(getenv("DTASK_FETCH_TIMEOUT"), &dt__fetch_timeout_s) != 0)
    dt__fetch_timeout_s = 60;
  const char *mem_limit = "auto";
  dt_sec_args sa = {0};
  w_store *st = &dt__store;
  memset(&W, 0, sizeof(W));
  memset(st, 0, sizeof(*st));
  memset(&dt__exec, 0, sizeof(dt__exec));
  memset(&dt__link, 0, sizeof(dt__link));
  W.inproc = inproc;
  memset(&lifetime, 0, sizeof(lifetime));
  const char *noshm = getenv("DTASK_NO_SHM");
  W.no_shm = noshm && *noshm && strcmp(noshm, "0") != 0;
  st->mem_target = 0.6, st->mem_spill = 0.7, st->mem_pause = 0.8, st->mem_terminate = 0.95;
  if (!level) level = "info";
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
    int took = dt__sec_cli(&sa, argc, argv, &i);
    if (took < 0) {
      fprintf(stderr, "dtask worker: %s\n", dt_last_error());
      return 2;
    }
    if (took) continue;
    if (strcmp(a, "--nthreads") == 0 && has) nthreads = atoi(argv[++i]);
    else if (strcmp(a, "--name") == 0 && has) snprintf(W.name, sizeof(W.name), "%s", argv[++i]);
    else if (strcmp(a, "--preload") == 0 && has) {
      if (dt__task_preload(argv[++i]) != 0) {
        fprintf(stderr, "dtask worker: %s\n", dt_last_error());
        return 1;
      }
    } else if (strcmp(a, "--resources") == 0 && has) res = argv[++i];
    else if (strcmp(a, "--log-level") == 0 && has) level = argv[++i];
    else if (strcmp(a, "--listen-host") == 0 && has) W.listen_host = argv[++i];
    else if (strcmp(a, "--drain-file") == 0 && has) lifetime.drain_file = argv[++i];
    else if (strcmp(a, "--lifetime") == 0 && has) {
      if (parse_lifetime(a, argv[++i], &lifetime.lifetime_s)) return 2;
    } else if (strcmp(a, "--lifetime-stagger") == 0 && has) {
      if (parse_lifetime(a, argv[++i], &lifetime.stagger_s)) return 2;
    } else if (strcmp(a, "--lifetime-restart") == 0) lifetime.restart = true;
    else if (strcmp(a, "--worker-port") == 0 && has) W.listen_port = atoi(argv[++i]);
    else if (strcmp(a, "--scheduler-file") == 0 && has) file = argv[++i];
    else if (strcmp(a, "--no-nanny") == 0) nanny = false;
    else if (strcmp(a, "--no-shm") == 0) W.no_shm = true;
    else if (strcmp(a, "--memory-limit") == 0 && has) mem_limit = argv[++i];
    else if (strcmp(a, "--memory-target") == 0 && has) {
      if (parse_fraction(a, argv[++i], &st->mem_target)) return 2;
    } else if (strcmp(a, "--memory-spill") == 0 && has) {
      if (parse_fraction(a, argv[++i], &st->mem_spill)) return 2;
    } else if (strcmp(a, "--memory-pause") == 0 && has) {
      if (parse_fraction(a, argv[++i], &st->mem_pause)) return 2;
    } else if (strcmp(a, "--memory-terminate") == 0 && has) {
      if (parse_fraction(a, argv[++i], &st->mem_terminate)) return 2;
    } else if (strcmp(a, "--local-directory") == 0 && has && inproc) {
      fprintf(stderr, "dtask worker: --local-directory is refused in-process (it would "
                      "change the whole process's working folder)\n");
      return 2;
    } else if (strcmp(a, "--local-directory") == 0 && has) {
      const char *d = argv[++i];
      if ((mkdir(d, 0700) != 0 && errno != EEXIST) || chdir(d) != 0) {
        fprintf(stderr, "dtask worker: --local-directory %s: %s\n", d, strerror(errno));
        return 2;
      }
    } else if (strcmp(a, "--nanny") == 0) nanny = true;
    else if (strcmp(a, "--fetch-timeout") == 0 && has) {
      if (dt__parse_duration(argv[++i], &dt__fetch_timeout_s) != 0) {
        fprintf(stderr, "dtask worker: --fetch-timeout: %s\n", dt_last_error());
        return 2;
      }
    } else if (strcmp(a, "--death-timeout") == 0 && has) {
      if (dt__parse_duration(argv[++i], &death_timeout) != 0) {
        fprintf(stderr, "dtask worker: --death-timeout: %s\n", dt_last_error());
        return 2;
      }
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage();
      return 0;
    } else if (a[0] != '-' && !addr) addr = a;
    else {
      fprintf(stderr, "dtask worker: unknown or incomplete option '%s'\n", a);
      usage();
      return 2;
    }
  }
  char fileaddr[256];
  if (!addr && file) {
    if (dt__read_scheduler_file(file, fileaddr, sizeof(fileaddr)) != 0) {
      fprintf(stderr, "dtask worker: %s\n", dt_last_error());
      return 1;
    }
    addr = fileaddr;
  }
  if (!addr) addr = getenv("DTASK_SCHEDULER_ADDRESS");
  if (!addr) {
    usage();
    return 2;
  }
  if (nthreads < 1 || nthreads > 4096) {
    fprintf(stderr, "dtask worker: --nthreads must be between 1 and 4096\n");
    return 2;
  }
  if (inproc && (lifetime.lifetime_s > 0 || lifetime.drain_file)) {
    fprintf(stderr, "dtask worker: --lifetime and --drain-file are refused in-process\n");
    return 2;
  }
  if (lifetime.restart && !nanny) {
    fprintf(stderr, "dtask worker: --lifetime-restart needs the nanny (it starts the fresh "
                    "worker): drop --no-nanny\n");
    return 2;
  }
  if (lifetime.restart && !(lifetime.lifetime_s > 0)) {
    fprintf(stderr, "dtask worker: --lifetime-restart without --lifetime\n");
    return 2;
  }
  if (dt__resources_parse(res, &dt__exec.res_names, &dt__exec.res_amounts, &dt__exec.nres) != 0) {
    fprintf(stderr, "dtask worker: %s\n", dt_last_error());
    return 2;
  }
  W.nthreads = nthreads;
  dt__link.sched_addr = dt__xstrdup(addr);
  dt__link.death_timeout_s = death_timeout;
  if (dt__parse_memory(mem_limit, nthreads, &st->mem_limit) != 0) {
    fprintf(stderr, "dtask worker: --memory-limit: %s\n", dt_last_error());
    return 2;
  }
  if (dt__sec_from_args(&W.sec, &sa) != 0) {
    fprintf(stderr, "dtask worker: %s\n", dt_last_error());
    return 2;
  }
  if (!inproc) signal(SIGPIPE, SIG_IGN); /* in-process: the process's choice (Python's: ignored) */
  if (nanny && !inproc) {
    dt__log_init("nanny", level);
    if (st->mem_limit && st->mem_terminate > 0)
      dt__nanny_memory((uint64_t)((double)st->mem_limit * st->mem_terminate));
    int rc = dt__nanny_run(dt__link.sched_addr, nthreads, &W.sec, worker_run, (void *)level);
    dt__resources_free(dt__exec.res_names, dt__exec.res_amounts, dt__exec.nres);
    free(dt__link.sched_addr);
    dt__tls_free(&W.sec);
    return rc;
  }
  return worker_run(0, NULL, (void *)level);
}
