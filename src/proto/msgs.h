/*
 * msgs.h -- every message of the protocol, declared once, as data.
 *
 * DT_MESSAGES lists the messages: name, direction, what it says.  For each,
 * DT_MSG_<NAME>(F, L, LR, M) lists its fields in wire order, and for each
 * record (an element of a list of records) DT_REC_<name>(F, L, LR, M) lists
 * its fields:
 *
 *   F(KIND, field, doc)   one value: UINT INT DOUBLE BOOL STR STRN (string or
 *                         nil) KEY (string, 1..DT_MAX_KEY bytes, no NUL) BINN
 *                         (bytes or nil) PAYLOAD (an encoded value: three
 *                         wire elements, see proto.h)
 *   L(KIND, field, doc)   a list of values of one kind (KEY, STR, UINT)
 *   LR(rec, field, doc)   a list of records
 *   M(KIND, field, doc)   a map from strings to values of one kind (INT, DOUBLE)
 *
 * msg.h turns these into one C struct per message and record, decoders that
 * check the arity and the type of every field (lists included) before a
 * handler sees a byte, the checked encoder, and the table that
 * docs/architecture.md prints (msg_test checks the two agree).
 */
#ifndef DT_MSGS_H
#define DT_MSGS_H

/* ---- records: elements of lists */
#define DT_RECORDS(R)                                                       \
  R(keynb, "a key and the size of its result")                              \
  R(task, "a task submitted by a client")                                   \
  R(keyval, "a key and its value")                                          \
  R(dep, "a dependency of a task to compute, and where it is held")         \
  R(wrow, "one worker, as the scheduler sees it")                           \
  R(data, "a result sent to a peer (its value, or where to map it)")        \
  R(move, "a result to fetch from another worker and keep")                 \
  R(moved, "the outcome of a move")                                        \
  R(fin, "a task a worker finished (TASKS_FINISHED)")

#define DT_REC_keynb(F, L, LR, M) \
  F(KEY, key, "the key")          \
  F(UINT, nbytes, "size of the result in bytes")

#define DT_REC_task(F, L, LR, M)                                                 \
  F(KEY, key, "the task's key")                                                  \
  F(STR, func, "the registered task function")                                   \
  F(PAYLOAD, spec, "the arguments: [args, kwargs], futures inside are its deps") \
  L(KEY, deps, "keys it depends on")                                             \
  F(INT, priority, "user priority (higher runs first)")                          \
  F(INT, retries, "times to retry it when it fails")                             \
  L(STR, workers, "workers (names or addresses) it may run on; empty: any")      \
  F(BOOL, allow_other, "it may run elsewhere when those are busy")               \
  M(DOUBLE, resources, "abstract resources one run holds")                       \
  F(DOUBLE, timeout, "seconds one run may take (0: no limit); past it the task fails and its worker restarts")

#define DT_REC_keyval(F, L, LR, M) \
  F(KEY, key, "the key")           \
  F(PAYLOAD, value, "its value")

#define DT_REC_dep(F, L, LR, M)          \
  F(KEY, key, "the dependency's key")    \
  F(UINT, nbytes, "its size in bytes")   \
  L(STR, who_has, "addresses of the workers that hold it")

#define DT_REC_wrow(F, L, LR, M)                                   \
  F(STR, name, "the worker's name")                                \
  F(STR, address, "where it serves its results")                   \
  F(UINT, nthreads, "threads in its pool")                         \
  F(UINT, pid, "its process id")                                   \
  F(UINT, processing, "tasks assigned to it and not finished")     \
  F(UINT, nkeys, "results it holds")                               \
  F(UINT, nbytes, "bytes of results it holds")                     \
  F(UINT, age_ms, "milliseconds since the scheduler heard from it") \
  F(UINT, spilled, "bytes it has spilled to disk")                 \
  F(BOOL, paused, "paused: over its memory pause threshold")       \
  F(UINT, rss, "its resident set size")                            \
  F(UINT, memory, "bytes of results in memory")                    \
  F(UINT, peak_memory, "most bytes of results it held in memory")  \
  F(UINT, memory_limit, "its memory limit in bytes (0: none)")     \
  M(DOUBLE, resources, "abstract resources it has")                \
  F(DOUBLE, cpu, "its CPU use, percent of one core (heartbeats)")

