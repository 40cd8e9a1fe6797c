"""The seed-robustness study's rows and table (tools/tables/study_table.py writes it): for each
setting and data seed, how many training seeds carry the paper's two claims, from the pooled
runs' summary.json files.

A model *carries* a claim when its own primary rank test says ``holds`` at the 5% level
(:mod:`posattack.report.significance`: claim 1, the targeted full-image drop ranked among
random drops; claim 2, the targeted periphery-minus-center drop ranked among the random
draws' own; both at the primary N, 5% of the channels).
A setting *passes on a data seed* when at least PASS_MODELS of its models (the issue's "4 of
5 training seeds") carry both claims; it *passes* when it does so on at least PASS_DATA_SEEDS
data seeds. Over models, the mean gap with its one-sample t interval (the effect size for a
new training seed) is shown beside the counts, with the pooled verdict (Fisher's
combination of the models' rank p-values, :mod:`posattack.report.pooling`). Each count of models
carrying both claims comes with the exact (Clopper-Pearson) 95% interval of the share of
training seeds that would carry them, per data seed and over a setting's data seeds: with 5
models it is wide (even 5 of 5 leaves [48%, 100%]), which a reader of the pass rule should
see.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np
from scipy.stats import binomtest

from .pooling import test_key
from .statistics import HOLDS

__all__ = ['PASS_DATA_SEEDS', 'PASS_MODELS', 'share_interval', 'study_markdown', 'study_row']

PASS_MODELS = 4
PASS_DATA_SEEDS = 2


def _pooled(summary: Mapping, kind: str, eval_region: str) -> Optional[Mapping]:
    models = summary['models']
    if not models:
        return None
    key = (kind, 'targeted', models[0]['num_channels'], models[0]['attack_region'], eval_region)
    return next((p for p in summary['pooled_tests'] if test_key(p) == key), None)


def _interval(p: Optional[Mapping]) -> str:
    if p is None or p.get('mean') is None:
        return 'n/a'
    ci = p.get('ci95')
    ci_text = 'n/a' if ci is None else f'[{ci[0]:+.2f}, {ci[1]:+.2f}]'
    return f'{p["mean"]:+.2f} {ci_text}, {p["verdict"]}'


def share_interval(count: int, total: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) 95% interval of a share seen as ``count`` of ``total``."""
    ci = binomtest(count, total).proportion_ci(confidence_level=0.95, method='exact')
    return float(ci.low), float(ci.high)


def _share(count: int, total: int) -> str:
    low, high = share_interval(count, total)
    return f'{count}/{total} [{100 * low:.0f}%, {100 * high:.0f}%]'


def study_row(setting: str, data_seed: str, summary: Mapping) -> dict:
    """One setting on one data seed: counts of models carrying each claim, and the pooled
    t verdicts."""
    models = summary['models']
    claim_1 = [m['gap'] is not None and m['gap']['verdict'] == HOLDS for m in models]
    claim_2 = [m['periphery_minus_center'] is not None
               and m['periphery_minus_center']['verdict'] == HOLDS for m in models]
    both = [a and b for a, b in zip(claim_1, claim_2)]
    clean = [m['clean_mIoU'] for m in models if m['clean_mIoU'] is not None]
    n = models[0]['num_channels'] if models else None
    return dict(setting=setting, data_seed=data_seed, num_models=len(models),
                num_channels=n, clean_mean=float(np.mean(clean)) if clean else None,
                clean_std=float(np.std(clean, ddof=1)) if len(clean) > 1 else None,
                claim_1=sum(claim_1), claim_2=sum(claim_2), both=sum(both),
                gap=_pooled(summary, 'targeted_vs_random_draws', 'full'),
                periphery_minus_center=_pooled(summary, 'periphery_minus_center_vs_random_draws',
                                               'periphery-center'),
                passes=len(models) >= 5 and sum(both) >= PASS_MODELS)


def study_markdown(rows: Sequence[Mapping]) -> list[str]:
    lines = ['| setting | data seed | models | N | clean mIoU (mean ± sd) | claim 1: models | '
             'claim 1 over models: mean gap [t 95% CI], Fisher verdict | claim 2: models | '
             'claim 2 over models: mean DiD [t 95% CI], Fisher verdict | both: models [95% CI '
             'of the share] | passes on this data seed |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        clean = ('n/a' if r['clean_mean'] is None else f'{r["clean_mean"]:.2f}'
                 + ('' if r['clean_std'] is None else f' ± {r["clean_std"]:.2f}'))
        lines.append(
            f'| {r["setting"]} | {r["data_seed"]} | {r["num_models"]} | {r["num_channels"]} | '
            f'{clean} | {r["claim_1"]}/{r["num_models"]} | {_interval(r["gap"])} | '
            f'{r["claim_2"]}/{r["num_models"]} | {_interval(r["periphery_minus_center"])} | '
            f'{_share(r["both"], r["num_models"])} | {"yes" if r["passes"] else "no"} |')
    lines.append('')
    settings = list(dict.fromkeys(r['setting'] for r in rows))
    for setting in settings:
        mine = [r for r in rows if r['setting'] == setting]
        passed = [r['data_seed'] for r in mine if r['passes']]
        failed = [r['data_seed'] for r in mine if not r['passes']]
        if len(passed) >= PASS_DATA_SEEDS:
            verdict = 'passes'
        elif failed:
            verdict = f'does not pass (fails on data seed {", ".join(failed)})'
        else:
            verdict = (f'not decided (passes on {len(passed)} data seed(s) measured, '
                       f'{PASS_DATA_SEEDS} needed)')
        both, total = sum(r['both'] for r in mine), sum(r['num_models'] for r in mine)
        low, high = share_interval(both, total) if total else (float('nan'),) * 2
        lines.append(f'- **{setting}**: {verdict}. Both claims in {both} of {total} models '
                     f'over its data seeds (exact 95% CI of the share: {100 * low:.0f}% to '
                     f'{100 * high:.0f}%). The rule: at least {PASS_MODELS} of 5 models carry '
                     f'both claims, on at least {PASS_DATA_SEEDS} data seeds.')
    return lines
