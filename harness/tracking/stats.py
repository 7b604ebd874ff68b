"""Statistics for verdicts: paired ratios, their intervals, and the decision rule.

Everything works on **log ratios** ``x = log(candidate / baseline)``: a slowdown of
``+5 %`` is ``log 1.05``, and the same change up or down is symmetric.

Interval methods for paired block ratios (``harness ab``)
--------------------------------------------------------
``hl`` (default) — Hodges–Lehmann estimate with the Wilcoxon signed-rank interval.
    The point estimate is the median of the Walsh averages ``(x_i + x_j) / 2, i <= j``;
    the interval is a pair of order statistics of those averages, with the exact
    signed-rank distribution for ``n <= 60`` and its normal approximation above.
    Why it is the right tool here: in a paired, interleaved design each block ratio is
    ``x_i = d + e_B,i - e_A,i`` where ``d`` is the true log change and ``e`` the noise of
    one block; when the two blocks of a pair have the same noise distribution (drift is
    cancelled by interleaving; pair orders alternate AB, BA so order effects cancel),
    the difference of two exchangeable errors is *symmetric* about ``d``, which is the
    one assumption this interval needs. It then has exact coverage without assuming a
    normal distribution, is ~95 % as efficient as a t-interval when noise is Gaussian
    and far better when it is heavy-tailed (a neighbour's burst makes one block 50 %
    slow): it needs ~1.5x fewer pairs than the median for the same width.
``bootstrap`` — percentile bootstrap of the median log ratio (seeded, vectorised).
    No symmetry assumption, but the bootstrap of a median is coarse and under-covers
    for small ``n``; kept for comparison (``--method bootstrap``).
``sign`` — the distribution-free interval of the median from binomial order statistics
    (sign-test inversion). Valid with no assumption beyond independent pairs; widest.

Decision rule (:func:`verdict`)
-------------------------------
With ``t`` the threshold (default 5 %) and an interval at level ``1 - 2*alpha``
(default 98 %, i.e. 1 % in each tail):

* **slower** when the interval's lower bound is above 1 (the noise cannot explain the
  change: at most a 1 % chance for identical code if the interval is honest) *and*
  the estimate is at least ``1 + t/2`` (a change worth reporting);
* **faster** symmetrically (upper bound below 1 and estimate at most ``1/(1 + t/2)``);
* **no significant change** when the whole interval lies within ``[1/(1+t), 1+t]``
  (any change is smaller than the threshold) and neither of the above holds;
* **inconclusive** otherwise (the interval is too wide: more time is needed).

Why ``t/2`` and not ``t``: a true change exactly at the threshold has its estimate above
``t`` only half of the time, so a rule "estimate > t" or "lower bound > t" detects a
5 % slowdown in <= 50 % of trials. With the rule above a true change ``t`` is detected
with >= 95 % probability once the standard error of the log ratio is below about
``t / 4`` (``z_0.99 + z_0.95 = 3.97``), and identical code is called slower at most
``alpha`` = 1 % of the time whatever the budget (and far less once the standard error
is below ``t / 4.7``: then the ``t/2`` floor, not the interval, is what would have to be
crossed). ``harness ab`` runs until its time budget is spent; ``benchmarks/regression_power.py``
measures both rates.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

METHODS = ("hl", "bootstrap", "sign")
DEFAULT_LEVEL = 0.98
DEFAULT_THRESHOLD = 0.05
MAX_WALSH_N = 3000  # n(n+1)/2 Walsh averages; above this, consecutive ratios are averaged in groups

SLOWER, FASTER, NO_CHANGE, INCONCLUSIVE = "slower", "faster", "no significant change", "inconclusive"


@dataclass
class Estimate:
    """A ratio ``candidate / baseline`` with its interval (all as ratios, not logs)."""

    ratio: float
    low: float
    high: float
    level: float
    method: str
    n: int

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def change(self) -> float:
        """Relative change, e.g. ``0.05`` for 5 % more."""
        return self.ratio - 1.0


def _z(p: float) -> float:
    """Standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9)."""
    if not 0 < p < 1:
        raise ValueError("p must be in (0, 1)")
    a = [-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00]
    b = [-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00]
    plow = 0.02425
    if p < plow:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - plow:
        return -_z(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def z_quantile(p: float) -> float:
    return _z(p)


def _clean(x: Iterable[float]) -> np.ndarray:
    a = np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=float).ravel()
    return a[np.isfinite(a)]


def log_ratios(baseline: Sequence[float], candidate: Sequence[float]) -> np.ndarray:
    """``log(candidate_i / baseline_i)`` for paired positive values."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.shape != b.shape:
        raise ValueError("baseline and candidate must pair up")
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.log(b) - np.log(a)
    return x