#define DT_REC_data(F, L, LR, M)                                                \
  F(KEY, key, "the key asked for")                                              \
  F(BOOL, found, "held here (false: value and shm are empty)")                  \
  F(PAYLOAD, value, "the value (an empty payload when shm is set)")             \
  F(STRN, shm, "same host: the name of the memfd holding the bytes, else nil") \
  F(UINT, shm_pid, "the process holding that memfd")                            \
  F(UINT, shm_fd, "its descriptor in that process")                             \
  F(UINT, shm_offset, "where the bytes start in it")                            \
  F(UINT, shm_len, "how many bytes")

#define DT_REC_move(F, L, LR, M)                          \
  F(KEY, key, "the key")                                  \
  F(UINT, nbytes, "its size in bytes")                    \
  F(STR, from, "the address of the worker that holds it") \
  F(UINT, source, "that worker's id")

#define DT_REC_moved(F, L, LR, M)                       \
  F(KEY, key, "the key")                                \
  F(UINT, nbytes, "its size in bytes")                  \
  F(BOOL, ok, "fetched and kept (false: it failed)")    \
  F(UINT, source, "the id of the worker it came from")

#define DT_REC_fin(F, L, LR, M)                                          \
  F(KEY, key, "the task's key")                                          \
  F(UINT, nbytes, "size of the result")                                  \
  F(UINT, duration_us, "how long it ran")                                \
  F(BINN, inline_, "the encoded result when at most 4 KiB without frames, or nil")

