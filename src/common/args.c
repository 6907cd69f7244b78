/*
 * args.c -- the option-table command-line parser (see args.h): reads argv
 * against a table of options, checks each value with parse.h, and writes
 * the --help text from the same table.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "common.h"
#include "parse.h"

/* find: the row for option a (up to len characters), or NULL */
static const dt_arg *find(const dt_arg *opts, const char *a, size_t len) {
  for (const dt_arg *o = opts; o->name; o++) {
    if (strlen(o->name) == len && strncmp(o->name, a, len) == 0) return o;
    if (o->alias && strlen(o->alias) == len && strncmp(o->alias, a, len) == 0) return o;
  }
  return NULL;
}

static bool takes_value(const dt_arg *o) {
  return o->kind != DT_ARG_FLAG && o->kind != DT_ARG_FLAG_OFF && !(o->kind == DT_ARG_CALL && !o->meta);
}

/* fail: "OPTION: <the parser's message>" */
static int fail(const dt_arg *o) {
  char msg[768];
  snprintf(msg, sizeof(msg), "%s", dt_last_error());
  return dt__err(DT_EINVAL, "%s: %s", o->name, msg);
}

/* apply: value (NULL for flags) to o's destination */
static int apply(const dt_arg *o, const char *v) {
  switch (o->kind) {
  case DT_ARG_FLAG:
    *(bool *)o->dest = true;
    return 0;
  case DT_ARG_FLAG_OFF:
    *(bool *)o->dest = false;
    return 0;
  case DT_ARG_STRING:
    if (o->check && o->check(v) != 0) return fail(o);
    *(const char **)o->dest = v;
    return 0;
  case DT_ARG_INT: {
    long lo = o->min, hi = o->max, n;
    if (lo == 0 && hi == 0) lo = INT_MIN, hi = INT_MAX;
    if (dt__int_parse(v, lo, hi, &n) != 0) return fail(o);
    *(int *)o->dest = (int)n;
    return 0;
  }
  case DT_ARG_SIZE:
    return dt__size_parse(v, (uint64_t *)o->dest) != 0 ? fail(o) : 0;
  case DT_ARG_DURATION:
    return dt__duration_parse(v, (double *)o->dest) != 0 ? fail(o) : 0;
  case DT_ARG_FRACTION:
    return dt__fraction_parse(v, (double *)o->dest) != 0 ? fail(o) : 0;
  case DT_ARG_LIST: {
    dt_arg_list *l = o->dest;
    if (l->n >= l->cap) return dt__err(DT_EINVAL, "%s: at most %zu values", o->name, l->cap);
    l->v[l->n++] = v;
    return 0;
  }
  case DT_ARG_CALL:
    return o->call(v, o->dest) != 0 ? fail(o) : 0;
  }
  return dt__err(DT_EINVAL, "%s: unknown option kind", o->name);
}

int dt__args_parse(const dt_args *spec, int argc, char **argv) {
  bool options = true, got_positional = false;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (options && strcmp(a, "--") == 0) {
      options = false;
      continue;
    }
    if (!options || a[0] != '-' || a[1] == '\0') {
      if (!spec->positional || got_positional)
        return dt__err(DT_EINVAL, "unexpected argument '%s'", a);
      *spec->positional = a;
      got_positional = true;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return DT_ARGS_HELP;
    const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
    const dt_arg *o = find(spec->opts, a, eq ? (size_t)(eq - a) : strlen(a));
    if (!o) return dt__err(DT_EINVAL, "unknown option '%s'", a);
    const char *v = NULL;
    if (takes_value(o)) {
      if (eq) v = eq + 1;
      else if (i + 1 < argc) v = argv[++i];
      else return dt__err(DT_EINVAL, "%s needs a value (%s)", o->name, o->meta ? o->meta : "VALUE");
    } else if (eq) {
      return dt__err(DT_EINVAL, "%s takes no value, not '%s'", o->name, eq + 1);
    }
    int rc = apply(o, v);
    if (rc) return rc;
  }
  return 0;
}

/* put_help: help's lines, the first after col characters already written */
static void put_help(FILE *f, int col, const char *help) {
  const int at = 25;
  if (!help || !*help) {
    fputc('\n', f);
    return;
  }
  if (col > at - 2) {
    fputc('\n', f);
    col = 0;
  }
  for (const char *p = help; *p;) {
    const char *nl = strchr(p, '\n');
    int n = nl ? (int)(nl - p) : (int)strlen(p);
    fprintf(f, "%*s%.*s\n", at - col, "", n, p);
    col = 0;
    p = nl ? nl + 1 : p + n;
  }
}

void dt__args_help(const dt_args *spec, FILE *f) {
  fprintf(f, "usage: %s %s\n", spec->prog, spec->synopsis ? spec->synopsis : "[options]");
  if (spec->about) fprintf(f, "%s%s", spec->about, spec->about[strlen(spec->about) - 1] == '\n' ? "" : "\n");
  fprintf(f, "options:\n");
  for (const dt_arg *o = spec->opts; o->name; o++) {
    int col = fprintf(f, "  %s%s%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name,
                      takes_value(o) ? " " : "", takes_value(o) ? (o->meta ? o->meta : "VALUE") : "");
    put_help(f, col, o->help);
  }
  int col = fprintf(f, "  -h, --help");
  put_help(f, col, "print this help");
  if (spec->epilog) fputs(spec->epilog, f);
}

bool dt__args_run(const dt_args *spec, int argc, char **argv, int *exit_code) {
  int rc = dt__args_parse(spec, argc, argv);
  if (rc == 0) return false;
  if (rc == DT_ARGS_HELP) {
    dt__args_help(spec, stdout);
    *exit_code = 0;
    return true;
  }
  fprintf(stderr, "%s: %s\nusage: %s %s  (%s --help lists the options)\n", spec->prog, dt_last_error(),
          spec->prog, spec->synopsis ? spec->synopsis : "[options]", spec->prog);
  *exit_code = 2;
  return true;
}

/* ---------------------------------------------------------------- checks */

int dt__args_check_duration(const char *v) {
  double d;
  return dt__duration_parse(v, &d);
}

int dt__args_check_size(const char *v) {
  uint64_t n;
  return dt__size_parse(v, &n);
}

int dt__args_check_memory_limit(const char *v) {
  uint64_t n;
  return dt__memory_limit_parse(v, 1, 1, &n);
}

int dt__args_check_resources(const char *v) {
  char **names;
  double *amounts;
  uint32_t n;
  if (dt__resource_list_parse(v, &names, &amounts, &n) != 0) return DT_EINVAL;
  dt__resource_list_free(names, amounts, n);
  return 0;
}

int dt__args_check_address(const char *v) {
  dt_addr a;
  return dt__addr_parse(v, &a);
}

int dt__args_check_log_level(const char *v) {
  if (dt__log_parse_level(v) >= 0) return 0;
  return dt__err(DT_EINVAL, "unknown log level '%s' (debug, info, warning, error)", v);
}
