/*
 * alloc.c -- allocation that reports out-of-memory instead of aborting,
 * with a fault-injection hook for tests (see alloc.h).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

_Atomic(dt__alloc_hook_fn) dt__alloc_fail_hook;

static bool fail(size_t n) {
  dt__alloc_hook_fn h = atomic_load_explicit(&dt__alloc_fail_hook, memory_order_acquire);
  return h && h(n);
}

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

char *dt__try_strndup(const char *s, size_t n) {
  char *d = n < (size_t)-1 ? dt__try_malloc(n + 1) : NULL;
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}