/* ---- messages */
#define DT_MESSAGES(X)                                                                  \
  X(HELLO_CLIENT, "client->scheduler", "a client introduces itself")                    \
  X(HELLO_WORKER, "worker->scheduler", "a worker registers, with the results it holds") \
  X(WELCOME, "scheduler->peer", "registration accepted")                                \
  X(UPDATE_GRAPH, "client->scheduler", "new tasks, and the keys the client wants")      \
  X(RELEASE_KEYS, "client->scheduler", "the client no longer wants these keys")         \
  X(WANT_KEYS, "client->scheduler", "the client wants these existing keys")             \
  X(CANCEL_KEYS, "client->scheduler", "cancel these tasks and release them")            \
  X(SCATTER, "client->scheduler", "put data on workers")                                \
  X(SCATTER_DONE, "scheduler->client", "a scatter finished")                            \
  X(KEY_IN_MEMORY, "scheduler->client", "a result the client wants is ready")           \
  X(WANT_RESULT, "client->scheduler",                                                   \
    "the client waits for these results: send them inline when small")                 \
  X(KEY_ERRED, "scheduler->client", "a task the client wants (or its dependency) failed") \
  X(KEY_CANCELLED, "scheduler->client",                                                 \
    "a key was cancelled (also each wanted key downstream of it)")                      \
  X(INFO_REQUEST, "client->scheduler", "ask for the cluster's counts (and workers)")    \
  X(INFO_REPLY, "scheduler->client", "the cluster's counts")                            \
  X(COMPUTE_TASK, "scheduler->worker", "run this task")                                 \
  X(FREE_KEYS, "scheduler->worker", "forget these keys")                                \
  X(PUT_DATA, "scheduler->worker", "store scattered data")                              \
  X(PUT_DATA_DONE, "worker->scheduler", "scattered data stored")                        \
  X(TASK_FINISHED, "worker->scheduler", "a result is in memory")                        \
  X(TASK_ERRED, "worker->scheduler", "a task failed")                                   \
  X(MISSING_DATA, "worker->scheduler",                                                  \
    "a dependency could not be fetched from that address (that copy is forgotten)")    \
  X(HEARTBEAT, "worker->scheduler", "the worker's counts, every heartbeat")             \
  X(GET_DATA, "peer->worker", "send me these results")                                  \
  X(DATA, "worker->peer", "the results asked for")                                      \
  X(CLOSE, "any", "the sender is closing the connection")                               \
  X(WHO_HAS, "client->scheduler",                                                       \
    "a fetch failed: where is it now? KEY_IN_MEMORY follows once it is held")           \
  X(RETIRE_WORKERS, "client->scheduler",                                                \
    "move what only these workers hold elsewhere, then close them")                     \
  X(RETIRE_DONE, "scheduler->client", "workers retired")                                \
  X(ACQUIRE, "scheduler->worker", "fetch these results from other workers and keep them") \
  X(ACQUIRED, "worker->scheduler", "results fetched (or not) for ACQUIRE")              \
  X(NANNY_REPORT, "nanny->scheduler", "my worker died while running these keys")        \
  X(PING, "scheduler->worker", "the scheduler is alive (every heartbeat)") \
  X(TASK_SECEDED, "worker->scheduler", "a running task handed its thread back: do not count it against the worker's threads") \
  X(TASK_RESCHEDULE, "worker->scheduler", "a task asked to run again (Reschedule): place it again, not a failure") \
  X(FIRE_AND_FORGET, "client->scheduler", "keep these tasks running until they finish, whoever releases them") \
  X(ACTOR_CALL, "peer->worker", "call a method of (or read an attribute of) an actor held there") \
  X(ACTOR_RESULT, "worker->peer", "the outcome of an ACTOR_CALL")                      \
  X(COORD, "client->scheduler",                                                         \
    "a coordination request: variable, queue, lock, multilock, event, semaphore, dataset") \
  X(COORD_REPLY, "scheduler->client", "the outcome of a COORD request") \
  X(QUERY, "peer->peer",                                                                \
    "a named question (who_has, story, get_events, logs...) with its arguments")       \
  X(ANSWER, "peer->peer", "the answer to a QUERY: its value, or why not") \
  X(PLUGIN_ADD, "client->scheduler", "keep this worker plugin; install it on every worker, now and joining later") \
  X(PLUGIN_REMOVE, "client->scheduler", "forget this plugin; run its removal on every worker") \
  X(PLUGIN, "scheduler->worker", "install (or remove) a plugin: run its function on its data before any later task") \
  X(WORKER_GONE, "scheduler->worker", "a worker was removed: stop fetching from it (fetches in flight fail over)") \
  X(TASK_RELEASED, "worker->scheduler", "a task the scheduler released no longer holds a thread here (a cancelled running task returned)") \
  X(ABORT_TASKS, "scheduler->worker", "cancel(force=True): if one of these keys still runs, restart to reclaim its thread") \
  X(CANCEL_FORCE, "client->scheduler", "cancel(force=True): the workers running these keys restart (CANCEL_KEYS follows)") \
  X(RECONNECTABLE, "scheduler->client", "the scheduler keeps a journal: after losing it, reconnect and RESUME") \
  X(RESUME, "client->scheduler", "a client is back after the scheduler restarted: it wants these keys again") \
  X(RETIRE_ME, "worker->scheduler", "the worker's lifetime is over (it drained): retire it as RETIRE_WORKERS would, then CLOSE it") \
  X(RESUME_AS, "client->scheduler", "before RESUME: the id this client had at the scheduler of before (its locks and leases are its own again)") \
  X(SYNC, "client->scheduler", "answer SYNCED: what this connection sent before has been taken in (a task that submitted, before its result is reported)") \
  X(SYNCED, "scheduler->client", "the answer to SYNC") \
  X(TASKS_FINISHED, "worker->scheduler", "results are in memory: the tasks a worker finished in one loop turn, in order (TASK_FINISHED for each)")

#define DT_MSG_HELLO_CLIENT(F, L, LR, M)      \
  F(UINT, version, "DT_PROTO_VERSION")        \
  F(STR, name, "the client's name")

#define DT_MSG_HELLO_WORKER(F, L, LR, M)                           \
  F(UINT, version, "DT_PROTO_VERSION")                             \
  F(STR, name, "the worker's name")                                \
  F(STR, address, "where it serves results (host:port)")           \
  F(UINT, nthreads, "threads in its pool")                         \
  M(DOUBLE, resources, "abstract resources it has")                \
  F(UINT, pid, "its process id")                                   \
  F(UINT, nanny_token, "its nanny's token, or 0")                  \
  LR(keynb, held, "results it holds from before (reconnecting)")  \
  F(UINT, memory_limit, "its memory limit in bytes (0: none)")