# --------------------------------------------------------------------------- signed-rank

@lru_cache(maxsize=256)
def _signed_rank_cdf(n: int) -> np.ndarray:
    """P(T+ <= w) for w = 0 .. n(n+1)/2 under the null (exact, by dynamic programming)."""
    m = n * (n + 1) // 2
    counts = np.zeros(m + 1, dtype=np.float64)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return np.cumsum(counts) / 2.0 ** n


def signed_rank_k(n: int, level: float) -> int:
    """The 1-based order statistic ``k`` of the Walsh averages giving a two-sided interval
    ``[W_(k), W_(M+1-k)]`` with coverage at least ``level`` (``k >= 1``)."""
    alpha2 = (1 - level) / 2
    if n <= 60:
        cdf = _signed_rank_cdf(n)
        # largest k with P(T <= k-1) <= alpha/2
        k = int(np.searchsorted(cdf, alpha2, side="right"))  # number of w with cdf[w] <= alpha2
        return max(k, 1)
    mean = n * (n + 1) / 4
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    k = int(math.floor(mean + _z(alpha2) * sd + 0.5))  # continuity-corrected
    return max(k, 1)


def _thin(x: np.ndarray, max_n: int) -> np.ndarray:
    if len(x) <= max_n:
        return x
    g = int(math.ceil(len(x) / max_n))
    m = len(x) // g * g
    return x[:m].reshape(-1, g).mean(axis=1)


def hodges_lehmann(x: Sequence[float], level: float = DEFAULT_LEVEL) -> tuple[float, float, float]:
    """Hodges–Lehmann estimate and Wilcoxon signed-rank interval of the centre of ``x``.

    Returns ``(estimate, low, high)`` in the units of ``x`` (log ratios). With fewer than
    the pairs needed for the level, the interval is infinite on both sides.
    """
    a = _thin(_clean(x), MAX_WALSH_N)
    n = len(a)
    if n == 0:
        return math.nan, -math.inf, math.inf
    i, j = np.triu_indices(n)
    w = np.sort((a[i] + a[j]) / 2.0)
    est = float(np.median(w))
    m = len(w)
    cdf0 = 0.5 ** n  # P(T <= 0): the smallest tail an interval can exclude
    if cdf0 > (1 - level) / 2:
        return est, -math.inf, math.inf
    k = signed_rank_k(n, level)
    return est, float(w[k - 1]), float(w[m - k])


