/*
 * coord_ops.h -- what a COORD message asks (its op field), shared by the
 * client library and the scheduler: the coordination primitives
 * (variables, queues, locks, multilocks, events, semaphores) and published
 * datasets, which the scheduler holds (scheduler/coord.c).
 */
#ifndef DT_COORD_OPS_H
#define DT_COORD_OPS_H

#define DT_COORD_OPS(X)                                  \
  X(VAR_SET, "variable set")                             \
  X(VAR_GET, "variable get")                             \
  X(VAR_DELETE, "variable delete")                       \
  X(QUEUE_PUT, "queue put")                              \
  X(QUEUE_GET, "queue get")                              \
  X(QUEUE_SIZE, "queue qsize")                           \
  X(LOCK_ACQUIRE, "lock acquire")                        \
  X(LOCK_RELEASE, "lock release")                        \
  X(LOCK_LOCKED, "lock locked")                          \
  X(MLOCK_ACQUIRE, "multilock acquire")                  \
  X(MLOCK_RELEASE, "multilock release")                  \
  X(EVENT_SET, "event set")                              \
  X(EVENT_CLEAR, "event clear")                          \
  X(EVENT_WAIT, "event wait")                            \
  X(EVENT_IS_SET, "event is_set")                        \
  X(SEM_ACQUIRE, "semaphore acquire")                    \
  X(SEM_RELEASE, "semaphore release")                    \
  X(SEM_VALUE, "semaphore get_value")                    \
  X(DS_PUBLISH, "publish_dataset")                       \
  X(DS_GET, "get_dataset")                               \
  X(DS_LIST, "list_datasets")                            \
  X(DS_UNPUBLISH, "unpublish_dataset")

enum {
  DT_COORD_NONE = 0,
#define DT__COORD_ENUM(name, text) DT_COORD_##name,
  DT_COORD_OPS(DT__COORD_ENUM)
#undef DT__COORD_ENUM
  DT_COORD_COUNT
};

/* Limits the scheduler enforces (a request over one gets DT_ELIMIT). */
#define DT_COORD_MAX_NAMES 256                      /* names in one multilock */
#define DT_COORD_MAX_VALUE (64u * 1024 * 1024)      /* bytes in one held value */
#define DT_COORD_MAX_BYTES (1024ull * 1024 * 1024)  /* bytes held in all */
#define DT_COORD_MAX_ITEMS 1000000u                 /* values held in all */
#define DT_COORD_MAX_PRIMS 100000u                  /* named primitives and datasets */
#define DT_COORD_MAX_WAITERS 100000u                /* requests waiting */
#define DT_COORD_MAX_KEYS 4096u                     /* futures in one value */

#endif
