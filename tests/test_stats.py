"""The report's statistics on scipy.special agree with scipy.stats' own tests."""

from __future__ import annotations

import pytest
from scipy import stats

from dmops.stats import Z95, sample_ratio_mismatch, two_proportions, welch


def test_z95() -> None:
    assert pytest.approx(stats.norm.ppf(0.975), abs=1e-12) == Z95


@pytest.mark.parametrize(
    "args", [(10.0, 3.0, 50, 9.0, 4.0, 40), (1.0, 0.5, 3, 2.0, 5.0, 1000), (120.5, 80.0, 5000, 118.0, 75.0, 5200)]
)
def test_welch_matches_scipy(args: tuple[float, float, int, float, float, int]) -> None:
    got = welch(*args)
    assert got is not None
    expected = stats.ttest_ind_from_stats(*args, equal_var=False)
    assert got["p_value"] == pytest.approx(float(expected.pvalue), rel=1e-9)
    v1, v0 = args[1] ** 2 / args[2], args[4] ** 2 / args[5]
    df = (v1 + v0) ** 2 / (v1**2 / (args[2] - 1) + v0**2 / (args[5] - 1))
    half = stats.t.ppf(0.975, df) * (v1 + v0) ** 0.5
    assert got["ci_high"] - got["ci_low"] == pytest.approx(2 * half, rel=1e-9)


@pytest.mark.parametrize("observed,weights", [([480, 520], [1, 1]), ([100, 300, 620], [1, 3, 6]), ([5, 0], [1, 1])])
def test_sample_ratio_matches_scipy(observed: list[int], weights: list[float]) -> None:
    expected = stats.chisquare(observed, [sum(observed) * w / sum(weights) for w in weights])
    got = sample_ratio_mismatch(observed, weights)
    assert got["chi2"] == pytest.approx(float(expected.statistic), rel=1e-12)
    assert got["p_value"] == pytest.approx(float(expected.pvalue), rel=1e-9)


def test_two_proportions_p_value_is_the_pooled_z_test() -> None:
    got = two_proportions(30, 1000, 20, 1000)
    assert got is not None
    pooled = 50 / 2000
    z = (0.03 - 0.02) / (pooled * (1 - pooled) * (2 / 1000)) ** 0.5
    assert got["p_value"] == pytest.approx(2 * stats.norm.sf(z), rel=1e-12)
