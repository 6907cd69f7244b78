/*
 * value.c -- dt_value: immutable reference-counted values (the API in
 * dtask.h): constructors, containers, accessors, equality and repr.  Every
 * allocation behind a public function goes through alloc.h, so that out of
 * memory gives NULL / DT_ENOMEM as dtask.h promises, never an abort.  Their
 * encoding is in payload.c, the buffers under bytes in blob.c.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "proto.h"

static dt_value *vnew(dt_type t) {
  dt_value *v = dt__try_calloc(1, sizeof(*v));
  if (!v) return NULL;
  atomic_init(&v->refs, 1);
  v->type = (uint8_t)t;
  return v;
}

dt_value *dt_nil(void) { return vnew(DT_NIL); }
dt_value *dt_bool(bool b) {
  dt_value *v = vnew(DT_BOOL);
  if (v) v->u.b = b;
  return v;
}
dt_value *dt_int(int64_t i) {
  dt_value *v = vnew(DT_INT);
  if (v) v->u.i = i;
  return v;
}
dt_value *dt_double(double d) {
  dt_value *v = vnew(DT_DOUBLE);
  if (v) v->u.d = d;
  return v;
}
dt_value *dt_strn(const char *s, size_t len) {
  if (!s && len) return NULL;
  dt_value *v = vnew(DT_STR);
  if (!v) return NULL;
  v->u.str.s = dt__try_malloc(len + 1);
  if (!v->u.str.s) {
    free(v);
    return NULL;
  }
  if (len) memcpy(v->u.str.s, s, len);
  v->u.str.s[len] = '\0';
  v->u.str.len = len;
  return v;
}
dt_value *dt_str(const char *s) { return s ? dt_strn(s, strlen(s)) : NULL; }

/* bytes_from_blob: a bytes value over p..p+len of b; takes b's reference
 * (released on failure too) */
static dt_value *bytes_from_blob(dt_blob *b, const char *p, size_t len) {
  dt_value *v = vnew(DT_BYTES);
  if (!v) {
    dt__blob_unref(b);
    return NULL;
  }
  v->u.bytes.blob = b;
  v->u.bytes.p = p;
  v->u.bytes.len = len;
  return v;
}

dt_value *dt__bytes_of_blob(dt_blob *b, const char *p, size_t len) {
  return bytes_from_blob(b, p, len);
}

dt_value *dt_bytes(const void *data, size_t len) {
  if (!data && len) return NULL;
  dt_blob *b = dt__blob_new(len);
  if (!b) return NULL;
  if (len) memcpy(b->data, data, len);
  return bytes_from_blob(b, b->data, len);
}

dt_value *dt_bytes_alloc(size_t len, void **data) {
  dt_blob *b = dt__blob_new(len);
  if (!b) return NULL;
  if (data) *data = b->data;
  return bytes_from_blob(b, b->data, len);
}

dt_value *dt_bytes_take(void *data, size_t len, void (*free_fn)(void *)) {
  if (!data && len) return NULL;
  dt_blob *b = dt__blob_wrap(data, len, free_fn);
  if (!b) {
    if (free_fn) free_fn(data);
    return NULL;
  }
  return bytes_from_blob(b, data, len);
}

dt_value *dt__bytes_take_arg(void *data, size_t len, void (*free_fn)(void *), void *arg) {
  if (!data && len) return NULL;
  dt_blob *b = dt__blob_wrap(data, len, free_fn);
  if (!b) {
    if (free_fn) free_fn(arg);
    return NULL;
  }
  b->free_arg = arg;
  return bytes_from_blob(b, data, len);
}

dt_value *dt_list_new(void) { return vnew(DT_LIST); }
dt_value *dt_map_new(void) { return vnew(DT_MAP); }

dt_value *dt__future_ref_value(const char *key, struct dt_future *fut) {
  dt_value *v = vnew(DT_FUTURE);
  if (!v) return NULL;
  v->u.fut.key = dt__try_strdup(key);
  if (!v->u.fut.key) {
    free(v);
    return NULL;
  }
  v->u.fut.fut = fut;
  return v;
}

int dt_list_push(dt_value *list, dt_value *item) {
  if (!item) return dt__err(DT_EINVAL, "dt_list_push: item is NULL");
  if (!list || list->type != DT_LIST) {
    dt_value_free(item);
    return dt__err(DT_EINVAL, "dt_list_push: not a list");
  }
  if (list->u.list.len == list->u.list.cap) {
    size_t ncap = list->u.list.cap ? list->u.list.cap * 2 : 4;
    dt_value **n = dt__try_realloc(list->u.list.items, ncap * sizeof(*n));
    if (!n) {
      dt_value_free(item);
      return dt__err(DT_ENOMEM, "dt_list_push: out of memory");
    }
    list->u.list.items = n;
    list->u.list.cap = ncap;
  }
  list->u.list.items[list->u.list.len++] = item;
  return 0;
}

