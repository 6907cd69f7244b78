/*
 * journal.c -- writing the scheduler's journal (journal.h): the hooks
 * append records to one growing buffer (no allocation per task: the buffer
 * keeps its memory), the loop's prepare and check handles write it out
 * with one write() each (before net/ flushes that turn's replies, so what a
 * peer was told is on file first; never fsync: a process crash loses
 * nothing written, a machine crash loses at most a tail, which costs
 * recomputation); past max(limit, 2 x the last snapshot) bytes the file is
 * compacted: a snapshot of the live state into FILE.tmp, renamed over FILE.
 *
 * Start-up: an existing file is replayed (journal_replay.c); then a fresh
 * snapshot replaces it.  Recovery: the workers of before are kept paused
 * until each is back (or --journal-grace passes), so that a result one of
 * them holds is not recomputed by another; the recovery client holds what
 * the clients of before wanted until each has come back (RESUME) or the
 * client grace passes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord_int.h"
#include "journal.h"
#include "sched_int.h"
#include "server.h"

bool dt__journal_on;
void dt__journal_set_holder(s_client *c, uint32_t pending);

static struct {
  bool open;
  int fd;
  char *path;
  uint8_t id[16];
  uint8_t *buf;
  size_t len, cap, rec;
  /* the last record can take more keys (JR_WANT: rec_want): its type,
   * client and running CRC; cleared by any other record and every write */
  bool m_open;
  int m_type;
  uint32_t m_client, m_crc;
  /* deletions waiting to become one record each (pend_key): releases of
   * one client, released errors, forgotten keys */
  struct pend {
    uint8_t *b;
    size_t len, cap;
    uint32_t client;
  } pend[3];
  uint64_t max_bytes;
  dt_journal_stats st;
  sched *s;
  bool handles;
  uv_prepare_t prep;
  uv_check_t chk;
  uv_timer_t wgrace, cgrace;
} J;

void dt__journal_stats(dt_journal_stats *out) { *out = J.st; }
bool dt__journal_recovering(void) { return J.st.recovering; }

/* ---------------------------------------------------------------- records */

static __attribute__((noinline)) void grow(size_t n) {
  size_t nc = J.cap ? J.cap : 1 << 16;
  while (nc < J.len + n) nc *= 2;
  J.buf = dt__xrealloc(J.buf, nc);
  J.cap = nc;
}
static inline void room(size_t n) {
  if (__builtin_expect(J.len + n > J.cap, 0)) grow(n);
}
static inline void put(const void *p, size_t n) {
  room(n);
  memcpy(J.buf + J.len, p, n);
  J.len += n;
}
/* little-endian n-byte integer at p (room already made) */
static inline void le_at(uint8_t *p, uint64_t v, int n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(p, &v, (size_t)n);
#else
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
#endif
}
static inline void put_n(uint64_t v, int n) {
  room((size_t)n);
  le_at(J.buf + J.len, v, n);
  J.len += (size_t)n;
}
static inline void put_str(const char *s, size_t n) {
  room(4 + n);
  le_at(J.buf + J.len, n, 4);
  memcpy(J.buf + J.len + 4, s, n);
  J.len += 4 + n;
}
static void put_cstr(const char *s) { put_str(s ? s : "", s ? strlen(s) : 0); }
static void put_f64(double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  put_n(u, 8);
}
static void emit_pending(void);
static void begin(int type) {
  emit_pending(); /* deletions go first: what follows may bring a key back */
  room(9);
  J.m_open = false;
  J.rec = J.len;
  J.len += 8;
  J.buf[J.len++] = (uint8_t)type;
}
static uint32_t end_crc(void) {
  uint32_t L = (uint32_t)(J.len - J.rec - 8);
  uint32_t crc = dt__crc32c(0, J.buf + J.rec + 8, L);
  le_at(J.buf + J.rec, L, 4);
  le_at(J.buf + J.rec + 4, crc, 4);
  J.st.records++;
  return crc;
}
static void end(void) { (void)end_crc(); }
static void put_payload(const dt_payload *p) {
  put_str(p->body ? p->body : "", p->body ? p->len : 0);
  put_n(p->nframes, 4);
  for (uint32_t i = 0; i < p->nframes; i++) {
    put_n(p->frames[i].len, 8);
    put(p->frames[i].p, p->frames[i].len);
  }
}

