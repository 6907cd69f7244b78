/*
 * wire.c -- writing messages into batches (dt_wbuf) and reading them back
 * from untrusted bytes: the bounded validator and the typed reader.
 */
#include <stdlib.h>
#include <string.h>

#include <msgpuck.h>

#include "alloc.h"
#include "proto.h"

/* ---------------------------------------------------------------- writing */

void dt__wbuf_init(dt_wbuf *w) { memset(w, 0, sizeof(*w)); }

void dt__wbuf_clear(dt_wbuf *w) {
  free(w->buf);
  for (uint32_t i = 0; i < w->nframes; i++) dt__blob_unref(w->frames[i].blob);
  free(w->frames);
  memset(w, 0, sizeof(*w));
}

char *dt__wbuf_reserve(dt_wbuf *w, size_t n) {
  if (w->len + n > w->cap) {
    size_t ncap = w->cap ? w->cap : 256;
    while (ncap < w->len + n) ncap *= 2;
    w->buf = dt__xrealloc(w->buf, ncap);
    w->cap = ncap;
  }
  return w->buf + w->len;
}

int dt__wbuf_try_reserve(dt_wbuf *w, size_t n, uint32_t nframes) {
  if (n > ((size_t)-1 >> 2) - w->len || nframes > (UINT32_MAX >> 2) - w->nframes) return DT_ENOMEM;
  if (w->len + n > w->cap) { /* grown as dt__wbuf_reserve grows it */
    size_t ncap = w->cap ? w->cap : 256;
    while (ncap < w->len + n) ncap *= 2;
    char *b = dt__try_realloc(w->buf, ncap);
    if (!b) return DT_ENOMEM;
    w->buf = b;
    w->cap = ncap;
  }
  if (w->nframes + nframes > w->fcap) { /* as dt__wb_payload grows it */
    uint32_t ncap = w->fcap ? w->fcap : 4;
    while (ncap < w->nframes + nframes) ncap *= 2;
    dt_frame *f = dt__try_realloc(w->frames, ncap * sizeof(*f));
    if (!f) return DT_ENOMEM;
    w->frames = f;
    w->fcap = ncap;
  }
  return 0;
}

#define PUT(expr, maxn)                                                        \
  do {                                                                         \
    char *p_ = dt__wbuf_reserve(w, (maxn));                                     \
    char *e_ = expr;                                                           \
    w->len += (size_t)(e_ - p_);                                               \
  } while (0)

void dt__wb_array(dt_wbuf *w, uint32_t n) { PUT(mp_encode_array(p_, n), 5); }
void dt__wb_map(dt_wbuf *w, uint32_t n) { PUT(mp_encode_map(p_, n), 5); }
void dt__wb_uint(dt_wbuf *w, uint64_t u) { PUT(mp_encode_uint(p_, u), 9); }
void dt__wb_int(dt_wbuf *w, int64_t i) {
  if (i >= 0) PUT(mp_encode_uint(p_, (uint64_t)i), 9);
  else PUT(mp_encode_int(p_, i), 9);
}
void dt__wb_double(dt_wbuf *w, double d) { PUT(mp_encode_double(p_, d), 9); }
void dt__wb_bool(dt_wbuf *w, bool b) { PUT(mp_encode_bool(p_, b), 1); }
void dt__wb_nil(dt_wbuf *w) { PUT(mp_encode_nil(p_), 1); }
/* (msgpuck memcpy()s even 0 bytes: never hand it NULL) */
void dt__wb_str(dt_wbuf *w, const char *s, size_t len) {
  if (!s) s = "";
  PUT(mp_encode_str(p_, s, (uint32_t)len), 5 + len);
}
void dt__wb_cstr(dt_wbuf *w, const char *s) {
  if (s) dt__wb_str(w, s, strlen(s));
  else dt__wb_nil(w);
}
void dt__wb_bin(dt_wbuf *w, const void *p, size_t len) {
  if (!p) p = "";
  PUT(mp_encode_bin(p_, (const char *)p, (uint32_t)len), 5 + len);
}
void dt__wb_msg(dt_wbuf *w, int op, uint32_t nfields) {
  dt__wb_array(w, nfields + 1);
  dt__wb_uint(w, (uint64_t)op);
  w->nmsgs++;
}

