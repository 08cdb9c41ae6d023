"""The report's statistics on scipy.special agree with scipy.stats' own tests."""

from __future__ import annotations

import pytest
from scipy import stats

from dmops.report.stats import Z95, sample_ratio_mismatch, two_proportions, welch


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


KEYS = ["abs", "rel", "ci_low", "ci_high", "p_value"]


def test_two_groups_of_two_are_enough_one_is_not() -> None:
    assert two_proportions(1, 2, 0, 2) is not None
    assert two_proportions(1, 1, 0, 2) is None and two_proportions(1, 2, 0, 1) is None
    assert welch(1.0, 1.0, 2, 0.0, 1.0, 2) is not None
    assert welch(1.0, 1.0, 1, 0.0, 1.0, 2) is None and welch(1.0, 1.0, 2, 0.0, 1.0, 1) is None


def test_welch_gives_every_key_and_the_relative_lift() -> None:
    got = welch(12.0, 3.0, 50, 10.0, 4.0, 40)
    assert got is not None and list(got) == KEYS
    assert got["abs"] == pytest.approx(2.0) and got["rel"] == pytest.approx(0.2)
    assert got["ci_low"] < 2.0 < got["ci_high"]
    assert welch(2.0, 3.0, 50, 0.0, 4.0, 40)["rel"] is None  # type: ignore[index]  # nothing to be relative to


def test_welch_with_equal_spreads_still_tests() -> None:
    got = welch(12.0, 3.0, 30, 10.0, 3.0, 30)  # the same variance in both groups is not zero variance
    assert got is not None and got["p_value"] == pytest.approx(
        float(stats.ttest_ind_from_stats(12.0, 3.0, 30, 10.0, 3.0, 30, equal_var=False).pvalue)
    )


def test_welch_without_any_spread_is_exact_and_untested() -> None:
    assert welch(5.0, 0.0, 3, 4.0, 0.0, 3) == {
        "abs": 1.0,
        "rel": 0.25,
        "ci_low": 1.0,
        "ci_high": 1.0,
        "p_value": None,
    }
    assert welch(5.0, 0.0, 3, 0.0, 0.0, 3) == {"abs": 5.0, "rel": None, "ci_low": 5.0, "ci_high": 5.0, "p_value": None}


@pytest.mark.parametrize("observed", [[0, 0], [7]])
def test_sample_ratio_needs_two_groups_and_someone_in_them(observed: list[int]) -> None:
    assert sample_ratio_mismatch(observed, [1] * len(observed)) == {"chi2": None, "p_value": None, "mismatch": None}


def test_one_recipient_is_already_a_sample_ratio() -> None:
    got = sample_ratio_mismatch([1, 0], [1, 1])
    assert got["chi2"] == pytest.approx(1.0) and got["mismatch"] is False


def test_sample_ratio_refuses_counts_and_weights_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        sample_ratio_mismatch([10, 20], [1, 1, 1])


def test_rate_interval_is_the_clipped_wald_interval() -> None:
    from dmops.report.stats import rate_interval

    low, high = rate_interval(30, 100)  # p = 0.3, half = 1.959964 * sqrt(0.3 * 0.7 / 100) = 0.089817
    assert low == pytest.approx(0.210183, abs=1e-6) and high == pytest.approx(0.389817, abs=1e-6)
    low, high = rate_interval(1, 4)  # p = 0.25, half = 1.959964 * sqrt(0.1875 / 4) = 0.424345: clipped at 0
    assert low == 0.0 and high == pytest.approx(0.674345, abs=1e-6)
    low, high = rate_interval(3, 4)  # p = 0.75: clipped above at 1
    assert low == pytest.approx(0.325655, abs=1e-6) and high == 1.0
    assert rate_interval(0, 10) == (0.0, 0.0)
    assert rate_interval(None, 10) == (None, None)
    assert rate_interval(3, 0) == (None, None)
    assert rate_interval(3, None) == (None, None)


def test_wilson_interval() -> None:
    from dmops.report.stats import wilson

    z = 1.959963984540054  # the closed form (Wilson 1927), independent of scipy
    for x, n in ((30, 100), (0, 12), (12, 12), (1, 3)):
        p = x / n
        center = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
        low, high = wilson(x, n)
        assert low == pytest.approx(center - half, abs=1e-9) and high == pytest.approx(center + half, abs=1e-9)
    assert wilson(0, 0) == (None, None)
