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
#include <stdint.h>

#include "proto.h"

/* dt__alloc_fail_hook: test-only fault injection.  NULL (the default): no
 * effect.  Otherwise it is called with the size before each allocation by
 * the functions below (on whichever thread allocates), and returning true
 * makes that allocation fail (the function returns NULL, as libc would).
 * The pointer itself is atomic, so a test may set and clear it while other
 * threads allocate; the hook must be thread-safe if they do. */
typedef bool (*dt__alloc_hook_fn)(size_t n);
extern _Atomic(dt__alloc_hook_fn) dt__alloc_fail_hook;

void *dt__try_malloc(size_t n);            /* NULL on failure */
void *dt__try_calloc(size_t n, size_t sz); /* NULL on failure or overflow */
void *dt__try_realloc(void *p, size_t n);  /* NULL on failure (p untouched) */
char *dt__try_strdup(const char *s);       /* NULL on failure */
/* dt__try_strndup: the n bytes at s and a NUL (as dt__xstrndup); NULL on failure */
char *dt__try_strndup(const char *s, size_t n);

/* dt__wbuf_try_reserve: room in w for n more bytes and nframes more frames,
 * so that writes of that much (wire.c's dt__wb_*, counted as they reserve)
 * do not allocate.  0, or DT_ENOMEM (no message set) with w unchanged in
 * content.  Defined in wire.c. */
int dt__wbuf_try_reserve(dt_wbuf *w, size_t n, uint32_t nframes);

#endif
