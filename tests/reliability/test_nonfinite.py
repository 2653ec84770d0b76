"""A non-finite loss stops the run with a clear message; the last good checkpoint is kept."""

from __future__ import annotations

import pytest

from napo_lab.run import execute
from tests.conftest import TINY, compose_cfg


def test_nonfinite_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, cache_dir, capsys):
    cfg = compose_cfg([*TINY, "loss=sft", "loss.objective._target_=tests.reliability.faults.NaNAfterLoss",
                       "+loss.objective.after=3", "checkpoint.every_n_steps=2", "checkpoint.keep=true"],
                      tmp_path, cache_dir)
    with pytest.raises(SystemExit) as exit_info:
        execute(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "non-finite training loss" in err and "Traceback" not in err
    assert (tmp_path / "checkpoints" / "sft" / "last.ckpt").is_file()
    assert not (tmp_path / "metrics.json").exists()
