/*
 * store.c -- the results this worker holds: a hash map from key to value,
 * the bytes they take, a least-recently-used list, and spilling to disk
 * (docs/memory.md).  Results go to disk, least recently used first, when
 * the managed bytes pass the target fraction of the memory limit, or the
 * process's RSS passes the spill fraction; a result spilled is read back
 * when a task or a peer needs it.  Over the pause fraction the worker
 * starts no new task; over terminate it exits (Dask's thresholds).
 *
 * A spill file is the value's payload: a header of two uint64 (body length,
 * frame count), one uint64 length per frame, the body, then the frames.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "worker_int.h"

w_store dt__store;
#define S dt__store

static void lru_unlink(w_data *d) {
  if (d->lru_prev) d->lru_prev->lru_next = d->lru_next;
  else if (S.lru_head == d) S.lru_head = d->lru_next;
  if (d->lru_next) d->lru_next->lru_prev = d->lru_prev;
  else if (S.lru_tail == d) S.lru_tail = d->lru_prev;
  d->lru_prev = d->lru_next = NULL;
}
static void lru_append(w_data *d) {
  d->lru_prev = S.lru_tail;
  d->lru_next = NULL;
  if (S.lru_tail) S.lru_tail->lru_next = d;
  else S.lru_head = d;
  S.lru_tail = d;
}

static void spill_path(const w_data *d, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%llu.spill", S.spill_dir, (unsigned long long)d->spill_id);
}

/* drop d's value (in memory or on disk), keeping the entry */
static void drop_value(w_data *d) {
  if (d->spilled) {
    char path[700];
    spill_path(d, path, sizeof(path));
    unlink(path);
    S.spilled_bytes -= d->nbytes;
    d->spilled = false;
  } else {
    S.nbytes -= d->nbytes;
    dt_value_free(d->v);
    lru_unlink(d);
  }
  d->v = NULL;
}

w_data *dt__store_put(const char *key, uint32_t klen, dt_value *v, bool replica) {
  w_data *d = dt__smap_get(&S.data, key, klen);
  if (d) { /* replace (e.g. recomputed) */
    drop_value(d);
  } else {
    d = dt__xcalloc(1, sizeof(*d));
    d->key = dt__xstrndup(key, klen);
    d->klen = klen;
    dt__smap_put(&S.data, d->key, klen, d);
  }
  d->v = v;
  d->nbytes = dt__value_nbytes(v);
  d->replica = replica;
  S.nbytes += d->nbytes;
  lru_append(d);
  if (S.mem_limit) dt__store_check(false);
  if (S.nbytes > S.peak_nbytes) S.peak_nbytes = S.nbytes;
  return d;
}

void dt__store_del(w_data *d) {
  dt__smap_del(&S.data, d->key, d->klen);
  drop_value(d);
  free(d->key);
  free(d);
}

/* spill: write d to the spill folder and free it (only if nothing else
 * holds the value: a running task may be using it) */
static bool spill(w_data *d) {
  if (d->spilled || atomic_load(&d->v->refs) != 1) return false;
  dt_payload p;
  if (dt__payload_encode(d->v, &p, NULL) != 0) return false;
  d->spill_id = ++S.spill_seq;
  if (!S.spill_made) { /* made at the first spill: a worker that never spills leaves nothing */
    if (mkdir(S.spill_dir, 0700) != 0 && errno != EEXIST)
      DT_WARN("cannot make the spill folder %s: %s", S.spill_dir, strerror(errno));
    S.spill_made = true;
  }
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
  S.nbytes -= d->nbytes;
  S.spilled_bytes += d->nbytes;
  S.spilled_total += d->nbytes;
  return true;
}

/* read_spill: the value in spill file f, or NULL */
static dt_value *read_spill(FILE *f) {
  uint64_t hdr[2];
  if (fread(hdr, sizeof(hdr), 1, f) != 1 || hdr[0] > DT_MAX_BODY || hdr[1] > DT_MAX_FRAMES)
    return NULL;
  dt_payload p = {0};
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
  if (ok && dt__payload_decode(&p, &v) != 0) v = NULL;
  dt__payload_clear(&p);
  return v;
}

