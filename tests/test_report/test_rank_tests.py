"""The rank tests that give verdicts, against hand-counted values and simulated nulls.

Besag & Clifford's sequential p-value, the placebo check, the detectable gap, Holm and
Fisher, each checked on numbers worked by hand or against scipy; the null calibration by
simulation (exchangeable draws must give "holds" at most alpha of the time).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from posattack.report.rank_tests import (detectable_gap, draw_round_sizes, fisher, holm_adjust,
                                         needs_more_draws, placebo_rate, sequential_p_value,
                                         smallest_significant_rank)
from posattack.report.test_design import TestDesign, primary_setting


def test_sequential_p_value_stops_at_the_hth_exceedance():
    # draws reaching 5.0: the 2nd (6), 3rd (7) and 5th (8): the 3rd exceedance at draw 5
    out = sequential_p_value(5.0, [1, 6, 7, 2, 8, 9, 9], exceedances=3, max_draws=10)
    assert out['p_value'] == pytest.approx(3 / 5)
    assert out['draws_used'] == 5 and out['stopped_early'] and out['complete']


def test_sequential_p_value_without_stopping_is_the_empirical_p():
    # 19 draws below, none reaching: (0 + 1) / (19 + 1)
    out = sequential_p_value(100.0, list(range(19)), exceedances=10, max_draws=19)
    assert out['p_value'] == pytest.approx(1 / 20) and not out['stopped_early']
    # ties count against the targeted set: equal to two draws -> (2 + 1) / (4 + 1)
    assert sequential_p_value(3.0, [3.0, 1.0, 3.0, 0.0], None)['p_value'] == pytest.approx(3 / 5)
    # fewer draws than the cap and not stopped: truncated, flagged incomplete
    short = sequential_p_value(100.0, [1.0, 2.0], exceedances=10, max_draws=99)
    assert short['p_value'] == pytest.approx(1 / 3) and not short['complete']
    assert sequential_p_value(None, [1.0, 2.0])['p_value'] is None
    assert sequential_p_value(1.0, [])['p_value'] is None


def test_needs_more_draws_follows_the_rule():
    assert needs_more_draws(5.0, [1, 6, 2], exceedances=2, max_draws=10)      # 1 of 2 reached
    assert not needs_more_draws(5.0, [1, 6, 7], exceedances=2, max_draws=10)  # 2 reached
    assert not needs_more_draws(5.0, [1, 2, 3], exceedances=2, max_draws=3)   # cap reached
    assert not needs_more_draws(None, [1, 2], exceedances=2, max_draws=10)


def _null_hits(exceedances, max_draws, trials, seed=0):
    """How many exchangeable (targeted, draws) sets are called significant at 0.05."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        values = rng.standard_normal(max_draws + 1)
        p = sequential_p_value(values[0], values[1:], exceedances, max_draws)['p_value']
        hits += p <= 0.05
    return hits


@pytest.mark.parametrize('exceedances,max_draws', [(None, 19), (10, 99), (5, 39)])
def test_the_sequential_test_is_valid_under_the_null(exceedances, max_draws):
    # Exact test: P(p <= 0.05) = floor(0.05 (n + 1)) / (n + 1) <= 0.05. A rate above 0.05
    # would show as a one-sided binomial p far below 1e-4 over 10000 simulated nulls.
    trials = 10000
    hits = _null_hits(exceedances, max_draws, trials)
    assert scipy_stats.binomtest(hits, trials, 0.05, alternative='greater').pvalue > 1e-4


def test_the_sequential_test_finds_a_clear_effect():
    rng = np.random.default_rng(1)
    draws = rng.standard_normal(99)
    out = sequential_p_value(4.0, draws, exceedances=10, max_draws=99)
    assert out['p_value'] == pytest.approx(1 / 100) and out['draws_used'] == 99


def test_placebo_rate_counts_stand_ins_by_hand():
    # draws 0..4 (no stopping): draw 4 as stand-in is above the 4 others: p = 1/5 > 0.05
    out = placebo_rate([0.0, 1.0, 2.0, 3.0, 4.0], exceedances=None, max_draws=None)
    assert out['num_placebos'] == 5 and out['num_significant'] == 0
    assert out['p_values'] == pytest.approx([5 / 5, 4 / 5, 3 / 5, 2 / 5, 1 / 5])
    # 40 distinct draws: the top one gets p = 1/40 <= 0.05, the 2nd 2/40 <= 0.05: 2 of 40
    out = placebo_rate(list(range(40)), exceedances=None, max_draws=None)
    assert out['num_significant'] == 2 and out['rate'] == pytest.approx(2 / 40)
    ci = scipy_stats.binomtest(2, 40).proportion_ci(0.95, method='exact')
    assert out['ci95'] == pytest.approx([ci.low, ci.high])


