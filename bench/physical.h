/* physical.h -- the machine's limits, for bench.c (see physical.c) */
#ifndef DT_BENCH_PHYSICAL_H
#define DT_BENCH_PHYSICAL_H
#include <stdbool.h>
#include <stddef.h>

/* median loopback TCP round trip between two processes over n trips, in
 * µs; -1 on failure.  where: -1 wherever the kernel puts them (as dtask's
 * processes), 0 both on CPU 0, 1 on CPUs 0 and 1 (a cross-CPU wake-up each
 * way) */
double dt_bench_phys_rtt_us(int n, int where);
/* loopback TCP bandwidth between two processes, best of tries, MB/s;
 * -1 on failure */
double dt_bench_phys_tcp_mbs(size_t bytes, int tries);

#endif
