/*
 * payload.c -- values on the wire: dt__payload_encode writes a value as a
 * msgpack body with out-of-band frames for large bytes (never copied) and
 * ext types for frame references and futures; dt__payload_decode rebuilds a
 * value from untrusted bytes, validated before anything is allocated.  Out
 * of memory gives DT_ENOMEM (alloc.h), except when the thread's scratch
 * buffer must grow (dt__wbuf_reserve aborts, like every message writer).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <msgpuck.h>

#include "alloc.h"
#include "proto.h"

static int enc(dt_wbuf *w, const dt_value *v, dt_vec *deps, int depth) {
  if (depth > DT_MAX_DEPTH) return dt__err(DT_EINVAL, "value nested deeper than %d", DT_MAX_DEPTH);
  switch (v->type) {
  case DT_NIL: dt__wb_nil(w); break;
  case DT_BOOL: dt__wb_bool(w, v->u.b); break;
  case DT_INT: dt__wb_int(w, v->u.i); break;
  case DT_DOUBLE: dt__wb_double(w, v->u.d); break;
  case DT_STR:
    if (v->u.str.len > UINT32_MAX) return dt__err(DT_EINVAL, "string too long");
    dt__wb_str(w, v->u.str.s, v->u.str.len);
    break;
  case DT_BYTES:
    if (v->u.bytes.len >= DT_LARGE_BYTES) {
      if (w->nframes == w->fcap) {
        uint32_t ncap = w->fcap ? w->fcap * 2 : 4;
        dt_frame *nf = dt__try_realloc(w->frames, ncap * sizeof(*nf));
        if (!nf) return dt__err(DT_ENOMEM, "out of memory encoding a value");
        w->frames = nf;
        w->fcap = ncap;
      }
      uint32_t idx = w->nframes++;
      w->frames[idx].blob = dt__blob_ref(v->u.bytes.blob);
      w->frames[idx].p = v->u.bytes.p;
      w->frames[idx].len = v->u.bytes.len;
      char *p = dt__wbuf_reserve(w, 6);
      p[0] = (char)0xd6; /* fixext4 */
      p[1] = DT_EXT_FRAME;
      p = mp_store_u32(p + 2, idx);
      w->len += 6;
    } else {
      dt__wb_bin(w, v->u.bytes.p, v->u.bytes.len);
    }
    break;
  case DT_LIST:
    if (v->u.list.len > UINT32_MAX) return dt__err(DT_EINVAL, "list too long");
    dt__wb_array(w, (uint32_t)v->u.list.len);
    for (size_t i = 0; i < v->u.list.len; i++) {
      int rc = enc(w, v->u.list.items[i], deps, depth + 1);
      if (rc) return rc;
    }
    break;
  case DT_MAP:
    dt__wb_map(w, (uint32_t)v->u.map.len);
    for (size_t i = 0; i < v->u.map.len; i++) {
      dt__wb_cstr(w, v->u.map.keys[i]);
      int rc = enc(w, v->u.map.vals[i], deps, depth + 1);
      if (rc) return rc;
    }
    break;
  case DT_FUTURE: {
    size_t kl = strlen(v->u.fut.key);
    char *p = dt__wbuf_reserve(w, 6 + kl);
    p[0] = (char)0xc9; /* ext32 */
    p = mp_store_u32(p + 1, (uint32_t)kl);
    *p++ = DT_EXT_FUTURE;
    memcpy(p, v->u.fut.key, kl);
    w->len += 6 + kl;
    if (deps) dt__vec_push(deps, v->u.fut.key);
    break;
  }
  default: return dt__err(DT_EINVAL, "unknown value type %d", v->type);
  }
  return 0;
}

/* Each thread encodes into its own scratch buffer, freed when the thread
 * exits (a pthread key destructor: threads may come and go). */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p) {
  dt__wbuf_clear(p);
  free(p);
}
static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_free); }

/* scratch_get: this thread's scratch buffer; NULL when out of memory */
static dt_wbuf *scratch_get(void) {
  pthread_once(&scratch_once, scratch_init);
  dt_wbuf *w = pthread_getspecific(scratch_key);
  if (!w) {
    w = dt__try_calloc(1, sizeof(*w));
    if (w && pthread_setspecific(scratch_key, w) != 0) {
      free(w);
      w = NULL;
    }
  }
  return w;
}

