"""The commands of issue 15 on the output of a real (tiny) run: evaluate with only the adapter path,
recommend, titles in predictions, a quiet terminal, prepare's help and cache, tab completion."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import SHRINK, describe, env, run_module

from napo_lab.data.prepared import PreparedDataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`python -m napo_lab.run loss=dpo` (tiny), through the real CLI: (run dir, process, cache)."""
    root = tmp_path_factory.mktemp("trained")
    cache = root / "cache"
    run = root / "run"
    proc = run_module("napo_lab.run", ["loss=dpo", *SHRINK, "eval.references=false", "logger=wandb",
                                       "logger.wandb.log_adapter=true", f"hydra.run.dir={run}"],
                      root, cache, WANDB_DATA_DIR=str(root / "wandb-data"))  # W&B stages artifact files there
    assert proc.returncode == 0, describe(proc)
    return run, proc, cache


def _prepared(cache: Path) -> PreparedDataset:
    (root,) = (cache / "prepared").glob("synthetic-*")
    return PreparedDataset.load(root)


def test_adapter_is_self_describing(trained):
    run, _, _ = trained
    adapter = run / "adapter"
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "napo_lab:tiny_random" and cfg["r"] == 4
    card = (adapter / "README.md").read_text()
    assert "base_model: napo_lab:tiny_random" in card and "dataset: `synthetic`" in card and "`dpo`" in card
    assert "r=4, lora_alpha=8" in card and "| `test/hr@1` |" in card
    assert "[More Information Needed]" not in card  # not PEFT's blank template
    saved = (adapter / "napo_lab_config.yaml").read_text()
    assert "name: tiny_random" in saved and "test_limit: 4" in saved


def test_evaluate_needs_only_the_adapter_path(trained, tmp_path):
    """Before: the default SmolLM2 was loaded whatever the run used, then 28 size-mismatch lines."""
    run, _, cache = trained
    out = tmp_path / "eval"
    proc = run_module("napo_lab.evaluate", [f"adapter={run / 'adapter'}", f"hydra.run.dir={out}"], tmp_path, cache)
    assert proc.returncode == 0, describe(proc)
    got = json.loads((out / "metrics.json").read_text())
    want = json.loads((run / "metrics.json").read_text())
    same = [k for k in want if k.startswith("test/") and "seconds" not in k]
    assert same and all(got[k] == want[k] for k in same), [(k, got.get(k), want[k]) for k in same]
    info = json.loads((out / "run_info.json").read_text())
    assert info["method"] == "dpo" and info["model"] == "tiny_random"


def test_foreign_and_corrupt_adapters_get_one_paragraph(trained, tmp_path):
    run, _, cache = trained
    proc = run_module("napo_lab.evaluate", [f"adapter={run / 'adapter'}", "model=tiny_random",
                                            "model.loader.hidden_size=48", f"hydra.run.dir={tmp_path / 'a'}"],
                      tmp_path, cache)
    assert proc.returncode == 2, describe(proc)
    assert "adapter_model.safetensors does not fit this model" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("size mismatch") <= 1 and "base_model_name_or_path" in proc.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in (run / "adapter").iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    proc = run_module("napo_lab.evaluate", [f"adapter={broken}", f"hydra.run.dir={tmp_path / 'b'}"], tmp_path, cache)
    assert proc.returncode == 2, describe(proc)
    assert f"{broken / 'adapter_model.safetensors'} cannot be read" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_predictions_carry_titles(trained):
    run, _, cache = trained
    titles = _prepared(cache).titles
    pred = pd.read_parquet(run / "predictions_test.parquet")
    assert len(pred) == 4
    for row in pred.itertuples():
        assert row.target_title == titles[row.target]
        assert list(row.candidate_titles) == [titles[c] for c in row.candidates]
        assert list(row.history_titles) == [titles[h] for h in row.history] and len(row.history) > 0
        assert row.matched_title == (titles[row.matched] if row.matched >= 0 else "")


