/* journal_replay_test.c -- the scheduler's journal (journal.h) without a loop:
 * a state machine driven by hand writes a journal; replaying it rebuilds
 * the graph, what clients wanted and the errors; the file cut at every
 * byte (every record boundary and every point inside a record) replays up
 * to the last whole record and never further; a flipped byte before the
 * end, a journal of another cluster and random bytes are refused with a
 * clear reason (or, for a tail, cut off); and compaction keeps the file
 * under its bound through a long run of submit/finish/release. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <msgpuck.h>

#include "proto/msg.h"
#include "scheduler/sched_int.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static char path[256];
static uint8_t ID[16], OTHER[16];
static int dummy_conn[4];

static void drain(sched *s) { dt__sched_events_done(s); }

/* one task: key, deps (NULL-terminated), with a spec (and a frame when big) */
static void submit(sched *s, s_client *c, const char *key, const char **deps, bool want, bool frame) {
  s_newtask nt = {0};
  nt.key = key;
  nt.klen = (uint32_t)strlen(key);
  nt.func = "f";
  nt.flen = 1;
  nt.spec.body = dt__xmalloc(3);
  memcpy(nt.spec.body, "\x92\x90\x80", 3);
  nt.spec.len = 3;
  if (frame) {
    dt_blob *b = dt__blob_new(100);
    memset(b->data, 'x', 100);
    nt.spec.frames = dt__xcalloc(1, sizeof(dt_frame));
    nt.spec.frames[0] = (dt_frame){b, b->data, 100};
    nt.spec.nframes = 1;
  }
  const char *dk[8];
  uint32_t dl[8];
  for (nt.ndeps = 0; deps && deps[nt.ndeps]; nt.ndeps++) {
    dk[nt.ndeps] = deps[nt.ndeps];
    dl[nt.ndeps] = (uint32_t)strlen(deps[nt.ndeps]);
  }
  nt.dep_keys = dk;
  nt.dep_lens = dl;
  nt.retries = 2;
  nt.priority = 5;
  DT_JOURNAL(dt__journal_graph(c, &nt, 1, want ? &key : NULL, want ? &nt.klen : NULL, want, NULL, NULL));
  dt__sched_update_graph(s, c, &nt, 1, want ? &key : NULL, want ? &nt.klen : NULL, want);
  dt__payload_clear(&nt.spec);
  drain(s);
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

/* write a journal: a client wants c = a + b (a finished on w, b failed) and
 * d (big spec); another client comes and goes */
static uint8_t *make_journal(size_t *len, size_t *rec_ends, size_t *nends) {
  sched s;
  dt__sched_init(&s);
  char why[400] = "";
  unlink(path);
  assert_int_equal(dt__journal_start(&s, NULL, path, ID, 0, 5, 60, why, sizeof(why)), 0);
  s_client *c = dt__sched_add_client(&s, &dummy_conn[0], "client-a");
  s_client *c2 = dt__sched_add_client(&s, &dummy_conn[1], "client-b");
  s_worker *w = dt__sched_add_worker(&s, &dummy_conn[2], "w", "127.0.0.1:9", 2, NULL, NULL, 0);
  DT_JOURNAL(dt__journal_worker_back(w, false));
  DT_JOURNAL(dt__journal_worker_back(w, true));
  submit(&s, c, "a", NULL, true, false);
  submit(&s, c, "b", NULL, true, false);
  const char *deps[] = {"a", "b", NULL};
  submit(&s, c, "c", deps, true, false);
  submit(&s, c, "d", NULL, true, true);
  submit(&s, c2, "e", NULL, true, false);
  dt__sched_task_finished(&s, w, "a", 1, 8, 0.01, NULL, 0);
  drain(&s);
  dt__sched_task_erred(&s, w, "b", 1, DT_ETASK, "f", "boom"); /* retried twice, then erred */
  dt__sched_task_erred(&s, w, "b", 1, DT_ETASK, "f", "boom");
  dt__sched_task_erred(&s, w, "b", 1, DT_ETASK, "f", "boom");
  drain(&s);
  dt__sched_remove_client(&s, c2);
  drain(&s);
  dt__journal_flush();
  dt__journal_stop();
  dt__sched_destroy(&s);
  uint8_t *b = slurp(len);
  /* the record boundaries */
  dt_jreader r;
  assert_int_equal(dt__jr_open(&r, b, *len, ID, why, sizeof(why)), 0);
  *nends = 0;
  rec_ends[(*nends)++] = r.off;
  const uint8_t *rec;
  uint32_t rl;
  while (dt__jr_next(&r, &rec, &rl, why, sizeof(why)) == 1) rec_ends[(*nends)++] = r.off;
  assert_false(r.torn);
  assert_int_equal(r.off, *len);
  return b;
}

static void test_replay_rebuilds_graph(void **state) {
  (void)state;
  size_t len, ends[256], nends;
  uint8_t *b = make_journal(&len, ends, &nends);
  assert_true(nends > 10);
  sched s;
  dt__sched_init(&s);
  char why[400] = "";
  size_t good;
  assert_int_equal(dt__journal_replay_buf(&s, b, len, ID, &good, why, sizeof(why)), 0);
  assert_int_equal(good, len);
  /* e's client left: e is gone; a, b, c, d are back */
  assert_null(dt__sched_get_task(&s, "e", 1));
  s_task *c = dt__sched_get_task(&s, "c", 1), *d = dt__sched_get_task(&s, "d", 1);
  assert_non_null(c);
  assert_non_null(d);
  assert_int_equal(c->ndeps, 2);
  assert_int_equal(d->spec_nframes, 1);
  assert_int_equal(d->spec_frames[0].len, 100);
  assert_int_equal(d->spec_frames[0].p[99], 'x');
  /* b failed: it and c are erred again, with the message */
  s_task *bt = dt__sched_get_task(&s, "b", 1);
  assert_int_equal(bt->state, TS_ERRED);
  assert_string_equal(RARE(bt)->err_msg, "boom");
  assert_int_equal(c->state, TS_ERRED);
  /* a was in memory on w: wanted again, waiting for w to come back */
  int ast = dt__sched_get_task(&s, "a", 1)->state;
  assert_true(ast == TS_NO_WORKER || ast == TS_QUEUED);
  /* d is wanted by the recovery client, waiting for a worker */
  s_client *h = dt__journal_holder();
  assert_non_null(h);
  assert_non_null(dt__tmap_get(&h->wants, "d", 1));
  assert_int_equal(dt__journal_pending_clients(), 1); /* client-a */
  assert_int_equal(dt__journal_expected_workers(), 1);
  assert_true(dt__journal_expect_worker("127.0.0.1:9"));
  char w2[400];
  assert_int_equal(dt__sched_check(&s, w2, sizeof(w2)), 0);
  dt__journal_replay_forget();
  dt__sched_destroy(&s);
  free(b);
}

/* cut at every byte: replay stops at the last whole record, never beyond */
static void test_truncated_everywhere(void **state) {
  (void)state;
  size_t len, ends[256], nends;
  uint8_t *b = make_journal(&len, ends, &nends);
  size_t e = 0;
  for (size_t cut = 0; cut <= len; cut++) {
    sched s;
    dt__sched_init(&s);
    char why[400] = "";
    size_t good = 12345;
    int rc = dt__journal_replay_buf(&s, b, cut, ID, &good, why, sizeof(why));
    if (cut < DT_JOURNAL_HDR) {
      assert_int_equal(rc, DT_EPROTO);
      assert_non_null(strstr(why, "not a dtask journal"));
    } else {
      while (e + 1 < nends && ends[e + 1] <= cut) e++;
      assert_int_equal(rc, 0);
      assert_int_equal(good, ends[e]); /* the last good record */
      char w2[400];
      assert_int_equal(dt__sched_check(&s, w2, sizeof(w2)), 0);
    }
    dt__journal_replay_forget();
    dt__sched_destroy(&s);
  }
  free(b);
}

static void test_refuses_corrupt_and_foreign(void **state) {
  (void)state;
  size_t len, ends[256], nends;
  uint8_t *b = make_journal(&len, ends, &nends);
  sched s;
  dt__sched_init(&s);
  char why[400] = "";
  size_t good;
  assert_int_equal(dt__journal_replay_buf(&s, b, len, OTHER, &good, why, sizeof(why)), DT_EPROTO);
  assert_non_null(strstr(why, "another cluster"));
  assert_int_equal(s.tasks.len, 0);
  /* a flipped byte inside each record but the last: corrupt, refused */
  for (size_t i = 0; i + 2 < nends; i++) {
    size_t at = ends[i] + 9 + (ends[i + 1] - ends[i] - 9) / 2;
    b[at] ^= 0x40;
    assert_int_equal(dt__journal_replay_buf(&s, b, len, ID, &good, why, sizeof(why)), DT_EPROTO);
    assert_non_null(strstr(why, "corrupt"));
    assert_int_equal(s.tasks.len, 0); /* untouched */
    b[at] ^= 0x40;
  }
  /* the last record damaged: a torn tail, cut off */
  b[len - 1] ^= 0x40;
  assert_int_equal(dt__journal_replay_buf(&s, b, len, ID, &good, why, sizeof(why)), 0);
  assert_int_equal(good, ends[nends - 2]);
  dt__journal_replay_forget();
  dt__sched_destroy(&s);
  /* a zeroed tail (writes that never reached the disk) is a torn tail too */
  uint8_t *z = calloc(1, len + 4096);
  memcpy(z, b, len);
  z[len - 1] ^= 0x40;
  dt__sched_init(&s);
  assert_int_equal(dt__journal_replay_buf(&s, z, len + 4096, ID, &good, why, sizeof(why)), 0);
  assert_int_equal(good, len);
  dt__journal_replay_forget();
  dt__sched_destroy(&s);
  free(z);
  free(b);
}

/* random bytes, bare and behind a valid header: refused or replayed, never
 * a crash (ASan run: never a bad read) */
static void test_random_bytes(void **state) {
  (void)state;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  uint8_t buf[4096];
  for (int it = 0; it < 3000; it++) {
    size_t n = (size_t)(x % sizeof(buf));
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      buf[i] = (uint8_t)x;
    }
    if (it % 2 && n >= DT_JOURNAL_HDR) dt__journal_header(buf, ID);
    if (it % 4 == 3 && n >= DT_JOURNAL_HDR + 9) { /* a record with a valid frame, random body */
      uint32_t L = (uint32_t)(n - DT_JOURNAL_HDR - 8);
      uint32_t crc = dt__crc32c(0, buf + DT_JOURNAL_HDR + 8, L);
      memcpy(buf + DT_JOURNAL_HDR, &L, 4);
      memcpy(buf + DT_JOURNAL_HDR + 4, &crc, 4);
    }
    sched s;
    dt__sched_init(&s);
    char why[400] = "";
    size_t good = 0;
    int rc = dt__journal_replay_buf(&s, buf, n, ID, &good, why, sizeof(why));
    assert_true(rc == 0 || (rc == DT_EPROTO && why[0]));
    assert_true(good <= n);
    dt__journal_replay_forget();
    dt__sched_destroy(&s);
    x += 0x632be59bd9b4e019ull;
  }
}

