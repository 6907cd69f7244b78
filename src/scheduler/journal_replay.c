/*
 * journal_replay.c -- reading a journal (untrusted bytes: every length is
 * checked, a torn last record is cut off, anything else wrong refuses the
 * file) and replaying it into a fresh state machine.  See journal.h.
 *
 * The replay reads every record first into maps keyed by what the records
 * name (borrowing the keys from the file's bytes): the last JR_TASK of each
 * key not forgotten since, the errors, the clients and what each wanted,
 * the workers connected.  Only when the whole file read cleanly does it
 * touch the state machine: one dt__sched_update_graph with every task,
 * wanted by one recovery client (no connection) on behalf of the clients
 * of before, then the errors.  Results come back as the workers of before
 * reconnect and report what they hold.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/msg.h"
#include "coord.h"
#include "journal.h"
#include "sched_int.h"

void (*dt__journal_ds_restore)(const char *name, uint32_t nlen, struct coord_val *v);

/* ---------------------------------------------------------------- CRC-32C */

static uint32_t crc_table[256];
static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[i] = c;
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
/* the SSE4.2 instruction: 8 bytes a step (the CPU checked once) */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *b, size_t n) {
  uint64_t c = crc;
  for (; n >= 8; n -= 8, b += 8) {
    uint64_t v;
    memcpy(&v, b, 8);
    c = __builtin_ia32_crc32di(c, v);
  }
  uint32_t c32 = (uint32_t)c;
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *b++);
  return c32;
}
#define DT_CRC_HW 1
#endif

uint32_t dt__crc32c(uint32_t crc, const void *p, size_t n) {
  const uint8_t *b = p;
#ifdef DT_CRC_HW
  static int hw = -1;
  if (hw < 0) hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
  if (hw) return ~crc_hw(~crc, b, n);
#endif
  if (!crc_table[1]) crc_init();
  crc = ~crc;
  while (n--) crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void dt__journal_cluster_id(const char *name, uint8_t id[16]) {
  /* two FNV-1a hashes with different offsets: enough to tell clusters apart */
  uint64_t h1 = 1469598103934665603ull, h2 = 0x84222325cbf29ce4ull;
  for (const char *c = name; *c; c++) {
    h1 = (h1 ^ (uint8_t)*c) * 1099511628211ull;
    h2 = (h2 ^ (uint8_t)*c) * 0x100000001b3ull + 7;
  }
  for (int i = 0; i < 8; i++) {
    id[i] = (uint8_t)(h1 >> (8 * i));
    id[8 + i] = (uint8_t)(h2 >> (8 * i));
  }
}

void dt__journal_header(uint8_t out[DT_JOURNAL_HDR], const uint8_t id[16]) {
  memcpy(out, DT_JOURNAL_MAGIC, 8);
  wr32(out + 8, DT_JOURNAL_VERSION);
  wr32(out + 12, DT_JOURNAL_HDR);
  memcpy(out + 16, id, 16);
  wr32(out + 32, 0);
  wr32(out + 36, dt__crc32c(0, out, 36));
}

/* ---------------------------------------------------------------- reading */

__attribute__((format(printf, 3, 4))) static int bad(char *why, size_t cap, const char *fmt,
                                                      ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, cap, fmt, ap);
  va_end(ap);
  return DT_EPROTO;
}

int dt__jr_open(dt_jreader *r, const void *buf, size_t len, const uint8_t *id, char *why,
                size_t cap) {
  memset(r, 0, sizeof(*r));
  r->p = buf;
  r->len = len;
  const uint8_t *h = buf;
  if (len < DT_JOURNAL_HDR || memcmp(h, DT_JOURNAL_MAGIC, 8) != 0)
    return bad(why, cap, "not a dtask journal (no valid header; %zu bytes)", len);
  if (rd32(h + 36) != dt__crc32c(0, h, 36))
    return bad(why, cap, "the journal's header is corrupt (CRC mismatch)");
  if (rd32(h + 8) != DT_JOURNAL_VERSION || rd32(h + 12) != DT_JOURNAL_HDR)
    return bad(why, cap, "journal version %u is not supported (this scheduler writes %u)",
               rd32(h + 8), DT_JOURNAL_VERSION);
  if (id && memcmp(h + 16, id, 16) != 0)
    return bad(why, cap, "the journal belongs to another cluster (its cluster id differs: another "
                         "address, secret or --cluster-id)");
  r->off = DT_JOURNAL_HDR;
  return 0;
}