int dt__store_unspill(w_data *d) {
  if (!d->spilled) {
    lru_unlink(d); /* used now: most recently */
    lru_append(d);
    return 0;
  }
  char path[700];
  spill_path(d, path, sizeof(path));
  FILE *f = fopen(path, "rb");
  dt_value *v = f ? read_spill(f) : NULL;
  if (f) fclose(f);
  if (!v) {
    DT_ERROR("cannot read spilled %s back from %s", d->key, path);
    return DT_EIO;
  }
  d->v = v;
  unlink(path);
  d->spilled = false;
  S.spilled_bytes -= d->nbytes;
  S.nbytes += d->nbytes;
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

/* dt__store_check: Dask's thresholds.  Managed bytes over target: spill the
 * least recently used results.  With the process's RSS (read on a timer,
 * never per task): over spill, spill more; over pause, take no new tasks
 * until it falls; over terminate, exit (the nanny restarts us and the
 * scheduler recomputes what we held). */
void dt__store_check(bool with_rss) {
  uint64_t target = (uint64_t)((double)S.mem_limit * S.mem_target);
  for (w_data *d = S.lru_head; d && S.mem_target > 0 && S.nbytes > target;) {
    w_data *next = d->lru_next;
    spill(d);
    d = next;
  }
  if (!with_rss) return;
  S.rss = read_rss();
  if (S.mem_terminate > 0 && S.rss > (uint64_t)((double)S.mem_limit * S.mem_terminate)) {
    DT_ERROR("memory use %llu bytes is over %.0f%% of the limit %llu: exiting",
             (unsigned long long)S.rss, S.mem_terminate * 100, (unsigned long long)S.mem_limit);
    dt__nanny_exit_intent(DT__EXIT_MEMORY);
    fflush(NULL);
    _exit(DT__EXIT_MEMORY);
  }
  if (S.mem_spill > 0 && S.rss > (uint64_t)((double)S.mem_limit * S.mem_spill)) {
    uint64_t want = S.rss - (uint64_t)((double)S.mem_limit * S.mem_spill), freed = 0;
    for (w_data *d = S.lru_head; d && freed < want;) {
      w_data *next = d->lru_next;
      uint64_t nb = d->nbytes;
      if (spill(d)) freed += nb;
      d = next;
    }
    if (freed) S.rss = read_rss();
  }
  bool pause = dt__lifetime_draining ||
               (S.mem_pause > 0 && S.rss > (uint64_t)((double)S.mem_limit * S.mem_pause));
  if (pause != S.paused) {
    S.paused = pause;
    DT_INFO("%s: memory use %llu bytes, limit %llu", pause ? "paused" : "resumed",
            (unsigned long long)S.rss, (unsigned long long)S.mem_limit);
    if (S.on_pause) S.on_pause(pause);
  }
}

static void on_memtimer(uv_timer_t *h) {
  (void)h;
  dt__store_check(true);
}

void dt__store_init(uv_loop_t *loop, void (*on_pause)(bool paused)) {
  dt__smap_init(&S.data);
  S.on_pause = on_pause;
  uv_timer_init(loop, &S.memtimer);
  if (!S.mem_limit) return;
  /* spill files: a folder of our own under the local directory (cwd) */
  char cwd[400];
  if (!getcwd(cwd, sizeof(cwd))) snprintf(cwd, sizeof(cwd), "/tmp");
  snprintf(S.spill_dir, sizeof(S.spill_dir), "%s/dtask-spill-%d", cwd, (int)getpid());
  uv_timer_start(&S.memtimer, on_memtimer, 100, 100);
}

void dt__store_destroy(void) {
  for (size_t i = 0; i < S.data.cap; i++)
    if (S.data.slots[i].key) {
      w_data *d = S.data.slots[i].val;
      if (d->spilled) {
        char path[700];
        spill_path(d, path, sizeof(path));
        unlink(path);
      }
      dt_value_free(d->v);
      free(d->key);
      free(d);
    }
  dt__smap_destroy(&S.data);
  if (S.spill_made) rmdir(S.spill_dir); /* empty by now: every spilled key was freed */
}
