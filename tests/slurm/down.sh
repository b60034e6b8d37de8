#!/usr/bin/env bash
# Stop the test cluster tests/slurm/up.sh started: every job in it, then slurmd, slurmctld and
# munged (on a machine whose munged served something else too, stop the SLURM daemons only).
set -euo pipefail
if [[ $(id -u) != 0 ]]; then
    echo "error: stopping the SLURM and munge daemons needs root: sudo bash $0" >&2
    exit 1
fi
jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
[[ -z $jobs ]] || scancel $jobs
for daemon in slurmd slurmctld munged; do
    if pkill -x "$daemon"; then echo "stopped $daemon"; fi
done
