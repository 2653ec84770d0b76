"""The memory benchmark (issue 17, item 3): real command-line runs in fresh processes and caches, under
every malloc setting, judged against the targets on napo_lab's default."""

from __future__ import annotations

import pytest

from benchmarks.memory import commands, measure_command, run_one, targets


@pytest.mark.slow  # three fresh-process evaluations (~45 s): make test-slow
def test_the_zero_shot_evaluation_is_measured_under_every_setting(cache_dir):
    key, label, argv = commands("quick")[1]
    assert key == "zero-shot" and argv[0] == "napo_lab.evaluate" and "eval=ranking" in argv
    results = measure_command(key, label, argv, str(cache_dir), 1)
    assert [r["malloc"] for r in results] == ["before", "after", "mmap128"]
    assert all(100 < r["peak_mb"] < 8000 and r["cpu_s"] > 0 for r in results), results
    rows = targets(results)
    assert len(rows) == 1 and rows[0][0].startswith("peak resident memory <= 1.5 GB")
    assert " MB after (" in rows[0][1] and "MB before" in rows[0][1] and "mmap_threshold_kb=128: " in rows[0][1]
    assert f"{results[1]['peak_mb']:.0f} MB after ({results[0]['peak_mb']:.0f} MB before" in rows[0][1]
    assert rows[0][2] is (results[1]["peak_mb"] <= 1500)  # judged on napo_lab's default


def test_a_failed_command_is_a_failed_row_not_a_crash(cache_dir):
    res = run_one(["napo_lab.evaluate", "model=tiny_random", "eval=bogus"], [], str(cache_dir), 1)
    assert res["failed"].startswith("exit ")
    rows = targets([{"key": "job", "command": "default job", "malloc": "after", **res}])
    assert rows == [("peak resident memory <= 2.5 GB: default job", f"FAILED: {res['failed']}", False)]


def test_the_job_commands_cover_both_targets():
    keys = [k for k, _, _ in commands("full")]
    assert keys == ["job", "zero-shot"]
    full_job = commands("full")[0][2]
    assert full_job[0] == "napo_lab.run" and "model=tiny_random" not in full_job
