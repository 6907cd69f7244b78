/*
 * slices.c -- a batch of tasks (a graph, a map) sent as one UPDATE_GRAPH
 * when it is small, and as several ("slices") when it is big: at most
 * DTASK_SLICE_TASKS tasks (100,000) and DTASK_SLICE_BYTES bytes (32 MiB)
 * each, so that no message nears DT_MAX_BODY, the scheduler's one thread
 * goes back to its loop between slices (heartbeats, other clients), and
 * the client never holds the whole encoded batch.
 *
 * What the scheduler does with a slice decides what the client must do:
 * it links a task's dependencies once the whole message is in, so inside
 * one message a task may name a key that comes later in it; a dependency
 * that it does not know when the message is handled fails the task; and a
 * new task that nobody wants and nothing depends on is forgotten at once
 * (graph.c there).  So:
 *   - tasks go in an order where every dependency inside the batch comes
 *     first (graph.c here sorts the graph so), so that a slice only names
 *     keys of earlier slices, or of its own;
 *   - a task of slice k that a later slice depends on is wanted by the
 *     client until the last slice depending on it is sent: the client
 *     holds a future for it (made, and its key sent as wanted, if the
 *     client had none), and drops that hold right after that slice (the
 *     RELEASE_KEYS follows the slice on the connection, when the task has
 *     its dependents); a key the client already wanted stays wanted;
 *   - the keys the caller wants are wanted in the slice that holds their
 *     task, the others (keys outside the batch) with the first slice.
 * The end state is that of one message: the same tasks, dependencies and
 * wanted keys.  Want-then-release needs no change to the protocol or the
 * journal, and the futures' reference counts keep another thread's
 * interest in the same keys intact.
 *
 * Pacing: after each slice a SYNC; before slice k is encoded the SYNCED of
 * slice k-2 is awaited (the lock released meanwhile), so that at most two
 * slices wait in the write buffer or the scheduler, and the SYNCED replies
 * keep the client's heartbeat (connection.c) satisfied however long the
 * whole batch takes.  Between slices other threads use the client freely.
 * (A done callback that the I/O thread runs does not wait: it sends every
 * slice at once.)
 *
 * Failure after a slice was sent (out of memory, the connection lost or
 * replaced, the client closed) releases the futures made for the call:
 * what was sent is forgotten by the scheduler as if the user had released
 * it; nothing is half-sent (each slice is reserved whole, see client.h).
 */
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "../proto/alloc.h"

enum { SLICE_TASKS = 100000, SLICE_FRAMES = DT_MAX_FRAMES / 2 };
#define SLICE_BYTES ((size_t)32 << 20)

/* env_size: a positive size from the environment (testing and tuning), or
 * dflt; at most hi */
static size_t env_size(const char *name, size_t dflt, size_t hi) {
  const char *s = getenv(name);
  if (!s || !*s) return dflt;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end || v == 0) return dflt;
  return v > hi ? hi : (size_t)v;
}

/* slice_cost: what tasks[i] adds to a slice: bytes (its bound, its key as
 * wanted, its frames' bytes) and frames */
static size_t slice_cost(const dt__taskdef *t, uint32_t *frames) {
  size_t b = dt__taskdef_bound(t) + DT__WB_STR(strlen(t->key));
  for (uint32_t k = 0; k < t->spec.nframes; k++) b += t->spec.frames[k].len;
  *frames = t->spec.nframes;
  return b;
}

/* cut: the slices' starts (starts[nsl] = n); false when out of memory */
static bool cut(const dt__slicing *s, size_t max_tasks, size_t max_bytes, size_t **starts,
                size_t *nsl) {
  size_t cap = 16, k = 0, bytes = 0, count = 0;
  uint32_t frames = 0;
  size_t *st = dt__try_malloc(cap * sizeof(*st));
  if (!st) return false;
  st[k++] = 0;
  for (size_t i = 0; i < s->n; i++) {
    uint32_t f;
    size_t b = slice_cost(s->tasks[i], &f);
    if (count && (count == max_tasks || bytes + b > max_bytes || frames + f > SLICE_FRAMES)) {
      if (k == cap) {
        size_t *nst = dt__try_realloc(st, 2 * cap * sizeof(*st));
        if (!nst) {
          free(st);
          return false;
        }
        st = nst;
        cap *= 2;
      }
      st[k++] = i;
      bytes = 0, count = 0, frames = 0;
    }
    bytes += b, count++, frames += f;
  }
  if (k == cap) {
    size_t *nst = dt__try_realloc(st, (cap + 1) * sizeof(*st));
    if (!nst) {
      free(st);
      return false;
    }
    st = nst;
  }
  st[k] = s->n;
  *starts = st;
  *nsl = k;
  return true;
}