/* Records of keys: a map of 100,000 keys wanted, released and forgotten
 * costs a few records, not 300,000 (each with its header and CRC).
 * Wants: a want of the same client right after its last want record joins
 * it (the CRC-32C continues over the appended key).  Deletions (a client's
 * releases, released errors, forgotten keys) wait in pend[] and become one
 * record each when any other record begins or the buffer is written: they
 * only remove keys from the replay's maps, so their order among themselves
 * does not matter, and nothing that could bring a key back passes them. */
#define JR_MERGE_MAX (1u << 20) /* a merged record's size, at most */
enum { PEND_RELEASE, PEND_RELEASED, PEND_FORGET };
static const int pend_type[3] = {JR_RELEASE, JR_RELEASED, JR_FORGET};

static void emit_one(int i) {
  struct pend *p = &J.pend[i];
  if (!p->len) return;
  size_t body = (i == PEND_RELEASE ? 4 : 0) + p->len;
  room(9 + body);
  size_t rec = J.len;
  uint8_t *h = J.buf + rec;
  h[8] = (uint8_t)pend_type[i];
  size_t at = rec + 9;
  if (i == PEND_RELEASE) {
    le_at(J.buf + at, p->client, 4);
    at += 4;
  }
  memcpy(J.buf + at, p->b, p->len);
  J.len = at + p->len;
  le_at(J.buf + rec, (uint32_t)(J.len - rec - 8), 4);
  le_at(J.buf + rec + 4, dt__crc32c(0, J.buf + rec + 8, J.len - rec - 8), 4);
  J.st.records++;
  J.m_open = false;
  p->len = 0;
}
static void emit_pending(void) {
  for (int i = 0; i < 3; i++) emit_one(i);
}
static void pend_key(int i, uint32_t client, const char *key, size_t klen) {
  struct pend *p = &J.pend[i];
  if (p->len && (p->client != client || p->len + 4 + klen > JR_MERGE_MAX)) emit_one(i);
  if (p->len + 4 + klen > p->cap) {
    size_t nc = p->cap ? p->cap : 4096;
    while (nc < p->len + 4 + klen) nc *= 2;
    p->b = dt__xrealloc(p->b, nc);
    p->cap = nc;
  }
  le_at(p->b + p->len, klen, 4);
  memcpy(p->b + p->len + 4, key, klen);
  p->len += 4 + klen;
  p->client = client;
}
static void drop_pending(void) {
  for (int i = 0; i < 3; i++) J.pend[i].len = 0;
}

static void rec_want(uint32_t client, const char *key, size_t klen) {
  emit_pending();
  if (J.m_open && J.m_type == JR_WANT && J.m_client == client && J.len - J.rec < JR_MERGE_MAX) {
    size_t at = J.len;
    put_str(key, klen);
    J.m_crc = dt__crc32c(J.m_crc, J.buf + at, J.len - at);
    le_at(J.buf + J.rec, (uint32_t)(J.len - J.rec - 8), 4);
    le_at(J.buf + J.rec + 4, J.m_crc, 4);
    return;
  }
  begin(JR_WANT);
  put_n(client, 4);
  put_str(key, klen);
  J.m_crc = end_crc();
  J.m_open = true;
  J.m_type = JR_WANT;
  J.m_client = client;
}

void dt__jw_begin(int type) { begin(type); }
void dt__jw_end(void) { end(); }
void dt__jw_n(uint64_t v, int n) { put_n(v, n); }
void dt__jw_str(const char *s, size_t n) { put_str(s, n); }
void dt__jw_payload(const dt_payload *p) { put_payload(p); }

/* ---------------------------------------------------------------- hooks */

