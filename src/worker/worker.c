/*
 * worker.c -- the worker daemon.  One event-loop thread talks to the
 * scheduler and to peers; a pool of nthreads threads runs task functions.
 *
 * Flow of a task: COMPUTE_TASK arrives -> FETCHING while dependencies held
 * elsewhere are fetched from peer workers (GET_DATA/DATA, never through the
 * scheduler) -> READY (priority heap) -> EXECUTING on a pool thread -> the
 * result is stored here and TASK_FINISHED (or TASK_ERRED) goes to the
 * scheduler.  Results stay until FREE_KEYS; fetched copies go as soon as no
 * local task needs them.
 */
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../cli/roles.h"
#include "../net/net.h"
#include "../net/secure.h"
#include "../task/task.h"
#include "nanny.h"

typedef enum {
  WT_FETCHING,  /* waiting for dependencies from peers */
  WT_READY,     /* in the ready heap */
  WT_EXECUTING, /* on a pool thread */
} w_task_state;

typedef struct w_dep {
  char *key;
  uint32_t klen;
  char **addrs;
  uint32_t naddrs;
} w_dep;

typedef struct w_task {
  char *key;
  uint32_t klen;
  char *func;
  dt_payload spec;
  w_dep *deps;
  uint32_t ndeps;
  uint32_t nmissing;
  int64_t priority;
  uint64_t seq;
  char **res_names;
  double *res_amounts;
  uint32_t nres;
  w_task_state state;
  bool cancelled; /* freed by the scheduler while executing */
  size_t heap_idx;
  /* execution (pool thread) */
  dt_task_fn fn;
  dt_value *call; /* [args, kwargs] with futures replaced by data */
  dt_value *result;
  char *err;
  int err_code;
  uint64_t dur_ns;
  struct w_task *next_done;
} w_task;

typedef struct w_data_ {
  char *key;
  uint32_t klen;
  dt_value *v;
  uint64_t nbytes;
  bool replica; /* fetched for local tasks, not computed here */
  uint32_t users; /* local tasks not yet run that need it */
  bool spilled;   /* on disk (spill_path), v == NULL */
  uint64_t spill_id;
  struct w_data_ *lru_prev, *lru_next; /* in memory, least recently used first */
} w_data;

typedef struct fetch {
  char *key;
  uint32_t klen;
  char **addrs;
  uint32_t naddrs, tried;
  dt_vec waiters; /* w_task* */
  uint64_t req;
  struct peer *peer;
  bool keep;       /* ACQUIRE: keep it (a retiring worker's result) */
  bool no_shm;     /* the peer's shared memory could not be used: TCP */
  uint64_t source; /* ... and tell the scheduler, naming that worker */
} fetch;

typedef struct peer {
  char *addr;
  dt_conn *conn;
  dt_vec fetches; /* in flight on this connection */
} peer;

static struct {
  uv_loop_t loop;
  dt_net net;
  dt_listener listener;
  dt_conn *sched;
  uv_async_t done_async;
  uv_timer_t heartbeat, reconnect;
  bool registered;         /* WELCOME received on the current connection */
  double last_heard;       /* last message from the scheduler */
  double sched_ttl_s;      /* the scheduler is lost after this much silence */
  int heartbeat_ms;
  int reconnects;          /* attempts since the connection was lost */
  double lost_at;          /* when it was lost; 0 while connected */
  double death_timeout_s;  /* give up after this long without a scheduler; 0 = never */
  uint64_t nanny_token;    /* nonzero under a nanny */
  char *slots;             /* shared with the nanny: keys executing, per thread */
  /* memory (docs/memory.md): limit 0 = none */
  uint64_t mem_limit;
  double mem_target, mem_spill, mem_pause, mem_terminate;
  uint64_t spilled_bytes, spill_seq, rss;
  uint64_t spilled_total; /* bytes written to disk, ever */
  uint64_t peak_nbytes;   /* the most result bytes held in memory at once */
  bool paused;
  char spill_dir[600];
  w_data *lru_head, *lru_tail;
  uv_timer_t memtimer;
  dt_sec sec;
  char boot_id[48]; /* this host's boot id: peers with the same one share memory */
  uv_signal_t sigint, sigterm;
  char *sched_addr;
  char name[256];
  char address[128];
  int nthreads;
  char **res_names;
  double *res_amounts, *res_used;
  uint32_t nres;
  dt_smap tasks, data, fetches, peers;
  dt_heap ready;
  dt_vec blocked; /* ready tasks waiting for resources */
  uint64_t seq, next_req;
  int executing;
  double avg_ns; /* moving average of task durations */
  uint64_t nbytes;
  /* pool */
  pthread_t *threads;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  w_task *q_head, *q_tail, *done_head;
  bool pool_stop;
  bool stopping;
  int exit_code;
} W;

static bool ready_less(const void *a, const void *b) {
  const w_task *x = a, *y = b;
  if (x->priority != y->priority) return x->priority > y->priority;
  return x->seq < y->seq;
}

/* ---------------------------------------------------------------- pool */

/* The nanny reads these slots after the worker died, to tell the scheduler
 * which tasks were running: plain stores, no system call per task. */
static void slot_set(int idx, const w_task *t) {
  if (!W.slots) return;
  char *sl = W.slots + (size_t)idx * DT__NANNY_SLOT;
  uint32_t n = t ? t->klen : 0;
  if (t) memcpy(sl + 4, t->key, n);
  __atomic_store_n((uint32_t *)sl, n, __ATOMIC_RELEASE);
}

static void *pool_main(void *arg) {
  int idx = (int)(intptr_t)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals go to the loop thread */
  pthread_mutex_lock(&W.lock);
  for (;;) {
    while (!W.q_head && !W.pool_stop) pthread_cond_wait(&W.cond, &W.lock);
    if (W.pool_stop) break;
    w_task *t = W.q_head;
    W.q_head = t->next_done;
    if (!W.q_head) W.q_tail = NULL;
    pthread_mutex_unlock(&W.lock);

    struct dt_task ctx = {t->key, t->func, dt_list_get(t->call, 0), dt_list_get(t->call, 1), NULL, 0};
    uint64_t t0 = dt__now_ns();
    slot_set(idx, t);
    dt_value *res = t->fn(&ctx);
    slot_set(idx, NULL);
    t->dur_ns = dt__now_ns() - t0;
    if (res && ctx.err) { /* failed but returned a value anyway: failure wins */
      dt_value_free(res);
      res = NULL;
    }
    if (!res && !ctx.err) {
      ctx.err = dt__xstrdup("task function returned NULL without calling dt_task_fail()");
      ctx.err_code = DT_ETASK;
    }
    t->result = res;
    t->err = ctx.err;
    t->err_code = ctx.err_code ? ctx.err_code : DT_ETASK;

    pthread_mutex_lock(&W.lock);
    t->next_done = W.done_head;
    W.done_head = t;
    pthread_mutex_unlock(&W.lock);
    uv_async_send(&W.done_async);
    pthread_mutex_lock(&W.lock);
  }
  pthread_mutex_unlock(&W.lock);
  return NULL;
}

/* ---------------------------------------------------------------- data */

static void lru_unlink(w_data *d) {
  if (d->lru_prev) d->lru_prev->lru_next = d->lru_next;
  else if (W.lru_head == d) W.lru_head = d->lru_next;
  if (d->lru_next) d->lru_next->lru_prev = d->lru_prev;
  else if (W.lru_tail == d) W.lru_tail = d->lru_prev;
  d->lru_prev = d->lru_next = NULL;
}
static void lru_append(w_data *d) {
  d->lru_prev = W.lru_tail;
  d->lru_next = NULL;
  if (W.lru_tail) W.lru_tail->lru_next = d;
  else W.lru_head = d;
  W.lru_tail = d;
}

static void spill_path(const w_data *d, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%llu.spill", W.spill_dir, (unsigned long long)d->spill_id);
}

