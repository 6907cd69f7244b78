/* journal_coord_replay_test.c -- the coordination primitives in the scheduler's
 * journal (journal_coord.c), without a loop: clients on detached
 * connections drive the real handlers with a journal open; the file, as a
 * kill -9 leaves it, is replayed into a fresh scheduler: the variable's
 * value, the queue's items in order, the set event, the held lock,
 * multilock and semaphore leases are back; a client that comes back
 * (RESUME, same name) holds its lock again (and an acquire it sends again
 * is granted, not deadlocked); what a client that does not come back held
 * is released past the grace.  The compacted snapshot replays to the same
 * state; the file cut at every byte replays (up to the last whole record)
 * or is refused with a reason; a malformed coordination record, or a
 * flipped byte before the end, is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "scheduler/coord_int.h"
#include "scheduler/sched_int.h"

static char path[256];
static uint8_t ID[16];

static void send_msg(dt_conn *c, dt_wbuf *w) {
  const char *p = w->buf, *q = p;
  assert_int_equal(dt__mp_validate(&q, w->buf + w->len, DT_MAX_DEPTH), 0);
  dt_rd r = {p, q, NULL, 0};
  uint32_t n;
  uint64_t op;
  assert_int_equal(dt__rd_array(&r, &n), 0);
  assert_int_equal(dt__rd_uint(&r, &op), 0);
  assert_int_equal(dt__srv_on_msg(c, (int)op, n - 1, &r), 0);
}

static dt_conn *hello(const char *name) {
  dt_conn *c = dt__conn_new_detached();
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_HELLO_CLIENT);
  dt__e_uint(&e, DT_PROTO_VERSION);
  dt__e_cstr(&e, name);
  dt__e_end(&e);
  send_msg(c, &w);
  dt__wbuf_clear(&w);
  return c;
}

/* resume: RESUME_AS old_id, then RESUME unless only_as */
static void resume2(dt_conn *c, uint32_t old_id, bool only_as) {
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_RESUME_AS);
  dt__e_uint(&e, old_id);
  dt__e_end(&e);
  send_msg(c, &w);
  dt__wbuf_clear(&w);
  if (only_as) return;
  dt__wbuf_init(&w);
  dt__e_begin(&e, &w, DT_OP_RESUME);
  dt__e_list(&e, 0);
  dt__e_end(&e);
  send_msg(c, &w);
  dt__wbuf_clear(&w);
}

static void resume(dt_conn *c, uint32_t old_id) { resume2(c, old_id, false); }

static void coord2(dt_conn *c, uint64_t req, int op, const char *n1, const char *n2, int64_t value,
                   int64_t timeout_ms, int64_t arg) {
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_COORD);
  dt__e_uint(&e, req);
  dt__e_uint(&e, (uint64_t)op);
  dt__e_list(&e, n2 ? 2 : 1);
  dt__e_cstr(&e, n1);
  if (n2) dt__e_cstr(&e, n2);
  dt_payload pl = {0};
  if (value >= 0) {
    dt_value *v = dt_int(value);
    assert_int_equal(dt__payload_encode(v, &pl, NULL), 0);
    dt_value_free(v);
  }
  dt__e_payload(&e, &pl);
  dt__e_list(&e, 0);
  dt__e_int(&e, timeout_ms);
  dt__e_int(&e, arg);
  dt__e_end(&e);
  send_msg(c, &w);
  dt__payload_clear(&pl);
  dt__wbuf_clear(&w);
}
static void coord(dt_conn *c, uint64_t req, int op, const char *name, int64_t value,
                  int64_t timeout_ms, int64_t arg) {
  coord2(c, req, op, name, NULL, value, timeout_ms, arg);
}

typedef struct {
  bool got;
  uint64_t req;
  int64_t code, count, value;
} reply;

static reply next_reply(dt_conn *c, size_t *off) {
  reply out = {0};
  dt_wbuf *w = &c->out;
  while (*off < w->len) {
    const char *p = w->buf + *off, *q = p;
    assert_int_equal(dt__mp_validate(&q, w->buf + w->len, DT_MAX_DEPTH), 0);
    *off = (size_t)(q - w->buf);
    dt_rd r = {p, q, NULL, 0};
    uint32_t n;
    uint64_t op;
    assert_int_equal(dt__rd_array(&r, &n), 0);
    assert_int_equal(dt__rd_uint(&r, &op), 0);
    if (op != DT_OP_COORD_REPLY) continue;
    dt_msg m;
    assert_int_equal(dt__msg_read(&r, (int)op, n - 1, &m), 0);
    out.got = true;
    out.req = m.COORD_REPLY.req;
    out.code = m.COORD_REPLY.code;
    out.count = m.COORD_REPLY.count;
    out.value = -1;
    if (m.COORD_REPLY.value.len) {
      dt_value *v;
      assert_int_equal(dt__pref_decode(&m.COORD_REPLY.value, &v), 0);
      out.value = dt_value_int(v);
      dt_value_free(v);
    }
    return out;
  }
  return out;
}