void dt__wb_payload(dt_wbuf *w, const dt_payload *p) {
  dt__wb_bin(w, p->body, p->len);
  dt__wb_uint(w, w->nframes);
  dt__wb_uint(w, p->nframes);
  if (p->nframes == 0) return;
  if (w->nframes + p->nframes > w->fcap) {
    while (w->nframes + p->nframes > w->fcap) w->fcap = w->fcap ? w->fcap * 2 : 4;
    w->frames = dt__xrealloc(w->frames, w->fcap * sizeof(*w->frames));
  }
  for (uint32_t i = 0; i < p->nframes; i++) {
    w->frames[w->nframes] = p->frames[i];
    dt__blob_ref(p->frames[i].blob);
    w->nframes++;
  }
}

int dt__wb_value(dt_wbuf *w, const dt_value *v) {
  dt_payload p;
  int rc = dt__payload_encode(v, &p, NULL);
  if (rc) {
    dt__wb_bin(w, "\xc0", 1); /* keep the message well formed: nil */
    dt__wb_uint(w, 0);
    dt__wb_uint(w, 0);
    return rc;
  }
  dt__wb_payload(w, &p);
  dt__payload_clear(&p);
  return 0;
}

/* ---------------------------------------------------------------- validation */

/* Size of the fixed part after the first byte, and what follows. */
int dt__mp_validate(const char **pp, const char *end, int max_depth) {
  const char *p = *pp;
  uint64_t stack[DT_MAX_DEPTH + 2];
  int depth = 0;
  if (max_depth > DT_MAX_DEPTH) max_depth = DT_MAX_DEPTH;
  stack[0] = 1;
  while (depth >= 0) {
    if (stack[depth] == 0) {
      depth--;
      continue;
    }
    stack[depth]--;
    if (p >= end) return DT_EPROTO;
    uint8_t c = (uint8_t)*p++;
    size_t avail = (size_t)(end - p);
    uint64_t skip = 0, children = 0;
    const char *q = p;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
      skip = 0;
    } else if (c >= 0x80 && c <= 0x8f) {
      children = 2u * (c & 0x0f);
    } else if (c >= 0x90 && c <= 0x9f) {
      children = c & 0x0f;
    } else if (c >= 0xa0 && c <= 0xbf) {
      skip = c & 0x1f;
    } else {
      switch (c) {
      case 0xc4: case 0xd9: /* bin8 / str8 */
        if (avail < 1) return DT_EPROTO;
        skip = 1 + (uint8_t)q[0];
        break;
      case 0xc5: case 0xda:
        if (avail < 2) return DT_EPROTO;
        skip = 2 + (uint64_t)mp_load_u16(&q);
        break;
      case 0xc6: case 0xdb:
        if (avail < 4) return DT_EPROTO;
        skip = 4 + (uint64_t)mp_load_u32(&q);
        break;
      case 0xc7:
        if (avail < 1) return DT_EPROTO;
        skip = 2 + (uint8_t)q[0];
        break;
      case 0xc8:
        if (avail < 2) return DT_EPROTO;
        skip = 3 + (uint64_t)mp_load_u16(&q);
        break;
      case 0xc9:
        if (avail < 4) return DT_EPROTO;
        skip = 5 + (uint64_t)mp_load_u32(&q);
        break;
      case 0xca: skip = 4; break;
      case 0xcb: skip = 8; break;
      case 0xcc: case 0xd0: skip = 1; break;
      case 0xcd: case 0xd1: skip = 2; break;
      case 0xce: case 0xd2: skip = 4; break;
      case 0xcf: case 0xd3: skip = 8; break;
      case 0xd4: skip = 2; break;
      case 0xd5: skip = 3; break;
      case 0xd6: skip = 5; break;
      case 0xd7: skip = 9; break;
      case 0xd8: skip = 17; break;
      case 0xdc:
        if (avail < 2) return DT_EPROTO;
        children = mp_load_u16(&q);
        skip = 2;
        break;
      case 0xdd:
        if (avail < 4) return DT_EPROTO;
        children = mp_load_u32(&q);
        skip = 4;
        break;
      case 0xde:
        if (avail < 2) return DT_EPROTO;
        children = 2ull * mp_load_u16(&q);
        skip = 2;
        break;
      case 0xdf:
        if (avail < 4) return DT_EPROTO;
        children = 2ull * mp_load_u32(&q);
        skip = 4;
        break;
      default: return DT_EPROTO; /* 0xc1 is never used */
      }
    }
    if (skip > avail) return DT_EPROTO;
    p += skip;
    if (children) {
      /* every child takes at least one byte: check the count before use */
      if (children > (uint64_t)(end - p)) return DT_EPROTO;
      if (depth + 1 > max_depth) return DT_EPROTO;
      stack[++depth] = children;
    }
  }
  *pp = p;
  return 0;
}