static void memory_check(bool with_rss);

static void data_put(const char *key, uint32_t klen, dt_value *v, bool replica) {
  w_data *d = dt__smap_get(&W.data, key, klen);
  if (d) { /* replace (e.g. recomputed) */
    if (d->spilled) {
      char path[700];
      spill_path(d, path, sizeof(path));
      unlink(path);
      W.spilled_bytes -= d->nbytes;
      d->spilled = false;
    } else {
      W.nbytes -= d->nbytes;
      dt_value_free(d->v);
      lru_unlink(d);
    }
  } else {
    d = dt__xcalloc(1, sizeof(*d));
    d->key = dt__xstrndup(key, klen);
    d->klen = klen;
    dt__smap_put(&W.data, d->key, klen, d);
  }
  d->v = v;
  d->nbytes = dt__value_nbytes(v);
  d->replica = replica;
  W.nbytes += d->nbytes;
  lru_append(d);
  if (W.mem_limit) memory_check(false);
  if (W.nbytes > W.peak_nbytes) W.peak_nbytes = W.nbytes;
}

static void data_del(w_data *d) {
  dt__smap_del(&W.data, d->key, d->klen);
  if (d->spilled) {
    char path[700];
    spill_path(d, path, sizeof(path));
    unlink(path);
    W.spilled_bytes -= d->nbytes;
  } else {
    W.nbytes -= d->nbytes;
    dt_value_free(d->v);
    lru_unlink(d);
  }
  free(d->key);
  free(d);
}

/* spill: write d to the spill folder and free it (only if nothing else
 * holds the value: a running task may be using it) */
static bool spill(w_data *d) {
  if (d->spilled || atomic_load(&d->v->refs) != 1) return false;
  dt_payload p;
  if (dt__payload_encode(d->v, &p, NULL) != 0) return false;
  d->spill_id = ++W.spill_seq;
  char path[700];
  spill_path(d, path, sizeof(path));
  FILE *f = fopen(path, "wb");
  bool ok = f != NULL;
  uint64_t hdr[2] = {p.len, p.nframes};
  if (ok) ok = fwrite(hdr, sizeof(hdr), 1, f) == 1;
  for (uint32_t i = 0; ok && i < p.nframes; i++) {
    uint64_t l = p.frames[i].len;
    ok = fwrite(&l, sizeof(l), 1, f) == 1;
  }
  if (ok && p.len) ok = fwrite(p.body, 1, p.len, f) == p.len;
  for (uint32_t i = 0; ok && i < p.nframes; i++)
    if (p.frames[i].len) ok = fwrite(p.frames[i].p, 1, p.frames[i].len, f) == p.frames[i].len;
  if (f && fclose(f) != 0) ok = false;
  dt__payload_clear(&p);
  if (!ok) {
    DT_WARN("cannot spill %s to %s: %s", d->key, path, strerror(errno));
    unlink(path);
    return false;
  }
  dt_value_free(d->v);
  d->v = NULL;
  d->spilled = true;
  lru_unlink(d);
  W.nbytes -= d->nbytes;
  W.spilled_bytes += d->nbytes;
  W.spilled_total += d->nbytes;
  return true;
}

/* unspill: read d back into memory; 0 or an error */
static int unspill(w_data *d) {
  if (!d->spilled) {
    lru_unlink(d); /* used now: most recently */
    lru_append(d);
    return 0;
  }
  char path[700];
  spill_path(d, path, sizeof(path));
  FILE *f = fopen(path, "rb");
  uint64_t hdr[2];
  int rc = DT_EIO;
  dt_payload p = {0};
  if (f && fread(hdr, sizeof(hdr), 1, f) == 1 && hdr[0] <= DT_MAX_BODY && hdr[1] <= DT_MAX_FRAMES) {
    p.len = (uint32_t)hdr[0];
    p.nframes = (uint32_t)hdr[1];
    p.body = p.len ? dt__xmalloc(p.len) : NULL;
    p.frames = p.nframes ? dt__xcalloc(p.nframes, sizeof(dt_frame)) : NULL;
    uint64_t *lens = dt__xcalloc(p.nframes + 1, sizeof(uint64_t));
    bool ok = true;
    for (uint32_t i = 0; ok && i < p.nframes; i++) ok = fread(&lens[i], 8, 1, f) == 1;
    if (ok && p.len) ok = fread(p.body, 1, p.len, f) == p.len;
    for (uint32_t i = 0; ok && i < p.nframes; i++) {
      p.frames[i].blob = dt__blob_new(lens[i]);
      ok = p.frames[i].blob != NULL;
      if (!ok) break;
      p.frames[i].p = p.frames[i].blob->data;
      p.frames[i].len = lens[i];
      if (lens[i]) ok = fread(p.frames[i].blob->data, 1, lens[i], f) == lens[i];
    }
    free(lens);
    dt_value *v = NULL;
    if (ok && dt__payload_decode(&p, &v) == 0) {
      d->v = v;
      rc = 0;
    }
    dt__payload_clear(&p);
  }
  if (f) fclose(f);
  if (rc) {
    DT_ERROR("cannot read spilled %s back from %s", d->key, path);
    return rc;
  }
  unlink(path);
  d->spilled = false;
  W.spilled_bytes -= d->nbytes;
  W.nbytes += d->nbytes;
  lru_append(d);
  return 0;
}

static uint64_t read_rss(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
    fclose(f);
  }
  return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void start_tasks(void);
static void on_heartbeat(uv_timer_t *h);

/* memory_check: Dask's thresholds.  Managed bytes over target: spill the
 * least recently used results.  With the process's RSS (read on a timer,
 * never per task): over spill, spill more; over pause, take no new tasks
 * until it falls; over terminate, exit (the nanny restarts us and the
 * scheduler recomputes what we held). */
static void memory_check(bool with_rss) {
  uint64_t target = (uint64_t)((double)W.mem_limit * W.mem_target);
  for (w_data *d = W.lru_head; d && W.mem_target > 0 && W.nbytes > target;) {
    w_data *next = d->lru_next;
    spill(d);
    d = next;
  }
  if (!with_rss) return;
  W.rss = read_rss();
  if (W.mem_terminate > 0 && W.rss > (uint64_t)((double)W.mem_limit * W.mem_terminate)) {
    DT_ERROR("memory use %llu bytes is over %.0f%% of the limit %llu: exiting",
             (unsigned long long)W.rss, W.mem_terminate * 100, (unsigned long long)W.mem_limit);
    fflush(NULL);
    _exit(DT__EXIT_MEMORY);
  }
  if (W.mem_spill > 0 && W.rss > (uint64_t)((double)W.mem_limit * W.mem_spill)) {
    uint64_t want = W.rss - (uint64_t)((double)W.mem_limit * W.mem_spill), freed = 0;
    for (w_data *d = W.lru_head; d && freed < want;) {
      w_data *next = d->lru_next;
      uint64_t nb = d->nbytes;
      if (spill(d)) freed += nb;
      d = next;
    }
    if (freed) W.rss = read_rss();
  }
  bool pause = W.mem_pause > 0 && W.rss > (uint64_t)((double)W.mem_limit * W.mem_pause);
  if (pause != W.paused) {
    W.paused = pause;
    DT_INFO("%s: memory use %llu bytes, limit %llu", pause ? "paused" : "resumed",
            (unsigned long long)W.rss, (unsigned long long)W.mem_limit);
    if (W.sched && W.registered) on_heartbeat(NULL); /* tell the scheduler now */
    if (!pause) start_tasks();
  }
}

static void on_memtimer(uv_timer_t *h) {
  (void)h;
  memory_check(true);
}

/* ---------------------------------------------------------------- messages */

/* send_finished: a small result travels along, so that a client waiting
 * for it needs no second round trip to this worker */
/* sched_out: the scheduler's outbox, or NULL while we are not registered
 * (what would be said then is said by re-registering instead) */
