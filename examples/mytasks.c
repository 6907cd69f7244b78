/*
 * mytasks.c -- a shared library of task functions for
 * `dtask worker ADDRESS --preload ./libmytasks.so`.  Its DT_TASK
 * registrations run when the worker loads it.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

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

/* Memory tests (docs/memory.md). */

DT_TASK(chunk) { /* chunk(i, mib): mib MiB of 64-bit words i * 1000003 + k */
  int64_t i, mib;
  if (dt_task_arg_int(task, 0, &i) || dt_task_arg_int(task, 1, &mib)) return NULL;
  if (mib < 0 || mib > 4096) return dt_task_fail(task, "chunk: %lld MiB is out of range", (long long)mib);
  size_t n = (size_t)mib << 17; /* words */
  uint64_t *p = malloc(n * 8 + 1);
  if (!p) return dt_task_fail(task, "chunk: out of memory");
  for (size_t k = 0; k < n; k++) p[k] = (uint64_t)i * 1000003u + k;
  return dt_bytes_take(p, n * 8, free);
}

DT_TASK(chunk_sum) { /* chunk_sum(bytes...): the sum of all their 64-bit words, mod 2^62 */
  uint64_t s = 0;
  for (size_t a = 0; a < dt_task_nargs(task); a++) {
    size_t len;
    const uint64_t *p = dt_value_bytes(dt_task_arg(task, a), &len);
    if (!p) return dt_task_fail(task, "chunk_sum: argument %zu is not bytes", a);
    for (size_t k = 0; k < len / 8; k++) s += p[k];
  }
  return dt_int((int64_t)(s & ((1ull << 62) - 1)));
}

DT_TASK(hog) { /* hog(mib, ms): holds mib MiB of touched memory for ms milliseconds */
  int64_t mib, ms;
  if (dt_task_arg_int(task, 0, &mib) || dt_task_arg_int(task, 1, &ms)) return NULL;
  size_t len = (size_t)mib << 20;
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return dt_task_fail(task, "hog: cannot map %lld MiB", (long long)mib);
  for (size_t k = 0; k < len; k += 4096) p[k] = 1;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  munmap(p, len);
  return dt_int(mib);
}

/* Counting executions (tests/lifetime_test.c). */

DT_TASK(logged) { /* logged(ms, path, tag, x...): tag*tag + sum(x) after ms milliseconds;
                     each run appends "tag pid" to the file path */
  int64_t ms, tag, sum = 0;
  const char *path;
  if (dt_task_arg_int(task, 0, &ms) || dt_task_arg_str(task, 1, &path) ||
      dt_task_arg_int(task, 2, &tag))
    return NULL;
  if (ms < 0 || ms > 60000) return dt_task_fail(task, "logged: %lld ms is out of range", (long long)ms);
  for (size_t a = 3; a < dt_task_nargs(task); a++) {
    int64_t x;
    if (dt_task_arg_int(task, a, &x)) return NULL;
    sum += x;
  }
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (fd < 0) return dt_task_fail(task, "logged: cannot open %s", path);
  char line[64];
  int n = snprintf(line, sizeof(line), "%lld %d\n", (long long)tag, (int)getpid());
  ssize_t w = write(fd, line, (size_t)n); /* one write: lines never interleave */
  close(fd);
  if (w != n) return dt_task_fail(task, "logged: cannot write %s", path);
  return dt_int(tag * tag + sum);
}
