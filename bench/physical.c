/*
 * physical.c -- the machine's own limits, measured in the same run as
 * dtask's figures so that each can be given as a ratio to its limit:
 *
 *   - the loopback TCP round trip between two processes (1 byte each way,
 *     TCP_NODELAY, each side blocked in recv: the cross-CPU wake-up a
 *     message between two dtask processes pays too);
 *   - loopback TCP bandwidth between two processes: the sender writes a
 *     buffer in 4 MiB writes, the receiver reads it into one buffer of the
 *     full size (as a dtask worker does), every page touched;
 *   - memcpy (bench.c's bench_memcpy).
 *
 * Plain POSIX sockets and fork: nothing of dtask is used.
 */
#include <arpa/inet.h>
#include <sched.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "physical.h"

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* a connected loopback TCP pair: *a in this process's listener side, *b the
 * connecting side; 0 or -1 */
static int tcp_pair(int *a, int *b) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  if (l < 0) return -1;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof(sa);
  if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(l, 1) != 0 ||
      getsockname(l, (struct sockaddr *)&sa, &sl) != 0) {
    close(l);
    return -1;
  }
  *b = socket(AF_INET, SOCK_STREAM, 0);
  if (*b < 0 || connect(*b, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(l);
    if (*b >= 0) close(*b);
    return -1;
  }
  *a = accept(l, NULL, NULL);
  close(l);
  if (*a < 0) {
    close(*b);
    return -1;
  }
  int one = 1;
  setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return 0;
}

static int all_io(int fd, char *p, size_t n, bool wr) {
  while (n) {
    ssize_t k = wr ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* pin: the calling thread to cpu; 0 or -1 */
static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set);
}

double dt_bench_phys_rtt_us(int n, int where) {
  int a, b;
  if (n < 1 || tcp_pair(&a, &b) != 0) return -1;
  cpu_set_t saved;
  int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
  bool pinned = where >= 0 && ncpu >= 2 && sched_getaffinity(0, sizeof(saved), &saved) == 0;
  if (pinned) pin(0);
  pid_t pid = fork();
  if (pid == 0) { /* the echo */
    if (pinned) pin(where == 1 ? 1 : 0);
    close(a);
    char c;
    while (recv(b, &c, 1, 0) == 1 && c) (void)send(b, &c, 1, MSG_NOSIGNAL);
    _exit(0);
  }
  close(b);
  double *t = malloc((size_t)n * sizeof(double)), med = -1;
  int ok = pid > 0 && t;
  for (int i = -100; ok && i < n; i++) { /* 100 warm-up trips */
    char c = 1;
    double t0 = mono();
    if (all_io(a, &c, 1, true) || all_io(a, &c, 1, false)) ok = 0;
    else if (i >= 0) t[i] = mono() - t0;
  }
  if (ok) {
    qsort(t, (size_t)n, sizeof(double), cmp_d);
    med = t[n / 2] * 1e6;
  }
  char z = 0;
  (void)send(a, &z, 1, MSG_NOSIGNAL);
  close(a);
  if (pid > 0) waitpid(pid, NULL, 0);
  if (pinned) sched_setaffinity(0, sizeof(saved), &saved);
  free(t);
  return med;
}

double dt_bench_phys_tcp_mbs(size_t bytes, int tries) {
  double best = 0;
  const size_t chunk = 4u << 20;
  for (int k = 0; k < tries; k++) {
    int a, b;
    if (tcp_pair(&a, &b) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) { /* the sender: its buffer is written once, then sent */
      close(a);
      char *src = malloc(chunk);
      if (!src) _exit(1);
      memset(src, 7, chunk);
      char go;
      if (recv(b, &go, 1, 0) != 1) _exit(1);
      for (size_t off = 0; off < bytes;) {
        size_t n = bytes - off < chunk ? bytes - off : chunk;
        if (all_io(b, src, n, true)) _exit(1);
        off += n;
      }
      _exit(0);
    }
    close(b);
    if (pid < 0) {
      close(a);
      return -1;
    }
    /* the receiver: one buffer of the full size, faulted in with one call
     * (faulting page by page while data arrives is slower), timed */
    double t0 = mono();
    char *dst = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    char go = 1;
    int bad = dst == MAP_FAILED || all_io(a, &go, 1, true) || all_io(a, dst, bytes, false);
    double dt = mono() - t0;
    if (!bad && dst[bytes - 1] != 7) bad = 1;
    if (dst != MAP_FAILED) munmap(dst, bytes);
    close(a);
    waitpid(pid, NULL, 0);
    if (bad) return -1;
    if ((double)bytes / dt / 1e6 > best) best = (double)bytes / dt / 1e6;
  }
  return best;
}