static dt_wbuf *sched_out(void) { return W.sched && W.registered ? dt__conn_out(W.sched) : NULL; }

static void send_finished(w_task *t, const dt_value *v, uint64_t nbytes) {
  dt_wbuf *w = sched_out();
  if (!w) return;
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_TASK_FINISHED);
  dt__e_str(&e, t->key, t->klen);
  dt__e_uint(&e, nbytes);
  dt__e_uint(&e, t->dur_ns / 1000);
  dt_payload p;
  if (v && nbytes <= DT_INLINE_MAX && dt__payload_encode(v, &p, NULL) == 0) {
    if (p.nframes == 0 && p.len <= DT_INLINE_MAX) dt__e_bin(&e, p.body, p.len);
    else dt__e_nil(&e);
    dt__payload_clear(&p);
  } else {
    dt__e_nil(&e);
  }
  dt__e_end(&e);
}

static void send_erred(const char *key, uint32_t klen, int code, const char *func, const char *msg) {
  dt_wbuf *w = sched_out();
  if (!w) return;
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_TASK_ERRED);
  dt__e_str(&e, key, klen);
  dt__e_int(&e, code);
  dt__e_cstr(&e, func ? func : "");
  dt__e_cstr(&e, msg ? msg : "");
  dt__e_end(&e);
}

/* ---------------------------------------------------------------- tasks */

static void task_free(w_task *t) {
  free(t->key);
  free(t->func);
  dt__payload_clear(&t->spec);
  for (uint32_t i = 0; i < t->ndeps; i++) {
    free(t->deps[i].key);
    for (uint32_t k = 0; k < t->deps[i].naddrs; k++) free(t->deps[i].addrs[k]);
    free(t->deps[i].addrs);
  }
  free(t->deps);
  dt__resources_free(t->res_names, t->res_amounts, t->nres);
  dt_value_free(t->call);
  dt_value_free(t->result);
  free(t->err);
  free(t);
}

/* release the local copies of the dependencies a task used */
static void release_deps(w_task *t) {
  for (uint32_t i = 0; i < t->ndeps; i++) {
    w_data *d = dt__smap_get(&W.data, t->deps[i].key, t->deps[i].klen);
    if (!d) continue;
    if (d->users) d->users--;
    if (d->replica && d->users == 0) data_del(d);
  }
}

static void task_forget(w_task *t) {
  dt__smap_del(&W.tasks, t->key, t->klen);
  task_free(t);
}

/* replace_future: if *slot is a future, put its data there instead */
static int replace_future(dt_value **slot, char *err, size_t errcap) {
  dt_value *it = *slot;
  if (it->type != DT_FUTURE) return 0;
  w_data *d = dt__smap_get(&W.data, it->u.fut.key, (uint32_t)strlen(it->u.fut.key));
  if (!d || unspill(d) != 0) {
    snprintf(err, errcap, "dependency '%s' is not on this worker%s", it->u.fut.key,
             d ? " (its spill file could not be read)" : "");
    return DT_ELOST;
  }
  *slot = dt_value_ref(d->v);
  dt_value_free(it);
  return 0;
}

/* subst: replace the futures inside a freshly decoded (unshared) value */
static int subst(dt_value *v, char *err, size_t errcap) {
  size_t n = v->type == DT_LIST ? v->u.list.len : v->type == DT_MAP ? v->u.map.len : 0;
  dt_value **items = v->type == DT_LIST ? v->u.list.items : v->u.map.vals;
  for (size_t i = 0; i < n; i++) {
    /* data put in place is shared with other tasks: never descend into it */
    int rc = items[i]->type == DT_FUTURE ? replace_future(&items[i], err, errcap)
                                         : subst(items[i], err, errcap);
    if (rc) return rc;
  }
  return 0;
}

static bool resources_free(const w_task *t) {
  for (uint32_t i = 0; i < t->nres; i++)
    for (uint32_t j = 0; j < W.nres; j++)
      if (strcmp(W.res_names[j], t->res_names[i]) == 0 &&
          W.res_amounts[j] - W.res_used[j] < t->res_amounts[i])
        return false;
  return true;
}

static void resources_take(const w_task *t, double sign) {
  for (uint32_t i = 0; i < t->nres; i++)
    for (uint32_t j = 0; j < W.nres; j++)
      if (strcmp(W.res_names[j], t->res_names[i]) == 0) W.res_used[j] += sign * t->res_amounts[i];
}

/* fail a task locally before it ran (bad function, bad arguments) */
static void fail_now(w_task *t, int code, const char *msg) {
  send_erred(t->key, t->klen, code, t->func, msg);
  release_deps(t);
  task_forget(t);
}

static void start_tasks(void) {
  /* tasks blocked on resources get the first chance */
  for (size_t i = 0; i < W.blocked.len && W.executing < W.nthreads;) { /* resources: one per thread */
    w_task *t = W.blocked.v[i];
    if (resources_free(t)) {
      dt__vec_remove(&W.blocked, t);
      dt__heap_push(&W.ready, t);
    } else {
      i++;
    }
  }
  /* short tasks: hand the pool a few more than it has threads, so that a
   * thread finishing one takes the next without sleeping and waking */
  if (W.paused) return; /* memory: nothing new until it falls */
  int limit = W.nthreads + (W.avg_ns < 100000 ? 4 * W.nthreads + 4 : 0);
  while (W.executing < limit && W.ready.len) {
    w_task *t = dt__heap_pop(&W.ready);
    if (t->nres && !resources_free(t)) {
      dt__vec_push(&W.blocked, t);
      continue;
    }
    t->fn = dt_task_lookup(t->func);
    if (!t->fn) {
      char msg[512];
      snprintf(msg, sizeof(msg), "unknown task function '%s' on worker %s", t->func, W.address);
      fail_now(t, DT_ENOFUNC, msg);
      continue;
    }
    int rc = dt__payload_decode(&t->spec, &t->call);
    char err[DT_MAX_KEY + 100] = "";
    if (rc == 0 && (dt_value_type(t->call) != DT_LIST || dt_list_len(t->call) != 2 ||
                    dt_value_type(dt_list_get(t->call, 0)) != DT_LIST ||
                    dt_value_type(dt_list_get(t->call, 1)) != DT_MAP)) {
      rc = DT_EPROTO;
      snprintf(err, sizeof(err), "task spec is not [args, kwargs]");
    }
    if (rc == 0) rc = subst(t->call, err, sizeof(err));
    if (rc) {
      char msg[DT_MAX_KEY + 200];
      snprintf(msg, sizeof(msg), "cannot prepare arguments of %s: %s", t->func,
               err[0] ? err : dt_last_error());
      fail_now(t, rc, msg);
      continue;
    }
    t->state = WT_EXECUTING;
    resources_take(t, 1);
    W.executing++;
    pthread_mutex_lock(&W.lock);
    t->next_done = NULL;
    if (W.q_tail) W.q_tail->next_done = t;
    else W.q_head = t;
    W.q_tail = t;
    pthread_cond_signal(&W.cond);
    pthread_mutex_unlock(&W.lock);
  }
}

static void on_done(uv_async_t *h) {
  (void)h;
  pthread_mutex_lock(&W.lock);
  w_task *list = W.done_head;
  W.done_head = NULL;
  pthread_mutex_unlock(&W.lock);
  /* the list is newest first: reverse it to report in completion order */
  w_task *rev = NULL;
  while (list) {
    w_task *n = list->next_done;
    list->next_done = rev;
    rev = list;
    list = n;
  }
  for (w_task *t = rev, *next; t; t = next) {
    next = t->next_done;
    W.executing--;
    W.avg_ns = W.avg_ns > 0 ? 0.9 * W.avg_ns + 0.1 * (double)t->dur_ns : (double)t->dur_ns;
    resources_take(t, -1);
    release_deps(t);
    if (t->cancelled) {
      task_free(t); /* already out of W.tasks */
      continue;
    }
    if (t->result) {
      dt_value *r = t->result;
      t->result = NULL;
      data_put(t->key, t->klen, r, false);
      w_data *d = dt__smap_get(&W.data, t->key, t->klen);
      send_finished(t, d->spilled ? NULL : d->v, d->nbytes);
    } else {
      send_erred(t->key, t->klen, t->err_code, t->func, t->err);
    }
    task_forget(t);
  }
  start_tasks();
}

