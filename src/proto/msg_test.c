/* msg_test.c -- the message table */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "proto/proto.h"

static void test_names_unique(void **st) {
  (void)st;
  for (int a = 1; a < DT_OP_COUNT; a++)
    for (int b = a + 1; b < DT_OP_COUNT; b++) assert_string_not_equal(dt__msgs[a].name, dt__msgs[b].name);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_names_unique)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