/* a long run of submit/finish/release stays under max(limit, 2 x snapshot) */
static void test_compaction_bounds_growth(void **state) {
  (void)state;
  sched s;
  dt__sched_init(&s);
  char why[400] = "";
  unlink(path);
  const uint64_t limit = 64 << 10;
  assert_int_equal(dt__journal_start(&s, NULL, path, ID, limit, 5, 60, why, sizeof(why)), 0);
  s_client *c = dt__sched_add_client(&s, &dummy_conn[0], "client");
  s_worker *w = dt__sched_add_worker(&s, &dummy_conn[2], "w", "127.0.0.1:9", 2, NULL, NULL, 0);
  submit(&s, c, "keep", NULL, true, false); /* one live task all along */
  uint64_t most = 0;
  for (int i = 0; i < 20000; i++) {
    char key[32];
    snprintf(key, sizeof(key), "t-%d", i);
    submit(&s, c, key, NULL, true, false);
    dt__sched_task_finished(&s, w, key, (uint32_t)strlen(key), 8, 0.001, NULL, 0);
    dt__sched_client_release(&s, c, key, (uint32_t)strlen(key));
    drain(&s);
    dt__journal_flush();
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    if ((uint64_t)sb.st_size > most) most = (uint64_t)sb.st_size;
  }
  dt_journal_stats st;
  dt__journal_stats(&st);
  fprintf(stderr, "journal_replay_test: 20000 submit/finish/release: %llu compactions, at most %llu bytes "
                  "(limit %llu), %llu written\n",
          (unsigned long long)st.compactions, (unsigned long long)most,
          (unsigned long long)limit, (unsigned long long)st.written);
  assert_true(st.compactions > 10);
  assert_true(most <= limit + 4096); /* the bound plus one turn's records */
  /* and what is left replays: the one live task */
  dt__journal_stop();
  dt__sched_destroy(&s);
  size_t len, good;
  uint8_t *b = slurp(&len);
  dt__sched_init(&s);
  assert_int_equal(dt__journal_replay_buf(&s, b, len, ID, &good, why, sizeof(why)), 0);
  assert_int_equal(s.tasks.len, 1);
  assert_non_null(dt__sched_get_task(&s, "keep", 4));
  dt__journal_replay_forget();
  dt__sched_destroy(&s);
  free(b);
  unlink(path);
}

