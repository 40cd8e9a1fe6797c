"""Across trained models: pool the per-model tests, and state the paper's two claims.

Each model's ``results.json`` carries its rank ``tests`` (:mod:`posattack.report.significance`).
A test is identified across models by ``(kind, mode, num_channels, attack_region,
eval_region)``; for each, :func:`pool_tests` gives two answers to two questions:

* **Is there an effect in these models?** Fisher's combination of the models' one-sided
  rank p-values (:func:`posattack.report.rank_tests.fisher`): consistent with each model's
  own test, valid for their Monte Carlo p-values, and its false-positive rate is measured the
  same way (the models' placebo p-values combined). The verdict word comes from it (Holm-adjusted
  over the exploratory keys).
* **How large is the effect on average over training seeds?** The mean of the per-model
  estimates (targeted minus random mean) with its one-sample t 95% interval: an effect size
  for a new training seed, reported with its p-value but giving no verdict word.

:func:`paper_claims` states the two claims at the primary count (5% of the attacked channels,
:mod:`posattack.report.test_design`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from ..channels.modes import CLEAN
from .rank_tests import ALPHA, binomial_rate, fisher, holm_adjust
from .statistics import HOLDS, INCONCLUSIVE, NOT_COMPUTED, one_sample_t

TestKey = tuple[str, str, int, Optional[str], str]
SUMMARY_FORMAT = 'posattack.summary/2'
CLAIM_1_KIND = 'targeted_vs_random_draws'
CLAIM_2_KIND = 'periphery_minus_center_vs_random_draws'


def test_key(test: Mapping) -> TestKey:
    return (test['kind'], test['mode'], int(test['num_channels']), test.get('attack_region'),
            test['eval_region'])


def headline(results: Mapping) -> tuple[Optional[int], Optional[str]]:
    """(N, attack region) of the primary tests (None, None when the run has none)."""
    primary = (results.get('statistics') or {}).get('primary') or {}
    return primary.get('num_channels'), primary.get('attack_region')


def _find(tests: Sequence[Mapping], key: TestKey) -> Optional[Mapping]:
    return next((t for t in tests if test_key(t) == key), None)


def _pooled_placebo(tests: Sequence[Optional[Mapping]], alpha: float) -> dict:
    """Stand-in i of every model, combined as the real tests are: the pooled test's
    false-positive rate on these models (as many placebos as the model with fewest)."""
    lists = [((t or {}).get('placebo') or {}).get('p_values') for t in tests]
    if not lists or any(not values for values in lists):
        return binomial_rate(0, 0)
    total = min(len(values) for values in lists)
    significant = 0
    for i in range(total):
        p = fisher([values[i] for values in lists])['p_value']
        significant += int(p is not None and p <= alpha)
    return binomial_rate(significant, total)


def pool_tests(models: Sequence[tuple[str, Mapping]], alpha: float = ALPHA) -> list[dict]:
    """One entry per test key found in any model: per-model values, Fisher, t over models."""
    keys: list[TestKey] = []
    for _, results in models:
        keys += [test_key(t) for t in results.get('tests', []) if test_key(t) not in keys]
    pooled = []
    for key in keys:
        found = [_find(results.get('tests', []), key) for _, results in models]
        per_model = [dict(model=name, estimate=None if t is None else t['estimate'],
                          p_value=None if t is None else t['p_value'],
                          verdict=NOT_COMPUTED if t is None else t['verdict'])
                     for (name, _), t in zip(models, found)]
        t_test = one_sample_t([m['estimate'] for m in per_model])
        combined = fisher([m['p_value'] for m in per_model])
        kind, mode, n, attack_region, eval_region = key
        pooled.append(dict(
            kind=kind, mode=mode, num_channels=n, attack_region=attack_region,
            eval_region=eval_region, primary=any(t is not None and t.get('primary')
                                                 for t in found),
            per_model=per_model, num_models=t_test['n'],
            num_models_holding=sum(m['verdict'] == HOLDS for m in per_model),
            p_value=combined['p_value'], chi2=combined['statistic'], p_value_holm=None,
            method=combined['method'],
            placebo=_pooled_placebo(found, alpha),
            mean=t_test['mean'], std=t_test['std'], ci95=t_test['ci95'], t=t_test['t'],
            df=t_test['df'], p_value_t=t_test['p_value'],
            effect_method='mean of the per-model gaps over training seeds, one-sample t 95% '
                          'interval (scipy.stats.ttest_1samp)',
            verdict=NOT_COMPUTED if combined['p_value'] is None else None))
    primary = [p for p in pooled if p['primary'] and p['verdict'] is None]
    for p in primary:
        p['verdict'] = HOLDS if p['p_value'] <= alpha else INCONCLUSIVE
    exploratory = [p for p in pooled if not p['primary'] and p['verdict'] is None]
    for p, adjusted in zip(exploratory, holm_adjust([p['p_value'] for p in exploratory])):
        p['p_value_holm'] = adjusted
        p['verdict'] = HOLDS if adjusted <= alpha else INCONCLUSIVE
    return pooled


def pool_drops(models: Sequence[tuple[str, Mapping]]) -> list[dict]:
    """Mean ± std over models of every group's drop (targeted settings, random means)."""
    rows: dict[tuple, dict] = {}
    for name, results in models:
        statistics = results.get('statistics') or {}
        settings = {s['key']: s for s in results['settings']}
        groups = [((s['mode'], int(s['num_channels']), s['attack_region']), values)
                  for key, values in statistics.get('settings', {}).items()
                  for s in [settings.get(key)] if s is not None and s['mode'] == 'targeted']
        groups += [(('random', int(n), None), values)
                   for n, values in statistics.get('random_groups', {}).items()]
        for group, values in groups:
            for region, entry in values.items():
                row = rows.setdefault(group + (region, ), dict(
                    mode=group[0], num_channels=group[1], attack_region=group[2],
                    eval_region=region, per_model={}))
                row['per_model'][name] = entry['drop']['estimate']
    out = []
    for row in rows.values():
        values = np.array([v for v in row['per_model'].values() if v is not None], dtype=float)
        row.update(mean=float(values.mean()) if len(values) else None,
                   std=float(values.std(ddof=1)) if len(values) >= 2 else None,
                   num_models=len(values))
        out.append(row)
    return out


