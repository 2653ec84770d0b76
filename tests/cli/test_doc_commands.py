"""Every command in README.md, docs/ and experiments/README.md, exactly as written (doc_commands
extracts them from the documents, so a new command is covered without editing this file).

Default suite, for every command: the config each of its jobs composes to (real Hydra, every value
of a sweep's comma lists) passes napo_lab's validation, and each placeholder (<run dir>, <time>)
and make target exists. ``-m slow`` (make test-slow): each command that can run here (no GPU, no
cluster, at most 4 jobs) really runs on the tiny model, as written plus only size-shrinking
overrides (SHRINK, n_trials=2), and the report / evaluate / wandb sync commands run on what the
documented training commands wrote.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from cli_helpers import REPO, SHRINK, SHRINK_CF, SHRINK_SEQ, SHRINK_SHAPLEY, describe, run_module
from doc_commands import DocCommand, all_commands, benchmark_commands, extract
from hydra import compose, initialize_config_dir

from napo_lab import CONF_DIR
from napo_lab.config.compose import group
from napo_lab.recipe.validate import validate

COMMANDS = all_commands()
HYDRA_APPS = {"napo_lab.run": "config", "napo_lab.evaluate": "evaluate", "napo_lab.recommend": "recommend",
              "napo_lab.prepare": "prepare"}
#: What cannot run on this machine: GPUs, a cluster, or a paper-size model (checked by composition only).
NEEDS_HARDWARE = re.compile(r"trainer=gpu|hydra/launcher=(slurm|ray_cluster)|experiment=paper_")
MAX_JOBS = 4


def _expand(cmd: DocCommand) -> list[DocCommand]:
    """`dataset=<lastfm|movielens>` in prose stands for one command per choice."""
    m = re.search(r"<([a-z0-9_]+(?:\|[a-z0-9_]+)+)>", cmd.text)
    if not m:
        return [cmd]
    return [DocCommand(cmd.source, cmd.text.replace(m.group(0), choice)) for choice in m.group(1).split("|")]


EXPANDED = [c for cmd in COMMANDS for c in _expand(cmd)]


def _ids(cmds):
    return [f"{c.source} {c.text}" for c in cmds]


def _overrides(cmd: DocCommand) -> list[str]:
    return [a for a in cmd.args if not a.startswith("-")]


def _options(cmd: DocCommand) -> list[list[str]]:
    multirun = "-m" in cmd.args or "--multirun" in cmd.args
    options = []
    for o in _overrides(cmd):
        key, _, value = o.partition("=")
        sweep = multirun and "," in value and not value.startswith(("[", "{")) and not key.startswith("hydra.")
        options.append([f"{key}={v}" for v in value.split(",")] if sweep else [o])
    return options


def _jobs(cmd: DocCommand) -> list[list[str]]:
    """The jobs a command starts: the product of its comma lists when it is a multirun."""
    return [list(p) for p in itertools.product(*_options(cmd))]


def _covering_jobs(cmd: DocCommand) -> list[list[str]]:
    """Enough jobs that every value of every comma list is composed at least once (values of different
    keys compose independently, so the full product adds nothing to a composition check)."""
    options = _options(cmd)
    n = max((len(o) for o in options), default=1)
    return [[o[i % len(o)] for o in options] for i in range(n)]


def _compose_overrides(job: list[str]) -> list[str]:
    """Overrides the compose API takes: Hydra's own (launcher, sweeper) are checked by the slow runs."""
    return [o for o in job if not o.startswith(("hydra/", "hydra.", "~hydra"))]


def test_the_docs_hold_commands():
    texts = [c.text for c in COMMANDS]
    assert len(texts) >= 25 and any(t.startswith("python -m napo_lab.evaluate") for t in texts)
    assert "python -m napo_lab.run" in texts and any("hparams_search=napo_optuna" in t for t in texts)
    # indented (4-space) code blocks count too: docs/preferdiff.md shows its commands that way
    assert {c.source: c.text for c in COMMANDS}.get("docs/preferdiff.md:9", "").startswith(
        "python -m napo_lab.run model=preferdiff model.hidden_size=256")


def test_indented_code_blocks_are_read_like_bash_blocks(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Text.\n\n    python -m napo_lab.run model=sasrec \\\n        dataset=lastfm   # a comment\n\n"
                   "- a list item\n    with `python -m napo_lab.evaluate adapter=x` inline\n")
    assert [(c.source.rsplit(":", 1)[1], c.text) for c in extract(str(doc))] == [
        ("3", "python -m napo_lab.run model=sasrec dataset=lastfm"), ("7", "python -m napo_lab.evaluate adapter=x")]


