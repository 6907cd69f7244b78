/*
 * parse.h -- the one place where dtask reads the settings a user types:
 * sizes, durations, resource lists, addresses, memory limits, numbers and
 * fractions, and the small files processes hand each other (the scheduler
 * file, the secret file).  Every parser returns 0, or DT_EINVAL with a
 * message (dt_last_error()) that quotes the value it could not read; none
 * writes its output on failure.  Every function may be called from any
 * thread.
 */
#ifndef DT_PARSE_H
#define DT_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* dt__size_parse: bytes from "4GiB", "4 GB", "512MiB", "1.5e9", "100k",
 * "0".  A number, optional blanks, an optional unit (case ignored): b, kb,
 * mb, gb, tb, pb (powers of 1000); kib, mib, gib, tib, pib, and k, m, g, t,
 * ki, mi, gi, ti (powers of 1024).  Negative, non-finite and over-2^64
 * values are refused. */
int dt__size_parse(const char *s, uint64_t *out);

/* dt__duration_parse: seconds from "90s", "500ms", "1.5h", "1h30m",
 * "2m 30s", "30" (seconds), or a batch system's walltime: "MM:SS",
 * "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS" ("00:10" is ten seconds, as
 * for Slurm and PBS).  Units: us, ms, s, m, h, d (and sec(onds),
 * min(utes), hour(s), day(s)). */
int dt__duration_parse(const char *s, double *seconds);

/* dt__int_parse: a whole decimal number in [min, max]; the error names the
 * range. */
int dt__int_parse(const char *s, long min, long max, long *out);

/* dt__fraction_parse: a fraction in (0, 1], or 0 for none from "0",
 * "false", "off" (the worker's --memory-target and friends). */
int dt__fraction_parse(const char *s, double *out);

/* ---- resources: "GPU=2,MEM=1e9" (commas or blanks between entries; an
 * amount may carry a size unit: "MEM=4GiB").  dt__resource_list_parse
 * makes new arrays (free with dt__resource_list_free); at most 64 entries;
 * "" or NULL is the empty list.  On error nothing is left to free. */
int dt__resource_list_parse(const char *spec, char ***names, double **amounts, uint32_t *n);
void dt__resource_list_free(char **names, double *amounts, uint32_t n);

/* ---- addresses: "tcp://host:port", "tls://host:port", "host:port",
 * "[::1]:port".  The host is kept without brackets. */
typedef struct {
  bool tls;       /* written tls:// */
  char host[256]; /* name or IP, no brackets */
  int port;       /* 0..65535 */
} dt_addr;
int dt__addr_parse(const char *s, dt_addr *out);
/* dt__addr_format: "host:port" or "[v6]:port" (no scheme) into buf;
 * returns buf. */
char *dt__addr_format(const dt_addr *a, char *buf, size_t cap);

/* ---- memory limits: the bytes a worker may hold, 0 meaning no limit.
 * "auto" (and NULL or ""): dt__memory_auto(nthreads, total_threads); a
 * plain number in (0, 1], e.g. "0.5": that fraction of the machine's
 * memory; "0" or "none": no limit; anything else a size ("2GiB"). */
int dt__memory_limit_parse(const char *s, int nthreads, int total_threads, uint64_t *out);
/* dt__memory_total: the machine's physical memory in bytes. */
uint64_t dt__memory_total(void);
/* dt__memory_auto: THE "auto" formula (Dask's): total memory times
 * min(1, nthreads / total_threads), where total_threads <= 0 means the
 * number of CPUs.  A worker passes its threads; a LocalCluster of n
 * workers passes (1, n), which divides the machine among them. */
uint64_t dt__memory_auto(int nthreads, int total_threads);

/* ---- the scheduler file: JSON that `dtask scheduler --scheduler-file`
 * writes, {"type": "Scheduler", "address": "tcp://h:p", "pid": N,
 * "dashboard": "URL"}.
 * dt__scheduler_file_read: its "address" (as written, scheme included)
 * into out; DT_ENOTFOUND if the file cannot be read, DT_EINVAL if it has no
 * address or it does not fit in cap. */
int dt__scheduler_file_read(const char *path, char *out, size_t cap);
/* dt__scheduler_file_write: writes the file atomically (a temporary file
 * beside it, then rename): a reader sees the old file or the whole new one.
 * url is the address with its scheme; dashboard may be NULL or "". */
int dt__scheduler_file_write(const char *path, const char *url, const char *dashboard, int pid);

/* ---- secret files: a shared secret only this user can read.
 * dt__secret_file_write: writes len bytes to path, mode 0600, atomically
 * (replacing what was there).  DT_EIO with the path and the reason. */
int dt__secret_file_write(const char *path, const void *secret, size_t len);
/* dt__secret_file_read: the file's content without trailing newlines,
 * carriage returns and blanks into out (cap bytes at most; not
 * NUL-terminated); *len its length.  DT_EINVAL naming the file if it cannot
 * be read or is longer than cap. */
int dt__secret_file_read(const char *path, void *out, size_t cap, size_t *len);

#endif
