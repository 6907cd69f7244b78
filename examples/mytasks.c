/*
 * mytasks.c -- a shared library of task functions for
 * `dtask worker ADDRESS --preload ./libmytasks.so`.  Its DT_TASK
 * registrations run when the worker loads it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

DT_TASK(repeat) { /* repeat(s, n): s n times (large results for transfer tests) */
  const char *s;
  int64_t n;
  if (dt_task_arg_str(task, 0, &s) || dt_task_arg_int(task, 1, &n)) return NULL;
  size_t len = strlen(s);
  if (n < 0 || n > (1 << 24) || len * (size_t)n > (64u << 20))
    return dt_task_fail(task, "repeat: %lld copies is out of range", (long long)n);
  unsigned char *p = malloc(len * (size_t)n + 1);
  if (!p) return dt_task_fail(task, "repeat: out of memory");
  for (int64_t i = 0; i < n; i++) memcpy(p + (size_t)i * len, s, len);
  return dt_bytes_take(p, len * (size_t)n, free);
}

DT_TASK(slow_square) { /* slow_square(x, ms): x*x after ms milliseconds */
  int64_t x, ms;
  if (dt_task_arg_int(task, 0, &x) || dt_task_arg_int(task, 1, &ms)) return NULL;
  if (ms < 0 || ms > 60000) return dt_task_fail(task, "slow_square: %lld ms is out of range", (long long)ms);
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  return dt_int(x * x);
}
