/*
 * graph.c -- lazily built task graphs (like dask.delayed), submitted with
 * only the nodes the outputs need, dependencies first: in one UPDATE_GRAPH
 * message, or in slices when big (slices.c).  Out of memory
 * gives NULL / DT_ENOMEM with the graph as it was (see client.h).
 */
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "../proto/alloc.h"

struct dt_graph {
  dt__taskdef *nodes;
  size_t n, cap;
  dt_smap index; /* key -> node index + 1 */
};

dt_graph *dt_graph_new(void) {
  dt_graph *g = dt__try_calloc(1, sizeof(*g));
  if (!g) {
    dt__err(DT_ENOMEM, "dt_graph_new: out of memory");
    return NULL;
  }
  dt__smap_init(&g->index);
  return g;
}

void dt_graph_free(dt_graph *g) {
  if (!g) return;
  for (size_t i = 0; i < g->n; i++) dt__taskdef_clear(&g->nodes[i]);
  free(g->nodes);
  dt__smap_destroy(&g->index);
  free(g);
}

int dt_graph_add(dt_graph *g, const char *func, dt_value *args, dt_value *kwargs,
                 const dt_submit_opts *opts, dt_value **ref_out) {
  dt__err_clear();
  if (!g || !ref_out) {
    dt_value_free(args);
    dt_value_free(kwargs);
    return dt__err(DT_EINVAL, "dt_graph_add: NULL argument");
  }
  *ref_out = NULL;
  dt__taskdef d;
  int rc = dt__taskdef_make(NULL, func, args, kwargs, opts, &d);
  if (rc) return rc;
  size_t kl = strlen(d.key);
  *ref_out = dt__future_ref_value(d.key, NULL);
  if (!*ref_out) goto nomem;
  if (dt__smap_get(&g->index, d.key, kl)) { /* the same call twice: one node */
    dt__taskdef_clear(&d);
    return 0;
  }
  if (g->n == g->cap) {
    size_t ncap = g->cap ? g->cap * 2 : 16;
    dt__taskdef *nodes = dt__try_realloc(g->nodes, ncap * sizeof(*nodes));
    if (!nodes) goto nomem;
    g->nodes = nodes; /* the index's keys are the nodes' own strings: they stay */
    g->cap = ncap;
  }
  if (dt__client_map_room(&g->index, 1)) goto nomem;
  g->nodes[g->n] = d;
  dt__smap_put(&g->index, g->nodes[g->n].key, kl, (void *)(uintptr_t)(g->n + 1));
  g->n++;
  return 0;
nomem:
  dt_value_free(*ref_out);
  *ref_out = NULL;
  dt__taskdef_clear(&d);
  return dt__err(DT_ENOMEM, "dt_graph_add: out of memory");
}

/* sort: the nodes the outputs reach (the graph culled, as Dask does), in
 * an order where every dependency inside the graph comes before its
 * dependents (depth first, post order: a node after its dependencies),
 * into order[0..*ns), with pos1[node] = its position + 1 (0: not sent).
 * Creation order is such an order too, but a key given in opts.key may
 * name a node added later; sorting makes it hold whatever the keys, and
 * lets a big graph go in slices that only name earlier slices (slices.c).
 * A dependency cycle (possible only through such keys) keeps its back
 * edge: the scheduler fails the task (one message, or a later slice, as it
 * would fail the unknown key).  DT_ENOMEM, or 0. */
static int sort(dt_graph *g, dt_value *const *outputs, size_t n, dt__taskdef **order, size_t *pos1,
                size_t *ns) {
  struct frame { size_t node, next; } *st = NULL;
  size_t sp = 0, cap = 0, k = 0;
  uint8_t *seen = dt__try_calloc(g->n ? g->n : 1, 1);
  if (!seen) return DT_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const char *key = outputs[i]->u.fut.key;
    uintptr_t ix = (uintptr_t)dt__smap_get(&g->index, key, strlen(key));
    if (!ix || seen[ix - 1]) continue;
    seen[ix - 1] = 1;
    sp = 0;
    for (size_t node = ix - 1;;) { /* push node */
      if (sp == cap) {
        size_t ncap = cap ? 2 * cap : 64;
        struct frame *nst = dt__try_realloc(st, ncap * sizeof(*st));
        if (!nst) {
          rc = DT_ENOMEM;
          break;
        }
        st = nst;
        cap = ncap;
      }
      st[sp++] = (struct frame){node, 0};
      node = (size_t)-1;
      while (sp && node == (size_t)-1) {
        struct frame *f = &st[sp - 1];
        dt__taskdef *d = &g->nodes[f->node];
        if (f->next < d->deps.len) {
          const char *dk = d->deps.v[f->next++];
          uintptr_t j = (uintptr_t)dt__smap_get(&g->index, dk, strlen(dk));
          if (j && !seen[j - 1]) {
            seen[j - 1] = 1;
            node = j - 1; /* visit it next */
          }
          continue;
        }
        order[k] = d; /* its dependencies are all placed */
        pos1[f->node] = ++k;
        sp--;
      }
      if (node == (size_t)-1) break;
    }
  }
  free(st);
  free(seen);
  *ns = k;
  return rc;
}

int dt_graph_submit(dt_client *c, dt_graph *g, dt_value *const *outputs, size_t n,
                    dt_future **out) {
  dt__err_clear();
  if (!c || !g || (n && (!outputs || !out))) return dt__err(DT_EINVAL, "dt_graph_submit: NULL argument");
  for (size_t i = 0; i < n; i++) {
    out[i] = NULL;
    if (!outputs[i] || outputs[i]->type != DT_FUTURE)
      return dt__err(DT_EINVAL, "dt_graph_submit: output %zu is not a graph node", i);
  }
  size_t m = g->n ? g->n : 1, ns = 0;
  dt__taskdef **order = dt__try_malloc(m * sizeof(*order));
  size_t *pos1 = dt__try_calloc(m, sizeof(*pos1));
  uint8_t *want = dt__try_calloc(m, 1);
  const char **extra = dt__try_malloc((n ? n : 1) * sizeof(char *));
  int rc = order && pos1 && want && extra ? sort(g, outputs, n, order, pos1, &ns) : DT_ENOMEM;
  if (rc) {
    free(order);
    free(pos1);
    free(want);
    free(extra);
    return dt__err(DT_ENOMEM, "dt_graph_submit: out of memory");
  }
  pthread_mutex_lock(&c->lock);
  rc = dt__client_usable(c);
  size_t got = 0, nx = 0;
  for (; rc == 0 && got < n; got++) {
    bool created;
    const char *k = outputs[got]->u.fut.key;
    out[got] = dt__future_get(c, k, (uint32_t)strlen(k), &created);
    if (!out[got]) {
      rc = dt__err(DT_ENOMEM, "dt_graph_submit: out of memory");
      break;
    }
    if (!created) continue;
    uintptr_t ix = (uintptr_t)dt__smap_get(&g->index, k, strlen(k));
    if (ix && pos1[ix - 1]) want[pos1[ix - 1] - 1] = 1; /* wanted in its slice */
    else extra[nx++] = k;
  }
  if (rc) {
    dt__futures_undo(out, got);
    for (size_t i = 0; i < n; i++) out[i] = NULL;
    pthread_mutex_unlock(&c->lock);
  } else {
    dt__slicing s = {order, ns, want, extra, nx, &g->index, pos1};
    rc = dt__client_submit_sliced(c, &s, out, n); /* unlocks */
  }
  free(order);
  free(pos1);
  free(want);
  free(extra);
  return rc;
}
