/* msg_test.c -- the message table: encode and decode every shape, the
 * central arity and type checks, and docs/architecture.md's copy of it */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto/proto.h"

static void test_names_unique(void **st) {
  (void)st;
  for (int a = 1; a < DT_OP_COUNT; a++) {
    assert_true(strlen(dt__msgs[a].doc) > 5);
    assert_true(dt__msgs[a].nfields > 0);
    for (int b = a + 1; b < DT_OP_COUNT; b++) assert_string_not_equal(dt__msgs[a].name, dt__msgs[b].name);
  }
  assert_string_equal(dt__op_name(DT_OP_COMPUTE_TASK), "COMPUTE_TASK");
  assert_string_equal(dt__op_name(DT_OP_COUNT), "UNKNOWN");
  /* a payload is three wire elements */
  assert_int_equal(dt__msgs[DT_OP_COMPUTE_TASK].nfields, 7);
  assert_int_equal(dt__msgs[DT_OP_COMPUTE_TASK].arity, 9);
  assert_int_equal(dt__recs[DT_REC_task].arity, 12);
}

/* read_one: the first message of w as the receiving side sees it */
static int read_one(const dt_wbuf *w, dt_msg *m, int *op_out) {
  const char *p = w->buf, *q = p;
  assert_int_equal(dt__mp_validate(&q, w->buf + w->len, DT_MAX_DEPTH), 0);
  dt_rd r = {p, q, w->frames, w->nframes};
  uint32_t n;
  uint64_t op;
  assert_int_equal(dt__rd_array(&r, &n), 0);
  assert_int_equal(dt__rd_uint(&r, &op), 0);
  *op_out = (int)op;
  return dt__msg_read(&r, (int)op, n - 1, m);
}

static void test_roundtrip_update_graph(void **st) {
  (void)st;
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_value *v = dt_int(42);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_UPDATE_GRAPH);
  dt__e_list(&e, 2);
  for (int i = 0; i < 2; i++) {
    dt__e_rec(&e);
    dt__e_cstr(&e, i ? "b" : "a");
    dt__e_cstr(&e, "inc");
    assert_int_equal(dt__e_value(&e, v), 0);
    dt__e_list(&e, (uint32_t)i); /* b depends on a */
    if (i) dt__e_cstr(&e, "a");
    dt__e_int(&e, -3);
    dt__e_int(&e, 2);
    dt__e_list(&e, 1);
    dt__e_cstr(&e, "w1");
    dt__e_bool(&e, true);
    dt__e_map(&e, 1);
    dt__e_cstr(&e, "GPU");
    dt__e_double(&e, 1.5);
    dt__e_double(&e, 0); /* timeout: none */
  }
  dt__e_list(&e, 1);
  dt__e_cstr(&e, "b");
  dt__e_end(&e);
  dt_value_free(v);

  dt_msg m;
  int op;
  assert_int_equal(read_one(&w, &m, &op), 0);
  assert_int_equal(op, DT_OP_UPDATE_GRAPH);
  assert_int_equal(m.UPDATE_GRAPH.tasks.n, 2);
  dt_rec_task t;
  for (int i = 0; i < 2; i++) {
    assert_true(dt__next_task(&m.UPDATE_GRAPH.tasks, &t));
    assert_true(dt__str_eq(t.key, i ? "b" : "a"));
    assert_true(dt__str_eq(t.func, "inc"));
    assert_int_equal(t.priority, -3);
    assert_int_equal(t.retries, 2);
    assert_true(t.allow_other);
    assert_int_equal(t.deps.n, (uint32_t)i);
    dt_sv k;
    if (i) {
      assert_true(dt__next_key(&t.deps, &k));
      assert_true(dt__str_eq(k, "a"));
    }
    assert_false(dt__next_key(&t.deps, &k));
    double a;
    assert_true(dt__next_double(&t.resources, &k, &a));
    assert_true(dt__str_eq(k, "GPU"));
    assert_true(a == 1.5);
    dt_value *got = NULL;
    assert_int_equal(dt__pref_decode(&t.spec, &got), 0);
    assert_int_equal(dt_value_type(got), DT_INT);
    dt_value_free(got);
  }
  assert_false(dt__next_task(&m.UPDATE_GRAPH.tasks, &t));
  dt_sv k;
  assert_true(dt__next_key(&m.UPDATE_GRAPH.wanted, &k));
  assert_true(dt__str_eq(k, "b"));
  dt__wbuf_clear(&w);
}

