/*
 * tasks_common.h -- the task functions shared by the map-reduce and Monte
 * Carlo examples (and the demo that runs both).  Header-only so each example
 * stays one self-contained program.
 */
#ifndef DTASK_EXAMPLE_TASKS_H
#define DTASK_EXAMPLE_TASKS_H

#include <stdint.h>

#include "dtask.h"

/* sum_squares(lo, hi): sum of i*i for lo <= i < hi, exactly (int64) */
DT_TASK(sum_squares) {
  int64_t lo, hi, s = 0;
  if (dt_task_arg_int(task, 0, &lo) || dt_task_arg_int(task, 1, &hi)) return NULL;
  if (hi < lo) return dt_task_fail(task, "sum_squares: hi %lld < lo %lld", (long long)hi, (long long)lo);
  for (int64_t i = lo; i < hi; i++)
    if (__builtin_add_overflow(s, i * i, &s)) return dt_task_fail(task, "sum_squares: overflow");
  return dt_int(s);
}

/* add(a, b): a + b; ints stay exact (an overflow fails), else doubles */
DT_TASK(add) {
  const dt_value *x = dt_task_arg(task, 0), *y = dt_task_arg(task, 1);
  if (!x || !y) return NULL;
  if (dt_value_type(x) == DT_INT && dt_value_type(y) == DT_INT) {
    int64_t r;
    if (__builtin_add_overflow(dt_value_int(x), dt_value_int(y), &r))
      return dt_task_fail(task, "add: integer overflow");
    return dt_int(r);
  }
  double a, b;
  if (dt_task_arg_double(task, 0, &a) || dt_task_arg_double(task, 1, &b)) return NULL;
  return dt_double(a + b);
}

/* monte_carlo(seed, n): how many of n random points fall in the unit circle */
DT_TASK(monte_carlo) {
  int64_t seed, n;
  if (dt_task_arg_int(task, 0, &seed) || dt_task_arg_int(task, 1, &n)) return NULL;
  uint64_t x = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
  int64_t hits = 0;
  for (int64_t i = 0; i < n; i++) {
    /* xorshift64*: fast, good enough for a demo */
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    double a = (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    double b = (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
    hits += a * a + b * b <= 1.0;
  }
  return dt_int(hits);
}

/* tree_reduce: pairwise "add" level by level until one future is left.
 * Consumes the n futures; returns a new one (or NULL with the error). */
static inline dt_future *tree_reduce(dt_client *c, dt_future **fs, size_t n) {
  while (n > 1) {
    size_t m = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
      dt_future *r;
      int rc = dt_client_submit(c, "add", dt_list_of(2, dt_future_value(fs[i]), dt_future_value(fs[i + 1])),
                                NULL, NULL, &r);
      dt_future_release(fs[i]);
      dt_future_release(fs[i + 1]);
      if (rc) return NULL;
      fs[m++] = r;
    }
    if (n % 2) fs[m++] = fs[n - 1];
    n = m;
  }
  return n ? fs[0] : NULL;
}

#endif
