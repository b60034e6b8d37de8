#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (Debian's slurm-wlm + munge), for trying
# `hydra/launcher=slurm` without a cluster and for the tests marked `slurm`. Run as root:
#   sudo bash tests/slurm/up.sh        # installs the packages when missing; safe to run again
#   sudo bash tests/slurm/down.sh      # stops it
# The node has this machine's cores and memory, one partition `debug` (no GPUs), no accounting
# (sacct answers nothing, as on clusters without slurmdbd), and `cred_expire=10`, so a requeued
# job starts again after about 24 s instead of SLURM's default 2.5 min.
set -euo pipefail

if [[ $(id -u) != 0 ]]; then
    echo "error: starting slurmctld, slurmd and munged needs root: sudo bash $0" >&2
    exit 1
fi
# the node answers and takes jobs (a trailing * would mean it does not respond)
ready() { [[ $(sinfo -h -o %T 2>/dev/null) =~ ^(idle|mixed|allocated)$ ]]; }
if command -v sinfo >/dev/null && ready; then
    echo "SLURM is already up: $(sinfo -h -o '%P %D node(s) %T')"
    echo "Stop it with: sudo bash $(dirname "$0")/down.sh"
    exit 0
fi

packages=(slurm-wlm munge procps)  # procps: pgrep/pkill, which minimal images lack
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v pgrep >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null; }
fi

# munge: the key the Debian package made, or a new one.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
[[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged

node=$(hostname -s)
install -d -m 0755 /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
# Written by alexnet-sweeps' tests/slurm/up.sh: a single-node test cluster.
ClusterName=alexnet-test
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$(slurmd -C | head -1) NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF

logs="see /var/log/slurm/slurmctld.log and slurmd.log"
pgrep -x slurmctld >/dev/null || slurmctld || { echo "error: slurmctld did not start; $logs" >&2; exit 1; }
pgrep -x slurmd >/dev/null || slurmd || { echo "error: slurmd did not start; $logs" >&2; exit 1; }
for _ in $(seq 60); do
    ready && break
    # a node that an earlier start left DOWN comes back
    scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    sleep 1
done
if ! ready; then
    echo "error: the node did not come up; $logs" >&2
    sinfo >&2 || true
    exit 1
fi
echo "SLURM is up: $(sinfo -h -o '%P %D node(s) %T, %c CPUs, %m MB')"
echo "Stop it with: sudo bash $(dirname "$0")/down.sh"
