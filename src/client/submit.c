/*
 * submit.c -- sending work: task definitions (a call's function, encoded
 * arguments, dependencies and options) with their keys, one UPDATE_GRAPH
 * per call, dt_client_submit and dt_client_map.  User threads only: out of
 * memory gives DT_ENOMEM with nothing sent (see client.h).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "../proto/alloc.h"
#include "../task/task.h"

/* ---------------------------------------------------------------- keys */

void dt__client_hash(uint64_t *h1, uint64_t *h2, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    *h1 = (*h1 ^ b[i]) * 1099511628211ull;
    *h2 = (*h2 ^ b[i]) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
  }
}

static int check_futures(dt_client *c, const dt_value *v) {
  if (!v) return 0;
  switch (v->type) {
  case DT_FUTURE:
    if (v->u.fut.fut && v->u.fut.fut->client != c) {
      if (!v->u.fut.fut->client)
        return dt__err(DT_ECLOSED, "future '%s' belongs to a closed client", v->u.fut.key);
    }
    return 0;
  case DT_LIST:
    for (size_t i = 0; i < v->u.list.len; i++) {
      int rc = check_futures(c, v->u.list.items[i]);
      if (rc) return rc;
    }
    return 0;
  case DT_MAP:
    for (size_t i = 0; i < v->u.map.len; i++) {
      int rc = check_futures(c, v->u.map.vals[i]);
      if (rc) return rc;
    }
    return 0;
  default: return 0;
  }
}

/* make_key: "func-" and 32 hex digits, without printf; NULL when out of memory */
static char *make_key(const char *func, uint64_t h1, uint64_t h2) {
  static const char hex[] = "0123456789abcdef";
  size_t fl = strlen(func);
  char *k = dt__try_malloc(fl + 34);
  if (!k) return NULL;
  memcpy(k, func, fl);
  k[fl] = '-';
  char *p = k + fl + 1;
  for (int i = 15; i >= 0; i--) *p++ = hex[(h1 >> (4 * i)) & 15];
  for (int i = 15; i >= 0; i--) *p++ = hex[(h2 >> (4 * i)) & 15];
  *p = '\0';
  return k;
}

/* splitmix64: a unique-looking 64-bit number per counter value */
static uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/* ---------------------------------------------------------------- task definitions */

/* copy_deps: owned copies of the dependency keys (borrowed from the call) */
static int copy_deps(dt__taskdef *out, const dt_vec *deps) {
  if (dt__client_vec_room(&out->deps, deps->len)) return DT_ENOMEM;
  for (size_t i = 0; i < deps->len; i++) {
    char *d = dt__try_strdup(deps->v[i]);
    if (!d) return DT_ENOMEM;
    dt__vec_push(&out->deps, d);
  }
  return 0;
}

/* task_key: the key given, a fresh one (pure = DT_NO), or one hashed from
 * the function and its encoded arguments; NULL when out of memory */
static char *task_key(const char *func, const dt_submit_opts *opts, const dt_payload *spec) {
  if (opts && opts->key) return dt__try_strdup(opts->key);
  if (opts && opts->pure == DT_NO) {
    /* a fresh key: a per-process random seed (taken once) and a counter */
    static _Atomic uint64_t seed, counter;
    if (!seed) {
      uint64_t s = mix64(dt__now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&s);
      uint64_t zero = 0;
      atomic_compare_exchange_strong(&seed, &zero, s | 1);
    }
    uint64_t n = ++counter;
    return make_key(func, mix64(seed ^ n), mix64(seed + n * 0x9E3779B97F4A7C15ull));
  }
  uint64_t h1 = 14695981039346656037ull, h2 = 0x84222325cbf29ce4ull;
  dt__client_hash(&h1, &h2, func, strlen(func) + 1);
  dt__client_hash(&h1, &h2, spec->body, spec->len);
  for (uint32_t i = 0; i < spec->nframes; i++)
    dt__client_hash(&h1, &h2, spec->frames[i].p, spec->frames[i].len);
  return make_key(func, h1, h2);
}

