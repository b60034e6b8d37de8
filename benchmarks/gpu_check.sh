#!/usr/bin/env bash
# The GPU measurements that benchmarks/RESULTS.md still lacks, as one script for a session that is
# lent a GPU host (see /work/.library/device and ../shared/gpu/README.md). Most important first;
# every step under `timeout`, so a slow one cannot eat the lease. Results: $OUT/gpu_check.json
# (one small JSON), $OUT/gpu_fused.json and $OUT/gpu.json (the benchmark) and $OUT/gpu_check.log.
#
# Prepare on the development machine (ignored folder .gpu/, named in `carry`):
#   echo /.gpu/ >> .git/info/exclude && mkdir -p .gpu/wheels
#   cp ../shared/gpu/wheels/*.whl ../shared/gpu/cifar_subset.py .gpu/
#   pip download --no-deps -d .gpu/wheels hydra-joblib-launcher==1.2.0
#   python3 ../shared/gpu/cifar_subset.py --source ../shared/data --out .gpu/real --train 15000 --test 2000
# Try it here first with tiny settings (minutes, on the CPU):
#   OUT=/tmp/gpu_try TINY=1 bash benchmarks/gpu_check.sh
# Then on the host: run(command="OUT=$OUT bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=590)
set -uo pipefail
OUT=${OUT:?set OUT to the folder that comes back}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
cd "$(dirname "$0")/.."

if [ -d .gpu ]; then  # the host: no hydra there, and no network
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/*.whl .gpu/wheels/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
if [ "${TINY:-0}" = 1 ]; then  # a dress rehearsal on any machine: tiny data, tiny model
  $PY -c "import sys; sys.path.insert(0, 'tests'); from cifar_files import write_cifar; write_cifar('$WORK/data', 512, 128)"
  DATA=$WORK/data; SIZE=(model=alexnet_cifar epochs=1); BENCH=(--quick --sections pipeline epoch); FUSED=(--quick)
else
  timeout 120 $PY .gpu/cifar_subset.py --source .gpu/real --out "$WORK/tiled" --tile-train 50000 --tile-test 10000
  DATA=$WORK/tiled; SIZE=(epochs=3); BENCH=(--sections pipeline train epoch); FUSED=()
fi
COMMON=(data.root="$DATA" data.download=false progress=false)

# 0. hydra/launcher=fused (issue 34): the bench's fused section, then 8 seeds of experiment 7 fused
#    (one process) vs packed (a process per run); each sweep's wall time goes to sweep_seconds.
timeout 240 $PY -m alexnet.bench --data-root "$DATA" --sections fused "${FUSED[@]}" --json "$OUT/gpu_fused.json"
for launcher in fused parallel; do
  extra=(hydra/launcher=$launcher); [ $launcher = parallel ] && extra+=(hydra.launcher.jobs_per_gpu=8)
  start=$(date +%s.%N)
  timeout 300 $PY -m alexnet.train -m experiment=alexnet7 model.logit_relu=false seed=0,1,2,3,4,5,6,7 \
    "${SIZE[@]}" "${COMMON[@]}" epochs=1 "${extra[@]}" hydra.sweep.dir="$WORK/seeds_$launcher"
  echo "seeds_$launcher $start $(date +%s.%N)" >> "$WORK/sweep_seconds"
done
# 1. Experiment 7 (227x227, batch 32): eager vs CUDA graphs, the same seed, epoch times and img/s.
for graphs in false true; do
  timeout 240 $PY -m alexnet.train experiment=alexnet7 model.logit_relu=false "${SIZE[@]}" \
    "${COMMON[@]}" speed.cuda_graphs=$graphs hydra.run.dir="$WORK/e7_graphs_$graphs"
done
# 2. The benchmark (pipeline, training at 227, the small-model epoch), warm and cold figures.
timeout 240 $PY -m alexnet.bench --data-root "$DATA" "${BENCH[@]}" --json "$OUT/gpu.json"
# 3. The notebook's eight experiments, one epoch each: one after another vs all packed on the GPU.
for launcher in basic parallel; do
  extra=(); [ $launcher = parallel ] && extra=(hydra/launcher=parallel hydra.launcher.jobs_per_gpu=8)
  start=$(date +%s.%N)
  timeout 300 $PY -m alexnet.train -m sweep=notebook "${SIZE[@]}" \
    "${COMMON[@]}" epochs=1 "${extra[@]}" hydra.sweep.dir="$WORK/notebook_$launcher"
  echo "$launcher $start $(date +%s.%N)" >> "$WORK/sweep_seconds"
done

$PY - "$WORK" "$OUT/gpu_check.json" <<'EOF'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
summary = {}
for run in sorted(work.glob("e7_graphs_*")):  # metrics.csv: every epoch's img/s and times
    record = json.loads((run / "results.json").read_text())
    summary[run.name] = {"status": record["status"], "device": record["device"],
                         "wall_time_s": record["wall_time_s"],
                         "metrics_csv": (run / "metrics.csv").read_text().splitlines()}
seconds = work / "sweep_seconds"
if seconds.is_file():
    summary["notebook_sweep_seconds"] = {
        name: float(end) - float(start)
        for name, start, end in (line.split() for line in seconds.read_text().splitlines())}
for sweep in sorted([*work.glob("notebook_*"), *work.glob("seeds_*")]):
    results = sweep / "results.csv"
    summary[sweep.name + "_results_csv"] = results.read_text().splitlines() if results.is_file() else None
out.write_text(json.dumps(summary, indent=2) + "\n")
print(f"wrote {out}")
EOF
