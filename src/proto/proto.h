/*
 * proto.h -- the wire protocol: reference-counted blobs, encoded values
 * ("payloads"), the write buffer that batches messages, the bounded message
 * validator and reader, and the table of message types.
 *
 * On the wire a connection carries batches:
 *
 *   u32 body_len | u32 n_frames | n_frames x u64 frame_len | body | frames
 *
 * (little endian).  The body is a sequence of msgpack arrays, one per
 * message: [op, field...].  Values travel as payloads: [bin body, u32
 * first_frame, u32 n_frames]; inside a payload body, byte strings of
 * DT_LARGE_BYTES or more are ext(2) references to one of the payload's frames
 * (sent as is, never copied into the body), and futures are ext(1) keys.
 */
#ifndef DT_PROTO_H
#define DT_PROTO_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"
#include "dtask.h"

/* ---- limits, checked before anything is allocated */
#define DT_MAX_BODY (256u << 20)        /* bytes of msgpack per batch */
#define DT_MAX_FRAMES 65536u            /* frames per batch */
#define DT_MAX_FRAME (16ull << 30)      /* bytes per frame */
#define DT_PREADMIT_MAX_BODY (8u << 20) /* batch body from a peer not yet introduced (no frames) */
#define DT_MAX_DEPTH 64                 /* nesting of msgpack containers */
#define DT_MAX_KEY 1024                 /* bytes in a task key */
#define DT_BATCH_SOFT_BODY (4u << 20)   /* start a new batch past this */
#define DT_BATCH_SOFT_FRAMES 1024u
#define DT_INLINE_MAX 4096u             /* results this small may ride along */

#define DT_EXT_FUTURE 1
#define DT_EXT_FRAME 2

/* ---- blobs: reference-counted byte buffers shared across threads */
typedef struct dt_blob {
  atomic_size_t refs;
  size_t len;
  char *data;
  void (*free_fn)(void *);
  void *free_arg;
  void *map_base; /* large blobs: their own mapping (huge pages) */
  size_t map_len;
  int fd;             /* a memfd holding the data (shareable), or -1 */
  char shm_name[40];  /* that memfd's name, unique per process */
} dt_blob;
#define DT_BLOB_MAP_MIN (4u << 20) /* from this size a blob gets its own mapping */
dt_blob *dt__blob_new(size_t len); /* uninitialised data, refs = 1 */
dt_blob *dt__blob_wrap(void *data, size_t len, void (*free_fn)(void *));
/* dt__blob_new_lazy: like dt__blob_new, but a large blob's memory is
 * committed only as it is written or dt__blob_commit'ed (a frame being
 * received: its bytes may never come); dt__blob_commit pre-faults
 * off..off+len of a large blob (a no-op for small ones). */
dt_blob *dt__blob_new_lazy(size_t len);
/* dt__blob_anonymous: set once at start-up (a worker with --no-shm): large
 * blobs are private anonymous memory, not memfds (cheaper to fault in and
 * to free; dt__blob_share still copies one into a memfd when asked) */
extern bool dt__blob_anonymous;
void dt__blob_commit(dt_blob *b, size_t off, size_t len);
dt_blob *dt__blob_ref(dt_blob *b);
/* Sharing large blobs with processes on the same host (docs/memory.md):
 * dt__blob_share gives the memfd holding b's data (made, and the data copied
 * in, if b was not allocated in one); dt__blob_open_shared maps another
 * process's memfd, after checking that /proc/PID/fd/FD still is the memfd of
 * that name and large enough.  0 / NULL on failure. */
int dt__blob_share(dt_blob *b, int *fd, const char **name);
dt_blob *dt__blob_open_shared(int pid, int fd, const char *name, size_t size);
/* dt__bytes_of_blob: a DT_BYTES value over p..p+len of b (takes b's ref) */
dt_value *dt__bytes_of_blob(dt_blob *b, const char *p, size_t len);
void dt__blob_unref(dt_blob *b);

/* A frame is a slice of a blob (the frame holds one blob reference). */
typedef struct {
  dt_blob *blob;
  const char *p;
  size_t len;
} dt_frame;

/* ---- futures inside values.  proto knows nothing of the client: a DT_FUTURE
 * value may hold a reference on a future (u.fut.fut, below), and drops it
 * through this header, which must be the first member of that future's
 * struct (client/client.h).  The client sets release before it hands out a
 * value holding a future; dt_value_free calls release(fut) once, on the
 * thread that drops the value's last reference. */
typedef void (*dt__future_release_fn)(struct dt_future *f);
typedef struct dt__future_hdr {
  _Atomic(dt__future_release_fn) release;
} dt__future_hdr;

