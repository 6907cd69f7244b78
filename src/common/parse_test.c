/* parse_test.c -- every form parse.h accepts and refuses (sizes, durations,
 * numbers, fractions, resources, addresses, memory limits, the scheduler
 * and secret files), and the option-table parser of args.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/args.h"
#include "common/common.h"
#include "common/parse.h"

#define GIB 1073741824ull
#define MIB 1048576ull

/* the error names the value */
#define REFUSED(call, value)                                          \
  do {                                                                \
    assert_int_equal((call), DT_EINVAL);                              \
    if (!strstr(dt_last_error(), (value)))                            \
      fail_msg("'%s' does not name '%s'", dt_last_error(), (value)); \
  } while (0)

static void test_sizes(void **state) {
  (void)state;
  static const struct {
    const char *s;
    uint64_t v;
  } ok[] = {
      {"0", 0},           {"1", 1},           {"123", 123},          {"1.5e9", 1500000000},
      {"4GiB", 4 * GIB},  {"4 GiB", 4 * GIB}, {"4gib", 4 * GIB},     {"4GB", 4000000000ull},
      {"4 GB", 4000000000ull}, {"512MiB", 512 * MIB}, {"512MB", 512000000}, {"512mb", 512000000},
      {"1kb", 1000},      {"1KiB", 1024},     {"1k", 1024},          {"1K", 1024},
      {"2m", 2 * MIB},    {"2M", 2 * MIB},    {"1g", GIB},           {"1t", 1099511627776ull},
      {"1Ti", 1099511627776ull}, {"1Gi", GIB}, {"1Mi", MIB},        {"1ki", 1024},
      {"1TB", 1000000000000ull}, {"1TiB", 1099511627776ull}, {"1PB", 1000000000000000ull},
      {"1PiB", 1125899906842624ull}, {"10B", 10}, {"10 b", 10},       {"0.5KiB", 512},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    uint64_t v = 7;
    if (dt__size_parse(ok[i].s, &v) != 0) fail_msg("'%s' refused: %s", ok[i].s, dt_last_error());
    if (v != ok[i].v) fail_msg("'%s' read as %llu", ok[i].s, (unsigned long long)v);
  }
  static const char *bad[] = {"", "GB", "abc", "-1", "-1GB", "4XB", "4 G B", "4GBs", "nan", "inf",
                              "1e30", "1e300GB", "4,5GB", "0x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    uint64_t v = 7;
    REFUSED(dt__size_parse(bad[i], &v), bad[i]);
    assert_int_equal(v, 7); /* untouched */
  }
  uint64_t v;
  assert_int_equal(dt__size_parse(NULL, &v), DT_EINVAL);
}

static void test_durations(void **state) {
  (void)state;
  static const struct {
    const char *s;
    double v;
  } ok[] = {
      {"0", 0},         {"30", 30},        {"90s", 90},         {"1.5", 1.5},      {"30 s", 30},
      {"500ms", 0.5},   {"250us", 0.00025}, {"5m", 300},        {"2min", 120},     {"1h", 3600},
      {"1.5h", 5400},   {"2d", 172800},    {"1h30m", 5400},     {"1h 30m", 5400},  {"2m30s", 150},
      {"1m 1s 500ms", 61.5}, {"10seconds", 10}, {"10 seconds", 10}, {"3 minutes", 180},
      {"2 hours", 7200}, {"1 day", 86400}, {"1e3", 1000},      {"1e-3s", 0.001},  {"5sec", 5},
      {"01:30:00", 5400}, {"00:10", 10},   {"10:00", 600},      {"0:0:1", 1},      {"100:00:00", 360000},
      {"1-00", 86400},  {"1-02", 93600},   {"1-02:30", 95400},  {"1-02:30:15", 95415},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    double v = -1;
    if (dt__duration_parse(ok[i].s, &v) != 0) fail_msg("'%s' refused: %s", ok[i].s, dt_last_error());
    if (v < ok[i].v - 1e-9 || v > ok[i].v + 1e-9) fail_msg("'%s' read as %g", ok[i].s, v);
  }
  static const char *bad[] = {"abc", "-1", "-1s", "5x", "s", "1h30", "30 30", "1:2:3:4", "1:60",
                              "1:00:60", "1:", ":30", "1-", "a-1", "1-1:60", "nan", "inf", "1h-30m",
                              "1.5:00", "1 h x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    double v = -1;
    REFUSED(dt__duration_parse(bad[i], &v), bad[i]);
    assert_true(v == -1);
  }
  double v;
  assert_int_equal(dt__duration_parse("", &v), DT_EINVAL);
  assert_string_equal(dt_last_error(), "empty duration");
  assert_int_equal(dt__duration_parse(NULL, &v), DT_EINVAL);
}

