/* seeds.c -- writes the seed corpora of the fuzz targets (fuzz/corpus/),
 * well-formed messages built with the real encoders, so that the fuzzers
 * start from inputs that reach deep into the handlers:
 *   seeds OUTDIR_DECODE OUTDIR_SCHEDULER */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* a task of UPDATE_GRAPH: key, func, spec (3 fields), deps, priority,
 * retries, workers, allow_other, resources */
static void task(dt_wbuf *w, const char *key, const char *dep1, const char *dep2, int retries,
                 const char *res) {
  dt__wb_array(w, 11);
  dt__wb_cstr(w, key);
  dt__wb_cstr(w, "inc");
  dt_value *args = dt_list_of(2, dt_int(1), dep1 ? dt__future_ref_value(dep1, NULL) : dt_str("x"));
  dt_value *spec = dt_list_of(2, args, dt_map_new());
  dt__wb_value(w, spec);
  dt_value_free(spec);
  int nd = (dep1 != NULL) + (dep2 != NULL);
  dt__wb_array(w, (uint32_t)nd);
  if (dep1) dt__wb_cstr(w, dep1);
  if (dep2) dt__wb_cstr(w, dep2);
  dt__wb_int(w, 0);
  dt__wb_int(w, retries);
  dt__wb_array(w, 0);
  dt__wb_bool(w, false);
  dt__wb_map(w, res ? 1 : 0);
  if (res) {
    dt__wb_cstr(w, res);
    dt__wb_double(w, 1);
  }
}

