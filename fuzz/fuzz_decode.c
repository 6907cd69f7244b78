/* fuzz_decode.c -- libFuzzer target over the message decoder: the bytes are
 * a batch body as a peer would send it.  Each message is validated
 * (dt__mp_validate, what conn.c runs before any handler), read as
 * [op, fields...], and every field is also decoded as a task payload (the
 * value decoder that workers run on task specs), and decoded by the message
 * table's checked decoder (dt__msg_read), whose lists are then walked.
 * Nothing may crash, leak, or read out of bounds. */
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

/* walk: the lists of the messages with nested records, as handlers do */
static void walk(const dt_msg *m, int op) {
  switch (op) {
  case DT_OP_UPDATE_GRAPH: {
    dt_list l = m->UPDATE_GRAPH.tasks;
    dt_rec_task t;
    while (dt__next_task(&l, &t)) {
      dt_sv k;
      double a;
      while (dt__next_key(&t.deps, &k)) {}
      while (dt__next_str(&t.workers, &k)) {}
      while (dt__next_double(&t.resources, &k, &a)) {}
      dt_value *v = NULL;
      if (dt__pref_decode(&t.spec, &v) == 0) dt_value_free(v);
    }
    break;
  }
  case DT_OP_DATA: {
    dt_list l = m->DATA.items;
    dt_rec_data d;
    while (dt__next_data(&l, &d)) {}
    break;
  }
  case DT_OP_INFO_REPLY: {
    dt_list l = m->INFO_REPLY.workers;
    dt_rec_wrow w;
    while (dt__next_wrow(&l, &w)) {}
    break;
  }
  default: break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *end = p + size;
  while (p < end) {
    const char *q = p;
    if (dt__mp_validate(&q, end, DT_MAX_DEPTH) != 0) break;
    dt_rd r = {p, q, NULL, 0};
    uint32_t n;
    uint64_t op;
    if (dt__rd_array(&r, &n) == 0 && n >= 1 && dt__rd_uint(&r, &op) == 0) {
      (void)dt__op_name((int)(op < DT_OP_COUNT ? op : 0));
      dt_rd mr = r;
      dt_msg m;
      if (op > 0 && op < DT_OP_COUNT && dt__msg_read(&mr, (int)op, n - 1, &m) == 0) walk(&m, (int)op);
      for (uint32_t i = 1; i < n; i++) {
        dt_payload pl;
        dt_rd save = r;
        if (dt__rd_payload(&r, &pl) == 0) {
          dt_value *v = NULL;
          if (dt__payload_decode(&pl, &v) == 0) {
            dt_payload again;
            if (dt__payload_encode(v, &again, NULL) == 0) dt__payload_clear(&again);
            dt_value_free(v);
          }
          dt__payload_clear(&pl);
          continue;
        }
        r = save;
        if (dt__rd_skip(&r) != 0) break;
      }
    }
    /* the whole object as a value payload too */
    dt_payload whole = {(char *)p, (uint32_t)(q - p), NULL, 0};
    dt_value *v = NULL;
    if (dt__payload_decode(&whole, &v) == 0) dt_value_free(v);
    p = q;
  }
  return 0;
}
