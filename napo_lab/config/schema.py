"""Typed schemas of every config group: one dataclass per group, one line of documentation per field.

``napo_lab.config.validate`` checks the composed config against these before anything loads. Groups
whose options are constructor arguments (``trainer``, ``strategy``, ``logger``, ``callbacks``,
``model.loader``, ``model.lora``, ``dataset.builder``, ``loss.objective``) are checked against the
signature of their ``_target_`` instead, so every Lightning / PEFT / loss argument is allowed and a
typo is named. They are not registered in Hydra's ConfigStore: OmegaConf's structured configs
cannot express ``Literal`` choices or bounds, and a structured merge stops at the first error inside
Hydra (see config/check.py for why napo_lab checks the composed config itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from napo_lab.config.check import spec

FORWARD = Literal["shared_prefix", "prefix_cache", "duplicate"]
ATTENTION_DTYPE = Literal["auto", "float32", "native"]
PROTOCOL = Literal["generation", "ranking", "both"]
ROLE = Literal["val", "test"]
SCHEDULER = Literal["cosine", "constant"]
STRATEGY = Literal["in_prompt", "catalogue", "popularity", "seqrec_hard", "self_hard", "hallucinated", "recpo_rating",
                   "recpo_random", "mixed"]
PRECISION = Literal["auto", "transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
                    "bf16-mixed", "32-true", "64-true", 64, 32, 16, "64", "32", "16", "bf16"]
ACCELERATOR = Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu"]


@dataclass
class Stage:
    """One training stage: ``sft`` (supervised fine-tuning) or ``pref`` (the preference objective).
    Settings here override the trainer group's defaults for this stage."""

    epochs: int | None = spec(None, "epochs of this stage; null = trainer.max_epochs", ge=1)
    max_steps: int | None = spec(None, "stop after this many optimiser steps; null = trainer.max_steps (-1: no limit)",
                                 ge=-1)
    lr: float = spec(1e-4, "peak learning rate (AdamW)", gt=0)
    weight_decay: float = spec(0.0, "AdamW weight decay", ge=0)
    warmup_ratio: float = spec(0.05, "share of the steps with linear warm-up", ge=0, le=1)
    scheduler: SCHEDULER = spec("cosine", "learning-rate schedule after warm-up")
    batch_size: int = spec(4, "prompts per device and step", ge=1)
    global_batch_size: int | None = spec(None, "prompts per optimiser step over all devices; null = batch_size x "
                                               "devices (otherwise gradient accumulation is derived)", ge=1)
    train_limit: int | None = spec(None, "training examples (a seeded subset); null = the whole train split", ge=1)
    pack_tokens: int | None = spec(None, "forward=shared_prefix: put several prompts (each with its completions) in "
                                         "one row of at most this many tokens, each attending only to itself; "
                                         "null = one prompt per row", ge=1)
    activation_checkpointing: int | None = spec(
        None, "recompute every N-th decoder layer's activations in the backward pass instead of keeping them "
        "(1 = every layer: the least memory, ~1/3 more compute); the same numbers bit for bit; null = off", ge=1)


@dataclass
class SFTStage(Stage):
    """The SFT stage: every preference run starts from the adapter it trains (cached)."""

    history_weight: float = spec(0.0, "loss weight of the history-title tokens inside the prompt, beside the "
                                      "answer's (0 = answer only, as S-DPO; see docs/learning.md)", ge=0)


@dataclass
class Data:
    num_workers: int = spec(0, "DataLoader worker processes", ge=0)
    eval_batch_size: int = spec(8, "prompts per evaluation batch", ge=1)


@dataclass
class Checkpoint:
    every_n_steps: int = spec(10, "save a resumable checkpoint every N steps (0 = never)", ge=0)
    keep: bool = spec(False, "keep checkpoints/ after the run succeeded (they only serve resuming)")


@dataclass
class Malloc:
    trim: bool = spec(True, "give the heap's free pages back after each training stage and evaluation pass")
    trim_every_n_steps: int = spec(
        8, "with trim on: also after every N-th training batch, so a stage does not climb to its high-water "
        "mark (0 = between phases only)", ge=0)
    mmap_threshold_kb: int | None = spec(
        None, "glibc: allocations of at least this many KiB get their own mapping, returned on free (less memory, "
        "more CPU); null = glibc's moving threshold", ge=16, le=32768)