#define DT_MSG_WELCOME(F, L, LR, M)                    \
  F(UINT, id, "the peer's id")                         \
  F(UINT, heartbeat_ms, "heartbeat interval (workers)") \
  F(UINT, ttl_ms, "silence after which a worker is removed (workers)")

#define DT_MSG_UPDATE_GRAPH(F, L, LR, M) \
  LR(task, tasks, "the new tasks")       \
  L(KEY, wanted, "keys the client wants (new or existing)")

#define DT_MSG_RELEASE_KEYS(F, L, LR, M) L(KEY, keys, "the keys")
#define DT_MSG_WANT_KEYS(F, L, LR, M) L(KEY, keys, "the keys")
#define DT_MSG_CANCEL_KEYS(F, L, LR, M) L(KEY, keys, "the keys")
#define DT_MSG_WANT_RESULT(F, L, LR, M) L(KEY, keys, "the keys")
#define DT_MSG_WHO_HAS(F, L, LR, M) L(KEY, keys, "the keys")
#define DT_MSG_FREE_KEYS(F, L, LR, M) L(KEY, keys, "the keys")

#define DT_MSG_SCATTER(F, L, LR, M)                           \
  F(UINT, req, "request id, echoed in SCATTER_DONE")          \
  LR(keyval, items, "the data")                               \
  L(STR, workers, "workers to put it on; empty: any")         \
  F(BOOL, broadcast, "put every item on every one of them")

#define DT_MSG_SCATTER_DONE(F, L, LR, M) \
  F(UINT, req, "the request id")         \
  F(STRN, error, "why it failed, or nil")

#define DT_MSG_KEY_IN_MEMORY(F, L, LR, M)                                     \
  F(KEY, key, "the key")                                                      \
  F(STR, worker, "address of a worker holding it")                            \
  F(UINT, nbytes, "its size in bytes")                                        \
  F(BINN, inline_, "the encoded result when small and asked for (WANT_RESULT), or nil")

#define DT_MSG_KEY_ERRED(F, L, LR, M)                         \
  F(KEY, key, "the key the client wants")                     \
  F(INT, code, "the error code (a DT_E... value)")            \
  F(KEY, origin, "the key of the task that failed")           \
  F(STR, function, "its function")                            \
  F(STR, worker, "the worker it failed on, or empty")         \
  F(STR, message, "the error message")

#define DT_MSG_KEY_CANCELLED(F, L, LR, M) \
  F(KEY, key, "the key")                  \
  F(STR, reason, "why")

#define DT_MSG_INFO_REQUEST(F, L, LR, M) \
  F(UINT, req, "request id")             \
  F(BOOL, detail, "also one row per worker")

#define DT_MSG_INFO_REPLY(F, L, LR, M)                                            \
  F(UINT, req, "the request id")                                                  \
  M(INT, counts, "workers, clients, tasks, completed, heartbeat_age_us, and tasks per state") \
  LR(wrow, workers, "one row per worker when detail was asked, else empty")

#define DT_MSG_COMPUTE_TASK(F, L, LR, M)                       \
  F(KEY, key, "the task's key")                                \
  F(STR, func, "the registered task function")                 \
  F(PAYLOAD, spec, "the arguments")                            \
  LR(dep, deps, "its dependencies and where they are")         \
  F(INT, priority, "user priority")                            \
  M(DOUBLE, resources, "abstract resources one run holds")     \
  F(DOUBLE, timeout, "seconds it may run (0: no limit)")

#define DT_MSG_PUT_DATA(F, L, LR, M)                \
  F(UINT, req, "request id, echoed in PUT_DATA_DONE") \
  LR(keyval, items, "the data to store")

#define DT_MSG_PUT_DATA_DONE(F, L, LR, M) \
  F(UINT, req, "the request id")          \
  LR(keynb, stored, "what was stored")

#define DT_MSG_TASK_FINISHED(F, L, LR, M)                                    \
  F(KEY, key, "the task's key")                                              \
  F(UINT, nbytes, "size of the result")                                      \
  F(UINT, duration_us, "how long it ran")                                    \
  F(BINN, inline_, "the encoded result when at most 4 KiB without frames, or nil")

