/* value_test.c -- values: construction, encode/decode round trips, large
 * buffers as frames without copies, and hostile payloads rejected. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpuck.h>

#include "proto/proto.h"

static dt_value *roundtrip(const dt_value *v) {
  dt_payload p;
  assert_int_equal(dt__payload_encode(v, &p, NULL), 0);
  dt_value *out = NULL;
  assert_int_equal(dt__payload_decode(&p, &out), 0);
  dt__payload_clear(&p);
  return out;
}

static void test_scalars_roundtrip(void **state) {
  (void)state;
  dt_value *vs[] = {dt_nil(), dt_bool(true), dt_bool(false), dt_int(0), dt_int(-1),
                    dt_int(INT64_MIN), dt_int(INT64_MAX), dt_double(3.25), dt_double(-0.0),
                    dt_str(""), dt_str("héllo"), dt_bytes("\0\1\2", 3)};
  for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
    dt_value *r = roundtrip(vs[i]);
    char a[64], b[64];
    assert_true(dt_value_equal(vs[i], r));
    assert_string_equal(dt_value_repr(vs[i], a, sizeof(a)), dt_value_repr(r, b, sizeof(b)));
    dt_value_free(r);
    dt_value_free(vs[i]);
  }
}

static void test_containers_roundtrip(void **state) {
  (void)state;
  dt_value *m = dt_map_new();
  assert_int_equal(dt_map_set(m, "a", dt_int(1)), 0);
  assert_int_equal(dt_map_set(m, "b", dt_list_of(3, dt_str("x"), dt_nil(), dt_double(2.5))), 0);
  assert_int_equal(dt_map_set(m, "a", dt_int(2)), 0); /* replaces */
  assert_int_equal(dt_map_len(m), 2);
  dt_value *l = dt_list_of(2, m, dt__future_ref_value("inc-123", NULL));
  dt_vec deps = {0};
  dt_payload p;
  assert_int_equal(dt__payload_encode(l, &p, &deps), 0);
  assert_int_equal(deps.len, 1);
  assert_string_equal(deps.v[0], "inc-123");
  dt_value *r = NULL;
  assert_int_equal(dt__payload_decode(&p, &r), 0);
  assert_true(dt_value_equal(l, r));
  assert_int_equal(dt_value_int(dt_map_get(dt_list_get(r, 0), "a")), 2);
  assert_int_equal(dt_value_type(dt_list_get(r, 1)), DT_FUTURE);
  dt__vec_free(&deps);
  dt__payload_clear(&p);
  dt_value_free(r);
  dt_value_free(l);
}

static void test_large_bytes_travel_as_frames(void **state) {
  (void)state;
  size_t n = 1 << 20;
  char *buf = malloc(n);
  for (size_t i = 0; i < n; i++) buf[i] = (char)(i * 7);
  dt_value *big = dt_bytes_take(buf, n, free);
  dt_value *l = dt_list_of(2, big, dt_bytes("small", 5));
  dt_payload p;
  assert_int_equal(dt__payload_encode(l, &p, NULL), 0);
  assert_int_equal(p.nframes, 1);
  assert_ptr_equal(p.frames[0].p, buf); /* not copied */
  assert_int_equal(p.frames[0].len, n);
  assert_true(p.len < 64);               /* not in the body either */
  dt_value *r = NULL;
  assert_int_equal(dt__payload_decode(&p, &r), 0);
  size_t len;
  const void *data = dt_value_bytes(dt_list_get(r, 0), &len);
  assert_int_equal(len, n);
  assert_ptr_equal(data, buf); /* decoded in place too */
  assert_memory_equal(dt_value_bytes(dt_list_get(r, 1), NULL), "small", 5);
  dt__payload_clear(&p);
  dt_value_free(r);
  dt_value_free(l);
}

static int decode_raw(const char *body, size_t len, dt_value **out) {
  dt_payload p = {(char *)body, len, NULL, 0};
  *out = NULL;
  return dt__payload_decode(&p, out);
}

static void test_truncated_payloads_rejected(void **state) {
  (void)state;
  dt_value *v = dt_list_of(3, dt_str("hello world"), dt_int(1234567), dt_list_of(1, dt_double(1.5)));
  dt_payload p;
  assert_int_equal(dt__payload_encode(v, &p, NULL), 0);
  for (size_t cut = 0; cut < p.len; cut++) {
    dt_value *r;
    assert_int_not_equal(decode_raw(p.body, cut, &r), 0);
    assert_null(r);
  }
  dt__payload_clear(&p);
  dt_value_free(v);
}

