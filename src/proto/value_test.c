/* value_test.c -- values: construction, encode/decode round trips, large
 * buffers as frames without copies, hostile payloads rejected, every
 * public constructor failing cleanly when an allocation fails, and futures
 * released through their header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpuck.h>

#include "proto/alloc.h"
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

/* ---------------------------------------------------------------- out of memory */

/* Allocation number fail_at (counting from 0 after arm()) fails; the others
 * succeed.  Each case below runs with fail_at = 0, 1, 2, ... until the call
 * makes fewer allocations than that, i.e. succeeds with no failure injected.
 * Every failing run must return NULL / DT_ENOMEM and leak nothing (the ASan
 * build checks the leaks). */
static long fail_at, n_allocs;
static bool fail_nth(size_t n) {
  (void)n;
  return n_allocs++ == fail_at;
}
static void arm(long n) {
  fail_at = n;
  n_allocs = 0;
  dt__alloc_fail_hook = fail_nth;
}
static bool disarm(void) { /* true if a failure was injected */
  dt__alloc_fail_hook = NULL;
  return n_allocs > fail_at;
}

typedef dt_value *(*make_fn)(void);
static dt_value *mk_nil(void) { return dt_nil(); }
static dt_value *mk_bool(void) { return dt_bool(true); }
static dt_value *mk_int(void) { return dt_int(42); }
static dt_value *mk_double(void) { return dt_double(2.5); }
static dt_value *mk_str(void) { return dt_str("hello"); }
static dt_value *mk_strn(void) { return dt_strn("hello", 3); }
static dt_value *mk_bytes(void) { return dt_bytes("abc", 3); }
static dt_value *mk_bytes_big(void) { /* its own mapping: only the blob header is malloc'd */
  static char big[DT_BLOB_MAP_MIN];
  return dt_bytes(big, sizeof(big));
}
static dt_value *mk_bytes_alloc(void) {
  void *p = NULL;
  dt_value *v = dt_bytes_alloc(100, &p);
  if (v) memset(p, 1, 100);
  return v;
}
static dt_value *mk_list(void) { return dt_list_new(); }
static dt_value *mk_map(void) { return dt_map_new(); }
static dt_value *mk_list_of(void) {
  return dt_list_of(4, dt_int(1), dt_str("x"), dt_list_of(1, dt_nil()), dt_bytes("b", 1));
}
static dt_value *mk_future_ref(void) { return dt__future_ref_value("inc-1", NULL); }
static dt_value *mk_nested(void) { /* 5 pushes: the list grows past 4 */
  dt_value *m = dt_map_new();
  for (int i = 0; i < 5; i++) {
    char k[8];
    snprintf(k, sizeof(k), "k%d", i);
    if (dt_map_set(m, k, dt_list_of(2, dt_int(i), dt_str(k))) != 0) {
      dt_value_free(m);
      return NULL;
    }
  }
  dt_value *l = dt_list_new();
  for (int i = 0; i < 5; i++)
    if (dt_list_push(l, dt_int(i)) != 0) {
      dt_value_free(l);
      dt_value_free(m);
      return NULL;
    }
  if (dt_map_set(m, "list", l) != 0) {
    dt_value_free(m);
    return NULL;
  }
  return m;
}

static void test_constructors_fail_cleanly(void **state) {
  (void)state;
  static const struct {
    const char *name;
    make_fn fn;
  } cases[] = {{"dt_nil", mk_nil},       {"dt_bool", mk_bool},
               {"dt_int", mk_int},       {"dt_double", mk_double},
               {"dt_str", mk_str},       {"dt_strn", mk_strn},
               {"dt_bytes", mk_bytes},   {"dt_bytes (large)", mk_bytes_big},
               {"dt_bytes_alloc", mk_bytes_alloc},
               {"dt_list_new", mk_list}, {"dt_map_new", mk_map},
               {"dt_list_of", mk_list_of},
               {"dt__future_ref_value", mk_future_ref},
               {"dt_map_set/dt_list_push", mk_nested}};
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    dt_value *want = cases[c].fn();
    assert_non_null(want);
    long n;
    for (n = 0;; n++) {
      arm(n);
      dt_value *v = cases[c].fn();
      bool injected = disarm();
      if (!injected) {
        if (!v) fail_msg("%s failed with no allocation failure", cases[c].name);
        assert_true(dt_value_equal(v, want));
        dt_value_free(v);
        break;
      }
      if (v) fail_msg("%s: allocation %ld failed, yet it returned a value", cases[c].name, n);
    }
    assert_true(n >= 1); /* it allocates, so a failure was tried */
    dt_value_free(want);
  }
}

static int take_frees;
static void count_free(void *p) {
  take_frees++;
  free(p);
}

static void test_bytes_take_fails_cleanly(void **state) {
  (void)state;
  /* the buffer is consumed on failure too: free_fn runs once, at once */
  for (long n = 0;; n++) {
    char *buf = malloc(16);
    memcpy(buf, "0123456789abcdef", 16);
    take_frees = 0;
    arm(n);
    dt_value *v = dt_bytes_take(buf, 16, count_free);
    bool injected = disarm();
    if (!injected) {
      assert_non_null(v);
      assert_int_equal(take_frees, 0);
      dt_value_free(v);
      assert_int_equal(take_frees, 1);
      break;
    }
    assert_null(v);
    assert_int_equal(take_frees, 1);
  }
}

