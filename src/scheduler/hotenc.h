/*
 * hotenc.h -- the scheduler's per-task messages (COMPUTE_TASK, KEY_IN_MEMORY,
 * FREE_KEYS) written with the raw writers of proto.h: no check of each field
 * against msgs.h's table as the checked encoder (dt__e_*) makes, the
 * message's header written as two constant bytes, one reservation of the
 * write buffer for a message's fixed part.  The bytes are exactly those the
 * checked encoder writes for the same values (hotenc_test.c encodes each
 * message both ways and compares them, which also checks the fields'
 * order and kinds against msgs.h).  Loop thread only; no allocation but the
 * write buffer's growth.
 */
#ifndef DT_SCHED_HOTENC_H
#define DT_SCHED_HOTENC_H

#include "state.h"

/* dt__hot_compute_task: COMPUTE_TASK for t onto w (its spec's frames, if
 * any, referenced in w).  ahead: the task's one dependency is being computed
 * on that worker: every dependency's who_has is sent empty (speculate.c). */
void dt__hot_compute_task(dt_wbuf *w, const s_task *t, bool ahead);
/* dt__hot_key_in_memory: KEY_IN_MEMORY; worker is a worker's address ("" for
 * none, never NULL); inl NULL writes nil for the inline result. */
void dt__hot_key_in_memory(dt_wbuf *w, const char *key, uint32_t klen, const char *worker,
                           uint64_t nbytes, const void *inl, uint32_t ilen);
/* dt__hot_free_key: FREE_KEYS naming one key */
void dt__hot_free_key(dt_wbuf *w, const char *key, uint32_t klen);

#endif