/* ---------------------------------------------------------------- fetching */

static const dt_conn_cbs peer_cbs;

static void fetch_send(fetch *f);

static void send_acquired(const char *key, uint32_t klen, uint64_t nbytes, bool ok, uint64_t src) {
  dt_wbuf *w = sched_out();
  if (!w) return;
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_ACQUIRED);
  dt__e_list(&e, 1);
  dt__e_rec(&e);
  dt__e_str(&e, key, klen);
  dt__e_uint(&e, nbytes);
  dt__e_bool(&e, ok);
  dt__e_uint(&e, src);
  dt__e_end(&e);
}

static void fetch_fail_all(fetch *f) {
  if (f->keep) send_acquired(f->key, f->klen, 0, false, f->source);
  /* every address failed: tell the scheduler, drop the waiting tasks */
  for (size_t i = 0; i < f->waiters.len; i++) {
    w_task *t = f->waiters.v[i];
    if (!dt__smap_get(&W.tasks, t->key, t->klen)) continue;
    /* other fetches may list t too: make them forget it */
    t->nmissing = UINT32_MAX;
    dt_wbuf *w = sched_out();
    if (!w) continue;
    dt_enc e;
    dt__e_begin(&e, w, DT_OP_MISSING_DATA);
    dt__e_str(&e, t->key, t->klen);
    dt__e_str(&e, f->key, f->klen);
    dt__e_cstr(&e, f->naddrs ? f->addrs[f->naddrs - 1] : "");
    dt__e_end(&e);
  }
  for (size_t i = 0; i < f->waiters.len; i++) {
    w_task *t = f->waiters.v[i];
    if (t->nmissing == UINT32_MAX && dt__smap_get(&W.tasks, t->key, t->klen) == t) {
      for (size_t k = 0; k < W.fetches.cap; k++) {
        if (!W.fetches.slots[k].key) continue;
        fetch *o = W.fetches.slots[k].val;
        if (o != f) dt__vec_remove(&o->waiters, t);
      }
      release_deps(t);
      task_forget(t);
    }
  }
}

static void fetch_done(fetch *f) {
  dt__smap_del(&W.fetches, f->key, f->klen);
  free(f->key);
  for (uint32_t i = 0; i < f->naddrs; i++) free(f->addrs[i]);
  free(f->addrs);
  dt__vec_free(&f->waiters);
  free(f);
}

static peer *peer_get(const char *addr) {
  peer *p = dt__smap_get(&W.peers, addr, (uint32_t)strlen(addr));
  if (p) return p;
  p = dt__xcalloc(1, sizeof(*p));
  p->addr = dt__xstrdup(addr);
  if (dt__conn_connect(&W.net, addr, &peer_cbs, p, &p->conn) != 0) {
    DT_WARN("cannot connect to peer %s: %s", addr, dt_last_error());
    free(p->addr);
    free(p);
    return NULL;
  }
  dt__smap_put(&W.peers, p->addr, (uint32_t)strlen(p->addr), p);
  return p;
}

static void fetch_send(fetch *f) {
  while (f->tried < f->naddrs) {
    const char *a = f->addrs[f->tried++];
    if (strcmp(a, W.address) == 0) continue;
    peer *p = peer_get(a);
    if (!p) continue;
    f->peer = p;
    f->req = ++W.next_req;
    dt__vec_push(&p->fetches, f);
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(p->conn), DT_OP_GET_DATA);
    dt__e_uint(&e, f->req);
    dt__e_list(&e, 1);
    dt__e_str(&e, f->key, f->klen);
    dt__e_cstr(&e, f->no_shm || !W.boot_id[0] ? NULL : W.boot_id); /* same host: memory, not TCP */
    dt__e_end(&e);
    return;
  }
  fetch_fail_all(f);
  fetch_done(f);
}

static void dep_arrived(const char *key, uint32_t klen, dt_value *v) {
  fetch *f = dt__smap_get(&W.fetches, key, klen);
  if (!dt__smap_get(&W.data, key, klen)) {
    data_put(key, klen, v, true);
  } else {
    dt_value_free(v);
  }
  w_data *d = dt__smap_get(&W.data, key, klen);
  if (!f) {
    if (d->replica && d->users == 0) data_del(d);
    return;
  }
  if (f->keep) { /* ours now: a retiring worker's result */
    d->replica = false;
    send_acquired(key, klen, d->nbytes, true, f->source);
  }
  for (size_t i = 0; i < f->waiters.len; i++) {
    w_task *t = f->waiters.v[i];
    d->users++;
    if (--t->nmissing == 0) {
      t->state = WT_READY;
      dt__heap_push(&W.ready, t);
    }
  }
  fetch_done(f);
  start_tasks();
}

