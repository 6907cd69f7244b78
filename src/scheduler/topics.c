/*
 * topics.c -- events on named topics (Client.log_event, get_events,
 * subscribe_topic, dtask.print/warn, forwarded logs): the last
 * DT_EVENTS_PER_TOPIC events of each topic (at most DT_MAX_TOPICS), each
 * numbered, and clients waiting for the next ones ("wait_events", a long
 * poll: a client's follower asks once and is answered when an event comes
 * or its wait ends, instead of asking every 100 ms).  The query table
 * (query.c) checks the arguments and calls in here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"

#define DT_EVENTS_PER_TOPIC 1000
#define DT_MAX_TOPICS 1000
#define DT_MAX_WAITERS 4096  /* clients' long polls at once, in all */
#define DT_WAIT_MAX_TOPICS 100 /* topics one wait names, at most */
#define DT_WAIT_MAX_S 60.0

typedef struct {
  char *name;
  dt_value *ev[DT_EVENTS_PER_TOPIC]; /* [time, msg] */
  uint64_t n;                        /* events ever (next slot: n % cap) */
} q_topic;
static dt_smap topics; /* name -> q_topic */
static bool topics_init;

/* a client's wait_events, not answered yet */
typedef struct {
  uint32_t client_id;
  uint64_t req;
  dt_value *want; /* map: topic -> first sequence number wanted */
  double deadline;
  dt__topics_answer_fn answer;
} waiter;
static dt_vec waiters;

static void init(void) {
  if (!topics_init) dt__smap_init(&topics), topics_init = true;
}

dt_value *dt__topic_events(const char *name, size_t nlen, int64_t since) {
  init();
  q_topic *tp = dt__smap_get(&topics, name, nlen);
  dt_value *l = dt_list_new();
  if (!tp) return l;
  uint64_t first = tp->n > DT_EVENTS_PER_TOPIC ? tp->n - DT_EVENTS_PER_TOPIC : 0;
  if (since >= 0 && (uint64_t)since > first) first = (uint64_t)since;
  for (uint64_t i = first; i < tp->n; i++) {
    dt_value *ev = tp->ev[i % DT_EVENTS_PER_TOPIC];
    if (since < 0) dt_list_push(l, dt_value_ref(ev));
    else
      dt_list_push(l, dt_list_of(3, dt_int((int64_t)i), dt_value_ref((dt_value *)dt_list_get(ev, 0)),
                                 dt_value_ref((dt_value *)dt_list_get(ev, 1))));
  }
  return l;
}

dt_value *dt__topics_all_events(int64_t since) {
  init();
  dt_value *m = dt_map_new();
  for (size_t i = 0; i < topics.cap; i++)
    if (topics.slots[i].key) {
      q_topic *tp = topics.slots[i].val;
      dt_map_set(m, tp->name, dt__topic_events(tp->name, strlen(tp->name), since));
    }
  return m;
}

/* collect: the events of w's topics from their first wanted number on,
 * each as [topic, seq, time, msg]; NULL when there are none */
static dt_value *collect(const dt_value *want) {
  dt_value *out = NULL;
  for (size_t i = 0; i < dt_map_len(want); i++) {
    const char *name = dt_map_key_at(want, i);
    const dt_value *sv = dt_map_value_at(want, i);
    int64_t since = dt_value_type(sv) == DT_INT ? dt_value_int(sv) : 0;
    q_topic *tp = dt__smap_get(&topics, name, strlen(name));
    if (!tp || (since >= 0 && (uint64_t)since >= tp->n)) continue;
    dt_value *evs = dt__topic_events(name, strlen(name), since < 0 ? 0 : since);
    for (size_t k = 0; k < dt_list_len(evs); k++) {
      const dt_value *e = dt_list_get(evs, k); /* [seq, time, msg] */
      if (!out) out = dt_list_new();
      dt_list_push(out, dt_list_of(4, dt_str(name), dt_value_ref((dt_value *)dt_list_get(e, 0)),
                                   dt_value_ref((dt_value *)dt_list_get(e, 1)),
                                   dt_value_ref((dt_value *)dt_list_get(e, 2))));
    }
    dt_value_free(evs);
  }
  return out;
}

