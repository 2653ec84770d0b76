"""Summed log-probabilities of completions given prompts, in two layouts.

``duplicate``: every (prompt, completion) pair is one sequence, as in S-DPO's and TRL's trainers.
The prompt (hundreds of tokens) is recomputed for each of its 1+K completions.

``shared_prefix`` (packed): each prompt and all of its completions form ONE row,
``[prompt | c1 | c2 | ... | cM]``, with a block attention mask (every completion sees the prompt and
its own earlier tokens, never another completion) and position ids that restart at the prompt
length for each completion. Every unique token is computed once, in one forward, and nothing is
copied per completion, so memory grows with the completion tokens only. It needs an attention
implementation that takes a custom 4-D mask (eager, SDPA).

``prefix_cache``: the prompt runs once with a KV cache and the completions continue from it (the
cache is gathered once per completion). Equal results; for attention kernels that cannot take a
custom mask (flash-attention).

Each layout is implemented by the function of its name (``_shared_prefix``, ``_prefix_cache``,
``_duplicate``); ``choose_layout`` decides once per run which one works for the model. In every
layout only completion positions go through the LM head (no full-vocabulary logits over
prompt tokens), plus, when asked, the chosen prompt positions of ``prompt_targets`` (the SFT stage's
history loss: the same forward also scores the history titles inside each prompt).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

log = logging.getLogger(__name__)

LAYOUTS = ("shared_prefix", "prefix_cache", "duplicate")


def causal_lm(model):
    """The transformers causal-LM module under an optional PEFT wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _token_logps(head, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over positions of log p(target | hidden); hidden [N, T, H], targets/mask [N, T].

    Only the positions the mask keeps go through the LM head (completions of different lengths pad
    to the longest: at K=3 the padding was half of the head's rows, each a 49k-wide logit row and its
    log-softmax, forward and backward); the others are 0, as the masked product made them. The same
    numbers (docs/performance.md, "Fifth pass")."""
    keep = mask.bool()
    if bool(keep.all()):
        return _token_logps_each(head, hidden, targets, mask).sum(-1)
    each = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
    each[keep] = _token_logps_each(head, hidden[keep].unsqueeze(0), targets[keep].unsqueeze(0),
                                   mask[keep].unsqueeze(0))[0]
    return each.sum(-1)


def _token_logps_each(head, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p(target | hidden) at every position (0 where masked); [N, T]."""
    logits = head(hidden).float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked - torch.logsumexp(logits, dim=-1)) * mask


def _flatten(completions: Sequence[Sequence[Sequence[int]]]):
    owner, flat = [], []
    for b, comps in enumerate(completions):
        for c in comps:
            if len(c) == 0:
                raise ValueError(f"prompt {b} has an empty completion; every completion needs >= 1 token")
            owner.append(b)
            flat.append(c)
    return owner, flat


def _unflatten(values: torch.Tensor, lengths: list[int], completions) -> tuple[torch.Tensor, torch.Tensor]:
    bsz = len(completions)
    width = max((len(c) for c in completions), default=0)
    out = values.new_zeros((bsz, width))
    lens = torch.zeros((bsz, width), dtype=torch.long, device=values.device)
    k = 0
    for b, comps in enumerate(completions):
        n = len(comps)
        if n:
            out[b, :n] = values[k : k + n]
            lens[b, :n] = torch.as_tensor(lengths[k : k + n], device=values.device)
        k += n
    return out, lens