@dataclass
class RefCache:
    enabled: bool = spec(True, "cache the frozen reference's log-probs on disk")
    dir: str | None = spec(None, "cache directory; null = <paths.cache_dir>/ref_logps")


@dataclass
class Paths:
    data_dir: str | None = spec(None, "source files (NAPO_LAB_DATA_DIR)")
    cache_dir: str = spec("???", "prepared data, converted models, adapters (NAPO_LAB_CACHE_DIR)")
    output_dir: str = spec("???", "this run's directory")


@dataclass
class Popularity:
    head_ratio: float = spec(0.2, "most popular share of items (by train count): the head band", ge=0, le=1)
    tail_ratio: float = spec(0.2, "least popular share: the tail band (also RecBole's tail for TailPercentage)",
                             gt=0, le=1)


@dataclass
class EvalPopularity(Popularity):
    ks: list[int] = spec(factory=lambda: [1, 5], doc="K of the ranking popularity metrics (rank/pop/*@K)", ge=1)


@dataclass
class Eval:
    protocol: PROTOCOL = spec("generation", "generation (paper parity), ranking (title likelihood) or both")
    splits: list[ROLE] = spec(factory=lambda: ["test"], doc="roles to evaluate; dataset.<role>_split names the split")
    max_new_tokens: int = spec(20, "greedy decoding budget", ge=1)
    references: bool = spec(True, "also evaluate the untrained model (cached) and the sequential model on the "
                                   "same rows, and report chance and the paired difference to zero-shot")
    curve_every_n_epochs: int = spec(0, "rank the val role after every N-th training epoch of each stage and log "
                                        "curve/<stage>/val/* (0 = off)", ge=0)
    batch_size: int = spec(16, "prompts per evaluation batch", ge=1)
    popularity: EvalPopularity = spec(factory=EvalPopularity, doc="popularity bands and K")
    full_ks: list[int] = spec(factory=lambda: [5, 10, 20], doc="K of the full-catalogue metrics (full/recall@K, "
                                                              "full/ndcg@K; models that score every item)", ge=1)
    mask_history: bool = spec(False, "full catalogue: remove a row's history items before ranking (the target "
                                     "never is; PreferDiff's code does not)")


@dataclass
class RecPOData:
    """RecPO's data (dataset=movielens_recpo | lastfm_recpo; napo_lab/data/sources/recpo.py)."""

    intensity: Literal["rating", "constant"] = spec("rating", "rating: the user's stars; constant: recency only")
    decay: float = spec(0.5, "score = rating / (1 + step) ** decay", ge=0)
    random_rating: float = spec(3.0, "rating of a random fill candidate (and of every item when constant)", gt=0)
    random_step: int = spec(10, "step of a random fill candidate", ge=0)
    min_chosen_rating: float | None = spec(4, "train rows whose chosen item is rated lower are dropped (null: keep)")
    test_min_rating: float | None = spec(4, "val/test rows whose target is rated lower are dropped (null: keep)")
    min_train_history: int = spec(5, "train rows need this many history items (RecPO: 5)", ge=1)
    max_train_rows: int | None = spec(10000, "a seeded subset of the train rows (RecPO: 10000); null = all", ge=1)
    base: str | None = spec(None, "constant intensity: the builder whose train windows give the sequences (lastfm)")