def test_detectable_gap_reads_the_quantile_of_the_draws():
    # 99 draws: significance allows 4 draws to reach the value ((4 + 1) / 100 = 0.05)
    assert smallest_significant_rank(99) == 4
    assert smallest_significant_rank(18) is None      # 1/19 > 0.05: nothing is significant
    draws = np.arange(100, dtype=float)                # mean 49.5
    out = detectable_gap(draws, max_draws=99)
    assert out['quantile'] == pytest.approx(0.95)
    assert out['threshold'] == pytest.approx(np.quantile(draws, 0.95))
    assert out['gap'] == pytest.approx(np.quantile(draws, 0.95) - 49.5)
    assert detectable_gap(draws, max_draws=10)['gap'] is None


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]


def test_fisher_against_the_formula_and_a_p_of_one_is_no_veto():
    p = [0.01, 0.2, 0.5]
    statistic = -2 * np.log(p).sum()
    out = fisher(p)
    assert out['statistic'] == pytest.approx(statistic)
    assert out['p_value'] == pytest.approx(scipy_stats.chi2.sf(statistic, 6))
    assert fisher([0.03])['p_value'] == pytest.approx(0.03)
    assert fisher([None])['p_value'] is None
    # a model stopped by its first draws (p = 1) adds nothing: two strong models still count
    strong = fisher([0.01, 0.01, 0.7, 0.7, 1.0])
    assert strong['p_value'] == pytest.approx(
        scipy_stats.chi2.sf(-2 * np.log([0.01, 0.01, 0.7, 0.7]).sum(), 10))
    assert strong['p_value'] < 0.05


def test_draw_rounds_end_at_the_cap():
    assert draw_round_sizes(99, 19) == [19, 29, 39, 59, 99]
    assert draw_round_sizes(50, 19) == [19, 29, 39, 50]
    assert draw_round_sizes(10, 10) == [10]


def test_needs_more_draws_counts_a_tie_as_reaching():
    # two draws equal to the targeted value are its 2 exceedances: the rule has stopped
    assert not needs_more_draws(5.0, [5.0, 5.0, 1.0], exceedances=2, max_draws=99)
    assert needs_more_draws(5.0, [5.0, 4.9, 1.0], exceedances=2, max_draws=99)


def test_fisher_fields_by_hand():
    assert fisher([]) == dict(num_models=0, statistic=None, p_value=None,
                              method="Fisher's combination of the models' one-sided rank "
                                     'p-values (scipy.stats.combine_pvalues)')
    one = fisher([0.2])            # one model: its own p, and -2 log p
    assert one['num_models'] == 1 and one['p_value'] == pytest.approx(0.2)
    assert one['statistic'] == pytest.approx(-2 * np.log(0.2))
    # p-values are clipped to [1e-300, 1]: a 0 gives a finite statistic, above 1 counts as 1
    zero = fisher([0.0, 0.5])
    assert zero['statistic'] == pytest.approx(-2 * (np.log(1e-300) + np.log(0.5)))
    assert zero['p_value'] < 1e-290
    above = fisher([2.0, 0.5])
    assert above['statistic'] == pytest.approx(-2 * np.log(0.5))
    assert above['p_value'] == pytest.approx(scipy_stats.chi2.sf(-2 * np.log(0.5), 4))


def test_the_design_reads_back_from_its_dict():
    assert TestDesign.from_dict(None) == TestDesign() == TestDesign.from_dict({})
    design = TestDesign.from_dict(dict(max_draws=19, alpha=0.1, unknown_field=3))
    assert design == TestDesign(max_draws=19, alpha=0.1)
    assert TestDesign.from_dict(design.to_dict()) == design
    assert design.to_dict() == dict(primary_fraction=0.05, exceedances=5, max_draws=19,
                                    alpha=0.1)


def test_the_primary_setting_is_the_targeted_overall_order_at_5_percent():
    def setting(mode, n, region):
        return dict(mode=mode, num_channels=n, attack_region=region)
    design = TestDesign()        # 5% of 40 channels: 2
    assert design.primary_num_channels(40) == 2
    others = [setting('targeted', 4, 'left'), setting('random', 2, None)]
    assert primary_setting(others + [setting('targeted', 2, 'top'),
                                     setting('targeted', 2, 'overall')], 40, design) == \
        (2, 'overall')
    # no 'overall' order at N=2: the first targeted order at N=2 (not N=4's, not a random's)
    assert primary_setting(others + [setting('targeted', 2, 'top'),
                                     setting('targeted', 2, 'bottom')], 40, design) == (2, 'top')
    assert primary_setting(others, 40, design) == (None, None)


