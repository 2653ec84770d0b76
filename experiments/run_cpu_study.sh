#!/usr/bin/env bash
# The CPU-scale study (experiments/results/): SmolLM2-135M on the synthetic item chains, 3 seeds, both
# protocols, every objective from the same SFT adapter per seed (experiment=cpu_study), then a report
# with paired 95% intervals against SFT. Two jobs in parallel, one torch thread each.
# Usage: bash experiments/run_cpu_study.sh [OUT_DIR]   (default: multirun/study)
#   LOSSES=sft,dpo SEEDS=0 bash experiments/run_cpu_study.sh   to run a part of it;
#   EXTRA="key=value ..." adds overrides to every job (the test shrinks it to the tiny model this way).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-multirun/study}"
PY="${PYTHON:-.venv/bin/python}"
SEEDS="${SEEDS:-0,1,2}"
LOSSES="${LOSSES:-sft,dpo,sdpo,napo,napo_official,rosepo,simpo}"
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
start=$(date +%s)
# SFT first (one job per seed): every preference job of that seed then reuses its cached adapter.
"$PY" -m napo_lab.run -m experiment=cpu_study hydra/launcher=parallel hydra.launcher.n_jobs=2 \
    loss=sft seed="$SEEDS" hydra.sweep.dir="$OUT/sft" "${EXTRA_ARGS[@]}"
PREF="${LOSSES//sft,/}"; PREF="${PREF//,sft/}"
if [ -n "$PREF" ] && [ "$PREF" != "sft" ]; then
  "$PY" -m napo_lab.run -m experiment=cpu_study hydra/launcher=parallel hydra.launcher.n_jobs=2 \
      loss="$PREF" seed="$SEEDS" hydra.sweep.dir="$OUT/pref" "${EXTRA_ARGS[@]}"
fi
"$PY" -m napo_lab.report "$OUT" --baseline sft --out "${REPORT_DIR:-experiments/results}"
echo "wall time: $(( ($(date +%s) - start) / 60 )) min, commit $(git rev-parse --short HEAD)"
