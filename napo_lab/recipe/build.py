"""Builders: every part of a run from its config group. Groups that name a ``_target_`` are built by
``hydra.utils.instantiate`` (trainer, strategy, loggers, callbacks, model loader, LoRA, dataset
builder, loss); the recipe and the benchmarks use these same functions."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig

from napo_lab.cache import canonical
from napo_lab.data.datamodule import RecDataModule
from napo_lab.data.prepare import ensure_prepared
from napo_lab.data.prepared import PreparedDataset
from napo_lab.data.samplers import PROVIDED, strategy_parts
from napo_lab.errors import UserError
from napo_lab.eval import Evaluator
from napo_lab.lit.checkpoint import AtomicCheckpointIO
from napo_lab.lit.loggers import redact
from napo_lab.losses.base import PreferenceLoss
from napo_lab.models.adapters import load_adapter
from napo_lab.models.attention import set_attention_dtype
from napo_lab.models.llm import apply_lora
from napo_lab.models.logprobs import causal_lm, choose_layout
from napo_lab.models.ref_cache import RefLogpCache, cache_key
from napo_lab.recipe.keys import attention_dtype, precision, reference_key_parts
from napo_lab.recipe.validate import world_size

log = logging.getLogger(__name__)


def make(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, letting the target's own one-paragraph errors through unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


def data(cfg: DictConfig) -> PreparedDataset:
    """The prepared dataset (prepared once per content, then read from the cache)."""
    return PreparedDataset.load(ensure_prepared(cfg.dataset, data_dir=cfg.paths.data_dir, cache_dir=cfg.paths.cache_dir))


def cpu_threads(setting: Any) -> int | None:
    """torch's CPU threads for a job (config ``cpu_threads``, docs/performance.md "Threads under
    contention"): ``auto`` = one fewer than the CPUs this process may use (at least 1) unless
    OMP_NUM_THREADS is set (then None: torch already follows it); a positive integer; null = torch's
    default (one thread per core). With every core busy, one descheduled thread stalls the others at
    each parallel region; a spare core keeps a competing process off the LLM's threads."""
    if setting is None:
        return None
    if setting == "auto":
        if os.environ.get("OMP_NUM_THREADS"):
            return None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cores - 1)
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return setting
    raise UserError(f"cpu_threads={setting!r} is not a thread count: use auto, null (torch's default) or a "
                    "positive integer, e.g. cpu_threads=2")


def model(cfg: DictConfig, adapter: str | Path | None = None):
    """(model, tokenizer): ``model.loader`` loads the base, then a freshly initialised, seeded LoRA
    adapter named 'default' from ``model.lora`` (a peft.LoraConfig), or, given ``adapter`` (a saved
    adapter dir), that adapter through ``PeftModel.from_pretrained`` (frozen, for evaluation)."""
    base, tokenizer = make(cfg.model.loader, cache_dir=cfg.paths.cache_dir)
    set_attention_dtype(base, attention_dtype(cfg))
    if adapter is not None:
        return load_adapter(base, Path(str(adapter)).expanduser()), tokenizer
    stages = checkpointed_stages(cfg)
    if stages and not getattr(base, "supports_gradient_checkpointing", False):
        raise UserError(f"{type(base).__name__} cannot recompute activations: set "
                        + " ".join(f"{s}.activation_checkpointing=null" for s in stages))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    return apply_lora(base, make(cfg.model.lora, _convert_="all")), tokenizer


def loss(cfg: DictConfig) -> PreferenceLoss:
    return make(cfg.loss.objective)


def layout(cfg: DictConfig, llm) -> str:
    """The log-prob layout for training and evaluation alike (decided once per run)."""
    return choose_layout(cfg.forward, llm, cfg.strategy.name, checkpointing=bool(checkpointed_stages(cfg)))


def checkpointed_stages(cfg: DictConfig) -> list[str]:
    """The training stages this run trains whose ``activation_checkpointing`` is on (``pref`` is not
    trained when ``loss.stage`` is sft)."""
    trained = ("sft",) if cfg.get("loss") is not None and cfg.loss.get("stage") == "sft" else ("sft", "pref")
    return [s for s in trained if s in cfg and cfg[s].get("activation_checkpointing")]


@contextlib.contextmanager
def activation_checkpointing(model, every_n_layers: int | None):
    """Within the block, the decoder recomputes every ``every_n_layers``-th layer's activations in the
    backward pass instead of keeping them (transformers' activation checkpointing, non-reentrant: the
    recomputation runs the same kernels on the same inputs, so losses and gradients are bit-identical;
    evaluation and no-grad passes are untouched). None: nothing changes."""
    if not every_n_layers:
        yield
        return
    lm = causal_lm(model)
    lm.activation_checkpointing_enable(every_n_layers=int(every_n_layers))
    # Non-reentrant checkpointing reaches the LoRA weights inside a layer without the input embeddings
    # requiring grad: the hook transformers adds for the reentrant kind would only compute an unused gradient.
    lm.disable_input_require_grads()
    try:
        yield
    finally:
        lm.activation_checkpointing_disable()


