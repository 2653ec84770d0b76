"""An adapter napo_lab saves is a plain PEFT adapter: for a model given as a hub-style directory
(``model=hf model.loader.name_or_path=<dir>``) its adapter_config.json names that directory, and
``AutoModelForCausalLM`` + ``PeftModel.from_pretrained`` outside napo_lab (a fresh interpreter that
never imports it) rebuild exactly the model napo_lab evaluated. napo_lab's own evaluation loads
through ``PeftModel.from_pretrained`` too (napo_lab.models.adapters.load_adapter)."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from safetensors.torch import load_file

from napo_lab.models.adapters import load_adapter
from napo_lab.models.llm import load_pretrained, load_tiny_random
from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg

PLAIN_PEFT = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel

adapter, out = sys.argv[1], sys.argv[2]
base_dir = json.load(open(adapter + "/adapter_config.json"))["base_model_name_or_path"]
tok = AutoTokenizer.from_pretrained(base_dir)
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter)
model.eval()
ids = tok("A user watched: Item 3, Item 7. Next:", return_tensors="pt").input_ids
with torch.no_grad():
    logits = model(ids).logits
torch.save({"ids": ids, "logits": logits, "napo_lab_imported": "napo_lab" in sys.modules}, out)
"""


def test_adapter_of_a_hub_style_model_dir_loads_with_plain_peft(tmp_path):
    base_dir = tmp_path / "tiny-llama"  # what `save_pretrained` / a hub download leaves
    model, tokenizer = load_tiny_random()
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    run = tmp_path / "run"
    hub = [o for o in TINY if not o.startswith("model=")]
    cfg = compose_cfg([*hub, "model=hf", f"model.loader.name_or_path={base_dir}", "model.loader.dtype=float32",
                       "loss=sft", "sft.train_limit=8", "dataset.test_limit=4", "dataset.val_limit=4"],
                      run, tmp_path / "cache")
    execute(cfg)
    adapter = run / "adapter"
    saved = json.loads((adapter / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(base_dir) and saved["r"] == 8
    assert any(t.abs().max() > 0 for k, t in load_file(adapter / "adapter_model.safetensors").items()
               if "lora_B" in k), "the adapter was not trained (LoRA B starts at zero)"

    out = tmp_path / "plain.pt"
    proc = subprocess.run([sys.executable, "-c", PLAIN_PEFT, str(adapter), str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = torch.load(out)
    assert plain["napo_lab_imported"] is False

    # napo_lab's own loader gives the same model; the trained adapter changes the base model's output.
    base, _ = load_pretrained(str(base_dir), dtype="float32")
    with torch.no_grad():
        before = base(plain["ids"]).logits
    ours = load_adapter(base, adapter).eval()
    with torch.no_grad():
        logits = ours(plain["ids"]).logits
    assert torch.allclose(logits, plain["logits"], atol=1e-6, rtol=0)
    assert not torch.allclose(logits, before, atol=1e-4)