/* ---- values (internal layout; the API is in dtask.h) */
struct dt_value {
  atomic_uint refs;
  uint8_t type;
  union {
    bool b;
    int64_t i;
    double d;
    struct { char *s; size_t len; } str;
    struct { dt_blob *blob; const char *p; size_t len; } bytes;
    struct { dt_value **items; size_t len, cap; } list;
    struct { char **keys; dt_value **vals; size_t len, cap; } map;
    struct { char *key; struct dt_future *fut; } fut;
  } u;
};
/* dt__bytes_take_arg: dt_bytes_take whose free_fn gets arg, not data. */
dt_value *dt__bytes_take_arg(void *data, size_t len, void (*free_fn)(void *), void *arg);
/* dt__future_ref_value: a DT_FUTURE value naming key; fut (may be NULL) is
 * a reference the value takes over, released through fut's dt__future_hdr
 * when the value is freed.  NULL when out of memory (fut is then not
 * released: the caller keeps its reference). */
dt_value *dt__future_ref_value(const char *key, struct dt_future *fut);

/* ---- payloads: one encoded value with its own frames */
typedef struct {
  char *body; /* owned msgpack */
  size_t len;
  dt_frame *frames; /* owned array; each holds a blob reference */
  uint32_t nframes;
} dt_payload;
/* dt__payload_encode: encodes v.  deps (may be NULL) collects the keys of
 * DT_FUTURE values found (borrowed from v).  Returns 0 or DT_EINVAL. */
int dt__payload_encode(const dt_value *v, dt_payload *out, dt_vec *deps);
/* dt__payload_decode: decodes p into a new value; untrusted input. */
int dt__payload_decode(const dt_payload *p, dt_value **out);
void dt__payload_clear(dt_payload *p);
void dt__payload_copy(dt_payload *dst, const dt_payload *src); /* refs frames */
size_t dt__payload_nbytes(const dt_payload *p);
size_t dt__value_nbytes(const dt_value *v);
/* dt__log_recent_value: the last n lines this process logged, as
 * [[level, line]...] oldest first (logvalue.c); NULL when out of memory. */
dt_value *dt__log_recent_value(int64_t n);

/* ---- the write buffer: messages of one batch */
typedef struct {
  char *buf;
  size_t len, cap;
  dt_frame *frames;
  uint32_t nframes, fcap;
  uint32_t nmsgs;
} dt_wbuf;
void dt__wbuf_init(dt_wbuf *w);
void dt__wbuf_clear(dt_wbuf *w); /* releases everything */
char *dt__wbuf_reserve(dt_wbuf *w, size_t n);
void dt__wb_array(dt_wbuf *w, uint32_t n);
void dt__wb_map(dt_wbuf *w, uint32_t n);
void dt__wb_uint(dt_wbuf *w, uint64_t u);
void dt__wb_int(dt_wbuf *w, int64_t i);
void dt__wb_double(dt_wbuf *w, double d);
void dt__wb_bool(dt_wbuf *w, bool b);
void dt__wb_nil(dt_wbuf *w);
void dt__wb_str(dt_wbuf *w, const char *s, size_t len);
void dt__wb_cstr(dt_wbuf *w, const char *s); /* NULL writes nil */
void dt__wb_bin(dt_wbuf *w, const void *p, size_t len);
void dt__wb_payload(dt_wbuf *w, const dt_payload *p); /* refs p's frames */
/* dt__wb_value: encodes v as a payload (3 fields). */
int dt__wb_value(dt_wbuf *w, const dt_value *v);
/* the op code starts a message: dt__wb_msg(w, op, nfields) writes the array
 * header for [op, nfields...] and the op */
void dt__wb_msg(dt_wbuf *w, int op, uint32_t nfields);

/* ---- validation and reading of untrusted messages */
/* dt__mp_validate: checks that *p..end starts with one complete msgpack
 * object whose containers nest at most max_depth deep and whose counts fit
 * in the bytes present; advances *p past it.  0 or DT_EPROTO. */
int dt__mp_validate(const char **p, const char *end, int max_depth);

typedef struct {
  const char *p, *end;   /* the current message, already validated */
  const dt_frame *frames; /* frames of the batch */
  uint32_t nframes;
} dt_rd;
int dt__rd_array(dt_rd *r, uint32_t *n);
int dt__rd_map(dt_rd *r, uint32_t *n);
int dt__rd_uint(dt_rd *r, uint64_t *u);
int dt__rd_int(dt_rd *r, int64_t *i);
int dt__rd_double(dt_rd *r, double *d);
int dt__rd_bool(dt_rd *r, bool *b);
int dt__rd_str(dt_rd *r, const char **s, uint32_t *len);
int dt__rd_key(dt_rd *r, const char **s, uint32_t *len); /* str, 1..DT_MAX_KEY */
int dt__rd_bin(dt_rd *r, const char **s, uint32_t *len);
bool dt__rd_is_nil(dt_rd *r); /* consumes the nil if it is one */
int dt__rd_skip(dt_rd *r);
/* dt__rd_payload: fills out (new body copy + frame refs). */
int dt__rd_payload(dt_rd *r, dt_payload *out);

/* ---- message types and their fields: msg.h */
#include "msg.h"

#endif
