"""`python -m napo_lab.recommend adapter=<run dir>/adapter 'history=[...]' [k=10]`: recommend for one user.

Given a trained adapter (or the run directory holding it) and a user's history (item ids or titles,
on the command line or in a file, oldest first), the model ranks candidate items by the
log-likelihood of their titles after the evaluation prompt, exactly as ``eval=ranking`` does, and
prints the top k with their scores and titles, plus its greedy answer. Base model and dataset come
from the adapter's napo_lab_config.yaml (``model=...`` / ``dataset=...`` override them).
Candidates: ``candidates=[...]``, else the dataset.n_candidates most popular train items not in the
history (the prompt lists the candidates, as in training).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from napo_lab import CONF_DIR
from napo_lab.errors import UserError, report_error
from napo_lab.rundir import ADAPTER

log = logging.getLogger("napo_lab")
OWN_KEYS = ("history", "history_file", "candidates", "k")


class RecommendError(UserError, ValueError):
    """A history or candidate that does not name an item of the dataset, or no history at all."""


def resolve_items(values, titles: list[str], what: str) -> list[int]:
    """Item ids from ids or titles (exact title first, then case-insensitive)."""
    by_title = {t: i for i, t in enumerate(titles)}
    by_lower = {t.lower(): i for i, t in enumerate(titles)}
    out = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        if text.lstrip("-").isdigit() and text not in by_title:
            item = int(text)
            if not 0 <= item < len(titles):
                raise RecommendError(f"{what}: item id {item} is not in the dataset (ids 0..{len(titles) - 1})")
        elif text in by_title or text.lower() in by_lower:
            item = by_title.get(text, by_lower.get(text.lower()))
        else:
            close = [t for t in titles if text.lower() in t.lower()][:3]
            raise RecommendError(f"{what}: no item titled {text!r}" + (f"; did you mean {close}?" if close else
                                 "; give item ids or exact titles (see the dataset's items.parquet)"))
        out.append(int(item))
    return out


def _history_values(opts: dict) -> list:
    if opts.get("history_file"):
        path = Path(str(opts["history_file"])).expanduser()
        if not path.is_file():
            raise RecommendError(f"history_file={path}: no such file (one item id or title per line)")
        return [line for line in path.read_text().splitlines() if line.strip()]
    value = opts.get("history")
    if value is None:
        raise RecommendError("no history: give 'history=[id,id,...]' (ids or titles, oldest first) or "
                             "history_file=<file, one per line>")
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def recommend(cfg: DictConfig, opts: dict):
    """The top-k table (pandas) for one history; loads the model with the adapter."""
    import numpy as np
    import pandas as pd

    from napo_lab.eval.generation import generate_answers
    from napo_lab.models.scoring import title_logliks
    from napo_lab.recipe import build
    from napo_lab.recipe.validate import validate

    validate(cfg)
    values = _history_values(opts)  # no history: said before any data is prepared
    prepared = build.data(cfg)
    titles = prepared.titles
    history = resolve_items(values, titles, "history")
    if not history:
        raise RecommendError("the history is empty: give at least one item id or title")
    if opts.get("candidates") is not None:
        cands = resolve_items(list(opts["candidates"]), titles, "candidates")
    else:
        order = np.argsort(-np.asarray(prepared.train_counts), kind="stable")
        seen = set(history)
        cands = [int(i) for i in order if int(i) not in seen][: int(cfg.dataset.n_candidates)]
    llm, tokenizer = build.model(cfg, adapter=cfg.get("adapter") or None)
    dm = build.datamodule(cfg, prepared, tokenizer)
    rows = pd.DataFrame({"user": [-1], "history": [history[-10:]], "target": [cands[0]], "candidates": [cands]})
    with build.autocast(cfg, llm):
        summed, normed = title_logliks(llm, dm.builder.title_ids, dm.loader(rows), tokenizer.pad_token_id,
                                       build.layout(cfg, llm), "recommend")
        answer = generate_answers(llm, tokenizer, dm.loader(rows), int(cfg.eval.max_new_tokens), "answer")[0]
    table = pd.DataFrame({"item": cands, "title": [titles[c] for c in cands], "score": summed[0],
                          "score_norm": normed[0]}).sort_values("score", ascending=False, kind="stable")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.head(int(opts.get("k") or 10)).reset_index(drop=True), [titles[h] for h in history], answer


def _print(table, history: list[str], answer: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print("history (oldest first): " + ", ".join(history), soft_wrap=True, highlight=False)
    out = Table(title=f"top {len(table)} of the candidates")
    for col in ("rank", "item", "title", "score", "score_norm"):
        out.add_column(col, justify="left" if col == "title" else "right")
    for r in table.itertuples():
        out.add_row(str(r.rank), str(r.item), r.title, f"{r.score:.3f}", f"{r.score_norm:.3f}")
    console.print(out)
    console.print(f"greedy answer: {answer!r}", highlight=False)


def _adapter_path(value: str) -> str:
    """A run directory stands for its adapter."""
    path = Path(value).expanduser()
    return str(path / ADAPTER) if (path / ADAPTER).is_dir() else str(path)


@hydra.main(config_path=str(CONF_DIR), config_name="recommend", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from napo_lab.evaluate import adopt_adapter_config
    from napo_lab.quiet import quiet_libraries

    quiet_libraries(bool(cfg.get("debug", False)))
    debug = bool(cfg.get("debug", False))
    try:
        with open_dict(cfg):
            opts = {k: OmegaConf.to_container(cfg[k]) if isinstance(cfg[k], (DictConfig, ListConfig)) else cfg[k]
                    for k in OWN_KEYS}
            for k in OWN_KEYS:
                cfg.pop(k)
            if cfg.get("adapter"):
                cfg.adapter = _adapter_path(str(cfg.adapter))
                adopt_adapter_config(cfg, list(HydraConfig.get().overrides.task))
        table, history, answer = recommend(cfg, opts)
    except (UserError, FileNotFoundError) as err:
        sys.exit(report_error(err, debug=debug))
    _print(table, history, answer)


if __name__ == "__main__":
    main()