void dt__journal_graph(const s_client *c, const s_newtask *ts, uint32_t n, const char **wanted,
                       const uint32_t *wanted_lens, uint32_t nwanted, const char *const *raw,
                       const uint32_t *raw_lens) {
  for (uint32_t i = 0; i < n; i++) {
    const s_newtask *t = &ts[i];
    if (raw && t->spec.nframes == 0) { /* the bytes the client encoded: one copy */
      begin(JR_TASKW);
      put(raw[i], raw_lens[i]);
      end();
      continue;
    }
    begin(JR_TASK);
    put_str(t->key, t->klen);
    put_str(t->func, t->flen);
    put_n((uint64_t)t->priority, 8);
    put_n((uint32_t)t->retries, 4);
    put_f64(t->timeout);
    put_n(t->ndeps, 4);
    for (uint32_t k = 0; k < t->ndeps; k++) put_str(t->dep_keys[k], t->dep_lens[k]);
    put_n(t->nrestrict, 4);
    for (uint32_t k = 0; k < t->nrestrict; k++) put_str(t->restrict_to[k], t->restrict_lens[k]);
    put_n(t->loose, 1);
    put_n(t->nres, 4);
    for (uint32_t k = 0; k < t->nres; k++) {
      put_str(t->res_names[k], t->res_name_lens[k]);
      put_f64(t->res_amounts[k]);
    }
    put_payload(&t->spec);
    end();
  }
  for (uint32_t i = 0; i < nwanted; i++) dt__journal_want(c, wanted[i], wanted_lens[i], true);
}

void dt__journal_client(const s_client *c, bool gone) {
  begin(gone ? JR_CLIENT_GONE : JR_CLIENT);
  put_n(c->id, 4);
  if (!gone) {
    put_n(c->conn == NULL, 1);
    put_cstr(c->name);
  }
  end();
}

void dt__journal_want(const s_client *c, const char *key, uint32_t klen, bool want) {
  if (want) rec_want(c->id, key, klen);
  else pend_key(PEND_RELEASE, c->id, key, klen);
}

void dt__journal_holds(const s_task *t, const s_worker *w) {
  begin(JR_MEMORY);
  put_str(t->key, t->klen);
  put_n(t->nbytes, 8);
  put_cstr(w->address);
  end();
}

void dt__journal_erred(const s_task *t) {
  const s_task_rare *r = RARE(t);
  begin(JR_ERRED);
  put_str(t->key, t->klen);
  put_n((uint32_t)r->err_code, 4);
  put_cstr(r->err_key);
  put_cstr(r->err_func);
  put_cstr(r->err_worker);
  put_cstr(r->err_msg);
  end();
}

void dt__journal_transition(const s_task *t, int from, int to) {
  if (to == TS_FORGOTTEN) pend_key(PEND_FORGET, 0, t->key, t->klen);
  else if (to == TS_RELEASED && from == TS_ERRED) /* a retry: the error is gone */
    pend_key(PEND_RELEASED, 0, t->key, t->klen);
}

void dt__journal_dataset(const char *name, const struct coord_val *v) {
  begin(v ? JR_DATASET : JR_DATASET_GONE);
  put_cstr(name);
  if (v) {
    put_payload(&v->pl);
    put_n(v->nkeys, 4);
    for (uint32_t i = 0; i < v->nkeys; i++) put_cstr(v->keys[i]);
  }
  end();
}

void dt__journal_worker(const s_worker *w, bool gone) {
  begin(gone ? JR_WORKER_GONE : JR_WORKER);
  put_cstr(w->address);
  end();
}

/* ---------------------------------------------------------------- writing */

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static void failed(const char *what) {
  DT_ERROR("journal %s: %s: %s; journaling stops (a crash from now on loses the graph)",
           J.path, what, strerror(errno));
  J.st.failed = true;
  dt__journal_on = false;
  J.len = 0;
  J.m_open = false;
  drop_pending();
}

