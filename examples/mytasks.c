/*
 * mytasks.c -- a shared library of task functions for
 * `dtask worker ADDRESS --preload ./libmytasks.so`.  Its DT_TASK
 * registrations run when the worker loads it.
 */
#include <string.h>

#include "dtask.h"

DT_TASK(square) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x)) return NULL;
  return dt_int(x * x);
}

DT_TASK(shout) {
  const char *s;
  if (dt_task_arg_str(task, 0, &s)) return NULL;
  size_t n = strlen(s);
  char buf[256];
  if (n >= sizeof(buf) - 1) return dt_task_fail(task, "shout: string too long (%zu bytes)", n);
  for (size_t i = 0; i < n; i++) buf[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
  buf[n] = '!';
  buf[n + 1] = '\0';
  return dt_str(buf);
}