dt_value *dt_list_of(size_t n, ...) {
  va_list ap;
  va_start(ap, n);
  dt_value *l = dt_list_new();
  bool ok = l != NULL;
  for (size_t i = 0; i < n; i++) {
    dt_value *it = va_arg(ap, dt_value *);
    if (!ok || !it) {
      ok = false;
      dt_value_free(it);
    } else if (dt_list_push(l, it) != 0) {
      ok = false; /* out of memory; the push consumed it */
    }
  }
  va_end(ap);
  if (!ok) {
    dt_value_free(l);
    return NULL;
  }
  return l;
}

int dt_map_set(dt_value *map, const char *key, dt_value *v) {
  if (!v) return dt__err(DT_EINVAL, "dt_map_set: value for '%s' is NULL", key ? key : "?");
  if (!map || map->type != DT_MAP || !key) {
    dt_value_free(v);
    return dt__err(DT_EINVAL, "dt_map_set: not a map or NULL key");
  }
  for (size_t i = 0; i < map->u.map.len; i++)
    if (strcmp(map->u.map.keys[i], key) == 0) {
      dt_value_free(map->u.map.vals[i]);
      map->u.map.vals[i] = v;
      return 0;
    }
  if (map->u.map.len == map->u.map.cap) {
    size_t ncap = map->u.map.cap ? map->u.map.cap * 2 : 4;
    char **nk = dt__try_realloc(map->u.map.keys, ncap * sizeof(*nk));
    if (nk) map->u.map.keys = nk;
    dt_value **nv = nk ? dt__try_realloc(map->u.map.vals, ncap * sizeof(*nv)) : NULL;
    if (nv) map->u.map.vals = nv;
    if (!nk || !nv) {
      dt_value_free(v);
      return dt__err(DT_ENOMEM, "dt_map_set: out of memory");
    }
    map->u.map.cap = ncap;
  }
  char *k = dt__try_strdup(key);
  if (!k) {
    dt_value_free(v);
    return dt__err(DT_ENOMEM, "dt_map_set: out of memory");
  }
  map->u.map.keys[map->u.map.len] = k;
  map->u.map.vals[map->u.map.len++] = v;
  return 0;
}

dt_value *dt_value_ref(dt_value *v) {
  if (v) atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
  return v;
}

void dt_value_free(dt_value *v) {
  if (!v) return;
  if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1) return;
  switch (v->type) {
  case DT_STR: free(v->u.str.s); break;
  case DT_BYTES: dt__blob_unref(v->u.bytes.blob); break;
  case DT_LIST:
    for (size_t i = 0; i < v->u.list.len; i++) dt_value_free(v->u.list.items[i]);
    free(v->u.list.items);
    break;
  case DT_MAP:
    for (size_t i = 0; i < v->u.map.len; i++) {
      free(v->u.map.keys[i]);
      dt_value_free(v->u.map.vals[i]);
    }
    free(v->u.map.keys);
    free(v->u.map.vals);
    break;
  case DT_FUTURE:
    free(v->u.fut.key);
    if (v->u.fut.fut) { /* through the future's header: proto never calls the client */
      dt__future_release_fn rel = atomic_load_explicit(
          &((dt__future_hdr *)(void *)v->u.fut.fut)->release, memory_order_relaxed);
      if (rel) rel(v->u.fut.fut);
    }
    break;
  default: break;
  }
  free(v);
}

dt_type dt_value_type(const dt_value *v) { return v ? (dt_type)v->type : DT_NIL; }

