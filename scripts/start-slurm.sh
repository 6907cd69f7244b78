#!/usr/bin/env bash
# start-slurm.sh -- a real single-node Slurm on this machine, for the HPC
# tests: installs Debian's slurmctld, slurmd, slurm-client, the PBS/Torque
# qsub/qstat/qdel wrappers (slurm-wlm-torque) and munge; writes a
# configuration for this one node (no systemd, no cgroups); starts munged,
# slurmctld and slurmd directly; waits until the node is idle.
# Idempotent: a re-run with everything up does nothing.  As root.
#   scripts/start-slurm.sh          start (install if needed)
#   scripts/start-slurm.sh stop     cancel every job, stop the daemons
# Knobs: SLURM_NODE_CPUS (default: the real count, at least 4), SLURM_NODE_MEM_MB,
#        SLURM_DEF_MEM_PER_CPU (default 512), SLURM_PARTITIONS (default "debug batch").
# Facts behind the choices: ../shared/reference/slurm-and-pbs.md.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm

log() { echo "start-slurm: $*"; }

# alive PID_FILE: the daemon in PID_FILE runs (zombies do not count: PID 1
# here does not reap them)
alive() {
  local f=$1 pid state
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)
  [ "$state" != "Z" ]
}

stop_daemon() {
  local f=$1
  if alive "$f"; then kill "$(cat "$f")" 2>/dev/null || true; fi
  for _ in $(seq 50); do alive "$f" || break; sleep 0.1; done
  if alive "$f"; then kill -9 "$(cat "$f")" 2>/dev/null || true; fi
  rm -f "$f"
}

if [ "${1:-}" = "stop" ]; then
  if command -v scancel >/dev/null && alive /run/slurmctld.pid; then scancel --full -u root 2>/dev/null || true; fi
  stop_daemon /run/slurmd.pid
  stop_daemon /run/slurmctld.pid
  stop_daemon /run/munge/munged.pid
  log "stopped"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "start-slurm: must run as root" >&2
  exit 1
fi

PACKAGES=(slurmctld slurmd slurm-client slurm-wlm-torque munge)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  # Debian's postinst would start the services: forbid that (no init here)
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $made_policy -eq 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# munge: key, then the daemon (as user munge)
if [ ! -s /etc/munge/munge.key ]; then
  log "creating the munge key"
  mungekey --create --force >/dev/null 2>&1 || /usr/sbin/mungekey -c -f
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge

# the configuration, from what slurmd sees of this node
host=$(hostname -s)
real_cpus=$(nproc)
cpus=${SLURM_NODE_CPUS:-$(( real_cpus < 4 ? 4 : real_cpus ))}
node_line=$(slurmd -C 2>/dev/null | head -1)
mem=${SLURM_NODE_MEM_MB:-$(echo "$node_line" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')}
mem=${mem:-4096}
parts=${SLURM_PARTITIONS:-"debug batch"}
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
new_conf=$(mktemp)
{
  echo "# written by dtask scripts/start-slurm.sh: one node, no systemd, no cgroups"
  echo "ClusterName=dtask"
  echo "SlurmctldHost=${host}(127.0.0.1)"
  echo "SlurmUser=root"
  echo "AuthType=auth/munge"
  echo "StateSaveLocation=/var/spool/slurmctld"
  echo "SlurmdSpoolDir=/var/spool/slurmd"
  echo "SlurmctldPidFile=/run/slurmctld.pid"
  echo "SlurmdPidFile=/run/slurmd.pid"
  echo "SlurmctldLogFile=$LOG_DIR/slurmctld.log"
  echo "SlurmdLogFile=$LOG_DIR/slurmd.log"
  echo "ProctrackType=proctrack/${SLURM_PROCTRACK:-linuxproc}"
  echo "TaskPlugin=task/none"
  echo "MpiDefault=none"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_CPU_Memory"
  echo "DefMemPerCPU=${SLURM_DEF_MEM_PER_CPU:-512}"
  echo "EnforcePartLimits=ALL"
  echo "SlurmdParameters=config_overrides"
  echo "ReturnToService=2"
  echo "KillWait=5"
  echo "MinJobAge=300"
  echo "MailProg=/bin/true"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN"
  first=1
  for p in $parts; do
    if [ $first -eq 1 ]; then d=YES; first=0; else d=NO; fi
    echo "PartitionName=$p Nodes=${host} Default=$d MaxTime=INFINITE State=UP"
  done
} >"$new_conf"
changed=0
if ! cmp -s "$new_conf" "$CONF"; then
  mv "$new_conf" "$CONF"
  chmod 0644 "$CONF"
  changed=1
else
  rm -f "$new_conf"
fi

if ! alive /run/munge/munged.pid; then
  log "starting munged"
  rm -f /run/munge/munged.pid
  su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=/run/munge/munged.pid" 2>/dev/null ||
    /usr/sbin/munged --force --pid-file=/run/munge/munged.pid
fi
if [ $changed -eq 1 ]; then
  stop_daemon /run/slurmd.pid
  stop_daemon /run/slurmctld.pid
fi
if ! alive /run/slurmctld.pid; then
  log "starting slurmctld"
  /usr/sbin/slurmctld
fi
if ! alive /run/slurmd.pid; then
  log "starting slurmd"
  /usr/sbin/slurmd
fi

for _ in $(seq 150); do
  state=$(sinfo -h -N -o "%T" 2>/dev/null | head -1 || true)
  case "$state" in
  idle*|mixed*|allocated*) log "node $host is $state ($cpus CPUs, ${mem} MB)"; exit 0 ;;
  down*|drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
echo "start-slurm: the node did not become idle; see $LOG_DIR/slurmctld.log and slurmd.log" >&2
sinfo -N -l >&2 || true
exit 1
