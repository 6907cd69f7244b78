/*
 * parse.c -- reading what users type (sizes, durations, resources,
 * addresses, memory limits, numbers) and the small files dtask processes
 * hand each other (scheduler file, secret file).  See parse.h for every
 * accepted form; each error quotes the value it refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "parse.h"

/* ---------------------------------------------------------------- sizes */

static const struct {
  const char *unit;
  double mul;
} size_units[] = {
    {"", 1},         {"b", 1},           {"kb", 1e3},          {"mb", 1e6},
    {"gb", 1e9},     {"tb", 1e12},       {"pb", 1e15},         {"kib", 1024.},
    {"mib", 1048576.}, {"gib", 1073741824.}, {"tib", 1099511627776.}, {"pib", 1125899906842624.},
    {"k", 1024.},    {"m", 1048576.},    {"g", 1073741824.},   {"t", 1099511627776.},
    {"ki", 1024.},   {"mi", 1048576.},   {"gi", 1073741824.},  {"ti", 1099511627776.},
};

/* size_value: v bytes from s, or false (no message) */
static bool size_value(const char *s, double *v) {
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  if (end == s || errno == ERANGE || !isfinite(x) || x < 0) return false;
  while (*end == ' ') end++;
  for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++)
    if (strcasecmp(end, size_units[i].unit) == 0) {
      x *= size_units[i].mul;
      if (x >= 18446744073709551616.0) return false; /* 2^64 */
      *v = x;
      return true;
    }
  return false;
}

int dt__size_parse(const char *s, uint64_t *out) {
  double v;
  if (!s || !size_value(s, &v))
    return dt__err(DT_EINVAL, "invalid size '%s' (e.g. 4GiB, 512MB, 1.5e9)", s ? s : "(null)");
  *out = (uint64_t)v;
  return 0;
}

/* ---------------------------------------------------------------- durations */

static const struct {
  const char *unit;
  double mul;
} time_units[] = {
    {"us", 1e-6},  {"ms", 1e-3},     {"s", 1},        {"sec", 1},    {"second", 1},
    {"seconds", 1}, {"m", 60},       {"min", 60},     {"minute", 60}, {"minutes", 60},
    {"h", 3600},   {"hour", 3600},   {"hours", 3600}, {"d", 86400},  {"day", 86400},
    {"days", 86400},
};

/* walltime: [D-]H[:M[:S]] with a day, else M:S or H:M:S; -1 if not one */
static double walltime(const char *s) {
  long f[4];
  int n = 0;
  long days = 0;
  const char *p = s;
  const char *dash = strchr(s, '-');
  if (dash) {
    char *end;
    days = strtol(s, &end, 10);
    if (end != dash || end == s || days < 0) return -1;
    p = dash + 1;
  }
  for (;;) {
    if (*p < '0' || *p > '9' || n == 3) return -1;
    char *end;
    f[n++] = strtol(p, &end, 10);
    if (*end == '\0') break;
    if (*end != ':') return -1;
    p = end + 1;
  }
  if (dash) { /* D-H, D-H:M, D-H:M:S */
    double t = days * 86400.0 + f[0] * 3600.0;
    if (n > 1) t += f[1] * 60.0;
    if (n > 2) t += (double)f[2];
    return (n > 1 && f[1] > 59) || (n > 2 && f[2] > 59) ? -1 : t;
  }
  if (n == 2) return f[1] > 59 ? -1 : f[0] * 60.0 + (double)f[1]; /* M:S */
  if (n == 3) return f[1] > 59 || f[2] > 59 ? -1 : f[0] * 3600.0 + f[1] * 60.0 + (double)f[2];
  return -1;
}

/* is_walltime: "H:M..." or "D-H..." (digits, then a dash) */
static bool is_walltime(const char *s) {
  if (strchr(s, ':')) return true;
  size_t d = strspn(s, "0123456789");
  return d > 0 && s[d] == '-';
}

static bool duration_value(const char *s, double *out) {
  if (is_walltime(s)) {
    double t = walltime(s);
    if (t < 0) return false;
    *out = t;
    return true;
  }
  double total = 0;
  int terms = 0;
  const char *p = s;
  while (*p == ' ') p++;
  while (*p) {
    if (*p == '-' || *p == '+') return false;
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno == ERANGE || !isfinite(v) || v < 0) return false;
    p = end;
    while (*p == ' ') p++;
    const char *u = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')) p++;
    size_t ul = (size_t)(p - u);
    double mul = -1;
    if (ul == 0) mul = 1;
    for (size_t i = 0; ul && i < sizeof(time_units) / sizeof(time_units[0]); i++)
      if (strlen(time_units[i].unit) == ul && strncmp(u, time_units[i].unit, ul) == 0)
        mul = time_units[i].mul;
    if (mul < 0) return false;
    terms++;
    if (ul == 0 && (terms > 1 || *p)) return false; /* a bare number stands alone */
    total += v * mul;
    while (*p == ' ') p++;
  }
  if (!terms || !isfinite(total)) return false;
  *out = total;
  return true;
}