static bool all_zero(const uint8_t *p, size_t n) {
  while (n--)
    if (*p++) return false;
  return true;
}

int dt__jr_next(dt_jreader *r, const uint8_t **rec, uint32_t *rlen, char *why, size_t cap) {
  size_t rem = r->len - r->off;
  if (rem == 0) return 0;
  const uint8_t *p = r->p + r->off;
  if (rem < 8) {
    r->torn = true;
    return 0;
  }
  uint32_t L = rd32(p), crc = rd32(p + 4);
  if (L == 0 || L > DT_JOURNAL_REC_MAX) {
    if (all_zero(p, rem)) { /* zeros where the last writes did not land */
      r->torn = true;
      return 0;
    }
    return bad(why, cap, "journal corrupt: record %llu (at byte %zu) has an invalid length",
               (unsigned long long)r->nrec, r->off);
  }
  if (L > rem - 8) { /* the last record, cut short */
    r->torn = true;
    return 0;
  }
  if (dt__crc32c(0, p + 8, L) != crc) {
    if (r->off + 8 + L == r->len) { /* the last one: a torn write */
      r->torn = true;
      return 0;
    }
    return bad(why, cap, "journal corrupt: record %llu (at byte %zu) fails its CRC check, and "
                         "more records follow it",
               (unsigned long long)r->nrec, r->off);
  }
  *rec = p + 8;
  *rlen = L;
  r->off += 8 + (size_t)L;
  r->nrec++;
  return 1;
}

/* ---------------------------------------------------------------- fields */

typedef struct {
  const uint8_t *p, *end;
  bool bad;
} cur;

static uint64_t g_n(cur *c, int n) {
  if (c->bad || c->end - c->p < n) {
    c->bad = true;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)c->p[i] << (8 * i);
  c->p += n;
  return v;
}
static uint8_t G8(cur *c) { return (uint8_t)g_n(c, 1); }
static uint32_t G32(cur *c) { return (uint32_t)g_n(c, 4); }
static uint64_t G64(cur *c) { return g_n(c, 8); }
static double g_f64(cur *c) {
  uint64_t u = G64(c);
  double d;
  memcpy(&d, &u, 8);
  return d;
}
/* g_str: a string of 1..max bytes (0 allowed when empty_ok) */
static const char *g_str(cur *c, uint32_t *len, uint32_t max, bool empty_ok) {
  uint32_t n = G32(c);
  if (c->bad || n > max || (!n && !empty_ok) || (size_t)(c->end - c->p) < n) {
    c->bad = true;
    *len = 0;
    return "";
  }
  const char *s = (const char *)c->p;
  c->p += n;
  *len = n;
  return s;
}
static const char *g_key(cur *c, uint32_t *len) {
  const char *k = g_str(c, len, DT_MAX_KEY, false);
  if (!c->bad && memchr(k, 0, *len)) c->bad = true;
  return k;
}

/* ---------------------------------------------------------------- the replay's maps */

typedef struct {
  char idkey[12];
  bool internal;
  uint32_t id, nlen;
  const char *name; /* borrowed from the file */
  dt_smap wants; /* key -> (void *)1, keys borrowed from the file */
} rclient;

static struct {
  dt_smap tasks, erred, clients, datasets; /* keys borrowed from the file being replayed */
  dt_smap workers;               /* address (owned, the value) */
  s_client *holder;
  uint32_t pending, maxid;
} R;

static void rclient_free(rclient *c) {
  dt__smap_destroy(&c->wants);
  free(c);
}

static void maps_clear(bool workers_too) {
  dt__jr_coord_forget(workers_too);
  dt__smap_destroy(&R.tasks);
  dt__smap_destroy(&R.erred);
  dt__smap_destroy(&R.datasets);
  for (size_t i = 0; i < R.clients.cap; i++)
    if (R.clients.slots[i].key) rclient_free(R.clients.slots[i].val);
  dt__smap_destroy(&R.clients);
  if (workers_too) {
    for (size_t i = 0; i < R.workers.cap; i++)
      if (R.workers.slots[i].key) free(R.workers.slots[i].val);
    dt__smap_destroy(&R.workers);
  }
}

