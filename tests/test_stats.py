"""The report's statistics on scipy.special agree with scipy.stats' own tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17, Table II, method 10 (hybrid score, no continuity correction)
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0000),
        (10, 10, 0, 10, 0.6075, 1.0000),
    ],
)
def test_the_difference_interval_is_newcombes_method_10(x1, n1, x0, n0, low, high) -> None:
    result = two_proportions(x1, n1, x0, n0)
    assert result is not None
    assert (round(result["ci_low"], 4), round(result["ci_high"], 4)) == (low, high)


def test_wilson_interval_matches_scipy() -> None:
    from scipy.stats import binomtest

    from dmops.report.stats import wilson

    for n in (1, 2, 3, 7, 14, 100, 1000):
        for x in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            expected = binomtest(x, n).proportion_ci(confidence_level=0.95, method="wilson")
            low, high = wilson(x, n)
            assert (low, high) == (pytest.approx(expected.low, abs=1e-12), pytest.approx(expected.high, abs=1e-12))
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0  # exactly, not 0.9999999999999999
    assert wilson(0, 0) == (None, None) and wilson(None, 10) == (None, None) and wilson(3, None) == (None, None)


def test_the_interval_reaches_zero_when_the_test_finds_no_difference() -> None:
    result = two_proportions(31, 46, 0, 2)  # found by the property below: Newcombe alone gives [0.00066, 0.791]
    assert result is not None and result["p_value"] > 0.05
    assert result["ci_low"] == 0.0 and result["ci_high"] == pytest.approx(0.79134, abs=1e-5)  # Newcombe's upper end
    mirrored = two_proportions(0, 2, 31, 46)  # the holdout converts: the same interval, below zero
    assert mirrored is not None and mirrored["p_value"] == pytest.approx(result["p_value"])
    assert mirrored["ci_high"] == 0.0 and mirrored["ci_low"] == pytest.approx(-0.79134, abs=1e-5)


@settings(max_examples=300, deadline=None)
@given(n1=st.integers(2, 60), n0=st.integers(2, 30), data=st.data())
def test_a_zero_conversion_holdout_never_gets_an_interval_that_contradicts_its_test(n1, n0, data) -> None:
    x1 = data.draw(st.integers(0, n1))
    result = two_proportions(x1, n1, 0, n0)
    assert result is not None
    excludes_zero = result["ci_low"] > 0 or result["ci_high"] < 0
    if result["p_value"] is not None and result["p_value"] > 0.05:
        assert not excludes_zero, (x1, n1, n0, result)


def test_the_small_sample_caution() -> None:
    from dmops.report.stats import small_sample

    assert small_sample(4, 100, 20, 200)  # the smaller group has 4 conversions
    assert small_sample(96, 100, 20, 200)  # ... or 4 non-conversions
    assert not small_sample(5, 100, 1, 200)  # the larger group's counts do not decide
    assert small_sample(5, 100, 1, 100)  # equal sizes: either group
    assert not small_sample(5, 10, 5, 10)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.decimals(min_value=0, max_value=10**6, places=2), max_size=60))
def test_the_revenue_sd_from_exact_sums_is_the_textbook_one(values: list) -> None:
    """sample_sd from the sums a DECIMAL engine gives: statistics.stdev of the exact values, rounded once."""
    import statistics
    from fractions import Fraction

    from dmops.report.stats import sample_sd

    found = sample_sd(len(values), sum(values), sum(v * v for v in values))
    if len(values) < 2:
        assert found == 0.0
        return
    assert found == pytest.approx(statistics.stdev([Fraction(v) for v in values]), rel=1e-15, abs=1e-12)
