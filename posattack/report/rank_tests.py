"""Rank tests of a targeted statistic against random draws: the tests that give verdicts.

Question: is the targeted channel set worse than a random set of as many channels? The
random draws ``r_1, r_2, ...`` (drawn in seed order) and the targeted value ``t`` are, under
the null "the targeted set is exchangeable with random sets", exchangeable on fixed images
(the ranking must not have seen those images: :mod:`posattack.attack.identification_images`).
The rank of ``t`` among the draws is then an exact test, whatever the distribution of drops.

* :func:`sequential_p_value`: Besag & Clifford (Biometrika 1991), "Sequential Monte Carlo
  p-values". Draw until ``h`` draws reach ``t`` (then ``p = h / draws made``) or ``n_max``
  draws are made (then ``p = (h' + 1) / (n_max + 1)``, ``h'`` the draws that reached ``t``).
  Exact; a clear null stops after few draws, a significant result uses up to ``n_max``.
  With ``h = None`` it is the fixed-size empirical p-value ``(1 + h') / (1 + n)``.
* :func:`placebo_rate`: the same test applied to each random draw as a stand-in target,
  against the other draws: the false-positive rate measured on this run's model and images.
* :func:`detectable_gap`: the smallest gap over the random mean the test could call
  significant with ``n_max`` draws (the draws' (1 - alpha) quantile, read off the draws made).
* :func:`holm_adjust`: Holm's step-down adjustment for the exploratory tests.
* :func:`fisher`: Fisher's combination of per-model one-sided p-values (scipy).

Ties count against the targeted set (a draw *reaching* ``t`` is an exceedance), so a
targeted value equal to every draw gives p = 1, never a verdict.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05
# Exceedances before the sequential test stops. Besag & Clifford discuss h = 10 to 20 for
# precise p-values; the verdict only asks p <= 0.05, which needs the full 99 draws whatever h
# is, so h only sets how precisely a *non-significant* p is known (p = h / draws made) and
# what it costs. Measured on the demo model (docs/tables/speed_default_cost_demo*.md): h = 10
# drew all 99 at p = 0.15 (2.7x the old default's time); h = 5 stops such a run near 30.
DEFAULT_EXCEEDANCES = 5
DEFAULT_MAX_DRAWS = 99
# Draws are added in rounds (each round is one more pass over the test images): the stopping
# rule is checked at the end of each; p-values are computed on the exact prefix all the same.
DRAW_ROUNDS = (19, 29, 39, 59, 99, 199, 499, 999)


def _finite_sequence(values: Sequence[Optional[float]]) -> np.ndarray:
    array = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def sequential_p_value(targeted: Optional[float], draws: Sequence[Optional[float]],
                       exceedances: Optional[int] = DEFAULT_EXCEEDANCES,
                       max_draws: Optional[int] = None) -> dict:
    """Besag-Clifford p-value of ``targeted`` against ``draws`` taken in the given order.

    ``max_draws`` defaults to ``len(draws)``; fewer draws than ``max_draws`` that did not
    stop give the p-value of a test truncated at the draws made (still exact, just weaker),
    with ``complete=False``. Returns ``p_value`` (None without a targeted value or a draw),
    ``draws_used``, ``exceedances`` (draws >= targeted among those used), ``stopped_early``
    and ``p_value_floor`` (the smallest p this design can give).

    Example::

        sequential_p_value(5.0, [1, 6, 7, 2, 8], exceedances=3)   # stops at the 5th draw:
        # 3 draws reached 5.0 among 5 made -> p = 3 / 5
    """
    values = _finite_sequence(draws)
    n_max = len(values) if max_draws is None else int(max_draws)
    out = dict(p_value=None, draws_used=0, exceedances=0, stopped_early=False, complete=False,
               max_draws=n_max, exceedance_target=exceedances,
               p_value_floor=1.0 / (n_max + 1) if n_max > 0 else None)
    if targeted is None or not math.isfinite(targeted) or len(values) == 0 or n_max < 1:
        return out
    reached = np.cumsum(values[:n_max] >= targeted)
    if exceedances is not None and reached[-1] >= exceedances:
        used = int(np.argmax(reached >= exceedances)) + 1
        out.update(p_value=exceedances / used, draws_used=used, exceedances=int(exceedances),
                   stopped_early=used < n_max, complete=True)
        return out
    used = len(reached)
    out.update(p_value=float((reached[-1] + 1) / (used + 1)), draws_used=used,
               exceedances=int(reached[-1]), complete=used >= n_max,
               p_value_floor=1.0 / (used + 1))
    return out


def needs_more_draws(targeted: Optional[float], draws: Sequence[Optional[float]],
                     exceedances: Optional[int], max_draws: int) -> bool:
    """Would the sequential test draw again? (False once stopped, or at ``max_draws``.)"""
    if targeted is None or not math.isfinite(targeted):
        return False
    values = _finite_sequence(draws)
    if len(values) >= max_draws:
        return False
    return exceedances is None or int(np.count_nonzero(values >= targeted)) < exceedances


def placebo_rate(draws: Sequence[Optional[float]], exceedances: Optional[int],
                 max_draws: Optional[int], alpha: float = ALPHA) -> dict:
    """Each draw in turn as a stand-in target, tested against the others as the real one is.

    Draw ``i`` plays the targeted set; the other draws, in their order, are its random
    draws, with at most ``max_draws - 1`` of them (one fewer than the real test had, since
    the stand-in is one of them). Returns the number of placebos, how many were called
    significant at ``alpha``, the rate and its exact (Clopper-Pearson) 95% interval.
    """
    values = _finite_sequence(draws)
    n = len(values)
    out = dict(num_placebos=n, num_significant=0, rate=None, ci95=None, alpha=alpha)
    if n < 2:
        return out
    cap = None if max_draws is None else max(1, min(int(max_draws), n) - 1)
    p_values = [sequential_p_value(float(values[i]), np.delete(values, i), exceedances,
                                   cap)['p_value'] for i in range(n)]
    significant = sum(p is not None and p <= alpha for p in p_values)
    out.update(binomial_rate(significant, n), p_values=p_values)
    return out


def binomial_rate(significant: int, total: int) -> dict:
    """A false-positive count as a rate with its exact (Clopper-Pearson) 95% interval."""
    if total == 0:
        return dict(num_placebos=0, num_significant=0, rate=None, ci95=None)
    interval = scipy_stats.binomtest(significant, total).proportion_ci(0.95, method='exact')
    return dict(num_placebos=total, num_significant=int(significant), rate=significant / total,
                ci95=[float(interval.low), float(interval.high)])


def smallest_significant_rank(max_draws: int, alpha: float = ALPHA) -> Optional[int]:
    """Most draws that may reach the targeted value with p <= alpha at ``max_draws`` draws
    (None when no outcome is significant: max_draws < 1/alpha - 1)."""
    allowed = math.floor(alpha * (max_draws + 1) + 1e-9) - 1
    return allowed if allowed >= 0 else None


def detectable_gap(draws: Sequence[Optional[float]], max_draws: int,
                   alpha: float = ALPHA) -> dict:
    """The gap over the random mean a targeted value needs to be significant.

    Significance at ``max_draws`` draws needs at most ``k`` of them to reach the targeted
    value (:func:`smallest_significant_rank`), i.e. a value above the ``1 - (k+1)/(n+1)``
    quantile of random drops. That quantile is read off the draws made (linear
    interpolation); with fewer than 5 draws, or when no outcome can be significant, None.
    """
    values = _finite_sequence(draws)
    allowed = smallest_significant_rank(max_draws, alpha)
    out = dict(gap=None, threshold=None, quantile=None, num_draws=len(values),
               max_draws=max_draws)
    if allowed is None or len(values) < 5:
        return out
    quantile = 1 - (allowed + 1) / (max_draws + 1)
    threshold = float(np.quantile(values, quantile))
    out.update(gap=threshold - float(values.mean()), threshold=threshold, quantile=quantile)
    return out


def holm_adjust(p_values: Sequence[Optional[float]]) -> list[Optional[float]]:
    """Holm's step-down adjusted p-values (None stays None and is not counted).

    Example::

        holm_adjust([0.01, 0.04, 0.03])   # [0.03, 0.06, 0.06]
    """
    indexed = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(indexed)
    adjusted: list[Optional[float]] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(indexed)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def fisher(p_values: Sequence[Optional[float]]) -> dict:
    """Fisher's combination (scipy.stats.combine_pvalues) of per-model one-sided p-values.

    It asks "is there an effect in these models?" (in at least one of them), consistently
    with each model's own rank test: -2 sum(log p) is chi-squared with 2k degrees of freedom
    under the null, and conservative for Monte Carlo p-values, which are super-uniform.
    Stouffer's method was tried first and dropped: a sequential test stopped by its first 5
    draws gives p = 1 (1 time in 6 under the null), whose z = -inf vetoes every other model
    (on data seed 1 of the study, one such model turned two models at p <= 0.05 into a
    pooled p of 0.97); under Fisher p = 1 adds nothing, as it should.
    """
    values = _finite_sequence(p_values)
    values = np.clip(values, 1e-300, 1.0)   # a p of 0 cannot occur; log(0) would
    out = dict(num_models=len(values), statistic=None, p_value=None,
               method="Fisher's combination of the models' one-sided rank p-values "
                      '(scipy.stats.combine_pvalues)')
    if len(values) == 0:
        return out
    if len(values) == 1:
        out.update(p_value=float(values[0]), statistic=float(-2 * np.log(values[0])))
        return out
    result = scipy_stats.combine_pvalues(values, method='fisher')
    out.update(statistic=float(result.statistic), p_value=float(result.pvalue))
    return out


def draw_round_sizes(max_draws: int, start: int) -> list[int]:
    """The cumulative draw counts at which the sequential rule is checked, up to max_draws."""
    if start >= max_draws:
        return [start]
    return sorted({start, max_draws} | {n for n in DRAW_ROUNDS if start < n < max_draws})