static reply expect(dt_conn *c, size_t *off, uint64_t req, int code) {
  reply r = next_reply(c, off);
  assert_true(r.got);
  assert_int_equal(r.req, req);
  assert_int_equal(r.code, code);
  return r;
}

static uint8_t *slurp(size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)n + 1);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

static void start(void) {
  static bool loop_ready;
  if (!loop_ready) uv_loop_init(&dt__srv.loop);
  loop_ready = true;
  dt__sched_init(&dt__srv.s);
  char why[400] = "";
  int rc = dt__journal_start(&dt__srv.s, NULL, path, ID, 0, 5, 60, why, sizeof(why));
  if (rc) fprintf(stderr, "journal_start: %s\n", why);
  assert_int_equal(rc, 0);
}

/* crash: the scheduler goes without a word (the journal as it is on disk) */
static void crash(dt_conn **conns, int n) {
  dt__journal_flush();
  dt__journal_stop();
  dt__coord_free_all();
  dt__sched_destroy(&dt__srv.s);
  for (int i = 0; i < n; i++) dt__conn_free_detached(conns[i]);
}

static prim *P(const char *name) { return dt__coord_prim_get(name, (uint32_t)strlen(name)); }
static size_t qlen(const prim *p) { return p ? p->items.len - p->head : 0; }

/* the state a journal is written with: A and B hold things, C waits */
static uint32_t idA, idB, idC;
static uint8_t *write_state(size_t *len) {
  unlink(path);
  start();
  dt_conn *A = hello("client-a"), *B = hello("client-b"), *C = hello("client-c");
  idA = ((s_client *)A->data)->id;
  idB = ((s_client *)B->data)->id;
  idC = ((s_client *)C->data)->id;
  size_t oa = 0, ob = 0, oc = 0;
  coord(A, 1, DT_COORD_VAR_SET, "V", 5, 0, 0);
  expect(A, &oa, 1, 0);
  coord(A, 2, DT_COORD_VAR_SET, "V", 6, 0, 0); /* the last value counts */
  expect(A, &oa, 2, 0);
  coord(A, 3, DT_COORD_VAR_SET, "W", 1, 0, 0);
  coord(A, 4, DT_COORD_VAR_DELETE, "W", -1, 0, 0);
  for (int i = 0; i < 4; i++) coord(A, 10 + (uint64_t)i, DT_COORD_QUEUE_PUT, "Q", 100 + i, 0, 0);
  coord(B, 20, DT_COORD_QUEUE_GET, "Q", -1, 0, 0); /* 100 is out */
  assert_int_equal(expect(B, &ob, 20, 0).value, 100);
  coord(A, 21, DT_COORD_EVENT_SET, "E", -1, 0, 0);
  coord(A, 22, DT_COORD_EVENT_SET, "E2", -1, 0, 0);
  coord(A, 23, DT_COORD_EVENT_CLEAR, "E2", -1, 0, 0);
  coord(A, 24, DT_COORD_LOCK_ACQUIRE, "L", -1, -1, 0);
  coord(A, 25, DT_COORD_LOCK_ACQUIRE, "L2", -1, -1, 0);
  coord(A, 26, DT_COORD_LOCK_RELEASE, "L2", -1, 0, 0);
  coord(A, 27, DT_COORD_SEM_ACQUIRE, "S", -1, -1, 3);
  coord(B, 28, DT_COORD_SEM_ACQUIRE, "S", -1, -1, 3);
  coord(C, 31, DT_COORD_SEM_ACQUIRE, "S", -1, -1, 3);
  expect(C, &oc, 31, 0);
  coord2(B, 29, DT_COORD_MLOCK_ACQUIRE, "M1", "M2", -1, -1, 0);
  expect(B, &ob, 28, 0);
  expect(B, &ob, 29, 0);
  coord(C, 30, DT_COORD_LOCK_ACQUIRE, "L", -1, -1, 0); /* waits: not journaled */
  assert_false(next_reply(C, &oc).got);
  dt_conn *conns[] = {A, B, C};
  crash(conns, 3);
  return slurp(len);
}

static void check_restored(void) {
  prim *p = P("V");
  assert_non_null(p);
  assert_non_null(p->var);
  assert_null(P("W"));
  assert_int_equal(qlen(P("Q")), 3);
  assert_true(P("E") && P("E")->set);
  assert_null(P("E2"));
  assert_true(P("L") && P("L")->holder == idA);
  assert_null(P("L2"));
  assert_true(P("S") && P("S")->leases.len == 3 && P("S")->max_leases == 3);
  assert_true(P("M1") && P("M1")->holder == idB && P("M2") && P("M2")->holder == idB);
}