int dt__duration_parse(const char *s, double *seconds) {
  if (!s || !*s) return dt__err(DT_EINVAL, "empty duration");
  double v;
  if (!duration_value(s, &v))
    return dt__err(DT_EINVAL, "invalid duration '%s' (use e.g. 30s, 500ms, 5m, 1h30m, 01:30:00)", s);
  *seconds = v;
  return 0;
}

/* ---------------------------------------------------------------- numbers */

int dt__int_parse(const char *s, long min, long max, long *out) {
  char *end = NULL;
  errno = 0;
  long v = s && *s ? strtol(s, &end, 10) : 0;
  if (!s || !*s || *end || errno == ERANGE || v < min || v > max)
    return dt__err(DT_EINVAL, "invalid number '%s' (a whole number from %ld to %ld)", s ? s : "(null)",
                   min, max);
  *out = v;
  return 0;
}

int dt__fraction_parse(const char *s, double *out) {
  if (s && (strcasecmp(s, "false") == 0 || strcasecmp(s, "off") == 0)) {
    *out = 0;
    return 0;
  }
  char *end = NULL;
  double f = s && *s ? strtod(s, &end) : -1;
  if (!s || !*s || *end || !(f >= 0 && f <= 1))
    return dt__err(DT_EINVAL, "invalid fraction '%s' (a number in (0, 1], or 0/false/off for none)",
                   s ? s : "(null)");
  *out = f;
  return 0;
}

/* ---------------------------------------------------------------- resources */

void dt__resource_list_free(char **names, double *amounts, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) free(names[i]);
  free(names);
  free(amounts);
}

int dt__resource_list_parse(const char *spec, char ***names, double **amounts, uint32_t *n) {
  *names = NULL;
  *amounts = NULL;
  *n = 0;
  if (!spec || !*spec) return 0;
  char *copy = dt__xstrdup(spec), *save = NULL;
  char **nm = NULL;
  double *am = NULL;
  uint32_t k = 0;
  for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
    char *eq = strchr(tok, '=');
    char *end = NULL;
    double v = eq ? strtod(eq + 1, &end) : 0;
    bool ok = eq && eq != tok && end != eq + 1 && isfinite(v) && v >= 0 && k < 64;
    if (ok && *end) ok = size_value(eq + 1, &v); /* "MEM=4GiB" */
    if (!ok) {
      int rc = dt__err(DT_EINVAL, "invalid resource '%s' (expected NAME=AMOUNT)", tok);
      free(copy);
      dt__resource_list_free(nm, am, k);
      return rc;
    }
    nm = dt__xrealloc(nm, (k + 1) * sizeof(char *));
    am = dt__xrealloc(am, (k + 1) * sizeof(double));
    nm[k] = dt__xstrndup(tok, (size_t)(eq - tok));
    am[k] = v;
    k++;
  }
  free(copy);
  *names = nm;
  *amounts = am;
  *n = k;
  return 0;
}

/* ---------------------------------------------------------------- addresses */

int dt__addr_parse(const char *s, dt_addr *out) {
  const char *a = s;
  bool tls = false;
  if (!a) return dt__err(DT_EINVAL, "no address");
  const char *scheme = strstr(a, "://");
  if (scheme) {
    if (strncmp(a, "tcp://", 6) == 0) a += 6;
    else if (strncmp(a, "tls://", 6) == 0) a += 6, tls = true;
    else return dt__err(DT_EINVAL, "invalid address '%s' (the scheme must be tcp:// or tls://)", s);
  }
  const char *h = a, *colon;
  size_t hlen;
  if (a[0] == '[') {
    const char *rb = strchr(a, ']');
    if (!rb || rb[1] != ':') goto bad;
    h = a + 1;
    hlen = (size_t)(rb - h);
    colon = rb + 1;
  } else {
    colon = strrchr(a, ':');
    if (!colon) goto bad;
    hlen = (size_t)(colon - a);
  }
  if (hlen == 0 || hlen >= sizeof(out->host)) goto bad;
  char *end;
  errno = 0;
  long p = strtol(colon + 1, &end, 10);
  if (*end != '\0' || end == colon + 1 || colon[1] == '-' || colon[1] == '+' || p < 0 || p > 65535)
    goto bad;
  out->tls = tls;
  memcpy(out->host, h, hlen);
  out->host[hlen] = '\0';
  out->port = (int)p;
  return 0;
bad:
  return dt__err(DT_EINVAL, "invalid address '%s' (expected host:port, tcp://host:port or [v6]:port)", s);
}

char *dt__addr_format(const dt_addr *a, char *buf, size_t cap) {
  if (strchr(a->host, ':')) snprintf(buf, cap, "[%s]:%d", a->host, a->port);
  else snprintf(buf, cap, "%s:%d", a->host, a->port);
  return buf;
}

/* ---------------------------------------------------------------- memory */

uint64_t dt__memory_total(void) {
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
}