@pytest.mark.parametrize("cmd", EXPANDED, ids=_ids(EXPANDED))
def test_every_documented_command_composes_and_validates(cmd: DocCommand, tmp_path):
    cmd = DocCommand(cmd.source, re.sub(r"<[^<>|]+>", "PLACEHOLDER", cmd.text))  # <run dir>, <time>
    words = cmd.words
    if words[0] == "make":
        targets = subprocess.run(["make", "-pRrq", "-f", str(REPO / "Makefile")], capture_output=True, text=True)
        assert re.search(rf"^{re.escape(words[1])}:", targets.stdout, re.M), f"no make target {words[1]}"
        return
    if words[:2] == ["wandb", "sync"]:
        assert re.fullmatch(r"wandb sync .+/wandb/offline-run-\*", cmd.text), "offline runs are in <dir>/wandb/"
        return
    module = cmd.module
    assert module is not None and (REPO / (module.replace(".", "/") + ".py")).is_file(), f"no module {module}"
    if module not in HYDRA_APPS:  # napo_lab.report, napo_lab.curve: argparse
        import importlib

        with pytest.raises(SystemExit) as done:
            importlib.import_module(module).main(["--help"])
        assert done.value.code == 0
        return
    for job in _covering_jobs(cmd):
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(HYDRA_APPS[module], overrides=[*_compose_overrides(job), f"paths.cache_dir={tmp_path}",
                                                            *([] if module == "napo_lab.prepare" else
                                                              [f"paths.output_dir={tmp_path}"])])
        if module != "napo_lab.prepare":
            cfg = _without_own_keys(cfg)
            validate(cfg)


def _without_own_keys(cfg):
    from omegaconf import open_dict

    with open_dict(cfg):
        for key in ("history", "history_file", "candidates", "k"):
            cfg.pop(key, None)
    return cfg


# ----------------------------------------------------------------------------- slow: run them


def _runnable(cmd: DocCommand) -> str | None:
    """Why a command cannot run here (None: it runs)."""
    if cmd.words[0] == "make":
        return "make installs and runs the whole suite / the default job (make test runs this file)"
    if NEEDS_HARDWARE.search(cmd.text):
        return "needs GPUs, a cluster or a paper-size model"
    if len(_jobs(cmd)) > MAX_JOBS:
        return f"{len(_jobs(cmd))} jobs"
    return None


def _shrunk(cmd: DocCommand, tmp: Path, placeholders: dict[str, str]) -> list[str]:
    text = cmd.text  # placeholders first: `<run dir>` is one value, though shlex would split it in two
    for key, value in placeholders.items():
        text = text.replace(key, value)
    args = DocCommand(cmd.source, text).args
    if cmd.module in ("napo_lab.run", "napo_lab.evaluate", "napo_lab.recommend"):
        multirun = "-m" in args or "hparams_search=" in cmd.text or "experiment=sweep_" in cmd.text
        shrink = list(SHRINK)
        model = re.search(r"(?:^|\s)model=(\w+)", text)
        if model:  # a conventional recommender's size is its own epochs (its model group's `kind`)
            shrink += {"cf": SHRINK_CF, "seqrec": SHRINK_SEQ}.get(str(group("model", model[1]).get("kind")), [])
        if re.search(r"\bsampler=triplet_shapley", text):
            shrink += SHRINK_SHAPLEY
        args += [o for o in shrink if o.split("=")[0] not in {x.split("=")[0] for x in args}]
        args.append(f"hydra.sweep.dir={tmp / 'sweep'}" if multirun else f"hydra.run.dir={tmp / 'run'}")
        if "hparams_search=" in cmd.text:
            args.append("hydra.sweeper.n_trials=2")
        if cmd.module in ("napo_lab.evaluate", "napo_lab.recommend"):  # the adapter brings its own (tiny) model
            args = [a for a in args if not a.startswith("model=")]
    return args