static int on_peer_data(dt_conn *c, const dt_msg *msg) {
  const dt_msg_DATA *m = &msg->DATA;
  peer *p = c->data;
  fetch *f = NULL;
  for (size_t i = 0; i < p->fetches.len && !f; i++)
    if (((fetch *)p->fetches.v[i])->req == m->req) f = p->fetches.v[i];
  if (f) dt__vec_remove(&p->fetches, f);
  dt_list items = m->items;
  dt_rec_data it;
  while (dt__next_data(&items, &it)) {
    const char *key = it.key.p;
    uint32_t klen = it.key.len;
    if (it.found && it.shm.p) { /* shared memory on this host */
      if (it.shm.len >= 40 || it.shm_pid > INT32_MAX || it.shm_fd > INT32_MAX ||
          it.shm_offset > DT_MAX_FRAME || it.shm_len > DT_MAX_FRAME)
        return DT_EPROTO;
      char nm[40];
      snprintf(nm, sizeof(nm), "%.*s", (int)it.shm.len, it.shm.p);
      dt_blob *b = dt__blob_open_shared((int)it.shm_pid, (int)it.shm_fd, nm, it.shm_offset + it.shm_len);
      if (b) {
        dep_arrived(key, klen, dt__bytes_of_blob(b, b->data + it.shm_offset, it.shm_len));
      } else if (f && f->klen == klen && memcmp(f->key, key, klen) == 0) {
        DT_INFO("cannot map %s's memory for %.*s: fetching it over TCP", c->peer, (int)klen, key);
        f->no_shm = true;
        if (f->tried > 0) f->tried--; /* the same peer again */
        fetch_send(f);
      }
      continue;
    }
    dt_value *v = NULL;
    int rc = it.found ? dt__pref_decode(&it.value, &v) : DT_ENOTFOUND;
    if (rc == 0) {
      dep_arrived(key, klen, v);
    } else if (f && f->klen == klen && memcmp(f->key, key, klen) == 0) {
      fetch_send(f); /* next address, or fail */
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- serving */

/* GET_DATA from a peer worker or a client: reply with what we hold. */
#define DT_SHM_MIN (1u << 20) /* from this size, same-host peers map the memory */

static int on_get_data(dt_conn *c, const dt_msg *msg) {
  const dt_msg_GET_DATA *m = &msg->GET_DATA;
  bool shm = m->boot_id.p && W.boot_id[0] && dt__str_eq(m->boot_id, W.boot_id);
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_DATA);
  dt__e_uint(&e, m->req);
  dt__e_list(&e, m->keys.n);
  dt_list keys = m->keys;
  dt_sv k;
  while (dt__next_key(&keys, &k)) {
    const char *key = k.p;
    uint32_t klen = k.len;
    w_data *d = dt__smap_get(&W.data, key, klen);
    if (d && unspill(d) != 0) d = NULL;
    int fd;
    const char *name;
    dt__e_rec(&e);
    dt__e_str(&e, key, klen);
    dt__e_bool(&e, d != NULL);
    if (d && shm && d->v->type == DT_BYTES && d->v->u.bytes.len >= DT_SHM_MIN &&
        dt__blob_share(d->v->u.bytes.blob, &fd, &name) == 0) {
      /* a peer on this host maps it */
      DT_DEBUG("%.*s to %s through shared memory (%s)", (int)klen, key, c->peer, name);
      dt__e_empty_payload(&e);
      dt__e_cstr(&e, name);
      dt__e_uint(&e, (uint64_t)getpid());
      dt__e_uint(&e, (uint64_t)fd);
      dt__e_uint(&e, (uint64_t)(d->v->u.bytes.p - d->v->u.bytes.blob->data));
      dt__e_uint(&e, d->v->u.bytes.len);
      continue;
    }
    if (d) dt__e_value(&e, d->v); /* writes a nil payload if it cannot encode */
    else dt__e_empty_payload(&e);
    dt__e_nil(&e);
    dt__e_uint(&e, 0);
    dt__e_uint(&e, 0);
    dt__e_uint(&e, 0);
    dt__e_uint(&e, 0);
  }
  dt__e_end(&e);
  return 0;
}

/* ---------------------------------------------------------------- scheduler */

static int on_compute_task(dt_conn *c, const dt_msg *msg) {
  (void)c;
  const dt_msg_COMPUTE_TASK *m = &msg->COMPUTE_TASK;
  const char *key = m->key.p;
  uint32_t klen = m->key.len;
  if (m->resources.n > 64) return DT_EPROTO;
  if (dt__smap_get(&W.tasks, key, klen)) { /* already have it: ignore the duplicate */
    return 0;
  }
  w_task *t = dt__xcalloc(1, sizeof(*t));
  t->key = dt__xstrndup(key, klen);
  t->klen = klen;
  t->func = dt__str_dup(m->func, m->func.len);
  dt__pref_copy(&m->spec, &t->spec);
  uint32_t ndeps = m->deps.n;
  int rc = 0;
  if (ndeps > 0) t->deps = dt__xcalloc(ndeps, sizeof(*t->deps));
  dt_list dl = m->deps;
  dt_rec_dep dr;
  while (rc == 0 && dt__next_dep(&dl, &dr)) {
    if (dr.who_has.n > 1024) {
      rc = DT_EPROTO;
      break;
    }
    w_dep *d = &t->deps[t->ndeps++];
    d->key = dt__xstrndup(dr.key.p, dr.key.len);
    d->klen = dr.key.len;
    d->addrs = dt__xcalloc(dr.who_has.n ? dr.who_has.n : 1, sizeof(char *));
    dt_sv a;
    while (dt__next_str(&dr.who_has, &a)) d->addrs[d->naddrs++] = dt__xstrndup(a.p, a.len);
  }
  t->priority = m->priority;
  uint32_t nres = m->resources.n;
  if (rc == 0 && nres) {
    t->res_names = dt__xcalloc(nres, sizeof(char *));
    t->res_amounts = dt__xcalloc(nres, sizeof(double));
    dt_list rl = m->resources;
    dt_sv k;
    while (dt__next_double(&rl, &k, &t->res_amounts[t->nres]))
      t->res_names[t->nres++] = dt__xstrndup(k.p, k.len);
  }
  if (rc) {
    task_free(t);
    return DT_EPROTO;
  }
  t->seq = ++W.seq;
  dt__smap_put(&W.tasks, t->key, t->klen, t);
  /* dependencies: local ones are used in place, the others fetched */
  for (uint32_t i = 0; i < t->ndeps; i++) {
    w_dep *d = &t->deps[i];
    w_data *have = dt__smap_get(&W.data, d->key, d->klen);
    if (have) {
      have->users++;
      continue;
    }
    t->nmissing++;
    fetch *f = dt__smap_get(&W.fetches, d->key, d->klen);
    if (f) {
      dt__vec_push(&f->waiters, t);
      continue;
    }
    f = dt__xcalloc(1, sizeof(*f));
    f->key = dt__xstrndup(d->key, d->klen);
    f->klen = d->klen;
    f->addrs = dt__xcalloc(d->naddrs ? d->naddrs : 1, sizeof(char *));
    for (uint32_t k = 0; k < d->naddrs; k++) f->addrs[f->naddrs++] = dt__xstrdup(d->addrs[k]);
    dt__vec_push(&f->waiters, t);
    dt__smap_put(&W.fetches, f->key, f->klen, f);
  }
  if (t->nmissing == 0) {
    t->state = WT_READY;
    dt__heap_push(&W.ready, t);
    start_tasks();
  } else {
    t->state = WT_FETCHING;
    /* start the fetches this task created (those with no peer yet) */
    for (uint32_t i = 0; i < t->ndeps; i++) {
      fetch *f = dt__smap_get(&W.fetches, t->deps[i].key, t->deps[i].klen);
      if (f && !f->peer && f->tried == 0) fetch_send(f);
      if (!dt__smap_get(&W.tasks, key, klen)) break; /* failed meanwhile */
    }
  }
  return 0;
}

/* ACQUIRE: fetch results from a worker that is retiring, and keep them */
static int on_acquire(dt_conn *c, const dt_msg *msg) {
  (void)c;
  dt_list l = msg->ACQUIRE.items;
  dt_rec_move it;
  while (dt__next_move(&l, &it)) {
    const char *key = it.key.p;
    uint32_t klen = it.key.len;
    if (it.from.len == 0) return DT_EPROTO;
    w_data *d = dt__smap_get(&W.data, key, klen);
    if (d) { /* a copy is here already */
      d->replica = false;
      send_acquired(key, klen, d->nbytes, true, it.source);
      continue;
    }
    fetch *f = dt__smap_get(&W.fetches, key, klen);
    if (!f) {
      f = dt__xcalloc(1, sizeof(*f));
      f->key = dt__xstrndup(key, klen);
      f->klen = klen;
      f->addrs = dt__xcalloc(1, sizeof(char *));
      f->addrs[f->naddrs++] = dt__xstrndup(it.from.p, it.from.len);
      dt__smap_put(&W.fetches, f->key, f->klen, f);
    }
    f->keep = true;
    f->source = it.source;
    if (!f->peer && f->tried == 0) fetch_send(f);
  }
  return 0;
}

static int on_free_keys(dt_conn *c, const dt_msg *msg) {
  (void)c;
  dt_list l = msg->FREE_KEYS.keys;
  dt_sv k;
  while (dt__next_key(&l, &k)) {
    const char *key = k.p;
    uint32_t klen = k.len;
    w_data *d = dt__smap_get(&W.data, key, klen);
    if (d) {
      if (d->users) d->replica = true; /* still needed here: drop after use */
      else data_del(d);
    }
    w_task *t = dt__smap_get(&W.tasks, key, klen);
    if (!t) continue;
    dt__smap_del(&W.tasks, key, klen);
    switch (t->state) {
    case WT_EXECUTING: t->cancelled = true; break; /* freed when it returns */
    case WT_READY:
      dt__heap_remove(&W.ready, t);
      dt__vec_remove(&W.blocked, t);
      release_deps(t);
      task_free(t);
      break;
    case WT_FETCHING:
      for (size_t k2 = 0; k2 < W.fetches.cap; k2++)
        if (W.fetches.slots[k2].key) dt__vec_remove(&((fetch *)W.fetches.slots[k2].val)->waiters, t);
      release_deps(t);
      task_free(t);
      break;
    }
  }
  return 0;
}

static int on_put_data(dt_conn *c, const dt_msg *msg) {
  const dt_msg_PUT_DATA *m = &msg->PUT_DATA;
  /* decode everything first: a bad value stores nothing */
  uint32_t n = m->items.n;
  dt_value **vals = dt__xcalloc(n ? n : 1, sizeof(*vals));
  dt_list l = m->items;
  dt_rec_keyval it;
  for (uint32_t i = 0; dt__next_keyval(&l, &it); i++)
    if (dt__pref_decode(&it.value, &vals[i]) != 0) {
      for (uint32_t j = 0; j < i; j++) dt_value_free(vals[j]);
      free(vals);
      return DT_EPROTO;
    }
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_PUT_DATA_DONE);
  dt__e_uint(&e, m->req);
  dt__e_list(&e, n);
  l = m->items;
  for (uint32_t i = 0; dt__next_keyval(&l, &it); i++) {
    data_put(it.key.p, it.key.len, vals[i], false);
    w_data *d = dt__smap_get(&W.data, it.key.p, it.key.len);
    dt__e_rec(&e);
    dt__e_str(&e, it.key.p, it.key.len);
    dt__e_uint(&e, d->nbytes);
  }
  dt__e_end(&e);
  free(vals);
  return 0;
}

static void stop(int code);
static void connect_scheduler(void);
static void on_heartbeat_cb(uv_timer_t *h);

/* drop_queued: the scheduler is gone and will place again every task it
 * sent us; keep only what is running (its result stays here, and is
 * announced when we register again) */
static void drop_queued(void) {
  dt_vec drop = {0};
  for (size_t i = 0; i < W.tasks.cap; i++)
    if (W.tasks.slots[i].key && ((w_task *)W.tasks.slots[i].val)->state != WT_EXECUTING)
      dt__vec_push(&drop, W.tasks.slots[i].val);
  for (size_t i = 0; i < drop.len; i++) {
    w_task *t = drop.v[i];
    dt__smap_del(&W.tasks, t->key, t->klen);
    if (t->state == WT_READY) {
      dt__heap_remove(&W.ready, t);
      dt__vec_remove(&W.blocked, t);
    } else {
      for (size_t k = 0; k < W.fetches.cap; k++)
        if (W.fetches.slots[k].key) dt__vec_remove(&((fetch *)W.fetches.slots[k].val)->waiters, t);
    }
    release_deps(t);
    task_free(t);
  }
  dt__vec_free(&drop);
}

static int on_sched_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  W.last_heard = dt__now_s();
  dt_msg m;
  if (dt__msg_read(r, op, nf, &m) != 0) {
    DT_WARN("malformed message from the scheduler: %s", dt__msg_error());
    return DT_EPROTO;
  }
  switch (op) {
  case DT_OP_WELCOME: {
    uint64_t hb = m.WELCOME.heartbeat_ms, ttl = m.WELCOME.ttl_ms;
    if (hb >= 10 && hb <= 3600000) W.heartbeat_ms = (int)hb;
    if (ttl >= 10 && ttl <= 86400000) W.sched_ttl_s = (double)ttl / 1000;
    uv_timer_start(&W.heartbeat, on_heartbeat_cb, (uint64_t)W.heartbeat_ms, (uint64_t)W.heartbeat_ms);
    W.registered = true;
    if (W.lost_at > 0)
      DT_INFO("registered again with the scheduler at %s after %.1f s", W.sched_addr,
              dt__now_s() - W.lost_at);
    W.lost_at = 0;
    W.reconnects = 0;
    start_tasks();
    return 0;
  }
  case DT_OP_PING: return 0;
  case DT_OP_COMPUTE_TASK: return on_compute_task(c, &m);
  case DT_OP_FREE_KEYS: return on_free_keys(c, &m);
  case DT_OP_PUT_DATA: return on_put_data(c, &m);
  case DT_OP_GET_DATA: return on_get_data(c, &m);
  case DT_OP_ACQUIRE: return on_acquire(c, &m);
  case DT_OP_CLOSE:
    DT_INFO("scheduler asked us to close");
    stop(0);
    return 0;
  default:
    DT_WARN("unexpected %s message from the scheduler", dt__op_name(op));
    return DT_EPROTO;
  }
}

