/* msg.h -- the messages (being rewritten as a typed table) */
#ifndef DT_MSG_H
#define DT_MSG_H
#include "proto.h"
/* ---- message types, declared as data */
#define DT_MSG_MAP(X)                                                                   \
  X(HELLO_CLIENT, "client->scheduler", "[version, name]: a client introduces itself")  \
  X(HELLO_WORKER, "worker->scheduler",                                                  \
    "[version, name, address, nthreads, resources{}, pid, nanny_token, "               \
    "[[key, nbytes]...]]: a worker registers, with the results it holds")             \
  X(WELCOME, "scheduler->peer",                                                         \
    "[id, heartbeat_ms, ttl_ms]: registration accepted (workers get the timings)")    \
  X(UPDATE_GRAPH, "client->scheduler",                                                  \
    "[[task...], [wanted key...]]: new tasks; task = [key, func, spec, [dep...], "      \
    "priority, retries, [worker...], allow_other, {resource: amount}]")                  \
  X(RELEASE_KEYS, "client->scheduler", "[[key...]]: the client no longer wants keys")   \
  X(WANT_KEYS, "client->scheduler", "[[key...]]: the client wants existing keys")       \
  X(CANCEL_KEYS, "client->scheduler", "[[key...]]: cancel tasks and release them")      \
  X(SCATTER, "client->scheduler",                                                       \
    "[req, [[key, payload]...], [worker...], broadcast]: put data on workers")           \
  X(SCATTER_DONE, "scheduler->client", "[req, error|nil]: scatter finished")            \
  X(KEY_IN_MEMORY, "scheduler->client",                                                 \
    "[key, worker_address, nbytes, inline|nil]: a result is ready; inline is the "       \
    "encoded result when it is small and a client asked for it (WANT_RESULT)")            \
  X(WANT_RESULT, "client->scheduler",                                                   \
    "[[key...]]: the client waits for these results: send them inline when small")        \
  X(KEY_ERRED, "scheduler->client",                                                     \
    "[key, code, function, worker, message]: a task (or its dependency) failed")        \
  X(KEY_CANCELLED, "scheduler->client", "[key, reason]: a key was cancelled")           \
  X(INFO_REQUEST, "client->scheduler", "[req, detail]: ask for cluster counts (and workers)") \
  X(INFO_REPLY, "scheduler->client",                                                    \
    "[req, {name: count}, [[name, address, nthreads, pid, processing, nkeys, nbytes, "  \
    "age_ms]...] if detail]: cluster counts")                                           \
  X(COMPUTE_TASK, "scheduler->worker",                                                  \
    "[key, func, spec, [[dep, nbytes, [address...]]...], priority, {resource: amount}]") \
  X(FREE_KEYS, "scheduler->worker", "[[key...]]: forget these keys")                    \
  X(PUT_DATA, "scheduler->worker", "[req, [[key, payload]...]]: store scattered data")  \
  X(PUT_DATA_DONE, "worker->scheduler", "[req, [[key, nbytes]...]]: data stored")       \
  X(TASK_FINISHED, "worker->scheduler",                                                 \
    "[key, nbytes, duration_us, inline|nil]: a result is in memory; inline is the "      \
    "encoded result when it is small")                                                   \
  X(TASK_ERRED, "worker->scheduler", "[key, code, function, message]: a task failed")   \
  X(MISSING_DATA, "worker->scheduler", "[key, dep, address]: a dependency could not be fetched") \
  X(HEARTBEAT, "worker<->scheduler",                                                    \
    "[executing, ready, nkeys, nbytes, cpu %, rss] from a worker, [] from the scheduler") \
  X(GET_DATA, "peer->worker", "[req, [key...]]: send me these results")                 \
  X(DATA, "worker->peer", "[req, [[key, found, payload|nil]...]]: the results asked for") \
  X(CLOSE, "any", "[reason]: the sender is closing the connection")                   \
  X(WHO_HAS, "client->scheduler",                                                       \
    "[[key...]]: where is it now? (a fetch failed): KEY_IN_MEMORY when it is held")   \
  X(RETIRE_WORKERS, "client->scheduler",                                                \
    "[req, [name...]]: move what only these workers hold elsewhere, then close them")  \
  X(RETIRE_DONE, "scheduler->client", "[req, retired count, error|nil]")                 \
  X(ACQUIRE, "scheduler->worker",                                                       \
    "[[key, nbytes, from address, source worker id]...]: fetch and keep these")        \
  X(ACQUIRED, "worker->scheduler",                                                      \
    "[[key, nbytes, ok, source worker id]...]: fetched (or not)")                       \
  X(NANNY_REPORT, "nanny->scheduler",                                                   \
    "[nanny_token, pid, how, [key...]]: my worker died while running these keys")

enum {
  DT_OP_NONE = 0,
#define DT__OP_ENUM(name, dir, doc) DT_OP_##name,
  DT_MSG_MAP(DT__OP_ENUM)
#undef DT__OP_ENUM
  DT_OP_COUNT
};

typedef struct {
  int op;
  const char *name;
  const char *direction;
  const char *doc;
} dt_msg_info;
extern const dt_msg_info dt__msgs[DT_OP_COUNT];
const char *dt__op_name(int op);

#define DT_PROTO_VERSION 1

#endif
