/*
 * fetch.c -- getting dependencies from the peer workers that hold them.
 * One fetch per key, whatever the number of tasks waiting for it: GET_DATA
 * goes to the first address the scheduler named (ourselves skipped), over
 * one connection per peer; DATA brings the value, or, from a peer on the
 * same host (same boot id) and for large bytes, the name of shared memory
 * we map instead.  When a peer lacks the key or its connection closes, the
 * next address is tried; when none is left, the scheduler hears
 * MISSING_DATA for every waiting task and those tasks are dropped (it will
 * place them again).  ACQUIRE uses the same fetches to take over the
 * results of a retiring worker.
 *
 * A peer that stops answering (a stopped process keeps its connections
 * open) must not stall what waits for it: a peer connection with fetches
 * in flight and no bytes for dt__fetch_timeout_s is closed (its fetches
 * fail over as when it closes), and WORKER_GONE from the scheduler closes
 * the connection to a removed worker at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_int.h"

typedef struct w_fetch {
  char *key;
  uint32_t klen;
  char **addrs;
  uint32_t naddrs, tried;
  dt_vec waiters; /* w_task* */
  uint64_t req;
  struct w_peer *peer;
  bool keep;       /* ACQUIRE: keep it (a retiring worker's result) */
  bool no_shm;     /* the peer's shared memory could not be used: TCP */
  uint64_t source; /* ... and tell the scheduler, naming that worker */
  double sent_at;  /* wall clock of the last GET_DATA (the transfer log) */
} w_fetch;

/* a connection we opened to a peer worker, to fetch */
typedef struct w_peer {
  char *addr;
  dt_conn *conn;
  dt_vec fetches; /* in flight on this connection */
} w_peer;

static struct {
  dt_smap fetches; /* key -> w_fetch */
  dt_smap peers;   /* address -> w_peer */
  uint64_t next_req;
  uv_timer_t timer; /* fetch timeouts */
  bool timer_on;
} F;

double dt__fetch_timeout_s = 60;

/* on_timer: peers silent for the fetch timeout while we wait for them are
 * given up.  O(peers) a second. */
static void on_timer(uv_timer_t *h) {
  (void)h;
  uint64_t now = uv_now(&dt__worker.loop), limit = (uint64_t)(dt__fetch_timeout_s * 1000);
  dt_vec stale = {0};
  for (size_t k = 0; k < F.peers.cap; k++) {
    if (!F.peers.slots[k].key) continue;
    w_peer *p = F.peers.slots[k].val;
    if (p->fetches.len && now - p->conn->rx_ms > limit) dt__vec_push(&stale, p);
  }
  for (size_t i = 0; i < stale.len; i++) {
    w_peer *p = stale.v[i];
    DT_WARN("peer %s sent nothing for %.1f s (fetch timeout) while %zu fetch(es) waited: giving it up",
            p->addr, (double)(now - p->conn->rx_ms) / 1e3, p->fetches.len);
    dt__conn_close(p->conn, false);
  }
  dt__vec_free(&stale);
}

void dt__fetch_peer_gone(const char *addr) {
  w_peer *p = dt__smap_get(&F.peers, addr, (uint32_t)strlen(addr));
  if (!p) return;
  if (p->fetches.len) DT_INFO("worker %s was removed: %zu fetch(es) from it fail over", addr, p->fetches.len);
  dt__conn_close(p->conn, false);
}

static const dt_conn_cbs peer_cbs;

static w_fetch *fetch_new(const char *key, uint32_t klen, uint32_t naddrs) {
  w_fetch *f = dt__xcalloc(1, sizeof(*f));
  f->key = dt__xstrndup(key, klen);
  f->klen = klen;
  f->addrs = dt__xcalloc(naddrs ? naddrs : 1, sizeof(char *));
  dt__smap_put(&F.fetches, f->key, f->klen, f);
  return f;
}

static void fetch_free(w_fetch *f) {
  free(f->key);
  for (uint32_t i = 0; i < f->naddrs; i++) free(f->addrs[i]);
  free(f->addrs);
  dt__vec_free(&f->waiters);
  free(f);
}

static void fetch_done(w_fetch *f) {
  dt__smap_del(&F.fetches, f->key, f->klen);
  fetch_free(f);
}

void dt__fetch_forget_task(w_task *t) {
  for (size_t k = 0; k < F.fetches.cap; k++)
    if (F.fetches.slots[k].key) dt__vec_remove(&((w_fetch *)F.fetches.slots[k].val)->waiters, t);
}

