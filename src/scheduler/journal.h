/*
 * journal.h -- the scheduler's journal (docs/reliability.md, "The
 * scheduler's journal"): what it must not forget, appended to a file so
 * that a scheduler restarted at the same address carries on.
 *
 * The file: a 40-byte header (magic "DTJOURNL", u32 version, u32 header
 * length, 16-byte cluster id, u32 flags, u32 CRC-32C of the 36 bytes before
 * it), then records, each u32 length | u32 CRC-32C of the payload |
 * payload (one type byte, then the fields; integers little-endian, strings
 * u32 length + bytes).  journal.c writes (hooks append records to one
 * growing buffer; the loop's prepare and check handles write it with one
 * write() per turn, never fsync) and compacts (a snapshot of the live state
 * into a new file, renamed over the old, when the file passes max(limit,
 * 2 x the last snapshot)); journal_replay.c reads and replays.
 *
 * Hooks are single calls behind DT_JOURNAL(): a test of one global when
 * the journal is off (or muted during replay).
 */
#ifndef DT_SCHED_JOURNAL_H
#define DT_SCHED_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "state.h"

#define DT_JOURNAL_MAGIC "DTJOURNL"
#define DT_JOURNAL_VERSION 1u
#define DT_JOURNAL_HDR 40u
#define DT_JOURNAL_REC_MAX (256u << 20) /* one record's payload, at most */

/* record types */
enum {
  JR_CLIENT = 1, /* u32 id, u8 internal, str name */
  JR_CLIENT_GONE, /* u32 id */
  JR_WANT,       /* u32 client id, str key, str key...: consecutive wants
                    (releases) of one client share a record */
  JR_RELEASE,    /* u32 client id, str key, str key... */
  JR_TASK,       /* str key, str func, i64 priority, i32 retries, f64 timeout,
                    u32 ndeps, str deps..., u32 nrestrict, str..., u8 loose,
                    u32 nres, (str name, f64 amount)..., payload */
  JR_MEMORY,     /* str key, u64 nbytes, str worker address */
  JR_ERRED,      /* str key, i32 code, str origin, str func, str worker, str msg */
  JR_RELEASED,   /* str key, str key...: their results or errors are gone */
  JR_FORGET,     /* str key, str key... */
  JR_WORKER,     /* str address */
  JR_WORKER_GONE, /* str address */
  JR_SNAPSHOT,   /* u64 records in the snapshot that follows (informational) */
  JR_DATASET,    /* str name, payload, u32 nkeys, str keys... (published) */
  JR_DATASET_GONE, /* str name (unpublished) */
  JR_PRIM,       /* str name, u8 kind, then by kind: variable u8 has [payload, u32 nkeys,
                    str keys...]; lock, multilock u32 holder client; event u8 set;
                    semaphore i64 max_leases, u32 n, u32 client ids... */
  JR_PRIM_GONE,  /* str name: the primitive holds nothing (its queue items go too) */
  JR_QPUSH,      /* str name, i64 maxsize, payload, u32 nkeys, str keys...: an item in */
  JR_QPOP,       /* str name: the item at the head is out */
  JR_TASKW,      /* a task as its client sent it: the UPDATE_GRAPH tasks-list
                    element's msgpack bytes, decoded again only on replay
                    (tasks whose spec has no frames; others are JR_TASK) */
  JR_COUNT
};

extern bool dt__journal_on; /* recording (a journal is open and not muted) */
#define DT_JOURNAL(call) \
  do {                   \
    if (dt__journal_on) call; \
  } while (0)

typedef struct {
  uint64_t file_bytes;   /* the journal file's size now */
  uint64_t written;      /* bytes written since the start */
  uint64_t records;      /* records appended since the start */
  uint64_t compactions;
  uint64_t snapshot_bytes; /* size of the last snapshot */
  double replay_s;       /* the replay at start-up took this long */
  uint64_t replayed;     /* records replayed */
  bool recovering;       /* waiting for the workers and clients of before */
  bool failed;           /* a write failed: journaling stopped */
} dt_journal_stats;
void dt__journal_stats(dt_journal_stats *out);

