/*
 * util.c -- allocation wrappers, monotonic time, address parsing and the
 * pointer vector.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <time.h>

#include "common.h"

static void oom(size_t n) {
  fprintf(stderr, "dtask: out of memory allocating %zu bytes\n", n);
  abort();
}

void *dt__xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom(n);
  return p;
}
void *dt__xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p) oom(n * sz);
  return p;
}
void *dt__xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}
char *dt__xstrdup(const char *s) { return dt__xstrndup(s, strlen(s)); }
char *dt__xstrndup(const char *s, size_t n) {
  char *p = dt__xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

uint64_t dt__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
double dt__now_s(void) { return (double)dt__now_ns() / 1e9; }

void dt__deadline(struct timespec *ts, int ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

bool dt__passed(const struct timespec *ts) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec > ts->tv_sec || (now.tv_sec == ts->tv_sec && now.tv_nsec >= ts->tv_nsec);
}

void dt__vec_push(dt_vec *a, void *p) {
  if (a->len == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 4;
    a->v = dt__xrealloc(a->v, a->cap * sizeof(*a->v));
  }
  a->v[a->len++] = p;
}
bool dt__vec_remove(dt_vec *a, void *p) {
  for (size_t i = 0; i < a->len; i++)
    if (a->v[i] == p) {
      a->v[i] = a->v[--a->len];
      return true;
    }
  return false;
}
void dt__vec_free(dt_vec *a) {
  free(a->v);
  a->v = NULL;
  a->len = a->cap = 0;
}

void dt__vec1_init(dt_vec1 *a) {
  a->v = &a->one;
  a->len = 0;
  a->cap = 1;
  a->one = NULL;
}
void dt__vec1_push(dt_vec1 *a, void *p) {
  if (a->len == a->cap) {
    uint32_t ncap = a->cap * 4;
    void **n = dt__xmalloc(ncap * sizeof(*n));
    memcpy(n, a->v, a->len * sizeof(*n));
    if (a->v != &a->one) free(a->v);
    a->v = n;
    a->cap = ncap;
  }
  a->v[a->len++] = p;
}
bool dt__vec1_remove(dt_vec1 *a, void *p) {
  for (uint32_t i = 0; i < a->len; i++)
    if (a->v[i] == p) {
      a->v[i] = a->v[--a->len];
      return true;
    }
  return false;
}
void dt__vec1_free(dt_vec1 *a) {
  if (a->v != &a->one) free(a->v);
  dt__vec1_init(a);
}

/* ---- resources: "GPU=1,MEM=2" lists (workers declare, tasks require) */

int dt__resources_parse(const char *spec, char ***names, double **amounts, uint32_t *n) {
  *names = NULL;
  *amounts = NULL;
  *n = 0;
  if (!spec || !*spec) return 0;
  char *copy = dt__xstrdup(spec), *save = NULL;
  for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
    char *eq = strchr(tok, '=');
    char *end = NULL;
    double v = eq ? strtod(eq + 1, &end) : 0;
    if (!eq || eq == tok || !end || *end || v < 0 || *n >= 64) {
      int rc = dt__err(DT_EINVAL, "invalid resource '%s' (expected NAME=AMOUNT)", tok);
      free(copy);
      for (uint32_t i = 0; i < *n; i++) free((*names)[i]);
      free(*names);
      free(*amounts);
      *names = NULL;
      *amounts = NULL;
      *n = 0;
      return rc;
    }
    *names = dt__xrealloc(*names, (*n + 1) * sizeof(char *));
    *amounts = dt__xrealloc(*amounts, (*n + 1) * sizeof(double));
    (*names)[*n] = dt__xstrndup(tok, (size_t)(eq - tok));
    (*amounts)[*n] = v;
    (*n)++;
  }
  free(copy);
  return 0;
}

void dt__resources_free(char **names, double *amounts, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) free(names[i]);
  free(names);
  free(amounts);
}

int dt__addr_split(const char *addr, char *host, size_t hostcap, int *port) {
  if (!addr) return DT_EINVAL;
  if (strncmp(addr, "tcp://", 6) == 0 || strncmp(addr, "tls://", 6) == 0) addr += 6;
  const char *colon;
  const char *h = addr;
  size_t hlen;
  if (addr[0] == '[') {
    const char *rb = strchr(addr, ']');
    if (!rb || rb[1] != ':') return DT_EINVAL;
    h = addr + 1;
    hlen = (size_t)(rb - h);
    colon = rb + 1;
  } else {
    colon = strrchr(addr, ':');
    if (!colon) return DT_EINVAL;
    hlen = (size_t)(colon - addr);
  }
  if (hlen == 0 || hlen >= hostcap) return DT_EINVAL;
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end != '\0' || end == colon + 1 || p < 0 || p > 65535) return DT_EINVAL;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  *port = (int)p;
  return 0;
}

int dt__parse_duration(const char *s, double *out) {
  if (!s || !*s) return dt__err(DT_EINVAL, "empty duration");
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0 || v != v) return dt__err(DT_EINVAL, "invalid duration '%s'", s);
  while (*end == ' ') end++;
  double mul = 1;
  if (!*end || strcmp(end, "s") == 0 || strcmp(end, "seconds") == 0) mul = 1;
  else if (strcmp(end, "ms") == 0) mul = 1e-3;
  else if (strcmp(end, "m") == 0 || strcmp(end, "minutes") == 0) mul = 60;
  else if (strcmp(end, "h") == 0 || strcmp(end, "hours") == 0) mul = 3600;
  else return dt__err(DT_EINVAL, "invalid duration '%s' (use e.g. 30s, 500ms, 5m)", s);
  *out = v * mul;
  return 0;
}

int dt__parse_memory(const char *s, int nthreads, uint64_t *out) {
  if (!s || !*s || strcmp(s, "auto") == 0) {
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE), ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double total = (double)pages * (double)psz;
    double frac = ncpu > 0 && nthreads < ncpu ? (double)nthreads / (double)ncpu : 1;
    *out = (uint64_t)(total * frac);
    return 0;
  }
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0) return dt__err(DT_EINVAL, "invalid memory size '%s' (e.g. 4GiB, 512MB, auto)", s);
  while (*end == ' ') end++;
  static const struct { const char *u; double m; } units[] = {
      {"", 1}, {"b", 1}, {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"kib", 1024.},
      {"mib", 1048576.}, {"gib", 1073741824.}, {"tib", 1099511627776.}, {"k", 1024.},
      {"m", 1048576.}, {"g", 1073741824.}};
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    if (strcasecmp(end, units[i].u) == 0) {
      *out = (uint64_t)(v * units[i].m);
      return 0;
    }
  return dt__err(DT_EINVAL, "invalid memory size '%s' (e.g. 4GiB, 512MB, auto)", s);
}