/* copy_opts: the options, with owned copies of the worker names */
static int copy_opts(dt__taskdef *out, const dt_submit_opts *opts) {
  if (opts) out->opts = *opts;
  out->opts.key = NULL;
  out->opts.resources = NULL; /* parsed into res_names/res_amounts */
  out->opts.workers = NULL;
  out->opts.n_workers = 0;
  if (!opts || !opts->n_workers) return 0;
  char **ws = dt__try_calloc(opts->n_workers, sizeof(char *));
  if (!ws) return DT_ENOMEM;
  out->opts.workers = (const char *const *)ws;
  out->opts.n_workers = opts->n_workers; /* NULL entries until copied: cleared fine */
  for (size_t i = 0; i < opts->n_workers; i++)
    if (!(ws[i] = dt__try_strdup(opts->workers[i] ? opts->workers[i] : ""))) return DT_ENOMEM;
  return 0;
}

/* taskdef_make: dt__taskdef_make; shared_func (or NULL): func's copy made
 * for an earlier definition, which outlives this one (dt_client_map) */
static int taskdef_make(dt_client *c, const char *func, char *shared_func, dt_value *args,
                        dt_value *kwargs, const dt_submit_opts *opts, dt__taskdef *out);

int dt__taskdef_make(dt_client *c, const char *func, dt_value *args, dt_value *kwargs,
                     const dt_submit_opts *opts, dt__taskdef *out) {
  return taskdef_make(c, func, NULL, args, kwargs, opts, out);
}

static int taskdef_make(dt_client *c, const char *func, char *shared_func, dt_value *args,
                        dt_value *kwargs, const dt_submit_opts *opts, dt__taskdef *out) {
  memset(out, 0, sizeof(*out));
  int rc = 0;
  if (!func || !*func || strlen(func) > 256)
    rc = dt__err(DT_EINVAL, "task function name is empty or longer than 256 bytes");
  else if (args && args->type != DT_LIST)
    rc = dt__err(DT_EINVAL, "args of %s must be a list, not %s", func, dt_type_name(args->type));
  else if (kwargs && kwargs->type != DT_MAP)
    rc = dt__err(DT_EINVAL, "kwargs of %s must be a map, not %s", func,
                 dt_type_name(kwargs->type));
  else if (opts && opts->key && (!*opts->key || strlen(opts->key) > DT_MAX_KEY))
    rc = dt__err(DT_EINVAL, "key must be 1 to %d bytes", DT_MAX_KEY);
  else if (opts && opts->retries < 0)
    rc = dt__err(DT_EINVAL, "retries must be >= 0");
  else if (opts && !(opts->timeout >= 0 && opts->timeout < 1e9))
    rc = dt__err(DT_EINVAL, "timeout must be >= 0 seconds (0: no limit)");
  else if (opts && opts->resources)
    rc = dt__resources_parse(opts->resources, &out->res_names, &out->res_amounts, &out->nres);
  if (rc) {
    dt_value_free(args);
    dt_value_free(kwargs);
    return rc;
  }
  dt_value *call = dt_list_of(2, args ? args : dt_list_new(), kwargs ? kwargs : dt_map_new());
  if (!call) {
    dt__taskdef_clear(out);
    return dt__err(DT_ENOMEM, "out of memory");
  }
  if (c && (rc = check_futures(c, call)) != 0) {
    dt_value_free(call);
    dt__taskdef_clear(out);
    return rc;
  }
  dt_vec deps = {0};
  rc = dt__payload_encode(call, &out->spec, &deps);
  if (rc == 0 && copy_deps(out, &deps) != 0)
    rc = dt__err(DT_ENOMEM, "out of memory defining a task of %s", func);
  dt__vec_free(&deps);
  dt_value_free(call);
  if (rc) {
    dt__taskdef_clear(out);
    return rc;
  }
  out->func = shared_func ? shared_func : dt__try_strdup(func);
  out->func_shared = shared_func != NULL;
  if (!out->func || !(out->key = task_key(func, opts, &out->spec)) ||
      copy_opts(out, opts) != 0) {
    dt__taskdef_clear(out);
    return dt__err(DT_ENOMEM, "out of memory defining a task of %s", func);
  }
  return 0;
}

void dt__taskdef_clear(dt__taskdef *t) {
  free(t->key);
  if (!t->func_shared) free(t->func);
  dt__payload_clear(&t->spec);
  for (size_t i = 0; i < t->deps.len; i++) free(t->deps.v[i]);
  dt__vec_free(&t->deps);
  for (size_t i = 0; i < t->opts.n_workers; i++) free((char *)t->opts.workers[i]);
  free((void *)t->opts.workers);
  dt__resources_free(t->res_names, t->res_amounts, t->nres);
  memset(t, 0, sizeof(*t));
}

/* ---------------------------------------------------------------- UPDATE_GRAPH */

