/*
 * msg.h -- the messages of msgs.h as C: one struct per message and per
 * record, the checked decoder that fills them, iterators over their lists,
 * and the checked encoder.
 *
 * Receiving: dt__msg_read(r, op, nfields, &m) checks the message's arity and
 * the type of every field, lists and records included, before it returns 0;
 * a handler then reads m.NAME.field and walks lists with the dt__next_*
 * iterators, which cannot fail.  Strings (dt_sv) and payloads (dt_pref)
 * point into the batch: valid until the handler returns.
 *
 * Sending: dt__e_begin(&e, w, op) ... dt__e_end(&e) writes one message field
 * by field; every write is checked against the table (kind, order, list
 * counts, arity) and a mismatch aborts, naming the message and field (a bug
 * in dtask, never caused by a peer).  A list of records is dt__e_list(&e, n) followed by n
 * times dt__e_rec(&e) and the record's fields.
 */
#ifndef DT_MSG_H
#define DT_MSG_H

#include <stdio.h>

#include "proto.h"
#include "msgs.h"

#define DT_PROTO_VERSION 3

/* ---- op codes */
enum {
  DT_OP_NONE = 0,
#define DT__OP_ENUM(name, dir, doc) DT_OP_##name,
  DT_MESSAGES(DT__OP_ENUM)
#undef DT__OP_ENUM
  DT_OP_COUNT
};
enum {
#define DT__REC_ENUM(name, doc) DT_REC_##name,
  DT_RECORDS(DT__REC_ENUM)
#undef DT__REC_ENUM
  DT_REC_COUNT
};

/* ---- field kinds */
enum {
  DT_K_UINT = 1, DT_K_INT, DT_K_DOUBLE, DT_K_BOOL, DT_K_STR, DT_K_STRN, DT_K_KEY, DT_K_BINN,
  DT_K_PAYLOAD, DT_K_REC
};
enum { DT_SHAPE_ONE = 1, DT_SHAPE_LIST, DT_SHAPE_RECS, DT_SHAPE_MAP };

/* a string or bytes inside a batch (not NUL-terminated); p is NULL for nil */
typedef struct {
  const char *p;
  uint32_t len;
} dt_sv;
/* a payload inside a batch: its body and its frames (borrowed) */
typedef struct {
  const char *body;
  uint32_t len;
  uint32_t nframes;
  const dt_frame *frames;
} dt_pref;
/* a checked list (or map) inside a batch; walk it with dt__next_* */
typedef struct {
  dt_rd r;
  uint32_t n, left;
  uint8_t kind;
  int8_t rec;
} dt_list;

#define DT__CT_UINT uint64_t
#define DT__CT_INT int64_t
#define DT__CT_DOUBLE double
#define DT__CT_BOOL bool
#define DT__CT_STR dt_sv
#define DT__CT_STRN dt_sv
#define DT__CT_KEY dt_sv
#define DT__CT_BINN dt_sv
#define DT__CT_PAYLOAD dt_pref
#define DT__FIELD_ONE(k, n, d) DT__CT_##k n;
#define DT__FIELD_LIST(k, n, d) dt_list n;

/* ---- records and messages as structs */
#define DT__REC_STRUCT(name, doc)                                                           \
  typedef struct dt_rec_##name {                                                            \
    DT_REC_##name(DT__FIELD_ONE, DT__FIELD_LIST, DT__FIELD_LIST, DT__FIELD_LIST)             \
  } dt_rec_##name;
DT_RECORDS(DT__REC_STRUCT)
#undef DT__REC_STRUCT
#define DT__MSG_STRUCT(name, dir, doc)                                                      \
  typedef struct dt_msg_##name {                                                            \
    DT_MSG_##name(DT__FIELD_ONE, DT__FIELD_LIST, DT__FIELD_LIST, DT__FIELD_LIST)             \
  } dt_msg_##name;
DT_MESSAGES(DT__MSG_STRUCT)
#undef DT__MSG_STRUCT

typedef union {
#define DT__MSG_MEMBER(name, dir, doc) dt_msg_##name name;
  DT_MESSAGES(DT__MSG_MEMBER)
#undef DT__MSG_MEMBER
} dt_msg;

