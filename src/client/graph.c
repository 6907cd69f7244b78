/*
 * graph.c -- lazily built task graphs (like dask.delayed), submitted in one
 * UPDATE_GRAPH message with only the nodes the outputs need.
 */
#include <stdlib.h>
#include <string.h>

#include "client.h"

struct dt_graph {
  dt__taskdef *nodes;
  size_t n, cap;
  dt_smap index; /* key -> node index + 1 */
};

dt_graph *dt_graph_new(void) {
  dt_graph *g = dt__xcalloc(1, sizeof(*g));
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
  if (dt__smap_get(&g->index, d.key, kl)) { /* the same call twice: one node */
    *ref_out = dt__future_ref_value(d.key, NULL);
    dt__taskdef_clear(&d);
    return *ref_out ? 0 : DT_ENOMEM;
  }
  if (g->n == g->cap) {
    g->cap = g->cap ? g->cap * 2 : 16;
    g->nodes = dt__xrealloc(g->nodes, g->cap * sizeof(*g->nodes));
    /* keys moved: rebuild the index */
    dt__smap_destroy(&g->index);
    dt__smap_init(&g->index);
    for (size_t i = 0; i < g->n; i++)
      dt__smap_put(&g->index, g->nodes[i].key, strlen(g->nodes[i].key), (void *)(uintptr_t)(i + 1));
  }
  g->nodes[g->n] = d;
  dt__smap_put(&g->index, g->nodes[g->n].key, kl, (void *)(uintptr_t)(g->n + 1));
  g->n++;
  *ref_out = dt__future_ref_value(d.key, NULL);
  return *ref_out ? 0 : DT_ENOMEM;
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
  bool *need = dt__xcalloc(g->n ? g->n : 1, sizeof(bool));
  dt_vec stack = {0};
  for (size_t i = 0; i < n; i++) {
    uintptr_t ix = (uintptr_t)dt__smap_get(&g->index, outputs[i]->u.fut.key, strlen(outputs[i]->u.fut.key));
    if (ix) dt__vec_push(&stack, (void *)ix);
  }
  while (stack.len) {
    uintptr_t ix = (uintptr_t)stack.v[--stack.len];
    if (need[ix - 1]) continue;
    need[ix - 1] = true;
    dt__taskdef *d = &g->nodes[ix - 1];
    for (size_t k = 0; k < d->deps.len; k++) {
      uintptr_t j = (uintptr_t)dt__smap_get(&g->index, d->deps.v[k], strlen(d->deps.v[k]));
      if (j && !need[j - 1]) dt__vec_push(&stack, (void *)j);
    }
  }
  dt__vec_free(&stack);
  /* nodes in creation order are in dependency order */
  dt__taskdef *send = dt__xmalloc((g->n ? g->n : 1) * sizeof(*send));
  size_t ns = 0;
  for (size_t i = 0; i < g->n; i++)
    if (need[i]) send[ns++] = g->nodes[i];
  free(need);
  const char **wanted = dt__xmalloc((n ? n : 1) * sizeof(char *));
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  if (rc == 0) {
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
      bool created;
      const char *k = outputs[i]->u.fut.key;
      out[i] = dt__future_get(c, k, (uint32_t)strlen(k), &created);
      if (created) wanted[nw++] = k;
    }
    dt__client_send_graph(c, send, ns, wanted, nw);
  }
  pthread_mutex_unlock(&c->lock);
  free(wanted);
  free(send);
  return rc;
}
