"""harness.tracking.stats on synthetic samples with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness.tracking import stats


def blocks(rng, n, ratio=1.0, noise=0.05, spike_rate=0.05):
    """Paired block medians on a drifting clock: each pair shares the drift, blocks have their own noise,
    and a few blocks are hit by a neighbour (40-80 % slower)."""
    drift = np.exp(np.cumsum(rng.normal(0, 0.03, n)))  # slow random walk: ±20 % over a run
    a = 1e-3 * drift * np.exp(rng.normal(0, noise, n))
    b = 1e-3 * ratio * drift * np.exp(rng.normal(0, noise, n))
    for arr in (a, b):
        hit = rng.random(n) < spike_rate
        arr[hit] *= rng.uniform(1.4, 1.8, hit.sum())
    return a, b


def test_signed_rank_critical_values_match_tables():
    # two-sided 95 %: T <= 8 rejects at n = 10, T <= 21 at n = 15, T <= 52 at n = 20 (standard tables)
    assert stats.signed_rank_k(10, 0.95) == 9
    assert stats.signed_rank_k(15, 0.95) == 26
    assert stats.signed_rank_k(20, 0.95) == 53
    # exact and normal approximation meet smoothly at the switch
    assert abs(stats.signed_rank_k(61, 0.95) - stats.signed_rank_k(60, 0.95)) < 40


def test_hodges_lehmann_by_hand():
    # x = 1, 2, 4: Walsh averages 1, 1.5, 2, 2.5, 3, 4 -> median 2.25
    est, lo, hi = stats.hodges_lehmann([1.0, 2.0, 4.0], level=0.5)
    assert est == pytest.approx(2.25)
    assert lo <= est <= hi
    # too few pairs for 98 %: the interval is unbounded, never a false verdict
    est, lo, hi = stats.hodges_lehmann([0.1, 0.2, 0.3], level=0.98)
    assert lo == -math.inf and hi == math.inf


@pytest.mark.parametrize("method", stats.METHODS)
def test_intervals_cover_the_truth(method):
    rng = np.random.default_rng(42)
    trials = 150 if method == "bootstrap" else 400
    hits = 0
    for t in range(trials):
        x = rng.standard_t(3, size=40) * 0.05 + math.log(1.07)
        e = stats.estimate_from_logs(x, method=method, level=0.90, seed=t)
        hits += e.low < 1.07 < e.high
    # nominal 90 %; the bootstrap of a median is known to under-cover a little
    assert hits / trials >= (0.83 if method == "bootstrap" else 0.86)


@pytest.mark.parametrize("ratio,expected", [(1.30, stats.SLOWER), (1.0 / 1.3, stats.FASTER),
                                            (1.0, stats.NO_CHANGE), (1.10, stats.SLOWER)])
def test_paired_verdicts_known_answers(ratio, expected):
    rng = np.random.default_rng(7)
    a, b = blocks(rng, 200, ratio=ratio)
    e = stats.paired_estimate(a, b)
    assert e.low < ratio * 1.02 and e.high > ratio / 1.02
    assert abs(math.log(e.ratio / ratio)) < 0.02
    assert stats.verdict(e, 0.05) == expected


def test_paired_design_cancels_drift_that_breaks_unpaired():
    rng = np.random.default_rng(3)
    a, b = blocks(rng, 100, ratio=1.0, noise=0.02, spike_rate=0.0)
    paired = stats.paired_estimate(a, b)
    assert stats.verdict(paired) == stats.NO_CHANGE
    assert paired.high / paired.low < 1.03
    unpaired = stats.median_ratio_within(a, b)  # same data, pairs ignored: the drift swamps it
    assert unpaired.high / unpaired.low > 1.05


def test_verdict_rule_edges():
    E = lambda r, lo, hi: stats.Estimate(r, lo, hi, 0.98, "hl", 100)  # noqa: E731
    assert stats.verdict(E(1.05, 1.01, 1.09)) == stats.SLOWER
    assert stats.verdict(E(1.02, 1.01, 1.03)) == stats.NO_CHANGE      # real but below t/2
    assert stats.verdict(E(1.03, 0.99, 1.07)) == stats.INCONCLUSIVE    # could be noise, could be > t
    assert stats.verdict(E(1.10, 0.98, 1.25)) == stats.INCONCLUSIVE    # noise explains it
    assert stats.verdict(E(0.95, 0.91, 0.99)) == stats.FASTER
    assert stats.verdict(E(1.00, 0.97, 1.04)) == stats.NO_CHANGE
    assert stats.verdict(E(1.00, 0.90, 1.10)) == stats.INCONCLUSIVE
    assert stats.verdict(E(math.nan, 0, math.inf)) == stats.INCONCLUSIVE


def test_false_positive_and_power_on_synthetic_pairs():
    """The decision rule's two rates on a realistic noise model (per-pair log SD ~ 8 %)."""
    rng = np.random.default_rng(11)
    fp = sum(stats.verdict(stats.paired_estimate(*blocks(rng, 250, 1.00))) == stats.SLOWER for _ in range(200))
    tp = sum(stats.verdict(stats.paired_estimate(*blocks(rng, 250, 1.05))) == stats.SLOWER for _ in range(200))
    assert fp <= 2
    assert tp >= 190


def test_between_run_sd_is_robust_to_a_step():
    rng = np.random.default_rng(5)
    p50 = 0.5 * np.exp(rng.normal(0, 0.03, 30))
    assert stats.between_run_sd(p50) == pytest.approx(0.03, rel=0.4)
    stepped = np.concatenate([p50[:15], p50[15:] * 1.5])  # a real change half way: not noise
    assert stats.between_run_sd(stepped) < 0.05
    assert math.isnan(stats.between_run_sd([0.5]))


def test_widen_adds_between_run_noise():
    e = stats.Estimate(1.10, 1.08, 1.12, 0.98, "x", 20)
    w = stats.widen(e, 0.10, "y")
    assert w.ratio == 1.10 and w.low < 0.9 and w.high > 1.3


def test_pairs_needed_scales_with_noise():
    rng = np.random.default_rng(0)
    n1 = stats.pairs_needed(rng.normal(0, 0.04, 50))
    n2 = stats.pairs_needed(rng.normal(0, 0.08, 50))
    assert 2.5 < n2 / n1 < 6