def test_placebo_rate_of_two_and_of_one_draw():
    # two draws: 1 against [2] gives (1 + 1) / 2 = 1, 2 against [1] gives 1 / 2; none holds
    out = placebo_rate([1.0, 2.0], None, None)
    low, high = scipy_stats.binomtest(0, 2).proportion_ci(0.95, method='exact')
    assert out == dict(num_placebos=2, num_significant=0, rate=0.0, ci95=[low, high],
                       alpha=0.05, p_values=[1.0, 0.5])
    assert placebo_rate([1.0], 5, 19, alpha=0.1) == dict(num_placebos=1, num_significant=0,
                                                          rate=None, ci95=None, alpha=0.1)


def test_placebo_rate_cuts_each_stand_in_to_one_draw_fewer():
    # at most 2 draws: each stand-in meets only the first 1 of the others
    out = placebo_rate([3.0, 1.0, 2.0], None, 2)
    # 3 vs [1]: 1/2; 1 vs [3]: 2/2; 2 vs [3]: 2/2
    assert out['p_values'] == [0.5, 1.0, 1.0]


def test_detectable_gap_fields_and_its_level():
    assert detectable_gap([1.0, 2.0, 3.0, 4.0], 19) == dict(
        gap=None, threshold=None, quantile=None, num_draws=4, max_draws=19)
    # five draws are enough: the 0.95 quantile of 1..5 is 4.8, 1.8 over the mean
    five = detectable_gap([1.0, 2.0, 3.0, 4.0, 5.0], 19)
    assert five['threshold'] == pytest.approx(4.8) and five['gap'] == pytest.approx(1.8)
    # at alpha 0.1, 1 of 19 draws may reach it: the 0.9 quantile of 1..21 is 19, 8 over 11
    assert detectable_gap(list(range(1, 22)), 19, alpha=0.1) == pytest.approx(dict(
        gap=8.0, threshold=19.0, quantile=0.9, num_draws=21, max_draws=19))


def test_holm_caps_at_one():
    # sorted 0.6, 0.7 -> min(1, 2 * 0.6) = 1, then max(1, 0.7) = 1
    assert holm_adjust([0.7, 0.6]) == [1.0, 1.0]


def test_sequential_p_value_without_a_value_to_rank_says_so_field_by_field():
    nothing = dict(p_value=None, draws_used=0, exceedances=0, stopped_early=False,
                   complete=False, max_draws=3, exceedance_target=5, p_value_floor=0.25)
    for targeted in (None, float('nan')):
        assert sequential_p_value(targeted, [1.0, 2.0, 3.0], 5) == nothing
    # no draw: no floor either
    assert sequential_p_value(1.0, [], 5) == dict(nothing, max_draws=0, p_value_floor=None)
    # a cap of 0 draws: nothing drawn, nothing to say
    assert sequential_p_value(1.0, [2.0, 3.0], 5, max_draws=0)['p_value'] is None


def test_sequential_p_value_that_stops_at_its_last_draw_or_never():
    # draws reaching 5.0: the 1st (6) and the 3rd (7): the 2nd exceedance at the 3rd and last
    # draw: p = 2 / 3, a complete test that did not stop early
    out = sequential_p_value(5.0, [6.0, 1.0, 7.0], exceedances=2)
    assert out == dict(p_value=pytest.approx(2 / 3), draws_used=3, exceedances=2,
                       stopped_early=False, complete=True, max_draws=3, exceedance_target=2,
                       p_value_floor=pytest.approx(1 / 4))
    # one exceedance short of the target: never stops, (2 + 1) / (4 + 1) over 4 draws
    out = sequential_p_value(3.0, [3.0, 1.0, 3.0, 0.0], exceedances=3)
    assert out == dict(p_value=pytest.approx(3 / 5), draws_used=4, exceedances=2,
                       stopped_early=False, complete=True, max_draws=4, exceedance_target=3,
                       p_value_floor=pytest.approx(1 / 5))
    # the first example's fields: 3 exceedances at draw 5 of at most 10
    out = sequential_p_value(5.0, [1, 6, 7, 2, 8, 9, 9], exceedances=3, max_draws=10)
    assert out['exceedances'] == 3 and out['p_value_floor'] == pytest.approx(1 / 11)
    # one draw: a floor of 1/2 even with nothing to rank
    assert sequential_p_value(None, [2.0])['p_value_floor'] == pytest.approx(1 / 2)
