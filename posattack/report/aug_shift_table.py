"""The AugShift comparison table: accuracy, shift consistency and position dependence per model.

Each model contributes what two tools wrote: ``consistency.json`` (tools/consistency.py:
Cons.s) and ``results.json`` (tools/attack.py: clean mIoU, targeted and random removal).
One row per model, like the paper's Table 2 plus the question it leaves open: does a more
shift-invariant model depend less on its position channels?

    rows = comparison_rows([('demo', 'c/consistency.json', 'a/results.json'), ...])
    print(markdown_table(rows, max_shifts=[8, 16]))
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..channels.modes import CLEAN, RANDOM, TARGETED
from .results import aggregate, compare_targeted_random, read_json, region_drops
from .statistics import one_sample_t

__all__ = [
    'comparison_row', 'comparison_rows', 'markdown_table', 'over_seeds_table',
    'paired_with_reference_table'
]


def _pick_count(results: Mapping[str, Any], fraction: float) -> int:
    """The targeted channel count whose fraction of the layer is nearest `fraction`."""
    counts = sorted({s['num_channels'] for s in results['settings'] if s['mode'] == TARGETED})
    if not counts:
        raise ValueError('the attack results hold no targeted setting: run tools/attack.py '
                         'with its default settings (or --num-channels/--fractions).')
    total = results['num_channels_total']
    return min(counts, key=lambda n: abs(n / total - fraction))


def comparison_row(name: str, consistency: Mapping[str, Any], results: Mapping[str, Any],
                   fraction: float = 0.1) -> dict[str, Any]:
    """One model's numbers; drops are clean minus attacked mIoU, in points."""
    num_channels = _pick_count(results, fraction)
    groups = aggregate(results)
    clean = next((g for g in groups.values() if g['mode'] == CLEAN), None)
    if clean is None:
        raise ValueError('the attack results hold no clean setting: rerun tools/attack.py.')
    targeted = next(g for g in groups.values()
                    if g['mode'] == TARGETED and g['num_channels'] == num_channels)
    random = next((g for g in groups.values()
                   if g['mode'] == RANDOM and g['num_channels'] == num_channels), None)
    comparison = next(c for c in compare_targeted_random(results)
                      if c['num_channels'] == num_channels)
    targeted_drops = region_drops(results, targeted, ['full'], clean)
    random_drops = region_drops(results, random, ['full'], clean) if random else None
    row = dict(
        model=name, mIoU=clean['metrics']['mIoU']['mean'],
        consistency={key: value for key, value in consistency['metrics'].items()
                     if key.startswith('Cons.') or key.startswith('periphery_minus_center')},
        num_channels=num_channels, num_channels_total=results['num_channels_total'],
        targeted_drop=targeted_drops['full']['mean'],
        random_drop=random_drops['full']['mean'] if random_drops else None,
        random_drop_std=random_drops['full']['std'] if random_drops else None,
        targeted_minus_random=comparison['extra_drop'], num_std=comparison['num_std'],
        periphery_minus_center=targeted_drops['periphery-center']['mean'])
    # the gap's image-bootstrap interval and its rank-test verdict (posattack.report.significance)
    test = next((t for t in results.get('tests', [])
                 if t['kind'] == 'targeted_vs_random_draws' and t['mode'] == 'targeted'
                 and t['num_channels'] == num_channels and t['eval_region'] == 'full'), None)
    row['targeted_minus_random_ci95'] = None if test is None else test['ci95']
    row['targeted_minus_random_verdict'] = None if test is None else test['verdict']
    # which test gave the word: rows of tables made before the rank tests carry none, and
    # their words (an uncalibrated image-bootstrap test) are not printed
    row['verdict_test'] = 'rank' if test is not None and 'primary' in test else None
    return row


def comparison_rows(runs: Sequence[tuple[str, str, str]], fraction: float = 0.1
                    ) -> list[dict[str, Any]]:
    """``runs``: (name, consistency.json path, attack results.json path) per model."""
    return [comparison_row(name, read_json(consistency), read_json(results), fraction)
            for name, consistency, results in runs]