#define DT_MSG_TASK_ERRED(F, L, LR, M)             \
  F(KEY, key, "the task's key")                    \
  F(INT, code, "the error code (a DT_E... value)") \
  F(STR, function, "its function")                 \
  F(STR, message, "the error message")

#define DT_MSG_MISSING_DATA(F, L, LR, M)      \
  F(KEY, key, "the task that needed it")      \
  F(KEY, dep, "the dependency")               \
  F(STR, address, "the address that failed")

#define DT_MSG_HEARTBEAT(F, L, LR, M)                       \
  F(INT, executing, "tasks running")                        \
  F(INT, ready, "tasks ready, waiting for a thread")        \
  F(INT, nkeys, "results held")                             \
  F(INT, nbytes, "bytes of results in memory")              \
  F(DOUBLE, cpu, "CPU use, percent")                        \
  F(UINT, rss, "resident set size")                         \
  F(UINT, spilled, "bytes spilled to disk")                 \
  F(BOOL, paused, "over the memory pause threshold")        \
  F(UINT, peak, "most bytes of results held in memory")

#define DT_MSG_GET_DATA(F, L, LR, M)                                        \
  F(UINT, req, "request id, echoed in DATA")                                \
  L(KEY, keys, "the keys")                                                  \
  F(STRN, boot_id, "the requester's boot id (same host: shared memory), or nil")

#define DT_MSG_DATA(F, L, LR, M)  \
  F(UINT, req, "the request id")  \
  LR(data, items, "one per key asked for")

#define DT_MSG_CLOSE(F, L, LR, M) F(STR, reason, "why")

#define DT_MSG_RETIRE_WORKERS(F, L, LR, M) \
  F(UINT, req, "request id")               \
  L(STR, names, "the workers (names or addresses)")

#define DT_MSG_RETIRE_DONE(F, L, LR, M)  \
  F(UINT, req, "the request id")         \
  F(UINT, retired, "how many retired")   \
  F(STRN, error, "why not all, or nil")

#define DT_MSG_ACQUIRE(F, L, LR, M) LR(move, items, "what to fetch")
#define DT_MSG_ACQUIRED(F, L, LR, M) LR(moved, items, "what was fetched")

#define DT_MSG_NANNY_REPORT(F, L, LR, M)                  \
  F(UINT, token, "the nanny's token")                     \
  F(UINT, pid, "the worker's process id")                 \
  F(STR, how, "how it died")                              \
  L(KEY, keys, "the keys it was running")

#define DT_MSG_PING(F, L, LR, M) F(UINT, uptime_ms, "the scheduler's uptime")
#define DT_MSG_TASK_SECEDED(F, L, LR, M) F(KEY, key, "the task's key")
#define DT_MSG_TASK_RESCHEDULE(F, L, LR, M) F(KEY, key, "the task's key")
#define DT_MSG_FIRE_AND_FORGET(F, L, LR, M) L(KEY, keys, "the keys")

#define DT_MSG_ACTOR_CALL(F, L, LR, M)                                  \
  F(UINT, req, "request id, echoed in ACTOR_RESULT")                    \
  F(KEY, key, "the key of the task that created the actor")             \
  F(STR, method, "the method (or attribute) name")                      \
  F(BOOL, attribute, "read the attribute instead of calling a method")  \
  F(PAYLOAD, spec, "the arguments: [args, kwargs]")

#define DT_MSG_ACTOR_RESULT(F, L, LR, M)                       \
  F(UINT, req, "the request id")                               \
  F(BOOL, ok, "the call returned a value")                     \
  F(INT, code, "the error code (a DT_E... value) when it failed") \
  F(PAYLOAD, value, "the value (an empty payload when it failed)") \
  F(STRN, error, "the error message, or nil")

#define DT_MSG_COORD(F, L, LR, M)                                                   \
  F(UINT, req, "request id, echoed in COORD_REPLY")                                 \
  F(UINT, op, "what to do (DT_COORD_*, proto/coord_ops.h)")                         \
  L(STR, names, "the primitive's name (a multilock's names)")                      \
  F(PAYLOAD, value, "the value to set, put or publish, else an empty payload")      \
  L(KEY, keys, "the futures inside value: held while the scheduler holds value")    \
  F(INT, timeout_ms, "how long to wait (<0: forever, 0: not at all)")               \
  F(INT, arg, "queue maxsize, semaphore max_leases, multilock num_locks, override")

