/*
 * args.h -- command lines as data: a program declares its options in a
 * table (name, kind, where the value goes, help line) and dt__args_parse
 * reads argv against it.  Long options take "--name value" or
 * "--name=value" (a value may start with '-': it is taken as is); flags
 * take no value; values are checked with the parsers of parse.h, and an
 * error names the option and the value.  "--" ends the options.  The
 * --help text is generated from the same table.
 *
 *   int port = 8786; bool no_auth = false; const char *host = "127.0.0.1";
 *   const dt_arg opts[] = {
 *       DT_OPT_STR("--host", &host, "HOST", "address to listen on"),
 *       DT_OPT_INT("--port", &port, "PORT", "port (0 = any)", 0, 65535),
 *       DT_OPT_FLAG("--no-auth", &no_auth, "no shared secret"),
 *       {0}};
 *   const dt_args spec = {"dtask thing", "[options]", NULL, opts};
 *   int exit_code;
 *   if (dt__args_run(&spec, argc, argv, &exit_code)) return exit_code;
 */
#ifndef DT_ARGS_H
#define DT_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum {
  DT_ARG_FLAG,     /* no value; dest bool*: set true */
  DT_ARG_FLAG_OFF, /* no value; dest bool*: set false (--no-nanny beside --nanny) */
  DT_ARG_STRING,   /* dest const char **: the argv string (borrowed from argv) */
  DT_ARG_INT,      /* dest int *: a whole number in [min, max] */
  DT_ARG_SIZE,     /* dest uint64_t *: dt__size_parse */
  DT_ARG_DURATION, /* dest double *: seconds, dt__duration_parse */
  DT_ARG_FRACTION, /* dest double *: dt__fraction_parse */
  DT_ARG_LIST,     /* repeatable; dest dt_arg_list *: each value appended */
  DT_ARG_CALL,     /* dest passed to call(value, dest) (NULL value for flags
                      if meta is NULL); call's error is the option's error */
} dt_arg_kind;

/* a repeatable option's values: the caller gives the storage */
typedef struct {
  const char **v; /* cap slots */
  size_t n, cap;
} dt_arg_list;

typedef struct dt_arg {
  const char *name;  /* "--cores" */
  const char *alias; /* "-n", or NULL */
  dt_arg_kind kind;
  void *dest;
  const char *meta;  /* the value's name in --help ("N", "FILE"); NULL for flags */
  const char *help;  /* one line or more ('\n' between them) */
  long min, max;     /* DT_ARG_INT: the range (both 0: any int) */
  /* DT_ARG_STRING: optional check of the value (0 or an error from parse.h);
   * DT_ARG_CALL: the action */
  int (*check)(const char *value);
  int (*call)(const char *value, void *dest);
} dt_arg;

typedef struct {
  const char *prog;        /* "dtask local": errors start with it */
  const char *synopsis;    /* after "usage: PROG ", e.g. "[options] ADDRESS" */
  const char *about;       /* paragraph after the usage line, or NULL */
  const dt_arg *opts;      /* ends with a row whose name is NULL */
  const char **positional; /* where one non-option argument goes, or NULL:
                              none allowed */
  const char *epilog;      /* text after the options (e.g. DT_SEC_USAGE), or NULL */
} dt_args;

/* Rows for the table (designated, so that unnamed fields are zero). */
#define DT_OPT_(n, k, d, m, h) .name = (n), .kind = (k), .dest = (d), .meta = (m), .help = (h)
#define DT_OPT_FLAG(n, d, h) {DT_OPT_(n, DT_ARG_FLAG, d, NULL, h)}
#define DT_OPT_OFF(n, d, h) {DT_OPT_(n, DT_ARG_FLAG_OFF, d, NULL, h)}
#define DT_OPT_STR(n, d, m, h) {DT_OPT_(n, DT_ARG_STRING, d, m, h)}
#define DT_OPT_CHECKED(n, d, m, h, fn) {DT_OPT_(n, DT_ARG_STRING, d, m, h), .check = (fn)}
#define DT_OPT_INT(n, d, m, h, lo, hi) {DT_OPT_(n, DT_ARG_INT, d, m, h), .min = (lo), .max = (hi)}
#define DT_OPT_SIZE(n, d, m, h) {DT_OPT_(n, DT_ARG_SIZE, d, m, h)}
#define DT_OPT_DURATION(n, d, m, h) {DT_OPT_(n, DT_ARG_DURATION, d, m, h)}
#define DT_OPT_FRACTION(n, d, m, h) {DT_OPT_(n, DT_ARG_FRACTION, d, m, h)}
#define DT_OPT_LIST(n, d, m, h) {DT_OPT_(n, DT_ARG_LIST, d, m, h)}
#define DT_OPT_CALL(n, d, m, h, fn) {DT_OPT_(n, DT_ARG_CALL, d, m, h), .call = (fn)}

/* dt__args_parse: reads argv[0..argc) (the role or command name excluded)
 * into the table's destinations.  Returns 0; DT_ARGS_HELP if -h/--help was
 * given (nothing after it is read); or DT_EINVAL with a message in
 * dt_last_error() such as "--port: invalid number 'x' (...)", "unknown
 * option '--foo'", "--port needs a value (PORT)".  Destinations of options
 * not given are left as they were (the defaults). */
#define DT_ARGS_HELP 1
int dt__args_parse(const dt_args *spec, int argc, char **argv);

/* dt__args_help: the usage line, about, every option with its help, epilog. */
void dt__args_help(const dt_args *spec, FILE *f);

/* dt__args_run: dt__args_parse for a main(): returns false to go on; true
 * with *exit_code set when the program should stop now: 0 after printing
 * the help to stdout, 2 after printing "PROG: error" and the usage line to
 * stderr. */
bool dt__args_run(const dt_args *spec, int argc, char **argv, int *exit_code);

/* checks for DT_ARG_STRING rows (0 or DT_EINVAL naming the value) */
int dt__args_check_duration(const char *v);
int dt__args_check_size(const char *v);
int dt__args_check_memory_limit(const char *v);
int dt__args_check_resources(const char *v);
int dt__args_check_address(const char *v);
int dt__args_check_log_level(const char *v);

#endif