static void test_numbers_and_fractions(void **state) {
  (void)state;
  long n;
  assert_int_equal(dt__int_parse("42", 0, 100, &n), 0);
  assert_int_equal(n, 42);
  assert_int_equal(dt__int_parse("-3", -5, 5, &n), 0);
  assert_int_equal(n, -3);
  assert_int_equal(dt__int_parse("0", 0, 0, &n), 0);
  REFUSED(dt__int_parse("101", 0, 100, &n), "101");
  assert_non_null(strstr(dt_last_error(), "0 to 100"));
  REFUSED(dt__int_parse("-1", 0, 100, &n), "-1");
  REFUSED(dt__int_parse("12x", 0, 100, &n), "12x");
  REFUSED(dt__int_parse("x", 0, 100, &n), "'x'");
  REFUSED(dt__int_parse("", 0, 100, &n), "''");
  REFUSED(dt__int_parse("99999999999999999999", 0, 100, &n), "99999999999999999999");

  double f;
  static const struct {
    const char *s;
    double v;
  } ok[] = {{"0", 0}, {"0.0", 0}, {"false", 0}, {"off", 0}, {"OFF", 0}, {"0.6", 0.6}, {"1", 1}, {"1.0", 1}};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    if (dt__fraction_parse(ok[i].s, &f) != 0) fail_msg("'%s' refused: %s", ok[i].s, dt_last_error());
    assert_true(f == ok[i].v);
  }
  static const char *bad[] = {"", "1.5", "-0.1", "x", "0.5x", "nan", "true", "on"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) REFUSED(dt__fraction_parse(bad[i], &f), bad[i]);
}