static void test_roundtrip_scalars_and_nil(void **st) {
  (void)st;
  dt_wbuf w;
  dt__wbuf_init(&w);
  dt_enc e;
  dt__e_begin(&e, &w, DT_OP_RETIRE_DONE);
  dt__e_uint(&e, 7);
  dt__e_uint(&e, 2);
  dt__e_cstr(&e, NULL); /* str|nil */
  dt__e_end(&e);
  dt_msg m;
  int op;
  assert_int_equal(read_one(&w, &m, &op), 0);
  assert_int_equal(m.RETIRE_DONE.req, 7);
  assert_int_equal(m.RETIRE_DONE.retired, 2);
  assert_null(m.RETIRE_DONE.error.p);
  dt__wbuf_clear(&w);
}

/* raw: a hand-written message, as a hostile peer would send it */
static int decode_raw(void (*write)(dt_wbuf *)) {
  dt_wbuf w;
  dt__wbuf_init(&w);
  write(&w);
  dt_msg m;
  int op;
  int rc = read_one(&w, &m, &op);
  dt__wbuf_clear(&w);
  return rc;
}
static void w_short(dt_wbuf *w) { /* CLOSE without its reason */
  dt__wb_msg(w, DT_OP_CLOSE, 0);
}
static void w_long(dt_wbuf *w) { /* CLOSE with one field too many */
  dt__wb_msg(w, DT_OP_CLOSE, 2);
  dt__wb_cstr(w, "bye");
  dt__wb_uint(w, 1);
}
static void w_wrong_type(dt_wbuf *w) { /* HELLO_CLIENT with a string version */
  dt__wb_msg(w, DT_OP_HELLO_CLIENT, 2);
  dt__wb_cstr(w, "2");
  dt__wb_cstr(w, "me");
}
static void w_bad_key(dt_wbuf *w) { /* an empty key in a list */
  dt__wb_msg(w, DT_OP_RELEASE_KEYS, 1);
  dt__wb_array(w, 2);
  dt__wb_cstr(w, "ok");
  dt__wb_cstr(w, "");
}
static void w_bad_record(dt_wbuf *w) { /* a PUT_DATA_DONE record with 3 fields */
  dt__wb_msg(w, DT_OP_PUT_DATA_DONE, 2);
  dt__wb_uint(w, 1);
  dt__wb_array(w, 1);
  dt__wb_array(w, 3);
  dt__wb_cstr(w, "k");
  dt__wb_uint(w, 1);
  dt__wb_uint(w, 1);
}
static void w_deep_bad(dt_wbuf *w) { /* a task whose third dependency is a number */
  dt__wb_msg(w, DT_OP_UPDATE_GRAPH, 2);
  dt__wb_array(w, 1);
  dt__wb_array(w, 12);
  dt__wb_cstr(w, "k");
  dt__wb_cstr(w, "f");
  dt__wb_bin(w, "\xc0", 1);
  dt__wb_uint(w, 0);
  dt__wb_uint(w, 0);
  dt__wb_array(w, 3);
  dt__wb_cstr(w, "a");
  dt__wb_cstr(w, "b");
  dt__wb_uint(w, 3);
  dt__wb_int(w, 0);
  dt__wb_int(w, 0);
  dt__wb_array(w, 0);
  dt__wb_bool(w, false);
  dt__wb_map(w, 0);
  dt__wb_double(w, 0);
  dt__wb_array(w, 0);
}
static void w_frames_out_of_range(dt_wbuf *w) { /* a payload naming frames the batch lacks */
  dt__wb_msg(w, DT_OP_PUT_DATA, 2);
  dt__wb_uint(w, 1);
  dt__wb_array(w, 1);
  dt__wb_array(w, 4);
  dt__wb_cstr(w, "k");
  dt__wb_bin(w, "\xc0", 1);
  dt__wb_uint(w, 0);
  dt__wb_uint(w, 5);
}
static void w_good_close(dt_wbuf *w) {
  dt__wb_msg(w, DT_OP_CLOSE, 1);
  dt__wb_cstr(w, "bye");
}

