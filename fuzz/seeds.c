/* seeds.c -- writes the seed corpora of the fuzz targets (fuzz/corpus/),
 * well-formed messages built with the real encoders, so that the fuzzers
 * start from inputs that reach deep into the handlers:
 *   seeds OUTDIR_DECODE OUTDIR_SCHEDULER */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/coord_ops.h"
#include "proto/proto.h"

static void save(const char *dir, const char *name, const dt_wbuf *w, const char *prefix,
                 size_t plen) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  if (plen) fwrite(prefix, 1, plen, f);
  fwrite(w->buf, 1, w->len, f);
  fclose(f);
}

/* a task of UPDATE_GRAPH (the record "task" of src/proto/msgs.h) */
static void task(dt_enc *e, const char *key, const char *dep1, const char *dep2, int retries,
                 const char *res) {
  dt__e_rec(e);
  dt__e_cstr(e, key);
  dt__e_cstr(e, "inc");
  dt_value *args = dt_list_of(2, dt_int(1), dep1 ? dt__future_ref_value(dep1, NULL) : dt_str("x"));
  dt_value *spec = dt_list_of(2, args, dt_map_new());
  dt__e_value(e, spec);
  dt_value_free(spec);
  int nd = (dep1 != NULL) + (dep2 != NULL);
  dt__e_list(e, (uint32_t)nd);
  if (dep1) dt__e_cstr(e, dep1);
  if (dep2) dt__e_cstr(e, dep2);
  dt__e_int(e, 0);
  dt__e_int(e, retries);
  dt__e_list(e, 0);
  dt__e_bool(e, false);
  dt__e_map(e, res ? 1 : 0);
  if (res) {
    dt__e_cstr(e, res);
    dt__e_double(e, 1);
  }
  dt__e_double(e, retries ? 2.5 : 0); /* timeout */
}

/* a scheduler-fuzz step: selector (0 stranger, 1 client, 2 worker) */
static void step(dt_wbuf *w, int who) {
  dt__wbuf_reserve(w, 1)[0] = (char)who;
  w->len++;
}

static void keys_msg(dt_wbuf *w, int op, const char *k1, const char *k2) {
  dt_enc e;
  dt__e_begin(&e, w, op);
  dt__e_list(&e, k2 ? 2 : 1);
  dt__e_cstr(&e, k1);
  if (k2) dt__e_cstr(&e, k2);
  dt__e_end(&e);
}

/* a COORD request (src/proto/coord_ops.h) naming name (and name2), with
 * value an int (< 0: none) or the future key (with its key listed) */