/* a scheduler-fuzz step: selector (0 stranger, 1 client, 2 worker) */
static void step(dt_wbuf *w, int who) {
  dt__wbuf_reserve(w, 1)[0] = (char)who;
  w->len++;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: seeds DECODE_DIR SCHEDULER_DIR\n");
    return 2;
  }
  dt_wbuf w;

  /* decode: single messages of each kind a peer sends */
  dt__wbuf_init(&w);
  dt__wb_msg(&w, DT_OP_UPDATE_GRAPH, 2);
  dt__wb_array(&w, 3);
  task(&w, "a", NULL, NULL, 0, NULL);
  task(&w, "b", "a", NULL, 2, "GPU");
  task(&w, "c", "a", "b", 0, NULL);
  dt__wb_array(&w, 1);
  dt__wb_cstr(&w, "c");
  save(argv[1], "update_graph", &w, NULL, 0);
  dt__wbuf_clear(&w);

  dt__wbuf_init(&w);
  dt__wb_msg(&w, DT_OP_COMPUTE_TASK, 8);
  dt__wb_cstr(&w, "b");
  dt__wb_cstr(&w, "inc");
  dt_value *spec = dt_list_of(2, dt_list_of(1, dt__future_ref_value("a", NULL)), dt_map_new());
  dt__wb_value(&w, spec);
  dt_value_free(spec);
  dt__wb_array(&w, 1);
  dt__wb_array(&w, 3);
  dt__wb_cstr(&w, "a");
  dt__wb_uint(&w, 8);
  dt__wb_array(&w, 1);
  dt__wb_cstr(&w, "127.0.0.1:4000");
  dt__wb_int(&w, 0);
  dt__wb_map(&w, 0);
  dt__wb_msg(&w, DT_OP_KEY_IN_MEMORY, 4);
  dt__wb_cstr(&w, "b");
  dt__wb_cstr(&w, "127.0.0.1:4000");
  dt__wb_uint(&w, 3);
  dt__wb_bin(&w, "\x93\x01\x02\x03", 4);
  dt__wb_msg(&w, DT_OP_DATA, 2);
  dt__wb_uint(&w, 1);
  dt__wb_array(&w, 1);
  dt__wb_array(&w, 5);
  dt__wb_cstr(&w, "b");
  dt__wb_bool(&w, true);
  dt_value *m = dt_map_new();
  dt_map_set(m, "x", dt_double(1.5));
  dt_map_set(m, "y", dt_list_of(2, dt_str("s"), dt_bool(true)));
  dt__wb_value(&w, m);
  dt_value_free(m);
  save(argv[1], "worker_messages", &w, NULL, 0);
  dt__wbuf_clear(&w);

  /* scheduler: a client's graph runs on the worker, with a failure, a
   * retry, a scatter, a nanny report and releases */
  dt__wbuf_init(&w);
  step(&w, 1);
  dt__wb_msg(&w, DT_OP_UPDATE_GRAPH, 2);
  dt__wb_array(&w, 3);
  task(&w, "a", NULL, NULL, 0, NULL);
  task(&w, "b", "a", NULL, 1, NULL);
  task(&w, "c", "a", "b", 0, "GPU");
  dt__wb_array(&w, 1);
  dt__wb_cstr(&w, "c");
  step(&w, 2);
  dt__wb_msg(&w, DT_OP_TASK_FINISHED, 4);
  dt__wb_cstr(&w, "a");
  dt__wb_uint(&w, 8);
  dt__wb_uint(&w, 100);
  dt__wb_nil(&w);
  step(&w, 2);
  dt__wb_msg(&w, DT_OP_TASK_ERRED, 4);
  dt__wb_cstr(&w, "b");
  dt__wb_int(&w, DT_ETASK);
  dt__wb_cstr(&w, "inc");
  dt__wb_cstr(&w, "boom");
  step(&w, 2);
  dt__wb_msg(&w, DT_OP_MISSING_DATA, 3);
  dt__wb_cstr(&w, "b");
  dt__wb_cstr(&w, "a");
  dt__wb_cstr(&w, "127.0.0.1:2");
  step(&w, 2);
  dt__wb_msg(&w, DT_OP_HEARTBEAT, 4);
  dt__wb_int(&w, 1);
  dt__wb_int(&w, 0);
  dt__wb_int(&w, 1);
  dt__wb_int(&w, 8);
  step(&w, 1);
  dt__wb_msg(&w, DT_OP_WANT_RESULT, 1);
  dt__wb_array(&w, 1);
  dt__wb_cstr(&w, "c");
  step(&w, 1);
  dt__wb_msg(&w, DT_OP_WHO_HAS, 1);
  dt__wb_array(&w, 1);
  dt__wb_cstr(&w, "a");
  step(&w, 0);
  dt__wb_msg(&w, DT_OP_NANNY_REPORT, 4);
  dt__wb_uint(&w, 7);
  dt__wb_uint(&w, 4242);
  dt__wb_cstr(&w, "killed by signal 9");
  dt__wb_array(&w, 1);
  dt__wb_cstr(&w, "b");
  step(&w, 1);
  dt__wb_msg(&w, DT_OP_SCATTER, 4);
  dt__wb_uint(&w, 1);
  dt__wb_array(&w, 1);
  dt__wb_array(&w, 4);
  dt__wb_cstr(&w, "s");
  dt_value *five = dt_int(5);
  dt__wb_value(&w, five);
  dt_value_free(five);
  dt__wb_array(&w, 0);
  dt__wb_bool(&w, true);
  step(&w, 2);
  dt__wb_msg(&w, DT_OP_PUT_DATA_DONE, 2);
  dt__wb_uint(&w, 1);
  dt__wb_array(&w, 1);
  dt__wb_array(&w, 2);
  dt__wb_cstr(&w, "s");
  dt__wb_uint(&w, 9);
  step(&w, 1);
  dt__wb_msg(&w, DT_OP_CANCEL_KEYS, 1);
  dt__wb_array(&w, 1);
  dt__wb_cstr(&w, "c");
  step(&w, 1);
  dt__wb_msg(&w, DT_OP_RELEASE_KEYS, 1);
  dt__wb_array(&w, 2);
  dt__wb_cstr(&w, "c");
  dt__wb_cstr(&w, "s");
  step(&w, 1);
  dt__wb_msg(&w, DT_OP_INFO_REQUEST, 1);
  dt__wb_uint(&w, 3);
  step(&w, 2);
  dt__wb_msg(&w, DT_OP_CLOSE, 1);
  dt__wb_cstr(&w, "bye");
  save(argv[2], "session", &w, NULL, 0);
  dt__wbuf_clear(&w);
  return 0;
}
