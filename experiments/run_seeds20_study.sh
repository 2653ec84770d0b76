#!/usr/bin/env bash
# The small studies of issue 20 (experiments/results/seeds20/): Triplet Shapley with BPR-MF and
# LightGCN on MovieLens-100K (rating protocol), and PreferDiff against SASRec on LastFM, 3 seeds,
# one torch thread per job. Usage: bash experiments/run_seeds20_study.sh [OUT_DIR] [PART...]
#   PART: cf_mf, cf_lightgcn, preferdiff, pd_size, report (default: all, in this order)
#   SEEDS (default 0,1,2) and EXTRA (overrides added to every job, e.g. to shrink it) from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-multirun/seeds20}"
shift || true
PARTS="${*:-cf_mf cf_lightgcn preferdiff pd_size report}"
PY="${PYTHON:-.venv/bin/python}"
if [ -z "${NAPO_LAB_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  NAPO_LAB_DATA_DIR="$(cd ../shared/data && pwd)"
  export NAPO_LAB_DATA_DIR
fi
SEEDS="${SEEDS:-0,1,2}"
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
RUN=("$PY" -m napo_lab.run -m logger=csv "${EXTRA_ARGS[@]}")
for part in $PARTS; do
  start=$(date +%s)
  case "$part" in
    cf_mf) "${RUN[@]}" model=bprmf sampler=uniform,triplet_shapley,triplet_shapley_weight dataset=movielens \
             seed="$SEEDS" hydra.sweep.dir="$OUT/cf/bprmf" ;;
    cf_lightgcn) "${RUN[@]}" model=lightgcn sampler=uniform,triplet_shapley,triplet_shapley_weight dataset=movielens \
             seed="$SEEDS" hydra.sweep.dir="$OUT/cf/lightgcn" ;;
    preferdiff) "${RUN[@]}" model=sasrec,preferdiff dataset=lastfm seed="$SEEDS" \
             hydra.sweep.dir="$OUT/pd/lastfm" ;;
    pd_size) "${RUN[@]}" model=preferdiff model.hidden_size=128,256 dataset=lastfm seed="$SEEDS" \
             hydra.sweep.dir="$OUT/pd_size/lastfm" ;;
    report)
      "$PY" -m napo_lab.report "$OUT/cf" --out "$OUT/report/cf" --baseline bprmf
      "$PY" -m napo_lab.report "$OUT/pd" --out "$OUT/report/pd" --baseline sasrec ;;
    *) echo "unknown part $part (cf_mf, cf_lightgcn, preferdiff, pd_size, report)" >&2; exit 2 ;;
  esac
  echo "$part: wall time $(( $(date +%s) - start )) s, commit $(git rev-parse --short HEAD)"
done
