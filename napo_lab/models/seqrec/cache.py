"""Train a sequential recommender once per (architecture, hyper-parameters, prepared dataset, seed)
and reuse it from ``<cache_dir>/seqrec/`` (a napo_lab.cache entry).

An entry is the directory ``<arch>-<dataset>-<key hash>/`` holding ``model.safetensors`` (weights) and
``meta.json`` (the full key, the config and training info), built in a staging directory and renamed
into place under a file lock, so concurrent jobs (a sweep launching NAPO runs in parallel) wait for
the first one instead of all training the same model. An entry whose meta does not match its key, or
whose weights do not load, is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from napo_lab.cache import CacheEntry, atomic_write_text, digest
from napo_lab.models.seqrec.base import SeqRecModel
from napo_lab.models.seqrec.config import SeqRecConfig
from napo_lab.models.seqrec.factory import build_seqrec
from napo_lab.models.seqrec.train import train_seqrec

log = logging.getLogger(__name__)

WEIGHTS, META = "model.safetensors", "meta.json"


def dataset_identity(prepared: Any) -> dict[str, Any]:
    """What identifies the training data: the prepared directory name (it embeds the hash of sources,
    parameters and code version) and a hash of the manifest."""
    manifest_json = json.dumps(prepared.manifest, sort_keys=True, default=str)
    root = getattr(prepared, "root", None)
    return {
        "name": str(prepared.manifest.get("name", "dataset")),
        "dir": Path(root).name if root is not None else None,
        "manifest_sha256": hashlib.sha256(manifest_json.encode()).hexdigest(),
        "n_items": int(prepared.n_items),
    }


def cache_key(prepared: Any, cfg: SeqRecConfig) -> dict[str, Any]:
    return {"model": cfg.training_key(), "dataset": dataset_identity(prepared)}


def cache_entry(cache_dir: Path, key: dict[str, Any], cfg: SeqRecConfig) -> CacheEntry:
    stem = f"{key['model']['arch']}-{key['dataset']['name']}-{digest(key)}"
    return CacheEntry(Path(cache_dir) / "seqrec" / stem, META, valid=lambda path: _load(path, key, cfg) is not None)


def _load(path: Path, key: dict[str, Any], cfg: SeqRecConfig) -> SeqRecModel | None:
    try:
        stored = json.loads((path / META).read_text())
        if stored.get("key") != json.loads(json.dumps(key)):
            log.warning("seqrec cache %s was written for another config; retraining", path)
            return None
        model = build_seqrec(cfg, key["dataset"]["n_items"])
        model.load_state_dict(load_file(str(path / WEIGHTS)))
        model.train_info = stored.get("info", {})
        return model
    except Exception as err:  # noqa: BLE001 - corrupt / truncated / incompatible: never crash, retrain
        log.warning("seqrec cache %s unreadable (%s); retraining", path, err)
        return None


def load_or_train_seqrec(prepared: Any, cfg: Any, cache_dir: Path | str, *, freeze: bool = True,
                         logger: Any = None) -> SeqRecModel:
    """Return the sequential model for ``prepared`` and ``cfg`` (conf/model/<arch>.yaml keys, or a NAPO
    ``seqrec:`` block), training it on the train split only when no matching cache entry exists.

    ``freeze=True`` (eval use, e.g. NAPO's auxiliary scorer) gives an ``eval()`` model whose parameters
    have ``requires_grad=False``. The model is on CPU; ``model.train_info`` holds training info and
    ``model.train_info["from_cache"]`` says whether it came from the cache.
    """
    cfg = SeqRecConfig.from_cfg(cfg)
    key = cache_key(prepared, cfg)
    entry = cache_entry(Path(cache_dir), key, cfg)
    trained: dict[str, Any] = {}

    def build(tmp: Path) -> None:
        model, info = train_seqrec(prepared, cfg, logger=logger)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        atomic_write_text(tmp / META, json.dumps({"key": key, "config": model.config, "info": info}, indent=2,
                                                 sort_keys=True))
        trained.update(model=model, info=info)

    path, reused = entry.get_or_build(build)
    if reused:
        model = _load(path, key, cfg)
        model.train_info["from_cache"] = True
    else:
        model = trained["model"]
        model.train_info = {**trained["info"], "from_cache": False}
        log.info("seqrec cached at %s", path)
    return model.freeze() if freeze else model.train()