/* consecutive wants (releases, forgets) of one client share one record:
 * 1,000 keys wanted in one graph, 600 released and forgotten in a burst,
 * then one more wanted; the replay has exactly the 400 + 1 left, and a cut
 * inside a merged record keeps what came before it */
static void test_merged_key_records(void **state) {
  (void)state;
  sched s;
  dt__sched_init(&s);
  char why[400] = "";
  unlink(path);
  assert_int_equal(dt__journal_start(&s, NULL, path, ID, 0, 5, 60, why, sizeof(why)), 0);
  s_client *c = dt__sched_add_client(&s, &dummy_conn[0], "client");
  enum { N = 1000, GONE = 600 };
  static char keys[N][16];
  s_newtask nts[N];
  const char *wk[N];
  uint32_t wl[N];
  memset(nts, 0, sizeof(nts));
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof(keys[i]), "m-%d", i);
    nts[i].key = wk[i] = keys[i];
    nts[i].klen = wl[i] = (uint32_t)strlen(keys[i]);
    nts[i].func = "f";
    nts[i].flen = 1;
    nts[i].spec.body = dt__xmalloc(3); /* the scheduler takes it */
    memcpy(nts[i].spec.body, "\x92\x90\x80", 3);
    nts[i].spec.len = 3;
  }
  DT_JOURNAL(dt__journal_graph(c, nts, N, wk, wl, N, NULL, NULL));
  dt__sched_update_graph(&s, c, nts, N, wk, wl, N);
  for (int i = 0; i < N; i++) dt__payload_clear(&nts[i].spec);
  drain(&s);
  dt__journal_flush();
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  off_t after_graph = sb.st_size;
  dt_journal_stats st0, st1;
  dt__journal_stats(&st0);
  for (int i = 0; i < GONE; i++) dt__sched_client_release(&s, c, keys[i], wl[i]);
  drain(&s);
  dt__journal_flush();
  dt__journal_stats(&st1);
  /* 600 releases and 600 forgets: a few records, not 1,200 */
  assert_true(st1.records - st0.records <= 4);
  submit(&s, c, "late", NULL, true, false);
  dt__journal_flush();
  dt__journal_stop();
  dt__sched_destroy(&s);
  size_t len, good;
  uint8_t *b = slurp(&len);
  dt__sched_init(&s);
  assert_int_equal(dt__journal_replay_buf(&s, b, len, ID, &good, why, sizeof(why)), 0);
  assert_int_equal(good, len);
  assert_int_equal(s.tasks.len, N - GONE + 1);
  assert_null(dt__sched_get_task(&s, keys[GONE - 1], wl[GONE - 1]));
  assert_non_null(dt__sched_get_task(&s, keys[GONE], wl[GONE]));
  assert_non_null(dt__sched_get_task(&s, "late", 4));
  s_client *h = dt__journal_holder();
  assert_non_null(h);
  assert_int_equal(h->wants.len, N - GONE + 1);
  dt__journal_replay_forget();
  dt__sched_destroy(&s);
  /* cut in the middle of the merged release record: replay keeps the graph
   * whole (the torn record is dropped, never half-applied) */
  size_t cut = (size_t)after_graph + 200;
  dt__sched_init(&s);
  assert_int_equal(dt__journal_replay_buf(&s, b, cut, ID, &good, why, sizeof(why)), 0);
  assert_int_equal((off_t)good, after_graph);
  assert_int_equal(s.tasks.len, N);
  dt__journal_replay_forget();
  dt__sched_destroy(&s);
  free(b);
  unlink(path);
}