static void test_restart_restores_and_hands_back(void **st) {
  (void)st;
  size_t len;
  uint8_t *b = write_state(&len);
  start(); /* the restart: replays */
  check_restored();
  /* new ids do not collide with those of before */
  dt_conn *X = hello("client-x");
  assert_true(((s_client *)X->data)->id > idB && ((s_client *)X->data)->id > idA);
  dt_conn *A = hello("client-a");
  size_t oa = 0, ox = 0;
  resume2(X, idA, true); /* another name claiming A's id: takes nothing */
  assert_int_equal(P("L")->holder, idA);
  resume(A, idA);
  uint32_t newA = ((s_client *)A->data)->id;
  assert_int_equal(P("L")->holder, newA);
  /* A sends its acquire again (granted before the crash): it has it */
  coord(A, 1, DT_COORD_LOCK_ACQUIRE, "L", -1, -1, 0);
  expect(A, &oa, 1, 0);
  coord(X, 2, DT_COORD_LOCK_ACQUIRE, "L", -1, -1, 0); /* waits for A */
  assert_false(next_reply(X, &ox).got);
  coord(A, 3, DT_COORD_VAR_GET, "V", -1, 0, 0);
  assert_int_equal(expect(A, &oa, 3, 0).value, 6);
  coord(A, 4, DT_COORD_QUEUE_GET, "Q", -1, 0, 0);
  assert_int_equal(expect(A, &oa, 4, 0).value, 101);
  coord(A, 5, DT_COORD_EVENT_IS_SET, "E", -1, 0, 0);
  assert_int_equal(expect(A, &oa, 5, 0).count, 1);
  coord(A, 6, DT_COORD_SEM_RELEASE, "S", -1, 0, 0); /* its lease is its own again */
  expect(A, &oa, 6, 0);
  coord(A, 7, DT_COORD_LOCK_RELEASE, "L", -1, 0, 0);
  expect(A, &oa, 7, 0);
  expect(X, &ox, 2, 0); /* passed on */
  /* B comes back and asks again for the multilock it was granted: it has it */
  dt_conn *B = hello("client-b");
  size_t ob = 0;
  resume(B, idB);
  coord2(B, 8, DT_COORD_MLOCK_ACQUIRE, "M1", "M2", -1, -1, 0);
  expect(B, &ob, 8, 0);
  coord2(B, 9, DT_COORD_MLOCK_RELEASE, "M1", "M2", -1, 0, 0);
  assert_int_equal(expect(B, &ob, 9, 0).count, 2);
  coord(B, 10, DT_COORD_SEM_RELEASE, "S", -1, 0, 0);
  expect(B, &ob, 10, 0);
  assert_null(P("M1"));
  /* the snapshot written at the restart, and what followed, replay alike */
  dt_conn *c1[] = {A, X, B};
  crash(c1, 3);
  start();
  assert_int_equal(qlen(P("Q")), 2);
  assert_true(P("L") && P("L")->holder != 0 && P("L")->holder != newA);
  assert_true(P("S") && P("S")->leases.len == 1 && (uintptr_t)P("S")->leases.v[0] == idC);
  assert_null(P("M1"));
  /* none comes back (C, and X, A, B of the run before): past the grace what
   * they held goes */
  dt__journal_coord_orphans();
  assert_null(P("S"));
  assert_null(P("L"));
  assert_int_equal(dt__coord_client_state(), 0);
  assert_int_equal(qlen(P("Q")), 2); /* what no client holds stays */
  assert_true(P("V") && P("V")->var);
  dt__journal_stop();
  dt__coord_free_all();
  dt__sched_destroy(&dt__srv.s);
  free(b);
}