/* every address failed: tell the scheduler, drop the waiting tasks */
static void fetch_fail_all(w_fetch *f) {
  if (f->keep) dt__link_acquired(f->key, f->klen, 0, false, f->source);
  for (size_t i = 0; i < f->waiters.len; i++) {
    w_task *t = f->waiters.v[i];
    if (!dt__smap_get(&dt__exec.tasks, t->key, t->klen)) continue;
    /* other fetches may list t too: make them forget it */
    t->nmissing = UINT32_MAX;
    dt__link_missing(t, f->key, f->klen, f->naddrs ? f->addrs[f->naddrs - 1] : "");
  }
  for (size_t i = 0; i < f->waiters.len; i++) {
    w_task *t = f->waiters.v[i];
    if (t->nmissing == UINT32_MAX && dt__smap_get(&dt__exec.tasks, t->key, t->klen) == t) {
      for (size_t k = 0; k < F.fetches.cap; k++) {
        if (!F.fetches.slots[k].key) continue;
        w_fetch *o = F.fetches.slots[k].val;
        if (o != f) dt__vec_remove(&o->waiters, t);
      }
      dt__exec_release_deps(t);
      dt__exec_forget(t);
    }
  }
}

static w_peer *peer_get(const char *addr) {
  w_peer *p = dt__smap_get(&F.peers, addr, (uint32_t)strlen(addr));
  if (p) return p;
  p = dt__xcalloc(1, sizeof(*p));
  p->addr = dt__xstrdup(addr);
  if (dt__conn_connect(&dt__worker.net, addr, &peer_cbs, p, &p->conn) != 0) {
    DT_WARN("cannot connect to peer %s: %s", addr, dt_last_error());
    free(p->addr);
    free(p);
    return NULL;
  }
  dt__smap_put(&F.peers, p->addr, (uint32_t)strlen(p->addr), p);
  return p;
}

/* fetch_send: ask the next address; none left: fail and free f */
static void fetch_send(w_fetch *f) {
  while (f->tried < f->naddrs) {
    const char *a = f->addrs[f->tried++];
    if (strcmp(a, dt__worker.address) == 0) continue;
    w_peer *p = peer_get(a);
    if (!p) continue;
    f->peer = p;
    f->req = ++F.next_req;
    if (!p->fetches.len) p->conn->rx_ms = uv_now(&dt__worker.loop); /* silence counts from now */
    if (!F.timer_on && dt__fetch_timeout_s > 0) {
      uint64_t every = (uint64_t)(dt__fetch_timeout_s * 1000 / 4);
      every = every < 100 ? 100 : every > 1000 ? 1000 : every;
      uv_timer_init(&dt__worker.loop, &F.timer);
      uv_timer_start(&F.timer, on_timer, every, every);
      uv_unref((uv_handle_t *)&F.timer);
      F.timer_on = true;
    }
    dt__vec_push(&p->fetches, f);
    f->sent_at = dt__transfer_now();
    dt_enc e;
    dt__e_begin(&e, dt__conn_out(p->conn), DT_OP_GET_DATA);
    dt__e_uint(&e, f->req);
    dt__e_list(&e, 1);
    dt__e_str(&e, f->key, f->klen);
    /* same host: memory, not TCP */
    dt__e_cstr(&e, f->no_shm || !dt__worker.boot_id[0] ? NULL : dt__worker.boot_id);
    dt__e_end(&e);
    return;
  }
  fetch_fail_all(f);
  fetch_done(f);
}

void dt__fetch_wait(const w_dep *d, w_task *t) {
  w_fetch *f = dt__smap_get(&F.fetches, d->key, d->klen);
  if (!f) {
    f = fetch_new(d->key, d->klen, d->naddrs);
    for (uint32_t k = 0; k < d->naddrs; k++) f->addrs[f->naddrs++] = dt__xstrdup(d->addrs[k]);
  }
  dt__vec_push(&f->waiters, t);
}

void dt__fetch_kick(const char *key, uint32_t klen) {
  w_fetch *f = dt__smap_get(&F.fetches, key, klen);
  if (f && !f->peer && f->tried == 0) fetch_send(f);
}

void dt__fetch_acquire(const char *key, uint32_t klen, dt_sv from, uint64_t source) {
  w_data *d = dt__store_get(key, klen);
  if (d) { /* a copy is here already */
    d->replica = false;
    dt__link_acquired(key, klen, d->nbytes, true, source);
    return;
  }
  w_fetch *f = dt__smap_get(&F.fetches, key, klen);
  if (!f) {
    f = fetch_new(key, klen, 1);
    f->addrs[f->naddrs++] = dt__xstrndup(from.p, from.len);
  }
  f->keep = true;
  f->source = source;
  if (!f->peer && f->tried == 0) fetch_send(f);
}