/* snapshot: the live state as records, written to fd as the buffer fills */
static int snapshot(int fd) {
  sched *s = J.s;
  begin(JR_SNAPSHOT);
  put_n(s->tasks.len, 8);
  end();
  for (size_t i = 0; i < s->workers.len; i++) dt__journal_worker(s->workers.v[i], false);
  for (size_t i = 0; i < s->tasks.cap; i++) {
    s_task *t = s->tasks.slots[i].t;
    if (!t) continue;
    const s_task_rare *r = RARE(t);
    s_newtask nt = {t->key, t->klen, t->func, (uint32_t)strlen(t->func), dt__task_spec(t), NULL, NULL,
                    0, t->priority, t->retries, NULL, NULL, r->nrestrict, r->loose, NULL, NULL,
                    r->res_amounts, r->nres, r->timeout, true};
    const char *dk[64], *rk[64], *rn[64];
    uint32_t dl[64], rl[64], nl[64];
    const char **dkp = t->ndeps <= 64 ? dk : dt__xmalloc(t->ndeps * sizeof(char *));
    uint32_t *dlp = t->ndeps <= 64 ? dl : dt__xmalloc(t->ndeps * sizeof(uint32_t));
    for (uint32_t k = 0; k < t->ndeps; k++) {
      dkp[k] = t->deps[k]->key;
      dlp[k] = t->deps[k]->klen;
    }
    nt.dep_keys = dkp;
    nt.dep_lens = dlp;
    nt.ndeps = t->ndeps;
    if (nt.nrestrict > 64) nt.nrestrict = 64;
    for (uint32_t k = 0; k < nt.nrestrict; k++) {
      rk[k] = r->restrict_to[k];
      rl[k] = (uint32_t)strlen(rk[k]);
    }
    nt.restrict_to = rk;
    nt.restrict_lens = rl;
    if (nt.nres > 64) nt.nres = 64;
    for (uint32_t k = 0; k < nt.nres; k++) {
      rn[k] = r->res_names[k];
      nl[k] = (uint32_t)strlen(rn[k]);
    }
    nt.res_names = rn;
    nt.res_name_lens = nl;
    dt__journal_graph(NULL, &nt, 1, NULL, NULL, 0, NULL, NULL);
    if (dkp != dk) free(dkp);
    if (dlp != dl) free(dlp);
    if (t->state == TS_MEMORY)
      for (uint32_t k = 0; k < t->who_has.len; k++) dt__journal_holds(t, t->who_has.v[k]);
    else if (t->state == TS_ERRED) dt__journal_erred(t);
    if (J.len >= (1u << 20)) {
      if (write_all(fd, J.buf, J.len) != 0) return -1;
      J.len = 0;
      J.m_open = false;
    }
  }
  if (s == &dt__srv.s) /* the daemon's: the coordination state is its */
    for (size_t i = 0; i < dt__coord_st.datasets.cap; i++)
      if (dt__coord_st.datasets.slots[i].key) {
        const dataset *d = dt__coord_st.datasets.slots[i].val;
        dt__journal_dataset(d->name, d->val);
      }
  if (s == &dt__srv.s) dt__journal_coord_snapshot();
  for (size_t i = 0; i < s->clients.len; i++) {
    s_client *c = s->clients.v[i];
    dt__journal_client(c, false);
    for (size_t k = 0; k < c->wants.cap; k++)
      if (c->wants.slots[k].t)
        dt__journal_want(c, c->wants.slots[k].t->key, c->wants.slots[k].t->klen, true);
  }
  int rc = write_all(fd, J.buf, J.len);
  J.len = 0;
  J.m_open = false;
  return rc;
}

