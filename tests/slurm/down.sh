#!/usr/bin/env bash
# Stop the test cluster tests/slurm/up.sh started: its jobs, then slurmd, slurmctld and munged.
set -uo pipefail
scancel --full --user="$(id -un)" 2>/dev/null
for daemon in slurmd slurmctld munged; do
    pkill -x "$daemon" && echo "stopped $daemon"
done
exit 0