def _interval(interval: Optional[Sequence[float]]) -> str:
    return 'n/a' if interval is None else f'[{interval[0]:+.2f}, {interval[1]:+.2f}]'


def _placebo_text(placebo: Optional[Mapping]) -> str:
    if not placebo or placebo.get('ci95') is None:
        return 'placebo check not computed'
    return (f'placebo false-positive rate {placebo["num_significant"]}/{placebo["num_placebos"]}'
            f' (95% CI {placebo["ci95"][0]:.2f}-{placebo["ci95"][1]:.2f})')


def single_model_evidence(test: Mapping) -> str:
    """The numbers behind one model's rank test, in words."""
    if test['p_value'] is None:
        return test.get('reason', 'not computed')
    seq = test.get('sequential') or {}
    stop = (f'stopped after {seq["draws_used"]} draws ({seq["exceedances"]} reached it)'
            if seq.get('stopped_early') else f'{test.get("num_draws", "?")} draws')
    parts = []
    if test.get('targeted_value') is not None and test.get('random_std') is not None:
        parts.append(f'targeted {test["targeted_value"]:+.2f} vs random mean '
                     f'{test["random_mean"]:+.2f} (sd {test["random_std"]:.2f})')
    parts += [f'gap {test["estimate"]:+.2f}, image bootstrap 95% CI '
              f'{_interval(test.get("ci95"))}',
              f'rank p = {test["p_value"]:.3f} ({stop})', _placebo_text(test.get('placebo'))]
    detectable = test.get('detectable') or {}
    if detectable.get('gap') is not None:
        parts.append(f'smallest detectable gap about {detectable["gap"]:+.2f} '
                     f'({detectable["max_draws"]} draws)')
    if test.get('ranking_on_scored_images'):
        parts.append('ranking selected on the scored images')
    if test.get('reason'):
        parts.append(test['reason'])
    return '; '.join(parts)