static void test_resources(void **state) {
  (void)state;
  char **names;
  double *amounts;
  uint32_t n;
  assert_int_equal(dt__resource_list_parse("GPU=2,MEM=1e9", &names, &amounts, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(names[0], "GPU");
  assert_true(amounts[0] == 2);
  assert_string_equal(names[1], "MEM");
  assert_true(amounts[1] == 1e9);
  dt__resource_list_free(names, amounts, n);
  assert_int_equal(dt__resource_list_parse("GPU=1 FPGA=0.5, MEM=4GiB", &names, &amounts, &n), 0);
  assert_int_equal(n, 3);
  assert_true(amounts[1] == 0.5);
  assert_true(amounts[2] == 4.0 * GIB);
  dt__resource_list_free(names, amounts, n);
  assert_int_equal(dt__resource_list_parse("", &names, &amounts, &n), 0);
  assert_int_equal(n, 0);
  assert_null(names);
  assert_int_equal(dt__resource_list_parse(NULL, &names, &amounts, &n), 0);
  assert_int_equal(n, 0);
  static const char *bad[] = {"GPU", "=1", "GPU=", "GPU=-1", "GPU=x", "GPU=1,X", "GPU=nan", "MEM=4XB"};
  static const char *named[] = {"GPU", "=1", "GPU=", "GPU=-1", "GPU=x", "'X'", "GPU=nan", "MEM=4XB"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    REFUSED(dt__resource_list_parse(bad[i], &names, &amounts, &n), named[i]);
    assert_null(names);
    assert_null(amounts);
    assert_int_equal(n, 0);
  }
  char many[1024] = "";
  for (int i = 0; i < 65; i++) snprintf(many + strlen(many), sizeof(many) - strlen(many), "R%d=1,", i);
  assert_int_equal(dt__resource_list_parse(many, &names, &amounts, &n), DT_EINVAL);
  assert_null(names);
  many[strlen(many) - 6] = '\0'; /* 64 of them */
  assert_int_equal(dt__resource_list_parse(many, &names, &amounts, &n), 0);
  assert_int_equal(n, 64);
  dt__resource_list_free(names, amounts, n);
}

static void test_addresses(void **state) {
  (void)state;
  static const struct {
    const char *s, *host;
    int port;
    bool tls;
  } ok[] = {
      {"tcp://127.0.0.1:8786", "127.0.0.1", 8786, false},
      {"127.0.0.1:8786", "127.0.0.1", 8786, false},
      {"tls://sched.example.org:443", "sched.example.org", 443, true},
      {"localhost:0", "localhost", 0, false},
      {"[::1]:99", "::1", 99, false},
      {"tcp://[fe80::1]:65535", "fe80::1", 65535, false},
      {"tls://[::1]:1", "::1", 1, true},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    dt_addr a;
    if (dt__addr_parse(ok[i].s, &a) != 0) fail_msg("'%s' refused: %s", ok[i].s, dt_last_error());
    assert_string_equal(a.host, ok[i].host);
    assert_int_equal(a.port, ok[i].port);
    assert_int_equal(a.tls, ok[i].tls);
  }
  static const char *bad[] = {"localhost", "h:99999", "h:12x", ":12", "h:", "h:-1", "[::1]", "[::1]99",
                              "[]:1", "udp://h:1", "tcp://", "inproc://x:1", "h:+1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    dt_addr a;
    REFUSED(dt__addr_parse(bad[i], &a), bad[i]);
  }
  dt_addr a;
  assert_int_equal(dt__addr_parse(NULL, &a), DT_EINVAL);
  char buf[300], longhost[300];
  memset(longhost, 'a', 270);
  snprintf(longhost + 270, sizeof(longhost) - 270, ":1");
  assert_int_equal(dt__addr_parse(longhost, &a), DT_EINVAL);
  assert_int_equal(dt__addr_parse("[::1]:8786", &a), 0);
  assert_string_equal(dt__addr_format(&a, buf, sizeof(buf)), "[::1]:8786");
  assert_int_equal(dt__addr_parse("tcp://10.0.0.1:1", &a), 0);
  assert_string_equal(dt__addr_format(&a, buf, sizeof(buf)), "10.0.0.1:1");
}

static void test_memory_limits(void **state) {
  (void)state;
  uint64_t total = dt__memory_total(), v;
  assert_true(total > 0);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  /* the one "auto" formula */
  assert_int_equal(dt__memory_auto(1, 1), total);
  assert_int_equal(dt__memory_auto(1, 4), (uint64_t)((double)total / 4));
  assert_int_equal(dt__memory_auto(8, 4), total); /* never more than the machine */
  assert_int_equal(dt__memory_auto(1, 0), ncpu > 1 ? (uint64_t)((double)total / (double)ncpu) : total);
  assert_int_equal(dt__memory_limit_parse("auto", 1, 4, &v), 0);
  assert_int_equal(v, dt__memory_auto(1, 4));
  assert_int_equal(dt__memory_limit_parse("AUTO", 2, 0, &v), 0);
  assert_int_equal(v, dt__memory_auto(2, 0));
  assert_int_equal(dt__memory_limit_parse(NULL, 1, 2, &v), 0);
  assert_int_equal(v, dt__memory_auto(1, 2));
  assert_int_equal(dt__memory_limit_parse("", 1, 2, &v), 0);
  assert_int_equal(v, dt__memory_auto(1, 2));
  assert_int_equal(dt__memory_limit_parse("0", 1, 1, &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(dt__memory_limit_parse("none", 1, 1, &v), 0);
  assert_int_equal(v, 0);
  assert_int_equal(dt__memory_limit_parse("0.5", 1, 1, &v), 0);
  assert_int_equal(v, (uint64_t)((double)total * 0.5));
  assert_int_equal(dt__memory_limit_parse("1", 1, 1, &v), 0);
  assert_int_equal(v, total);
  assert_int_equal(dt__memory_limit_parse("256MiB", 1, 1, &v), 0);
  assert_int_equal(v, 256 * MIB);
  assert_int_equal(dt__memory_limit_parse("2 GB", 1, 1, &v), 0);
  assert_int_equal(v, 2000000000ull);
  assert_int_equal(dt__memory_limit_parse("1.5", 1, 1, &v), 0); /* over 1: bytes */
  assert_int_equal(v, 1);
  static const char *bad[] = {"abc", "-1", "-0.5", "4XB", "autox", "nan"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    v = 7;
    REFUSED(dt__memory_limit_parse(bad[i], 1, 1, &v), bad[i]);
    assert_int_equal(v, 7);
  }
}

static char dir[64];

static int make_dir(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/dtask-parse-XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_scheduler_file(void **state) {
  (void)state;
  char path[128], out[256];
  snprintf(path, sizeof(path), "%s/scheduler.json", dir);
  assert_int_equal(dt__scheduler_file_read(path, out, sizeof(out)), DT_ENOTFOUND);
  assert_non_null(strstr(dt_last_error(), path));
  assert_int_equal(dt__scheduler_file_write(path, "tcp://127.0.0.1:8786", "http://127.0.0.1:8787/", 42), 0);
  assert_int_equal(dt__scheduler_file_read(path, out, sizeof(out)), 0);
  assert_string_equal(out, "tcp://127.0.0.1:8786");
  FILE *f = fopen(path, "r");
  char text[512];
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = '\0';
  assert_string_equal(text, "{\"type\": \"Scheduler\", \"address\": \"tcp://127.0.0.1:8786\", \"pid\": 42, "
                            "\"dashboard\": \"http://127.0.0.1:8787/\"}\n");
  /* replaced whole; no temporary file left */
  assert_int_equal(dt__scheduler_file_write(path, "tls://[::1]:1", NULL, 1), 0);
  assert_int_equal(dt__scheduler_file_read(path, out, sizeof(out)), 0);
  assert_string_equal(out, "tls://[::1]:1");
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "test $(ls '%s' | wc -l) -eq 1", dir);
  assert_int_equal(system(cmd), 0);
  /* other writers' layouts */
  put(path, "{\n  \"address\" :\t\"tcp://h:1\",\n  \"id\": \"x\"\n}\n");
  assert_int_equal(dt__scheduler_file_read(path, out, sizeof(out)), 0);
  assert_string_equal(out, "tcp://h:1");
  put(path, "{\"type\":\"Scheduler\",\"address\":\"tcp://h\\/x:2\"}");
  assert_int_equal(dt__scheduler_file_read(path, out, sizeof(out)), 0);
  assert_string_equal(out, "tcp://h/x:2");
  /* refused */
  static const char *bad[] = {"{}", "{\"address\": 5}", "{\"address\": \"\"}", "{\"address\": \"tcp://h:1",
                              "not json", ""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    put(path, bad[i]);
    assert_int_equal(dt__scheduler_file_read(path, out, sizeof(out)), DT_EINVAL);
    assert_non_null(strstr(dt_last_error(), "has no \"address\""));
  }
  put(path, "{\"address\": \"tcp://a-rather-long-host-name:8786\"}");
  assert_int_equal(dt__scheduler_file_read(path, out, 8), DT_EINVAL); /* does not fit */
  char nodir[160];
  snprintf(nodir, sizeof(nodir), "%s/missing/s.json", dir);
  assert_int_equal(dt__scheduler_file_write(nodir, "tcp://h:1", NULL, 1), DT_EIO);
  assert_non_null(strstr(dt_last_error(), nodir));
}

static void test_secret_file(void **state) {
  (void)state;
  char path[128];
  snprintf(path, sizeof(path), "%s/auth", dir);
  assert_int_equal(dt__secret_file_write(path, "0123456789abcdef0123", 20), 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(st.st_size, 20);
  char buf[256];
  size_t n;
  assert_int_equal(dt__secret_file_read(path, buf, sizeof(buf), &n), 0);
  assert_int_equal(n, 20);
  assert_memory_equal(buf, "0123456789abcdef0123", 20);
  /* replaced atomically, still 0600; trailing newlines and blanks dropped */
  assert_int_equal(dt__secret_file_write(path, "secret-secret-secret\r\n \n", 24), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(dt__secret_file_read(path, buf, sizeof(buf), &n), 0);
  assert_int_equal(n, 20);
  assert_memory_equal(buf, "secret-secret-secret", 20);
  /* too long for cap; missing */
  assert_int_equal(dt__secret_file_read(path, buf, 10, &n), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "longer than 10 bytes"));
  char missing[160];
  snprintf(missing, sizeof(missing), "%s/nope", dir);
  assert_int_equal(dt__secret_file_read(missing, buf, sizeof(buf), &n), DT_EINVAL);
  assert_non_null(strstr(dt_last_error(), "cannot read auth file"));
  assert_non_null(strstr(dt_last_error(), missing));
  snprintf(missing, sizeof(missing), "%s/no/dir/auth", dir);
  assert_int_equal(dt__secret_file_write(missing, "x", 1), DT_EIO);
  assert_non_null(strstr(dt_last_error(), missing));
}

/* ---------------------------------------------------------------- args.h */

static int parse_pair(const char *v, void *dest) {
  int *p = dest;
  if (sscanf(v, "%d:%d", &p[0], &p[1]) != 2) return dt__err(DT_EINVAL, "invalid pair '%s'", v);
  return 0;
}

typedef struct {
  bool flag, nanny;
  const char *str, *checked, *pos;
  int n, pair[2];
  uint64_t size;
  double dur, frac;
  const char *items[3];
  dt_arg_list list;
} opts_t;

static int parse_with(opts_t *o, int argc, char **argv) {
  const dt_arg table[] = {
      DT_OPT_FLAG("--flag", &o->flag, "a flag"),
      DT_OPT_FLAG("--nanny", &o->nanny, "with a nanny"),
      DT_OPT_OFF("--no-nanny", &o->nanny, "without"),
      DT_OPT_STR("--str", &o->str, "S", "a string"),
      DT_OPT_CHECKED("--level", &o->checked, "L", "a log level", dt__args_check_log_level),
      {DT_OPT_("--n", DT_ARG_INT, &o->n, "N", "a number"), .alias = "-n", .min = 0, .max = 10},
      DT_OPT_SIZE("--size", &o->size, "SIZE", "a size"),
      DT_OPT_DURATION("--dur", &o->dur, "D", "a duration"),
      DT_OPT_FRACTION("--frac", &o->frac, "F", "a fraction"),
      DT_OPT_LIST("--item", &o->list, "X", "repeatable"),
      DT_OPT_CALL("--pair", o->pair, "A:B", "two numbers", parse_pair),
      {0}};
  const dt_args spec = {"prog", "[options] POS", "About it.", table, &o->pos, "The end.\n"};
  return dt__args_parse(&spec, argc, argv);
}

static void reset(opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->nanny = true;
  o->n = 5;
  o->list = (dt_arg_list){o->items, 0, 3};
}

static void test_args_accepts(void **state) {
  (void)state;
  opts_t o;
  reset(&o);
  char *argv[] = {"--flag", "--str", "-dash-value", "--level=debug", "-n", "7", "--size", "4GiB",
                  "--dur=1h30m", "--frac", "0.5", "--item", "a", "--item=b", "--pair", "3:4", "--no-nanny",
                  "position", "--", "--str"};
  assert_int_equal(parse_with(&o, 17, argv), 0);
  assert_true(o.flag);
  assert_false(o.nanny);
  assert_string_equal(o.str, "-dash-value"); /* a value is taken as is */
  assert_string_equal(o.checked, "debug");
  assert_int_equal(o.n, 7);
  assert_int_equal(o.size, 4 * GIB);
  assert_true(o.dur == 5400);
  assert_true(o.frac == 0.5);
  assert_int_equal(o.list.n, 2);
  assert_string_equal(o.items[0], "a");
  assert_string_equal(o.items[1], "b");
  assert_int_equal(o.pair[0], 3);
  assert_int_equal(o.pair[1], 4);
  assert_null(o.pos);
  reset(&o);
  assert_int_equal(parse_with(&o, 20, argv), DT_EINVAL); /* "--" then a second positional */
  assert_non_null(strstr(dt_last_error(), "unexpected argument '--str'"));
  reset(&o);
  assert_int_equal(parse_with(&o, 19, argv), 0);
  assert_string_equal(o.pos, "position");
  reset(&o);
  char *argv2[] = {"--", "--looks-like-an-option"};
  assert_int_equal(parse_with(&o, 2, argv2), 0);
  assert_string_equal(o.pos, "--looks-like-an-option");
  reset(&o);
  assert_int_equal(parse_with(&o, 0, NULL), 0); /* defaults stay */
  assert_int_equal(o.n, 5);
  assert_true(o.nanny);
  char *help[] = {"--str", "x", "--help", "--bogus"};
  assert_int_equal(parse_with(&o, 4, help), DT_ARGS_HELP);
  char *h[] = {"-h"};
  assert_int_equal(parse_with(&o, 1, h), DT_ARGS_HELP);
}

static void test_args_refuses(void **state) {
  (void)state;
  static const struct {
    int argc;
    char *argv[3];
    const char *msg;
  } bad[] = {
      {1, {"--bogus"}, "unknown option '--bogus'"},
      {1, {"--bogus=1"}, "unknown option '--bogus=1'"},
      {1, {"-x"}, "unknown option '-x'"},
      {1, {"--str"}, "--str needs a value (S)"},
      {1, {"--flag=yes"}, "--flag takes no value, not 'yes'"},
      {2, {"-n", "11"}, "--n: invalid number '11' (a whole number from 0 to 10)"},
      {2, {"--n", "x"}, "--n: invalid number 'x'"},
      {1, {"--n="}, "--n: invalid number ''"},
      {2, {"--size", "4XB"}, "--size: invalid size '4XB'"},
      {2, {"--dur", "5x"}, "--dur: invalid duration '5x'"},
      {2, {"--frac", "2"}, "--frac: invalid fraction '2'"},
      {2, {"--level", "loud"}, "--level: unknown log level 'loud'"},
      {2, {"--pair", "3"}, "--pair: invalid pair '3'"},
      {2, {"a", "b"}, "unexpected argument 'b'"},
      {3, {"--item=1", "--item=2", "--item=3"}, NULL},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    opts_t o;
    reset(&o);
    if (!bad[i].msg) { /* the list holds 3: a fourth is refused */
      char *four[] = {"--item=1", "--item=2", "--item=3", "--item=4"};
      assert_int_equal(parse_with(&o, 3, four), 0);
      assert_int_equal(parse_with(&o, 4, (reset(&o), four)), DT_EINVAL);
      assert_string_equal(dt_last_error(), "--item: at most 3 values");
      continue;
    }
    assert_int_equal(parse_with(&o, bad[i].argc, (char **)bad[i].argv), DT_EINVAL);
    if (!strstr(dt_last_error(), bad[i].msg)) fail_msg("'%s', not '%s'", dt_last_error(), bad[i].msg);
  }
}

static void test_args_help(void **state) {
  (void)state;
  bool f = false;
  const char *s = NULL;
  int n = 0;
  const dt_arg table[] = {
      DT_OPT_FLAG("--flag", &f, "a flag"),
      DT_OPT_STR("--a-very-long-option-name", &s, "VALUE", "first line\nsecond line"),
      {DT_OPT_("--count", DT_ARG_INT, &n, "N", "how many"), .alias = "-n"},
      {0}};
  const dt_args spec = {"prog", "[options] POS", "About it.", table, NULL, "The end.\n"};
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  dt__args_help(&spec, m);
  fclose(m);
  assert_string_equal(buf,
                      "usage: prog [options] POS\n"
                      "About it.\n"
                      "options:\n"
                      "  --flag                 a flag\n"
                      "  --a-very-long-option-name VALUE\n"
                      "                         first line\n"
                      "                         second line\n"
                      "  -n, --count N          how many\n"
                      "  -h, --help             print this help\n"
                      "The end.\n");
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_durations),
      cmocka_unit_test(test_numbers_and_fractions),
      cmocka_unit_test(test_resources),
      cmocka_unit_test(test_addresses),
      cmocka_unit_test(test_memory_limits),
      cmocka_unit_test_setup_teardown(test_scheduler_file, make_dir, remove_dir),
      cmocka_unit_test_setup_teardown(test_secret_file, make_dir, remove_dir),
      cmocka_unit_test(test_args_accepts),
      cmocka_unit_test(test_args_refuses),
      cmocka_unit_test(test_args_help),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
