/*
 * graph.c -- lazily built task graphs (like dask.delayed), submitted in one
 * UPDATE_GRAPH message with only the nodes the outputs need.  Out of memory
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

/* need_push: a node to visit; DT_ENOMEM when the stack cannot grow */
static int need_push(dt_vec *stack, uintptr_t ix) {
  if (dt__client_vec_room(stack, 1)) return DT_ENOMEM;
  dt__vec_push(stack, (void *)ix);
  return 0;
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
  /* cull: mark the nodes the outputs reach */
  bool *need = dt__try_calloc(g->n ? g->n : 1, sizeof(bool));
  dt__taskdef *send = dt__try_malloc((g->n ? g->n : 1) * sizeof(*send));
  const char **wanted = dt__try_malloc((n ? n : 1) * sizeof(char *));
  dt_vec stack = {0};
  int rc = need && send && wanted ? 0 : DT_ENOMEM;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const char *k = outputs[i]->u.fut.key;
    uintptr_t ix = (uintptr_t)dt__smap_get(&g->index, k, strlen(k));
    if (ix) rc = need_push(&stack, ix);
  }
  while (stack.len && rc == 0) {
    uintptr_t ix = (uintptr_t)stack.v[--stack.len];
    if (need[ix - 1]) continue;
    need[ix - 1] = true;
    dt__taskdef *d = &g->nodes[ix - 1];
    for (size_t k = 0; k < d->deps.len && rc == 0; k++) {
      uintptr_t j = (uintptr_t)dt__smap_get(&g->index, d->deps.v[k], strlen(d->deps.v[k]));
      if (j && !need[j - 1]) rc = need_push(&stack, j);
    }
  }
  dt__vec_free(&stack);
  if (rc) {
    free(need);
    free(send);
    free(wanted);
    return dt__err(DT_ENOMEM, "dt_graph_submit: out of memory");
  }
  /* nodes in creation order are in dependency order */
  size_t ns = 0;
  for (size_t i = 0; i < g->n; i++)
    if (need[i]) send[ns++] = g->nodes[i];
  free(need);
  pthread_mutex_lock(&c->lock);
  rc = dt__client_usable(c);
  size_t got = 0, nw = 0;
  for (; rc == 0 && got < n; got++) {
    bool created;
    const char *k = outputs[got]->u.fut.key;
    out[got] = dt__future_get(c, k, (uint32_t)strlen(k), &created);
    if (!out[got]) {
      rc = dt__err(DT_ENOMEM, "dt_graph_submit: out of memory");
      break;
    }
    if (created) wanted[nw++] = k;
  }
  if (rc == 0) rc = dt__client_send_graph(c, send, ns, wanted, nw);
  if (rc) {
    dt__futures_undo(out, got);
    for (size_t i = 0; i < n; i++) out[i] = NULL;
  }
  pthread_mutex_unlock(&c->lock);
  free(wanted);
  free(send);
  return rc;
}
