/*
 * retry.c -- dt_client_retry (Dask's Client.retry / Future.retry): the
 * failed futures go back to pending, then the scheduler's "retry" query
 * moves their ERRED tasks (and the ERRED tasks they depend on) back to be
 * run (src/scheduler/retry.c).  A task that fails again makes the future
 * DT_ERROR again through KEY_ERRED.  User threads only.
 */
#include <stdlib.h>
#include <string.h>

#include "client.h"

int dt_client_retry(dt_client *c, dt_future *const *fs, size_t n, int timeout_ms) {
  dt__err_clear();
  if (!c || (n && !fs)) return dt__err(DT_EINVAL, "dt_client_retry: NULL argument");
  dt_value *keys = dt_list_new(), *args = dt_map_new();
  if (!keys || !args) {
    dt_value_free(keys);
    dt_value_free(args);
    return dt__err(DT_ENOMEM, "dt_client_retry: out of memory");
  }
  pthread_mutex_lock(&c->lock);
  for (size_t i = 0; i < n; i++) {
    dt_future *f = fs[i];
    if (!f || f->client != c || !f->in_map || f->status != DT_ERROR || f->err_code == DT_ELOST) continue;
    f->status = DT_PENDING; /* KEY_IN_MEMORY or KEY_ERRED finishes it again */
    dt_list_push(keys, dt_str(f->key));
  }
  pthread_mutex_unlock(&c->lock);
  int rc = 0;
  if (dt_list_len(keys) == 0) {
    dt_value_free(keys);
  } else {
    dt_map_set(args, "keys", keys);
    rc = dt_client_query(c, "retry", args, timeout_ms, NULL);
  }
  dt_value_free(args);
  return rc;
}