/* dep_pos: the position in the batch + 1 of a dependency, 0 if outside */
static size_t dep_pos(const dt__slicing *s, const char *key) {
  uintptr_t ix = (uintptr_t)dt__smap_get(s->index, key, strlen(key));
  return ix ? s->pos1[ix - 1] : 0;
}

/* sync_send: a SYNC after what was sent; NULL when out of memory */
static info_req *sync_send(dt_client *c) {
  info_req *ir = dt__try_calloc(1, sizeof(*ir));
  dt__msg_out o;
  if (!ir || dt__client_vec_room(&c->infos, 1) ||
      dt__client_begin(&o, c->sched, DT_OP_SYNC, DT__WB_NUM, 0)) {
    free(ir);
    return NULL;
  }
  ir->req = ++c->next_req;
  dt__vec_push(&c->infos, ir);
  dt__e_uint(&o.e, ir->req);
  dt__client_end(&o);
  dt__client_wake(c);
  return ir;
}

/* usable_on: 0 while c talks to the scheduler on conn, else an error */
static int usable_on(dt_client *c, dt_conn *conn) {
  int rc = dt__client_usable(c);
  if (rc == 0 && c->sched != conn)
    rc = dt__err(DT_ECONNLOST, "the connection to the scheduler at %s was lost while a graph "
                               "was being sent in slices", c->addr);
  return rc;
}

/* sync_end: waits (locked; the lock is released meanwhile) for ir's SYNCED
 * while conn stands, then forgets ir */
static int sync_end(dt_client *c, info_req *ir, dt_conn *conn, bool wait) {
  int rc = 0;
  while (wait && !ir->done && (rc = usable_on(c, conn)) == 0) {
    struct timespec dl;
    dt__deadline(&dl, 1000); /* a lost connection is seen within a second */
    dt__client_wait_until(c, &dl);
  }
  dt__vec_remove(&c->infos, ir);
  free(ir);
  return rc;
}

/* one_message: the whole batch in one UPDATE_GRAPH (locked; unlocks) */
static int one_message(dt_client *c, const dt__slicing *s, dt_future **out, size_t nout) {
  int rc = 0;
  if (s->n || s->nextra) {
    size_t nw = 0;
    const char **w = dt__try_malloc((s->n + s->nextra ? s->n + s->nextra : 1) * sizeof(char *));
    if (!w) {
      rc = dt__err(DT_ENOMEM, "out of memory submitting %zu tasks", s->n);
    } else {
      for (size_t i = 0; i < s->n; i++)
        if (!s->want || s->want[i]) w[nw++] = s->tasks[i]->key;
      for (size_t i = 0; i < s->nextra; i++) w[nw++] = s->extra[i];
      rc = dt__client_send_graph(c, s->tasks, s->n, w, nw);
      free(w);
    }
  }
  if (rc) {
    dt__futures_undo(out, nout);
    for (size_t i = 0; i < nout; i++) out[i] = NULL;
  }
  pthread_mutex_unlock(&c->lock);
  return rc;
}

