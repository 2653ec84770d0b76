"""What identifies a trained artefact: the keys of the SFT-adapter cache, the reference log-prob
cache and a stage's checkpoints. Everything that changes the numbers is in a key; what does not
(progress bars, logging cadence, device count under a fixed global batch) is left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from napo_lab.cache import canonical, digest
from napo_lab.data.prepared import sha256_file
from napo_lab.models.adapters import WEIGHTS

SFT_CACHE_VERSION = 2
# Trainer arguments that do not change the trained weights (devices/nodes: the global batch is fixed).
_COSMETIC = {"_target_", "accelerator", "devices", "num_nodes", "enable_progress_bar", "log_every_n_steps",
             "enable_model_summary", "max_epochs", "max_steps", "barebones", "profiler", "detect_anomaly"}


def precision(cfg: DictConfig) -> str:
    """``trainer.precision`` with ``auto`` resolved: bf16-mixed where bf16 is fast here (a bf16 GPU, or a
    CPU with AVX512-BF16 / AMX), else 32-true. Everything that depends on the precision (the Trainer,
    autocast outside it, cache keys) reads it from here."""
    from napo_lab.models.llm import fast_bf16

    value = str(cfg.trainer.get("precision", "32-true"))
    if value != "auto":
        return value
    return "bf16-mixed" if fast_bf16() else "32-true"


def stage_seed(seed: int, stage: str) -> int:
    """The seed a stage starts from: a function of (run seed, stage) alone."""
    return int(digest({"seed": int(seed), "stage": stage}, n=8), 16)


def attention_dtype(cfg: DictConfig) -> str:
    """``attention_dtype`` (napo_lab.models.attention): it changes every number the model computes."""
    return str(cfg.get("attention_dtype") or "auto")


def model_identity(cfg: DictConfig) -> dict[str, Any]:
    m = canonical(cfg.model)
    return {"loader": m["loader"], "lora": m["lora"], "chat_template": m["chat_template"],
            "attention_dtype": attention_dtype(cfg)}


def stage_settings(cfg: DictConfig, stage: str) -> dict[str, Any]:
    """The stage's settings with the trainer defaults applied (epochs / max_steps null -> trainer.*)."""
    s = canonical(cfg[stage])
    trainer = canonical(cfg.trainer)
    if s.get("epochs") is None:
        s["epochs"] = trainer.get("max_epochs")
    if s.get("max_steps") is None:
        s["max_steps"] = trainer.get("max_steps", -1)
    return s


#: Stage settings that change how a step is computed but no number it computes (bit-identical results):
#: left out of the SFT cache key and the checkpoint identity, so turning them on reuses what exists.
COMPUTE_ONLY = ("activation_checkpointing",)


def stage_identity(cfg: DictConfig, stage: str) -> dict[str, Any]:
    """``stage_settings`` without the compute-only settings."""
    return {k: v for k, v in stage_settings(cfg, stage).items() if k not in COMPUTE_ONLY}


def trainer_identity(cfg: DictConfig) -> dict[str, Any]:
    out = {k: v for k, v in sorted(canonical(cfg.trainer).items()) if k not in _COSMETIC}
    out["precision"] = precision(cfg)
    return out


def sft_key(cfg: DictConfig, prepared) -> str:
    return digest({"v": SFT_CACHE_VERSION, "model": model_identity(cfg), "data": prepared.root.name,
                   "sft": stage_identity(cfg, "sft"), "trainer": trainer_identity(cfg), "seed": int(cfg.seed),
                   "forward": cfg.forward, "domain": cfg.dataset.domain, "n_candidates": cfg.dataset.n_candidates})


def checkpoint_identity(cfg: DictConfig, stage: str, prepared, loss_cfg: Any) -> str:
    """A checkpoint belongs to this model, data, stage settings, loss and seed (others are refused)."""
    return digest({"model": model_identity(cfg), "data": prepared.root.name, "stage": stage_identity(cfg, stage),
                   "loss": canonical(loss_cfg), "seed": int(cfg.seed)})


def reference_key_parts(cfg: DictConfig, sft_adapter_path: Path, prepared) -> dict[str, Any]:
    """What the reference's log-probs depend on (the reference cache's directory key hashes this)."""
    weights = Path(sft_adapter_path) / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} is missing: the reference cache needs the saved SFT adapter")
    ds = cfg.dataset
    return {
        "model": model_identity(cfg),
        "adapter_sha256": sha256_file(weights),
        "data": Path(getattr(prepared, "root", prepared)).name,
        "prompt": {"domain": ds.domain, "chat_template": bool(cfg.model.chat_template),
                   "max_title_chars": ds.max_title_chars, "random_template": ds.random_template,
                   "n_candidates": ds.n_candidates},
        "forward": str(cfg.forward),
        "precision": precision(cfg),
    }