/* ---- the CRC and the header */
uint32_t dt__crc32c(uint32_t crc, const void *p, size_t n);
/* dt__journal_cluster_id: the 16-byte id of a cluster: a hash of what names
 * it (its address, its secret's dashboard token, or --cluster-id). */
void dt__journal_cluster_id(const char *name, uint8_t id[16]);
void dt__journal_header(uint8_t out[DT_JOURNAL_HDR], const uint8_t id[16]);

/* ---- reading (journal_replay.c): untrusted bytes */
typedef struct {
  const uint8_t *p;
  size_t len, off;
  uint64_t nrec;
  bool torn; /* a torn tail was cut off at off */
} dt_jreader;
/* dt__jr_open: checks the header (magic, version, CRC and, if id, the
 * cluster id).  0, or DT_EPROTO with why. */
int dt__jr_open(dt_jreader *r, const void *buf, size_t len, const uint8_t *id, char *why,
                size_t cap);
/* dt__jr_next: the next record: 1 (payload in *rec, *rlen), 0 at the end
 * (r->torn when a truncated last record was cut off), or DT_EPROTO with
 * why (corruption before the end: refuse the file). */
int dt__jr_next(dt_jreader *r, const uint8_t **rec, uint32_t *rlen, char *why, size_t cap);
/* dt__journal_replay_buf: replays a whole journal (buf) into s, a fresh
 * state machine: its tasks, what clients wanted (held by one recovery
 * client until they come back), errors.  0, or DT_EPROTO with why (s is
 * then as it was, empty).  *good gets the bytes up to the last good record
 * (less than len for a torn tail). */
int dt__journal_replay_buf(sched *s, const void *buf, size_t len, const uint8_t *id,
                           size_t *good, char *why, size_t cap);
/* what the replay found: the recovery holder (or NULL), how many clients
 * and which workers (addresses) to wait for */
s_client *dt__journal_holder(void);
uint32_t dt__journal_pending_clients(void);
void dt__journal_replay_forget(void); /* drops the replay's bookkeeping */
/* dt__journal_expect_worker: is address one of the workers of before (and
 * forget it)?  dt__journal_expected_workers: how many are still awaited */
bool dt__journal_expect_worker(const char *address);
size_t dt__journal_expected_workers(void);

/* ---- the scheduler (journal.c) */
/* dt__journal_start: opens (or creates) path for the scheduler srv runs:
 * replays what it holds into the scheduler's state, then starts a fresh
 * snapshot.  0, or an error with why (the scheduler must refuse to start). */
int dt__journal_start(sched *s, uv_loop_t *loop, const char *path, const uint8_t id[16],
                      uint64_t max_bytes, double worker_grace_s, double client_grace_s, char *why,
                      size_t cap);
/* dt__journal_info: 3 entries of INFO_REPLY's counts: journal_bytes,
 * journal_compactions, journal_replay_us */
void dt__journal_info(dt_enc *e);
/* dt__journal_welcome: a client said hello: tell it to reconnect after a crash */
void dt__journal_welcome(void *conn);
void dt__journal_stop(void);
/* dt__journal_flush: writes what the last turn appended (prepare/check) */
void dt__journal_flush(void);
/* ---- the daemon's options (journal_cli.c) */
typedef struct {
  const char *path, *cluster_id;
  uint64_t max_bytes;
  double grace_s;
  bool restart;
  double client_grace_s; /* --journal-client-grace: clients of before are awaited (120 s) */
} dt__journal_opts;
/* dt__journal_cli: takes argv[*i] (and its value) if it is a journal option:
 * 1, 0 (not one), -1 (invalid: said on stderr) */
int dt__journal_cli(dt__journal_opts *o, int argc, char **argv, int *i);
/* dt__journal_open_srv: opens o->path for the daemon (dt__srv) at address;
 * 0 or -1 (said on stderr) */
int dt__journal_open_srv(const dt__journal_opts *o, const char *address);
/* dt__journal_supervise: --restart-on-crash: -1 in the scheduler (a child
 * process), the exit status in the supervisor when it is done */
