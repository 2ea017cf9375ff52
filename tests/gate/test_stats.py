"""The gate's statistics (:mod:`bench.stats`), by hand and against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import stats
from tests.gate.helpers import phased_rounds, samples


def test_holm_and_bh_by_hand_and_against_scipy() -> None:
    from scipy import stats as sps

    p = [0.01, 0.02, 0.03, 0.04, 0.05]
    assert stats.holm(p) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert stats.benjamini_hochberg(p) == pytest.approx([0.05] * 5)
    rng = np.random.default_rng(7)
    ps = list(rng.uniform(0, 0.2, 25))
    assert stats.benjamini_hochberg(ps) == pytest.approx(list(sps.false_discovery_control(ps)))
    assert stats.holm([0.5]) == [0.5] and stats.holm([]) == []


def test_bootstrap_ci_is_deterministic_with_a_seed() -> None:
    a, b = samples(1.0, n=100, seed=1), samples(1.1, n=100, seed=2)
    ci1, ci2, ci3 = (
        (c.ci_low, c.ci_high) for c in (stats.compare_samples(a, b, seed=s) for s in (42, 42, 43))
    )
    assert ci1 == ci2 and ci1 != ci3
    assert ci1[0] < stats.ratio_of_medians(a, b) < ci1[1]
    assert ci1[0] > 1.05 and ci1[1] < 1.15
    # per-benchmark seeds do not depend on the comparison order
    assert stats.stable_seed(1, "x") == stats.stable_seed(1, "x") != stats.stable_seed(1, "y")


def test_mann_whitney_constant_samples() -> None:
    assert stats.mann_whitney_p([1.0] * 10, [1.0] * 10) == 1.0
    assert stats.mann_whitney_p([1.0] * 10, [2.0] * 10) < 0.001


def test_run_aware_bootstrap_carries_run_to_run_noise() -> None:
    """Samples of one run share its conditions: resampling runs widens the CI honestly."""
    offsets = (0.90, 1.06, 0.97, 1.10, 1.00)  # each run (process) has its own speed

    def runs(seed: int) -> list[list[float]]:
        return [
            [off * x for x in samples(1e-6, n=40, noise=0.005, seed=seed + i)]
            for i, off in enumerate(offsets)
        ]

    ra, rb = runs(0), runs(100)
    fa, fb = [x for r in ra for x in r], [x for r in rb for x in r]
    iid = stats.compare_samples(fa, fb, seed=1)
    hier = stats.compare_samples(fa, fb, seed=1, baseline_runs=ra, candidate_runs=rb)
    assert iid.ratio == hier.ratio
    assert (hier.ci_high - hier.ci_low) > 2 * (iid.ci_high - iid.ci_low)
    assert hier.p_bootstrap > iid.p_bootstrap
    assert hier.p_value == max(hier.p_mann_whitney, hier.p_bootstrap)
    # deterministic with a seed, run-aware too
    again = stats.compare_samples(fa, fb, seed=1, baseline_runs=ra, candidate_runs=rb)
    assert (again.ci_low, again.ci_high) == (hier.ci_low, hier.ci_high)


def test_bootstrap_p_has_resolution_below_one_over_n_boot() -> None:
    a, b = samples(1.0, n=300, noise=0.01, seed=1), samples(1.05, n=300, noise=0.01, seed=2)
    p = stats.bootstrap_p(stats.bootstrap_ratios(a, b, n_boot=500, seed=0))
    assert 0.0 <= p < 1e-6  # far below 1/500: survives a Holm correction over many benchmarks
    same = stats.bootstrap_p(stats.bootstrap_ratios(a, a, n_boot=500, seed=0))
    assert same > 0.05


def test_yuen_without_trimming_is_the_one_sample_t_test() -> None:
    from scipy import stats as sps

    x = np.random.default_rng(5).normal(0.02, 0.05, 17)
    tm, se, df, p = stats.yuen_one_sample(x, trim=0.0)
    ref = sps.ttest_1samp(x, 0.0)
    assert tm == pytest.approx(float(x.mean()))
    assert df == 16 and p == pytest.approx(float(ref.pvalue), rel=1e-9)
    assert tm / se == pytest.approx(float(ref.statistic), rel=1e-9)


def test_yuen_by_hand_and_robust_to_an_outlying_round() -> None:
    x = [0.08, 0.09, 0.10, 0.10, 0.10, 0.10, 0.11, 0.11, 0.12, 0.50]  # sorted; g = 2, h = 6
    tm, se, df, _ = stats.yuen_one_sample(x, trim=0.2)
    w = [0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.11, 0.11, 0.11, 0.11]  # winsorised
    assert tm == pytest.approx(sum(x[2:8]) / 6)
    assert df == 5
    assert se == pytest.approx(math.sqrt(9 * float(np.var(w, ddof=1)) / (6 * 5)))
    # the outlier moves the mean a lot, the trimmed mean not at all
    y = [*x[:-1], 5.0]
    assert stats.yuen_one_sample(y, trim=0.2)[0] == pytest.approx(tm)
    assert stats.yuen_one_sample([0.0] * 6)[3] == 1.0
    assert stats.yuen_one_sample([0.25] * 6)[3] == 0.0


def test_round_log_ratios_by_hand() -> None:
    d = stats.round_log_ratios([[1.0, 3.0, 2.0], [4.0]], [[2.2, 2.2], [2.0]])
    assert list(d) == pytest.approx([math.log(1.1), math.log(0.5)])
    with pytest.raises(ValueError):
        stats.round_log_ratios([[1.0]], [[1.0], [1.0]])


def test_paired_test_cancels_round_phases_the_unpaired_one_cannot() -> None:
    base, cand = phased_rounds(12, 1.10, seed=7)
    paired = stats.compare_paired(base, cand)
    assert paired.test == "paired" and paired.rounds == 12
    assert paired.ratio == pytest.approx(1.10, rel=0.02)
    assert paired.p_value < 1e-6 and paired.ci_low > 1.05
    flat_b = [x for r in base for x in r]
    flat_c = [x for r in cand for x in r]
    unpaired = stats.compare_samples(
        flat_b, flat_c, seed=1, baseline_runs=base, candidate_runs=cand
    )
    assert unpaired.ci_low < 1.0  # the phases swamp a 10 % change when rounds are not paired
    assert stats.compare_paired(base, cand) == paired  # deterministic


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_paired_test_false_alarm_rate_is_at_most_alpha_under_heavy_tails() -> None:
    """A/A with t(3)-distributed per-round noise: rejections at 1 % stay near 1 % (seeded)."""
    rng = np.random.default_rng(11)
    rejections = 0
    trials = 2000
    for _ in range(trials):
        d = 0.1 * rng.standard_t(3, size=30)
        rejections += stats.yuen_one_sample(d, trim=0.2)[3] < 0.01
    assert rejections / trials <= 0.015
