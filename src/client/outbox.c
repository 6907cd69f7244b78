/*
 * outbox.c -- room taken before a user thread changes anything: entries in
 * the client's vectors and maps, and whole messages in a connection's write
 * buffer, so that an API call out of memory fails with DT_ENOMEM before it
 * has half done its work (see client.h, "Out of memory").
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "../proto/alloc.h"

int dt__client_vec_room(dt_vec *a, size_t extra) {
  if (extra <= a->cap - a->len) return 0;
  if (extra > ((size_t)-1 >> 4) - a->len) return DT_ENOMEM;
  size_t ncap = a->cap ? a->cap : 4;
  while (ncap < a->len + extra) ncap *= 2;
  void **v = dt__try_realloc(a->v, ncap * sizeof(*v));
  if (!v) return DT_ENOMEM;
  a->v = v;
  a->cap = ncap;
  return 0;
}

/* Rebuilt into a table big enough that extra more keys keep it under
 * map.c's load factor (at most 80% full), where dt__smap_put does not
 * grow it. */
int dt__client_map_room(dt_smap *m, size_t extra) {
  if (extra == 0 || (m->len + extra) * 5 <= m->cap * 4) return 0;
  if (extra > ((size_t)-1 >> 4) - m->len) return DT_ENOMEM;
  size_t ncap = m->cap ? m->cap : 16;
  while ((m->len + extra) * 5 > ncap * 4) ncap *= 2;
  dt_map_slot *slots = dt__try_calloc(ncap, sizeof(*slots));
  if (!slots) return DT_ENOMEM;
  dt_smap n = {slots, ncap, 0};
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i].key) dt__smap_put(&n, m->slots[i].key, m->slots[i].klen, m->slots[i].val);
  free(m->slots);
  *m = n;
  return 0;
}

enum { MSG_HDR = 5 + 9 }; /* dt__e_begin: the message's array header and op */

int dt__client_begin(dt__msg_out *o, dt_conn *conn, int op, size_t bytes, uint32_t nframes) {
  dt_wbuf *w = dt__conn_out(conn);
  if (bytes > ((size_t)-1 >> 2) || dt__wbuf_try_reserve(w, bytes + MSG_HDR, nframes) != 0)
    return DT_ENOMEM;
  o->cap = w->cap;
  o->fcap = w->fcap;
  dt__e_begin(&o->e, w, op);
  return 0;
}

void dt__client_end(dt__msg_out *o) {
  dt__e_end(&o->e);
  /* the reservation held: nothing grew (so nothing could have failed) */
  assert(o->e.w->cap == o->cap && o->e.w->fcap == o->fcap);
}

int dt__client_send_key(dt_client *c, int op, const char *key, uint32_t klen) {
  dt__msg_out o;
  if (dt__client_begin(&o, c->sched, op, DT__WB_LIST + DT__WB_STR(klen), 0)) return DT_ENOMEM;
  dt__e_list(&o.e, 1);
  dt__e_str(&o.e, key, klen);
  dt__client_end(&o);
  return 0;
}