static void test_decoder_rejects(void **st) {
  (void)st;
  assert_int_equal(decode_raw(w_good_close), 0);
  assert_int_equal(decode_raw(w_short), DT_EPROTO);
  assert_non_null(strstr(dt__msg_error(), "CLOSE"));
  assert_int_equal(decode_raw(w_long), DT_EPROTO);
  assert_int_equal(decode_raw(w_wrong_type), DT_EPROTO);
  assert_non_null(strstr(dt__msg_error(), "version"));
  assert_int_equal(decode_raw(w_bad_key), DT_EPROTO);
  assert_non_null(strstr(dt__msg_error(), "keys"));
  assert_int_equal(decode_raw(w_bad_record), DT_EPROTO);
  assert_int_equal(decode_raw(w_deep_bad), DT_EPROTO);
  assert_non_null(strstr(dt__msg_error(), "deps"));
  assert_int_equal(decode_raw(w_frames_out_of_range), DT_EPROTO);
  dt_msg m;
  dt_rd r = {"", "", NULL, 0};
  assert_int_equal(dt__msg_read(&r, 0, 0, &m), DT_EPROTO);
  assert_int_equal(dt__msg_read(&r, DT_OP_COUNT, 0, &m), DT_EPROTO);
}

/* the encoder aborts on a message that does not match the table: run each
 * mistake in a child and check that it died of SIGABRT */
static void mistake_type(dt_wbuf *w) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_CLOSE);
  dt__e_uint(&e, 1);
}
static void mistake_short(dt_wbuf *w) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_KEY_CANCELLED);
  dt__e_cstr(&e, "k");
  dt__e_end(&e);
}
static void mistake_list_count(dt_wbuf *w) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_FREE_KEYS);
  dt__e_list(&e, 1);
  dt__e_cstr(&e, "a");
  dt__e_cstr(&e, "b");
}
static void mistake_nil(dt_wbuf *w) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_CLOSE);
  dt__e_cstr(&e, NULL); /* reason is a str, not str|nil */
}
static void mistake_record(dt_wbuf *w) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_PUT_DATA_DONE);
  dt__e_uint(&e, 1);
  dt__e_list(&e, 1);
  dt__e_cstr(&e, "k"); /* a record (dt__e_rec) is expected */
}
static void expect_abort(void (*fn)(dt_wbuf *)) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (!freopen("/dev/null", "w", stderr)) _exit(2); /* the abort message stays out of the log */
    dt_wbuf w;
    dt__wbuf_init(&w);
    fn(&w);
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGABRT);
}
static void test_encoder_checks(void **st) {
  (void)st;
  expect_abort(mistake_type);
  expect_abort(mistake_short);
  expect_abort(mistake_list_count);
  expect_abort(mistake_nil);
  expect_abort(mistake_record);
}

/* docs/architecture.md holds the table between two markers, exactly as
 * dt__msg_doc prints it (DTASK_PRINT_MSG_TABLE=1 msg_test prints it) */
static void test_docs_match_table(void **st) {
  (void)st;
  const char *src = getenv("DTASK_SOURCE_DIR");
  assert_non_null(src);
  char path[4096];
  snprintf(path, sizeof(path), "%s/docs/architecture.md", src);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  static char doc[1 << 20];
  size_t n = fread(doc, 1, sizeof(doc) - 1, f);
  fclose(f);
  doc[n] = '\0';
  const char *b = strstr(doc, "<!-- messages:begin -->\n");
  const char *e = strstr(doc, "<!-- messages:end -->");
  assert_non_null(b);
  assert_non_null(e);
  b += strlen("<!-- messages:begin -->\n");
  char *want = NULL;
  size_t wlen = 0;
  FILE *mf = open_memstream(&want, &wlen);
  dt__msg_doc(mf);
  fclose(mf);
  if ((size_t)(e - b) != wlen || memcmp(b, want, wlen) != 0) {
    fprintf(stderr, "docs/architecture.md's message table differs from src/proto/msgs.h; "
                    "regenerate it with DTASK_PRINT_MSG_TABLE=1 build/msg_test\n");
    fail();
  }
  free(want);
}

int main(void) {
  if (getenv("DTASK_PRINT_MSG_TABLE")) {
    dt__msg_doc(stdout);
    return 0;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_unique),      cmocka_unit_test(test_roundtrip_update_graph),
      cmocka_unit_test(test_roundtrip_scalars_and_nil), cmocka_unit_test(test_decoder_rejects),
      cmocka_unit_test(test_encoder_checks),    cmocka_unit_test(test_docs_match_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
