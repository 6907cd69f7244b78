/*
 * hotenc.c -- COMPUTE_TASK, KEY_IN_MEMORY and FREE_KEYS with the raw writers
 * (hotenc.h): a few of each per task, where the checked encoder's table
 * look-ups per field cost more than the writing.  What msgs.h declares for
 * them is restated here as the sequence of writes; hotenc_test.c compares
 * the bytes with the checked encoder's for many inputs, so a change in
 * msgs.h that is not made here too fails that test (and the arities below
 * are computed from msgs.h at compile time).
 */
#include <string.h>

#include <msgpuck.h>

#include "hotenc.h"

/* wire elements after the op, as msg.c counts them (a payload counts 3) */
#define W_UINT 1
#define W_INT 1
#define W_DOUBLE 1
#define W_STR 1
#define W_KEY 1
#define W_BINN 1
#define W_PAYLOAD 3
#define AR_ONE(k, n, d) +W_##k
#define AR_LIST(k, n, d) +1
enum {
  AR_COMPUTE = 0 DT_MSG_COMPUTE_TASK(AR_ONE, AR_LIST, AR_LIST, AR_LIST),
  AR_IN_MEMORY = 0 DT_MSG_KEY_IN_MEMORY(AR_ONE, AR_LIST, AR_LIST, AR_LIST),
  AR_FREE = 0 DT_MSG_FREE_KEYS(AR_ONE, AR_LIST, AR_LIST, AR_LIST),
  AR_DEP = 0 DT_REC_dep(AR_ONE, AR_LIST, AR_LIST, AR_LIST),
};
/* each header is [fixarray(arity + 1), positive fixint op]: two bytes */
_Static_assert(AR_COMPUTE + 1 <= 15 && AR_IN_MEMORY + 1 <= 15 && AR_FREE + 1 <= 15 && AR_DEP <= 15,
               "a hot message's header is a fixarray");
_Static_assert(DT_OP_COMPUTE_TASK < 128 && DT_OP_KEY_IN_MEMORY < 128 && DT_OP_FREE_KEYS < 128,
               "a hot message's op is a positive fixint");

static inline char *head(dt_wbuf *w, char *p, int op, int arity) {
  p[0] = (char)(0x90 | (arity + 1));
  p[1] = (char)op;
  w->nmsgs++;
  return p + 2;
}
/* str: len bounded by the caller's reservation (5 + len) */
static inline char *str(char *p, const char *s, uint32_t len) {
  return len ? mp_encode_str(p, s, len) : mp_encode_strl(p, 0);
}
static inline void done(dt_wbuf *w, const char *p) { w->len = (size_t)(p - w->buf); }

/* the int writer's choice (dt__wb_int): non-negative values as uints */
static inline char *wint(char *p, int64_t i) {
  return i >= 0 ? mp_encode_uint(p, (uint64_t)i) : mp_encode_int(p, i);
}

void dt__hot_compute_task(dt_wbuf *w, const s_task *t, bool ahead) {
  size_t flen = strlen(t->func);
  dt_payload spec = dt__task_spec(t);
  /* the head, the spec when it has no frames, the deps' count */
  size_t body = spec.nframes ? 0 : 5 + spec.len + 9 + 1;
  char *p = dt__wbuf_reserve(w, 2 + 5 + t->klen + 5 + flen + body + 5);
  p = head(w, p, DT_OP_COMPUTE_TASK, AR_COMPUTE);
  p = str(p, t->key, t->klen);
  p = str(p, t->func, (uint32_t)flen);
  if (spec.nframes) {
    done(w, p);
    dt__wb_payload(w, &spec);
    p = dt__wbuf_reserve(w, 5);
  } else {
    p = spec.len ? mp_encode_bin(p, spec.body, spec.len) : mp_encode_binl(p, 0);
    p = mp_encode_uint(p, w->nframes); /* first frame: as dt__wb_payload writes it */
    *p++ = 0;                          /* no frames */
  }
  done(w, mp_encode_array(p, t->ndeps));
  for (uint32_t i = 0; i < t->ndeps; i++) {
    const s_task *d = t->deps[i];
    uint32_t nw = ahead ? 0 : d->who_has.len;
    p = dt__wbuf_reserve(w, 1 + 5 + d->klen + 9 + 5);
    *p++ = (char)(0x90 | AR_DEP);
    p = str(p, d->key, d->klen);
    p = mp_encode_uint(p, d->nbytes);
    p = mp_encode_array(p, nw);
    done(w, p);
    for (uint32_t j = 0; j < nw; j++) {
      const char *a = ((const s_worker *)d->who_has.v[j])->address;
      size_t alen = strlen(a);
      p = dt__wbuf_reserve(w, 5 + alen);
      done(w, str(p, a, (uint32_t)alen));
    }
  }
  /* the tail: priority, resources, timeout */
  const s_task_rare *r = RARE(t);
  p = dt__wbuf_reserve(w, 9 + 5 + 9);
  p = wint(p, t->priority);
  p = mp_encode_map(p, r->nres);
  if (r->nres) {
    for (uint32_t i = 0; i < r->nres; i++) {
      done(w, p);
      size_t nlen = strlen(r->res_names[i]);
      p = dt__wbuf_reserve(w, 5 + nlen + 9);
      p = str(p, r->res_names[i], (uint32_t)nlen);
      p = mp_encode_double(p, r->res_amounts[i]);
    }
    done(w, p);
    p = dt__wbuf_reserve(w, 9);
  }
  done(w, mp_encode_double(p, r->timeout));
}

void dt__hot_key_in_memory(dt_wbuf *w, const char *key, uint32_t klen, const char *worker,
                           uint64_t nbytes, const void *inl, uint32_t ilen) {
  size_t wlen = strlen(worker);
  char *p = dt__wbuf_reserve(w, 2 + 5 + klen + 5 + wlen + 9 + 5 + (inl ? ilen : 0));
  p = head(w, p, DT_OP_KEY_IN_MEMORY, AR_IN_MEMORY);
  p = str(p, key, klen);
  p = str(p, worker, (uint32_t)wlen);
  p = mp_encode_uint(p, nbytes);
  if (!inl) p = mp_encode_nil(p);
  else p = ilen ? mp_encode_bin(p, inl, ilen) : mp_encode_binl(p, 0);
  done(w, p);
}

void dt__hot_free_key(dt_wbuf *w, const char *key, uint32_t klen) {
  char *p = dt__wbuf_reserve(w, 3 + 5 + klen);
  p = head(w, p, DT_OP_FREE_KEYS, AR_FREE);
  *p++ = (char)0x91; /* keys: a list of one */
  done(w, str(p, key, klen));
}
