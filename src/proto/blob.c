/*
 * blob.c -- dt_blob: reference-counted byte buffers shared across threads,
 * under bytes values and the frames of a batch.  Large blobs get their own
 * pre-faulted mapping, in a memfd when possible, so that workers on the
 * same host can map them without a copy (docs/memory.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "proto.h"

/* shm_seq: numbers the memfds of this process (their names are unique) */
static atomic_uint_fast64_t shm_seq;

/* memfd_map: a mapping of a fresh memfd of len bytes (shareable with
 * workers on the same host), pre-faulted; fd and name set; NULL on failure */
static void *memfd_map(size_t len, int *fd, char *name, size_t namecap, bool populate) {
  snprintf(name, namecap, "dtask-%d-%llu", (int)getpid(),
           (unsigned long long)atomic_fetch_add(&shm_seq, 1));
  int f = memfd_create(name, MFD_CLOEXEC);
  if (f < 0) return NULL;
  if (ftruncate(f, (off_t)len) != 0) {
    close(f);
    return NULL;
  }
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | (populate ? MAP_POPULATE : 0), f, 0);
  if (p == MAP_FAILED) {
    close(f);
    return NULL;
  }
  *fd = f;
  return p;
}

/* map_big: a pre-faulted anonymous mapping for a large blob.  A transfer
 * is received straight into it; faulting it in page by page while the data
 * arrives cost a third of the transfer's time.  (Transparent huge pages were
 * tried: 2.4 GB/s when the kernel had them at hand, 0.5 GB/s when it had to
 * compact memory first; this machine's THP defrag mode stalls.) */
bool dt__blob_anonymous;

static void *map_big(size_t len, void **base, size_t *map_len, int *fd, char *name, size_t namecap,
                     bool populate) {
  char *p = dt__blob_anonymous ? NULL : memfd_map(len, fd, name, namecap, populate);
  if (!p) {
    *fd = -1;
    p = mmap(NULL, len, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0), -1, 0);
    if (p == MAP_FAILED) return NULL;
  }
  *base = p;
  *map_len = len;
  return p;
}

static dt_blob *blob_new(size_t len, bool populate) {
  if (len >= DT_BLOB_MAP_MIN) {
    dt_blob *b = dt__try_malloc(sizeof(*b));
    if (!b) return NULL;
    b->data = map_big(len, &b->map_base, &b->map_len, &b->fd, b->shm_name, sizeof(b->shm_name),
                      populate);
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
  dt_blob *b = dt__try_malloc(sizeof(*b) + len);
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

dt_blob *dt__blob_new(size_t len) { return blob_new(len, true); }
dt_blob *dt__blob_new_lazy(size_t len) { return blob_new(len, false); }

void dt__blob_commit(dt_blob *b, size_t off, size_t len) {
  if (!b->map_base || off >= b->len) return;
  if (len > b->len - off) len = b->len - off;
  uintptr_t page = 4096, start = (uintptr_t)(b->data + off) & ~(page - 1);
  uintptr_t end = ((uintptr_t)(b->data + off + len) + page - 1) & ~(page - 1);
  uintptr_t lim = (uintptr_t)b->map_base + b->map_len;
  if (end > lim) end = lim;
#ifdef MADV_POPULATE_WRITE
  if (end > start) (void)madvise((void *)start, end - start, MADV_POPULATE_WRITE);
#endif
}

dt_blob *dt__blob_wrap(void *data, size_t len, void (*free_fn)(void *)) {
  dt_blob *b = dt__try_malloc(sizeof(*b));
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
  dt_blob *b = dt__try_malloc(sizeof(*b));
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