def _fmt(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return 'n/a'
    return f'{value:+.2f}' if signed else f'{value:.2f}'


def markdown_table(rows: Sequence[Mapping[str, Any]], max_shifts: Sequence[int]) -> str:
    """Table 2 for segmentation, with the position-attack columns at one channel count."""
    header = (['Model', 'mIoU'] + [f'Cons.{s}' for s in max_shifts]
              + ['N removed', 'targeted drop', 'random drop (std)', 'targeted - random',
                 'its 95% CI (images)', 'periphery - center'])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for row in rows:
        random = (f'{_fmt(row["random_drop"])} ({_fmt(row["random_drop_std"])})'
                  if row['random_drop'] is not None else 'n/a')
        cells = ([row['model'], _fmt(row['mIoU'])]
                 + [_fmt(row['consistency'].get(f'Cons.{s}')) for s in max_shifts]
                 + [f'{row["num_channels"]}/{row["num_channels_total"]}',
                    _fmt(row['targeted_drop']), random,
                    _fmt(row['targeted_minus_random'], signed=True), _ci(row),
                    _fmt(row['periphery_minus_center'], signed=True)])
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


WITHDRAWN = 'verdict withdrawn'


def _verdict(row: Mapping[str, Any]) -> str:
    """The rank test's word, or 'verdict withdrawn' for a row whose word came from the
    image-bootstrap test that the placebo check showed uncalibrated (issue 22)."""
    if row.get('targeted_minus_random_verdict') is None:
        return 'n/a'
    if row.get('verdict_test') != 'rank':
        return WITHDRAWN
    return row['targeted_minus_random_verdict']


def _ci(row: Mapping[str, Any]) -> str:
    interval = row.get('targeted_minus_random_ci95')
    if interval is None:
        return 'n/a'
    return f'[{interval[0]:+.2f}, {interval[1]:+.2f}] {_verdict(row)}'


def over_seeds_table(rows: Sequence[Mapping[str, Any]], max_shifts: Sequence[int]) -> str:
    """Rows named ``setting/seed`` summarised per setting: mean ± sample std over seeds
    (training seeds are the unit), and in how many seeds the gap's own rank test holds."""
    import numpy as np  # local: only this summary needs it
    settings: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        settings.setdefault(row['model'].rsplit('/', 1)[0], []).append(row)
    header = (['Setting', 'seeds', 'mIoU'] + [f'Cons.{s}' for s in max_shifts]
              + ['targeted - random', 'seeds where it holds', 'periphery - center'])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]

    def mean_sd(values: Sequence[Optional[float]], signed: bool = False) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return 'n/a'
        sd = f' ± {np.std(values, ddof=1):.2f}' if len(values) > 1 else ''
        return _fmt(float(np.mean(values)), signed) + sd

    for name, mine in settings.items():
        holding = sum(_verdict(r) == 'holds' for r in mine)
        tested = sum(_verdict(r) != WITHDRAWN for r in mine)
        cells = ([name, str(len(mine)), mean_sd([r['mIoU'] for r in mine])]
                 + [mean_sd([r['consistency'].get(f'Cons.{s}') for r in mine])
                    for s in max_shifts]
                 + [mean_sd([r['targeted_minus_random'] for r in mine], signed=True),
                    f'{holding}/{tested}' if tested else WITHDRAWN,
                    mean_sd([r['periphery_minus_center'] for r in mine], signed=True)])
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def _direction(interval: Sequence[float], higher: str, lower: str) -> str:
    """What a 95% interval of a difference says: above zero, below zero, or spans zero."""
    if interval[0] > 0:
        return higher
    if interval[1] < 0:
        return lower
    return 'no difference shown'


def paired_with_reference_table(rows: Sequence[Mapping[str, Any]], max_shifts: Sequence[int],
                                reference: str = 'plain',
                                settings: Optional[Sequence[str]] = None) -> str:
    """Each setting (or only those in ``settings``) minus ``reference``, paired by training
    seed (rows ``setting/seed``: the same seed gives both models the same data order and
    initial weights), with the t 95% interval over seeds (scipy; df = seeds - 1) and what it
    says. Settings without a reference row of the same seed are paired on the seeds they
    share; an empty table when there is no reference or no setting to compare with it."""
    by_setting: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        setting, _, seed = row['model'].rpartition('/')
        by_setting.setdefault(setting, {})[seed] = row
    compared = [name for name in by_setting if name != reference
                and (settings is None or name in settings)]
    if reference not in by_setting or not compared:
        return ''
    base = by_setting[reference]
    quantities = ([('mIoU', lambda r: r['mIoU'], 'higher', 'lower')]
                  + [(f'Cons.{s}', lambda r, s=s: r['consistency'].get(f'Cons.{s}'),
                      'higher', 'lower') for s in max_shifts]
                  + [('targeted - random', lambda r: r['targeted_minus_random'],
                      'larger', 'smaller')])
    header = ['Setting', 'seeds paired'] + [f'{name}: difference [t 95% CI]'
                                            for name, *_ in quantities]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for setting in compared:
        mine = by_setting[setting]
        seeds = sorted(set(mine) & set(base))
        cells = [setting, str(len(seeds))]
        for _, value, higher, lower in quantities:
            pairs = ((value(mine[seed]), value(base[seed])) for seed in seeds)
            test = one_sample_t([a - b for a, b in pairs if a is not None and b is not None])
            if test['ci95'] is None:
                mean, why = test['mean'], 'too few seeds' if test['n'] < 2 else 'no spread'
                cells.append('n/a' if mean is None else f'{mean:+.2f} ({why}: no interval)')
                continue
            low, high = test['ci95']
            cells.append(f'{test["mean"]:+.2f} [{low:+.2f}, {high:+.2f}] '
                         f'{_direction(test["ci95"], higher, lower)}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'