@pytest.fixture(scope="session")
def produced(tmp_path_factory):
    """A sweep and a run made by documented commands (the placeholders' values)."""
    root = tmp_path_factory.mktemp("docs")
    cache = root / "cache"
    sweep_cmd = next(c for c in COMMANDS if "-m logger=wandb" in c.text and _runnable(c) is None)
    proc = run_module("napo_lab.run", _shrunk(sweep_cmd, root / "s", {}), root, cache)
    assert proc.returncode == 0, describe(proc)
    run_cmd = next(c for c in COMMANDS if c.text == "python -m napo_lab.run loss=dpo")
    proc = run_module("napo_lab.run", _shrunk(run_cmd, root / "r", {}), root, cache)
    assert proc.returncode == 0, describe(proc)
    return root, cache, {"multirun/train/<sweep-dir>": str(root / "s" / "sweep"),
                         "multirun/train/<time>": str(root / "s" / "sweep"),
                         "multirun/paper/<time>": str(root / "s" / "sweep"), "<dir>": str(root / "s" / "sweep"),
                         "multirun/lastfm_curve": str(root / "s" / "sweep"),
                         "<run dir>": str(root / "r" / "run")}


RUNNABLE = [c for c in EXPANDED if _runnable(c) is None]


@pytest.mark.slow
@pytest.mark.parametrize("cmd", RUNNABLE, ids=_ids(RUNNABLE))
def test_every_documented_command_runs_as_written(cmd: DocCommand, produced, tmp_path):
    root, cache, placeholders = produced
    if cmd.words[:2] == ["wandb", "sync"]:
        pattern = cmd.text.split(" ", 2)[2]
        # `<run dir>` here is a run that logged to W&B: a job of the documented `-m logger=wandb` sweep
        wandb_run = next(Path(placeholders["<dir>"]).glob("*/wandb")).parent
        for key, value in {**placeholders, "<run dir>": str(wandb_run)}.items():
            pattern = pattern.replace(key, value)
        found = list(Path("/").glob(pattern.lstrip("/")))
        assert found and all(p.is_dir() for p in found), pattern
        return
    if not cmd.args and cmd.module in ("napo_lab.recommend", "napo_lab.report"):
        # a script's bare name in prose (`napo-recommend`): alone it says what it needs, exit 2, no traceback
        proc = run_module(cmd.module, [], tmp_path, cache, **cmd.env)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, describe(proc)
        assert "history" in proc.stderr if cmd.module == "napo_lab.recommend" else "path" in proc.stderr
        return
    proc = run_module(cmd.module, _shrunk(cmd, tmp_path, placeholders), tmp_path, cache, **cmd.env)
    assert proc.returncode == 0, describe(proc)
    if cmd.module == "napo_lab.run":
        summary = proc.stdout.split("sweep:")[-1].split("\n")[0]  # a multirun's "4 jobs, 4 ok, 0 failed"
        assert "Traceback" not in proc.stderr and not re.search(r"\b[1-9]\d* failed", summary), summary


# --- the benchmark's commands (`python -m benchmarks.run ...`) -------------------------------------------------
BENCH = benchmark_commands()
# the size-shrinking flags: the tiny random model in-process (no contention or memory subprocesses), one round
BENCH_SHRINK = ["--quick", "--max-rounds", "1"]


def _bench_runnable(cmd: DocCommand) -> str | None:
    return "needs a GPU" if "--device cuda" in cmd.text else None


BENCH_RUNNABLE = [c for c in BENCH if _bench_runnable(c) is None]


def test_the_docs_hold_benchmark_commands():
    texts = {c.text for c in BENCH}
    assert {"python -m benchmarks.run", "python -m benchmarks.run --quick"} <= texts
    assert any("--contention-rounds 2" in t for t in texts)  # a prose span over two lines is read whole
    assert len(BENCH_RUNNABLE) >= 3 and len(BENCH) > len(BENCH_RUNNABLE)  # the cuda one is listed, not run


@pytest.mark.slow
@pytest.mark.parametrize("cmd", BENCH_RUNNABLE, ids=_ids(BENCH_RUNNABLE))
def test_every_documented_benchmark_command_runs(cmd: DocCommand, tmp_path):
    """As written plus the size-shrinking flags; a `<...>` placeholder is the cache directory."""
    cache = tmp_path / "cache"
    args = shlex.split(re.sub(r"<[^>]+>", str(cache), cmd.text))[3:]
    proc = run_module("benchmarks.run", [*args, *BENCH_SHRINK, "--out", str(tmp_path / "out")], REPO, cache)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, describe(proc)
    md = (tmp_path / "out" / "bench.md").read_text()
    assert "| target | measured | met |" in md and "GEMM beside it" in md
