/*
 * logvalue.c -- this process's recent log lines (common/log.c's ring) as a
 * value, [[level, line]...] oldest first: what get_scheduler_logs and
 * get_worker_logs answer with.
 */
#include <stdlib.h>

#include "proto.h"

dt_value *dt__log_recent_value(int64_t n) {
  static const char *names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"};
  char(*lines)[DT_LOG_RING_LINE] = malloc(sizeof(char[DT_LOG_RING][DT_LOG_RING_LINE]));
  int levels[DT_LOG_RING];
  dt_value *l = dt_list_new();
  size_t got = lines && l ? dt__log_recent(lines, levels, n < 0 ? 0 : (size_t)n) : 0;
  for (size_t i = 0; i < got; i++)
    dt_list_push(l, dt_list_of(2, dt_str(names[levels[i] >= 0 && levels[i] < 5 ? levels[i] : 4]),
                               dt_str(lines[i])));
  free(lines);
  return l;
}
