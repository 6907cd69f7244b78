/*
 * limits.c -- what peers that connect to a daemon may hold (net.h,
 * dt_net_limits; docs/reliability.md, "Limits on peers"): strangers
 * (accepted connections that have not said hello) are capped in total and
 * per source address and go at the hello deadline; bytes of incomplete
 * batches from accepted connections are capped per connection (by role)
 * and in total (conn_read.c); the descriptor limit is raised at start.
 * libuv keeps a reserve descriptor itself (uv__emfile_trick: at EMFILE it
 * closes its reserve, accepts and closes, and reopens it), so accept never
 * stalls at the descriptor limit.
 */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "conn_int.h"

/* Strangers: a burst of legitimate connections (200 workers starting at
 * once on one host) are all young and say hello within milliseconds; an
 * attacker's are idle and old.  So an address with strangers_per_ip
 * strangers, one of them older than DT_NET_STRANGER_GRACE_MS, gets no
 * more; and past strangers_max in total, the oldest stranger of all goes
 * to make room if it has waited that long, else the new one is refused.
 * (The newcomer from another address gets in within about the grace.) */
bool dt__conn_stranger_ok(dt_net *n, const char *ip) {
  uint32_t total = 0, same = 0;
  dt_conn *oldest = NULL, *oldest_same = NULL;
  /* the deadline list holds every accepted connection not yet admitted
   * (and outgoing ones in their handshakes, which do not count) */
  for (dt_conn *c = n->hs_head; c; c = c->hs_next) {
    if (c->outgoing || c->state == DT_CONN_CLOSING) continue;
    total++;
    if (!oldest || c->accepted_ms < oldest->accepted_ms) oldest = c;
    if (ip[0] && strcmp(c->ip, ip) == 0) {
      same++;
      if (!oldest_same || c->accepted_ms < oldest_same->accepted_ms) oldest_same = c;
    }
  }
  uint64_t now = uv_now(n->loop);
  dt_conn *victim = NULL;
  if (n->lim.strangers_per_ip && same >= n->lim.strangers_per_ip && oldest_same &&
      now - oldest_same->accepted_ms >= DT_NET_STRANGER_GRACE_MS) {
    dt__conn_refused(n, ip, "too many connections from that address that have not said hello");
    return false;
  }
  if (n->lim.strangers_max && total >= n->lim.strangers_max) {
    if (!oldest || now - oldest->accepted_ms < DT_NET_STRANGER_GRACE_MS) {
      dt__conn_refused(n, ip, "too many connections that have not said hello");
      return false;
    }
    victim = oldest;
  }
  if (victim) {
    dt__conn_refused(n, victim->peer, "the oldest connection that has not said hello makes room");
    victim->close_status = DT_EPROTO;
    dt__conn_close(victim, false);
  }
  return true;
}

void dt__conn_refused(dt_net *n, const char *peer, const char *why) {
  n->refused++;
  uint64_t now = uv_now(n->loop);
  if (n->refused_logged_ms && now - n->refused_logged_ms < 1000) return;
  n->refused_logged_ms = now;
  DT_WARN("refusing connection from %s: %s (%llu refused so far)", peer[0] ? peer : "?", why,
          (unsigned long long)n->refused);
}

uint64_t dt__net_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  rlim_t was = rl.rlim_cur;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) rl.rlim_cur = was;
  }
  if (rl.rlim_cur != was)
    DT_INFO("descriptor limit raised from %llu to %llu", (unsigned long long)was,
            (unsigned long long)rl.rlim_cur);
  else
    DT_INFO("descriptor limit %llu", (unsigned long long)rl.rlim_cur);
  return (uint64_t)rl.rlim_cur;
}
