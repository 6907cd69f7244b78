/* hotenc_test.c -- hotenc.c's raw COMPUTE_TASK, KEY_IN_MEMORY and FREE_KEYS
 * against the checked encoder (dt__e_*, which checks every write against
 * msgs.h's table and aborts on a mismatch): each message is encoded both
 * ways, for many inputs (keys and strings across msgpack's str8 / str16
 * boundaries at 32 and 256 bytes, specs with and without frames, inline
 * results or none, dependencies with and without holders, sent ahead or
 * not, resources, timeouts, priorities of every size), into write buffers
 * that already hold something (so the first-frame index is not 0), and the
 * bytes, the frames and the message counts must be the same; every message
 * is also read back with the checked decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/hotenc.h"

/* ---- the checked encoder's versions: what emit.c wrote before hotenc.c */

static void ref_compute(dt_wbuf *w, const s_task *t, bool ahead) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_COMPUTE_TASK);
  dt__e_str(&e, t->key, t->klen);
  dt__e_cstr(&e, t->func);
  dt_payload spec = dt__task_spec(t);
  dt__e_payload(&e, &spec);
  dt__e_list(&e, t->ndeps);
  for (uint32_t i = 0; i < t->ndeps; i++) {
    const s_task *d = t->deps[i];
    dt__e_rec(&e);
    dt__e_str(&e, d->key, d->klen);
    dt__e_uint(&e, d->nbytes);
    dt__e_list(&e, ahead ? 0 : (uint32_t)d->who_has.len);
    for (size_t j = 0; !ahead && j < d->who_has.len; j++)
      dt__e_cstr(&e, ((s_worker *)d->who_has.v[j])->address);
  }
  dt__e_int(&e, t->priority);
  dt__e_map(&e, RARE(t)->nres);
  for (uint32_t i = 0; i < RARE(t)->nres; i++) {
    dt__e_cstr(&e, RARE(t)->res_names[i]);
    dt__e_double(&e, RARE(t)->res_amounts[i]);
  }
  dt__e_double(&e, RARE(t)->timeout);
  dt__e_end(&e);
}

static void ref_in_memory(dt_wbuf *w, const char *key, uint32_t klen, const char *worker,
                          uint64_t nbytes, const void *inl, uint32_t ilen) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_KEY_IN_MEMORY);
  dt__e_str(&e, key, klen);
  dt__e_cstr(&e, worker);
  dt__e_uint(&e, nbytes);
  if (inl) dt__e_bin(&e, inl, ilen);
  else dt__e_nil(&e);
  dt__e_end(&e);
}

static void ref_free(dt_wbuf *w, const char *key, uint32_t klen) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_FREE_KEYS);
  dt__e_list(&e, 1);
  dt__e_str(&e, key, klen);
  dt__e_end(&e);
}

/* ---- helpers */

static char buf[70000]; /* the bytes strings, bodies and results are cut from */

static void init_buf(void) {
  for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (char)('a' + i % 26);
}

/* two buffers holding the same message already, and nframes frames */
static dt_blob *pre_blob;
static void prime(dt_wbuf *a, dt_wbuf *b, uint32_t nframes) {
  dt__wbuf_init(a);
  dt__wbuf_init(b);
  dt_frame fr[3];
  for (uint32_t i = 0; i < nframes; i++) fr[i] = (dt_frame){pre_blob, pre_blob->data, 8};
  dt_payload p = {buf, 3, fr, nframes};
  for (int k = 0; k < 2; k++) {
    dt_enc e;
    dt__e_begin(&e, k ? b : a, DT_OP_COMPUTE_TASK); /* anything, as long as it is the same */
    dt__e_str(&e, "x", 1);
    dt__e_cstr(&e, "f");
    dt__e_payload(&e, &p);
    dt__e_list(&e, 0);
    dt__e_int(&e, -1);
    dt__e_map(&e, 0);
    dt__e_double(&e, 0);
    dt__e_end(&e);
  }
}

/* a and b must hold the same bytes and frames; then every message in them
 * is read with the checked decoder; returns how many there were */
