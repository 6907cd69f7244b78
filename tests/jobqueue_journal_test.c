/* jobqueue_journal_test.c -- dt_jobqueue_opts.journal (docs/hpc.md): a
 * job-queue cluster's scheduler (started here; no job is submitted, so no
 * batch system is needed) keeps a journal: the file is written with its
 * header and the scheduler reports its size; the job script does not carry
 * the option.  The cluster is closed (its scheduler stopped) at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

static void test_jobqueue_scheduler_keeps_a_journal(void **state) {
  (void)state;
  char journal[256], logs[256];
  snprintf(journal, sizeof(journal), "/tmp/dtask-jqj-%d.journal", (int)getpid());
  snprintf(logs, sizeof(logs), "/tmp/dtask-jqj-%d-logs", (int)getpid());
  unlink(journal);
  int port = tu_free_port();
  assert_true(port > 0);
  dt_jobqueue_opts o = {.system = DT_JOBQUEUE_SLURM, .cores = 1, .memory = "512MB",
                        .host = "127.0.0.1", .port = port, .log_directory = logs,
                        .journal = journal};
  dt_jobqueue_cluster *jc = NULL;
  int rc = dt_jobqueue_cluster_start(&o, &jc);
  if (rc) fprintf(stderr, "start: %s\n", dt_last_error());
  assert_int_equal(rc, 0);
  assert_null(strstr(dt_jobqueue_cluster_script(jc), "--journal"));
  dt_client_opts co = {.address = dt_jobqueue_cluster_address(jc), .timeout_ms = 5000,
                       .auth_file = dt_jobqueue_cluster_auth_file(jc)};
  dt_client *c = NULL;
  rc = dt_client_connect(&co, &c);
  if (rc) fprintf(stderr, "connect: %s\n", dt_last_error());
  assert_int_equal(rc, 0);
  dt_cluster_info info = {0};
  assert_int_equal(dt_client_cluster_info(c, 5000, &info), 0);
  assert_true(info.journal_bytes > 0);
  dt_client_close(c);
  dt_jobqueue_cluster_close(jc);
  FILE *f = fopen(journal, "rb");
  assert_non_null(f);
  char magic[8] = {0};
  assert_int_equal(fread(magic, 1, 8, f), 8);
  fclose(f);
  assert_memory_equal(magic, "DTJOURNL", 8);
  unlink(journal);
  rmdir(logs);
}

int main(void) {
  if (getenv("JQJ_NEVER_SET")) dt_local_cluster_start(NULL, NULL); /* links the role takeover */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_jobqueue_scheduler_keeps_a_journal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
