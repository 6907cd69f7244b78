/*
 * plugins.c -- the worker plugins the scheduler keeps (Dask's
 * register_plugin / unregister_worker_plugin, and upload_file, which is a
 * plugin): a client's PLUGIN_ADD is kept (a plugin of the same name is
 * replaced) and sent as PLUGIN to every worker now; every worker that
 * registers later gets each kept plugin right after its WELCOME, before
 * any COMPUTE_TASK.  PLUGIN_REMOVE forgets it and sends the removal to
 * every worker.  The scheduler never looks inside a plugin's bytes.  At
 * most DT_PLUGIN_MAX plugins of DT_PLUGIN_MAX_BYTES each (msgs.h): past
 * that a PLUGIN_ADD is refused with a warning in the log (the client
 * checks the size first; its register_plugin then sees no worker install
 * it).  Plugins outlive the clients that registered them, as in Dask; they
 * are freed when the scheduler stops.
 */
#include <stdlib.h>
#include <string.h>

#include "server.h"

static dt_srv *const srv = &dt__srv;

typedef struct {
  char *name, *func;
  void *data;
  size_t len;
} s_plugin;

static dt_vec plugins; /* s_plugin*, in registration order */

static void send_plugin(dt_conn *c, dt_sv name, dt_sv func, const void *data, size_t len,
                        bool remove) {
  dt_enc e;
  dt__e_begin(&e, dt__conn_out(c), DT_OP_PLUGIN);
  dt__e_str(&e, name.p, name.len);
  dt__e_str(&e, func.p, func.len);
  dt__e_bin(&e, data ? data : "", len);
  dt__e_bool(&e, remove);
  dt__e_end(&e);
}

static void broadcast(dt_sv name, dt_sv func, dt_sv data, bool remove) {
  for (size_t i = 0; i < srv->s.workers.len; i++) {
    s_worker *w = srv->s.workers.v[i];
    if (w->gone || w->closing || !w->conn) continue;
    send_plugin(w->conn, name, func, data.p, data.len, remove);
  }
}

static bool check(const dt_sv *name, const dt_sv *func, const dt_sv *data) {
  return name->len > 0 && name->len <= DT_PLUGIN_MAX_NAME && func->len > 0 &&
         func->len <= DT_PLUGIN_MAX_NAME && data->len <= DT_PLUGIN_MAX_BYTES &&
         !memchr(name->p, 0, name->len) && !memchr(func->p, 0, func->len);
}

static size_t find(dt_sv name) {
  for (size_t i = 0; i < plugins.len; i++) {
    s_plugin *p = plugins.v[i];
    if (strlen(p->name) == name.len && memcmp(p->name, name.p, name.len) == 0) return i;
  }
  return SIZE_MAX;
}

static void plugin_free(s_plugin *p) {
  free(p->name);
  free(p->func);
  free(p->data);
  free(p);
}

int dt__on_plugin_add(dt_conn *c, const dt_msg *msg) {
  const dt_msg_PLUGIN_ADD *m = &msg->PLUGIN_ADD;
  dt_sv data = {m->data.p, m->data.len};
  if (!check(&m->name, &m->func, &data)) return DT_EPROTO;
  size_t at = find(m->name);
  if (at == SIZE_MAX && plugins.len >= DT_PLUGIN_MAX) {
    DT_WARN("client %s: plugin '%.*s' refused: %d plugins kept already", c->peer,
            (int)m->name.len, m->name.p, DT_PLUGIN_MAX);
    return 0;
  }
  s_plugin *p = dt__xcalloc(1, sizeof(*p));
  p->name = dt__xstrndup(m->name.p, m->name.len);
  p->func = dt__xstrndup(m->func.p, m->func.len);
  p->len = data.len;
  p->data = dt__xmalloc(data.len ? data.len : 1);
  if (data.len) memcpy(p->data, data.p, data.len);
  if (at != SIZE_MAX) {
    plugin_free(plugins.v[at]);
    plugins.v[at] = p;
  } else {
    dt__vec_push(&plugins, p);
  }
  DT_INFO("plugin '%s' (%zu bytes, %s) registered by client %s", p->name, p->len, p->func, c->peer);
  broadcast(m->name, m->func, data, false);
  return 0;
}

int dt__on_plugin_remove(dt_conn *c, const dt_msg *msg) {
  const dt_msg_PLUGIN_REMOVE *m = &msg->PLUGIN_REMOVE;
  dt_sv data = {m->data.p, m->data.len};
  if (!check(&m->name, &m->func, &data)) return DT_EPROTO;
  size_t at = find(m->name);
  if (at == SIZE_MAX) {
    DT_INFO("client %s: no plugin '%.*s' to remove", c->peer, (int)m->name.len, m->name.p);
    return 0;
  }
  plugin_free(plugins.v[at]);
  memmove(&plugins.v[at], &plugins.v[at + 1], (plugins.len - at - 1) * sizeof(void *));
  plugins.len--;
  broadcast(m->name, m->func, data, true);
  return 0;
}

void dt__srv_plugins_welcome(dt_conn *c) {
  for (size_t i = 0; i < plugins.len; i++) {
    s_plugin *p = plugins.v[i];
    dt_sv name = {p->name, (uint32_t)strlen(p->name)}, func = {p->func, (uint32_t)strlen(p->func)};
    send_plugin(c, name, func, p->data, p->len, false);
  }
}

void dt__srv_plugins_free(void) {
  for (size_t i = 0; i < plugins.len; i++) plugin_free(plugins.v[i]);
  dt__vec_free(&plugins);
}