static void finish(size_t i, const dt_value *v) {
  waiter *w = waiters.v[i];
  dt__vec_remove(&waiters, w);
  w->answer(w->client_id, w->req, v);
  dt_value_free(w->want);
  free(w);
}

void dt__topic_push(const char *name, size_t nlen, dt_value *row) {
  init();
  q_topic *tp = dt__smap_get(&topics, name, nlen);
  if (!tp) {
    if (topics.len >= DT_MAX_TOPICS) { /* bounded: drop the event, say so */
      DT_WARN("too many event topics (%d): an event for '%.*s' is dropped", DT_MAX_TOPICS,
              (int)nlen, name);
      return;
    }
    tp = dt__xcalloc(1, sizeof(*tp));
    tp->name = dt__xstrndup(name, nlen);
    dt__smap_put(&topics, tp->name, nlen, tp);
  }
  dt_value **slot = &tp->ev[tp->n++ % DT_EVENTS_PER_TOPIC];
  dt_value_free(*slot);
  *slot = dt_value_ref(row);
  /* the waits on this topic are answered now */
  for (size_t i = waiters.len; i-- > 0;) {
    waiter *w = waiters.v[i];
    if (!dt_map_get(w->want, tp->name)) continue;
    dt_value *v = collect(w->want);
    if (v) finish(i, v);
    dt_value_free(v);
  }
}

dt_value *dt__topics_wait(uint32_t client_id, uint64_t req, const dt_value *want, double timeout_s,
                          dt__topics_answer_fn answer, char *err, size_t errcap) {
  init();
  if (!want || dt_value_type(want) != DT_MAP || dt_map_len(want) == 0 ||
      dt_map_len(want) > DT_WAIT_MAX_TOPICS) {
    snprintf(err, errcap, "wait_events needs 'topics': a map of 1 to %d topics -> the first "
                          "event number wanted", DT_WAIT_MAX_TOPICS);
    return NULL;
  }
  for (size_t i = 0; i < dt_map_len(want); i++)
    if (dt_value_type(dt_map_value_at(want, i)) != DT_INT) {
      snprintf(err, errcap, "wait_events: the number for topic '%.64s' must be an integer",
               dt_map_key_at(want, i));
      return NULL;
    }
  if (!(timeout_s >= 0 && timeout_s <= DT_WAIT_MAX_S)) {
    snprintf(err, errcap, "wait_events: 'timeout' must be 0 to %.0f seconds", DT_WAIT_MAX_S);
    return NULL;
  }
  dt_value *now = collect(want);
  if (now || timeout_s == 0) return now ? now : dt_list_new();
  if (waiters.len >= DT_MAX_WAITERS) {
    snprintf(err, errcap, "too many clients are waiting for events (%d)", DT_MAX_WAITERS);
    return NULL;
  }
  waiter *w = dt__xcalloc(1, sizeof(*w));
  w->client_id = client_id;
  w->req = req;
  w->want = dt_value_ref((dt_value *)want);
  w->deadline = dt__now_s() + timeout_s;
  w->answer = answer;
  dt__vec_push(&waiters, w);
  return NULL;
}

void dt__topics_tick(void) {
  double now = dt__now_s();
  for (size_t i = waiters.len; i-- > 0;) {
    waiter *w = waiters.v[i];
    if (now < w->deadline) continue;
    dt_value *none = dt_list_new();
    finish(i, none);
    dt_value_free(none);
  }
}

void dt__topics_client_gone(uint32_t client_id) {
  for (size_t i = waiters.len; i-- > 0;) {
    waiter *w = waiters.v[i];
    if (w->client_id != client_id) continue;
    dt__vec_remove(&waiters, w);
    dt_value_free(w->want);
    free(w);
  }
}

void dt__topics_free_all(void) {
  while (waiters.len) dt__topics_client_gone(((waiter *)waiters.v[0])->client_id);
  dt__vec_free(&waiters);
  if (!topics_init) return;
  for (size_t i = 0; i < topics.cap; i++)
    if (topics.slots[i].key) {
      q_topic *tp = topics.slots[i].val;
      for (size_t k = 0; k < DT_EVENTS_PER_TOPIC; k++) dt_value_free(tp->ev[k]);
      free(tp->name);
      free(tp);
    }
  dt__smap_destroy(&topics);
  topics_init = false;
}