static void on_reconnect(uv_timer_t *h) {
  (void)h;
  if (!W.stopping && !W.sched) connect_scheduler();
}

/* scheduler_lost: reconnect with backoff (0.1 s doubling to 5 s, with
 * jitter) until death_timeout, if any */
static void scheduler_lost(void) {
  if (W.stopping) return;
  double now = dt__now_s();
  if (W.lost_at == 0) {
    W.lost_at = now;
    W.registered = false;
    uv_timer_stop(&W.heartbeat);
    drop_queued();
  }
  if (W.death_timeout_s > 0 && now - W.lost_at >= W.death_timeout_s) {
    DT_ERROR("no scheduler at %s for %.0f s (--death-timeout): exiting", W.sched_addr,
             now - W.lost_at);
    stop(DT__EXIT_GIVE_UP);
    return;
  }
  double delay = 0.1 * (double)(1u << (W.reconnects < 6 ? W.reconnects : 6));
  if (delay > 5) delay = 5;
  delay *= 0.75 + 0.5 * (double)(dt__now_ns() % 1000) / 1000.0;
  W.reconnects++;
  uv_timer_start(&W.reconnect, on_reconnect, (uint64_t)(delay * 1000), 0);
}

static void on_sched_close(dt_conn *c) {
  (void)c;
  W.sched = NULL;
  if (W.stopping) return;
  if (W.lost_at == 0)
    DT_WARN("lost the connection to the scheduler at %s; reconnecting", W.sched_addr);
  scheduler_lost();
}

static void on_heartbeat(uv_timer_t *h) {
  (void)h;
  if (!W.sched || !W.registered) return;
  if (dt__now_s() - W.last_heard > W.sched_ttl_s) {
    DT_WARN("the scheduler at %s has been silent for %.1f s: reconnecting", W.sched_addr,
            dt__now_s() - W.last_heard);
    dt__conn_close(W.sched, false);
    return;
  }
  /* CPU and RSS of this process, from /proc (once per heartbeat) */
  static double last_cpu_s, last_wall_s, cpu_pct;
  uint64_t rss = 0;
  FILE *f = fopen("/proc/self/stat", "r");
  if (f) {
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    long rss_pages = 0;
    /* fields after the name: state(3) ... utime(14) stime(15) ... rss(24) */
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                           "%*d %*u %*u %ld", &ut, &st, &rss_pages) == 3) {
      double cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK), now = dt__now_s();
      if (last_wall_s > 0 && now > last_wall_s)
        cpu_pct = 100.0 * (cpu_s - last_cpu_s) / (now - last_wall_s);
      last_cpu_s = cpu_s;
      last_wall_s = now;
      rss = (uint64_t)rss_pages * (uint64_t)sysconf(_SC_PAGESIZE);
    }
  }
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(W.sched), DT_OP_HEARTBEAT);
  dt__e_int(&e, W.executing);
  dt__e_int(&e, (int64_t)W.ready.len);
  dt__e_int(&e, (int64_t)W.data.len);
  dt__e_int(&e, (int64_t)W.nbytes);
  dt__e_double(&e, cpu_pct);
  dt__e_uint(&e, rss);
  dt__e_uint(&e, W.spilled_bytes);
  dt__e_bool(&e, W.paused);
  dt__e_uint(&e, W.peak_nbytes);
  dt__e_end(&e);
}
static void on_heartbeat_cb(uv_timer_t *h) { on_heartbeat(h); }

static int listen_port;
static const char *listen_host;

static const dt_conn_cbs peer_server_cbs;

static void on_peer_accept(dt_listener *l, dt_conn *c) {
  (void)l;
  (void)c;
}