@dataclass
class Dataset:
    name: str = spec("???", "the dataset's name (prepared directory, reports)")
    builder: dict[str, Any] = spec(factory=dict, doc="_target_: the source builder (napo_lab.data.sources.*.build)")
    domain: Literal["music", "movie", "book", "item"] = spec("item", "prompt wording")
    source: Literal["auto", "local", "hub"] = spec("auto", "auto: local copy else download; local; hub")
    val_split: str = spec("val", "the prepared split evaluated as role val")
    test_split: str = spec("test", "the prepared split evaluated as role test")
    n_candidates: int = spec(20, "candidates per prompt (the target + n-1 others)", ge=2)
    max_history: int = spec(10, "history items shown in a prompt", ge=1)
    min_history: int = spec(3, "rows with a shorter history are dropped", ge=1)
    seed: int = spec(0, "user split and candidate sampler seed", ge=0)
    sampler: Literal["sdpo", "seeded"] = spec("seeded", "candidate sampler (sdpo: S-DPO's exact sampler)")
    train_limit: int | None = spec(None, "train rows (seeded subset); null = all", ge=1)
    val_limit: int | None = spec(None, "val rows evaluated; null = all", ge=1)
    test_limit: int | None = spec(None, "test rows evaluated; null = all", ge=1)
    max_title_chars: int = spec(80, "titles are cut to this many characters in prompts", ge=1)
    random_template: bool = spec(True, "training draws a prompt template per example (S-DPO)")
    popularity: Popularity = spec(factory=Popularity, doc="head / tail bands")
    files: dict[str, str] | None = spec(None, "source files relative to paths.data_dir")
    path: str | None = spec(None, "custom: the interactions CSV")
    min_rating: int | None = spec(None, "movielens: ratings >= this are positives", ge=1)
    ratings_protocol: dict[str, Any] | None = spec(None, "movielens: the rating protocol of the bprmf / lightgcn "
                                                         "models (napo_lab.data.ratings.RatingsProtocol)")
    split_ratio: float | None = spec(None, "movielens_temporal: share of interactions (by time) held out for "
                                           "test, and again for validation", gt=0, lt=0.5)
    recpo: RecPOData | None = spec(None, "RecPO's future candidates and scores (see docs/recpo.md)")
    n_clusters: int | None = spec(None, "synthetic: item chains", ge=1)
    cluster_size: int | None = spec(None, "synthetic: items per chain", ge=2)
    p_follow: float | None = spec(None, "synthetic: probability of following the chain", ge=0, le=1)
    n_train_users: int | None = spec(None, "synthetic: train users", ge=1)
    n_val_users: int | None = spec(None, "synthetic: val users", ge=1)
    n_test_users: int | None = spec(None, "synthetic: test users", ge=1)
    min_len: int | None = spec(None, "synthetic: shortest sequence", ge=2)
    max_len: int | None = spec(None, "synthetic: longest sequence", ge=2)


@dataclass
class Negatives:
    strategy: STRATEGY = spec("in_prompt", "how the data module draws the K negatives")
    weights: dict[str, float] | None = spec(None, "mixed: share of the K negatives per strategy", ge=0)


@dataclass
class NegSampler:
    """The negative-sampling study's samplers (conf/neg_sampler; napo_lab.data.negatives)."""

    name: str = spec("???", "the sampler's name (reports, run dirs)")
    sampler: Literal["rns", "pns", "bns", "mns", "ans", "amns"] = spec("rns", "which sampler")
    loss: Literal["bce", "bpr", "sampled_softmax"] = spec("bce", "sequential models: the sampled loss the "
                                                                 "negatives feed (replaces model.loss)")
    num_samples: int = spec(50, "rns/pns: draws per row; bns/mns/ans/amns: draws from the batch pool", ge=1)
    num_uniform: int = spec(0, "mns/amns: extra uniform items per row", ge=0)
    top_k: int = spec(0, "ans/amns: pool entries per row that count", ge=0)
    pool: Literal["positions", "targets"] = spec("positions", "in-batch pool: every item of every row, or targets")
    exponent: float = spec(1.0, "pns: probability proportional to frequency ** exponent", ge=0)
    exclude: Literal["user", "row"] = spec("user", "never a negative: the user's training items, or the row's")
    static_after_epochs: int | None = spec(None, "sequential models: replay stored batches after N epochs", ge=1)
    scorer: Literal["self", "seqrec"] = spec("self", "ans/amns: the model being trained, or (LLM) the sequential model")


@dataclass
class Loss:
    name: str = spec("???", "the loss's name (reports, run dirs)")
    stage: Literal["sft", "pref"] = spec("pref", "sft, or pref (starts from the cached SFT adapter)")
    num_negatives: int = spec(3, "K completions besides the positive", ge=0)
    negatives: Negatives = spec(factory=Negatives, doc="negative sampling")
    objective: dict[str, Any] = spec(factory=dict, doc="_target_: the loss class and its options")


@dataclass
class LLM:
    kind: Literal["llm"] = spec("llm", "llm or seqrec")
    name: str = spec("???", "the model's name (reports, cache keys)")
    chat_template: bool = spec(True, "wrap prompts in the tokenizer's chat format (instruct models)")
    loader: dict[str, Any] = spec(factory=dict, doc="_target_: napo_lab.models.llm.load_* and its options")
    lora: dict[str, Any] = spec(factory=dict, doc="_target_: peft.LoraConfig and its options")


@dataclass
class Strategy:
    name: str = spec("auto", "auto | ddp | fsdp | deepspeed_stage_2 | another Lightning strategy name")


