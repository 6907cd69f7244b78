/*
 * value.c -- dt_value: immutable reference-counted values, and their
 * encoding as payloads (msgpack body + out-of-band frames for large bytes).
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <msgpuck.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto.h"

/* ---------------------------------------------------------------- blobs */

/* map_big: a pre-faulted anonymous mapping for a large blob.  A transfer
 * is received straight into it; faulting it in page by page while the data
 * arrives cost a third of the transfer's time.  (Transparent huge pages were
 * tried: 2.4 GB/s when the kernel had them at hand, 0.5 GB/s when it had to
 * compact memory first; this machine's THP defrag mode stalls.) */
static atomic_uint_fast64_t shm_seq;

/* memfd_map: a mapping of a fresh memfd of len bytes (shareable with
 * workers on the same host), pre-faulted; fd and name set; NULL on failure */
static void *memfd_map(size_t len, int *fd, char *name, size_t namecap) {
  snprintf(name, namecap, "dtask-%d-%llu", (int)getpid(),
           (unsigned long long)atomic_fetch_add(&shm_seq, 1));
  int f = memfd_create(name, MFD_CLOEXEC);
  if (f < 0) return NULL;
  if (ftruncate(f, (off_t)len) != 0) {
    close(f);
    return NULL;
  }
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, f, 0);
  if (p == MAP_FAILED) {
    close(f);
    return NULL;
  }
  *fd = f;
  return p;
}

static void *map_big(size_t len, void **base, size_t *map_len, int *fd, char *name, size_t namecap) {
  char *p = memfd_map(len, fd, name, namecap);
  if (!p) {
    *fd = -1;
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) return NULL;
  }
  *base = p;
  *map_len = len;
  return p;
}

dt_blob *dt__blob_new(size_t len) {
  if (len >= DT_BLOB_MAP_MIN) {
    dt_blob *b = malloc(sizeof(*b));
    if (!b) return NULL;
    b->data = map_big(len, &b->map_base, &b->map_len, &b->fd, b->shm_name, sizeof(b->shm_name));
    if (!b->data) {
      free(b);
      return NULL;
    }
    atomic_init(&b->refs, 1);
    b->len = len;
    b->free_fn = NULL;
    b->free_arg = NULL;
    return b;
  }
  dt_blob *b = malloc(sizeof(*b) + len);
  if (!b) return NULL;
  atomic_init(&b->refs, 1);
  b->len = len;
  b->data = (char *)(b + 1);
  b->free_fn = NULL;
  b->free_arg = NULL;
  b->map_base = NULL;
  b->map_len = 0;
  b->fd = -1;
  return b;
}

dt_blob *dt__blob_wrap(void *data, size_t len, void (*free_fn)(void *)) {
  dt_blob *b = malloc(sizeof(*b));
  if (!b) return NULL;
  atomic_init(&b->refs, 1);
  b->len = len;
  b->data = data;
  b->free_fn = free_fn;
  b->free_arg = data;
  b->map_base = NULL;
  b->map_len = 0;
  b->fd = -1;
  return b;
}

dt_blob *dt__blob_ref(dt_blob *b) {
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

void dt__blob_unref(dt_blob *b) {
  if (!b) return;
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) return;
  if (b->free_fn) b->free_fn(b->free_arg);
  if (b->map_base) munmap(b->map_base, b->map_len);
  if (b->fd >= 0) close(b->fd);
  free(b);
}

int dt__blob_share(dt_blob *b, int *fd, const char **name) {
  if (b->fd < 0) { /* a task's own buffer: copy it into a memfd once */
    char nm[40];
    snprintf(nm, sizeof(nm), "dtask-%d-%llu", (int)getpid(),
             (unsigned long long)atomic_fetch_add(&shm_seq, 1));
    int f = memfd_create(nm, MFD_CLOEXEC);
    if (f < 0) return -1;
    for (size_t off = 0; off < b->len;) {
      ssize_t w = pwrite(f, b->data + off, b->len - off, (off_t)off);
      if (w <= 0) {
        close(f);
        return -1;
      }
      off += (size_t)w;
    }
    b->fd = f;
    memcpy(b->shm_name, nm, sizeof(nm));
  }
  *fd = b->fd;
  *name = b->shm_name;
  return 0;
}