static int same(dt_wbuf *a, dt_wbuf *b) {
  assert_int_equal(a->len, b->len);
  assert_memory_equal(a->buf, b->buf, a->len);
  assert_int_equal(a->nmsgs, b->nmsgs);
  assert_int_equal(a->nframes, b->nframes);
  for (uint32_t i = 0; i < a->nframes; i++) {
    assert_ptr_equal(a->frames[i].blob, b->frames[i].blob);
    assert_ptr_equal(a->frames[i].p, b->frames[i].p);
    assert_int_equal(a->frames[i].len, b->frames[i].len);
  }
  const char *p = a->buf, *end = a->buf + a->len;
  int n = 0;
  while (p < end) {
    const char *q = p;
    assert_int_equal(dt__mp_validate(&q, end, DT_MAX_DEPTH), 0);
    dt_rd r = {p, q, a->frames, a->nframes};
    uint32_t nf;
    uint64_t op;
    dt_msg m;
    assert_int_equal(dt__rd_array(&r, &nf), 0);
    assert_int_equal(dt__rd_uint(&r, &op), 0);
    assert_int_equal(dt__msg_read(&r, (int)op, nf - 1, &m), 0);
    p = q;
    n++;
  }
  assert_int_equal(n, (int)a->nmsgs);
  dt__wbuf_clear(a);
  dt__wbuf_clear(b);
  return n;
}

static s_task *task_new(uint32_t klen, uint64_t nbytes) {
  s_task *t = calloc(1, sizeof(*t) + klen + 1);
  assert_non_null(t);
  memcpy(t->key, buf + 1, klen);
  t->klen = klen;
  t->nbytes = nbytes;
  dt__vec1_init(&t->who_has);
  return t;
}

static const uint32_t key_lens[] = {1, 5, 31, 32, 33, 255, 256, 257, DT_MAX_KEY};
#define NKL (sizeof(key_lens) / sizeof(key_lens[0]))

/* ---- the tests */

static void test_free_keys(void **st) {
  (void)st;
  for (size_t i = 0; i < NKL; i++) {
    dt_wbuf a, b;
    prime(&a, &b, i % 3);
    for (int k = 0; k < 3; k++) { /* several in a row */
      ref_free(&a, buf + k, key_lens[i]);
      dt__hot_free_key(&b, buf + k, key_lens[i]);
    }
    assert_int_equal(same(&a, &b), 4);
  }
}

static void test_key_in_memory(void **st) {
  (void)st;
  static const uint32_t wlens[] = {0, 14, 31, 32, 255, 256};
  static const uint64_t sizes[] = {0,     1,     127,         128,           255,       256,
                                   65535, 65536, 4294967295u, 4294967296ull, UINT64_MAX};
  static const int64_t ilens[] = {-1, 0, 1, 31, 32, 255, 256, DT_INLINE_MAX, 65535, 65536};
  int total = 0;
  for (size_t i = 0; i < NKL; i++)
    for (size_t j = 0; j < sizeof(wlens) / sizeof(wlens[0]); j++)
      for (size_t k = 0; k < sizeof(ilens) / sizeof(ilens[0]); k++) {
        char worker[300];
        memcpy(worker, buf + 7, wlens[j]);
        worker[wlens[j]] = '\0';
        const void *inl = ilens[k] < 0 ? NULL : buf + 3;
        uint32_t ilen = ilens[k] < 0 ? 0 : (uint32_t)ilens[k];
        uint64_t nb = sizes[(i + j + k) % (sizeof(sizes) / sizeof(sizes[0]))];
        dt_wbuf a, b;
        prime(&a, &b, (uint32_t)(k % 2));
        ref_in_memory(&a, buf, key_lens[i], worker, nb, inl, ilen);
        dt__hot_key_in_memory(&b, buf, key_lens[i], worker, nb, inl, ilen);
        total += same(&a, &b);
      }
  assert_int_equal(total, (int)(2 * NKL * 6 * 10));
}

