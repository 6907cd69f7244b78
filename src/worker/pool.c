/*
 * pool.c -- the threads that run task functions.  The loop thread queues
 * tasks (dt__pool_submit, a batch under one lock, waking only idle
 * threads); a pool thread runs one, puts it on the done list and takes the
 * next under the same lock.  It wakes the loop (one uv_async_send, which
 * coalesces) only when the queue is down to the loop's low-water mark or
 * empty, for a failure, a seceded task or a producer of a task sent ahead,
 * or when the oldest unannounced result is 250 us old; while the pool
 * batches, a 1 ms timer on the loop takes what a long task would hold back.
 * So a stream of short tasks costs a wake-up per batch, not per task.  The
 * loop takes the whole list at once and hands it back in completion
 * order.  While a thread runs a task, its nanny slot holds the task's key,
 * so that the nanny can tell the scheduler what was running if we die.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "worker_int.h"

/* the longest the loop is left unaware of a finished task while the pool
 * still has queued ones (short tasks: a batch per wake-up) */
#define DT__POOL_MAX_HOLD_NS 250000

static struct {
  pthread_t *threads;
  int nthreads;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  w_task *q_head, *q_tail; /* queued, oldest first */
  int q_len;
  w_task *done_head;       /* finished, newest first */
  /* wake-ups: the loop hears of finished tasks once the queue is down to
   * low_water (set by the loop with each batch), empty, or the oldest
   * unannounced one is DT__POOL_MAX_HOLD_NS old; not once per task */
  int low_water;
  bool told;          /* an announcement is pending (the loop has not taken the list) */
  uint64_t held_since; /* when the oldest unannounced task finished */
  uv_timer_t tick;     /* while batching: takes what a long task would hold back */
  bool stop;
  char *slots; /* shared with the nanny: keys executing, per thread */
  uv_async_t done_async;
  void (*on_done)(w_task *list);
  /* tasks from tasks: a thread whose task seceded no longer counts; the
   * pool starts another when none is idle (threads are never fewer than
   * the high-water mark; extra ones idle) */
  int active;      /* threads running a task that has not seceded */
  int idle;        /* threads waiting for work */
  int nseceded;    /* tasks seceded now; read by the loop (exec.c) */
  int cap_threads; /* room in threads */
  int nslots;      /* the nanny's slots: the first threads' */
  pthread_cond_t rejoin_cond;
  dt_vec seceded_keys; /* keys to report to the scheduler (owned copies) */
  void (*on_secede)(const char *key);
} P;

static void *pool_main(void *arg);

/* the secede hook (task.h): lock held by neither side */
static int pool_secede(dt_task *ctx) {
  pthread_mutex_lock(&P.lock);
  P.active--;
  __atomic_add_fetch(&P.nseceded, 1, __ATOMIC_RELAXED); /* read by the loop unlocked */
  dt__vec_push(&P.seceded_keys, dt__xstrdup(ctx->key));
  int rc = 0;
  if (P.idle == 0) { /* nobody to take the next task: a new thread */
    if (P.nthreads == P.cap_threads) {
      P.cap_threads *= 2;
      P.threads = dt__xrealloc(P.threads, (size_t)P.cap_threads * sizeof(pthread_t));
    }
    if (pthread_create(&P.threads[P.nthreads], NULL, pool_main, (void *)(intptr_t)P.nthreads) == 0)
      P.nthreads++;
  }
  pthread_cond_broadcast(&P.cond);
  pthread_mutex_unlock(&P.lock);
  uv_async_send(&P.done_async);
  return rc;
}

static int pool_rejoin(dt_task *ctx) {
  (void)ctx;
  pthread_mutex_lock(&P.lock);
  while (P.active >= dt__worker.nthreads && !P.stop) pthread_cond_wait(&P.rejoin_cond, &P.lock);
  P.active++;
  __atomic_sub_fetch(&P.nseceded, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&P.lock);
  return 0;
}

int dt__pool_seceded(void) { return __atomic_load_n(&P.nseceded, __ATOMIC_RELAXED); }

/* The nanny reads these slots after the worker died, to tell the scheduler
 * which tasks were running: plain stores, no system call per task. */
static void slot_set(int idx, const w_task *t) {
  if (!P.slots || idx >= P.nslots) return; /* threads started by secede have none */
  char *sl = P.slots + (size_t)idx * DT__NANNY_SLOT;
  uint32_t n = t ? t->klen : 0;
  if (t) memcpy(sl + 4, t->key, n);
  __atomic_store_n((uint32_t *)sl, n, __ATOMIC_RELEASE);
}

