"""The statistical part of the reports, in Markdown: one model's tests, and the pooled summary.

Pure functions over ``results['statistics']`` / ``results['tests']``
(:mod:`posattack.report.significance`) and over ``summary.json`` (:mod:`posattack.report.pooling`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..channels.modes import TARGETED
from .pooling import paper_claims
from .statistics import p_value_floor

KIND_TITLES = {
    'targeted_minus_random': 'targeted drop minus mean random drop',
    'periphery_minus_center': 'periphery drop minus center drop',
    'own_half_minus_other_half': "drop in the order's own half minus the other half",
}


def _num(value: Optional[float], digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return 'n/a'
    return f'{value:+.{digits}f}' if sign else f'{value:.{digits}f}'


def _ci(interval: Optional[Sequence[float]], sign: bool = True) -> str:
    if interval is None:
        return 'n/a'
    return f'[{_num(interval[0], sign=sign)}, {_num(interval[1], sign=sign)}]'


def _p(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.3g}'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * len(header)) + '|']
    return lines + ['| ' + ' | '.join(row) + ' |' for row in rows]


def _by_kind(tests: Sequence[Mapping], kind: str) -> list[Mapping]:
    return [t for t in tests if t['kind'] == kind]


def _drop_entry(statistics: Mapping, setting_key: Optional[str], random_n: Optional[int],
                region: str) -> Mapping:
    if setting_key is not None:
        values = statistics.get('settings', {}).get(setting_key, {})
    else:
        values = statistics.get('random_groups', {}).get(str(random_n), {})
    return values.get(region, {}).get('drop', {'estimate': None, 'ci95': None})


def _targeted_key(test: Mapping) -> str:
    return f'targeted/{test["attack_region"]}/N={test["num_channels"]}'


def tests_markdown(results: Mapping[str, Any]) -> list[str]:
    """Report lines: the method, the comparison tables, the claims, the tests in words."""
    tests = results.get('tests')
    statistics = results.get('statistics')
    if not tests or not statistics:
        return ['## Statistical tests', '',
                'Not computed: these results carry no per-image counts (no targeted setting, '
                'or a results file written before per-image statistics).', '']
    lines = ['## Statistical tests', '',
             f'- Images: {statistics["method"]}. Every setting sees the same resamples '
             '(paired), so the image noise common to two settings cancels in their difference.',
             '- Random draws: the targeted drop is ranked among the random drops of the same N '
             '(empirical p = (1 + #draws with drop >= targeted) / (1 + draws); with n draws '
             'it cannot go below 1/(1+n), so p < 0.05 needs 19 or more draws), and set against '
             'the t-based 95% prediction interval of one more random draw. z = (targeted drop - '
             'mean random drop) / sd of the random drops.',
             '- Verdicts: "holds" when the 95% interval lies above 0, "does not hold" when it '
             'lies below, "inconclusive" when it contains 0. A run on one trained model says '
             'nothing about other training seeds: pool several checkpoints '
             '(`tools/attack.py CONFIG CKPT1 CKPT2 ...`) for that.', '']

    draws = {(_targeted_key(t), t['eval_region']): t
             for t in _by_kind(tests, 'targeted_vs_random_draws')}
    gaps = _by_kind(tests, 'targeted_minus_random')
    if gaps:
        lines += ['### Targeted vs random removal (full image, drops in mIoU points)', '']
        rows = []
        for t in gaps:
            d = draws.get((_targeted_key(t), 'full'), {})
            targeted = _drop_entry(statistics, _targeted_key(t), None, 'full')
            random = _drop_entry(statistics, None, t['num_channels'], 'full')
            rows.append([t['attack_region'], str(t['num_channels']),
                         f'{_num(targeted["estimate"])} {_ci(targeted["ci95"], False)}',
                         f'{_num(random["estimate"])} {_ci(random["ci95"], False)}',
                         f'{_num(t["estimate"], sign=True)} {_ci(t["ci95"])}',
                         t['verdict'], _num(d.get('z')),
                         _ci(d.get('prediction_interval'), False),
                         f'{_p(d.get("p_value"))} (floor {_p(d.get("p_value_floor"))})',
                         d.get('verdict', 'n/a')])
        lines += _table(['order', 'N', 'targeted drop [95% CI]',
                         'random drop, mean of draws [95% CI]', 'gap [95% CI]',
                         'gap verdict (images)', 'z', 'random draw 95% PI', 'p (draws)',
                         'verdict (draws)'], rows) + ['']

    pcs = _by_kind(tests, 'periphery_minus_center')
    if pcs:
        lines += ['### Periphery drop minus center drop', '']
        rows = [[('targeted (' + t['attack_region'] + ')') if t['mode'] == TARGETED
                 else 'random (mean of draws)', str(t['num_channels']),
                 f'{_num(t["estimate"], sign=True)} {_ci(t["ci95"])}', _p(t['p_value']),
                 t['verdict']] for t in pcs]
        lines += _table(['setting', 'N', 'periphery - center [95% CI]',
                         'p (bootstrap, >= 1/resamples)', 'verdict'], rows) + ['']

    halves = _by_kind(tests, 'own_half_minus_other_half')
    if halves:
        lines += ['### Region-specific orders: does each order hurt its own half more?', '']
        rows = [[t['attack_region'], str(t['num_channels']), t['eval_region'],
                 f'{_num(t["estimate"], sign=True)} {_ci(t["ci95"])}', t['verdict']]
                for t in halves]
        lines += _table(['order', 'N', 'own - other', 'drop difference [95% CI]', 'verdict'],
                        rows) + ['']

    lines += claims_markdown(paper_claims([('this model', results)]), level='###')
    lines += ['### Every test in words', '']
    lines += [f'- {sentence(t)}' for t in tests] + ['']
    return lines


def claims_markdown(claims: Sequence[Mapping], level: str = '##') -> list[str]:
    if not claims:
        return []
    lines = [f'{level} The paper\'s claims', '']
    lines += [f'- **{c["claim"]}: {c["verdict"]}.** {c["evidence"]}.' for c in claims]
    return lines + ['']


def sentence(test: Mapping) -> str:
    """One comparison in words, with its numbers."""
    head = f'N={test["num_channels"]}, '
    who = (f'targeted ({test["attack_region"]})' if test['mode'] == TARGETED
           else 'random (mean of draws)')
    if test['kind'] == 'targeted_vs_random_draws':
        if test['verdict'] == 'not computed':
            return head + f'{who} vs random draws: {test.get("reason", "not computed")}'
        return (head + f'{who} drop {_num(test["targeted_drop"])} vs {test["num_draws"]} random '
                f'draws (mean {_num(test["random_mean"])}, sd {_num(test["random_std"])}): gap '
                f'{_num(test["estimate"], sign=True)}, z {_num(test["z"])}, 95% prediction '
                f'interval of a draw {_ci(test["prediction_interval"], False)}, empirical p '
                f'{_p(test["p_value"])} (floor {_p(p_value_floor(test["num_draws"]))}): '
                f'{test["verdict"]}.')
    what = KIND_TITLES.get(test['kind'], test['kind'])
    if test['ci95'] is None:
        return head + f'{who}, {what}: {test.get("reason", "not computed")}'
    return (head + f'{who}, {what} ({test["eval_region"]}): {_num(test["estimate"], sign=True)}'
            f', 95% CI {_ci(test["ci95"])}, bootstrap p {_p(test["p_value"])}: '
            f'{test["verdict"]}.')


def headline_markdown(summary: Mapping[str, Any],
                      report_links: Optional[Mapping[str, str]] = None) -> list[str]:
    """The claims, then one row per model at the headline N (what a README quotes)."""
    report_links = report_links or {}
    models = summary['models']
    lines = claims_markdown(summary['claims'])
    lines += ['## Per model (headline N)', '']
    rows = []
    for m in models:
        gap, pc, draws = m.get('gap') or {}, m.get('periphery_minus_center') or {}, \
            m.get('draws') or {}
        link = report_links.get(m['model'])
        name = f'[{m["model"]}]({link})' if link else m['model']
        rows.append([name, _num(m['clean_mIoU']), str(m['num_channels']),
                     f'{_num(gap.get("estimate"), sign=True)} {_ci(gap.get("ci95"))}',
                     gap.get('verdict', 'n/a'), _p(draws.get('p_value')), _num(draws.get('z')),
                     f'{_num(pc.get("estimate"), sign=True)} {_ci(pc.get("ci95"))}',
                     pc.get('verdict', 'n/a')])
    return lines + _table(['model', 'clean mIoU', 'N', 'gap [95% CI]', 'gap verdict',
                           'p (draws)', 'z', 'periphery - center [95% CI]', 'P-C verdict'],
                          rows) + ['']


def summary_markdown(summary: Mapping[str, Any], report_links: Mapping[str, str]) -> str:
    """The top-level report of a multi-checkpoint run."""
    lines = ['# Position-channel attack across trained models', '',
             f'- Config: `{summary["config"]}`', f'- Models: {len(summary["models"])}', '',
             'Gap = targeted drop minus the mean drop of the random draws (mIoU points); its '
             'interval and verdict per model come from the image bootstrap; p (draws) is the '
             'rank of the targeted drop among the random draws.', '']
    lines += headline_markdown(summary, report_links)
    lines += ['## Pooled tests (one-sample t over models)', '']
    rows = [[t['kind'], t['mode'], str(t['num_channels']), t['attack_region'] or '',
             t['eval_region'], f'{_num(t["mean"], sign=True)} ± {_num(t["std"])}',
             _ci(t['ci95']), _p(t['p_value']), f'{t["num_models_holding"]}/{t["num_models"]}',
             t['verdict']]
            for t in summary['pooled_tests'] if t['kind'] != 'targeted_vs_random_draws']
    lines += _table(['test', 'mode', 'N', 'order', 'region', 'mean ± sd over models',
                     't 95% CI', 'p', 'models holding', 'verdict'], rows) + ['']
    lines += ['## Drops from clean across models (mIoU points, mean ± sd)', '']
    rows = [[d['mode'] + (f' ({d["attack_region"]})' if d['attack_region'] else ''),
             str(d['num_channels']), d['eval_region'],
             f'{_num(d["mean"])} ± {_num(d["std"])}', str(d['num_models'])]
            for d in summary['pooled_drops'] if d['eval_region'] in ('full', 'center',
                                                                        'periphery')]
    lines += _table(['setting', 'N', 'region', 'drop', 'models'], rows) + ['']
    return '\n'.join(lines)