/* dep_arrived: v (consumed) came for key: hold it, wake its tasks */
static void dep_arrived(const char *key, uint32_t klen, dt_value *v) {
  w_fetch *f = dt__smap_get(&F.fetches, key, klen);
  w_data *d = dt__store_get(key, klen);
  if (!d) d = dt__store_put(key, klen, v, true);
  else dt_value_free(v);
  if (!f) {
    if (d->replica && d->users == 0) dt__store_del(d);
    return;
  }
  if (f->keep) { /* ours now: a retiring worker's result */
    d->replica = false;
    dt__link_acquired(key, klen, d->nbytes, true, f->source);
  }
  for (size_t i = 0; i < f->waiters.len; i++) {
    w_task *t = f->waiters.v[i];
    d->users++;
    if (--t->nmissing == 0) dt__exec_ready(t);
  }
  fetch_done(f);
  dt__exec_start();
}

static int on_data(dt_conn *c, const dt_msg *msg) {
  const dt_msg_DATA *m = &msg->DATA;
  w_peer *p = c->data;
  w_fetch *f = NULL;
  for (size_t i = 0; i < p->fetches.len && !f; i++)
    if (((w_fetch *)p->fetches.v[i])->req == m->req) f = p->fetches.v[i];
  if (f) dt__vec_remove(&p->fetches, f);
  dt_list items = m->items;
  dt_rec_data it;
  while (dt__next_data(&items, &it)) {
    const char *key = it.key.p;
    uint32_t klen = it.key.len;
    bool ours = f && f->klen == klen && memcmp(f->key, key, klen) == 0;
    if (it.found && it.shm.p) { /* shared memory on this host */
      if (it.shm.len >= 40 || it.shm_pid > INT32_MAX || it.shm_fd > INT32_MAX ||
          it.shm_offset > DT_MAX_FRAME || it.shm_len > DT_MAX_FRAME)
        return DT_EPROTO;
      char nm[40];
      snprintf(nm, sizeof(nm), "%.*s", (int)it.shm.len, it.shm.p);
      dt_blob *b = dt__blob_open_shared((int)it.shm_pid, (int)it.shm_fd, nm, it.shm_offset + it.shm_len);
      if (b) {
        if (ours) dt__transfer_log(false, f->sent_at, c->peer, key, klen, it.shm_len);
        dep_arrived(key, klen, dt__bytes_of_blob(b, b->data + it.shm_offset, it.shm_len));
      } else if (ours) {
        DT_INFO("cannot map %s's memory for %.*s: fetching it over TCP", c->peer, (int)klen, key);
        f->no_shm = true;
        if (f->tried > 0) f->tried--; /* the same peer again */
        fetch_send(f);
      }
    } else {
      dt_value *v = NULL;
      int rc = it.found ? dt__pref_decode(&it.value, &v) : DT_ENOTFOUND;
      if (rc == 0 && ours) dt__transfer_log(false, f->sent_at, c->peer, key, klen, dt__value_nbytes(v));
      if (rc == 0) dep_arrived(key, klen, v);
      else if (ours) fetch_send(f); /* next address, or fail */
    }
    if (ours) f = NULL; /* settled (and maybe freed): never look at it again */
  }
  return 0;
}

static int on_peer_msg(dt_conn *c, int op, uint32_t nf, dt_rd *r) {
  dt_msg m;
  if (op == DT_OP_DATA) return dt__peer_msg_read(c, op, nf, r, &m) ? DT_EPROTO : on_data(c, &m);
  DT_WARN("unexpected %s message from peer %s", dt__op_name(op), c->peer);
  return DT_EPROTO;
}

/* the connection closed: its fetches in flight try their next address */
static void on_peer_close(dt_conn *c) {
  w_peer *p = c->data;
  dt__smap_del(&F.peers, p->addr, (uint32_t)strlen(p->addr));
  dt_vec fs = p->fetches;
  p->fetches = (dt_vec){0};
  if (!dt__worker.stopping)
    for (size_t i = 0; i < fs.len; i++) {
      w_fetch *f = fs.v[i];
      f->peer = NULL;
      fetch_send(f);
    }
  dt__vec_free(&fs);
  free(p->addr);
  free(p);
}

static const dt_conn_cbs peer_cbs = {on_peer_msg, NULL, on_peer_close};

void dt__fetch_destroy(void) {
  for (size_t i = 0; i < F.fetches.cap; i++)
    if (F.fetches.slots[i].key) fetch_free(F.fetches.slots[i].val);
  dt__smap_destroy(&F.fetches);
  dt__smap_destroy(&F.peers);
}