/* tell: whether the loop must hear now of the task just put on the done
 * list (lock held); false: it hears with a later one, a batch per wake-up */
static bool tell(bool urgent) {
  if (P.told) return false; /* one pending already: it takes the whole list */
  uint64_t now = dt__now_ns();
  /* low_water 0: long tasks, no timer either (on_tick): never held */
  if (!urgent && P.low_water > 0 && P.q_head && P.q_len > P.low_water && !P.stop) {
    if (!P.held_since) P.held_since = now;
    if (now - P.held_since < DT__POOL_MAX_HOLD_NS) return false;
  }
  P.told = true;
  P.held_since = 0;
  return true;
}

static void *pool_main(void *arg) {
  int idx = (int)(intptr_t)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals go to the loop thread */
  pthread_mutex_lock(&P.lock);
  for (;;) {
    if (!P.q_head || P.active >= dt__worker.nthreads) {
      P.idle++;
      while ((!P.q_head || P.active >= dt__worker.nthreads) && !P.stop) pthread_cond_wait(&P.cond, &P.lock);
      P.idle--;
    }
    if (P.stop) break;
    P.active++;
    w_task *t = P.q_head;
    P.q_head = t->next_done;
    P.q_len--;
    if (!P.q_head) P.q_tail = NULL;
    pthread_mutex_unlock(&P.lock);
  run:;
    struct dt_task ctx = {t->key, t->func, dt_list_get(t->call, 0), dt_list_get(t->call, 1), NULL, 0,
                          false, false, false, false};
    uint64_t t0 = dt__now_ns();
    slot_set(idx, t);
    dt__task_current = &ctx;
    dt_value *res = t->fn(&ctx);
    dt__task_current = NULL;
    dt__task_after_run(&ctx); /* its submissions reach the scheduler first */
    slot_set(idx, NULL);
    if (ctx.reschedule && !ctx.err) {
      dt_value_free(res);
      res = NULL;
      t->reschedule = true;
      ctx.err = dt__xstrdup("rescheduled");
    }
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

    pthread_mutex_lock(&P.lock);
    /* a task sent ahead waits only for this result: run it now, here
     * (ahead.c); the result is referenced before the loop may take it */
    w_task *u = t->result && !t->reschedule && !ctx.seceded && !P.stop ? t->then : NULL;
    if (u) {
      t->then = NULL;
      t->handed = u;
      u->claimed = true;
      dt__ahead_bind(u, t->key, t->result); /* u is this thread's alone now */
    }
    t->ran = true;
    t->next_done = P.done_head;
    P.done_head = t;
    if (ctx.seceded) __atomic_sub_fetch(&P.nseceded, 1, __ATOMIC_RELAXED); /* ended seceded: no slot */
    else if (!u) P.active--;
    pthread_cond_broadcast(&P.rejoin_cond);
    if (P.q_head && !u) pthread_cond_signal(&P.cond);
    /* failures, seceded tasks and producers of tasks sent ahead: at once */
    bool wake = tell(!t->result || ctx.seceded || u || t->then);
    if (u) {
      pthread_mutex_unlock(&P.lock);
      if (wake) uv_async_send(&P.done_async);
      t = u;
      goto run;
    }
    if (wake) { /* the next task is taken under the same lock otherwise */
      pthread_mutex_unlock(&P.lock);
      uv_async_send(&P.done_async);
      pthread_mutex_lock(&P.lock);
    }
  }
  pthread_mutex_unlock(&P.lock);
  return NULL;
}

static void on_async(uv_async_t *h) {
  (void)h;
  pthread_mutex_lock(&P.lock);
  w_task *list = P.done_head;
  P.done_head = NULL;
  P.told = false;
  P.held_since = 0;
  dt_vec sec = P.seceded_keys;
  memset(&P.seceded_keys, 0, sizeof(P.seceded_keys));
  pthread_mutex_unlock(&P.lock);
  for (size_t i = 0; i < sec.len; i++) {
    if (P.on_secede) P.on_secede(sec.v[i]);
    free(sec.v[i]);
  }
  dt__vec_free(&sec);
  /* the list is newest first: reverse it to report in completion order */
  w_task *rev = NULL;
  while (list) {
    w_task *n = list->next_done;
    list->next_done = rev;
    rev = list;
    list = n;
  }
  P.on_done(rev);
}

