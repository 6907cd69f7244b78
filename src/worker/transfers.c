/*
 * transfers.c -- the worker's transfer logs, Dask's incoming_transfer_log
 * and outgoing_transfer_log: the last DT__XFER_CAP results fetched from
 * peers and sent to peers, each way in a ring under a mutex (appended on
 * the loop thread; read by Client.run's thread through the bindings).
 * Times are wall-clock seconds; a transfer to a peer is logged when its
 * reply is written (duration 0: the loop does not wait for the socket).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "worker_int.h"

#define DT__XFER_CAP 256

typedef struct {
  double start, stop;
  char who[128];
  char key[256];
  uint64_t nbytes;
} xfer;

static struct {
  pthread_mutex_t lock;
  xfer ring[2][DT__XFER_CAP];
  uint64_t n[2]; /* how many ever logged, each way */
} X = {.lock = PTHREAD_MUTEX_INITIALIZER};

double dt__transfer_now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void dt__transfer_log(bool outgoing, double start, const char *who, const char *key, uint32_t klen,
                      uint64_t nbytes) {
  double stop = dt__transfer_now();
  pthread_mutex_lock(&X.lock);
  int w = outgoing ? 1 : 0;
  xfer *x = &X.ring[w][X.n[w]++ % DT__XFER_CAP];
  x->start = start > 0 && start <= stop ? start : stop;
  x->stop = stop;
  snprintf(x->who, sizeof(x->who), "tcp://%s", who ? who : "?");
  snprintf(x->key, sizeof(x->key), "%.*s", (int)(klen < sizeof(x->key) ? klen : sizeof(x->key) - 1),
           key);
  x->nbytes = nbytes;
  pthread_mutex_unlock(&X.lock);
}

/* one entry as Dask writes it: start, stop, middle, duration, who, keys
 * {key: nbytes}, total, bandwidth */
static dt_value *entry(const xfer *x) {
  dt_value *m = dt_map_new();
  if (!m) return NULL;
  dt_value *keys = dt_map_new();
  if (!keys || dt_map_set(keys, x->key, dt_int((int64_t)x->nbytes))) {
    dt_value_free(keys);
    dt_value_free(m);
    return NULL;
  }
  double d = x->stop - x->start;
  if (dt_map_set(m, "keys", keys) || dt_map_set(m, "start", dt_double(x->start)) ||
      dt_map_set(m, "stop", dt_double(x->stop)) ||
      dt_map_set(m, "middle", dt_double((x->start + x->stop) / 2)) ||
      dt_map_set(m, "duration", dt_double(d)) || dt_map_set(m, "who", dt_str(x->who)) ||
      dt_map_set(m, "total", dt_int((int64_t)x->nbytes)) ||
      dt_map_set(m, "bandwidth", d > 0 ? dt_double((double)x->nbytes / d) : dt_nil())) {
    dt_value_free(m);
    return NULL;
  }
  return m;
}

dt_value *dt__worker_transfer_log(bool outgoing) {
  dt_value *l = dt_list_new();
  if (!l) return NULL;
  pthread_mutex_lock(&X.lock);
  int w = outgoing ? 1 : 0;
  uint64_t n = X.n[w], first = n > DT__XFER_CAP ? n - DT__XFER_CAP : 0;
  for (uint64_t i = first; i < n; i++) {
    dt_value *e = entry(&X.ring[w][i % DT__XFER_CAP]);
    if (!e || dt_list_push(l, e)) {
      dt_value_free(e);
      dt_value_free(l);
      l = NULL;
      break;
    }
  }
  pthread_mutex_unlock(&X.lock);
  return l;
}
