"""benchmarks.efficiency.targets: each efficiency row judged against the GEMM rate measured beside its
task (median over the timed steps or rounds), with the run's best rate printed next to it; hand-computed."""

from __future__ import annotations

from benchmarks.efficiency import targets

PEAK = {"float32": {"flops_per_cpu_s": 3e9}, "bfloat16": {"flops_per_cpu_s": 2.5e9}, "load": "-"}


def _res(with_gemm: bool) -> dict:
    def sample(cpu_s, gemm):
        return {"flops": 1e9, "steps_cpu_s": [cpu_s], "dtype": "bfloat16"} | ({"gemm": [{"flops_per_cpu_s": gemm}]} if with_gemm else {})

    variants = [{"name": "SFT step", "loss": "sft", "section": "training"},
                {"name": "S-DPO B=4", "loss": "sdpo", "section": "efficiency", "k": 3, "batch": 4}]
    # SFT: median 2.0 CPU s -> 0.5 GFLOP/s; beside it 1.0 (median of 1.0, 0.8, 2.0) -> 50%; best 2.5 -> 20%
    # S-DPO: median 1.25 CPU s -> 0.8 GFLOP/s; beside it 2.0 -> 40%
    samples = {"SFT step": [sample(2.0, 1e9), sample(1.0, 0.8e9), sample(4.0, 2e9)],
               "S-DPO B=4": [sample(1.25, 2e9)]}
    return {"variants": variants, "samples": samples}


def test_rows_are_judged_against_the_gemm_rate_beside_them():
    rows = {name: (measured, met) for name, measured, met in targets([], _res(True), PEAK, napo_k=3)}
    measured, met = rows["SFT step: achieved FLOP/s >= 50% of the matmul peak"]
    assert met is True and measured.startswith("50.0% (1.00 GFLOP in 2.00 CPU s = 0.50 GFLOP/s of 1.00")
    assert "median of 3; 20.0% of the run's best, 2.50)" in measured
    measured, met = rows["S-DPO shared-prefix step (K=3, B=4): achieved FLOP/s >= 50% of the matmul peak"]
    assert met is False and measured.startswith("40.0% (") and "of 2.00 (bfloat16 GEMM beside it, median of 1;" in measured


def test_results_without_a_rate_beside_them_use_the_runs_best():
    rows = {name: (measured, met) for name, measured, met in targets([], _res(False), PEAK, napo_k=3)}
    measured, met = rows["SFT step: achieved FLOP/s >= 50% of the matmul peak"]
    assert met is False and measured == "20.0% (1.00 GFLOP in 2.00 CPU s = 0.50 GFLOP/s of 2.50 (bfloat16 GEMM))"


def test_every_timed_step_and_every_rate_beside_one_count():
    """Results with per-step lists: the median over all timed steps of all rounds, against the median of
    all rates measured beside them (not the median of per-round medians)."""
    def sample(steps, rates):
        return {"flops": 1e9, "steps_cpu_s": steps, "dtype": "bfloat16", "gemm": [{"flops_per_cpu_s": r} for r in rates]}

    res = {"variants": [{"name": "SFT step", "loss": "sft", "section": "training"}],
           # steps 1.0, 2.0, 1.0 | 4.0 -> median of 4 = 2.0 (upper middle; per-round medians 1.0, 4.0 -> 4.0)
           # rates 1, 1, 1 | 0.1 GFLOP/s -> median of 4 = 1.0 -> 0.5 GFLOP/s / 1.0 = 50.0% (per round: 25.0%)
           "samples": {"SFT step": [sample([1.0, 2.0, 1.0], [1e9, 1e9, 1e9]), sample([4.0], [0.1e9])]}}
    rows = {name: (measured, met) for name, measured, met in targets([], res, PEAK, napo_k=3)}
    measured, met = rows["SFT step: achieved FLOP/s >= 50% of the matmul peak"]
    assert met is True
    assert measured.startswith("50.0% (1.00 GFLOP in 2.00 CPU s = 0.50 GFLOP/s of 1.00 (bfloat16 GEMM beside it, median of 4;")