void dt__journal_replay_forget(void) {
  maps_clear(true);
  R.holder = NULL;
  R.pending = R.maxid = 0;
}
s_client *dt__journal_holder(void) { return R.holder; }
uint32_t dt__journal_pending_clients(void) { return R.pending; }
size_t dt__journal_expected_workers(void) { return R.workers.len; }
bool dt__journal_expect_worker(const char *address) {
  char *a = dt__smap_del(&R.workers, address, strlen(address));
  free(a);
  return a != NULL;
}
/* dt__journal_set_holder: the recovery client left (journal.c) */
void dt__journal_set_holder(s_client *c, uint32_t pending);
void dt__journal_set_holder(s_client *c, uint32_t pending) {
  R.holder = c;
  R.pending = pending;
}

/* taskw_of: a JR_TASKW record's bytes (len after the type) decoded as the
 * client's task element, checked as UPDATE_GRAPH's decoder checks it, into
 * nt (strings borrowed from the record; dt__newtask_free); 0 or DT_EPROTO */
static int taskw_of(const uint8_t *rec, uint32_t len, s_newtask *nt) {
  memset(nt, 0, sizeof(*nt));
  const char *p = (const char *)rec + 1, *end = (const char *)rec + len, *q = p;
  if (len < 2 || dt__mp_validate(&q, end, DT_MAX_DEPTH) != 0 || q != end) return DT_EPROTO;
  /* a frameless spec: any frame index passes, and frames are refused below */
  dt_list l = {.r = {p, end, NULL, UINT32_MAX}, .n = 1, .left = 1, .kind = DT_K_REC, .rec = DT_REC_task};
  dt_rec_task rt;
  if (!dt__next_task(&l, &rt) || rt.spec.nframes != 0) return DT_EPROTO;
  int rc = dt__newtask_of(&rt, nt);
  if (rc == 0 && (nt->klen == 0 || memchr(nt->key, 0, nt->klen))) rc = DT_EPROTO;
  if (rc) dt__newtask_free(nt);
  return rc;
}

static rclient *client_of(uint32_t id) {
  char k[12];
  int n = snprintf(k, sizeof(k), "%u", id);
  return dt__smap_get(&R.clients, k, (size_t)n);
}

/* skip_task: checks a JR_TASK's fields after its key (c at func) */
static void skip_task(cur *c) {
  uint32_t l;
  g_str(c, &l, 256, false);
  G64(c);
  G32(c);
  g_f64(c);
  uint32_t nd = G32(c);
  for (uint32_t i = 0; i < nd && !c->bad; i++) g_key(c, &l);
  uint32_t nr = G32(c);
  for (uint32_t i = 0; i < nr && !c->bad; i++) g_str(c, &l, DT_MAX_KEY, false);
  G8(c);
  uint32_t ns = G32(c);
  for (uint32_t i = 0; i < ns && !c->bad; i++) {
    g_str(c, &l, DT_MAX_KEY, false);
    g_f64(c);
  }
  g_str(c, &l, DT_JOURNAL_REC_MAX, true);
  uint32_t nf = G32(c);
  for (uint32_t i = 0; i < nf && !c->bad; i++) {
    uint64_t fl = G64(c);
    if (c->bad || fl > (uint64_t)(c->end - c->p)) c->bad = true;
    else c->p += fl;
  }
}

