#!/usr/bin/env bash
# The CPU-scale study (experiments/results/): SmolLM2-135M on LastFM (LLaRA's 122-user test split),
# a fixed budget per method (experiment=cpu_study), 2 seeds, 2 jobs in parallel (1 torch thread each).
# Usage: bash experiments/run_cpu_study.sh [OUT_DIR]   (default: multirun/study)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-multirun/study}"
PY="${PYTHON:-.venv/bin/python}"
if [ -z "${NAPO_LAB_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  NAPO_LAB_DATA_DIR="$(cd ../shared/data && pwd)"
  export NAPO_LAB_DATA_DIR
fi
SEEDS="${SEEDS:-0,1}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
start=$(date +%s)
"$PY" -m napo_lab.run -m experiment=cpu_study model=sasrec seed="$SEEDS" hydra.sweep.dir="$OUT/sasrec"
"$PY" -m napo_lab.evaluate -m experiment=cpu_study seed="$SEEDS" hydra.sweep.dir="$OUT/zero_shot"
"$PY" -m napo_lab.run -m experiment=cpu_study hydra/launcher=parallel hydra.launcher.n_jobs=2 \
    loss=sft,sdpo,napo,napo_official,dpo,dmpo,simpo,rosepo seed="$SEEDS" hydra.sweep.dir="$OUT/llm"
"$PY" -m napo_lab.report "$OUT" --out experiments/results
echo "wall time: $(( ($(date +%s) - start) / 60 )) min, commit $(git rev-parse --short HEAD)"
