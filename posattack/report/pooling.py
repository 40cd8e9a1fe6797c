"""Across trained models: pool the per-model tests, and state the paper's two claims.

Each model's ``results.json`` carries its ``tests`` (:mod:`posattack.report.significance`). A test
is identified across models by ``(kind, mode, num_channels, attack_region, eval_region)``;
for each, :func:`pool_tests` reports the per-model estimates, their mean and sample std, how
many models' own test says ``holds`` at the 5% level, and the one-sample t-test of "the mean
over models is 0" (models are the unit: a training seed is a draw of the model).

:func:`paper_claims` states the two claims at the headline count (the targeted N nearest 10%
of the attacked channels, ranking order ``overall`` when present):

1. targeted removal hurts more than random removal of as many channels;
2. under targeted removal, the periphery drops more than the center.

With several models a claim reads the t interval over models; with one model it reads that
model's own tests (for claim 1 both the draws test and the image bootstrap must agree).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from ..channels.modes import CLEAN, TARGETED
from .statistics import (FAILS, HOLDS, INCONCLUSIVE, NOT_COMPUTED, one_sample_t,
                         verdict_from_interval)

TestKey = tuple[str, str, int, Optional[str], str]
SUMMARY_FORMAT = 'posattack.summary/1'


def test_key(test: Mapping) -> TestKey:
    return (test['kind'], test['mode'], int(test['num_channels']), test.get('attack_region'),
            test['eval_region'])


def headline(results: Mapping) -> tuple[Optional[int], Optional[str]]:
    """(N, attack region) of the headline comparison: the targeted N nearest 10%."""
    targeted = [s for s in results['settings'] if s['mode'] == TARGETED]
    if not targeted:
        return None, None
    total = results['num_channels_total']
    regions = [s['attack_region'] for s in targeted]
    region = 'overall' if 'overall' in regions else regions[0]
    counts = sorted({int(s['num_channels']) for s in targeted if s['attack_region'] == region})
    return min(counts, key=lambda n: (abs(n - 0.1 * total), n)), region


def _find(tests: Sequence[Mapping], key: TestKey) -> Optional[Mapping]:
    return next((t for t in tests if test_key(t) == key), None)


def pool_tests(models: Sequence[tuple[str, Mapping]]) -> list[dict]:
    """One entry per test key found in any model: per-model values and the t over models."""
    keys: list[TestKey] = []
    for _, results in models:
        keys += [test_key(t) for t in results.get('tests', []) if test_key(t) not in keys]
    pooled = []
    for key in keys:
        per_model = []
        for name, results in models:
            test = _find(results.get('tests', []), key)
            per_model.append(dict(model=name, estimate=None if test is None else test['estimate'],
                                  verdict=NOT_COMPUTED if test is None else test['verdict'],
                                  p_value=None if test is None else test['p_value']))
        estimates = [m['estimate'] for m in per_model]
        t = one_sample_t(estimates)
        kind, mode, n, attack_region, eval_region = key
        pooled.append(dict(
            kind=kind, mode=mode, num_channels=n, attack_region=attack_region,
            eval_region=eval_region, per_model=per_model, mean=t['mean'], std=t['std'],
            num_models=t['n'], num_models_holding=sum(m['verdict'] == HOLDS for m in per_model),
            t=t['t'], df=t['df'], p_value=t['p_value'], ci95=t['ci95'],
            method='one-sample t-test over models (scipy.stats.ttest_1samp), t 95% interval',
            verdict=verdict_from_interval(t['ci95']) if t['ci95'] is not None else (
                NOT_COMPUTED if t['n'] < 2 else INCONCLUSIVE)))
    return pooled


def pool_drops(models: Sequence[tuple[str, Mapping]]) -> list[dict]:
    """Mean ± std over models of every group's drop (targeted settings, random means)."""
    rows: dict[tuple, dict] = {}
    for name, results in models:
        statistics = results.get('statistics') or {}
        settings = {s['key']: s for s in results['settings']}
        groups = [((s['mode'], int(s['num_channels']), s['attack_region']), values)
                  for key, values in statistics.get('settings', {}).items()
                  for s in [settings.get(key)] if s is not None and s['mode'] == TARGETED]
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