int dt__client_submit_sliced(dt_client *c, const dt__slicing *s, dt_future **out, size_t nout) {
  size_t max_tasks = env_size("DTASK_SLICE_TASKS", SLICE_TASKS, (size_t)-1);
  size_t max_bytes = env_size("DTASK_SLICE_BYTES", SLICE_BYTES, DT_MAX_BODY / 2);
  if (s->n <= 1) return one_message(c, s, out, nout); /* one task: one message */
  size_t *starts = NULL, nsl = 0;
  if (!cut(s, max_tasks, max_bytes, &starts, &nsl)) {
    dt__futures_undo(out, nout);
    for (size_t i = 0; i < nout; i++) out[i] = NULL;
    pthread_mutex_unlock(&c->lock);
    return dt__err(DT_ENOMEM, "out of memory submitting %zu tasks", s->n);
  }
  if (nsl == 1) {
    free(starts);
    return one_message(c, s, out, nout);
  }
  size_t longest = 0;
  for (size_t k = 0; k < nsl; k++)
    if (starts[k + 1] - starts[k] > longest) longest = starts[k + 1] - starts[k];
  const char **w = dt__try_malloc((longest + s->nextra) * sizeof(char *));
  uint32_t *cross = s->index ? dt__try_calloc(s->n, sizeof(*cross)) : NULL;
  dt_future **held = s->index ? dt__try_calloc(s->n, sizeof(*held)) : NULL;
  int rc = 0;
  if (!w || (s->index && (!cross || !held)))
    rc = dt__err(DT_ENOMEM, "out of memory submitting %zu tasks", s->n);
  /* cross[p]: the dependents of tasks[p] in later slices */
  for (size_t k = 0; rc == 0 && cross && k < nsl; k++)
    for (size_t i = starts[k]; i < starts[k + 1]; i++) {
      const dt__taskdef *t = s->tasks[i];
      for (size_t d = 0; d < t->deps.len; d++) {
        size_t p = dep_pos(s, t->deps.v[d]);
        if (p && p - 1 < starts[k]) cross[p - 1]++;
      }
    }
  dt__client_enter(c);
  dt_conn *conn = c->sched;
  /* a done callback run on the I/O thread cannot wait for a reply that
   * thread reads: it sends every slice at once (in order all the same) */
  bool pace = !(c->io_started && pthread_equal(pthread_self(), c->io));
  info_req *pend[2] = {NULL, NULL}; /* the SYNC after slice k: pend[k % 2] */
  bool sent = false;
  for (size_t k = 0; rc == 0 && k < nsl; k++) {
    if (pend[k % 2]) { /* slice k-2's: two slices in flight at most */
      rc = sync_end(c, pend[k % 2], conn, pace);
      pend[k % 2] = NULL;
      if (rc) break;
    }
    if ((rc = usable_on(c, conn)) != 0) break;
    size_t lo = starts[k], hi = starts[k + 1], nw = 0;
    for (size_t i = lo; i < hi && rc == 0; i++) {
      const dt__taskdef *t = s->tasks[i];
      if (!s->want || s->want[i]) {
        w[nw++] = t->key;
      } else if (cross && cross[i]) { /* needed by a later slice: held till then */
        bool created;
        held[i] = dt__future_get(c, t->key, (uint32_t)strlen(t->key), &created);
        if (!held[i]) rc = dt__err(DT_ENOMEM, "out of memory submitting %zu tasks", s->n);
        else if (created) w[nw++] = t->key;
      }
    }
    if (k == 0)
      for (size_t i = 0; i < s->nextra; i++) w[nw++] = s->extra[i];
    if (rc == 0) rc = dt__client_send_graph(c, s->tasks + lo, hi - lo, w, nw);
    if (rc) break;
    sent = true;
    if (!(pend[k % 2] = sync_send(c))) {
      rc = dt__err(DT_ENOMEM, "out of memory submitting %zu tasks", s->n);
      break;
    }
    /* the slice is in: what only it needed from earlier slices is let go */
    for (size_t i = lo; cross && i < hi; i++) {
      const dt__taskdef *t = s->tasks[i];
      for (size_t d = 0; d < t->deps.len; d++) {
        size_t p = dep_pos(s, t->deps.v[d]);
        if (!p || p - 1 >= lo || --cross[p - 1]) continue;
        if (held[p - 1]) dt__future_unref_locked(held[p - 1]);
        held[p - 1] = NULL;
      }
    }
  }
  for (int j = 0; j < 2; j++)
    if (pend[j]) sync_end(c, pend[j], conn, false);
  for (size_t i = 0; held && i < s->n; i++)
    if (held[i]) dt__future_unref_locked(held[i]);
  if (rc && !sent) {
    dt__futures_undo(out, nout);
  } else if (rc) {
    for (size_t i = 0; i < nout; i++)
      if (out[i]) dt__future_unref_locked(out[i]);
  }
  if (rc)
    for (size_t i = 0; i < nout; i++) out[i] = NULL;
  free(w);
  free(cross);
  free(held);
  free(starts);
  dt__client_leave(c);
  return rc;
}
