/*
 * progress.c -- dt_progress: a live progress bar for a set of futures, like
 * dask.distributed.progress.  On a terminal, one bar per task function
 * (the function is the key's prefix, as in Dask's key names), redrawn ten
 * times a second; otherwise one plain line per second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "../proto/alloc.h"

typedef struct {
  char name[64];
  size_t total, done, erred;
} group;

static size_t group_of(group *gs, size_t *ng, size_t cap, const char *key) {
  const char *dash = strrchr(key, '-');
  size_t len = dash && dash != key ? (size_t)(dash - key) : strlen(key);
  if (len > sizeof(gs[0].name) - 1) len = sizeof(gs[0].name) - 1;
  for (size_t i = 0; i < *ng; i++)
    if (strlen(gs[i].name) == len && strncmp(gs[i].name, key, len) == 0) return i;
  if (*ng == cap) return cap - 1; /* past the cap: the last bar takes the rest */
  snprintf(gs[*ng].name, sizeof(gs[0].name), "%.*s", (int)len, key);
  return (*ng)++;
}

static void bar(FILE *out, const group *g, int width, size_t namew) {
  double frac = g->total ? (double)g->done / (double)g->total : 1;
  int fill = (int)(frac * width + 0.5);
  fprintf(out, "%-*s [", (int)namew, g->name);
  for (int i = 0; i < width; i++) fputc(i < fill ? '#' : ' ', out);
  fprintf(out, "] %3.0f%% %zu/%zu%s", frac * 100, g->done, g->total, g->erred ? " (" : "");
  if (g->erred) fprintf(out, "%zu erred)", g->erred);
  fprintf(out, "\033[K\n");
}

int dt_progress(dt_client *c, dt_future *const *fs, size_t n, int timeout_ms) {
  dt__err_clear();
  if (!c || (n && !fs)) return dt__err(DT_EINVAL, "dt_progress: NULL argument");
  enum { MAXG = 32 };
  group gs[MAXG];
  size_t ng = 0;
  memset(gs, 0, sizeof(gs));
  size_t *gi = dt__try_calloc(n ? n : 1, sizeof(size_t));
  if (!gi) return dt__err(DT_ENOMEM, "dt_progress: out of memory");
  for (size_t i = 0; i < n; i++) {
    if (!fs[i]) {
      free(gi);
      return dt__err(DT_EINVAL, "dt_progress: future %zu is NULL", i);
    }
    gi[i] = group_of(gs, &ng, MAXG, dt_future_key(fs[i]));
    gs[gi[i]].total++;
  }
  size_t namew = 4;
  for (size_t i = 0; i < ng; i++)
    if (strlen(gs[i].name) > namew) namew = strlen(gs[i].name);
  bool tty = isatty(STDOUT_FILENO);
  uint64_t start = dt__now_ns(), last_line = 0;
  int drawn = 0, rc = 0;
  for (;;) {
    size_t all_done = 0;
    for (size_t g = 0; g < ng; g++) gs[g].done = gs[g].erred = 0;
    for (size_t i = 0; i < n; i++) {
      dt_future_status st = dt_future_status_get(fs[i]);
      if (st != DT_PENDING) {
        gs[gi[i]].done++;
        all_done++;
        if (st != DT_FINISHED) gs[gi[i]].erred++;
      }
    }
    bool finished = all_done == n;
    uint64_t now = dt__now_ns();
    if (tty) {
      if (drawn) printf("\033[%dA", drawn);
      for (size_t g = 0; g < ng; g++) bar(stdout, &gs[g], 40, namew);
      drawn = (int)ng;
      fflush(stdout);
    } else if (finished || now - last_line >= 1000000000ull) {
      printf("[%6.1f s] %zu/%zu done", (double)(now - start) / 1e9, all_done, n);
      for (size_t g = 0; g < ng && ng > 1; g++)
        printf("%s %s %zu/%zu", g ? "," : ";", gs[g].name, gs[g].done, gs[g].total);
      printf("\n");
      fflush(stdout);
      last_line = now;
    }
    if (finished) break;
    if (timeout_ms >= 0 && now - start >= (uint64_t)timeout_ms * 1000000ull) {
      rc = dt__err(DT_ETIMEDOUT, "dt_progress: %zu of %zu futures done within %d ms", all_done, n,
                   timeout_ms);
      break;
    }
    /* wake when a future finishes, or after 100 ms to redraw */
    dt_future *pending = NULL;
    for (size_t i = 0; i < n && !pending; i++)
      if (dt_future_status_get(fs[i]) == DT_PENDING) pending = fs[i];
    if (pending) dt_wait(&pending, 1, tty ? 100 : 250, DT_FIRST_COMPLETED);
  }
  free(gi);
  return rc;
}