uint64_t dt__memory_auto(int nthreads, int total_threads) {
  if (total_threads <= 0) total_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
  double total = (double)dt__memory_total();
  double frac = total_threads > 0 && nthreads > 0 && nthreads < total_threads
                    ? (double)nthreads / (double)total_threads : 1;
  return (uint64_t)(total * frac);
}

int dt__memory_limit_parse(const char *s, int nthreads, int total_threads, uint64_t *out) {
  if (!s || !*s || strcasecmp(s, "auto") == 0) {
    *out = dt__memory_auto(nthreads, total_threads);
    return 0;
  }
  if (strcasecmp(s, "none") == 0) {
    *out = 0;
    return 0;
  }
  char *end;
  double f = strtod(s, &end);
  if (end != s && *end == '\0' && f > 0 && f <= 1) { /* a fraction of the machine */
    *out = (uint64_t)((double)dt__memory_total() * f);
    return 0;
  }
  double v;
  if (!size_value(s, &v))
    return dt__err(DT_EINVAL, "invalid memory size '%s' (e.g. 4GiB, 512MB, 0.5, auto, none)", s);
  *out = (uint64_t)v;
  return 0;
}

/* ---------------------------------------------------------------- files */

/* write_atomic: data to path through a temporary file beside it (mode) */
static int write_atomic(const char *path, const void *data, size_t len, mode_t mode) {
  char tmp[4096];
  if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= sizeof(tmp))
    return dt__err(DT_EINVAL, "cannot write '%s': the path is too long", path);
  int fd = mkstemp(tmp); /* 0600, O_EXCL */
  if (fd < 0) return dt__err(DT_EIO, "cannot write '%s': %s", path, strerror(errno));
  const char *p = data;
  size_t left = len;
  int e = 0;
  while (left && !e) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) e = n < 0 ? errno : EIO;
    else p += n, left -= (size_t)n;
  }
  if (!e && fchmod(fd, mode) != 0) e = errno;
  if (!e && fsync(fd) != 0) e = errno;
  if (close(fd) != 0 && !e) e = errno;
  if (!e && rename(tmp, path) != 0) e = errno;
  if (e) {
    unlink(tmp);
    return dt__err(DT_EIO, "cannot write '%s': %s", path, strerror(e));
  }
  return 0;
}

int dt__secret_file_write(const char *path, const void *secret, size_t len) {
  return write_atomic(path, secret, len, 0600);
}

int dt__secret_file_read(const char *path, void *out, size_t cap, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return dt__err(DT_EINVAL, "cannot read auth file '%s': %s", path, strerror(errno));
  unsigned char buf[1024];
  size_t want = cap + 2 < sizeof(buf) ? cap + 2 : sizeof(buf);
  size_t n = fread(buf, 1, want, f);
  fclose(f);
  if (n > cap) return dt__err(DT_EINVAL, "auth file '%s' is longer than %zu bytes", path, cap);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) n--;
  memcpy(out, buf, n);
  *len = n;
  return 0;
}

/* json_string: the JSON string starting at p (after its quote) into out */
static bool json_string(const char *p, char *out, size_t cap) {
  size_t k = 0;
  for (; *p && *p != '"'; p++) {
    char c = *p;
    if (c == '\\') {
      c = *++p;
      if (c == 'n') c = '\n';
      else if (c == 't') c = '\t';
      else if (c != '"' && c != '\\' && c != '/') return false;
    }
    if (k + 1 >= cap) return false;
    out[k++] = c;
  }
  if (*p != '"' || k == 0) return false;
  out[k] = '\0';
  return true;
}

int dt__scheduler_file_read(const char *path, char *out, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f) return dt__err(DT_ENOTFOUND, "cannot read scheduler file '%s': %s", path, strerror(errno));
  char buf[4096];
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *a = strstr(buf, "\"address\"");
  const char *p = a ? a + 9 : NULL;
  while (p && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':')) p++;
  if (!p || *p != '"' || !json_string(p + 1, out, cap))
    return dt__err(DT_EINVAL, "scheduler file '%s' has no \"address\"", path);
  return 0;
}

/* json_put: s as a JSON string's content */
static size_t json_put(char *b, size_t at, size_t cap, const char *s) {
  for (; s && *s && at + 3 < cap; s++) {
    if (*s == '"' || *s == '\\') b[at++] = '\\';
    if ((unsigned char)*s >= 0x20) b[at++] = *s;
  }
  b[at] = '\0';
  return at;
}

int dt__scheduler_file_write(const char *path, const char *url, const char *dashboard, int pid) {
  char b[2048];
  size_t k = (size_t)snprintf(b, sizeof(b), "{\"type\": \"Scheduler\", \"address\": \"");
  k = json_put(b, k, sizeof(b) - 64, url);
  k += (size_t)snprintf(b + k, sizeof(b) - k, "\", \"pid\": %d, \"dashboard\": \"", pid);
  k = json_put(b, k, sizeof(b) - 8, dashboard);
  k += (size_t)snprintf(b + k, sizeof(b) - k, "\"}\n");
  return write_atomic(path, b, k, 0644);
}