def completion_logps(
    model,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    layout: str = "shared_prefix",
    pack_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (logps [B, M], lengths [B, M]) for B prompts with up to M completions each.

    ``completions[b]`` lists token-id lists that continue ``prompts[b]``; missing slots (a prompt with
    fewer than M completions) get log-prob 0 and length 0. ``pack_tokens`` (shared_prefix only): put
    several prompts' blocks in one row of at most that many tokens (``pack_blocks``).
    """
    logps, lengths, _ = completion_and_prompt_logps(model, prompts, completions, pad_id, layout,
                                                    pack_tokens=pack_tokens)
    return logps, lengths


def completion_and_prompt_logps(
    model,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    layout: str = "shared_prefix",
    prompt_targets: Sequence[Sequence[int]] | None = None,
    pack_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``completion_logps`` plus, for each prompt b, the summed log-probs of its own tokens at the
    positions ``prompt_targets[b]`` (each predicted from the position before it; position 0 has no
    prediction and is skipped): [B], or None when ``prompt_targets`` is None. One forward for both."""
    if layout not in LAYOUTS:
        raise ValueError(f"forward layout {layout!r} is unknown; use one of {LAYOUTS}")
    owner, flat = _flatten(completions)
    if not flat:
        raise ValueError("no completions to score")
    if layout == "shared_prefix":
        values, prompt_values = _shared_prefix(causal_lm(model), prompts, owner, flat, pad_id, prompt_targets,
                                               pack_tokens)
    else:  # packing needs the block mask: the other layouts keep one prompt per row
        fn = _prefix_cache if layout == "prefix_cache" else _duplicate
        values, prompt_values = fn(causal_lm(model), prompts, owner, flat, pad_id, prompt_targets)
    logps, lengths = _unflatten(values, [len(c) for c in flat], completions)
    return logps, lengths, prompt_values


def _prompt_logps(head, hidden: torch.Tensor, row_of: Sequence[int], prompts, targets,
                  offset: Sequence[int] | None = None) -> torch.Tensor | None:
    """[B] summed log p(prompts[b][t] | hidden at t-1) over t in targets[b]; prompt b's token t sits at
    position ``offset[b] + t`` (offset 0 when None) of row ``row_of[b]`` of ``hidden`` [R, T, H]."""
    if targets is None:
        return None
    owners, pos, tokens = [], [], []
    for b, ts in enumerate(targets):
        for t in ts:
            if 1 <= int(t) < len(prompts[b]):
                owners.append(b)
                pos.append(int(t))
                tokens.append(int(prompts[b][int(t)]))
    out = torch.zeros(len(prompts), dtype=torch.float32, device=hidden.device)
    if not owners:
        return out
    device = hidden.device
    rows = torch.as_tensor([row_of[b] for b in owners], device=device)
    shift = torch.as_tensor([offset[b] if offset is not None else 0 for b in owners], device=device)
    picked = hidden[rows, torch.as_tensor(pos, device=device) - 1 + shift].unsqueeze(0)  # [1, N, H]
    ones = torch.ones(picked.shape[:2], device=device)
    per_token = _token_logps_each(head, picked, torch.as_tensor(tokens, device=device).unsqueeze(0), ones)
    return out.index_add(0, torch.as_tensor(owners, device=device), per_token[0])


def _prefix_cache(lm, prompts, owner, flat, pad_id, prompt_targets=None):
    """The prompt once with a KV cache, gathered per completion (see module doc)."""
    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    device = head.weight.device
    p_ids, p_mask = _pad(prompts, pad_id, device)
    p_len = p_mask.sum(1)
    if int(p_len.min()) == 0:
        raise ValueError("an empty prompt cannot be scored")
    positions = torch.arange(p_ids.shape[1], device=device).unsqueeze(0).expand_as(p_ids)
    out = decoder(input_ids=p_ids, attention_mask=p_mask, position_ids=positions, use_cache=True)
    cache = out.past_key_values
    last = out.last_hidden_state[torch.arange(len(prompts), device=device), p_len - 1]  # [B, H]

    idx = torch.as_tensor(owner, device=device)
    cache.batch_select_indices(idx)
    c_ids, c_mask = _pad(flat, pad_id, device)
    attn = torch.cat([p_mask[idx], c_mask], dim=1)
    c_pos = p_len[idx].unsqueeze(1) + torch.arange(c_ids.shape[1], device=device).unsqueeze(0)
    out2 = decoder(input_ids=c_ids, attention_mask=attn, position_ids=c_pos, past_key_values=cache,
                   use_cache=True)
    hidden = torch.cat([last[idx].unsqueeze(1), out2.last_hidden_state[:, :-1]], dim=1)
    return (_token_logps(head, hidden, c_ids, c_mask),
            _prompt_logps(head, out.last_hidden_state, range(len(prompts)), prompts, prompt_targets))


def pad_rows(rows: list[list[int]], positions: list[list[int]], *labels: list[list[int]], pad_id: int,
             device) -> tuple[torch.Tensor, ...]:
    """Packed rows of unequal length as [B, W] tensors, padded on the right: token ids (pad_id),
    position ids (0) and each per-token label list (segment or example ids; -1 = padding), on ``device``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    labs = [torch.full((len(rows), width), -1, dtype=torch.long) for _ in labels]
    for b, (r, p) in enumerate(zip(rows, positions)):
        ids[b, :len(r)], pos[b, :len(r)] = torch.as_tensor(r), torch.as_tensor(p)
        for lab, values in zip(labs, labels):
            lab[b, :len(r)] = torch.as_tensor(values[b])
    return tuple(t.to(device) for t in (ids, pos, *labs))


def block_causal(example: torch.Tensor, segment: torch.Tensor | None = None) -> torch.Tensor:
    """[B, W, W] keep-mask of packed rows (``pad_rows`` labels, -1 = padding): a query sees the earlier
    non-padding keys of its own example, and among those only the example's shared prefix (segment 0)
    and its own segment; without ``segment`` the whole example. Padded queries see themselves, so no
    attention row is empty (NaN)."""
    width = example.shape[1]
    q_ex, k_ex = example.unsqueeze(2), example.unsqueeze(1)
    allowed = torch.ones(width, width, dtype=torch.bool, device=example.device).tril() & (k_ex >= 0) & (k_ex == q_ex)
    if segment is not None:
        q_seg, k_seg = segment.unsqueeze(2), segment.unsqueeze(1)
        allowed &= (k_seg == 0) | (k_seg == q_seg)
    return allowed | torch.eye(width, dtype=torch.bool, device=example.device)


def pack_blocks(lengths: Sequence[int], pack_tokens: int | None) -> list[list[int]]:
    """Rows of block indices: first-fit decreasing into rows of at most ``max(pack_tokens, longest)``
    tokens (every block in a row of its own when ``pack_tokens`` is None). Deterministic: ties keep
    the input order, and each row lists its blocks in input order."""
    if pack_tokens is None:
        return [[i] for i in range(len(lengths))]
    capacity = max(int(pack_tokens), max(lengths, default=0))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        r = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if r is None:
            rows.append([])
            room.append(capacity)
            r = len(rows) - 1
        rows[r].append(i)
        room[r] -= lengths[i]
    return [sorted(r) for r in rows]


def _shared_prefix(lm, prompts, owner, flat, pad_id, prompt_targets=None, pack_tokens=None):
    """Each prompt and its completions form one block [prompt | completions...] with a block-causal mask
    (see module doc); blocks are packed into rows of at most ``pack_tokens`` tokens (one block per row
    when None): a block attends only to itself and positions restart at 0 in each block."""
    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    device = head.weight.device
    bsz = len(prompts)
    comps_of: list[list[int]] = [[] for _ in range(bsz)]
    for k, b in enumerate(owner):
        comps_of[b].append(k)
    block_len = [len(prompts[b]) + sum(len(flat[k]) for k in comps_of[b]) for b in range(bsz)]
    rows: list[list[int]] = []
    positions: list[list[int]] = []
    example: list[list[int]] = []  # which prompt a token belongs to (-1 = padding, after pad_rows)
    segment: list[list[int]] = []  # 0 = prompt, k+1 = completion k
    row_of, offset = [0] * bsz, [0] * bsz
    starts = [0] * len(flat)
    packed_rows = pack_blocks(block_len, pack_tokens)
    for r, blocks in enumerate(packed_rows):
        ids_r: list[int] = []
        pos_r: list[int] = []
        ex_r: list[int] = []
        seg_r: list[int] = []
        for b in blocks:
            row_of[b], offset[b] = r, len(ids_r)
            p = list(prompts[b])
            ids_r += p
            pos_r += list(range(len(p)))
            ex_r += [b] * len(p)
            seg_r += [0] * len(p)
            for k in comps_of[b]:
                starts[k] = len(ids_r)
                ids_r += list(flat[k])
                pos_r += list(range(len(p), len(p) + len(flat[k])))
                ex_r += [b] * len(flat[k])
                seg_r += [k + 1] * len(flat[k])
        rows.append(ids_r)
        positions.append(pos_r)
        example.append(ex_r)
        segment.append(seg_r)
    ids, pos, ex, seg = pad_rows(rows, positions, example, segment, pad_id=pad_id, device=device)
    width = ids.shape[1]
    # Every row one prompt and at most one completion: the block mask would be plain causal attention on
    # each row's tokens, and the padding comes after them, so no real token can see it. No mask lets SDPA
    # run its causal kernel (it skips the masked half; GQA without copying keys/values): the same
    # attention, bit for bit, in less time (docs/performance.md, "Fourth pass").
    plain_causal = all(len(blocks) == 1 for blocks in packed_rows) and all(len(c) <= 1 for c in comps_of)
    mask = None if plain_causal else _as_attention_mask(block_causal(ex, seg).unsqueeze(1), lm, head.weight.dtype)
    hidden_all = decoder(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
    # Completion k's token t is predicted at its previous token; token 0 at the prompt's last token.
    c_ids, c_mask = _pad(flat, pad_id, device)
    t = torch.arange(c_ids.shape[1], device=device).unsqueeze(0)
    start = torch.as_tensor(starts, device=device).unsqueeze(1)
    prompt_last = torch.as_tensor([offset[b] + len(prompts[b]) - 1 for b in owner], device=device).unsqueeze(1)
    where = torch.where(t == 0, prompt_last, start + t - 1).clamp(max=width - 1)
    rows_idx = torch.as_tensor([row_of[b] for b in owner], device=device).unsqueeze(1).expand_as(where)
    hidden = hidden_all[rows_idx, where]
    return (_token_logps(head, hidden, c_ids, c_mask),
            _prompt_logps(head, hidden_all, row_of, prompts, prompt_targets, offset))


def _as_attention_mask(allowed: torch.Tensor, lm, dtype: torch.dtype) -> torch.Tensor:
    """A boolean keep-mask for SDPA, an additive float mask for eager attention."""
    impl = getattr(lm.config, "_attn_implementation", "sdpa")
    if impl == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)
    if impl != "sdpa":
        raise ValueError(f"forward=shared_prefix needs eager or sdpa attention, not {impl!r}; "
                         "use forward=prefix_cache")
    return allowed


def _duplicate(lm, prompts, owner, flat, pad_id, prompt_targets=None):
    decoder, head = lm.get_decoder(), lm.get_output_embeddings()
    device = head.weight.device
    seqs = [list(prompts[b]) + list(c) for b, c in zip(owner, flat)]
    ids, mask = _pad(seqs, pad_id, device)
    positions = torch.arange(ids.shape[1], device=device).unsqueeze(0).expand_as(ids)
    hidden_all = decoder(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
    c_ids, c_mask = _pad(flat, pad_id, device)
    starts = torch.as_tensor([len(prompts[b]) - 1 for b in owner], device=device)
    gather = (starts.unsqueeze(1) + torch.arange(c_ids.shape[1], device=device)).clamp(max=ids.shape[1] - 1)
    hidden = hidden_all.gather(1, gather.unsqueeze(-1).expand(-1, -1, hidden_all.shape[-1]))
    first_row = {b: k for k, b in reversed(list(enumerate(owner)))}  # a prompt's first sequence
    return (_token_logps(head, hidden, c_ids, c_mask),
            _prompt_logps(head, hidden_all, [first_row.get(b, 0) for b in range(len(prompts))], prompts,
                          prompt_targets))


def choose_layout(requested: str, model, strategy_name: str | None = None, checkpointing: bool = False) -> str:
    """The requested layout unless it cannot work here (training and evaluation both use the answer);
    say why in the log when falling back. ``checkpointing``: a training stage recomputes activations
    (``activation_checkpointing``), which drops the KV cache prefix_cache continues from; shared_prefix
    needs no cache and works with it."""
    if requested == "duplicate":
        return "duplicate"
    lm = causal_lm(model)
    if strategy_name and ("fsdp" in strategy_name or "deepspeed" in strategy_name):
        log.info("forward=duplicate: strategy %s shards the model and needs one forward per step", strategy_name)
        return "duplicate"
    impl = getattr(lm.config, "_attn_implementation", "sdpa")
    layout = requested
    if layout == "shared_prefix" and impl not in ("sdpa", "eager"):
        log.info("forward=prefix_cache: %s attention cannot take the packed block mask", impl)
        layout = "prefix_cache"
    checkpointing = checkpointing or bool(getattr(lm, "is_activation_checkpointing", False))
    if layout == "prefix_cache" and checkpointing:
        log.info("forward=duplicate: activation checkpointing drops the KV cache prefix_cache continues from")
        return "duplicate"
    return layout