/* a task element of UPDATE_GRAPH as a client encodes it (msgpack) */
static size_t task_elem(char *b, const char *key, const char *dep, int64_t prio) {
  char *p = b;
  p = mp_encode_array(p, 12);
  p = mp_encode_str(p, key, (uint32_t)strlen(key));
  p = mp_encode_str(p, "f", 1);
  p = mp_encode_bin(p, "\x92\x90\x80", 3); /* the spec: body, first frame, frames */
  p = mp_encode_uint(p, 7); /* a frame index of the batch it came in: not used */
  p = mp_encode_uint(p, 0);
  p = mp_encode_array(p, dep ? 1 : 0);
  if (dep) p = mp_encode_str(p, dep, (uint32_t)strlen(dep));
  p = prio < 0 ? mp_encode_int(p, prio) : mp_encode_uint(p, (uint64_t)prio);
  p = mp_encode_uint(p, 3);
  p = mp_encode_array(p, 0);
  p = mp_encode_bool(p, false);
  p = mp_encode_map(p, 0);
  p = mp_encode_double(p, 2.5);
  return (size_t)(p - b);
}

/* JR_TASKW: tasks journaled as their clients' bytes replay as the same
 * tasks (deps, priority, retries, timeout, spec); a JR_TASKW whose bytes
 * are not a task is refused as corrupt, never half-applied */