def test_recommend_prints_the_top_k_with_scores_and_titles(trained, tmp_path):
    run, _, cache = trained
    prepared = _prepared(cache)
    titles = prepared.titles
    user = prepared.split("test").iloc[0]
    history = [titles[int(i)] for i in user["history"]]
    proc = run_module("napo_lab.recommend", [f"adapter={run}", f"history=[{','.join(repr(t) for t in history)}]",
                                             "k=3"], tmp_path, cache)
    assert proc.returncode == 0, describe(proc)
    rows = [ln for ln in proc.stdout.splitlines() if re.match(r"^│\s*\d+\s*│", ln)]
    assert len(rows) == 3, proc.stdout
    cells = [[c.strip() for c in ln.strip("│").split("│")] for ln in rows]
    assert [c[0] for c in cells] == ["1", "2", "3"]
    assert all(titles[int(c[1])] == c[2] for c in cells)  # id and title agree
    scores = [float(c[3]) for c in cells]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)  # log-likelihoods
    assert all(int(c[1]) not in set(map(int, user["history"])) for c in cells)
    # The same user from a file of item ids gives the same table.
    file = tmp_path / "history.txt"
    file.write_text("\n".join(str(int(i)) for i in user["history"]) + "\n")
    again = run_module("napo_lab.recommend", [f"adapter={run / 'adapter'}", f"history_file={file}", "k=3"],
                       tmp_path, cache)
    assert again.returncode == 0, describe(again)
    assert [ln for ln in again.stdout.splitlines() if re.match(r"^│\s*\d+\s*│", ln)] == rows
    bad = run_module("napo_lab.recommend", [f"adapter={run}", "history=[no such title]"], tmp_path, cache)
    assert bad.returncode == 2 and "history: no item titled 'no such title'" in bad.stderr, describe(bad)
    assert "Traceback" not in bad.stderr


def test_quiet_terminal(trained):
    run, proc, _ = trained
    text = proc.stdout + proc.stderr
    lightning = [ln.split("] - ", 1)[-1] for ln in text.splitlines() if "lightning" in ln or ln.startswith("INFO:")]
    assert not any(ln.startswith("INFO: ") for ln in text.splitlines()), "Lightning's own handler prints a copy"
    # each stage's Trainer says its lines once (SFT, then the preference stage)
    assert sum("GPU available" in ln for ln in lightning) == sum("`Trainer.fit` stopped" in ln for ln in lightning) == 2
    for nag in ("litlogger", "FutureWarning", "DeprecationWarning", "warnings.warn(", "is deprecated",
                "anonymous setting"):
        assert nag not in text, nag
    assert "This is the CPU-sized job" not in text  # only for the default job (no overrides)
    assert f"run dir: {run}" in proc.stdout.splitlines()  # one unbroken line


def test_prepare_help_lists_only_its_groups(tmp_path):
    proc = run_module("napo_lab.prepare", ["--help"], tmp_path, tmp_path / "cache")
    assert proc.returncode == 0, describe(proc)
    datasets = ", ".join(sorted(p.stem for p in (Path(__file__).parents[2] / "conf" / "dataset").glob("*.yaml")))
    assert f"dataset: {datasets}" in proc.stdout
    for other in ("loss:", "trainer:", "hparams_search", "model:", "strategy:"):
        assert other not in proc.stdout, other


def test_custom_csv_by_absolute_and_relative_path_is_one_dataset(tmp_path):
    rows = ["user,item,timestamp,title"]
    for u in range(40):
        for t in range(14):
            item = (u * 3 + t * 7) % 30
            rows.append(f"u{u},i{item},{t},Item number {item}")
    (tmp_path / "mine.csv").write_text("\n".join(rows) + "\n")
    cache = tmp_path / "cache"
    for path in ("mine.csv", str(tmp_path / "mine.csv"), "./mine.csv"):
        proc = run_module("napo_lab.prepare", ["dataset=custom", f"dataset.path={path}"], tmp_path, cache)
        assert proc.returncode == 0, describe(proc)
    assert len(list((cache / "prepared").glob("custom-*"))) == 1


