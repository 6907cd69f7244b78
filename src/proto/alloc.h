/*
 * alloc.h -- allocation for the code behind public functions that promise
 * NULL / DT_ENOMEM on out-of-memory (dtask.h), instead of dt__xmalloc's
 * abort.  Each function behaves like its libc namesake; tests can make
 * allocations fail through dt__alloc_fail_hook to prove that every such
 * path fails cleanly.
 */
#ifndef DT_PROTO_ALLOC_H
#define DT_PROTO_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* dt__alloc_fail_hook: test-only fault injection.  NULL (the default): no
 * effect.  Otherwise it is called with the size before each allocation by
 * the functions below, and returning true makes that allocation fail (the
 * function returns NULL, as libc would).  Set it before any thread other
 * than the caller's allocates; it is not synchronised. */
extern bool (*dt__alloc_fail_hook)(size_t n);

void *dt__try_malloc(size_t n);            /* NULL on failure */
void *dt__try_calloc(size_t n, size_t sz); /* NULL on failure or overflow */
void *dt__try_realloc(void *p, size_t n);  /* NULL on failure (p untouched) */
char *dt__try_strdup(const char *s);       /* NULL on failure */

#endif
