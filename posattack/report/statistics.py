"""The statistics behind every verdict: random draws, images and trained models.

Three sources of uncertainty, three tools (all pure numpy/scipy, no model in sight):

* **Random draws** (which N channels the baseline removes). The random drops ``r_1..r_n``
  are a sample from the distribution of "what removing N channels does"; the targeted drop
  ``t`` is one value. The *empirical p-value* ``(1 + #{i: r_i >= t}) / (1 + n)`` is the rank
  test of ``t`` against the draws (exact under exchangeability; its floor is ``1/(1+n)``, so
  p < 0.05 needs n >= 19). The *t prediction interval* for one more draw,
  ``mean(r) ± t_{0.975, n-1} · sd(r) · sqrt(1 + 1/n)``, assumes normal draws and works from
  n = 2; ``z = (t - mean(r)) / sd(r)`` is kept as a number (the old 2-std rule read it).
* **Images** (which test images happened to be drawn). The paired bootstrap resamples
  images with replacement, the same resample for every setting, and recomputes every mIoU
  from the resampled per-image intersections and areas (``paired_bootstrap`` below; the
  per-image counts live in :mod:`posattack.report.per_image`). Percentile 95% intervals.
* **Trained models** (training seeds). The one-sample t-test over the per-model values of a
  statistic (e.g. the targeted-minus-random gap), with its t confidence interval.

These intervals are effect sizes. Verdict words (``'holds'``, ``'inconclusive'``, ``'not
computed'``) come only from the rank tests of :mod:`posattack.report.rank_tests`, whose
false-positive rate each run measures: an interval over images alone leaves out the spread
between random channel sets and called 14-15% of random sets "holds" for claim 1
(docs/tables/placebo_demo.md).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np
from scipy import stats as scipy_stats

LEVEL = 0.95
HOLDS, INCONCLUSIVE, NOT_COMPUTED = 'holds', 'inconclusive', 'not computed'


def _finite(values: Sequence[Optional[float]]) -> np.ndarray:
    array = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def empirical_p_value(targeted: float, draws: Sequence[float]) -> Optional[float]:
    """``(1 + #{draws >= targeted}) / (1 + len(draws))``; None without at least 2 draws.

    One draw is no distribution: its "p-value" could only be 1/2 or 1, so it is not given.

    Example::

        empirical_p_value(5.0, [1.0, 2.0, 6.0, 0.5])  # (1 + 1) / (1 + 4) = 0.4
    """
    draws = _finite(draws)
    if len(draws) < 2 or targeted is None or not math.isfinite(targeted):
        return None
    return float((1 + np.count_nonzero(draws >= targeted)) / (1 + len(draws)))


def p_value_floor(num_draws: int) -> float:
    """The smallest empirical p-value that ``num_draws`` draws can give."""
    return 1.0 / (1 + num_draws)


def prediction_interval(draws: Sequence[float], level: float = LEVEL) -> Optional[tuple]:
    """t-based interval that holds one more draw with probability ``level`` (n >= 2)."""
    draws = _finite(draws)
    n = len(draws)
    if n < 2:
        return None
    half = scipy_stats.t.ppf(0.5 + level / 2, n - 1) * draws.std(ddof=1) * math.sqrt(1 + 1 / n)
    mean = float(draws.mean())
    return (mean - float(half), mean + float(half))


def compare_with_draws(targeted: Optional[float], draws: Sequence[float]) -> dict:
    """The targeted drop against the distribution of random drops of the same N.

    Returns gap (targeted minus mean random), random mean/std (ddof=1), z, the 95% t
    prediction interval of one more random drop, the empirical p-value (None below 2 draws)
    and its floor, and ``beyond_prediction_interval`` (True when the targeted drop lies above
    the interval's upper end; None when it cannot be told).
    """
    values = _finite(draws)
    n = len(values)
    out = dict(targeted=targeted, num_draws=n, random_mean=None, random_std=None, gap=None,
               z=None, prediction_interval=None, p_value=None,
               p_value_floor=p_value_floor(n) if n else None,
               beyond_prediction_interval=None)
    if n == 0 or targeted is None or not math.isfinite(targeted):
        return out
    out['random_mean'] = float(values.mean())
    out['gap'] = float(targeted - values.mean())
    if n >= 2:
        std = float(values.std(ddof=1))
        out['random_std'] = std
        out['z'] = out['gap'] / std if std > 0 else None
        interval = prediction_interval(values)
        out['prediction_interval'] = list(interval)
        out['beyond_prediction_interval'] = bool(targeted > interval[1])
        out['p_value'] = empirical_p_value(targeted, values)
    return out


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> Optional[list]:
    """Percentile bootstrap interval of the finite resamples (None if under 90% are)."""
    samples = np.asarray(samples, dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0 or len(finite) < 0.9 * len(samples):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def interval_with_estimate(samples: np.ndarray, estimate: float,
                           level: float = LEVEL) -> Optional[list]:
    """The percentile interval, widened where needed to contain the point estimate.

    A percentile interval of a skewed statistic can miss the estimate it is about (e.g. an
    mIoU whose resamples drop a rare class); an interval reported beside an estimate must
    contain it, so the nearer end is moved to the estimate (conservative, never narrower).
    """
    interval = percentile_interval(samples, level)
    if interval is None or not math.isfinite(estimate):
        return interval
    return [min(interval[0], estimate), max(interval[1], estimate)]


def bootstrap_p_value(samples: np.ndarray) -> Optional[float]:
    """Two-sided bootstrap p-value of "the statistic is 0": twice the smaller tail share.

    It is 2 * min(share <= 0, share >= 0), capped at 1. With B resamples nothing below 1/B
    can be told apart, so 0 is reported as 1/B (read it as "p <= 1/B"), never as 0.
    """
    samples = np.asarray(samples, dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0:
        return None
    low = np.count_nonzero(finite <= 0) / len(finite)
    high = np.count_nonzero(finite >= 0) / len(finite)
    return float(min(1.0, max(2 * min(low, high), 1 / len(finite))))


def one_sample_t(values: Sequence[float], level: float = LEVEL) -> dict:
    """One-sample t-test of mean == 0 over per-model values (scipy), with its t CI.

    Needs 2 or more finite values; with fewer, every field but ``n`` and ``mean`` is None.
    A zero spread (all values equal) gives no t statistic either: the test is undefined.
    """
    values = _finite(values)
    n = len(values)
    out = dict(n=n, mean=float(values.mean()) if n else None, std=None, t=None, df=None,
               p_value=None, ci95=None)
    if n < 2:
        return out
    std = float(values.std(ddof=1))
    out.update(std=std, df=n - 1)
    if std == 0:
        return out
    result = scipy_stats.ttest_1samp(values, 0.0)
    half = scipy_stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    out.update(t=float(result.statistic), p_value=float(result.pvalue),
               ci95=[float(values.mean() - half), float(values.mean() + half)])
    return out