static void on_sched_connect(dt_conn *c, int status) {
  if (status < 0) {
    if (W.lost_at == 0 && W.reconnects == 0)
      DT_WARN("cannot connect to the scheduler at %s: %s; retrying", W.sched_addr,
              uv_strerror(status));
    return; /* on_sched_close follows and retries */
  }
  if (!W.address[0]) { /* first connection: listen for peers on its interface */
    char ip[64];
    if (listen_host) snprintf(ip, sizeof(ip), "%s", listen_host);
    else if (dt__conn_local_ip(c, ip, sizeof(ip)) != 0) snprintf(ip, sizeof(ip), "127.0.0.1");
    if (dt__listener_start(&W.listener, &W.net, ip, listen_port, &peer_server_cbs, on_peer_accept,
                          NULL) != 0) {
      DT_ERROR("%s", dt_last_error());
      stop(DT__EXIT_GIVE_UP);
      return;
    }
    if (strchr(ip, ':')) snprintf(W.address, sizeof(W.address), "[%s]:%d", ip, W.listener.port);
    else snprintf(W.address, sizeof(W.address), "%s:%d", ip, W.listener.port);
    if (!W.name[0]) snprintf(W.name, sizeof(W.name), "%s", W.address);
    DT_INFO("worker %s at %s, %d threads, scheduler %s%s", W.name, W.address, W.nthreads,
            W.sched_addr, W.nanny_token ? ", under a nanny" : "");
  }
  W.last_heard = dt__now_s();
  uint32_t nheld = 0;
  for (size_t i = 0; i < W.data.cap; i++)
    if (W.data.slots[i].key && !((w_data *)W.data.slots[i].val)->replica) nheld++;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_HELLO_WORKER);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, W.name);
  dt__e_cstr(&e, W.address);
  dt__e_uint(&e, (uint64_t)W.nthreads);
  dt__e_map(&e, W.nres);
  for (uint32_t i = 0; i < W.nres; i++) {
    dt__e_cstr(&e, W.res_names[i]);
    dt__e_double(&e, W.res_amounts[i]);
  }
  dt__e_uint(&e, (uint64_t)getpid());
  dt__e_uint(&e, W.nanny_token);
  dt__e_list(&e, nheld);
  for (size_t i = 0; i < W.data.cap; i++) {
    w_data *d = W.data.slots[i].val;
    if (!W.data.slots[i].key || d->replica) continue;
    dt__e_rec(&e);
    dt__e_str(&e, d->key, d->klen);
    dt__e_uint(&e, d->nbytes);
  }
  dt__e_end(&e);
}

static const dt_conn_cbs sched_cbs = {on_sched_msg, on_sched_connect, on_sched_close};

static void connect_scheduler(void) {
  if (dt__conn_connect(&W.net, W.sched_addr, &sched_cbs, NULL, &W.sched) != 0) {
    W.sched = NULL;
    DT_WARN("%s", dt_last_error());
    scheduler_lost();
  }
}

/* peers that connect to us (workers and clients) only ask for data */
/* read_peer_msg: decode a peer's message; 0, or DT_EPROTO (logged) */
static int read_peer_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r, dt_msg *m) {
  if (dt__msg_read(r, op, nf, m) == 0) return 0;
  DT_WARN("malformed message from peer %s: %s", c->peer, dt__msg_error());
  return DT_EPROTO;
}

static int on_peer_server_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  dt_msg m;
  if (op == DT_OP_GET_DATA) return read_peer_msg(c, op, nf, r, &m) ? DT_EPROTO : on_get_data(c, &m);
  if (op == DT_OP_CLOSE) {
    dt__conn_close(c, true);
    return 0;
  }
  DT_WARN("unexpected %s message from peer %s", dt__op_name(op), c->peer);
  return DT_EPROTO;
}
static const dt_conn_cbs peer_server_cbs = {on_peer_server_msg, NULL, NULL};

/* connections we opened to peers, to fetch */
static void on_peer_close(dt_conn *c) {
  peer *p = c->data;
  dt__smap_del(&W.peers, p->addr, (uint32_t)strlen(p->addr));
  dt_vec fs = p->fetches;
  p->fetches = (dt_vec){0};
  if (!W.stopping)
    for (size_t i = 0; i < fs.len; i++) {
      fetch *f = fs.v[i];
      f->peer = NULL;
      fetch_send(f);
    }
  dt__vec_free(&fs);
  free(p->addr);
  free(p);
}
static int on_peer_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  dt_msg m;
  if (op == DT_OP_DATA) return read_peer_msg(c, op, nf, r, &m) ? DT_EPROTO : on_peer_data(c, &m);
  DT_WARN("unexpected %s message from peer %s", dt__op_name(op), c->peer);
  return DT_EPROTO;
}
static const dt_conn_cbs peer_cbs = {on_peer_msg, NULL, on_peer_close};

/* ---------------------------------------------------------------- main */

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h)) return;
  if (h->type == UV_TCP && h->data && h != (uv_handle_t *)&W.listener.tcp &&
      h->data != &W.listener)
    dt__conn_close(h->data, false);
  else
    uv_close(h, NULL);
}

static void stop(int code) {
  if (W.stopping) return;
  W.stopping = true;
  W.exit_code = code;
  if (W.sched && W.registered) { /* leaving on purpose: nothing to suspect */
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(W.sched), DT_OP_CLOSE);
    dt__e_cstr(&e, "worker closing");
    dt__e_end(&e);
    dt__conn_close(W.sched, true);
  }
  uv_walk(&W.loop, close_walk, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  DT_INFO("signal %d: stopping", signum);
  stop(0);
}

static void usage(void) {
  fprintf(stderr,
          "usage: dtask worker SCHEDULER_ADDRESS [--nthreads N] [--name NAME]\n"
          "                    [--preload LIB.so]... [--resources NAME=N,...]\n"
          "                    [--listen-host HOST] [--worker-port PORT] [--log-level LEVEL]\n"
          "                    [--no-nanny] [--death-timeout DURATION] [--auth-file FILE]\n"
          "  SCHEDULER_ADDRESS  host:port, or --scheduler-file FILE\n"
          "  --no-nanny         run without the nanny that restarts a worker that dies\n"
          "  --local-directory D  scratch folder (made if missing; the worker runs there)\n"
          "  --memory-limit M   e.g. 4GiB, 0 for none (default auto: the machine's memory\n"
          "                     times nthreads / CPUs); --memory-target, -spill, -pause,\n"
          "                     -terminate: fractions of it (0.6, 0.7, 0.8, 0.95)\n"
          "  --death-timeout D  exit after D without a scheduler (default: keep trying)\n"
          DT_SEC_USAGE);
}