/* every ms while the pool batches: a task finished before a long one (or
 * one that waits for something) is taken without waiting for that one */
static void on_tick(uv_timer_t *h) {
  pthread_mutex_lock(&P.lock);
  bool any = P.done_head != NULL, busy = P.q_head || P.active > 0;
  pthread_mutex_unlock(&P.lock);
  if (any) on_async(NULL);
  else if (!busy) uv_timer_stop(h);
}

void dt__pool_start(uv_loop_t *loop, int nthreads, char *slots, void (*on_done)(w_task *list)) {
  P.nthreads = nthreads;
  P.slots = slots;
  P.on_done = on_done;
  pthread_mutexattr_t ma; /* adaptive: spins a little before sleeping (the loop holds it briefly) */
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(&P.lock, &ma);
  pthread_mutexattr_destroy(&ma);
  pthread_cond_init(&P.cond, NULL);
  pthread_cond_init(&P.rejoin_cond, NULL);
  uv_async_init(loop, &P.done_async, on_async);
  uv_timer_init(loop, &P.tick);
  P.cap_threads = nthreads;
  P.nslots = nthreads;
  P.threads = dt__xcalloc((size_t)nthreads, sizeof(pthread_t));
  dt__task_env_t env = {pool_secede, pool_rejoin, dt__link.sched_addr, dt__worker.name,
                        dt__worker.address, nthreads};
  dt__task_env_set(&env);
  for (int i = 0; i < nthreads; i++) pthread_create(&P.threads[i], NULL, pool_main, (void *)(intptr_t)i);
}

void dt__pool_on_secede(void (*fn)(const char *key)) { P.on_secede = fn; }

void dt__pool_submit(w_task *head, w_task *tail, int n, int low_water) {
  pthread_mutex_lock(&P.lock);
  tail->next_done = NULL;
  if (P.q_tail) P.q_tail->next_done = head;
  else P.q_head = head;
  P.q_tail = tail;
  P.q_len += n;
  P.low_water = low_water;
  /* a thread running a task takes the next one itself: wake only idle ones */
  for (int i = 0; i < n && i < P.idle; i++) pthread_cond_signal(&P.cond);
  /* results are held back (tell) only while more than low_water wait, and
   * only a submit adds to the queue: with no more than that, no timer (a
   * repeating timer for every lone task cost ~20-30 us of submit-to-result
   * latency here) */
  bool may_hold = low_water > 0 && P.q_len > low_water;
  pthread_mutex_unlock(&P.lock);
  if (may_hold && !uv_is_active((uv_handle_t *)&P.tick) && !uv_is_closing((uv_handle_t *)&P.tick))
    uv_timer_start(&P.tick, on_tick, 1, 1);
}

bool dt__pool_link(w_task *p, w_task *u) {
  pthread_mutex_lock(&P.lock);
  bool ok = !p->ran && !p->then;
  if (ok) {
    p->then = u;
    u->chained_from = p;
    u->chained = true;
  }
  pthread_mutex_unlock(&P.lock);
  return ok;
}

bool dt__pool_unlink(w_task *u) {
  pthread_mutex_lock(&P.lock);
  bool claimed = u->claimed;
  if (!claimed && u->chained) {
    if (u->chained_from && u->chained_from->then == u) u->chained_from->then = NULL;
    u->chained = false;
    u->chained_from = NULL;
  }
  pthread_mutex_unlock(&P.lock);
  return claimed;
}

void dt__pool_stop(void) {
  pthread_mutex_lock(&P.lock);
  P.stop = true;
  pthread_cond_broadcast(&P.cond);
  pthread_cond_broadcast(&P.rejoin_cond);
  int n = P.nthreads;
  pthread_mutex_unlock(&P.lock);
  for (int i = 0; i < n; i++) pthread_join(P.threads[i], NULL);
  free(P.threads);
  for (size_t i = 0; i < P.seceded_keys.len; i++) free(P.seceded_keys.v[i]);
  dt__vec_free(&P.seceded_keys);
  pthread_mutex_destroy(&P.lock);
  pthread_cond_destroy(&P.cond);
  pthread_cond_destroy(&P.rejoin_cond);
  memset(&P, 0, sizeof(P)); /* a worker may start again (in-process) */
  dt__task_env_set(&(dt__task_env_t){0}); /* its strings are about to go */
}
