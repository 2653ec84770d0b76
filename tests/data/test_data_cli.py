"""Point 1: `python -m napo_lab.prepare dataset=...` works as a Hydra app and reports errors cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from data_helpers import REPO


def _run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NAPO_LAB_CACHE_DIR": str(tmp_path / "cache"), "NAPO_LAB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "napo_lab.prepare", *overrides], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_prepares_synthetic(tmp_path: Path):
    proc = _run(tmp_path, "dataset=synthetic")
    assert proc.returncode == 0, proc.stderr
    assert "synthetic" in proc.stdout and str(tmp_path / "cache" / "prepared") in proc.stdout.replace("\n", "")
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.glob("*.log"))
    assert REPO.joinpath("conf", "prepare.yaml").is_file()


def test_cli_error_has_no_traceback(tmp_path: Path):
    proc = _run(tmp_path, "dataset=custom", "dataset.path=/nonexistent.csv")
    assert proc.returncode == 2
    assert "file not found" in proc.stderr and "Traceback" not in proc.stderr
