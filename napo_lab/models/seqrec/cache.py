"""Train a sequential recommender once per (architecture, hyper-parameters, prepared dataset, seed)
and reuse it from ``<cache_dir>/seqrec/``.

Files: ``<arch>-<dataset>-<key hash>.safetensors`` (weights) and ``.json`` (the full key, n_items and
training info). The json is written last, so its presence marks a complete entry; both are written
to a temporary file and moved into place with ``os.replace``. A file lock makes concurrent jobs (a
sweep launching NAPO runs in parallel) wait for the first one instead of all training the same model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from filelock import FileLock
from safetensors.torch import load_file, save_file

from napo_lab.models.seqrec.base import SeqRecModel
from napo_lab.models.seqrec.config import SeqRecConfig
from napo_lab.models.seqrec.factory import build_seqrec
from napo_lab.models.seqrec.train import train_seqrec

log = logging.getLogger(__name__)


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


def cache_paths(cache_dir: Path, key: dict[str, Any]) -> tuple[Path, Path]:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = f"{key['model']['arch']}-{key['dataset']['name']}-{digest}"
    folder = Path(cache_dir) / "seqrec"
    return folder / f"{stem}.safetensors", folder / f"{stem}.json"


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # a shared cache: readable by the other users of the machine
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _try_load(weights: Path, meta: Path, key: dict[str, Any], cfg: SeqRecConfig) -> SeqRecModel | None:
    if not (weights.exists() and meta.exists()):
        return None
    try:
        stored = json.loads(meta.read_text())
        if stored.get("key") != json.loads(json.dumps(key)):
            log.warning("seqrec cache %s was written for another config; retraining", meta)
            return None
        model = build_seqrec(cfg, key["dataset"]["n_items"])
        model.load_state_dict(load_file(str(weights)))
        model.train_info = stored.get("info", {})
        return model
    except Exception as err:  # corrupt / truncated / incompatible: never crash, retrain
        log.warning("seqrec cache %s unreadable (%s); retraining", weights, err)
        return None


def load_or_train_seqrec(
    prepared: Any,
    cfg: Any,
    cache_dir: Path | str,
    *,
    freeze: bool = True,
    logger: Any = None,
) -> SeqRecModel:
    """Return the sequential model for ``prepared`` and ``cfg`` (conf/model/<arch>.yaml keys, or a NAPO
    ``seqrec:`` block), training it on the train split only when no matching cache entry exists.

    ``freeze=True`` (eval use, e.g. NAPO's auxiliary scorer) gives an ``eval()`` model whose parameters
    have ``requires_grad=False``. The model is on CPU; ``model.train_info`` holds training info and
    ``model.train_info["from_cache"]`` says whether this call trained it.
    """
    cfg = SeqRecConfig.from_cfg(cfg)
    key = cache_key(prepared, cfg)
    weights, meta = cache_paths(Path(cache_dir), key)
    weights.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(weights) + ".lock"):
        model = _try_load(weights, meta, key, cfg)
        if model is not None:
            model.train_info["from_cache"] = True
        else:
            model, info = train_seqrec(prepared, cfg, logger=logger)
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            _atomic_write(weights, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
            payload = {"key": key, "config": model.config, "info": info}
            _atomic_write(meta, lambda p: p.write_text(json.dumps(payload, indent=2, sort_keys=True)))
            model.train_info = {**info, "from_cache": False}
            log.info("seqrec cached at %s", weights)
    return model.freeze() if freeze else model.train()