def datamodule(cfg: DictConfig, prepared: PreparedDataset, tokenizer, stage: str | None = None,
               negatives_scorer=None) -> RecDataModule:
    """Batches for a training stage (``sft``: the positive only; ``pref``: 1+K completions), or for
    evaluation only (``stage=None``). With a ``neg_sampler`` the preference stage's K negatives are
    drawn per batch (napo_lab.data.batch_negatives; ``negatives_scorer`` ranks adaptive pools when
    ``neg_sampler.scorer=seqrec``)."""
    dataset = canonical(cfg.dataset)
    k, negatives, batch, history = 0, None, 1, False
    if stage == "sft":
        history = float(cfg.sft.history_weight) > 0
    if stage is not None:
        dataset["train_limit"] = cfg[stage].train_limit
        batch = cfg[stage].batch_size
        if stage == "pref":
            k, negatives = int(cfg.loss.num_negatives), canonical(cfg.loss.negatives)
    sampler = cfg.get("neg_sampler") if stage == "pref" else None
    dm = RecDataModule(prepared, tokenizer, dataset, 0 if sampler else k, negatives, batch,
                       cfg.data.eval_batch_size, cfg.data.num_workers, int(cfg.seed), bool(cfg.model.chat_template),
                       history)
    if sampler:
        from napo_lab.data.batch_negatives import for_preference_stage

        dm.batch_negatives = for_preference_stage(sampler, prepared, dm.builder.title_ids, int(cfg.seed),
                                                  dm.max_history, negatives_scorer)
    return dm


def sampler_asks_seqrec(cfg: DictConfig) -> bool:
    """An LLM run whose neg_sampler ranks adaptive pools with the sequential model."""
    sampler = cfg.get("neg_sampler")
    return bool(sampler) and sampler.sampler in ("ans", "amns") and sampler.scorer == "seqrec"


def negative_strategies(cfg: DictConfig) -> list[str]:
    return strategy_parts(cfg.loss.negatives.strategy, canonical(cfg.loss.negatives.weights))


def needs_sequential_model(cfg: DictConfig, objective: PreferenceLoss) -> bool:
    """The loss reads the sequential model, or a negative strategy ranks with it."""
    return (bool(objective.needs_sequential_model) or "seqrec_hard" in negative_strategies(cfg)
            or sampler_asks_seqrec(cfg))


def sequential_model(cfg: DictConfig, prepared: PreparedDataset, node: DictConfig | None = None):
    """The sequential recommender of ``node`` (default ``cfg.seqrec``), trained once and cached."""
    from napo_lab.models.seqrec import load_or_train_seqrec

    node = cfg.seqrec if node is None else node
    cache_dir = node.get("cache_dir") or cfg.paths.cache_dir
    return load_or_train_seqrec(prepared, make(node), Path(cache_dir))


def with_sampler(cfg: DictConfig) -> DictConfig:
    """The sequential model's node with the ``neg_sampler`` group applied (its loss and negatives)."""
    from omegaconf import OmegaConf

    from napo_lab.models.seqrec.config import with_neg_sampler

    return OmegaConf.create(with_neg_sampler(cfg.model, cfg.get("neg_sampler")))


def negative_providers(cfg: DictConfig, llm, tokenizer, seqrec) -> dict[str, Any]:
    """Hard-negative rankers the chosen strategies need (self_hard: the SFT model as it is now)."""
    from napo_lab.models import hard_negatives

    wanted = [s for s in negative_strategies(cfg) if s in PROVIDED]
    providers = {}
    if "seqrec_hard" in wanted:
        providers["seqrec_hard"] = hard_negatives.seqrec_hard_factory(seqrec)
    if "self_hard" in wanted:
        providers["self_hard"] = hard_negatives.self_hard_factory(llm, tokenizer.pad_token_id, layout(cfg, llm))
    return providers


def reference_cache(cfg: DictConfig, sft_path: Path, prepared) -> RefLogpCache | None:
    """The reference log-prob cache (None when ``ref_cache.enabled`` is false)."""
    if not cfg.ref_cache.enabled:
        return None
    root = Path(cfg.ref_cache.dir or Path(cfg.paths.cache_dir) / "ref_logps")
    parts = reference_key_parts(cfg, sft_path, prepared)
    cache = RefLogpCache(root, cache_key(parts), describe=parts)
    log.info("reference log-prob cache: %s", cache.dir)
    return cache


def strategy(cfg: DictConfig):
    """A Lightning strategy object (``_target_``) or a registered strategy name."""
    node = canonical(cfg.strategy)
    name = node.pop("name")
    return make(node) if "_target_" in node else name


