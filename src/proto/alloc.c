/*
 * alloc.c -- allocation that reports out-of-memory instead of aborting,
 * with a fault-injection hook for tests (see alloc.h).
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

bool (*dt__alloc_fail_hook)(size_t n);

static bool fail(size_t n) { return dt__alloc_fail_hook && dt__alloc_fail_hook(n); }

void *dt__try_malloc(size_t n) { return fail(n) ? NULL : malloc(n); }

void *dt__try_calloc(size_t n, size_t sz) {
  if (sz && n > (size_t)-1 / sz) return NULL;
  return fail(n * sz) ? NULL : calloc(n, sz);
}

void *dt__try_realloc(void *p, size_t n) { return fail(n) ? NULL : realloc(p, n); }

char *dt__try_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = dt__try_malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}