int dt__payload_encode(const dt_value *v, dt_payload *out, dt_vec *deps) {
  /* encode into this thread's scratch buffer, then keep an exact copy:
   * payloads of small arguments are a few bytes, and many are kept */
  memset(out, 0, sizeof(*out));
  if (!v) return dt__err(DT_EINVAL, "value is NULL");
  dt_wbuf *w = scratch_get();
  if (!w) return dt__err(DT_ENOMEM, "out of memory encoding a value");
  w->len = 0;
  w->nframes = 0;
  int rc = enc(w, v, deps, 0);
  if (rc == 0) {
    out->body = dt__try_malloc(w->len);
    if (w->nframes) out->frames = dt__try_malloc(w->nframes * sizeof(*out->frames));
    if (!out->body || (w->nframes && !out->frames)) {
      free(out->body);
      free(out->frames);
      memset(out, 0, sizeof(*out));
      rc = dt__err(DT_ENOMEM, "out of memory encoding a value");
    }
  }
  if (rc == 0) {
    memcpy(out->body, w->buf, w->len);
    out->len = w->len;
    if (w->nframes) {
      memcpy(out->frames, w->frames, w->nframes * sizeof(*out->frames)); /* refs move */
      out->nframes = w->nframes;
    }
  } else {
    for (uint32_t i = 0; i < w->nframes; i++) dt__blob_unref(w->frames[i].blob);
  }
  w->nframes = 0;
  if (w->cap > (1u << 20)) dt__wbuf_clear(w); /* do not keep a huge buffer */
  return rc;
}

void dt__payload_clear(dt_payload *p) {
  if (!p) return;
  free(p->body);
  for (uint32_t i = 0; i < p->nframes; i++) dt__blob_unref(p->frames[i].blob);
  free(p->frames);
  memset(p, 0, sizeof(*p));
}

void dt__payload_copy(dt_payload *dst, const dt_payload *src) {
  dst->body = dt__xmalloc(src->len);
  memcpy(dst->body, src->body, src->len);
  dst->len = src->len;
  dst->nframes = src->nframes;
  dst->frames = src->nframes ? dt__xmalloc(src->nframes * sizeof(*dst->frames)) : NULL;
  for (uint32_t i = 0; i < src->nframes; i++) {
    dst->frames[i] = src->frames[i];
    dt__blob_ref(dst->frames[i].blob);
  }
}

size_t dt__payload_nbytes(const dt_payload *p) {
  size_t n = p->len;
  for (uint32_t i = 0; i < p->nframes; i++) n += p->frames[i].len;
  return n;
}

typedef struct {
  const char *p, *end;
  const dt_payload *pl;
} dec_state;

static int dec(dec_state *s, int depth, dt_value **out);

static int dec_ext(dec_state *s, uint32_t len, int8_t type, dt_value **out) {
  if ((size_t)(s->end - s->p) < len) return DT_EPROTO;
  const char *data = s->p;
  s->p += len;
  if (type == DT_EXT_FRAME && len == 4) {
    const char *q = data;
    uint32_t idx = mp_load_u32(&q);
    if (idx >= s->pl->nframes) return dt__err(DT_EPROTO, "frame reference %u out of range", idx);
    const dt_frame *f = &s->pl->frames[idx];
    *out = dt__bytes_of_blob(dt__blob_ref(f->blob), f->p, f->len);
    return *out ? 0 : DT_ENOMEM;
  }
  if (type == DT_EXT_FUTURE && len >= 1 && len <= DT_MAX_KEY) {
    char key[DT_MAX_KEY + 1];
    memcpy(key, data, len);
    key[len] = '\0';
    *out = dt__future_ref_value(key, NULL);
    return *out ? 0 : DT_ENOMEM;
  }
  return dt__err(DT_EPROTO, "unknown extension type %d", type);
}