static void test_hostile_counts_rejected(void **state) {
  (void)state;
  /* array32 claiming 4 billion elements: must fail before allocating */
  const char arr[] = "\xdd\xff\xff\xff\xff\x01";
  dt_value *r;
  assert_int_equal(decode_raw(arr, sizeof(arr) - 1, &r), DT_EPROTO);
  const char *p = arr;
  assert_int_equal(dt__mp_validate(&p, arr + sizeof(arr) - 1, DT_MAX_DEPTH), DT_EPROTO);
  /* map32 with 2^31 pairs: the int overflow msgpuck's mp_check has */
  const char map[] = "\xdf\x80\x00\x00\x00\x01\x01";
  p = map;
  assert_int_equal(dt__mp_validate(&p, map + sizeof(map) - 1, DT_MAX_DEPTH), DT_EPROTO);
  /* str32 longer than the buffer */
  const char str[] = "\xdb\x00\x10\x00\x00" "abc";
  assert_int_equal(decode_raw(str, sizeof(str) - 1, &r), DT_EPROTO);
  /* 0xc1 is never valid */
  assert_int_equal(decode_raw("\xc1", 1, &r), DT_EPROTO);
  /* frame reference without frames */
  const char fr[] = "\xd6\x02\x00\x00\x00\x00";
  assert_int_not_equal(decode_raw(fr, sizeof(fr) - 1, &r), 0);
  /* a map key that is not a string */
  const char mk[] = "\x81\x01\x02";
  assert_int_not_equal(decode_raw(mk, sizeof(mk) - 1, &r), 0);
  /* trailing garbage after one object */
  assert_int_not_equal(decode_raw("\x01\x02", 2, &r), 0);
}

static void test_depth_limit(void **state) {
  (void)state;
  char buf[200];
  for (int depth = DT_MAX_DEPTH - 2; depth <= DT_MAX_DEPTH + 5; depth++) {
    memset(buf, 0x91, (size_t)depth); /* fixarray(1) nested */
    buf[depth] = 0x01;
    dt_value *r;
    int rc = decode_raw(buf, (size_t)depth + 1, &r);
    if (depth <= DT_MAX_DEPTH) {
      assert_int_equal(rc, 0);
      dt_value_free(r);
    } else {
      assert_int_equal(rc, DT_EPROTO);
    }
  }
}

static void test_random_garbage_never_crashes(void **state) {
  (void)state;
  srand(1234);
  char buf[64];
  int ok = 0;
  for (int i = 0; i < 200000; i++) {
    size_t n = (size_t)(rand() % (int)sizeof(buf)) + 1;
    for (size_t k = 0; k < n; k++) buf[k] = (char)rand();
    dt_value *r;
    if (decode_raw(buf, n, &r) == 0) {
      ok++;
      dt_value_free(r);
    }
  }
  assert_true(ok > 0); /* some random inputs are valid msgpack */
}

static void test_accessors_on_wrong_types(void **state) {
  (void)state;
  dt_value *s = dt_str("x");
  assert_int_equal(dt_value_int(s), 0);
  assert_null(dt_value_bytes(s, NULL));
  assert_null(dt_list_get(s, 0));
  assert_null(dt_map_get(s, "a"));
  assert_int_equal(dt_list_push(s, dt_int(1)), DT_EINVAL);
  assert_int_equal(dt_map_set(s, "a", dt_int(1)), DT_EINVAL);
  assert_null(dt_list_of(2, dt_int(1), NULL));
  dt_value_free(s);
  assert_string_equal(dt_type_name(DT_MAP), "map");
}

static void test_shared_memory_blobs(void **state) {
  (void)state;
  /* a large value made with dt_bytes_alloc lives in a memfd: another process
   * (here: this one, through /proc) maps the same bytes without a copy */
  size_t n = 8u << 20;
  void *p;
  dt_value *v = dt_bytes_alloc(n, &p);
  assert_non_null(v);
  memset(p, 0x5a, n);
  ((char *)p)[n - 1] = 'z';
  dt_blob *b = v->u.bytes.blob;
  int fd;
  const char *name;
  assert_int_equal(dt__blob_share(b, &fd, &name), 0);
  assert_true(fd >= 0);
  dt_blob *m = dt__blob_open_shared((int)getpid(), fd, name, n);
  assert_non_null(m);
  assert_int_equal(m->data[0], 0x5a);
  assert_int_equal(m->data[n - 1], 'z');
  dt_value *mv = dt__bytes_of_blob(m, m->data, n);
  size_t len;
  assert_memory_equal(dt_value_bytes(mv, &len), p, n);
  assert_int_equal(len, n);
  /* a wrong name, or too large a size: refused (an fd number may be reused) */
  assert_null(dt__blob_open_shared((int)getpid(), fd, "dtask-0-0", n));
  assert_null(dt__blob_open_shared((int)getpid(), fd, name, n + 4096));
  dt_value_free(mv);
  dt_value_free(v);
  /* a task's own buffer is copied into a memfd once, when first shared */
  char *own = malloc(2u << 20);
  memset(own, 3, 2u << 20);
  dt_value *t = dt_bytes_take(own, 2u << 20, free);
  assert_int_equal(dt__blob_share(t->u.bytes.blob, &fd, &name), 0);
  m = dt__blob_open_shared((int)getpid(), fd, name, 2u << 20);
  assert_non_null(m);
  assert_int_equal(m->data[(2u << 20) - 1], 3);
  dt__blob_unref(m);
  dt_value_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_memory_blobs),
      cmocka_unit_test(test_scalars_roundtrip),
      cmocka_unit_test(test_containers_roundtrip),
      cmocka_unit_test(test_large_bytes_travel_as_frames),
      cmocka_unit_test(test_truncated_payloads_rejected),
      cmocka_unit_test(test_hostile_counts_rejected),
      cmocka_unit_test(test_depth_limit),
      cmocka_unit_test(test_random_garbage_never_crashes),
      cmocka_unit_test(test_accessors_on_wrong_types),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