def _single_model_claim_1(tests: Sequence[Mapping], n: int, region: str) -> tuple[str, str]:
    draws = _find(tests, ('targeted_vs_random_draws', 'targeted', n, region, 'full'))
    images = _find(tests, ('targeted_minus_random', 'targeted', n, region, 'full'))
    verdicts = [t['verdict'] for t in (draws, images) if t is not None]
    if not verdicts or all(v == NOT_COMPUTED for v in verdicts):
        return NOT_COMPUTED, 'no random draws or no per-image counts to test with'
    if FAILS in verdicts:
        verdict = FAILS
    elif all(v == HOLDS for v in verdicts) and len(verdicts) == 2:
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
    parts = []
    if images is not None and images['estimate'] is not None:
        parts.append(f'gap {images["estimate"]:+.2f} mIoU points, image bootstrap 95% CI '
                     f'{_interval(images["ci95"])}')
    if draws is not None and draws.get('prediction_interval') is not None:
        parts.append(f'targeted drop {draws["targeted_drop"]:.2f} vs 95% prediction interval '
                     f'of a random draw {_interval(draws["prediction_interval"])}, empirical p '
                     f'{draws["p_value"]:.3f} over {draws["num_draws"]} draws')
    elif draws is not None:
        parts.append(draws.get('reason', 'draws test not computed'))
    return verdict, '; '.join(parts)


def _interval(interval: Optional[Sequence[float]]) -> str:
    return 'n/a' if interval is None else f'[{interval[0]:+.2f}, {interval[1]:+.2f}]'


def paper_claims(models: Sequence[tuple[str, Mapping]]) -> list[dict]:
    """The paper's two claims at the headline N: verdict and the numbers behind it."""
    if not models:
        return []
    n, region = headline(models[0][1])
    if n is None:
        return []
    total = models[0][1]['num_channels_total']
    where = f'N={n} of {total} channels, ranking order {region}'
    claim_1 = f'Targeted removal hurts more than random removal ({where}, full image)'
    claim_2 = f'Under targeted removal the periphery drops more than the center ({where})'
    key_1 = ('targeted_minus_random', 'targeted', n, region, 'full')
    key_2 = ('periphery_minus_center', 'targeted', n, region, 'periphery-center')
    claims = []
    if len(models) == 1:
        tests = models[0][1].get('tests', [])
        verdict, numbers = _single_model_claim_1(tests, n, region)
        claims.append(dict(claim=claim_1, verdict=verdict, evidence=numbers, num_models=1))
        pc = _find(tests, key_2)
        if pc is None or pc['estimate'] is None:
            claims.append(dict(claim=claim_2, verdict=NOT_COMPUTED, num_models=1,
                               evidence='center and periphery were not both evaluated'))
        else:
            claims.append(dict(claim=claim_2, verdict=pc['verdict'], num_models=1, evidence=(
                f'periphery drop minus center drop {pc["estimate"]:+.2f}, image bootstrap 95% '
                f'CI {_interval(pc["ci95"])}')))
        return claims
    pooled = {test_key(p): p for p in pool_tests(models)}
    for claim, key in ((claim_1, key_1), (claim_2, key_2)):
        p = pooled.get(key)
        if p is None or p['num_models'] < 2:
            claims.append(dict(claim=claim, verdict=NOT_COMPUTED, num_models=len(models),
                               evidence='fewer than 2 models give this statistic'))
            continue
        evidence = (f'mean over {p["num_models"]} models {p["mean"]:+.2f} ± {p["std"]:.2f} '
                    f'(sd), t 95% CI {_interval(p["ci95"])}'
                    + (f', t({p["df"]}) = {p["t"]:.2f}, p = {p["p_value"]:.3g}'
                       if p['t'] is not None else ', t undefined (no spread)')
                    + f'; {p["num_models_holding"]} of {p["num_models"]} models hold on '
                    'their own at 5%')
        claims.append(dict(claim=claim, verdict=p['verdict'], evidence=evidence,
                           num_models=p['num_models']))
    return claims


def build_summary(models: Sequence[tuple[str, Mapping]], config: str) -> dict:
    """summary.json: per model the headline rows, then the pooled tests, drops and claims."""
    rows = []
    for name, results in models:
        n, region = headline(results)
        tests = results.get('tests', [])
        clean = next((s for s in results['settings'] if s['mode'] == CLEAN), None)
        row = dict(model=name, checkpoint=results.get('checkpoint'),
                   clean_mIoU=None if clean is None else clean['metrics'].get('mIoU'),
                   num_channels=n, attack_region=region)
        for kind, label in (('targeted_minus_random', 'gap'),
                            ('periphery_minus_center', 'periphery_minus_center')):
            eval_region = 'full' if kind == 'targeted_minus_random' else 'periphery-center'
            test = _find(tests, (kind, 'targeted', n, region, eval_region))
            row[label] = None if test is None else dict(
                estimate=test['estimate'], ci95=test['ci95'], verdict=test['verdict'])
        draws = _find(tests, ('targeted_vs_random_draws', 'targeted', n, region, 'full'))
        row['draws'] = None if draws is None else dict(
            p_value=draws['p_value'], z=draws['z'], verdict=draws['verdict'],
            prediction_interval=draws['prediction_interval'], num_draws=draws['num_draws'])
        rows.append(row)
    return dict(format=SUMMARY_FORMAT, config=config, models=rows,
                claims=paper_claims(models), pooled_tests=pool_tests(models),
                pooled_drops=pool_drops(models))