/* scan_one: one record into the maps; false if it is malformed */
static bool scan_one(const uint8_t *rec, uint32_t len) {
  cur c = {rec + 1, rec + len, false};
  uint32_t kl, nl;
  const char *k;
  switch (rec[0]) {
  case JR_CLIENT: {
    uint32_t id = G32(&c);
    bool internal = G8(&c) != 0;
    const char *name = g_str(&c, &nl, 256, true);
    if (c.bad) return false;
    rclient *rc = dt__xcalloc(1, sizeof(*rc));
    rc->id = id;
    rc->name = name;
    rc->nlen = nl;
    if (id > R.maxid && id < UINT32_MAX / 2) R.maxid = id;
    int n = snprintf(rc->idkey, sizeof(rc->idkey), "%u", id);
    rc->internal = internal;
    rclient *old = dt__smap_put(&R.clients, rc->idkey, (size_t)n, rc);
    if (old) rclient_free(old);
    break;
  }
  case JR_CLIENT_GONE: {
    uint32_t id = G32(&c);
    if (c.bad) return false;
    rclient *rc = client_of(id);
    if (rc) rclient_free(dt__smap_del(&R.clients, rc->idkey, strlen(rc->idkey)));
    break;
  }
  case JR_WANT:
  case JR_RELEASE: { /* one key or more */
    uint32_t id = G32(&c);
    rclient *rc = client_of(id);
    do {
      k = g_key(&c, &kl);
      if (c.bad) return false;
      if (!rc) continue;
      if (rec[0] == JR_WANT) dt__smap_put(&rc->wants, k, kl, (void *)1);
      else dt__smap_del(&rc->wants, k, kl);
    } while (c.p < c.end);
    break;
  }
  case JR_TASK:
    k = g_key(&c, &kl);
    skip_task(&c);
    if (c.bad) return false;
    dt__smap_put(&R.tasks, k, kl, (void *)rec);
    break;
  case JR_TASKW: {
    s_newtask nt;
    if (taskw_of(rec, len, &nt) != 0) return false;
    dt__smap_put(&R.tasks, nt.key, nt.klen, (void *)rec);
    dt__newtask_free(&nt);
    return true;
  }
  case JR_MEMORY:
    k = g_key(&c, &kl);
    G64(&c);
    g_str(&c, &nl, 1024, true);
    break;
  case JR_ERRED:
    k = g_key(&c, &kl);
    G32(&c);
    for (int i = 0; i < 4; i++) g_str(&c, &nl, DT_JOURNAL_REC_MAX, true);
    if (c.bad) return false;
    dt__smap_put(&R.erred, k, kl, (void *)rec);
    break;
  case JR_RELEASED:
  case JR_FORGET: /* one key or more */
    do {
      k = g_key(&c, &kl);
      if (c.bad) return false;
      dt__smap_del(&R.erred, k, kl);
      if (rec[0] == JR_FORGET) dt__smap_del(&R.tasks, k, kl);
    } while (c.p < c.end);
    break;
  case JR_WORKER:
  case JR_WORKER_GONE: {
    k = g_str(&c, &nl, 1024, false);
    if (c.bad) return false;
    char *a = dt__xstrndup(k, nl);
    if (rec[0] == JR_WORKER) {
      char *old = dt__smap_put(&R.workers, a, nl, a);
      free(old);
    } else {
      free(dt__smap_del(&R.workers, a, nl));
      free(a);
    }
    break;
  }
  case JR_SNAPSHOT:
    G64(&c);
    break;
  case JR_DATASET:
  case JR_DATASET_GONE: {
    k = g_str(&c, &nl, 256, false);
    if (rec[0] == JR_DATASET) {
      g_str(&c, &kl, DT_JOURNAL_REC_MAX, true); /* the payload */
      uint32_t nf = G32(&c);
      for (uint32_t i = 0; i < nf && !c.bad; i++) {
        uint64_t fl = G64(&c);
        if (c.bad || fl > (uint64_t)(c.end - c.p)) c.bad = true;
        else c.p += fl;
      }
      uint32_t nk = G32(&c);
      for (uint32_t i = 0; i < nk && !c.bad; i++) g_key(&c, &kl);
    }
    if (c.bad) return false;
    if (rec[0] == JR_DATASET) dt__smap_put(&R.datasets, k, nl, (void *)rec);
    else dt__smap_del(&R.datasets, k, nl);
    break;
  }
  default:
    return dt__jr_coord_scan(rec, len) == 1;
  }
  return !c.bad && c.p == c.end;
}

/* task_of: a JR_TASK record as an s_newtask (strings borrowed; arrays and
 * the spec owned by nt: newtask_free) */
