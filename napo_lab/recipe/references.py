"""What a run's numbers mean: chance, the untrained model (zero-shot) and the sequential model, on the
very rows the run was evaluated on, and the paired difference to zero-shot with its 95% interval.

* chance: the expected metric of a random ranking of the candidates (napo_lab.metrics.paired).
* zero-shot: the same LLM with its adapter switched off, evaluated by the same evaluator. Cached under
  ``<cache>/zero_shot/`` by everything that changes it (base model, data, evaluated rows, protocol,
  layout, precision), so it is computed once per setting and then costs nothing.
* sequential model: ``cfg.seqrec`` (SASRec by default), trained once and cached like everywhere else.

Keys written into metrics.json: ``ref/zero_shot/<role>/<metric>``, ``ref/seqrec/<role>/<metric>``,
``ref/chance/<role>/<metric>`` and ``vs_zero_shot/<role>/<metric>/{diff,low,high}``. They do not
start with a role, so the report's tables never mistake them for the run's own metrics.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from napo_lab.cache import CacheEntry, atomic_write_text, canonical
from napo_lab.eval import LLMPredictor, SeqRecPredictor
from napo_lab.metrics.paired import PAIRED_METRICS, chance_levels, compare
from napo_lab.recipe import build
from napo_lab.recipe.keys import attention_dtype, precision
from napo_lab.rundir import METRICS, predictions_file

log = logging.getLogger(__name__)
ZERO_SHOT_VERSION = 3  # 2: keyed by the prepared data's content (its directory), not its name; 3: one prompt pass (bf16 rounding differs)


def zero_shot_key(cfg: DictConfig, prepared) -> dict:
    ds = canonical(cfg.dataset)
    m = canonical(cfg.model)
    rows = {role: (ds[f"{role}_split"], ds.get(f"{role}_limit"), ds.get("seed")) for role in cfg.eval.splits}
    return {"v": ZERO_SHOT_VERSION, "loader": m["loader"], "chat_template": m["chat_template"],
            "data": prepared.root.name, "rows": rows, "prompt": [ds["domain"], ds["max_title_chars"]],
            "eval": [cfg.eval.protocol, cfg.eval.max_new_tokens], "forward": cfg.forward,
            "precision": precision(cfg), "attention_dtype": attention_dtype(cfg)}


def zero_shot(cfg: DictConfig, prepared, llm, tokenizer) -> Path:
    """The cached zero-shot evaluation directory (metrics.json + predictions_<role>.parquet)."""
    entry = CacheEntry.under(Path(cfg.paths.cache_dir) / "zero_shot", cfg.model.name, zero_shot_key(cfg, prepared),
                             METRICS)

    def evaluate(tmp: Path) -> None:
        log.info("zero-shot reference: evaluating the untrained model once (cached in %s)", entry.path)
        predictor = LLMPredictor(llm, tokenizer, build.datamodule(cfg, prepared, tokenizer), cfg.eval.protocol,
                                 build.layout(cfg, llm), cfg.eval.max_new_tokens)
        with llm.disable_adapter(), build.autocast(cfg, llm):
            found = build.evaluator(cfg, prepared).evaluate(predictor, out_dir=tmp)
        atomic_write_text(tmp / METRICS, json.dumps(found, indent=2, sort_keys=True))

    path, _ = entry.get_or_build(evaluate)
    return path


def seqrec_reference(cfg: DictConfig, prepared) -> dict[str, float]:
    """The sequential model of ``cfg.seqrec`` on the same rows (writes nothing)."""
    return build.evaluator(cfg, prepared).evaluate(SeqRecPredictor(build.sequential_model(cfg, prepared)))


def references(cfg: DictConfig, prepared, llm, tokenizer, out_dir: Path) -> dict[str, float]:
    """The reference keys for a finished LLM run whose predictions are in ``out_dir``."""
    out: dict[str, float] = {}
    zs_dir = zero_shot(cfg, prepared, llm, tokenizer)
    zs = json.loads((zs_dir / METRICS).read_text())
    out.update({f"ref/zero_shot/{k}": float(v) for k, v in zs.items() if "seconds" not in k})
    out.update({f"ref/seqrec/{k}": float(v) for k, v in seqrec_reference(cfg, prepared).items()
                if "seconds" not in k})
    for role in cfg.eval.splits:
        mine = pd.read_parquet(Path(out_dir) / predictions_file(role))
        theirs = pd.read_parquet(zs_dir / predictions_file(role))
        out.update({f"ref/chance/{role}/{m}": v
                    for m, v in chance_levels(len(mine["candidates"].iloc[0])).items()})
        for metric in PAIRED_METRICS:
            res = compare([mine], [theirs], metric, paired_seeds=True)
            if res is not None:
                out.update({f"vs_zero_shot/{role}/{metric}/diff": res.diff,
                            f"vs_zero_shot/{role}/{metric}/low": res.low,
                            f"vs_zero_shot/{role}/{metric}/high": res.high})
    return out