/* ---------------------------------------------------------------- reading */

#define NEED(r, t)                                                             \
  do {                                                                         \
    if ((r)->p >= (r)->end || mp_typeof(*(r)->p) != (t)) return DT_EPROTO;    \
  } while (0)

int dt__rd_array(dt_rd *r, uint32_t *n) {
  NEED(r, MP_ARRAY);
  *n = mp_decode_array(&r->p);
  return 0;
}
int dt__rd_map(dt_rd *r, uint32_t *n) {
  NEED(r, MP_MAP);
  *n = mp_decode_map(&r->p);
  return 0;
}
int dt__rd_uint(dt_rd *r, uint64_t *u) {
  NEED(r, MP_UINT);
  *u = mp_decode_uint(&r->p);
  return 0;
}
int dt__rd_int(dt_rd *r, int64_t *i) {
  if (r->p >= r->end) return DT_EPROTO;
  if (mp_typeof(*r->p) == MP_UINT) {
    uint64_t u = mp_decode_uint(&r->p);
    if (u > INT64_MAX) return DT_EPROTO;
    *i = (int64_t)u;
    return 0;
  }
  NEED(r, MP_INT);
  *i = mp_decode_int(&r->p);
  return 0;
}
int dt__rd_double(dt_rd *r, double *d) {
  if (r->p >= r->end) return DT_EPROTO;
  enum mp_type t = mp_typeof(*r->p);
  if (t == MP_DOUBLE) *d = mp_decode_double(&r->p);
  else if (t == MP_FLOAT) *d = mp_decode_float(&r->p);
  else {
    int64_t i;
    if (dt__rd_int(r, &i)) return DT_EPROTO;
    *d = (double)i;
  }
  return 0;
}
int dt__rd_bool(dt_rd *r, bool *b) {
  NEED(r, MP_BOOL);
  *b = mp_decode_bool(&r->p);
  return 0;
}
int dt__rd_str(dt_rd *r, const char **s, uint32_t *len) {
  NEED(r, MP_STR);
  *s = mp_decode_str(&r->p, len);
  return 0;
}
int dt__rd_key(dt_rd *r, const char **s, uint32_t *len) {
  if (dt__rd_str(r, s, len)) return DT_EPROTO;
  if (*len == 0 || *len > DT_MAX_KEY) return DT_EPROTO;
  if (memchr(*s, '\0', *len)) return DT_EPROTO; /* keys are C strings everywhere */
  return 0;
}
int dt__rd_bin(dt_rd *r, const char **s, uint32_t *len) {
  NEED(r, MP_BIN);
  *s = mp_decode_bin(&r->p, len);
  return 0;
}
bool dt__rd_is_nil(dt_rd *r) {
  if (r->p < r->end && mp_typeof(*r->p) == MP_NIL) {
    mp_decode_nil(&r->p);
    return true;
  }
  return false;
}
int dt__rd_skip(dt_rd *r) {
  if (dt__mp_validate(&r->p, r->end, DT_MAX_DEPTH)) return DT_EPROTO;
  return 0;
}
int dt__rd_payload(dt_rd *r, dt_payload *out) {
  const char *b;
  uint32_t blen;
  uint64_t first, n;
  memset(out, 0, sizeof(*out));
  if (dt__rd_bin(r, &b, &blen) || dt__rd_uint(r, &first) || dt__rd_uint(r, &n)) return DT_EPROTO;
  if (first > r->nframes || n > r->nframes - first) return DT_EPROTO;
  out->body = dt__xmalloc(blen);
  memcpy(out->body, b, blen);
  out->len = blen;
  out->nframes = (uint32_t)n;
  if (n) {
    out->frames = dt__xmalloc(n * sizeof(*out->frames));
    for (uint64_t i = 0; i < n; i++) {
      out->frames[i] = r->frames[first + i];
      dt__blob_ref(out->frames[i].blob);
    }
  }
  return 0;
}