static void task_of(const uint8_t *rec, s_newtask *nt) {
  uint32_t len = rd32(rec - 8), l;
  if (rec[0] == JR_TASKW) { /* checked by scan_one */
    if (taskw_of(rec, len, nt) != 0) abort();
    return;
  }
  cur c = {rec + 1, rec + len, false};
  memset(nt, 0, sizeof(*nt));
  nt->key = g_key(&c, &nt->klen);
  nt->func = g_str(&c, &nt->flen, 256, false);
  nt->priority = (int64_t)G64(&c);
  nt->retries = (int)(int32_t)G32(&c);
  nt->timeout = g_f64(&c);
  if (!(nt->timeout >= 0 && nt->timeout < 1e9)) nt->timeout = 0;
  if (nt->retries < 0) nt->retries = 0;
  nt->ndeps = G32(&c);
  nt->dep_keys = dt__xmalloc((nt->ndeps + 1) * sizeof(char *));
  nt->dep_lens = dt__xmalloc((nt->ndeps + 1) * sizeof(uint32_t));
  for (uint32_t i = 0; i < nt->ndeps; i++) nt->dep_keys[i] = g_key(&c, &nt->dep_lens[i]);
  nt->nrestrict = G32(&c);
  nt->restrict_to = dt__xmalloc((nt->nrestrict + 1) * sizeof(char *));
  nt->restrict_lens = dt__xmalloc((nt->nrestrict + 1) * sizeof(uint32_t));
  for (uint32_t i = 0; i < nt->nrestrict; i++)
    nt->restrict_to[i] = g_str(&c, &nt->restrict_lens[i], DT_MAX_KEY, false);
  nt->loose = G8(&c) != 0;
  nt->nres = G32(&c);
  nt->res_names = dt__xmalloc((nt->nres + 1) * sizeof(char *));
  nt->res_name_lens = dt__xmalloc((nt->nres + 1) * sizeof(uint32_t));
  nt->res_amounts = dt__xmalloc((nt->nres + 1) * sizeof(double));
  for (uint32_t i = 0; i < nt->nres; i++) {
    nt->res_names[i] = g_str(&c, &nt->res_name_lens[i], DT_MAX_KEY, false);
    nt->res_amounts[i] = g_f64(&c);
  }
  const char *body = g_str(&c, &l, DT_JOURNAL_REC_MAX, true);
  if (l) {
    nt->spec.body = dt__xmalloc(l);
    memcpy(nt->spec.body, body, l);
    nt->spec.len = l;
  }
  uint32_t nf = G32(&c);
  if (nf) nt->spec.frames = dt__xcalloc(nf, sizeof(dt_frame));
  for (uint32_t i = 0; i < nf; i++) {
    uint64_t fl = G64(&c);
    dt_blob *b = dt__blob_new(fl ? fl : 1);
    memcpy(b->data, c.p, fl);
    c.p += fl;
    nt->spec.frames[i] = (dt_frame){b, b->data, fl};
    nt->spec.nframes++;
  }
}

/* ---------------------------------------------------------------- the replay */