static void test_push_and_set_fail_cleanly(void **state) {
  (void)state;
  dt_value *l = dt_list_new(), *m = dt_map_new();
  for (int i = 0; i < 4; i++) { /* full: the next push or new key must grow */
    char k[4] = {'k', (char)('0' + i), 0};
    assert_int_equal(dt_list_push(l, dt_int(i)), 0);
    assert_int_equal(dt_map_set(m, k, dt_int(i)), 0);
  }
  for (long n = 0;; n++) {
    dt_value *item = dt_str("item"), *val = dt_str("val");
    arm(n);
    int rp = dt_list_push(l, item); /* item and val: consumed either way */
    int rs = dt_map_set(m, "new", val);
    bool injected = disarm();
    if (!injected) {
      assert_int_equal(rp, 0);
      assert_int_equal(rs, 0);
      break;
    }
    assert_true((rp == DT_ENOMEM || rp == 0) && (rs == DT_ENOMEM || rs == 0));
    assert_true(rp != 0 || rs != 0);
    if (rp) assert_int_equal(dt_list_len(l), 4); /* unchanged */
    if (rs) assert_int_equal(dt_map_len(m), 4);
    /* undo a half success so that the next round starts from full again */
    if (rp == 0) {
      dt_value_free(l->u.list.items[4]);
      l->u.list.len = 4;
    }
    if (rs == 0) { /* drop "new" the same way */
      free(m->u.map.keys[4]);
      dt_value_free(m->u.map.vals[4]);
      m->u.map.len = 4;
    }
  }
  assert_int_equal(dt_list_len(l), 5);
  assert_string_equal(dt_value_str(dt_map_get(m, "new"), NULL), "val");
  /* replacing a key allocates nothing */
  dt_value *seven = dt_int(7);
  arm(0);
  int rc = dt_map_set(m, "k0", seven);
  assert_false(disarm());
  assert_int_equal(rc, 0);
  assert_int_equal(dt_value_int(dt_map_get(m, "k0")), 7);
  dt_value_free(l);
  dt_value_free(m);
}

static void test_payloads_fail_cleanly(void **state) {
  (void)state;
  char longkey[300];
  memset(longkey, 'k', sizeof(longkey) - 1); /* over 256: the decoder allocates it */
  longkey[sizeof(longkey) - 1] = '\0';
  dt_value *m = dt_map_new();
  assert_int_equal(dt_map_set(m, longkey, dt_str("v")), 0);
  dt_value *big = dt_bytes_alloc(DT_LARGE_BYTES, NULL);
  dt_value *v = dt_list_of(5, dt_str("hello"), dt_bytes("xy", 2), m, dt_value_ref(big),
                           dt__future_ref_value("dep-1", NULL));
  assert_non_null(v);
  dt_payload p;
  long n;
  for (n = 0;; n++) { /* encoding */
    arm(n);
    int rc = dt__payload_encode(v, &p, NULL);
    bool injected = disarm();
    if (!injected) {
      assert_int_equal(rc, 0);
      break;
    }
    assert_int_equal(rc, DT_ENOMEM);
    assert_null(p.body);
    assert_int_equal(big->u.bytes.blob->refs, 1); /* no frame reference kept */
  }
  assert_int_equal(p.nframes, 1);
  for (n = 0;; n++) { /* decoding */
    dt_value *out = (dt_value *)&n; /* not NULL: decode must set it */
    arm(n);
    int rc = dt__payload_decode(&p, &out);
    bool injected = disarm();
    if (!injected) {
      assert_int_equal(rc, 0);
      assert_true(dt_value_equal(out, v));
      dt_value_free(out);
      break;
    }
    assert_int_equal(rc, DT_ENOMEM);
    assert_null(out);
  }
  assert_true(n >= 10); /* list, strings, bytes, map, key, frame ref, future... */
  assert_int_equal(big->u.bytes.blob->refs, 2); /* the payload's frame */
  dt__payload_clear(&p);
  assert_int_equal(big->u.bytes.blob->refs, 1);
  dt_value_free(v);
  dt_value_free(big);
}

/* ---------------------------------------------------------------- futures in values */

/* a higher layer's future, as proto sees it: its header first */
struct dt_future {
  dt__future_hdr hdr;
  int released;
};
static void fake_release(struct dt_future *f) { f->released++; }

static void test_future_released_through_header(void **state) {
  (void)state;
  struct dt_future f = {.released = 0};
  atomic_init(&f.hdr.release, fake_release);
  dt_value *v = dt__future_ref_value("inc-9", &f);
  assert_non_null(v);
  dt_value *l = dt_list_of(1, dt_value_ref(v));
  dt_value_free(v);
  assert_int_equal(f.released, 0); /* the list still holds the value */
  dt_value_free(l);
  assert_int_equal(f.released, 1);
  /* a key-only future value holds nothing */
  dt_value_free(dt__future_ref_value("inc-9", NULL));
  assert_int_equal(f.released, 1);
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
      cmocka_unit_test(test_constructors_fail_cleanly),
      cmocka_unit_test(test_bytes_take_fails_cleanly),
      cmocka_unit_test(test_push_and_set_fail_cleanly),
      cmocka_unit_test(test_payloads_fail_cleanly),
      cmocka_unit_test(test_future_released_through_header),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
