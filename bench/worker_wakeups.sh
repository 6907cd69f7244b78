#!/usr/bin/env bash
# worker_wakeups.sh -- system calls and context switches of a LocalCluster's
# worker processes (the nannies' children) while a benchmark runs, per task.
#
#   bench/worker_wakeups.sh TASKS COMMAND...
#   bench/worker_wakeups.sh 1020000 build/bench --only map
#   bench/worker_wakeups.sh 300000 python bench/python_bench.py --only dtask --workloads map_100k
#
# TASKS is how many tasks COMMAND runs in all (counts are divided by it).
# Needs perf and the right to trace (root, or perf_event_paranoid <= -1).
set -u
tasks=$1; shift
events=${EVENTS:-task-clock,context-switches,cpu-migrations,syscalls:sys_enter_futex,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_read}
"$@" > /tmp/worker_wakeups.$$.out 2>&1 &
root=$!
workers=""
for _ in $(seq 1 600); do  # up to 60 s for the workers to appear
  # workers: grandchildren of the command (command -> nanny -> worker)
  workers=$(for n in $(pgrep -P "$root"); do pgrep -P "$n"; done | sort -u | paste -sd, -)
  nw=$(echo "$workers" | tr ',' '\n' | grep -c .)
  [ "$nw" -ge "${NWORKERS:-2}" ] && break
  kill -0 "$root" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$workers" ]; then echo "no worker processes found" >&2; wait "$root"; exit 1; fi
perf stat ${PER_THREAD:+--per-thread} -x, -e "$events" -p "$workers" -o /tmp/worker_wakeups.$$.stat &
perf_pid=$!
wait "$root"
kill -INT "$perf_pid" 2>/dev/null
wait "$perf_pid" 2>/dev/null
cat /tmp/worker_wakeups.$$.out
echo "workers $workers, per task ($tasks tasks):"
awk -F, -v n="$tasks" '/^[0-9]/ { if ($3 == "task-clock") printf "  %-36s %12.0f ms %6.3f us / task\n", "CPU (task-clock)", $1, $1 * 1000 / n;
  else printf "  %-36s %12d  %8.3f / task\n", $3, $1, $1 / n }' /tmp/worker_wakeups.$$.stat  # without --per-thread
[ -n "${PER_THREAD:-}" ] && cat /tmp/worker_wakeups.$$.stat
rm -f /tmp/worker_wakeups.$$.out /tmp/worker_wakeups.$$.stat
