/* fuzz_decode.c -- libFuzzer target over the message decoder: the bytes are
 * a batch body as a peer would send it.  Each message is validated
 * (dt__mp_validate, what conn.c runs before any handler), read as
 * [op, fields...], and every field is also decoded as a task payload (the
 * value decoder that workers run on task specs).  Nothing may crash, leak,
 * or read out of bounds. */
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

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