def paper_claims(models: Sequence[tuple[str, Mapping]]) -> list[dict]:
    """The paper's two claims at the primary N: verdict and the numbers behind it."""
    if not models:
        return []
    n, region = headline(models[0][1])
    if n is None:
        return []
    total = models[0][1]['num_channels_total']
    where = f'N={n} of {total} channels (5%), ranking order {region}'
    claims = [
        (f'Targeted removal hurts more than random removal ({where}, full image)',
         (CLAIM_1_KIND, 'targeted', n, region, 'full')),
        (f'Targeted removal hurts the periphery more than the center, beyond what random '
         f'removal does ({where}, difference in differences)',
         (CLAIM_2_KIND, 'targeted', n, region, 'periphery-center'))]
    out = []
    if len(models) == 1:
        tests = models[0][1].get('tests', [])
        for claim, key in claims:
            test = _find(tests, key)
            if test is None:
                out.append(dict(claim=claim, verdict=NOT_COMPUTED, num_models=1,
                                evidence='no random draws, or center and periphery not both '
                                         'evaluated, at the primary count'))
            else:
                out.append(dict(claim=claim, verdict=test['verdict'], num_models=1,
                                evidence=single_model_evidence(test),
                                placebo=test.get('placebo'), p_value=test['p_value']))
        return out
    pooled = {test_key(p): p for p in pool_tests(models)}
    for claim, key in claims:
        p = pooled.get(key)
        if p is None or p['p_value'] is None:
            out.append(dict(claim=claim, verdict=NOT_COMPUTED, num_models=len(models),
                            evidence='no model gives this test'))
            continue
        evidence = (f'Fisher over {p["num_models"]} models p = {p["p_value"]:.3g}; '
                    f'{p["num_models_holding"]} of {p["num_models"]} models hold on their own; '
                    f'{_placebo_text(p["placebo"])}; mean gap over models {p["mean"]:+.2f}'
                    + (f', t 95% CI {_interval(p["ci95"])} (effect size over training seeds)'
                       if p['ci95'] is not None else ''))
        out.append(dict(claim=claim, verdict=p['verdict'], evidence=evidence,
                        num_models=p['num_models'], placebo=p['placebo'],
                        p_value=p['p_value']))
    return out


def build_summary(models: Sequence[tuple[str, Mapping]], config: str) -> dict:
    """summary.json: per model the primary rows, then the pooled tests, drops and claims."""
    rows = []
    for name, results in models:
        n, region = headline(results)
        tests = results.get('tests', [])
        clean = next((s for s in results['settings'] if s['mode'] == CLEAN), None)
        row = dict(model=name, checkpoint=results.get('checkpoint'),
                   clean_mIoU=None if clean is None else clean['metrics'].get('mIoU'),
                   num_channels=n, attack_region=region)
        for kind, label, eval_region in ((CLAIM_1_KIND, 'gap', 'full'),
                                         (CLAIM_2_KIND, 'periphery_minus_center',
                                          'periphery-center')):
            test = None if n is None else _find(tests, (kind, 'targeted', n, region,
                                                         eval_region))
            row[label] = None if test is None else dict(
                estimate=test['estimate'], ci95=test['ci95'], verdict=test['verdict'],
                p_value=test['p_value'], num_draws=test['num_draws'])
        rows.append(row)
    return dict(format=SUMMARY_FORMAT, config=config, models=rows,
                claims=paper_claims(models), pooled_tests=pool_tests(models),
                pooled_drops=pool_drops(models))
