"""The statistical part of the reports, in Markdown: one model's tests, and the pooled summary.

Pure functions over ``results['statistics']`` / ``results['tests']``
(:mod:`posattack.report.significance`) and over ``summary.json`` (:mod:`posattack.report.pooling`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..channels.modes import TARGETED
from .pooling import paper_claims

KIND_TITLES = {
    'targeted_vs_random_draws': 'full-image drop, targeted vs random draws',
    'periphery_minus_center_vs_random_draws':
        'periphery drop minus center drop, targeted vs random draws',
    'own_half_vs_random_draws': "own half's drop minus the other half's, targeted vs random",
    'periphery_minus_center': 'periphery drop minus center drop',
    'own_half_minus_other_half': "drop in the order's own half minus the other half",
}


def fmt_num(value: Optional[float], digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return 'n/a'
    return f'{value:+.{digits}f}' if sign else f'{value:.{digits}f}'


def fmt_ci(interval: Optional[Sequence[float]], sign: bool = True) -> str:
    if interval is None:
        return 'n/a'
    return f'[{fmt_num(interval[0], sign=sign)}, {fmt_num(interval[1], sign=sign)}]'


def fmt_p(value: Optional[float]) -> str:
    return 'n/a' if value is None else f'{value:.3g}'


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
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


def _placebo(placebo: Optional[Mapping]) -> str:
    if not placebo or placebo.get('ci95') is None:
        return 'n/a'
    low, high = placebo['ci95']
    return f'{placebo["num_significant"]}/{placebo["num_placebos"]} [{low:.2f}, {high:.2f}]'


def _draws(test: Mapping) -> str:
    seq = test.get('sequential') or {}
    if not seq.get('draws_used'):
        return str(test.get('num_draws', 0))
    return f'{seq["draws_used"]}' + (' (stopped)' if seq.get('stopped_early') else '')


def _test_rows(tests: Sequence[Mapping]) -> list[list[str]]:
    return [['**primary**' if t['primary'] else 'exploratory', KIND_TITLES[t['kind']],
             t['attack_region'] or '', str(t['num_channels']),
             f'{fmt_num(t["targeted_value"], sign=True)} vs {fmt_num(t["random_mean"], sign=True)}',
             f'{fmt_num(t["estimate"], sign=True)} {fmt_ci(t["ci95"])}', _draws(t),
             fmt_p(t['p_value']), fmt_p(t['p_value_holm']) if not t['primary'] else '-',
             _placebo(t.get('placebo')),
             fmt_num((t.get('detectable') or {}).get('gap'), sign=True), t['verdict']]
            for t in tests]


TEST_HEADER = ['test', 'statistic', 'order', 'N', 'targeted vs random mean',
               'gap [image bootstrap 95% CI]', 'draws', 'rank p', 'Holm p',
               'placebo false positives [95% CI]', 'detectable gap', 'verdict']


def tests_markdown(results: Mapping[str, Any]) -> list[str]:
    """Report lines: the method, the tests table, the effect sizes, the claims, in words."""
    tests = results.get('tests')
    statistics = results.get('statistics')
    if not tests or not statistics:
        return ['## Statistical tests', '',
                'Not computed: these results carry no per-image counts or no random draws '
                '(no targeted setting with random settings of the same N, or a results file '
                'written before per-image statistics).', '']
    design = statistics.get('design') or {}
    primary = statistics.get('primary') or {}
    alpha = design.get('alpha', 0.05)
    lines = ['## Statistical tests', '']
    if statistics.get('ranking_on_scored_images'):
        lines += ['> **Ranking selected on the scored images.** The channels were ranked on '
                  'the very images they are scored on, so the targeted set is not exchangeable '
                  'with random sets under the null and every p-value below is optimistic. '
                  'Identify on held-out images (the default) for a valid test.', '']
    lines += [
        '- Verdicts come from rank tests, valid when the targeted set is exchangeable with '
        'random sets of the same size (the ranking did not see these images): the targeted '
        'statistic is ranked among the same statistic of random draws, one-sided, alpha '
        f'{alpha}. "holds": significant; "inconclusive": not significant (the detectable gap '
        'says what size of effect the run could have found); "not computed": no valid test.',
        f'- Primary tests (fixed before any data): N = {primary.get("num_channels")} '
        f'(5% of the channels), order {primary.get("attack_region")}: claim 1 on the '
        'full-image drop, claim 2 on (periphery drop - center drop) against the random '
        "draws' own (a difference in differences). Sequential Monte Carlo p-values (Besag & "
        f'Clifford 1991): draws stop once {design.get("exceedances")} reach the targeted '
        f'value, at most {design.get("max_draws")}. Every other test is exploratory, with '
        'Holm-adjusted p-values, and uses the draws made at its N.',
        '- Placebo check: each random draw in turn is tested as if it were the targeted set, '
        "against the other draws, exactly as the real test: the share called significant is "
        "the test's false-positive rate on this model and these images (exact binomial 95% "
        'interval).',
        f'- Effect sizes: {statistics["method"]}; every setting sees the same resamples. '
        + ('Images are treated as independent (iid): frames of one city are not, so give '
           '`--bootstrap-groups city` on Cityscapes for intervals that allow for it.'
           if not statistics.get('bootstrap_groups') else ''),
        '- A run on one trained model says nothing about other training seeds: pool several '
        'checkpoints (`tools/attack.py CONFIG CKPT1 CKPT2 ...`) for that.', '']
    lines += ['### Tests', ''] + markdown_table(TEST_HEADER, _test_rows(tests)) + ['']
    effects = statistics.get('effects') or []
    if effects:
        lines += ['### Effect sizes without a test (image bootstrap)', '']
        rows = [[('targeted (' + e['attack_region'] + ')') if e['mode'] == TARGETED
                 else 'random (mean of draws)', str(e['num_channels']),
                 KIND_TITLES.get(e['kind'], e['kind']),
                 f'{fmt_num(e["estimate"], sign=True)} {fmt_ci(e["ci95"])}'
                 if e['ci95'] is not None else e.get('reason', 'not computed')]
                for e in effects]
        lines += markdown_table(['setting', 'N', 'statistic', 'estimate [95% CI]'], rows) + ['']
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
    """One test in words, with its numbers."""
    from .pooling import single_model_evidence
    role = 'primary' if test['primary'] else 'exploratory'
    head = (f'N={test["num_channels"]} ({test["attack_region"]}), '
            f'{KIND_TITLES.get(test["kind"], test["kind"])} [{role}]: ')
    if test['p_value'] is None:
        return head + test.get('reason', 'not computed')
    holm = '' if test['primary'] else f', Holm p {fmt_p(test["p_value_holm"])}'
    return head + single_model_evidence(test) + f'{holm}: {test["verdict"]}.'


def headline_markdown(summary: Mapping[str, Any],
                      report_links: Optional[Mapping[str, str]] = None) -> list[str]:
    """The claims, then one row per model at the primary N (what a README quotes)."""
    report_links = report_links or {}
    lines = claims_markdown(summary['claims'])
    lines += ['## Per model (primary N)', '']
    rows = []
    for m in summary['models']:
        gap, pc = m.get('gap') or {}, m.get('periphery_minus_center') or {}
        link = report_links.get(m['model'])
        name = f'[{m["model"]}]({link})' if link else m['model']
        rows.append([name, fmt_num(m['clean_mIoU']), str(m['num_channels']),
                     f'{fmt_num(gap.get("estimate"), sign=True)} {fmt_ci(gap.get("ci95"))}',
                     f'{fmt_p(gap.get("p_value"))} ({gap.get("num_draws", "n/a")} draws)',
                     gap.get('verdict', 'n/a'),
                     f'{fmt_num(pc.get("estimate"), sign=True)} {fmt_ci(pc.get("ci95"))}',
                     fmt_p(pc.get('p_value')), pc.get('verdict', 'n/a')])
    return lines + markdown_table(['model', 'clean mIoU', 'N', 'gap [95% CI]', 'rank p (draws)',
                           'claim 1', 'DiD periphery - center [95% CI]', 'rank p',
                           'claim 2'], rows) + ['']


def summary_markdown(summary: Mapping[str, Any], report_links: Mapping[str, str]) -> str:
    """The top-level report of a multi-checkpoint run."""
    lines = ['# Position-channel attack across trained models', '',
             f'- Config: `{summary["config"]}`', f'- Models: {len(summary["models"])}', '',
             'Gap = targeted drop minus the mean drop of the random draws (mIoU points), with '
             'its image-bootstrap interval; DiD = the same for (periphery drop - center drop). '
             "Verdicts per model come from the rank of the targeted value among the random "
             "draws; over models from Fisher's combination of those p-values (is there an "
             'effect in these models?). The mean over models with its t interval is the effect '
             'size for a new training seed.', '']
    lines += headline_markdown(summary, report_links)
    lines += ['## Pooled tests', '']
    rows = [['**primary**' if t['primary'] else 'exploratory',
             KIND_TITLES.get(t['kind'], t['kind']), str(t['num_channels']),
             t['attack_region'] or '', f'{fmt_num(t["mean"], sign=True)} ± {fmt_num(t["std"])}',
             fmt_ci(t['ci95']), fmt_p(t['p_value']), fmt_p(t['p_value_holm']) if not t['primary']
             else '-', _placebo(t['placebo']),
             f'{t["num_models_holding"]}/{t["num_models"]}', t['verdict']]
            for t in summary['pooled_tests']]
    lines += markdown_table(['test', 'statistic', 'N', 'order', 'mean gap ± sd over models',
                     't 95% CI', 'Fisher p', 'Holm p', 'placebo false positives',
                     'models holding', 'verdict'], rows) + ['']
    lines += ['## Drops from clean across models (mIoU points, mean ± sd)', '']
    rows = [[d['mode'] + (f' ({d["attack_region"]})' if d['attack_region'] else ''),
             str(d['num_channels']), d['eval_region'],
             f'{fmt_num(d["mean"])} ± {fmt_num(d["std"])}', str(d['num_models'])]
            for d in summary['pooled_drops'] if d['eval_region'] in ('full', 'center',
                                                                        'periphery')]
    lines += markdown_table(['setting', 'N', 'region', 'drop', 'models'], rows) + ['']
    return '\n'.join(lines)