/* dt__taskdef_bound: see client.h */
size_t dt__taskdef_bound(const dt__taskdef *t) {
  size_t b = DT__WB_LIST + DT__WB_STR(strlen(t->key)) + DT__WB_STR(strlen(t->func)) +
             DT__WB_PAYLOAD(&t->spec) + 3 * DT__WB_LIST + 3 * DT__WB_NUM + DT__WB_BOOL; /* priority, retries, timeout */
  for (size_t k = 0; k < t->deps.len; k++) b += DT__WB_STR(strlen(t->deps.v[k]));
  for (size_t k = 0; k < t->opts.n_workers; k++) b += DT__WB_STR(strlen(t->opts.workers[k]));
  for (uint32_t k = 0; k < t->nres; k++) b += DT__WB_STR(strlen(t->res_names[k])) + DT__WB_NUM;
  return b;
}

void dt__taskdef_enc(dt_enc *e, const dt__taskdef *t) {
  dt__e_rec(e);
  dt__e_cstr(e, t->key);
  dt__e_cstr(e, t->func);
  dt__e_payload(e, &t->spec);
  dt__e_list(e, (uint32_t)t->deps.len);
  for (size_t k = 0; k < t->deps.len; k++) dt__e_cstr(e, t->deps.v[k]);
  dt__e_int(e, t->opts.priority);
  dt__e_int(e, t->opts.retries);
  dt__e_list(e, (uint32_t)t->opts.n_workers);
  for (size_t k = 0; k < t->opts.n_workers; k++) dt__e_cstr(e, t->opts.workers[k]);
  dt__e_bool(e, t->opts.allow_other_workers);
  dt__e_map(e, t->nres);
  for (uint32_t k = 0; k < t->nres; k++) {
    dt__e_cstr(e, t->res_names[k]);
    dt__e_double(e, t->res_amounts[k]);
  }
  dt__e_double(e, t->opts.timeout > 0 ? t->opts.timeout : 0);
}

void dt__taskdef_write(dt_wbuf *w, const dt__taskdef *t) {
  dt__wb_array(w, dt__recs[DT_REC_task].arity);
  dt__wb_cstr(w, t->key);
  dt__wb_cstr(w, t->func);
  dt__wb_payload(w, &t->spec);
  dt__wb_array(w, (uint32_t)t->deps.len);
  for (size_t k = 0; k < t->deps.len; k++) dt__wb_cstr(w, t->deps.v[k]);
  dt__wb_int(w, t->opts.priority);
  dt__wb_int(w, t->opts.retries);
  dt__wb_array(w, (uint32_t)t->opts.n_workers);
  for (size_t k = 0; k < t->opts.n_workers; k++) dt__wb_cstr(w, t->opts.workers[k]);
  dt__wb_bool(w, t->opts.allow_other_workers);
  dt__wb_map(w, t->nres);
  for (uint32_t k = 0; k < t->nres; k++) {
    dt__wb_cstr(w, t->res_names[k]);
    dt__wb_double(w, t->res_amounts[k]);
  }
  dt__wb_double(w, t->opts.timeout > 0 ? t->opts.timeout : 0);
}

/* graph_bound: the most bytes dt__client_send_graph writes, header aside */
static size_t graph_bound(dt__taskdef *const *tasks, size_t n, const char **wanted, size_t nwanted,
                          uint32_t *nframes) {
  size_t b = 2 * DT__WB_LIST;
  *nframes = 0;
  for (size_t i = 0; i < n; i++) {
    b += dt__taskdef_bound(tasks[i]);
    *nframes += tasks[i]->spec.nframes;
  }
  for (size_t i = 0; i < nwanted; i++) b += DT__WB_STR(strlen(wanted[i]));
  return b;
}

int dt__client_send_graph(dt_client *c, dt__taskdef *const *tasks, size_t n, const char **wanted,
                          size_t nwanted) {
  uint32_t nframes;
  size_t bytes = graph_bound(tasks, n, wanted, nwanted, &nframes);
  dt__msg_out o;
  if (dt__client_begin(&o, c->sched, DT_OP_UPDATE_GRAPH, bytes, nframes))
    return dt__err(DT_ENOMEM, "out of memory sending %zu tasks", n);
  dt_enc *e = &o.e;
  dt__e_list(e, (uint32_t)n);
  /* the first task through the checked encoder (the layout checked against
   * msgs.h on every send), the others with the raw writers */
  for (size_t i = 0; i < n; i++) {
    if (i == 0) dt__taskdef_enc(e, tasks[i]);
    else dt__taskdef_write(e->w, tasks[i]);
  }
  if (n > 1) dt__e_elems_raw(e, (uint32_t)(n - 1));
  dt__e_list(e, (uint32_t)nwanted);
  for (size_t i = 0; i < nwanted; i++) { /* the same: the first key checked */
    if (i == 0) dt__e_cstr(e, wanted[i]);
    else dt__wb_cstr(e->w, wanted[i]);
  }
  if (nwanted > 1) dt__e_elems_raw(e, (uint32_t)(nwanted - 1));
  dt__client_end(&o);
  dt__client_wake(c);
  if (dt__task_current && c->task_client) dt__task_current->submitted = true;
  return 0;
}

