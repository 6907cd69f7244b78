/*
 * error.c -- error codes, their descriptions (from the X-macro table in
 * dtask.h) and the per-thread "last error" message.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"

static _Thread_local char last_error[1024];

const char *dt_strerror(int err) {
  if (err == 0) return "success";
#define X(name, val, desc) if (err == (val)) return desc;
  DT_ERRNO_MAP(X)
#undef X
  return "unknown error";
}

const char *dt_err_name(int err) {
  if (err == 0) return "DT_OK";
#define X(name, val, desc) if (err == (val)) return "DT_" #name;
  DT_ERRNO_MAP(X)
#undef X
  return "DT_UNKNOWN";
}

const char *dt_last_error(void) { return last_error; }

void dt__err_clear(void) { last_error[0] = '\0'; }

int dt__err(int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof(last_error), fmt, ap);
  va_end(ap);
  return err;
}