static void coord_msg(dt_wbuf *w, uint64_t req, int op, const char *name, const char *name2,
                      int64_t value, const char *key, int64_t timeout_ms, int64_t arg) {
  dt_enc e;
  dt__e_begin(&e, w, DT_OP_COORD);
  dt__e_uint(&e, req);
  dt__e_uint(&e, (uint64_t)op);
  dt__e_list(&e, name2 ? 2 : 1);
  dt__e_cstr(&e, name);
  if (name2) dt__e_cstr(&e, name2);
  dt_value *v = key ? dt_list_of(2, dt__future_ref_value(key, NULL), dt_int(1))
                    : value >= 0 ? dt_int(value) : NULL;
  if (v) dt__e_value(&e, v);
  else {
    dt_payload empty = {0};
    dt__e_payload(&e, &empty);
  }
  dt_value_free(v);
  dt__e_list(&e, key ? 1 : 0);
  if (key) dt__e_cstr(&e, key);
  dt__e_int(&e, timeout_ms);
  dt__e_int(&e, arg);
  dt__e_end(&e);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: seeds DECODE_DIR SCHEDULER_DIR\n");
    return 2;
  }
  dt_wbuf w;
  dt_enc e;

  /* decode: single messages of each kind a peer sends */
  dt__wbuf_init(&w);
  dt__e_begin(&e, &w, DT_OP_UPDATE_GRAPH);
  dt__e_list(&e, 3);
  task(&e, "a", NULL, NULL, 0, NULL);
  task(&e, "b", "a", NULL, 2, "GPU");
  task(&e, "c", "a", "b", 0, NULL);
  dt__e_list(&e, 1);
  dt__e_cstr(&e, "c");
  dt__e_end(&e);
  save(argv[1], "update_graph", &w, NULL, 0);
  dt__wbuf_clear(&w);

  dt__wbuf_init(&w);
  dt__e_begin(&e, &w, DT_OP_COMPUTE_TASK);
  dt__e_cstr(&e, "b");
  dt__e_cstr(&e, "inc");
  dt_value *spec = dt_list_of(2, dt_list_of(1, dt__future_ref_value("a", NULL)), dt_map_new());
  dt__e_value(&e, spec);
  dt_value_free(spec);
  dt__e_list(&e, 1);
  dt__e_rec(&e);
  dt__e_cstr(&e, "a");
  dt__e_uint(&e, 8);
  dt__e_list(&e, 1);
  dt__e_cstr(&e, "127.0.0.1:4000");
  dt__e_int(&e, 0);
  dt__e_map(&e, 0);
  dt__e_double(&e, 0);
  dt__e_end(&e);
  dt__e_begin(&e, &w, DT_OP_KEY_IN_MEMORY);
  dt__e_cstr(&e, "b");
  dt__e_cstr(&e, "127.0.0.1:4000");
  dt__e_uint(&e, 3);
  dt__e_bin(&e, "\x93\x01\x02\x03", 4);
  dt__e_end(&e);
  dt__e_begin(&e, &w, DT_OP_DATA);
  dt__e_uint(&e, 1);
  dt__e_list(&e, 2);
  dt__e_rec(&e);
  dt__e_cstr(&e, "b");
  dt__e_bool(&e, true);
  dt_value *m = dt_map_new();
  dt_map_set(m, "x", dt_double(1.5));
  dt_map_set(m, "y", dt_list_of(2, dt_str("s"), dt_bool(true)));
  dt__e_value(&e, m);
  dt_value_free(m);
  dt__e_nil(&e);
  for (int i = 0; i < 4; i++) dt__e_uint(&e, 0);
  dt__e_rec(&e); /* same host: shared memory */
  dt__e_cstr(&e, "c");
  dt__e_bool(&e, true);
  dt__e_empty_payload(&e);
  dt__e_cstr(&e, "dtask-1-1");
  dt__e_uint(&e, 1);
  dt__e_uint(&e, 3);
  dt__e_uint(&e, 0);
  dt__e_uint(&e, 4096);
  dt__e_end(&e);
  save(argv[1], "worker_messages", &w, NULL, 0);
  dt__wbuf_clear(&w);

  /* scheduler: a client's graph runs on the worker, with a failure, a
   * retry, a scatter, a nanny report and releases */
  dt__wbuf_init(&w);
  step(&w, 1);
  dt__e_begin(&e, &w, DT_OP_UPDATE_GRAPH);
  dt__e_list(&e, 3);
  task(&e, "a", NULL, NULL, 0, NULL);
  task(&e, "b", "a", NULL, 1, NULL);
  task(&e, "c", "a", "b", 0, "GPU");
  dt__e_list(&e, 1);
  dt__e_cstr(&e, "c");
  dt__e_end(&e);
  step(&w, 2);
  dt__e_begin(&e, &w, DT_OP_TASK_FINISHED);
  dt__e_cstr(&e, "a");
  dt__e_uint(&e, 8);
  dt__e_uint(&e, 100);
  dt__e_nil(&e);
  dt__e_end(&e);
  step(&w, 2);
  dt__e_begin(&e, &w, DT_OP_TASK_ERRED);
  dt__e_cstr(&e, "b");
  dt__e_int(&e, DT_ETASK);
  dt__e_cstr(&e, "inc");
  dt__e_cstr(&e, "boom");
  dt__e_end(&e);
  step(&w, 2);
  dt__e_begin(&e, &w, DT_OP_MISSING_DATA);
  dt__e_cstr(&e, "b");
  dt__e_cstr(&e, "a");
  dt__e_cstr(&e, "127.0.0.1:2");
  dt__e_end(&e);
  step(&w, 2);
  dt__e_begin(&e, &w, DT_OP_HEARTBEAT);
  dt__e_int(&e, 1);
  dt__e_int(&e, 0);
  dt__e_int(&e, 1);
  dt__e_int(&e, 8);
  dt__e_double(&e, 12.5);
  dt__e_uint(&e, 1 << 20);
  dt__e_uint(&e, 0);
  dt__e_bool(&e, false);
  dt__e_uint(&e, 8);
  dt__e_end(&e);
  step(&w, 1);
  keys_msg(&w, DT_OP_WANT_RESULT, "c", NULL);
  step(&w, 1);
  keys_msg(&w, DT_OP_WHO_HAS, "a", NULL);
  step(&w, 0);
  dt__e_begin(&e, &w, DT_OP_NANNY_REPORT);
  dt__e_uint(&e, 7);
  dt__e_uint(&e, 4242);
  dt__e_cstr(&e, "killed by signal 9");
  dt__e_list(&e, 1);
  dt__e_cstr(&e, "b");
  dt__e_end(&e);
  step(&w, 1);
  dt__e_begin(&e, &w, DT_OP_SCATTER);
  dt__e_uint(&e, 1);
  dt__e_list(&e, 1);
  dt__e_rec(&e);
  dt__e_cstr(&e, "s");
  dt_value *five = dt_int(5);
  dt__e_value(&e, five);
  dt_value_free(five);
  dt__e_list(&e, 0);
  dt__e_bool(&e, true);
  dt__e_end(&e);
  step(&w, 2);
  dt__e_begin(&e, &w, DT_OP_PUT_DATA_DONE);
  dt__e_uint(&e, 1);
  dt__e_list(&e, 1);
  dt__e_rec(&e);
  dt__e_cstr(&e, "s");
  dt__e_uint(&e, 9);
  dt__e_end(&e);
  step(&w, 1);
  keys_msg(&w, DT_OP_CANCEL_KEYS, "c", NULL);
  step(&w, 1);
  keys_msg(&w, DT_OP_RELEASE_KEYS, "c", "s");
  step(&w, 1);
  dt__e_begin(&e, &w, DT_OP_INFO_REQUEST);
  dt__e_uint(&e, 3);
  dt__e_bool(&e, true);
  dt__e_end(&e);
  step(&w, 2);
  dt__e_begin(&e, &w, DT_OP_CLOSE);
  dt__e_cstr(&e, "bye");
  dt__e_end(&e);
  save(argv[2], "session", &w, NULL, 0);
  dt__wbuf_clear(&w);

  /* scheduler: a worker retires itself (RETIRE_ME): kept while it alone
   * holds a wanted result, retired once it does not, asked again after */
  dt__wbuf_init(&w);
  step(&w, 1);
  dt__e_begin(&e, &w, DT_OP_UPDATE_GRAPH);
  dt__e_list(&e, 1);
  task(&e, "a", NULL, NULL, 0, NULL);
  dt__e_list(&e, 1);
  dt__e_cstr(&e, "a");
  dt__e_end(&e);
  step(&w, 2);
  dt__e_begin(&e, &w, DT_OP_TASK_FINISHED);
  dt__e_cstr(&e, "a");
  dt__e_uint(&e, 8);
  dt__e_uint(&e, 100);
  dt__e_nil(&e);
  dt__e_end(&e);
  for (uint64_t attempt = 1; attempt <= 3; attempt++) {
    if (attempt == 2) {
      step(&w, 1);
      keys_msg(&w, DT_OP_RELEASE_KEYS, "a", NULL);
    }
    step(&w, 2);
    dt__e_begin(&e, &w, DT_OP_RETIRE_ME);
    dt__e_uint(&e, attempt);
    dt__e_cstr(&e, "lifetime");
    dt__e_end(&e);
  }
  step(&w, 1); /* not a worker: refused */
  dt__e_begin(&e, &w, DT_OP_RETIRE_ME);
  dt__e_uint(&e, 1);
  dt__e_cstr(&e, "lifetime");
  dt__e_end(&e);
  save(argv[2], "retire_me", &w, NULL, 0);
  dt__wbuf_clear(&w);

  /* scheduler: coordination primitives holding a future, waiters left
   * behind when the client goes */
  dt__wbuf_init(&w);
  step(&w, 1);
  dt__e_begin(&e, &w, DT_OP_UPDATE_GRAPH);
  dt__e_list(&e, 1);
  task(&e, "c", NULL, NULL, 0, NULL);
  dt__e_list(&e, 1);
  dt__e_cstr(&e, "c");
  dt__e_end(&e);
  step(&w, 1);
  coord_msg(&w, 1, DT_COORD_VAR_SET, "v", NULL, -1, "c", 0, 0);
  step(&w, 1);
  coord_msg(&w, 2, DT_COORD_QUEUE_PUT, "q", NULL, -1, "c", 0, 1);
  step(&w, 1);
  coord_msg(&w, 3, DT_COORD_QUEUE_PUT, "q", NULL, 5, NULL, 1000, 1);
  step(&w, 1);
  coord_msg(&w, 4, DT_COORD_DS_PUBLISH, "d", NULL, -1, "c", 0, 0);
  step(&w, 1);
  keys_msg(&w, DT_OP_RELEASE_KEYS, "c", NULL);
  step(&w, 1);
  coord_msg(&w, 5, DT_COORD_LOCK_ACQUIRE, "l", NULL, -1, NULL, 0, 0);
  step(&w, 1);
  coord_msg(&w, 6, DT_COORD_LOCK_ACQUIRE, "l", NULL, -1, NULL, 1000, 0);
  step(&w, 1);
  coord_msg(&w, 7, DT_COORD_SEM_ACQUIRE, "s", NULL, -1, NULL, 0, 1);
  step(&w, 1);
  coord_msg(&w, 8, DT_COORD_MLOCK_ACQUIRE, "m1", "m2", -1, NULL, 0, 0);
  step(&w, 1);
  coord_msg(&w, 9, DT_COORD_MLOCK_ACQUIRE, "m2", "m3", -1, NULL, -1, 0);
  step(&w, 1);
  coord_msg(&w, 10, DT_COORD_EVENT_WAIT, "e", NULL, -1, NULL, -1, 0);
  step(&w, 1);
  coord_msg(&w, 11, DT_COORD_VAR_GET, "v", NULL, -1, NULL, 0, 0);
  step(&w, 1);
  coord_msg(&w, 12, DT_COORD_QUEUE_GET, "q", NULL, -1, NULL, 0, 0);
  step(&w, 1);
  coord_msg(&w, 13, DT_COORD_QUEUE_PUT, "l", NULL, 1, NULL, 0, 0);
  save(argv[2], "coord", &w, NULL, 0);
  dt__wbuf_clear(&w);

  /* scheduler: a worker's finished tasks in one TASKS_FINISHED (a small
   * result riding along, fire-and-forget), then one with a stale key */
  dt__wbuf_init(&w);
  step(&w, 1);
  dt__e_begin(&e, &w, DT_OP_UPDATE_GRAPH);
  dt__e_list(&e, 3);
  task(&e, "a", NULL, NULL, 0, NULL);
  task(&e, "b", NULL, NULL, 0, NULL);
  task(&e, "c", "a", "b", 0, NULL);
  dt__e_list(&e, 2);
  dt__e_cstr(&e, "a");
  dt__e_cstr(&e, "c");
  dt__e_end(&e);
  step(&w, 1);
  keys_msg(&w, DT_OP_WANT_RESULT, "a", NULL);
  step(&w, 1);
  keys_msg(&w, DT_OP_FIRE_AND_FORGET, "b", NULL);
  step(&w, 2);
  dt__e_begin(&e, &w, DT_OP_TASKS_FINISHED);
  dt__e_list(&e, 2);
  dt__e_rec(&e);
  dt__e_cstr(&e, "a");
  dt__e_uint(&e, 4);
  dt__e_uint(&e, 10);
  dt__e_bin(&e, "\x93\x01\x02\x03", 4);
  dt__e_rec(&e);
  dt__e_cstr(&e, "b");
  dt__e_uint(&e, 8);
  dt__e_uint(&e, 20);
  dt__e_nil(&e);
  dt__e_end(&e);
  step(&w, 2);
  dt__e_begin(&e, &w, DT_OP_TASKS_FINISHED);
  dt__e_list(&e, 2);
  dt__e_rec(&e);
  dt__e_cstr(&e, "c");
  dt__e_uint(&e, 8);
  dt__e_uint(&e, 5);
  dt__e_nil(&e);
  dt__e_rec(&e);
  dt__e_cstr(&e, "gone");
  dt__e_uint(&e, 8);
  dt__e_uint(&e, 5);
  dt__e_nil(&e);
  dt__e_end(&e);
  save(argv[2], "tasks_finished", &w, NULL, 0);
  dt__wbuf_clear(&w);
  return 0;
}
