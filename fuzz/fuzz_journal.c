/* fuzz_journal.c -- libFuzzer target over the journal reader and replay
 * (src/scheduler/journal_replay.c): the bytes are a journal file as a
 * crash, a bad disk or another program may have left it.  An input that
 * starts with the magic is replayed as it is (the cluster id is not
 * checked); any other input is cut into chunks [u16 length, payload] that
 * are framed as records with correct CRCs behind a valid header, so that
 * the record decoders are reached.  Every input must replay (possibly cut
 * at a torn tail) or be refused with a reason, into a state machine whose
 * invariants hold, with nothing leaked or read out of bounds.  The
 * coordination primitives (JR_PRIM, JR_QPUSH...) are restored into the
 * daemon's coordination state, as a restarted scheduler does; the clients
 * of before then "do not come back" and nothing may stay held. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/coord.h"
#include "scheduler/sched_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool ready;
  if (!ready) {
    dt__log_init("fuzz", getenv("DTASK_FUZZ_LOG") ? getenv("DTASK_FUZZ_LOG") : "off");
    ready = true;
  }
  uint8_t *buf;
  size_t len = 0;
  if (size >= 8 && memcmp(data, DT_JOURNAL_MAGIC, 8) == 0) {
    buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    len = size;
  } else {
    buf = malloc(DT_JOURNAL_HDR + size * 5 + 16);
    uint8_t id[16] = {0};
    dt__journal_header(buf, id);
    len = DT_JOURNAL_HDR;
    size_t i = 0;
    while (i + 2 <= size) {
      size_t n = (size_t)data[i] | (size_t)data[i + 1] << 8;
      i += 2;
      if (n > size - i) n = size - i;
      uint32_t L = (uint32_t)n, crc = dt__crc32c(0, data + i, n);
      memcpy(buf + len, &L, 4);
      memcpy(buf + len + 4, &crc, 4);
      memcpy(buf + len + 8, data + i, n);
      len += 8 + n;
      i += n;
    }
  }
  sched *sp = &dt__srv.s; /* the coordination state's scheduler */
  dt__sched_init(sp);
  char why[512] = "";
  size_t good = 0;
  dt__journal_coord_install = true;
  int rc = dt__journal_replay_buf(sp, buf, len, NULL, &good, why, sizeof(why));
  dt__journal_coord_install = false;
  if (rc != 0 && (rc != DT_EPROTO || !why[0])) abort(); /* refused: always with a reason */
  if (good > len) abort();
  char msg[512];
  if (dt__sched_check(sp, msg, sizeof(msg)) != 0) {
    fprintf(stderr, "scheduler invariants broken after a replay: %s\n", msg);
    abort();
  }
  dt__journal_coord_orphans(); /* the client grace passed */
  if (dt__coord_client_state() != 0) {
    fprintf(stderr, "locks or leases held after every client of before left\n");
    abort();
  }
  dt__journal_replay_forget();
  dt__coord_free_all();
  dt__sched_destroy(sp);
  free(buf);
  return 0;
}
