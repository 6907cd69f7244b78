/*
 * nanny.c -- see nanny.h.  The nanny is single-threaded and runs no event
 * loop while a worker lives: it waits for its child with waitpid.  When the
 * child dies it reads the shared slots (what each pool thread was running),
 * reports to the scheduler over a short-lived connection (with the same
 * authentication as any peer), waits a backoff if workers die young, and
 * forks a new worker.  Only the nanny forks, and only while it has a single
 * thread, so the child starts from a clean state.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nanny.h"

static volatile sig_atomic_t stop_sig;
static uint64_t kill_rss; /* 0: no limit */

void dt__nanny_memory(uint64_t bytes) { kill_rss = bytes; }

static uint64_t rss_of(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
  FILE *f = fopen(path, "r");
  unsigned long size = 0, res = 0;
  if (f) {
    if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
    fclose(f);
  }
  return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}
static volatile pid_t child;
/* in the worker: the word of the shared memory where it says which exit it
 * means (0x100 | code), read by the nanny after waitpid */
static uint32_t *intent;
void dt__nanny_exit_intent(int code) {
  if (intent) __atomic_store_n(intent, 0x100u | (uint32_t)(code & 0xff), __ATOMIC_RELEASE);
}

static void on_stop_signal(int sig) {
  stop_sig = sig;
  if (child > 0) kill(child, sig);
}

/* ---------------------------------------------------------------- report */

typedef struct {
  uint64_t token;
  int pid;
  const char *how;
  char **keys;
  uint32_t *lens;
  uint32_t n;
  bool sent;
} report;

static void rep_connect(dt_conn *c, int status) {
  report *r = c->data;
  if (status < 0) return;
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_NANNY_REPORT);
  dt__e_uint(&e, r->token);
  dt__e_uint(&e, (uint64_t)r->pid);
  dt__e_cstr(&e, r->how);
  dt__e_list(&e, r->n);
  for (uint32_t i = 0; i < r->n; i++) dt__e_str(&e, r->keys[i], r->lens[i]);
  dt__e_end(&e);
  r->sent = true;
  dt__conn_close(c, true);
}
static int rep_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  (void)c, (void)op, (void)nf, (void)r;
  return 0;
}
static void rep_close(dt_conn *c) { (void)c; }
static const dt_conn_cbs rep_cbs = {rep_msg, rep_connect, rep_close};

static void rep_timeout(uv_timer_t *h) {
  dt_conn *c = h->data;
  if (c) dt__conn_close(c, false);
  uv_close((uv_handle_t *)h, NULL);
}