@dataclass
class RerankLists:
    n_users: int = spec(150, "users sampled (seeded) from those with enough ratings", ge=1)
    n_next: int = spec(4, "interactions per list (the train list, then the test list after it)", ge=1)
    list_size: int = spec(10, "items per list (the rest: items the user never rated)", ge=2)
    history: int = spec(10, "rated history items in the reasoning prompt", ge=1)
    threshold: float = spec(3, "an item is relevant when its rating is > threshold")
    seed: int = spec(0, "user sample and list fill seed", ge=0)


@dataclass
class Reranker:
    epochs: int = spec(60, "full-batch Adam epochs", ge=1)
    lr: float = spec(1e-2, "Adam learning rate", gt=0)
    dim: int = spec(16, "item embedding size", ge=1)


@dataclass
class DPO4Rec:
    """experiment=dpo4rec_small: the DPO4Rec pipeline (napo_lab/recipe/dpo4rec.py, docs/dpo4rec.md)."""

    lists: RerankLists = spec(factory=RerankLists, doc="the 10-item re-ranking lists")
    reranker: Reranker = spec(factory=Reranker, doc="the list re-ranker (reward model)")
    n_samples: int = spec(4, "reasonings sampled per user (N)", ge=2)
    max_new_tokens: int = spec(48, "reasoning length budget", ge=1)
    temperature: float = spec(1.0, "sampling temperature", gt=0)
    rounds: int = spec(2, "DPO rounds (T)", ge=0)
    beta: float = spec(0.01, "DPO beta", gt=0)
    k: int = spec(5, "NDCG@K / MAP@K (reward and evaluation)", ge=1)


@dataclass
class Root:
    """The top level of conf/config.yaml."""

    task_name: str = spec("train", "first part of the run directory")
    seed: int = spec(0, "seed of everything random (data order, LoRA init, dropout)", ge=0, le=2**32 - 1)
    debug: bool = spec(False, "full tracebacks instead of one-paragraph errors")
    resume: Any = spec("auto", "auto | true | false | <run dir>")
    forward: FORWARD = spec("shared_prefix", "log-prob layout (falls back when the model cannot use it)")
    optimized_metric: str | None = spec(None, "the metric a sweep optimises, e.g. val/hr@1")
    cpu_threads: Any = spec("auto", "torch CPU threads: auto (cores - 1 unless OMP_NUM_THREADS is set) | null | N")
    cpu_kernel_cache: int | None = spec(
        64, "oneDNN's cache of compiled CPU kernels (one per matrix shape; ONEDNN_PRIMITIVE_CACHE_CAPACITY wins); "
        "null = oneDNN's default (1024)", ge=0, le=65536)
    attention_dtype: ATTENTION_DTYPE = spec(
        "auto", "precision of SDPA attention: auto (fp32 on CPU, the model's dtype elsewhere) | float32 | native")
    malloc: Malloc = spec(factory=Malloc, doc="glibc's allocator: trimming between phases, mmap threshold")
    adapter: str | None = spec(None, "napo_lab.evaluate: a saved adapter dir (null = the untrained model)")
    method_name: str | None = spec(None, "row name in reports (null = the loss, or the sequential model)")
    ref_cache: RefCache = spec(factory=RefCache, doc="reference log-prob cache")
    checkpoint: Checkpoint = spec(factory=Checkpoint, doc="resumable checkpoints")
    data: Data = spec(factory=Data, doc="data loading")
    sft: SFTStage = spec(factory=SFTStage, doc="the SFT stage")
    pref: Stage = spec(factory=Stage, doc="the preference stage")
    dpo4rec: DPO4Rec | None = spec(None, "the DPO4Rec pipeline instead of the recipe (experiment=dpo4rec_small)")


#: The keys the recipe sets on the Trainer itself (with where to configure them instead).
TRAINER_OWNED = {
    "logger": "choose logger=<csv|wandb|tensorboard|mlflow|none>",
    "callbacks": "add them to the callbacks group",
    "strategy": "choose strategy=<auto|ddp|fsdp|deepspeed_stage_2>",
    "plugins": "napo_lab sets the atomic checkpoint plugin",
    "enable_checkpointing": "use checkpoint.every_n_steps",
    "use_distributed_sampler": "napo_lab's sampler shards itself",
    "default_root_dir": "the run directory is paths.output_dir",
    "accumulate_grad_batches": "set sft.global_batch_size / pref.global_batch_size",
}