dt_blob *dt__blob_open_shared(int pid, int fd, const char *name, size_t size) {
  char path[64], link[128], want[96];
  snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
  ssize_t n = readlink(path, link, sizeof(link) - 1);
  if (n <= 0) return NULL;
  link[n] = '\0';
  snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
  if (strcmp(link, want) != 0) return NULL; /* not that memfd (any more) */
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return NULL;
  struct stat st;
  if (fstat(f, &st) != 0 || (uint64_t)st.st_size < size) {
    close(f);
    return NULL;
  }
  size_t len = size ? size : 1;
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, f, 0);
  close(f);
  if (p == MAP_FAILED) return NULL;
  dt_blob *b = malloc(sizeof(*b));
  if (!b) {
    munmap(p, len);
    return NULL;
  }
  atomic_init(&b->refs, 1);
  b->len = size;
  b->data = p;
  b->free_fn = NULL;
  b->free_arg = NULL;
  b->map_base = p;
  b->map_len = len;
  b->fd = -1;
  return b;
}

static dt_value *bytes_from_blob(dt_blob *b, const char *p, size_t len);
dt_value *dt__bytes_of_blob(dt_blob *b, const char *p, size_t len) {
  return bytes_from_blob(b, p, len);
}

/* ---------------------------------------------------------------- values */

static dt_value *bytes_from_blob(dt_blob *b, const char *p, size_t len);

static dt_value *vnew(dt_type t) {
  dt_value *v = calloc(1, sizeof(*v));
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
  v->u.str.s = malloc(len + 1);
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
  v->u.fut.key = strdup(key);
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
    dt_value **n = realloc(list->u.list.items, ncap * sizeof(*n));
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
    if (!ok || !it || dt_list_push(l, it) != 0) {
      ok = false;
      dt_value_free(it);
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
    char **nk = realloc(map->u.map.keys, ncap * sizeof(*nk));
    if (nk) map->u.map.keys = nk;
    dt_value **nv = nk ? realloc(map->u.map.vals, ncap * sizeof(*nv)) : NULL;
    if (nv) map->u.map.vals = nv;
    if (!nk || !nv) {
      dt_value_free(v);
      return dt__err(DT_ENOMEM, "dt_map_set: out of memory");
    }
    map->u.map.cap = ncap;
  }
  char *k = strdup(key);
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
    if (v->u.fut.fut) dt_future_release(v->u.fut.fut);
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

/* ---------------------------------------------------------------- payloads */

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
        w->fcap = w->fcap ? w->fcap * 2 : 4;
        w->frames = dt__xrealloc(w->frames, w->fcap * sizeof(*w->frames));
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

static dt_wbuf *scratch_get(void) {
  pthread_once(&scratch_once, scratch_init);
  dt_wbuf *w = pthread_getspecific(scratch_key);
  if (!w) {
    w = dt__xcalloc(1, sizeof(*w));
    pthread_setspecific(scratch_key, w);
  }
  return w;
}

int dt__payload_encode(const dt_value *v, dt_payload *out, dt_vec *deps) {
  /* encode into this thread's scratch buffer, then keep an exact copy:
   * payloads of small arguments are a few bytes, and many are kept */
  dt_wbuf *w = scratch_get();
  w->len = 0;
  w->nframes = 0;
  memset(out, 0, sizeof(*out));
  if (!v) return dt__err(DT_EINVAL, "value is NULL");
  int rc = enc(w, v, deps, 0);
  if (rc == 0) {
    out->body = dt__xmalloc(w->len);
    memcpy(out->body, w->buf, w->len);
    out->len = w->len;
    if (w->nframes) {
      out->frames = dt__xmalloc(w->nframes * sizeof(*out->frames));
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
    *out = bytes_from_blob(dt__blob_ref(f->blob), f->p, f->len);
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
      l->u.list.items = malloc(n * sizeof(*l->u.list.items));
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
      char *key = kl < sizeof(kb) ? kb : malloc(kl + 1);
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