int dt__journal_supervise(int *ready_fd);
/* ---- hooks, behind DT_JOURNAL() */
/* raw/raw_lens (or NULL): each task's element of UPDATE_GRAPH as received,
 * journaled as it is (JR_TASKW) instead of encoded again */
void dt__journal_graph(const s_client *c, const s_newtask *ts, uint32_t n, const char **wanted,
                       const uint32_t *wanted_lens, uint32_t nwanted, const char *const *raw,
                       const uint32_t *raw_lens);
/* handle_clients.c: a decoded task record as an s_newtask (strings, and a
 * frameless spec (spec_borrowed), borrowed
 * from the record's bytes), 0 or DT_EPROTO; and freeing what it allocated */
struct dt_rec_task;
int dt__newtask_of(const struct dt_rec_task *r, s_newtask *t);
void dt__newtask_free(s_newtask *t);
void dt__journal_client(const s_client *c, bool gone);
void dt__journal_want(const s_client *c, const char *key, uint32_t klen, bool want);
void dt__journal_holds(const s_task *t, const s_worker *w);
void dt__journal_erred(const s_task *t);
void dt__journal_transition(const s_task *t, int from, int to);
void dt__journal_worker(const s_worker *w, bool gone);
struct coord_val;
/* dt__journal_dataset: name published with v (NULL: unpublished) */
void dt__journal_dataset(const char *name, const struct coord_val *v);
/* set by the daemon before a replay: installs a replayed dataset (v is
 * handed over); NULL (tests, the fuzzer): datasets are read, not installed */
extern void (*dt__journal_ds_restore)(const char *name, uint32_t nlen, struct coord_val *v);
/* dt__journal_worker_back: a worker said hello (after its held keys):
 * while recovering it waits (paused) until the workers of before are back */
void dt__journal_worker_back(s_worker *w, bool after_held);
/* dt__journal_client_back: a client came back (RESUME) */
void dt__journal_client_back(const s_client *c);
/* dt__journal_recovering: workers of before are still awaited (they are
 * kept paused) */
bool dt__journal_recovering(void);
/* dt__journal_on_resume: RESUME from a client (dispatch.c's table) */
struct dt_conn;
int dt__journal_on_resume(struct dt_conn *c, const dt_msg *m);
/* dt__journal_on_resume_as: RESUME_AS (journal_coord.c) */
int dt__journal_on_resume_as(struct dt_conn *c, const dt_msg *m);

/* ---- coordination primitives (journal_coord.c): writing, through these
 * record builders of journal.c */
void dt__jw_begin(int type);
void dt__jw_end(void);
void dt__jw_n(uint64_t v, int n);
void dt__jw_str(const char *s, size_t n);
void dt__jw_payload(const dt_payload *p);
struct prim;
void dt__journal_prim(const struct prim *p);
void dt__journal_prim_gone(const char *name, uint32_t nlen);
void dt__journal_qpush(const struct prim *p, const struct coord_val *v);
void dt__journal_qpop(const struct prim *p);
void dt__journal_coord_snapshot(void); /* every primitive (the daemon's) */
/* reading: 1 (a coordination record, scanned), 0 (one, malformed), -1
 * (another type) */
int dt__jr_coord_scan(const uint8_t *rec, uint32_t len);
/* after the scan: the primitives restored into the daemon's coordination
 * state when dt__journal_coord_install (else only decoded and dropped) */
extern bool dt__journal_coord_install;
void dt__jr_coord_apply(void);
/* a client of before (not internal): its locks and leases are kept for it
 * until it comes back (same name, RESUME) or the client grace passes */
void dt__journal_coord_old_client(uint32_t id, const char *name, uint32_t nlen);
/* a client came back as old_id (RESUME_AS; the same name too): what it
 * held is its own again */
void dt__journal_coord_client_back(uint32_t new_id, uint32_t old_id, const char *name);
/* the grace passed: what the clients that did not come back held goes */
void dt__journal_coord_orphans(void);
/* dt__jr_coord_forget: drops the scan's bookkeeping (all: the old clients' too) */
void dt__jr_coord_forget(bool all);

#endif