/* ---- the table, for checks, docs and tests */
typedef struct {
  uint8_t shape, kind; /* DT_SHAPE_*, DT_K_* (DT_K_REC for lists of records) */
  int8_t rec;          /* DT_REC_* for lists of records, else -1 */
  const char *name, *doc;
} dt_field_info;
typedef struct {
  const char *name, *direction, *doc;
  const dt_field_info *fields;
  uint16_t nfields;
  uint16_t arity; /* wire elements after the op (a payload counts 3) */
} dt_msg_info;
extern const dt_msg_info dt__msgs[DT_OP_COUNT];
extern const dt_msg_info dt__recs[DT_REC_COUNT];
const char *dt__op_name(int op);
const char *dt__kind_name(int kind);

/* ---- receiving */
/* dt__msg_read: decodes message op (nfields elements after the op) from r
 * into out; 0, or DT_EPROTO with the reason in dt__msg_error(). */
int dt__msg_read(dt_rd *r, int op, uint32_t nfields, dt_msg *out);
const char *dt__msg_error(void); /* this thread's last decode failure */
bool dt__next_key(dt_list *l, dt_sv *out); /* false at the end */
bool dt__next_str(dt_list *l, dt_sv *out);
bool dt__next_uint(dt_list *l, uint64_t *out);
bool dt__next_int(dt_list *l, dt_sv *name, int64_t *out);      /* maps */
bool dt__next_double(dt_list *l, dt_sv *name, double *out);    /* maps */
bool dt__next_rec(dt_list *l, int rec, void *out);
#define DT__REC_NEXT(name, doc)                                                             \
  static inline bool dt__next_##name(dt_list *l, dt_rec_##name *out) {                      \
    return dt__next_rec(l, DT_REC_##name, out);                                             \
  }
DT_RECORDS(DT__REC_NEXT)
#undef DT__REC_NEXT
/* payloads: decode one (no copy), or copy it out (body copied, frames ref'd) */
int dt__pref_decode(const dt_pref *p, dt_value **out);
void dt__pref_copy(const dt_pref *p, dt_payload *out);
/* dt__str_eq: s equals the C string c */
bool dt__str_eq(dt_sv s, const char *c);
/* dt__str_dup: a NUL-terminated copy (nil gives NULL), at most max bytes */
char *dt__str_dup(dt_sv s, size_t max);

/* ---- sending */
typedef struct {
  const dt_field_info *fields;
  uint16_t nfields, i;
  uint8_t kind; /* lists and maps: the element kind */
  int8_t rec;
  uint8_t what; /* 0 record or message, 1 list, 2 map */
  bool want_key; /* maps: the next write is a key */
  uint32_t left;
} dt__enc_frame;
typedef struct {
  dt_wbuf *w;
  int op, depth;
  dt__enc_frame st[6];
} dt_enc;
void dt__e_begin(dt_enc *e, dt_wbuf *w, int op);
void dt__e_end(dt_enc *e);
void dt__e_uint(dt_enc *e, uint64_t v);
void dt__e_int(dt_enc *e, int64_t v);
void dt__e_double(dt_enc *e, double v);
void dt__e_bool(dt_enc *e, bool v);
void dt__e_str(dt_enc *e, const char *s, size_t len); /* STR, STRN, KEY */
void dt__e_cstr(dt_enc *e, const char *s);            /* NULL: nil (STRN only) */
void dt__e_bin(dt_enc *e, const void *p, size_t len); /* BINN */
void dt__e_nil(dt_enc *e);                            /* STRN, BINN */
void dt__e_payload(dt_enc *e, const dt_payload *p);   /* refs p's frames */
void dt__e_pref(dt_enc *e, const dt_pref *p);        /* PAYLOAD received: forwarded */
int dt__e_value(dt_enc *e, const dt_value *v);        /* PAYLOAD from a value */
void dt__e_empty_payload(dt_enc *e);                  /* PAYLOAD: nil, no frames */
void dt__e_list(dt_enc *e, uint32_t n);               /* L or LR field */
void dt__e_map(dt_enc *e, uint32_t n);                /* M field: n (str, value) pairs */
void dt__e_rec(dt_enc *e);                            /* next record of an LR list */
/* dt__e_elems_raw: k elements (records, or values of the list's kind) of
 * the open list were written with the raw writers (dt__wb_*, in a hot
 * path; a test compares them with the checked encoder's bytes): counted as
 * written */
void dt__e_elems_raw(dt_enc *e, uint32_t k);

/* dt__msg_doc: the tables of docs/architecture.md (messages, records) */
void dt__msg_doc(FILE *out);

#endif
