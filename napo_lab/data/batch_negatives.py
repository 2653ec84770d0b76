"""The negative-sampling study's samplers for the LLM preference stage (S-DPO, NAPO, DPO, ...):
the same names and the same functions as the sequential models (napo_lab.data.negatives).

A preference batch carries each prompt once and its 1+K completions, positive first. With a
``neg_sampler``, the training dataset yields the positive alone and :class:`BatchNegatives` fills the
K negatives when the batch is collated, because the in-batch samplers need the whole batch:

* rns / pns / bns / mns: the drawn items are the K negatives (K = num_samples + num_uniform);
* ans / amns with ``scorer: seqrec``: the pool is ranked by the auxiliary sequential model (its logit of
  each pool item for the row's history) and the ``top_k`` best are the K negatives;
* ans / amns with ``scorer: self``: the batch carries the whole pool and ``adaptive_top_k``; the
  LightningModule scores every pool title with the *current* policy (summed log-prob, no gradient) and
  :func:`select_adaptive` keeps the ``top_k`` before the loss runs. This is the public code's rule (the
  model being trained picks), applied to the LLM.

Where the LLM differs from the sequential models, by necessity: a preference loss reads log-probs, so
the pool entries outside the top-k are dropped (a zero logit has no meaning there), and negatives from
the batch or the catalogue are usually *not* among the prompt's 20 candidates (like the ``catalogue``
and ``popularity`` strategies, and like NAPO's borrowed negatives). Empty slots (fewer allowed items
than asked for) are masked, as padding is everywhere else. Under DDP the pool is the local batch.

The draw of a batch is seeded by (seed, epoch, the batch's first example index): the same batches give
the same negatives with 0 or N workers and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from napo_lab.data.negatives import NegativeDrawer, NegativeSpec, UserItems, adaptive_top_k


def _history_tensor(histories: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    out = torch.full((len(histories), max(width, 1)), -1, dtype=torch.long)
    for b, h in enumerate(histories):
        h = list(h)[-width:] if width else []
        out[b, : len(h)] = torch.as_tensor(h, dtype=torch.long)
    return out


class BatchNegatives:
    """Fills the negatives of a list of training examples (dicts with ``item_ids`` = [target],
    ``history``, ``user``, ``example_index``, ``epoch``) under a :class:`NegativeSpec`."""

    def __init__(self, spec: NegativeSpec, n_items: int, title_ids: Sequence[Sequence[int]],
                 user_items: UserItems | None, frequency: np.ndarray | None, seed: int,
                 max_history: int = 10, seqrec: torch.nn.Module | None = None):
        if spec.adaptive and spec.scorer == "seqrec" and seqrec is None:
            raise ValueError("neg_sampler.scorer=seqrec needs the sequential model (it ranks the pool)")
        self.spec, self.title_ids, self.seed = spec, title_ids, int(seed)
        self.max_history, self.seqrec = int(max_history), seqrec
        self.drawer = NegativeDrawer(spec, n_items, frequency, user_items)

    @property
    def negatives_per_prompt(self) -> int:
        """K, the rejected completions each prompt ends with (what loss.num_negatives must equal)."""
        return self.spec.kept

    @property
    def policy_picks(self) -> bool:
        """True when the LightningModule must pick the top-k with the policy (scorer=self)."""
        return self.spec.adaptive and self.spec.scorer == "self"

    def generator(self, examples: Sequence[Mapping[str, Any]]) -> torch.Generator:
        first = min(int(e["example_index"]) for e in examples)
        epoch = int(examples[0].get("epoch", 0))
        key = np.random.SeedSequence([self.seed, epoch, first, 104_729]).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(key[0]) << 32 | int(key[1]))

    def __call__(self, examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        users = torch.as_tensor([int(e["user"]) for e in examples])
        history = _history_tensor([e["history"] for e in examples], self.max_history)
        target = torch.as_tensor([int(e["item_ids"][0]) for e in examples])
        items = self.drawer.draw(users, history, target, self.generator(examples)).items
        if self.spec.adaptive and self.spec.scorer == "seqrec":
            with torch.no_grad():
                scores = self.seqrec.candidate_scores(history, items).float()
            items = keep_ranked(items, scores, self.spec.top_k)
        out = []
        for e, row in zip(examples, items.tolist()):
            negs = [int(i) for i in row if i >= 0]
            ids = [int(e["item_ids"][0]), *negs]
            out.append({**e, "item_ids": ids, "completion_ids": [self.title_ids[i] for i in ids]})
        return out

    def collate(self, collate_fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        """Wrap a collate function: draw the negatives first; with scorer=self mark the batch."""

        def collate(examples: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
            batch = collate_fn(self(examples), **kw)
            if self.policy_picks:
                batch["adaptive_top_k"] = int(self.spec.top_k)
            return batch

        return collate


def keep_ranked(items: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` best-scored valid entries of each row, best first ([B, k]; -1 where fewer exist)."""
    valid = items >= 0
    keep = adaptive_top_k(scores, valid, k)
    masked = torch.where(keep, scores.float(), torch.full_like(scores.float(), float("-inf")))
    order = masked.argsort(dim=1, descending=True, stable=True)[:, :k]
    picked = items.gather(1, order)
    return torch.where(keep.gather(1, order), picked, torch.full_like(picked, -1))


def select_adaptive(batch: dict[str, Any], scores: torch.Tensor, k: int) -> dict[str, Any]:
    """A preference batch whose completions are [positive, pool...] -> [positive, top-k of the pool by
    ``scores`` [B, 1+W] (column 0 ignored)], best first; ``item_ids``, ``mask`` and ``completion_ids``
    follow, and ``adaptive_top_k`` is removed."""
    item_ids = batch["item_ids"]
    pool = item_ids[:, 1:].masked_fill(~batch["mask"][:, 1:].to(item_ids.device), -1)
    picked = keep_ranked(pool.cpu(), scores[:, 1:].detach().float().cpu(), k)
    new_ids = torch.cat([item_ids[:, :1].cpu(), picked], dim=1)
    completions = []
    for b, comps in enumerate(batch["completion_ids"]):
        pos = {int(i): j for j, i in enumerate(item_ids[b].tolist()) if j > 0}
        completions.append([comps[0]] + [comps[pos[int(i)]] for i in picked[b].tolist() if i >= 0])
    out = {key: v for key, v in batch.items() if key != "adaptive_top_k"}
    out["item_ids"] = new_ids.to(item_ids.device)
    out["mask"] = (new_ids >= 0).to(item_ids.device)
    out["completion_ids"] = completions
    return out


def spec_from_group(neg_sampler: Any) -> NegativeSpec:
    """The ``neg_sampler`` group (a mapping or DictConfig) without its run-level keys (name, loss)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(neg_sampler, DictConfig):
            neg_sampler = OmegaConf.to_container(neg_sampler, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return NegativeSpec.from_cfg({k: v for k, v in dict(neg_sampler).items() if k not in ("name", "loss")})


def for_preference_stage(neg_sampler: Any, prepared: Any, title_ids: Sequence[Sequence[int]], seed: int,
                         max_history: int, seqrec: torch.nn.Module | None = None) -> BatchNegatives:
    """The BatchNegatives of an LLM preference run: the user's items and the frequencies come from the
    whole train split (not only the rows the stage trains on)."""
    spec = spec_from_group(neg_sampler)
    users = UserItems.from_rows(prepared.split("train"), prepared.n_items)
    return BatchNegatives(spec, prepared.n_items, title_ids, users, users.frequency(), seed, max_history, seqrec)