#define DT_MSG_COORD_REPLY(F, L, LR, M)                                 \
  F(UINT, req, "the request id")                                        \
  F(INT, code, "0, or a DT_E... code (DT_ETIMEDOUT: the wait timed out)") \
  F(STRN, error, "why it failed, or nil")                               \
  F(INT, count, "qsize, is_set, locked, leases held, or 1 when granted") \
  F(PAYLOAD, value, "the value got, else an empty payload")             \
  L(KEY, keys, "the futures inside value (the client now wants them)")  \
  L(STR, names, "list_datasets: the names")

#define DT_MSG_QUERY(F, L, LR, M)                                  \
  F(UINT, req, "request id, echoed in ANSWER (0: no answer wanted)") \
  F(STR, name, "the query's name (see src/scheduler/query.c)")     \
  F(PAYLOAD, args, "its arguments (a map, or nil)")

#define DT_MSG_ANSWER(F, L, LR, M)          \
  F(UINT, req, "the request id")            \
  F(STRN, error, "why it failed, or nil")   \
  F(PAYLOAD, value, "the answer (nil when it failed)")

/* plugins (Client.register_plugin, upload_file): the scheduler keeps at
 * most DT_PLUGIN_MAX of them, each of at most DT_PLUGIN_MAX_BYTES */
#define DT_PLUGIN_MAX 64
#define DT_PLUGIN_MAX_BYTES (64u << 20)
#define DT_PLUGIN_MAX_NAME 256

#define DT_MSG_PLUGIN_ADD(F, L, LR, M)                                              \
  F(STR, name, "the plugin's name (replaces a plugin of that name)")                \
  F(STR, func, "the worker's function that installs it; \"dtask:so\": dlopen data") \
  F(BINN, data, "its argument (the plugin's bytes)")

#define DT_MSG_PLUGIN_REMOVE(F, L, LR, M)                       \
  F(STR, name, "the plugin's name")                             \
  F(STR, func, "the worker's function that removes it")         \
  F(BINN, data, "its argument")

#define DT_MSG_PLUGIN(F, L, LR, M)                              \
  F(STR, name, "the plugin's name")                             \
  F(STR, func, "the function to run (as PLUGIN_ADD's)")         \
  F(BINN, data, "its argument")                                 \
  F(BOOL, remove, "this is a removal")

#define DT_MSG_WORKER_GONE(F, L, LR, M) F(STR, address, "the removed worker's address")
#define DT_MSG_TASK_RELEASED(F, L, LR, M) F(KEY, key, "the task's key")
#define DT_MSG_ABORT_TASKS(F, L, LR, M) L(KEY, keys, "the keys")
#define DT_MSG_CANCEL_FORCE(F, L, LR, M) L(KEY, keys, "the keys")
#define DT_MSG_RECONNECTABLE(F, L, LR, M) F(UINT, grace_ms, "how long the client keeps trying to reconnect")
#define DT_MSG_RESUME(F, L, LR, M) L(KEY, keys, "the keys of the futures it holds")
#define DT_MSG_RETIRE_ME(F, L, LR, M)                                          \
  F(UINT, attempt, "1, then 2, 3... while no other worker can take its results") \
  F(STR, reason, "why (e.g. \"lifetime\"), for the log")
#define DT_MSG_RESUME_AS(F, L, LR, M) F(UINT, id, "the client's id at the scheduler of before")
#define DT_MSG_SYNC(F, L, LR, M) F(UINT, req, "request id")
#define DT_MSG_SYNCED(F, L, LR, M) F(UINT, req, "the SYNC's request id")
#define DT_MSG_TASKS_FINISHED(F, L, LR, M) LR(fin, tasks, "1 to DT_FINISHED_MAX tasks, in the order they finished")
/* records in one TASKS_FINISHED, at most (a worker sends at most
 * DT_FINISHED_BATCH in one, and starts another past about 1 MiB) */
#define DT_FINISHED_MAX 65536u
#define DT_FINISHED_BATCH 4096u

#endif
