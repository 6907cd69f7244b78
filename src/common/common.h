/*
 * common.h -- internal helpers shared by every dtask process: error
 * reporting, logging, monotonic time, and small containers (string-keyed
 * hash map, binary heap, growable pointer vector).
 */
#ifndef DT_COMMON_H
#define DT_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtask.h"

/* ---- errors: set the thread's last error message and return err. */
int dt__err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dt__err_clear(void);

/* ---- logging to stderr, one line per event, naming the process. */
enum { DT_LOG_DEBUG = 0, DT_LOG_INFO, DT_LOG_WARNING, DT_LOG_ERROR, DT_LOG_OFF };
extern int dt__log_level;
void dt__log_init(const char *process_name, const char *level);
int dt__log_parse_level(const char *s); /* -1 if unknown */
void dt__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* dt__log_recent: the last n (at most DT_LOG_RING) lines logged by this
 * process, oldest first, copied into out (NUL-terminated, truncated), with
 * their levels (DT_LOG_*); returns how many.  Any thread. */
#define DT_LOG_RING 512
#define DT_LOG_RING_LINE 512
size_t dt__log_recent(char (*out)[DT_LOG_RING_LINE], int *levels, size_t n);
#define DT_DEBUG(...) do { if (dt__log_level <= DT_LOG_DEBUG) dt__log(DT_LOG_DEBUG, __VA_ARGS__); } while (0)
#define DT_INFO(...) do { if (dt__log_level <= DT_LOG_INFO) dt__log(DT_LOG_INFO, __VA_ARGS__); } while (0)
#define DT_WARN(...) do { if (dt__log_level <= DT_LOG_WARNING) dt__log(DT_LOG_WARNING, __VA_ARGS__); } while (0)
#define DT_ERROR(...) do { if (dt__log_level <= DT_LOG_ERROR) dt__log(DT_LOG_ERROR, __VA_ARGS__); } while (0)

/* ---- memory: abort on out-of-memory for small internal allocations. */
void *dt__xmalloc(size_t n);
void *dt__xcalloc(size_t n, size_t sz);
void *dt__xrealloc(void *p, size_t n);
char *dt__xstrdup(const char *s);
char *dt__xstrndup(const char *s, size_t n);

/* ---- time */
uint64_t dt__now_ns(void); /* monotonic */
double dt__now_s(void);
struct timespec;
/* dt__deadline: ts = now (CLOCK_MONOTONIC) + ms, for pthread_cond_timedwait
 * on condition variables created with that clock. */
void dt__deadline(struct timespec *ts, int ms);
/* dt__passed: true if the CLOCK_MONOTONIC deadline has passed. */
bool dt__passed(const struct timespec *ts);

/* ---- string-keyed hash map (open addressing, linear probing, backward-shift
 * deletion).  Keys are borrowed from the caller and must stay valid while the
 * entry exists (usually the key lives inside the stored value). */
typedef struct {
  const char *key;
  uint32_t klen;
  uint32_t hash;
  void *val;
} dt_map_slot;
typedef struct {
  dt_map_slot *slots;
  size_t cap; /* power of two or 0 */
  size_t len;
} dt_smap;
uint32_t dt__hash(const char *s, size_t n);
void dt__smap_init(dt_smap *m);
void dt__smap_destroy(dt_smap *m);
void *dt__smap_get(const dt_smap *m, const char *k, size_t klen);
/* dt__smap_put: inserts or replaces; returns the previous value or NULL. */
void *dt__smap_put(dt_smap *m, const char *k, size_t klen, void *val);
void *dt__smap_del(dt_smap *m, const char *k, size_t klen);
/* dt__smap_shrink: reallocate the table to fit its entries (after many
 * deletions), so that its memory goes back. */
void dt__smap_shrink(dt_smap *m);
/* Iterate: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... */

/* ---- binary heap of pointers; each item stores its own index (for O(log n)
 * removal) at the offset given at init. */
typedef bool (*dt_heap_less)(const void *a, const void *b);
typedef struct {
  size_t len;     /* items in it (the heap's and the run's) */
  void **items;   /* the heap */
  size_t hlen, cap;
  dt_heap_less less;
  size_t idx_off; /* offset of a size_t field in the item holding where it is */
  void **run;     /* items pushed in order, a ring (map.c) */
  size_t rlen, rcap, rhead, rtail;
} dt_heap;
void dt__heap_init(dt_heap *h, dt_heap_less less, size_t idx_off);
void dt__heap_destroy(dt_heap *h);
void dt__heap_push(dt_heap *h, void *item);
void *dt__heap_pop(dt_heap *h);
void *dt__heap_peek(const dt_heap *h);
void dt__heap_remove(dt_heap *h, void *item); /* no-op if not in the heap */
bool dt__heap_contains(const dt_heap *h, const void *item);

/* ---- growable pointer vector */
typedef struct {
  void **v;
  size_t len, cap;
} dt_vec;
void dt__vec_push(dt_vec *a, void *p);
bool dt__vec_remove(dt_vec *a, void *p); /* swap-remove first occurrence */
void dt__vec_free(dt_vec *a);

/* ---- a pointer vector whose first element lives inline: most tasks are
 * wanted by one client and held by one worker, and then need no allocation.
 * Read it like dt_vec (v[i], len); it must not move while in use (call
 * dt__vec1_init where it lives). */
typedef struct {
  void **v;
  uint32_t len, cap;
  void *one;
} dt_vec1;
void dt__vec1_init(dt_vec1 *a);
void dt__vec1_push(dt_vec1 *a, void *p);
bool dt__vec1_remove(dt_vec1 *a, void *p);
void dt__vec1_free(dt_vec1 *a);

/* ---- resources: dt__resources_parse splits "NAME=AMOUNT,..." into new
 * arrays (freed with dt__resources_free); DT_EINVAL with a message naming
 * the bad entry, and nothing to free, on error. */
int dt__resources_parse(const char *spec, char ***names, double **amounts, uint32_t *n);
void dt__resources_free(char **names, double *amounts, uint32_t n);

/* ---- addresses: "tcp://host:port", "host:port", "[v6]:port". */
/* dt__parse_duration: "30", "30s", "500ms", "5m", "1h" into seconds. */
int dt__parse_duration(const char *s, double *out);
/* dt__parse_memory: "4GiB", "512MB", "0" (none), "auto" (the machine's memory
 * times nthreads / CPUs) into bytes. */
int dt__parse_memory(const char *s, int nthreads, uint64_t *out);
int dt__addr_split(const char *addr, char *host, size_t hostcap, int *port);

#endif