const char *dt_type_name(dt_type t) {
  static const char *names[] = {"nil", "bool", "int", "double", "string",
                                "bytes", "list", "map", "future"};
  return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

bool dt_value_bool(const dt_value *v) { return v && v->type == DT_BOOL && v->u.b; }
int64_t dt_value_int(const dt_value *v) { return v && v->type == DT_INT ? v->u.i : 0; }
double dt_value_double(const dt_value *v) {
  if (!v) return 0;
  if (v->type == DT_DOUBLE) return v->u.d;
  if (v->type == DT_INT) return (double)v->u.i;
  return 0;
}
const char *dt_value_str(const dt_value *v, size_t *len) {
  if (!v || v->type != DT_STR) return NULL;
  if (len) *len = v->u.str.len;
  return v->u.str.s;
}
const void *dt_value_bytes(const dt_value *v, size_t *len) {
  if (!v || v->type != DT_BYTES) return NULL;
  if (len) *len = v->u.bytes.len;
  return v->u.bytes.p;
}
size_t dt_list_len(const dt_value *v) { return v && v->type == DT_LIST ? v->u.list.len : 0; }
const dt_value *dt_list_get(const dt_value *v, size_t i) {
  if (!v || v->type != DT_LIST || i >= v->u.list.len) return NULL;
  return v->u.list.items[i];
}
size_t dt_map_len(const dt_value *v) { return v && v->type == DT_MAP ? v->u.map.len : 0; }
const dt_value *dt_map_get(const dt_value *v, const char *key) {
  if (!v || v->type != DT_MAP || !key) return NULL;
  for (size_t i = 0; i < v->u.map.len; i++)
    if (strcmp(v->u.map.keys[i], key) == 0) return v->u.map.vals[i];
  return NULL;
}
const char *dt_map_key_at(const dt_value *v, size_t i) {
  if (!v || v->type != DT_MAP || i >= v->u.map.len) return NULL;
  return v->u.map.keys[i];
}
const dt_value *dt_map_value_at(const dt_value *v, size_t i) {
  if (!v || v->type != DT_MAP || i >= v->u.map.len) return NULL;
  return v->u.map.vals[i];
}

bool dt_value_equal(const dt_value *a, const dt_value *b) {
  if (a == b) return true;
  if (!a || !b || a->type != b->type) return false;
  switch (a->type) {
  case DT_NIL: return true;
  case DT_BOOL: return a->u.b == b->u.b;
  case DT_INT: return a->u.i == b->u.i;
  case DT_DOUBLE: return a->u.d == b->u.d || (isnan(a->u.d) && isnan(b->u.d));
  case DT_STR:
    return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
  case DT_BYTES:
    return a->u.bytes.len == b->u.bytes.len &&
           (a->u.bytes.len == 0 || memcmp(a->u.bytes.p, b->u.bytes.p, a->u.bytes.len) == 0);
  case DT_LIST:
    if (a->u.list.len != b->u.list.len) return false;
    for (size_t i = 0; i < a->u.list.len; i++)
      if (!dt_value_equal(a->u.list.items[i], b->u.list.items[i])) return false;
    return true;
  case DT_MAP:
    if (a->u.map.len != b->u.map.len) return false;
    for (size_t i = 0; i < a->u.map.len; i++)
      if (!dt_value_equal(a->u.map.vals[i], dt_map_get(b, a->u.map.keys[i]))) return false;
    return true;
  case DT_FUTURE: return strcmp(a->u.fut.key, b->u.fut.key) == 0;
  }
  return false;
}

static size_t repr(const dt_value *v, char *buf, size_t cap, size_t pos) {
#define OUT(...)                                                                   \
  do {                                                                             \
    if (pos < cap) {                                                               \
      int n_ = snprintf(buf + pos, cap - pos, __VA_ARGS__);                        \
      pos += n_ > 0 ? (size_t)n_ : 0;                                              \
    }                                                                              \
  } while (0)
  if (!v) {
    OUT("NULL");
    return pos;
  }
  switch (v->type) {
  case DT_NIL: OUT("nil"); break;
  case DT_BOOL: OUT("%s", v->u.b ? "true" : "false"); break;
  case DT_INT: OUT("%" PRId64, v->u.i); break;
  case DT_DOUBLE: OUT("%.17g", v->u.d); break;
  case DT_STR: OUT("\"%.*s\"", (int)(v->u.str.len > 64 ? 64 : v->u.str.len), v->u.str.s); break;
  case DT_BYTES: OUT("<%zu bytes>", v->u.bytes.len); break;
  case DT_LIST:
    OUT("[");
    for (size_t i = 0; i < v->u.list.len && pos < cap; i++) {
      if (i) OUT(", ");
      pos = repr(v->u.list.items[i], buf, cap, pos);
    }
    OUT("]");
    break;
  case DT_MAP:
    OUT("{");
    for (size_t i = 0; i < v->u.map.len && pos < cap; i++) {
      if (i) OUT(", ");
      OUT("%s: ", v->u.map.keys[i]);
      pos = repr(v->u.map.vals[i], buf, cap, pos);
    }
    OUT("}");
    break;
  case DT_FUTURE: OUT("<future %s>", v->u.fut.key); break;
  }
  return pos;
#undef OUT
}

char *dt_value_repr(const dt_value *v, char *buf, size_t cap) {
  if (!buf || cap == 0) return buf;
  buf[0] = '\0';
  repr(v, buf, cap, 0);
  return buf;
}

size_t dt__value_nbytes(const dt_value *v) {
  if (!v) return 0;
  size_t n = sizeof(*v);
  switch (v->type) {
  case DT_STR: n += v->u.str.len; break;
  case DT_BYTES: n += v->u.bytes.len; break;
  case DT_LIST:
    for (size_t i = 0; i < v->u.list.len; i++) n += dt__value_nbytes(v->u.list.items[i]);
    break;
  case DT_MAP:
    for (size_t i = 0; i < v->u.map.len; i++)
      n += strlen(v->u.map.keys[i]) + dt__value_nbytes(v->u.map.vals[i]);
    break;
  default: break;
  }
  return n;
}
