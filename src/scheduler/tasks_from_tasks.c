/*
 * tasks_from_tasks.c -- what the scheduler does for tasks that launch
 * tasks: a running task that secedes (hands its thread back while it waits
 * on the tasks it submitted) stops counting against its worker's capacity,
 * so that a recursive computation on one-thread workers cannot fill every
 * slot with waiting parents; a task may ask to be rescheduled (Dask's
 * Reschedule); and fire_and_forget keys are wanted by the scheduler's own
 * holder (Dask's "fire-and-forget" pseudo-client, a client with no
 * connection) until they finish.  The handlers of the three messages are
 * here too.  O(1) per message and key.
 */
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "sched_int.h"

static dt_srv *const srv = &dt__srv;

void dt__sched_task_seceded(sched *s, s_worker *w, const char *key, uint32_t klen) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || t->state != TS_PROCESSING || t->processing_on != w || t->seceded) return;
  t->seceded = true;
  w->long_running++;
  dt__place_update_free(s, w);
  dt__place_fill(s);
}

void dt__sched_task_reschedule(sched *s, s_worker *w, const char *key, uint32_t klen) {
  dt__ghost_del(s, w, key, klen);
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || t->state != TS_PROCESSING || t->processing_on != w) return;
  DT_INFO("task %s on %s asked to be rescheduled", t->key, w->address);
  dt__task_unrun(s, t);
  dt__place_update_free(s, w);
  dt__task_retry(s, t);
  dt__place_fill(s);
}

void dt__sched_fire_and_forget(sched *s, const char *key, uint32_t klen) {
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || t->state == TS_MEMORY || t->state == TS_ERRED) return; /* done already */
  if (!s->fire_and_forget) s->fire_and_forget = dt__sched_add_client(s, NULL, "fire-and-forget");
  dt__sched_client_want(s, s->fire_and_forget, key, klen);
}

void dt__sched_ff_done(sched *s, const char *key, uint32_t klen) {
  if (!s->fire_and_forget || !s->fire_and_forget->wants.len) return;
  s_task *t = dt__sched_get_task(s, key, klen);
  if (!t || (t->state != TS_MEMORY && t->state != TS_ERRED)) return;
  dt__sched_client_release(s, s->fire_and_forget, key, klen);
}

void dt__sched_ff_peers_changed(sched *s) {
  s_client *ff = s->fire_and_forget;
  if (!ff || s->workers.len || s->clients.len > 1) return;
  s->fire_and_forget = NULL;
  dt__sched_remove_client(s, ff); /* releases what it held; freed at the drain */
}

/* ---------------------------------------------------------------- handlers */

int dt__on_task_seceded(dt_conn *c, const dt_msg *m) {
  dt__sched_task_seceded(&srv->s, c->data, m->TASK_SECEDED.key.p, m->TASK_SECEDED.key.len);
  return 0;
}

int dt__on_task_reschedule(dt_conn *c, const dt_msg *m) {
  dt__sched_task_reschedule(&srv->s, c->data, m->TASK_RESCHEDULE.key.p,
                            m->TASK_RESCHEDULE.key.len);
  return 0;
}

int dt__on_fire_and_forget(dt_conn *c, const dt_msg *m) {
  (void)c;
  dt_list l = m->FIRE_AND_FORGET.keys;
  dt_sv k;
  while (dt__next_key(&l, &k)) dt__sched_fire_and_forget(&srv->s, k.p, k.len);
  return 0;
}