static void test_truncated_and_corrupt(void **st) {
  (void)st;
  size_t len;
  uint8_t *b = write_state(&len);
  char why[400];
  const char *seeds = getenv("JCOORD_SEEDS"); /* fuzz/corpus/journal: the seeds written */
  if (seeds) {
    char sp[300];
    snprintf(sp, sizeof(sp), "%s/coord", seeds);
    FILE *f = fopen(sp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
    snprintf(sp, sizeof(sp), "%s/coord-torn", seeds);
    f = fopen(sp, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len - 3, f), len - 3);
    fclose(f);
    /* the chunked form (fuzz_journal.c): u16 length, a record's payload */
    snprintf(sp, sizeof(sp), "%s/coord-chunks", seeds);
    f = fopen(sp, "wb");
    assert_non_null(f);
    dt_jreader r;
    assert_int_equal(dt__jr_open(&r, b, len, ID, why, sizeof(why)), 0);
    const uint8_t *rec;
    uint32_t rl;
    while (dt__jr_next(&r, &rec, &rl, why, sizeof(why)) == 1) {
      if (rl > 0xffff) continue;
      uint8_t h[2] = {(uint8_t)rl, (uint8_t)(rl >> 8)};
      assert_int_equal(fwrite(h, 1, 2, f), 2);
      assert_int_equal(fwrite(rec, 1, rl, f), rl);
    }
    fclose(f);
  }
  /* cut at every byte: replays what is whole, never crashes */
  dt__journal_coord_install = true;
  for (size_t cut = DT_JOURNAL_HDR; cut <= len; cut++) {
    dt__sched_init(&dt__srv.s);
    size_t good = 0;
    why[0] = 0;
    int rc = dt__journal_replay_buf(&dt__srv.s, b, cut, ID, &good, why, sizeof(why));
    assert_int_equal(rc, 0);
    assert_true(good <= cut);
    if (cut == len) check_restored();
    dt__journal_replay_forget();
    dt__coord_free_all();
    dt__sched_destroy(&dt__srv.s);
  }
  dt__journal_coord_install = false;
  /* a flipped byte in every record but the last: refused with a reason */
  dt_jreader r;
  assert_int_equal(dt__jr_open(&r, b, len, ID, why, sizeof(why)), 0);
  const uint8_t *rec;
  uint32_t rl;
  int ncoord = 0;
  while (dt__jr_next(&r, &rec, &rl, why, sizeof(why)) == 1) {
    if (rec[0] < JR_PRIM || rec[0] > JR_QPOP || r.off == len) continue;
    ncoord++;
    size_t at = (size_t)(rec - b) + rl / 2;
    b[at] ^= 0x5a;
    sched s;
    dt__sched_init(&s);
    size_t good;
    why[0] = 0;
    assert_int_equal(dt__journal_replay_buf(&s, b, len, ID, &good, why, sizeof(why)), DT_EPROTO);
    assert_non_null(strstr(why, "corrupt"));
    dt__sched_destroy(&s);
    b[at] ^= 0x5a;
  }
  assert_true(ncoord >= 10);
  free(b);
  /* malformed coordination records with good CRCs: refused */
  static const uint8_t bad[][24] = {
      {JR_PRIM, 1, 0, 0, 0, 'x', 9},                   /* no such kind */
      {JR_PRIM, 1, 0, 0, 0, 'x', CK_QUEUE, 0},         /* a queue has no JR_PRIM */
      {JR_PRIM, 1, 0, 0, 0, 'x', CK_SEMAPHORE, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, /* max 0 */
      {JR_QPUSH, 1, 0, 0, 0, 'q', 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0}, /* payload cut */
      {JR_QPOP, 0, 0, 0, 0},                           /* no name */
      {JR_PRIM_GONE, 1, 0, 0, 0, 'x', 7},              /* trailing bytes */
  };
  static const size_t blen[] = {7, 8, 19, 18, 5, 7};
  for (size_t i = 0; i < sizeof(blen) / sizeof(blen[0]); i++) {
    uint8_t j[DT_JOURNAL_HDR + 64 + 16];
    dt__journal_header(j, ID);
    size_t n = DT_JOURNAL_HDR;
    uint32_t L = (uint32_t)blen[i], crc = dt__crc32c(0, bad[i], blen[i]);
    memcpy(j + n, &L, 4);
    memcpy(j + n + 4, &crc, 4);
    memcpy(j + n + 8, bad[i], blen[i]);
    n += 8 + blen[i];
    /* and a good record after it, so it is not a torn tail */
    uint8_t gone[] = {JR_PRIM_GONE, 1, 0, 0, 0, 'y'};
    L = sizeof(gone);
    crc = dt__crc32c(0, gone, sizeof(gone));
    memcpy(j + n, &L, 4);
    memcpy(j + n + 4, &crc, 4);
    memcpy(j + n + 8, gone, sizeof(gone));
    n += 8 + sizeof(gone);
    sched s;
    dt__sched_init(&s);
    size_t good;
    why[0] = 0;
    assert_int_equal(dt__journal_replay_buf(&s, j, n, ID, &good, why, sizeof(why)), DT_EPROTO);
    assert_non_null(strstr(why, "malformed"));
    dt__sched_destroy(&s);
  }
}

int main(void) {
  dt__log_init("journal_coord_replay_test", "off");
  snprintf(path, sizeof(path), "/tmp/dtask-jcoord-%d.journal", (int)getpid());
  dt__journal_cluster_id("test-cluster", ID);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_restart_restores_and_hands_back),
      cmocka_unit_test(test_truncated_and_corrupt),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  unlink(path);
  char tmp[300];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  unlink(tmp);
  return rc;
}
