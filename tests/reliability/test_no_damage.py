"""Issue 16 (reliability, second pass): no run overwrites another, resume never damages or loses
anything, bad data and bad settings are refused before anything loads. Each case runs the command
line or the real function; the kill -9 / resume cases are in test_resume.py.

Every refusal: exit code 2 (or the error type), a short message naming what to fix, no traceback,
and nothing a user had changed or half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from napo_lab.data.prepare import ensure_prepared
from napo_lab.data.prepared import DataError, verify_prepared
from napo_lab.resume import claim_run_dir, find_interrupted
from tests.conftest import TINY, compose_cfg
from tests.data.data_helpers import dataset_cfg, file_hashes


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "NAPO_LAB_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **extra}


def _cli(module: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600,
                          env=_env(), **kw)


def _clean_refusal(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr[-3000:])


# -- 1. run directories are never shared --------------------------------------------------------------
def test_run_dirs_are_claimed_atomically_by_racing_claims(tmp_path, monkeypatch):
    wanted, got, start = tmp_path / "runs" / "same", [], threading.Barrier(8)

    def claim():
        start.wait()
        got.append(claim_run_dir(wanted))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in got) == sorted(["same"] + [f"same_{i}" for i in range(1, 8)])
    # a directory holding anything (a finished run, files of yours) is never claimed
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert claim_run_dir(tmp_path / "mine") == tmp_path / "mine_1"
    assert claim_run_dir(tmp_path / "empty") == tmp_path / "empty"
    monkeypatch.chdir(tmp_path / "mine")  # hydra.run.dir=. in a directory of yours
    assert claim_run_dir(".") == tmp_path / "mine_2"


def test_two_commands_started_at_once_get_two_run_dirs(tmp_path):
    run_dir = f"hydra.run.dir={tmp_path}/runs/" + "${now:%Y-%m-%d_%H-%M-%S}_${loss.name}"
    args = [sys.executable, "-m", "napo_lab.run", "model=tiny_random", "dataset=synthetic", "loss=sft",
            "eval.protocol=bogus", f"paths.cache_dir={tmp_path}/cache", run_dir]
    procs = [subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 2
    dirs = sorted((tmp_path / "runs").iterdir())
    assert len(dirs) == 2
    infos = [json.loads((d / "run_info.json").read_text()) for d in dirs]
    assert {i["pid"] for i in infos} == {p.pid for p in procs}
    for d in dirs:  # each run.log is one run's
        assert (d / "run.log").read_text().count("Invalid configuration") <= 1


# -- 9. a run directory under a regular file -------------------------------------------------------
def test_run_dir_under_a_file_is_one_paragraph(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    done = _cli("napo_lab.run", "model=tiny_random", "dataset=synthetic", f"hydra.run.dir={tmp_path}/afile/run")
    _clean_refusal(done, "hydra.run.dir=", f"{tmp_path}/afile is a file, not a directory")
    assert (tmp_path / "afile").read_text() == "not a directory"


# -- 6. resume=auto continues interrupted runs only ------------------------------------------------
@pytest.mark.parametrize("status, continued", [("running", True), ("interrupted", True), ("failed", False),
                                               ("ok", False)])
def test_resume_auto_continues_only_interrupted_runs(tmp_path, status, continued):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run = tmp_path / "runs" / "earlier"
    (run / "checkpoints" / "sft").mkdir(parents=True)
    (run / "checkpoints" / "sft" / "last.ckpt").write_bytes(b"x")
    (run / "run_info.json").write_text(json.dumps({"status": status, "overrides": ["loss=sft"], "pid": gone.pid,
                                                   "host": os.uname().nodename}))
    found = find_interrupted([tmp_path / "runs"], ["loss=sft", "resume=auto"], exclude=tmp_path / "runs" / "new")
    assert found == (run if continued else None)


# -- 5. results do not depend on whether the SFT adapter was cached --------------------------------
@pytest.mark.slow
def test_cold_and_warm_sft_cache_give_identical_preference_runs(tmp_path):
    from napo_lab.run import execute

    overrides = [*TINY, "loss=sdpo", "model.lora.lora_dropout=0.3", "eval.references=false", "sft.epochs=1",
                 "pref.epochs=1"]
    cache = tmp_path / "cache"
    out = {}
    for name in ("cold", "warm"):
        out[name] = tmp_path / name
        execute(compose_cfg(overrides, out[name], cache))
    cold, warm = (json.loads((out[n] / "metrics.json").read_text()) for n in ("cold", "warm"))
    assert cold.pop("sft/reused_cache") == 0.0 and warm.pop("sft/reused_cache") == 1.0
    steady = lambda m: {k: v for k, v in m.items() if "seconds" not in k and "wall" not in k}  # noqa: E731
    assert steady(cold) == steady(warm)
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (out["cold"] / "adapter" / name).read_bytes() == (out["warm"] / "adapter" / name).read_bytes()
    config = json.loads((out["cold"] / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == sorted(config["target_modules"])  # 13: byte-stable across processes


# -- 10. cached prepared data is checked against its manifest --------------------------------------
def test_truncated_cached_split_is_prepared_again(tmp_path):
    cfg = dataset_cfg("synthetic")
    root = ensure_prepared(cfg, cache_dir=tmp_path)
    good = file_hashes(root)
    assert verify_prepared(root) is None
    data = (root / "test.parquet").read_bytes()
    (root / "test.parquet").write_bytes(data[: len(data) // 2])
    assert "test.parquet" in verify_prepared(root)
    assert ensure_prepared(cfg, cache_dir=tmp_path) == root
    assert file_hashes(root) == good


def test_prepare_with_a_corrupt_cached_manifest_rebuilds(tmp_path):
    args = ("dataset=synthetic", f"paths.cache_dir={tmp_path}")
    assert _cli("napo_lab.prepare", *args).returncode == 0
    (root,) = (tmp_path / "prepared").glob("synthetic-*")
    good = file_hashes(root)
    (root / "manifest.json").write_text("{ not json")
    done = _cli("napo_lab.prepare", *args)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "failed its check" in done.stdout + done.stderr
    assert file_hashes(root) == good


# -- 11. empty data is refused at prepare time, with the reason -----------------------------------
@pytest.mark.parametrize("rows, needle", [
    ([], "holds no items"),
    ([f"u{i},i{i % 5},{i},Item {i % 5}" for i in range(40)], "split 'train' has no usable rows"),
], ids=["header-only", "one-interaction-per-user"])
def test_empty_custom_data_is_refused_at_prepare_time(tmp_path, rows, needle):
    path = tmp_path / "interactions.csv"
    path.write_text("\n".join(["user,item,timestamp,title", *rows]) + "\n")
    done = _cli("napo_lab.prepare", "dataset=custom", f"dataset.path={path}", f"paths.cache_dir={tmp_path / 'c'}")
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "min_history" in done.stderr or "source files" in done.stderr
    assert not list((tmp_path / "c" / "prepared").glob("custom-*"))  # nothing half-written


# -- 12. an empty id2name.txt is named --------------------------------------------------------------
def test_empty_id2name_is_named(tmp_path):
    from napo_lab.data.sources.lastfm import read_id2name

    (tmp_path / "id2name.txt").write_text("")
    with pytest.raises(DataError, match=r"id2name\.txt: no `id::name` lines"):
        read_id2name(tmp_path / "id2name.txt")


# -- 13. a corrupt adapter is named -----------------------------------------------------------------
@pytest.mark.slow  # loads the model: ~10 s alone, minutes on a busy machine
def test_corrupt_adapter_is_named(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    done = _cli("napo_lab.evaluate", "model=tiny_random", "dataset=synthetic", "dataset.test_limit=2",
                "eval.max_new_tokens=2", "logger=none", f"adapter={adapter}", f"paths.cache_dir={tmp_path / 'c'}",
                f"hydra.run.dir={tmp_path / 'run'}")
    _clean_refusal(done, str(adapter / "adapter_model.safetensors"), "corrupt")


# -- 7. settings the first pass found checked too late: refused before anything loads --------------
LATE = ["eval.protocol=bogus", "eval.max_new_tokens=0", "eval.splits=[train]", "dataset.test_split=nope",
        "data.eval_batch_size=0", "loss.negatives.strategy=bogus", "+logger.bogus=1", "sft.global_batch_size=10",
        "pref.weight_decay=-1", "trainer.precision=17", "pref.warmup_ratio=nan", "checkpoint.every_n_steps=often",
        "sft.lr=nan", "seed=-1", "sft.scheduler=cosin", "+loss.objective.betta=1", "+loss.objective.gama=2"]


def test_late_settings_are_all_refused_before_loading(tmp_path):
    cache = tmp_path / "cache"
    done = _cli("napo_lab.run", "model=tiny_random", "dataset=synthetic", "loss=sdpo", *LATE,
                f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}")
    keys = [o.lstrip("+").split("=")[0] for o in LATE]
    _clean_refusal(done, *[k.replace("loss.objective.", "") for k in keys])
    assert not (cache / "prepared").exists() and not (cache / "models").exists()
    assert "betta, gama" in done.stderr  # unknown options listed together
