/*
 * log.c -- levelled logging to stderr.  One line per event:
 *   2026-11-29T22:30:01.123Z scheduler[1234] INFO: message
 * The last DT_LOG_RING lines written are also kept in a ring (truncated to
 * DT_LOG_RING_LINE bytes), for get_scheduler_logs / get_worker_logs.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

int dt__log_level = DT_LOG_WARNING;
static char proc_name[64] = "dtask";

static const char *level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "OFF"};

int dt__log_parse_level(const char *s) {
  if (!s) return -1;
  for (int i = 0; i <= DT_LOG_OFF; i++)
    if (strcasecmp(s, level_names[i]) == 0) return i;
  if (strcasecmp(s, "warn") == 0) return DT_LOG_WARNING;
  if (strcasecmp(s, "critical") == 0) return DT_LOG_ERROR;
  return -1;
}

void dt__log_init(const char *name, const char *level) {
  if (name) snprintf(proc_name, sizeof(proc_name), "%s", name);
  int l = dt__log_parse_level(level);
  if (l >= 0) dt__log_level = l;
}

static char ring[DT_LOG_RING][DT_LOG_RING_LINE];
static unsigned char ring_level[DT_LOG_RING];
static uint64_t ring_n; /* lines kept, ever (next slot: ring_n % DT_LOG_RING) */
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_keep(int level, const char *line, size_t len) {
  if (len >= DT_LOG_RING_LINE) len = DT_LOG_RING_LINE - 1;
  pthread_mutex_lock(&ring_lock);
  size_t slot = (size_t)(ring_n++ % DT_LOG_RING);
  memcpy(ring[slot], line, len);
  ring[slot][len] = 0;
  ring_level[slot] = (unsigned char)level;
  pthread_mutex_unlock(&ring_lock);
}

void dt__log(int level, const char *fmt, ...) {
  char line[2048];
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d] %s: ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, (int)(tv.tv_usec / 1000), proc_name, (int)getpid(),
                   level_names[level]);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof(line)) n += vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof(line) - 1) n = sizeof(line) - 2;
  for (int i = 0; i < n; i++)
    if (line[i] == '\n') line[i] = ' ';
  line[n++] = '\n';
  ssize_t w = write(2, line, (size_t)n); /* one write: lines do not interleave */
  (void)w;
  log_keep(level, line, (size_t)n - 1);
}

size_t dt__log_recent(char (*out)[DT_LOG_RING_LINE], int *levels, size_t n) {
  pthread_mutex_lock(&ring_lock);
  size_t have = ring_n < DT_LOG_RING ? (size_t)ring_n : DT_LOG_RING;
  if (n > have) n = have;
  for (size_t i = 0; i < n; i++) {
    size_t slot = (size_t)((ring_n - n + i) % DT_LOG_RING);
    memcpy(out[i], ring[slot], DT_LOG_RING_LINE);
    levels[i] = ring_level[slot];
  }
  pthread_mutex_unlock(&ring_lock);
  return n;
}
