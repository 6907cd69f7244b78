/* fuzz_scheduler.c -- libFuzzer target over the scheduler's message
 * handlers and state machine (dt__sched_fuzz in scheduler/server.c): any
 * sequence of messages from a stranger, a client and a worker must leave
 * the state consistent, and nothing held once they all leave. */
#include <stddef.h>
#include <stdint.h>

int dt__sched_fuzz(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return dt__sched_fuzz(data, size); }