static int dec(dec_state *s, int depth, dt_value **out) {
  if (depth > DT_MAX_DEPTH) return dt__err(DT_EPROTO, "value nested deeper than %d", DT_MAX_DEPTH);
  if (s->p >= s->end) return DT_EPROTO;
  uint8_t c = (uint8_t)*s->p;
  /* extensions are not decoded by msgpuck here: do them by hand */
  if (c == 0xd6 || c == 0xc7 || c == 0xc9) {
    const char *q = s->p + 1;
    uint32_t len;
    if (c == 0xd6) len = 4;
    else if (c == 0xc7) {
      if (s->end - q < 1) return DT_EPROTO;
      len = mp_load_u8(&q);
    } else {
      if (s->end - q < 4) return DT_EPROTO;
      len = mp_load_u32(&q);
    }
    if (s->end - q < 1) return DT_EPROTO;
    int8_t type = (int8_t)*q++;
    s->p = q;
    return dec_ext(s, len, type, out);
  }
  switch (mp_typeof((char)c)) {
  case MP_NIL: mp_decode_nil(&s->p); *out = dt_nil(); break;
  case MP_BOOL: *out = dt_bool(mp_decode_bool(&s->p)); break;
  case MP_UINT: {
    uint64_t u = mp_decode_uint(&s->p);
    if (u > INT64_MAX) return dt__err(DT_EPROTO, "integer out of range");
    *out = dt_int((int64_t)u);
    break;
  }
  case MP_INT: *out = dt_int(mp_decode_int(&s->p)); break;
  case MP_FLOAT: *out = dt_double(mp_decode_float(&s->p)); break;
  case MP_DOUBLE: *out = dt_double(mp_decode_double(&s->p)); break;
  case MP_STR: {
    uint32_t len;
    const char *str = mp_decode_str(&s->p, &len);
    *out = dt_strn(str, len);
    break;
  }
  case MP_BIN: {
    uint32_t len;
    const char *b = mp_decode_bin(&s->p, &len);
    *out = dt_bytes(b, len);
    break;
  }
  case MP_ARRAY: {
    uint32_t n = mp_decode_array(&s->p);
    if (n > (size_t)(s->end - s->p)) return DT_EPROTO;
    dt_value *l = dt_list_new();
    if (!l) return DT_ENOMEM;
    if (n) {
      l->u.list.items = dt__try_malloc(n * sizeof(*l->u.list.items));
      if (!l->u.list.items) { dt_value_free(l); return DT_ENOMEM; }
      l->u.list.cap = n;
    }
    for (uint32_t i = 0; i < n; i++) {
      int rc = dec(s, depth + 1, &l->u.list.items[i]);
      if (rc) { dt_value_free(l); return rc; }
      l->u.list.len++;
    }
    *out = l;
    return 0;
  }
  case MP_MAP: {
    uint32_t n = mp_decode_map(&s->p);
    if (n > (size_t)(s->end - s->p) / 2) return DT_EPROTO;
    dt_value *m = dt_map_new();
    if (!m) return DT_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
      if (s->p >= s->end || mp_typeof(*s->p) != MP_STR) {
        dt_value_free(m);
        return dt__err(DT_EPROTO, "map key is not a string");
      }
      uint32_t kl;
      const char *k = mp_decode_str(&s->p, &kl);
      char kb[256];
      char *key = kl < sizeof(kb) ? kb : dt__try_malloc(kl + 1);
      if (!key) { dt_value_free(m); return DT_ENOMEM; }
      memcpy(key, k, kl);
      key[kl] = '\0';
      dt_value *v = NULL;
      int rc = dec(s, depth + 1, &v);
      if (rc == 0) rc = dt_map_set(m, key, v);
      if (key != kb) free(key);
      if (rc) { dt_value_free(m); return rc; }
    }
    *out = m;
    return 0;
  }
  default: return dt__err(DT_EPROTO, "unsupported msgpack type 0x%02x", c);
  }
  return *out ? 0 : DT_ENOMEM;
}

int dt__payload_decode(const dt_payload *p, dt_value **out) {
  const char *q = p->body;
  *out = NULL;
  if (dt__mp_validate(&q, p->body + p->len, DT_MAX_DEPTH) != 0 || q != p->body + p->len)
    return dt__err(DT_EPROTO, "malformed value payload");
  dec_state s = {p->body, p->body + p->len, p};
  int rc = dec(&s, 0, out);
  if (rc) return rc == DT_EPROTO && !dt_last_error()[0] ? dt__err(DT_EPROTO, "malformed value") : rc;
  return 0;
}