def bootstrap_median(x: Sequence[float], level: float = DEFAULT_LEVEL, n_boot: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Median of ``x`` with a percentile bootstrap interval (seeded; vectorised)."""
    a = _clean(x)
    n = len(a)
    if n == 0:
        return math.nan, -math.inf, math.inf
    est = float(np.median(a))
    if n < 2:
        return est, -math.inf, math.inf
    rng = np.random.default_rng(seed)
    # chunked so that memory stays bounded for long runs
    meds = np.empty(n_boot)
    chunk = max(1, 4_000_000 // n)
    for s in range(0, n_boot, chunk):
        e = min(n_boot, s + chunk)
        idx = rng.integers(0, n, size=(e - s, n))
        meds[s:e] = np.median(a[idx], axis=1)
    lo, hi = np.quantile(meds, [(1 - level) / 2, (1 + level) / 2])
    return est, float(lo), float(hi)


def sign_interval(x: Sequence[float], level: float = DEFAULT_LEVEL) -> tuple[float, float, float]:
    """Median with the distribution-free order-statistic interval (sign-test inversion)."""
    a = np.sort(_clean(x))
    n = len(a)
    if n == 0:
        return math.nan, -math.inf, math.inf
    est = float(np.median(a))
    alpha2 = (1 - level) / 2
    # largest k with P(Bin(n, 1/2) <= k-1) <= alpha/2; interval [a_(k), a_(n+1-k)]
    log_c = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(n + 1)]
    cdf = np.cumsum(np.exp(log_c))
    k = int(np.searchsorted(cdf, alpha2, side="right"))
    if k < 1:
        return est, -math.inf, math.inf
    return est, float(a[k - 1]), float(a[n - k])


def paired_estimate(baseline: Sequence[float], candidate: Sequence[float], *, method: str = "hl",
                    level: float = DEFAULT_LEVEL, seed: int = 0) -> Estimate:
    """The ratio ``candidate / baseline`` from paired values (block medians), with its interval."""
    x = log_ratios(baseline, candidate)
    return estimate_from_logs(x, method=method, level=level, seed=seed)


def estimate_from_logs(x: Sequence[float], *, method: str = "hl", level: float = DEFAULT_LEVEL,
                       seed: int = 0) -> Estimate:
    x = _clean(x)
    if method == "hl":
        e, lo, hi = hodges_lehmann(x, level)
    elif method == "bootstrap":
        e, lo, hi = bootstrap_median(x, level, seed=seed)
    elif method == "sign":
        e, lo, hi = sign_interval(x, level)
    else:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    return Estimate(ratio=_exp(e), low=_exp(lo), high=_exp(hi), level=level, method=method, n=int(len(x)))


def _exp(v: float) -> float:
    if math.isnan(v):
        return math.nan
    if v == math.inf:
        return math.inf
    if v == -math.inf:
        return 0.0
    return math.exp(v)


# --------------------------------------------------------------------------- decision

def verdict(est: Estimate, threshold: float = DEFAULT_THRESHOLD) -> str:
    """``slower``, ``faster``, ``no significant change`` or ``inconclusive`` (see module doc).

    For a "bigger is worse" metric (latency, memory). For throughput, pass the inverse ratio.
    """
    if threshold < 0:
        raise ValueError("threshold must be >= 0")
    if not math.isfinite(est.ratio) or est.ratio <= 0:
        return INCONCLUSIVE
    half = 1 + threshold / 2
    if est.low > 1 and est.ratio >= half:
        return SLOWER
    if est.high < 1 and est.ratio <= 1 / half:
        return FASTER
    if est.low >= 1 / (1 + threshold) and est.high <= 1 + threshold:
        return NO_CHANGE
    return INCONCLUSIVE


def pairs_needed(x: Sequence[float], threshold: float = DEFAULT_THRESHOLD, level: float = DEFAULT_LEVEL,
                 power: float = 0.95) -> int | None:
    """Roughly how many pairs make a change of ``threshold`` detectable with ``power``,
    from the spread of the log ratios seen so far (robust SD via MAD; HL efficiency 0.955)."""
    a = _clean(x)
    if len(a) < 4:
        return None
    sd = 1.4826 * float(np.median(np.abs(a - np.median(a))))
    if sd <= 0:
        return len(a)
    se_needed = math.log(1 + threshold) / (_z(1 - (1 - level) / 2) + _z(power))
    return int(math.ceil((sd / se_needed) ** 2 / 0.955))


# --------------------------------------------------------------------------- separate runs

def robust_sd(values: Sequence[float]) -> float:
    """1.4826 x median absolute deviation (the SD for Gaussian data, robust to outliers)."""
    a = _clean(values)
    if len(a) < 2:
        return math.nan
    return 1.4826 * float(np.median(np.abs(a - np.median(a))))


def between_run_sd(p50s: Sequence[float]) -> float:
    """Run-to-run noise of a configuration: robust SD of ``log p50`` across its runs."""
    a = _clean(p50s)
    a = a[a > 0]
    if len(a) < 2:
        return math.nan
    logs = np.log(a)
    # consecutive differences are robust to slow trends (a real change in the middle of the
    # history would inflate a plain MAD); diff of two runs has sd * sqrt(2)
    d = np.diff(logs)
    sd_diff = robust_sd(d) / math.sqrt(2) if len(d) >= 2 else math.nan
    sd_all = robust_sd(logs)
    cands = [v for v in (sd_diff, sd_all) if math.isfinite(v)]
    return min(cands) if cands else math.nan


def _lower_gamma_regularized(a: float, x: float) -> float:
    """P(a, x), the regularized lower incomplete gamma function (series; continued fraction above)."""
    if x <= 0:
        return 0.0
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-14:
                break
        return total * math.exp(-x + a * math.log(x) - math.lgamma(a))
    # Lentz's continued fraction for Q(a, x)
    b = x + 1 - a
    c = 1e300
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1e-300 if abs(d) < 1e-300 else d
        c = b + an / c
        c = 1e-300 if abs(c) < 1e-300 else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-14:
            break
    return 1.0 - math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_quantile(p: float, k: int) -> float:
    """Quantile of the chi-square distribution with ``k`` degrees of freedom (bisection)."""
    lo, hi = 0.0, max(10.0, 10.0 * k)
    while _lower_gamma_regularized(k / 2, hi / 2) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _lower_gamma_regularized(k / 2, mid / 2) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def sd_upper_bound(sd: float, dof: int, confidence: float = 0.90) -> float:
    """One-sided upper confidence bound of a standard deviation estimated with ``dof`` degrees of freedom."""
    return sd * math.sqrt(dof / chi2_quantile(1 - confidence, dof))


def median_ratio_within(baseline: Sequence[float], candidate: Sequence[float], *, level: float = DEFAULT_LEVEL,
                        n_boot: int = 2000, seed: int = 0) -> Estimate:
    """Ratio of medians of two *independent* sample sets, with a bootstrap interval (within-run noise only)."""
    a, b = _clean(baseline), _clean(candidate)
    if len(a) == 0 or len(b) == 0:
        return Estimate(math.nan, 0.0, math.inf, level, "bootstrap-unpaired", 0)
    est = math.log(float(np.median(b))) - math.log(float(np.median(a)))
    if len(a) < 2 or len(b) < 2:
        return Estimate(math.exp(est), 0.0, math.inf, level, "bootstrap-unpaired", min(len(a), len(b)))
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, len(a), size=(n_boot, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), size=(n_boot, len(b)))], axis=1)
    d = np.log(mb) - np.log(ma)
    lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(math.exp(est), math.exp(float(lo)), math.exp(float(hi)), level, "bootstrap-unpaired",
                    min(len(a), len(b)))


def widen(est: Estimate, extra_log_sd: float, method: str) -> Estimate:
    """Add independent log-normal noise of SD ``extra_log_sd`` to an interval's half-widths."""
    z = _z(1 - (1 - est.level) / 2)
    c = math.log(est.ratio)
    lo_w = c - math.log(est.low) if est.low > 0 else math.inf
    hi_w = math.log(est.high) - c if math.isfinite(est.high) else math.inf
    extra = z * extra_log_sd
    lo_w = math.sqrt(lo_w ** 2 + extra ** 2)
    hi_w = math.sqrt(hi_w ** 2 + extra ** 2)
    return Estimate(est.ratio, _exp(c - lo_w), _exp(c + hi_w), est.level, method, est.n)