def _entries(group: DictConfig | None, **extra: Callable[[], Any]) -> list[Any]:
    """Instantiate every named entry of a group; a target that accepts one of ``extra``'s keyword
    arguments gets its value (computed then, passed as a Python object: never read as a config)."""
    out = []
    for node in (group or {}).values():
        params = inspect.signature(get_object(node["_target_"])).parameters
        out.append(make(node, _partial_=True)(**{k: value() for k, value in extra.items() if k in params}))
    return out


def loggers(cfg: DictConfig) -> list[Any]:
    return _entries(cfg.logger, run_config=lambda: redact(canonical(cfg)))


def callbacks(cfg: DictConfig) -> list[L.Callback]:
    return _entries(cfg.callbacks)


def curve_callbacks(cfg: DictConfig, prepared: PreparedDataset, llm, tokenizer, history, stage: str) -> list[Any]:
    """The validation learning curve (``eval.curve_every_n_epochs`` > 0): val-role ranking metrics after
    every N-th epoch of the stage."""
    from napo_lab.eval import LLMPredictor
    from napo_lab.lit.callbacks import ValidationCurve

    every = int(cfg.eval.curve_every_n_epochs)
    if every <= 0:
        return []
    judge = evaluator(cfg, prepared)
    predictor = LLMPredictor(llm, tokenizer, datamodule(cfg, prepared, tokenizer), "ranking", layout(cfg, llm),
                             int(cfg.eval.max_new_tokens))

    def run() -> dict[str, float]:
        with autocast(cfg, llm):
            return judge.evaluate(predictor, roles=["val"])

    return [ValidationCurve(run, every, history, stage)]


def accumulation(stage: dict[str, Any], world: int) -> int:
    """Accumulation steps that keep the global batch constant across device counts."""
    micro, glob = int(stage["batch_size"]), stage.get("global_batch_size")
    if glob is None:
        return 1
    if int(glob) % (micro * world):
        raise ValueError(f"global_batch_size={glob} is not a multiple of batch_size x devices = "
                         f"{micro} x {world}; change one of them.")
    return int(glob) // (micro * world)


def trainer(cfg: DictConfig, stage: dict[str, Any], callbacks: list[Any], logger: Any, checkpointing: bool,
            out_dir: Path) -> L.Trainer:
    """``cfg.trainer`` (every Lightning Trainer argument passes through) with this stage's epochs,
    steps and accumulation, and the parts napo_lab owns: logger, callbacks, strategy, checkpoint IO."""
    args = {"num_sanity_val_steps": 0, "limit_val_batches": 0, "enable_model_summary": False}
    args.update(canonical(cfg.trainer))
    args["precision"] = precision(cfg)
    trainer_class = get_object(args.pop("_target_"))
    args.update(max_epochs=int(stage["epochs"]), max_steps=int(stage["max_steps"]),
                accumulate_grad_batches=accumulation(stage, world_size(args)), strategy=strategy(cfg),
                logger=logger, callbacks=callbacks, enable_checkpointing=checkpointing,
                plugins=[AtomicCheckpointIO()], default_root_dir=str(out_dir),
                use_distributed_sampler=False)  # EpochIndexSampler shards itself (same global batches as 1 process)
    return trainer_class(**args)


def evaluator(cfg: DictConfig, prepared: PreparedDataset) -> Evaluator:
    return Evaluator(prepared, canonical(cfg.dataset), canonical(cfg.eval), int(cfg.seed))


def autocast(cfg: DictConfig, llm):
    """The autocast of the trainer's mixed precision, for LLM work outside the Trainer (evaluation,
    hard-negative ranking), so it computes as training did; a no-op at full precision. Without autocast's
    cast cache: it would keep the bf16 copies of the fp32 LoRA weights made during a forward alive until
    the context ends, small blocks between the activations that fragment the heap (glibc) and cost up to
    ~1 GB of peak RSS on SmolLM2 (docs/performance.md); recasting those tiny weights costs nothing. The
    LoRA layers take their inputs as they come (``lora_inputs_as_given``: bit-identical, fewer copies)."""
    dtype = {"bf16-mixed": torch.bfloat16, "bf16": torch.bfloat16, "16-mixed": torch.float16,
             "16": torch.float16}.get(precision(cfg))
    if dtype is None:
        return contextlib.nullcontext()
    return _autocast_lora(llm, dtype)


@contextlib.contextmanager
def _autocast_lora(llm, dtype):
    from napo_lab.models.adapters import lora_inputs_as_given

    with torch.autocast(next(llm.parameters()).device.type, dtype=dtype, cache_enabled=False), \
            lora_inputs_as_given(llm):
        yield


def global_rank() -> int:
    """This process's rank (0 outside DDP). Valid before any Trainer exists: Lightning reads it from
    RANK / LOCAL_RANK / SLURM_PROCID, which its launcher (or Slurm, torchrun) sets for every rank > 0."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