@pytest.mark.parametrize("module, line, expected", [
    ("napo_lab.run", "napo-run loss=sd", "loss=sdpo"),
    ("napo_lab.recommend", "napo-recommend model=tiny_r", "model=tiny_random"),
    ("napo_lab.prepare", "napo-prepare dataset=synth", "dataset=synthetic"),
])
def test_console_scripts_complete(tmp_path, module, line, expected):
    """What `eval "$(napo-run -sc install=bash)"` installs: the script answers the shell's query."""
    script = line.split()[0]
    code = f"import sys; sys.argv = [{script!r}, '-sc', 'query=bash']; from {module} import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=env(tmp_path / "cache", COMP_LINE=line))
    assert expected in proc.stdout.split(), describe(proc)


def test_console_scripts_are_declared_and_help_says_how_to_complete(tmp_path):
    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"napo-run": "napo_lab.run:main", "napo-prepare": "napo_lab.prepare:main",
                       "napo-evaluate": "napo_lab.evaluate:main", "napo-report": "napo_lab.report:main",
                       "napo-recommend": "napo_lab.recommend:main"}
    proc = run_module("napo_lab.run", ["--help"], tmp_path, tmp_path / "cache")
    assert 'eval "$(napo-run -sc install=bash)"' in proc.stdout, describe(proc)


def test_training_metrics_by_trl_names(trained):
    """Preference steps log TRL's names (rewards/accuracies, rewards/margins, logps/chosen, logps/rejected)
    plus lr and grad_norm; SFT steps log no reward metrics (before: rewards/accuracy=0)."""
    run, _, _ = trained
    tm = pd.read_csv(run / "train_metrics.csv")
    pref, sft = tm[tm["stage"] == "pref"], tm[tm["stage"] == "sft"]
    assert len(pref) and len(sft)
    for col in ("train/rewards/accuracies", "train/rewards/margins", "train/logps/chosen", "train/logps/rejected",
                "train/lr", "train/grad_norm"):
        assert col in tm.columns and pref[col].notna().all(), col
    assert (pref["train/rewards/accuracies"] == pref["train/rewards/accuracy"]).all()
    assert (pref["train/logps/chosen"] < 0).all() and (pref["train/grad_norm"] > 0).all()
    assert not any(c.startswith("train/rewards/") and sft[c].notna().any() for c in tm.columns)