int dt__journal_replay_buf(sched *s, const void *buf, size_t len, const uint8_t *id, size_t *good,
                           char *why, size_t cap) {
  dt__journal_replay_forget();
  *good = 0;
  dt_jreader r;
  int rc = dt__jr_open(&r, buf, len, id, why, cap);
  if (rc) return rc;
  const uint8_t *rec;
  uint32_t rl;
  while ((rc = dt__jr_next(&r, &rec, &rl, why, cap)) == 1) {
    if (!scan_one(rec, rl)) {
      snprintf(why, cap, "journal corrupt: record %llu (at byte %zu, type %u) is malformed",
               (unsigned long long)r.nrec - 1, r.off - 8 - rl, rec[0]);
      rc = DT_EPROTO;
      break;
    }
  }
  if (rc < 0) {
    dt__journal_replay_forget();
    return rc;
  }
  *good = r.off;
  if (r.torn)
    DT_WARN("journal: a torn last record (%zu bytes at byte %zu) was cut off; replaying the %llu "
            "records before it",
            len - r.off, r.off, (unsigned long long)r.nrec);
  /* the tasks, wanted for the clients of before by the recovery client */
  uint32_t n = (uint32_t)R.tasks.len, ni = 0;
  s_newtask *nts = dt__xcalloc(n ? n : 1, sizeof(*nts));
  for (size_t i = 0; i < R.tasks.cap; i++)
    if (R.tasks.slots[i].key) task_of(R.tasks.slots[i].val, &nts[ni++]);
  dt_smap wmap;
  dt__smap_init(&wmap);
  uint32_t pending = 0;
  for (size_t i = 0; i < R.clients.cap; i++) {
    rclient *c = R.clients.slots[i].val;
    if (!R.clients.slots[i].key) continue;
    if (!c->internal) pending++;
    for (size_t j = 0; j < c->wants.cap; j++) {
      const dt_map_slot *sl = &c->wants.slots[j];
      if (sl->key && dt__smap_get(&R.tasks, sl->key, sl->klen))
        dt__smap_put(&wmap, sl->key, sl->klen, (void *)1);
    }
  }
  const char **wk = dt__xmalloc((wmap.len + 1) * sizeof(char *));
  uint32_t *wl = dt__xmalloc((wmap.len + 1) * sizeof(uint32_t)), nw = 0;
  for (size_t i = 0; i < wmap.cap; i++)
    if (wmap.slots[i].key) {
      wk[nw] = wmap.slots[i].key;
      wl[nw++] = wmap.slots[i].klen;
    }
  /* ids of before stay theirs: a lock held by client 3 of before is not
   * held by a new client 3 (coordination state, journal_coord.c) */
  if (s->next_id < R.maxid) s->next_id = R.maxid;
  s_client *holder = NULL;
  if (n || pending) {
    holder = dt__sched_add_client(s, NULL, "journal-recovery");
    dt__sched_update_graph(s, holder, nts, n, wk, wl, nw);
  }
  for (uint32_t i = 0; i < n; i++) dt__newtask_free(&nts[i]);
  free(nts);
  free(wk);
  free(wl);
  dt__smap_destroy(&wmap);
  /* the errors */
  for (size_t i = 0; i < R.erred.cap; i++) {
    if (!R.erred.slots[i].key) continue;
    const uint8_t *e = R.erred.slots[i].val;
    cur c = {e + 1, e + rd32(e - 8), false};
    uint32_t kl, l[4];
    const char *k = g_key(&c, &kl);
    int code = (int)(int32_t)G32(&c);
    const char *f[4];
    for (int j = 0; j < 4; j++) f[j] = g_str(&c, &l[j], DT_JOURNAL_REC_MAX, true);
    s_task *t = dt__sched_get_task(s, k, kl);
    if (!t || t->state == TS_ERRED || t->state == TS_MEMORY) continue;
    char *sf[4];
    for (int j = 0; j < 4; j++) sf[j] = dt__xstrndup(f[j], l[j]);
    dt__task_erred(s, t, code ? code : DT_ETASK, sf[0][0] ? sf[0] : t->key, sf[1], sf[2], sf[3]);
    for (int j = 0; j < 4; j++) free(sf[j]);
  }
  /* the published datasets (the daemon's: see dt__journal_ds_restore) */
  for (size_t i = 0; dt__journal_ds_restore && i < R.datasets.cap; i++) {
    if (!R.datasets.slots[i].key) continue;
    const uint8_t *e = R.datasets.slots[i].val;
    cur c = {e + 1, e + rd32(e - 8), false};
    uint32_t nl, bl;
    const char *name = g_str(&c, &nl, 256, false);
    const char *body = g_str(&c, &bl, DT_JOURNAL_REC_MAX, true);
    coord_val *v = dt__xcalloc(1, sizeof(*v));
    if (bl) {
      v->pl.body = dt__xmalloc(bl);
      memcpy(v->pl.body, body, bl);
      v->pl.len = bl;
    }
    uint32_t nf = G32(&c);
    if (nf) v->pl.frames = dt__xcalloc(nf, sizeof(dt_frame));
    for (uint32_t j = 0; j < nf; j++) {
      uint64_t fl = G64(&c);
      dt_blob *b = dt__blob_new(fl ? fl : 1);
      memcpy(b->data, c.p, fl);
      c.p += fl;
      v->pl.frames[j] = (dt_frame){b, b->data, fl};
      v->pl.nframes++;
    }
    v->nkeys = G32(&c);
    v->keys = dt__xcalloc(v->nkeys ? v->nkeys : 1, sizeof(char *));
    for (uint32_t j = 0; j < v->nkeys; j++) {
      uint32_t kl2;
      const char *kk = g_key(&c, &kl2);
      v->keys[j] = dt__xstrndup(kk, kl2);
    }
    v->nbytes = dt__payload_nbytes(&v->pl);
    dt__journal_ds_restore(name, nl, v);
  }
  /* the clients of before that may hold coordination primitives, and them */
  for (size_t i = 0; i < R.clients.cap; i++) {
    rclient *c = R.clients.slots[i].val;
    if (R.clients.slots[i].key && !c->internal) dt__journal_coord_old_client(c->id, c->name, c->nlen);
  }
  dt__jr_coord_apply();
  maps_clear(false); /* the workers of before stay: recovery waits for them */
  R.holder = holder;
  R.pending = pending;
  return 0;
}