/* send_report: tells the scheduler, within 5 s or not at all */
static bool send_report(const char *addr, const struct dt_sec *sec, report *r) {
  uv_loop_t loop;
  dt_net net;
  uv_loop_init(&loop);
  dt__net_init(&net, &loop);
  net.sec = sec;
  dt_conn *c = NULL;
  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  if (dt__conn_connect(&net, addr, &rep_cbs, r, &c) == 0) {
    timer.data = c;
    uv_timer_start(&timer, rep_timeout, 5000, 0);
    uv_unref((uv_handle_t *)&timer);
  } else {
    DT_WARN("cannot report to the scheduler: %s", dt_last_error());
    uv_close((uv_handle_t *)&timer, NULL);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  if (!uv_is_closing((uv_handle_t *)&timer)) uv_close((uv_handle_t *)&timer, NULL);
  dt__net_close(&net);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return r->sent;
}

/* ---------------------------------------------------------------- supervise */

static void describe(int status, bool killed_for_memory, char *buf, size_t cap) {
  if (killed_for_memory)
    snprintf(buf, cap, "killed by its nanny: its memory went over %llu bytes (terminate threshold)",
             (unsigned long long)kill_rss);
  else if (WIFEXITED(status) && WEXITSTATUS(status) == DT__EXIT_MEMORY)
    snprintf(buf, cap, "exited: its memory went over the terminate threshold of its limit");
  else if (WIFSIGNALED(status))
    snprintf(buf, cap, "killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
             WCOREDUMP(status) ? ", core dumped" : "");
  else
    snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
}

static void nap(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (!stop_sig && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}


/* remove_spill_dir: the spill folder (and files) of worker pid, which is
 * gone; the worker makes it in the same directory as the nanny runs in */
static void remove_spill_dir(pid_t pid) {
  char sd[64];
  snprintf(sd, sizeof(sd), "dtask-spill-%d", (int)pid);
  DIR *dd = opendir(sd);
  if (!dd) return;
  struct dirent *e;
  while ((e = readdir(dd)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char fp[400];
    snprintf(fp, sizeof(fp), "%s/%s", sd, e->d_name);
    unlink(fp);
  }
  closedir(dd);
  rmdir(sd);
}
int dt__nanny_run(const char *sched_addr, int nthreads, const struct dt_sec *sec,
                  dt__worker_run_fn run, void *arg) {
  size_t len = (size_t)nthreads * DT__NANNY_SLOT + 64; /* the slots, then the intent word */
  char *slots = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (slots == MAP_FAILED) {
    DT_ERROR("nanny: cannot map %zu bytes of shared memory: %s", len, strerror(errno));
    return 1;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  pid_t self = getpid();
  double backoff = 0;
  int rc = 0, restarts = 0;
  for (;;) {
    uint64_t token = 0;
    while (token == 0)
      if (getrandom(&token, sizeof(token), 0) != sizeof(token)) token = dt__now_ns() ^ (uint64_t)self;
    memset(slots, 0, len);
    double started = dt__now_s();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
      DT_ERROR("nanny: fork: %s", strerror(errno));
      rc = 1;
      break;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL); /* the worker never outlives its nanny */
      if (getppid() != self) _exit(1);
      struct sigaction dfl = {0};
      dfl.sa_handler = SIG_DFL;
      sigaction(SIGTERM, &dfl, NULL);
      sigaction(SIGINT, &dfl, NULL);
      intent = (uint32_t *)(slots + (size_t)nthreads * DT__NANNY_SLOT);
      int wrc = run(token, slots, arg);
      dt__nanny_exit_intent(wrc);
      fflush(NULL);
      _exit(wrc);
    }
    child = pid;
    if (stop_sig) kill(pid, stop_sig); /* a signal that came just before */
    int status = 0;
    bool mem_kill = false;
    if (kill_rss) { /* watch its memory every 50 ms while waiting */
      for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) break;
        if (!mem_kill && rss_of(pid) > kill_rss) {
          DT_WARN("worker (pid %d) uses more than %llu bytes: killing it", (int)pid,
                  (unsigned long long)kill_rss);
          kill(pid, SIGKILL);
          mem_kill = true;
        }
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
      }
    } else {
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    child = 0;
    if (stop_sig) {
      remove_spill_dir(pid); /* stopped with us: it may not have cleaned up */
      rc = 0;
      break;
    }
    /* an exit status counts only when the worker said it meant it */
    uint32_t said = __atomic_load_n((uint32_t *)(slots + (size_t)nthreads * DT__NANNY_SLOT),
                                    __ATOMIC_ACQUIRE);
    bool meant = WIFEXITED(status) && said == (0x100u | (uint32_t)WEXITSTATUS(status));
    if (meant && (WEXITSTATUS(status) == DT__EXIT_OK || WEXITSTATUS(status) == DT__EXIT_GIVE_UP)) {
      rc = WEXITSTATUS(status);
      break;
    }
    bool asked = meant && WEXITSTATUS(status) == DT__EXIT_RESTART;
    bool lifetime = meant && WEXITSTATUS(status) == DT__EXIT_LIFETIME;
    asked |= lifetime;
    char how[200];
    describe(status, mem_kill, how, sizeof(how));
    if (WIFEXITED(status) && !meant) /* a task called exit(), or a library did */
      snprintf(how + strlen(how), sizeof(how) - strlen(how), " (not a worker's own exit: a task called exit?)");
    report r = {token, (int)pid, how, NULL, NULL, 0, false};
    r.keys = dt__xcalloc((size_t)nthreads, sizeof(char *));
    r.lens = dt__xcalloc((size_t)nthreads, sizeof(uint32_t));
    for (int i = 0; i < nthreads; i++) {
      const char *sl = slots + (size_t)i * DT__NANNY_SLOT;
      uint32_t kl = __atomic_load_n((const uint32_t *)sl, __ATOMIC_ACQUIRE);
      if (kl == 0 || kl > DT_MAX_KEY) continue;
      r.keys[r.n] = dt__xstrndup(sl + 4, kl);
      r.lens[r.n++] = kl;
    }
    remove_spill_dir(pid); /* the dead worker's spill files go with it */
    restarts++;
    if (asked) {
      DT_INFO("worker (pid %d) %s", (int)pid,
              lifetime ? "retired (its lifetime): starting a fresh one (--lifetime-restart)"
                       : "restarting, as a client asked");
    } else {
      DT_WARN("worker (pid %d) %s while running %u task(s)%s%s; restarting it (restart %d)",
              (int)pid, how, r.n, r.n ? ", first " : "", r.n ? r.keys[0] : "", restarts);
      send_report(sched_addr, sec, &r);
    }
    for (uint32_t i = 0; i < r.n; i++) free(r.keys[i]);
    free(r.keys);
    free(r.lens);
    /* a worker that dies as it starts (a crash loop) comes back more and
     * more slowly, up to 2 s; one that lived a while comes back at once */
    double lived = dt__now_s() - started;
    backoff = asked || lived > 0.5 ? 0 : backoff == 0 ? 0.05 : backoff * 2 > 2 ? 2 : backoff * 2;
    if (backoff > 0) nap(backoff);
    if (stop_sig) break;
  }
  munmap(slots, len);
  return rc;
}