def test_cdpo_answers_to_trl_label_smoothing(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from napo_lab import CONF_DIR
    from napo_lab.recipe.validate import validate

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["loss=cdpo", "+loss.objective.label_smoothing=0.2", "model=tiny_random",
                                           f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}"])
    validate(cfg)
    assert instantiate(cfg.loss.objective).eps == 0.2


def test_wandb_key_without_network_falls_back_offline_at_once(monkeypatch, caplog):
    """Before: with WANDB_API_KEY set and no network, about 3 minutes of retries, then "unexpected CommError"."""
    from napo_lab.lit.loggers import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    with caplog.at_level("WARNING", logger="napo_lab"):
        assert wandb_mode(None) == "offline"
    assert len(caplog.records) == 1  # one warning, and a refused connection is answered at once
    assert "cannot be reached: logging offline" in caplog.text


def test_wandb_run_has_results_and_predictions_tables(trained):
    from napo_lab.lit.loggers import read_offline_run

    run, _, _ = trained
    (offline,) = (run / "wandb").glob("offline-run-*")
    summary = read_offline_run(offline)["summary"]
    for key in ("results", "predictions/test"):
        assert summary[f"{key}/_type"] == "table-file", key
    assert summary["predictions/test/nrows"] == 4 and summary["predictions/test/ncols"] == 7
    assert summary["results/nrows"] > 10


def test_wandb_history_has_the_sft_stage_under_its_prefix(trained):
    """Before: the W&B history held only the preference steps. Now the SFT stage is there too, every key
    under sft/ and plotted against sft/step, the preference stage keeps TRL's names: both curves, and no
    key gets two values at one step. Each logged value is the one train_metrics.csv holds for that step."""
    from napo_lab.lit.loggers import read_offline_run

    run, _, _ = trained
    (offline,) = (run / "wandb").glob("offline-run-*")
    logged = read_offline_run(offline)
    tm = pd.read_csv(run / "train_metrics.csv")
    sft, pref = tm[tm["stage"] == "sft"], tm[tm["stage"] == "pref"]
    sft_rows = [r for r in logged["history"] if "sft/train/loss" in r]
    pref_rows = [r for r in logged["history"] if "train/loss" in r]
    assert len(sft_rows) == len(sft) > 0 and len(pref_rows) == len(pref) > 0
    assert [r["sft/train/loss"] for r in sft_rows] == pytest.approx(list(sft["train/loss"]), rel=1e-6)
    assert [r["train/loss"] for r in pref_rows] == pytest.approx(list(pref["train/loss"]), rel=1e-6)
    assert [r["sft/step"] for r in sft_rows] == list(range(len(sft)))  # the SFT stage's own x axis
    assert logged["axes"]["sft/*"] == "sft/step"
    assert max(r["_step"] for r in sft_rows) < min(r["_step"] for r in pref_rows)  # SFT first, then preference
    for row in sft_rows:
        assert all(k.startswith("sft/") or k.startswith("_") or k == "trainer/global_step" for k in row), row
        assert not any(k.startswith("sft/train/rewards/") for k in row)  # SFT logs no reward metrics
    assert all("train/rewards/accuracies" in r and not any(k.startswith("sft/") for k in r) for r in pref_rows)


def test_stage_logger_prefixes_keys_once_and_keeps_the_validation_curve_name(tmp_path):
    """One name everywhere: the validation curve is curve/<stage>/... in train_metrics.csv, so the
    loggers get it under the same name (W&B plots it against the stage's own step)."""
    from lightning.pytorch.loggers import CSVLogger

    from napo_lab.lit.loggers import StageLogger

    lg = StageLogger(CSVLogger(str(tmp_path)), "sft")
    assert lg.key("train/loss") == "sft/train/loss" and lg.key("sft/epoch") == "sft/epoch"
    assert lg.key("curve/sft/val/rank/mrr") == "curve/sft/val/rank/mrr"
    assert lg.key("curve/pref/val/rank/mrr") == "sft/curve/pref/val/rank/mrr"


def test_wandb_adapter_artifact_is_opt_in_and_holds_the_adapter_and_card(trained):
    """logger.wandb.log_adapter=true: the trained adapter as an Artifact of type model in the (offline)
    run: the four files of <run>/adapter with W&B's MD5 digests, staged copies equal to them, the card
    as its description."""
    import base64
    import hashlib

    from napo_lab.lit.loggers import read_offline_run

    run, _, _ = trained
    (offline,) = (run / "wandb").glob("offline-run-*")
    models = [a for a in read_offline_run(offline)["artifacts"] if a["type"] == "model"]
    assert len(models) == 1, models
    art, adapter = models[0], run / "adapter"
    assert art["name"] == f"adapter-{offline.name.rsplit('-', 1)[-1]}"
    want = {f.name: f.read_bytes() for f in adapter.iterdir()}
    assert set(art["files"]) == set(want) == {"adapter_model.safetensors", "adapter_config.json", "README.md",
                                              "napo_lab_config.yaml"}
    for name, data in want.items():
        entry = art["files"][name]
        assert entry["digest"] == base64.b64encode(hashlib.md5(data).digest()).decode() and entry["size"] == len(data)
        assert Path(entry["local_path"]).read_bytes() == data  # what `wandb sync` uploads
    assert art["description"] == want["README.md"].decode()
    assert art["metadata"]["base_model"] == "napo_lab:tiny_random" and art["metadata"]["r"] == 4