/* compact: FILE.tmp gets the header and a snapshot, then replaces FILE */
static int compact(void) {
  size_t plen = strlen(J.path) + 8;
  char *tmp = dt__xmalloc(plen);
  snprintf(tmp, plen, "%s.tmp", J.path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  uint8_t hdr[DT_JOURNAL_HDR];
  dt__journal_header(hdr, J.id);
  J.len = 0; /* what the turn appended stays out: the snapshot has it */
  J.m_open = false;
  drop_pending();
  if (fd < 0 || write_all(fd, hdr, sizeof(hdr)) != 0 || snapshot(fd) != 0 ||
      rename(tmp, J.path) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    free(tmp);
    errno = e;
    return -1;
  }
  free(tmp);
  struct stat sb;
  fstat(fd, &sb);
  if (J.fd >= 0) close(J.fd);
  J.fd = fd;
  J.st.file_bytes = J.st.snapshot_bytes = (uint64_t)sb.st_size;
  J.st.written += (uint64_t)sb.st_size;
  J.st.compactions++;
  return 0;
}

void dt__journal_flush(void) {
  if (!J.open || J.st.failed) return;
  emit_pending();
  if (J.len == 0) return;
  if (write_all(J.fd, J.buf, J.len) != 0) {
    failed("write failed");
    return;
  }
  J.st.file_bytes += J.len;
  J.st.written += J.len;
  J.len = 0;
  J.m_open = false;
  uint64_t limit = J.max_bytes > 2 * J.st.snapshot_bytes ? J.max_bytes : 2 * J.st.snapshot_bytes;
  if (J.st.file_bytes > limit) {
    double t0 = dt__now_s();
    if (compact() != 0) failed("compaction failed");
    else
      DT_INFO("journal compacted to %llu bytes in %.3f s (%zu tasks)",
              (unsigned long long)J.st.file_bytes, dt__now_s() - t0, J.s->tasks.len);
  }
}

static void on_prep(uv_prepare_t *h) {
  (void)h;
  dt__journal_flush();
}
static void on_chk(uv_check_t *h) {
  (void)h;
  dt__journal_flush();
}

/* ---------------------------------------------------------------- recovery */

static void drop_holder(const char *why) {
  s_client *h = dt__journal_holder();
  if (!h) return;
  DT_INFO("journal: the recovery client lets go of %zu keys (%s)", h->wants.len, why);
  dt__journal_coord_orphans();
  dt__journal_set_holder(NULL, 0);
  dt__sched_remove_client(J.s, h);
}

static void end_recovery(const char *why) {
  if (!J.st.recovering) return;
  J.st.recovering = false;
  if (J.handles) uv_timer_stop(&J.wgrace);
  DT_INFO("journal: recovery done (%s); %zu workers resume", why, J.s->workers.len);
  for (size_t i = 0; i < J.s->workers.len; i++) dt__sched_worker_paused(J.s, J.s->workers.v[i], false);
}

static void on_wgrace(uv_timer_t *h) {
  (void)h;
  char why[96];
  snprintf(why, sizeof(why), "%zu workers of before did not come back in time",
           dt__journal_expected_workers());
  end_recovery(why);
  dt__srv_emit();
}
static void on_cgrace(uv_timer_t *h) {
  (void)h;
  char why[96];
  snprintf(why, sizeof(why), "%u clients of before did not come back in time",
           dt__journal_pending_clients());
  drop_holder(why);
  dt__srv_emit();
}

void dt__journal_worker_back(s_worker *w, bool after_held) {
  if (!after_held) {
    dt__journal_worker(w, false);
    if (J.st.recovering) dt__sched_worker_paused(J.s, w, true);
    return;
  }
  if (!J.st.recovering) return;
  if (dt__journal_expect_worker(w->address) && dt__journal_expected_workers() == 0)
    end_recovery("every worker of before is back");
}

void dt__journal_client_back(const s_client *c) {
  (void)c;
  uint32_t p = dt__journal_pending_clients();
  if (!dt__journal_holder() || p == 0) return;
  dt__journal_set_holder(dt__journal_holder(), p - 1);
  if (p == 1) drop_holder("every client of before is back");
}

/* ---------------------------------------------------------------- start */

static int read_file(int fd, uint8_t **out, size_t *len) {
  struct stat sb;
  if (fstat(fd, &sb) != 0) return -1;
  size_t n = (size_t)sb.st_size, got = 0;
  uint8_t *b = dt__xmalloc(n ? n : 1);
  while (got < n) {
    ssize_t k = read(fd, b + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    got += (size_t)k;
  }
  *out = b;
  *len = got;
  return 0;
}

int dt__journal_start(sched *s, uv_loop_t *loop, const char *path, const uint8_t id[16],
                      uint64_t max_bytes, double worker_grace_s, double client_grace_s, char *why,
                      size_t cap) {
  memset(&J.st, 0, sizeof(J.st));
  J.s = s;
  J.fd = -1;
  J.path = dt__xstrdup(path);
  memcpy(J.id, id, 16);
  J.max_bytes = max_bytes ? max_bytes : 64ull << 20;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno != ENOENT) {
    snprintf(why, cap, "cannot read the journal %s: %s", path, strerror(errno));
    free(J.path);
    return DT_EIO;
  }
  if (fd >= 0) {
    uint8_t *buf;
    size_t len, good;
    double t0 = dt__now_s();
    int rc = read_file(fd, &buf, &len);
    close(fd);
    if (rc != 0) {
      snprintf(why, cap, "cannot read the journal %s: %s", path, strerror(errno));
      free(J.path);
      return DT_EIO;
    }
    char w2[400];
    if (s == &dt__srv.s) {
      dt__journal_ds_restore = dt__coord_ds_restore;
      dt__journal_coord_install = true;
    }
    rc = dt__journal_replay_buf(s, buf, len, id, &good, w2, sizeof(w2));
    dt__journal_ds_restore = NULL;
    dt__journal_coord_install = false;
    free(buf);
    if (rc != 0) {
      snprintf(why, cap, "journal %s: %s; the scheduler refuses to start (move the file away to "
                         "start afresh)", path, w2);
      free(J.path);
      return rc;
    }
    J.st.replay_s = dt__now_s() - t0;
    J.st.recovering = dt__journal_expected_workers() > 0;
    DT_INFO("journal %s replayed in %.3f s: %zu tasks, %u clients and %zu workers of before "
            "awaited", path, J.st.replay_s, s->tasks.len, dt__journal_pending_clients(),
            dt__journal_expected_workers());
  }
  J.open = true;
  dt__journal_on = true;
  if (compact() != 0) {
    snprintf(why, cap, "cannot write the journal %s: %s", path, strerror(errno));
    dt__journal_on = false;
    J.open = false;
    free(J.path);
    return DT_EIO;
  }
  J.st.compactions = 0;
  if (loop) {
    J.handles = true;
    uv_prepare_init(loop, &J.prep); /* started after net/'s: they run before its flush */
    uv_prepare_start(&J.prep, on_prep);
    uv_check_init(loop, &J.chk);
    uv_check_start(&J.chk, on_chk);
    uv_unref((uv_handle_t *)&J.prep);
    uv_unref((uv_handle_t *)&J.chk);
    uv_timer_init(loop, &J.wgrace);
    uv_timer_init(loop, &J.cgrace);
    uv_unref((uv_handle_t *)&J.wgrace);
    uv_unref((uv_handle_t *)&J.cgrace);
    if (J.st.recovering)
      uv_timer_start(&J.wgrace, on_wgrace, (uint64_t)(worker_grace_s * 1000), 0);
    if (dt__journal_holder())
      uv_timer_start(&J.cgrace, on_cgrace, (uint64_t)(client_grace_s * 1000), 0);
  }
  return 0;
}

void dt__journal_stop(void) {
  if (!J.open) return;
  dt__journal_flush();
  dt__journal_on = false;
  J.open = false;
  if (J.fd >= 0) close(J.fd);
  J.fd = -1;
  free(J.path);
  J.path = NULL;
  free(J.buf);
  J.buf = NULL;
  J.len = J.cap = 0;
  for (int i = 0; i < 3; i++) {
    free(J.pend[i].b);
    J.pend[i] = (struct pend){0};
  }
  dt__journal_replay_forget();
}

/* ---------------------------------------------------------------- clients */

void dt__journal_welcome(void *conn) {
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(conn), DT_OP_RECONNECTABLE);
  dt__e_uint(&e, 120000);
  dt__e_end(&e);
}

int dt__journal_on_resume(struct dt_conn *c, const dt_msg *m) {
  s_client *cl = c->data;
  dt_list l = m->RESUME.keys;
  dt_sv k;
  uint32_t n = 0;
  while (dt__next_key(&l, &k)) {
    dt__sched_client_want(J.s ? J.s : &dt__srv.s, cl, k.p, k.len);
    n++;
  }
  DT_INFO("client %s is back, holding %u futures", cl->name, n);
  if (dt__journal_on) dt__journal_client_back(cl);
  return 0;
}

void dt__journal_info(dt_enc *e) {
  dt__e_cstr(e, "journal_bytes");
  dt__e_uint(e, J.open ? J.st.file_bytes + J.len : 0);
  dt__e_cstr(e, "journal_compactions");
  dt__e_uint(e, J.st.compactions);
  dt__e_cstr(e, "journal_replay_us");
  dt__e_uint(e, (uint64_t)(J.st.replay_s * 1e6));
}