static int read_scheduler_file(const char *path, char *out, size_t cap) {
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

int dt__read_scheduler_file(const char *path, char *out, size_t cap) {
  return read_scheduler_file(path, out, cap);
}

static int worker_run(uint64_t token, char *slots, void *arg);

int dt__worker_main(int argc, char **argv) {
  const char *addr = NULL, *level = getenv("DTASK_LOG_LEVEL"), *res = NULL, *file = NULL;
  int nthreads = 1;
  bool nanny = true;
  double death_timeout = 0;
  const char *mem_limit = "auto";
  dt_sec_args sa = {0};
  memset(&W, 0, sizeof(W));
  W.mem_target = 0.6, W.mem_spill = 0.7, W.mem_pause = 0.8, W.mem_terminate = 0.95;
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
    else if (strcmp(a, "--listen-host") == 0 && has) listen_host = argv[++i];
    else if (strcmp(a, "--worker-port") == 0 && has) listen_port = atoi(argv[++i]);
    else if (strcmp(a, "--scheduler-file") == 0 && has) file = argv[++i];
    else if (strcmp(a, "--no-nanny") == 0) nanny = false;
    else if (strcmp(a, "--memory-limit") == 0 && has) mem_limit = argv[++i];
    else if ((strcmp(a, "--memory-target") == 0 || strcmp(a, "--memory-spill") == 0 ||
              strcmp(a, "--memory-pause") == 0 || strcmp(a, "--memory-terminate") == 0) && has) {
      char *end;
      const char *fv = argv[++i];
      double f = strcmp(fv, "false") == 0 || strcmp(fv, "off") == 0 ? 0 : strtod(fv, &end);
      if ((f != 0 && (*end || f < 0 || f > 1)) || (f == 0 && strcmp(fv, "0") != 0 &&
                                                   strcmp(fv, "false") != 0 && strcmp(fv, "off") != 0)) {
        fprintf(stderr, "dtask worker: %s takes a fraction of the limit in (0, 1], or 0/false "
                        "for none, not '%s'\n", a, fv);
        return 2;
      }
      if (a[9] == 't' && a[10] == 'a') W.mem_target = f;
      else if (a[9] == 's') W.mem_spill = f;
      else if (a[9] == 'p') W.mem_pause = f;
      else W.mem_terminate = f;
    }
    else if (strcmp(a, "--local-directory") == 0 && has) {
      const char *d = argv[++i];
      if ((mkdir(d, 0700) != 0 && errno != EEXIST) || chdir(d) != 0) {
        fprintf(stderr, "dtask worker: --local-directory %s: %s\n", d, strerror(errno));
        return 2;
      }
    }
    else if (strcmp(a, "--nanny") == 0) nanny = true;
    else if (strcmp(a, "--death-timeout") == 0 && has) {
      if (dt__parse_duration(argv[++i], &death_timeout) != 0) {
        fprintf(stderr, "dtask worker: --death-timeout: %s\n", dt_last_error());
        return 2;
      }
    }
    else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(); return 0; }
    else if (a[0] != '-' && !addr) addr = a;
    else {
      fprintf(stderr, "dtask worker: unknown or incomplete option '%s'\n", a);
      usage();
      return 2;
    }
  }
  char fileaddr[256];
  if (!addr && file) {
    if (read_scheduler_file(file, fileaddr, sizeof(fileaddr)) != 0) {
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
  if (dt__resources_parse(res, &W.res_names, &W.res_amounts, &W.nres) != 0) {
    fprintf(stderr, "dtask worker: %s\n", dt_last_error());
    return 2;
  }
  W.nthreads = nthreads;
  W.sched_addr = dt__xstrdup(addr);
  W.death_timeout_s = death_timeout;
  if (dt__parse_memory(mem_limit, nthreads, &W.mem_limit) != 0) {
    fprintf(stderr, "dtask worker: --memory-limit: %s\n", dt_last_error());
    return 2;
  }
  if (dt__sec_from_args(&W.sec, &sa) != 0) {
    fprintf(stderr, "dtask worker: %s\n", dt_last_error());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (nanny) {
    dt__log_init("nanny", level);
    if (W.mem_limit && W.mem_terminate > 0)
      dt__nanny_memory((uint64_t)((double)W.mem_limit * W.mem_terminate));
    int rc = dt__nanny_run(W.sched_addr, nthreads, &W.sec, worker_run, (void *)level);
    dt__resources_free(W.res_names, W.res_amounts, W.nres);
    free(W.sched_addr);
    dt__tls_free(&W.sec);
    return rc;
  }
  return worker_run(0, NULL, (void *)level);
}

/* worker_run: the worker proper (in the nanny's child, or alone) */
static int worker_run(uint64_t token, char *slots, void *arg) {
  const char *level = arg;
  int nthreads = W.nthreads;
  W.nanny_token = token;
  W.slots = slots;
  W.heartbeat_ms = 1000;
  W.sched_ttl_s = 60;
  FILE *bf = fopen("/proc/sys/kernel/random/boot_id", "r");
  if (bf) {
    if (!fgets(W.boot_id, sizeof(W.boot_id), bf)) W.boot_id[0] = '\0';
    W.boot_id[strcspn(W.boot_id, "\n")] = '\0';
    fclose(bf);
  }
  W.res_used = dt__xcalloc(W.nres ? W.nres : 1, sizeof(double));
  dt__log_init("worker", level);
  uv_loop_init(&W.loop);
  dt__net_init(&W.net, &W.loop);
  W.net.sec = &W.sec;
  dt__smap_init(&W.tasks);
  dt__smap_init(&W.data);
  dt__heap_init(&W.ready, ready_less, offsetof(w_task, heap_idx));
  pthread_mutex_init(&W.lock, NULL);
  pthread_cond_init(&W.cond, NULL);
  uv_async_init(&W.loop, &W.done_async, on_done);
  uv_timer_init(&W.loop, &W.heartbeat);
  uv_timer_init(&W.loop, &W.reconnect);
  uv_timer_init(&W.loop, &W.memtimer);
  if (W.mem_limit) {
    /* spill files: a folder of our own under the local directory (cwd) */
    char cwd[400];
    if (!getcwd(cwd, sizeof(cwd))) snprintf(cwd, sizeof(cwd), "/tmp");
    snprintf(W.spill_dir, sizeof(W.spill_dir), "%s/dtask-spill-%d", cwd, (int)getpid());
    if (mkdir(W.spill_dir, 0700) != 0 && errno != EEXIST)
      DT_WARN("cannot make the spill folder %s: %s", W.spill_dir, strerror(errno));
    uv_timer_start(&W.memtimer, on_memtimer, 100, 100);
  }
  uv_signal_init(&W.loop, &W.sigint);
  uv_signal_init(&W.loop, &W.sigterm);
  uv_signal_start(&W.sigint, on_signal, SIGINT);
  uv_signal_start(&W.sigterm, on_signal, SIGTERM);
  W.threads = dt__xcalloc((size_t)nthreads, sizeof(pthread_t));
  for (int i = 0; i < nthreads; i++) pthread_create(&W.threads[i], NULL, pool_main, (void *)(intptr_t)i);
  connect_scheduler();
  uv_run(&W.loop, UV_RUN_DEFAULT);
  if (W.executing > 0) {
    /* tasks still running on pool threads: do not wait for them */
    DT_INFO("exiting with %d tasks still running", W.executing);
    fflush(NULL);
    _exit(W.exit_code);
  }
  pthread_mutex_lock(&W.lock);
  W.pool_stop = true;
  pthread_cond_broadcast(&W.cond);
  pthread_mutex_unlock(&W.lock);
  for (int i = 0; i < nthreads; i++) pthread_join(W.threads[i], NULL);
  free(W.threads);
  /* free what is left */
  for (size_t i = 0; i < W.data.cap; i++)
    if (W.data.slots[i].key) {
      w_data *d = W.data.slots[i].val;
      if (d->spilled) {
        char path[700];
        spill_path(d, path, sizeof(path));
        unlink(path);
      }
      dt_value_free(d->v);
      free(d->key);
      free(d);
    }
  for (size_t i = 0; i < W.tasks.cap; i++)
    if (W.tasks.slots[i].key) task_free(W.tasks.slots[i].val);
  for (size_t i = 0; i < W.fetches.cap; i++)
    if (W.fetches.slots[i].key) {
      fetch *f = W.fetches.slots[i].val;
      free(f->key);
      for (uint32_t k = 0; k < f->naddrs; k++) free(f->addrs[k]);
      free(f->addrs);
      dt__vec_free(&f->waiters);
      free(f);
    }
  dt__smap_destroy(&W.data);
  dt__smap_destroy(&W.tasks);
  dt__smap_destroy(&W.fetches);
  dt__smap_destroy(&W.peers);
  dt__heap_destroy(&W.ready);
  dt__vec_free(&W.blocked);
  dt__resources_free(W.res_names, W.res_amounts, W.nres);
  free(W.res_used);
  free(W.sched_addr);
  dt__tls_free(&W.sec);
  if (W.spill_dir[0]) rmdir(W.spill_dir); /* empty by now: every spilled key was freed */
  uv_loop_close(&W.loop);
  return W.exit_code;
}
