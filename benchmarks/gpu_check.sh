#!/usr/bin/env bash
# The prepared GPU check of issue 17 (docs/performance.md, "GPU check"): one command, < 8 minutes.
#
#   bash benchmarks/gpu_check.sh --download-wheels   # once, on a machine with network: the wheels of what
#                                                    # a bare torch/transformers/peft/lightning Python lacks
#   bash benchmarks/gpu_check.sh                     # on the GPU machine (no network): installs those
#                                                    # wheels into benchmarks/wheels/site, then runs the check
#   bash benchmarks/gpu_check.sh --device cpu        # here: the tiny model on the CPU (tested)
#
# Everything else is passed to `python -m benchmarks.gpu_check` (--ks, --batch, --steps, --users, ...).
# PYTHON selects the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
WHEELS=benchmarks/wheels
# hydra-core, omegaconf and antlr4 (hydra's parser; only an sdist on PyPI, so pip builds a pure-Python
# wheel here) are what the GPU machine lacks; wandb and gguf are not needed (no logger, random weights).
PACKAGES=("hydra-core==1.3.2" "omegaconf==2.3.0" "antlr4-python3-runtime==4.9.3")

if [[ "${1:-}" == "--download-wheels" ]]; then
    mkdir -p "$WHEELS"
    "$PY" -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "${PACKAGES[@]}"
    ls -l "$WHEELS"/*.whl
    du -sh "$WHEELS"
    exit 0
fi

if [[ -d "$WHEELS" ]] && ls "$WHEELS"/*.whl >/dev/null 2>&1 && ! "$PY" -c "import hydra, omegaconf" 2>/dev/null; then
    # into a folder of its own, nothing else changed; pure-Python wheels work with any Python 3
    "$PY" -m pip install --quiet --no-index --no-deps --target "$WHEELS/site" "$WHEELS"/*.whl
fi
if [[ -d "$WHEELS/site" ]]; then
    export PYTHONPATH="$PWD:$PWD/$WHEELS/site${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 NAPO_LAB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout 480 "$PY" -m benchmarks.gpu_check "$@"