/* ---------------------------------------------------------------- submit, map */

/* submit n prepared tasks (in one message, or in slices when many: see
 * slices.c); futures for each (all or none) */
static int submit_defs(dt_client *c, dt__taskdef *defs, size_t n, dt_future **out) {
  dt__taskdef **send = dt__try_malloc((n ? n : 1) * sizeof(*send));
  if (!send) return dt__err(DT_ENOMEM, "out of memory submitting %zu tasks", n);
  pthread_mutex_lock(&c->lock);
  int rc = dt__client_usable(c);
  size_t got = 0, nt = 0;
  for (; rc == 0 && got < n; got++) {
    bool created;
    out[got] = dt__future_get(c, defs[got].key, (uint32_t)strlen(defs[got].key), &created);
    if (!out[got]) {
      rc = dt__err(DT_ENOMEM, "out of memory submitting %zu tasks", n);
      break;
    }
    if (created) send[nt++] = &defs[got]; /* and wanted: want = NULL below */
  }
  if (rc) {
    dt__futures_undo(out, got);
    for (size_t i = 0; i < n; i++) out[i] = NULL;
    pthread_mutex_unlock(&c->lock);
  } else {
    rc = dt__client_submit_sliced(c, &(dt__slicing){send, nt, NULL, NULL, 0, NULL, NULL}, out, n);
  }
  free(send);
  return rc;
}

int dt_client_submit(dt_client *c, const char *func, dt_value *args, dt_value *kwargs,
                     const dt_submit_opts *opts, dt_future **out) {
  dt__err_clear();
  if (!c || !out) {
    dt_value_free(args);
    dt_value_free(kwargs);
    return dt__err(DT_EINVAL, "dt_client_submit: client or out is NULL");
  }
  *out = NULL;
  dt__taskdef d;
  int rc = dt__taskdef_make(c, func, args, kwargs, opts, &d);
  if (rc) return rc;
  rc = submit_defs(c, &d, 1, out);
  dt__taskdef_clear(&d);
  return rc;
}

int dt_client_map(dt_client *c, const char *func, dt_value *const *arg_lists, size_t n,
                  const dt_submit_opts *opts, dt_future **out) {
  dt__err_clear();
  int rc = 0;
  if (!c || !out || (n && !arg_lists)) rc = dt__err(DT_EINVAL, "dt_client_map: NULL argument");
  else if (opts && opts->key) rc = dt__err(DT_EINVAL, "dt_client_map: opts.key must be NULL");
  if (rc) {
    for (size_t i = 0; arg_lists && i < n; i++) dt_value_free(arg_lists[i]);
    return rc;
  }
  for (size_t i = 0; i < n; i++) out[i] = NULL;
  dt__taskdef *defs = dt__try_calloc(n ? n : 1, sizeof(*defs));
  if (!defs) {
    for (size_t i = 0; i < n; i++) dt_value_free(arg_lists[i]);
    return dt__err(DT_ENOMEM, "dt_client_map: out of memory");
  }
  size_t made = 0;
  for (; made < n; made++) {
    /* one copy of the function name for the whole map: defs[0]'s, cleared last */
    rc = taskdef_make(c, func, made ? defs[0].func : NULL, arg_lists[made], NULL, opts, &defs[made]);
    if (rc) break;
  }
  if (rc) {
    for (size_t i = made + 1; i < n; i++) dt_value_free(arg_lists[i]);
  } else {
    rc = submit_defs(c, defs, n, out);
  }
  for (size_t i = made; i-- > 0;) dt__taskdef_clear(&defs[i]); /* defs[0] (the function name) last */
  free(defs);
  if (rc)
    for (size_t i = 0; i < n; i++) out[i] = NULL;
  return rc;
}