static void test_task_as_sent(void **state) {
  (void)state;
  char raw[2][256];
  const char *rp[2] = {raw[0], raw[1]};
  uint32_t rl[2] = {(uint32_t)task_elem(raw[0], "x", NULL, 4),
                    (uint32_t)task_elem(raw[1], "y", "x", -2)};
  for (int bad = 0; bad < 2; bad++) {
    sched s;
    dt__sched_init(&s);
    char why[400] = "";
    unlink(path);
    assert_int_equal(dt__journal_start(&s, NULL, path, ID, 0, 5, 60, why, sizeof(why)), 0);
    s_client *c = dt__sched_add_client(&s, &dummy_conn[0], "client");
    s_newtask nts[2];
    for (int i = 0; i < 2; i++) {
      dt_list l = {.r = {rp[i], rp[i] + rl[i], NULL, 8}, .n = 1, .left = 1, .kind = DT_K_REC,
                   .rec = DT_REC_task};
      dt_rec_task rt;
      assert_true(dt__next_task(&l, &rt));
      assert_int_equal(dt__newtask_of(&rt, &nts[i]), 0);
    }
    const char *wk = "y";
    uint32_t wl = 1;
    if (bad) rl[1] -= 3; /* cut inside the element: not a task any more */
    DT_JOURNAL(dt__journal_graph(c, nts, 2, &wk, &wl, 1, rp, rl));
    if (bad) rl[1] += 3;
    dt__sched_update_graph(&s, c, nts, 2, &wk, &wl, 1);
    for (int i = 0; i < 2; i++) dt__newtask_free(&nts[i]);
    drain(&s);
    dt__journal_stop();
    dt__sched_destroy(&s);
    size_t len, good;
    uint8_t *b = slurp(&len);
    dt__sched_init(&s);
    int rc = dt__journal_replay_buf(&s, b, len, ID, &good, why, sizeof(why));
    if (bad) {
      assert_int_equal(rc, DT_EPROTO);
      assert_non_null(strstr(why, "malformed"));
    } else {
      assert_int_equal(rc, 0);
      s_task *x = dt__sched_get_task(&s, "x", 1), *y = dt__sched_get_task(&s, "y", 1);
      assert_non_null(x);
      assert_non_null(y);
      assert_int_equal(y->ndeps, 1);
      assert_ptr_equal(y->deps[0], x);
      assert_int_equal(x->priority, 4);
      assert_int_equal(y->priority, -2);
      assert_int_equal(y->retries, 3);
      assert_true(RARE(y)->timeout == 2.5);
      assert_int_equal(y->spec_len, 3);
      assert_memory_equal(y->spec_body, "\x92\x90\x80", 3);
      assert_non_null(dt__tmap_get(&dt__journal_holder()->wants, "y", 1));
    }
    dt__journal_replay_forget();
    dt__sched_destroy(&s);
    free(b);
  }
  unlink(path);
}

int main(void) {
  snprintf(path, sizeof(path), "/tmp/dtask-journal-unit-%d.journal", (int)getpid());
  dt__log_init("test", "error");
  dt__journal_cluster_id("127.0.0.1:1|", ID);
  dt__journal_cluster_id("127.0.0.1:2|", OTHER);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_replay_rebuilds_graph),
      cmocka_unit_test(test_truncated_everywhere),
      cmocka_unit_test(test_refuses_corrupt_and_foreign),
      cmocka_unit_test(test_random_bytes),
      cmocka_unit_test(test_compaction_bounds_growth),
      cmocka_unit_test(test_merged_key_records),
      cmocka_unit_test(test_task_as_sent),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  unlink(path);
  return rc;
}
