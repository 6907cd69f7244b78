/* admin_upload.c -- a tiny task library that admin_test uploads to a
 * running cluster (dt_client_upload_file): not preloaded anywhere. */
#include "dtask.h"

DT_TASK(admin_uploaded_double) {
  int64_t x;
  if (dt_task_arg_int(task, 0, &x) != 0) return dt_task_fail(task, "an int, please");
  return dt_int(2 * x);
}