static void test_compute_task(void **st) {
  (void)st;
  /* holders: addresses of several lengths (str8 from 32) */
  s_worker ws[20];
  char addrs[20][64];
  memset(ws, 0, sizeof(ws));
  for (int i = 0; i < 20; i++) {
    snprintf(addrs[i], sizeof(addrs[i]), "tcp://127.0.0.1:%d%.*s", 40000 + i, i * 2, buf);
    ws[i].address = addrs[i];
  }
  /* dependencies: none to 17 (array16 from 16), holders none to 17 */
  s_task *deps[20];
  for (int i = 0; i < 20; i++) {
    deps[i] = task_new(key_lens[i % NKL], (uint64_t)i * 40000000000ull);
    for (int j = 0; j < (i * 7) % 18; j++) dt__vec1_push(&deps[i]->who_has, &ws[(i + j) % 20]);
  }
  char *res_names[3] = {"GPU", "MEMORY", "a-resource-name-longer-than-32-bytes"};
  double res_amounts[3] = {1, 0.5, 1e12};
  static const uint32_t flens[] = {1, 31, 32, 40};
  static const uint32_t spec_lens[] = {0, 1, 31, 255, 256, 65535, 65536};
  static const uint32_t ndeps[] = {0, 1, 3, 15, 16, 17};
  static const int32_t prios[] = {0, 1, -1, -32, -33, 127, 128, -129, 40000, INT32_MIN, INT32_MAX};
  dt_blob *blob = dt__blob_new(64);
  memset(blob->data, 'z', 64);
  int total = 0;
  for (size_t i = 0; i < NKL; i++)
    for (size_t s = 0; s < sizeof(spec_lens) / sizeof(spec_lens[0]); s++)
      for (size_t d = 0; d < sizeof(ndeps) / sizeof(ndeps[0]); d++)
        for (int var = 0; var < 4; var++) {
          s_task *t = task_new(key_lens[i], 0);
          char func[64];
          uint32_t fl = flens[(i + s + d) % 4];
          memcpy(func, buf + 2, fl);
          func[fl] = '\0';
          t->func = func;
          t->spec_body = buf + 5;
          t->spec_len = spec_lens[s];
          dt_frame frames[2] = {{blob, blob->data, 10}, {blob, blob->data + 10, 54}};
          if (var == 3) { /* a spec with frames */
            t->spec_frames = frames;
            t->spec_nframes = 1 + (uint32_t)(d % 2);
          }
          t->deps = deps + (i % 3);
          t->ndeps = ndeps[d];
          size_t np = sizeof(prios) / sizeof(prios[0]);
          t->priority = prios[(i * 7 + s * 3 + d + (size_t)var) % np];
          s_task_rare rare;
          memset(&rare, 0, sizeof(rare));
          if (var >= 1) { /* resources, a timeout */
            rare.res_names = res_names;
            rare.res_amounts = res_amounts;
            rare.nres = (uint32_t)(var == 1 ? 1 : 3);
            rare.timeout = var == 2 ? 0 : 2.5 * (double)(s + 1);
            t->rare = &rare;
          }
          for (int ahead = 0; ahead < 2; ahead++) {
            dt_wbuf a, b;
            prime(&a, &b, (uint32_t)((s + d) % 3));
            ref_compute(&a, t, ahead);
            dt__hot_compute_task(&b, t, ahead);
            ref_compute(&a, t, !ahead); /* and a second one behind it */
            dt__hot_compute_task(&b, t, !ahead);
            total += same(&a, &b);
          }
          free(t);
        }
  assert_int_equal(total, (int)(3 * 2 * NKL * 7 * 6 * 4));
  dt__blob_unref(blob);
  for (int i = 0; i < 20; i++) {
    dt__vec1_free(&deps[i]->who_has);
    free(deps[i]);
  }
}

/* the three interleaved on one buffer, as emit.c writes a turn's events */
static void test_interleaved(void **st) {
  (void)st;
  s_worker w = {0};
  w.address = "tcp://10.0.0.1:8786";
  s_task *d = task_new(40, 8);
  dt__vec1_push(&d->who_has, &w);
  s_task *t = task_new(300, 0);
  s_task *deps[1] = {d};
  t->func = "inc";
  t->spec_body = buf;
  t->spec_len = 20;
  t->deps = deps;
  t->ndeps = 1;
  dt_wbuf a, b;
  prime(&a, &b, 0);
  for (int i = 0; i < 50; i++) {
    ref_compute(&a, t, i % 5 == 0);
    dt__hot_compute_task(&b, t, i % 5 == 0);
    const char *inl = i % 2 ? buf : NULL;
    ref_in_memory(&a, t->key, t->klen, w.address, (uint64_t)i, inl, (uint32_t)i);
    dt__hot_key_in_memory(&b, t->key, t->klen, w.address, (uint64_t)i, inl, (uint32_t)i);
    ref_free(&a, d->key, d->klen);
    dt__hot_free_key(&b, d->key, d->klen);
  }
  assert_int_equal(same(&a, &b), 151);
  dt__vec1_free(&d->who_has);
  free(d);
  free(t);
}

static int setup(void **st) {
  (void)st;
  init_buf();
  pre_blob = dt__blob_new(16);
  memset(pre_blob->data, 'p', 16);
  return 0;
}
static int teardown(void **st) {
  (void)st;
  dt__blob_unref(pre_blob);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_free_keys),
      cmocka_unit_test(test_key_in_memory),
      cmocka_unit_test(test_compute_task),
      cmocka_unit_test(test_interleaved),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
