"""The AugShift comparison table against numbers worked out by hand.

The attack results are test_report's hand-built dict (128 channels; N=10: targeted 50 vs
random 66/68/70; N=20: targeted 58 vs random 60/64/68; clean 70, center 75, periphery 60).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, load_tool

from posattack.report.aug_shift_table import (comparison_row, markdown_table, over_seeds_table,
                                              paired_with_reference_table)
from posattack.utils.fileio import write_json_atomic

CONSISTENCY = {'metrics': {'Cons.8': 91.25, 'Cons.16': 88.5, 'agreement_mIoU.8': 80.0,
                           'center.Cons.8': 95.0, 'periphery.Cons.8': 87.5,
                           'periphery_minus_center.Cons.8': -7.5}}


def test_row_at_ten_percent(hand_results):  # noqa: F811
    row = comparison_row('demo', CONSISTENCY, hand_results, fraction=0.1)
    # 10/128 = 7.8% is nearer 10% than 20/128 = 15.6%
    assert row['num_channels'] == 10 and row['num_channels_total'] == 128
    assert row['mIoU'] == 70
    assert row['targeted_drop'] == pytest.approx(20)  # 70 - 50
    assert row['random_drop'] == pytest.approx(2)  # 70 - mean(66, 68, 70)
    assert row['random_drop_std'] == pytest.approx(2)
    assert row['targeted_minus_random'] == pytest.approx(18)
    assert row['num_std'] == pytest.approx(9)
    # targeted: periphery drop 60 - 35 = 25, center drop 75 - 65 = 10
    assert row['periphery_minus_center'] == pytest.approx(15)
    assert row['consistency']['Cons.8'] == 91.25
    assert 'agreement_mIoU.8' not in row['consistency']


def test_row_at_another_fraction(hand_results):  # noqa: F811
    row = comparison_row('demo', CONSISTENCY, hand_results, fraction=0.15)
    assert row['num_channels'] == 20
    assert row['targeted_drop'] == pytest.approx(12)  # 70 - 58
    assert row['random_drop'] == pytest.approx(6)  # 70 - 64
    assert row['targeted_minus_random'] == pytest.approx(6)
    assert row['periphery_minus_center'] == pytest.approx(5)  # (60 - 50) - (75 - 70)


def test_markdown_table(hand_results):  # noqa: F811
    table = markdown_table([comparison_row('demo', CONSISTENCY, hand_results)], [8, 16])
    lines = table.splitlines()
    assert lines[0].startswith('| Model | mIoU | Cons.8 | Cons.16 | N removed')
    assert lines[2] == ('| demo | 70.00 | 91.25 | 88.50 | 10/128 | 20.00 | 2.00 (2.00) '
                        '| +18.00 | n/a | +15.00 |')  # n/a: no per-image tests in the run


def test_gap_interval_and_summary_over_seeds(hand_results):  # noqa: F811
    """The gap's image interval comes from the run's own test; rows named setting/seed are
    summarised per setting with the mean and the sample std (n - 1) over seeds."""
    with_test = dict(hand_results, tests=[dict(
        kind='targeted_vs_random_draws', mode='targeted', num_channels=10, attack_region='overall',
        eval_region='full', estimate=18.0, ci95=[16.5, 19.25], verdict='holds',
        primary=False)])
    first = comparison_row('plain/0', CONSISTENCY, with_test)
    second = dict(comparison_row('plain/1', CONSISTENCY, hand_results),
                  targeted_minus_random=14.0, mIoU=74.0)
    assert '| +18.00 | [+16.50, +19.25] holds | +15.00 |' in markdown_table([first], [8])
    summary = over_seeds_table([first, second], [8]).splitlines()
    # gap: mean (18 + 14) / 2 = 16, sd sqrt(((18-16)^2 + (14-16)^2) / 1) = 2.83;
    # mIoU (70 + 74) / 2 = 72, sd 2.83; one of two seeds holds on its own
    assert summary[2] == ('| plain | 2 | 72.00 ± 2.83 | 91.25 ± 0.00 | +16.00 ± 2.83 | 1/2 '
                          '| +15.00 ± 0.00 |')


def _row(name, miou, cons8, gap):
    return dict(model=name, mIoU=miou, consistency={'Cons.8': cons8}, targeted_minus_random=gap)


def test_paired_with_plain_by_hand():
    """Differences seed by seed, t interval with df = 2 (t_0.975 = 4.3027):
    mIoU -2, -1, -2: mean -1.667, sd 0.5774, half 4.3027 * 0.5774 / sqrt 3 = 1.434;
    Cons.8 +3, +2, +2: mean +2.333, same half; gap 0, -2, -1: mean -1, sd 1, half 2.484."""
    rows = ([_row(f'plain/{k}', 70 + k, 90 + k, 18.0) for k in range(3)]
            + [_row('augshift/0', 68, 93, 18.0), _row('augshift/1', 70, 93, 16.0),
               _row('augshift/2', 70, 94, 17.0), _row('other/1', 71, 91, 18.0)])
    lines = paired_with_reference_table(rows, [8]).splitlines()
    assert lines[2] == ('| augshift | 3 | -1.67 [-3.10, -0.23] lower | +2.33 [+0.90, +3.77] higher '
                        '| -1.00 [-3.48, +1.48] no difference shown |')
    # one shared seed: no interval; equal values on every seed: no spread
    assert lines[3] == ('| other | 1 | +0.00 (too few seeds: no interval) | +0.00 (too few '
                        'seeds: no interval) | +0.00 (too few seeds: no interval) |')
    flat = [_row(f'plain/{k}', 70, 90, 18.0) for k in range(2)] + [
        _row(f'same/{k}', 71, 90, 18.0) for k in range(2)]
    assert '+1.00 (no spread: no interval)' in paired_with_reference_table(flat, [8])
    assert paired_with_reference_table(rows, [8], reference='missing') == ''


def test_table_tool_writes_table_and_numbers(hand_results, tmp_path):  # noqa: F811
    tool = load_tool('aug_shift_table')
    consistency = write_json_atomic(str(tmp_path / 'consistency.json'), CONSISTENCY)
    results = write_json_atomic(str(tmp_path / 'results.json'), hand_results)
    out = tmp_path / 'table.md'
    assert tool.main(['--run', 'a', consistency, results, '--run', 'b', consistency, results,
                      '--out', str(out)]) == 0
    assert out.read_text().count('| a |') == 1 and '| b |' in out.read_text()
    rows = json.loads((tmp_path / 'table.json').read_text())
    assert [row['model'] for row in rows] == ['a', 'b']
    # a missing file: exit 2, nothing written
    assert tool.main(['--run', 'a', str(tmp_path / 'nope.json'), results,
                      '--out', str(tmp_path / 'other.md')]) == 2
    assert not (tmp_path / 'other.md').exists()
    # setting/seed names: the summary over seeds and the paired comparison with plain follow
    runs = [arg for name in ('plain/0', 'plain/1', 'x/0', 'x/1')
            for arg in ('--run', name, consistency, results)]
    assert tool.main(runs + ['--out', str(out)]) == 0
    text = out.read_text()
    assert 'Over training seeds' in text and 'Each setting minus `plain`' in text
    assert '| x | 2 | +0.00 (no spread: no interval) |' in text
    assert 'minus `shift-crops`' not in text  # no such setting: no table
    assert tool.main(runs + ['--out', str(out), '--reference', 'plain', 'x']) == 0
    assert 'minus `plain`' in out.read_text() and 'minus `x`' in out.read_text()


def test_one_setting_against_another_reference():
    """--pair's table: only the named setting, against any reference (augshift minus
    blurpool, the paper's Table 2 comparison); nothing when either is missing."""
    rows = ([_row(f'blurpool/{k}', 70 + k, 90 + k, 18.0) for k in range(3)]
            + [_row('augshift/0', 68, 93, 18.0), _row('augshift/1', 70, 93, 16.0),
               _row('augshift/2', 70, 94, 17.0), _row('plain/0', 71, 91, 18.0)])
    lines = paired_with_reference_table(rows, [8], reference='blurpool',
                                        settings=['augshift']).splitlines()
    assert len(lines) == 3  # header, rule, augshift: plain is left out
    assert lines[2] == ('| augshift | 3 | -1.67 [-3.10, -0.23] lower | +2.33 [+0.90, +3.77] higher '
                        '| -1.00 [-3.48, +1.48] no difference shown |')
    assert paired_with_reference_table(rows, [8], reference='blurpool', settings=['gone']) == ''
    assert paired_with_reference_table(rows[:3], [8], reference='blurpool',
                                       settings=['augshift']) == ''


def test_table_tool_adds_augshift_minus_blurpool_when_both_ran(hand_results, tmp_path):  # noqa: F811
    tool = load_tool('aug_shift_table')
    consistency = write_json_atomic(str(tmp_path / 'consistency.json'), CONSISTENCY)
    results = write_json_atomic(str(tmp_path / 'results.json'), hand_results)
    out = tmp_path / 'table.md'

    def runs(*settings):
        return [arg for setting in settings for seed in (0, 1)
                for arg in ('--run', f'{setting}/{seed}', consistency, results)]

    assert tool.main(runs('plain', 'blurpool', 'augshift') + ['--out', str(out)]) == 0
    text = out.read_text()
    assert '`augshift` minus `blurpool`, paired by training seed' in text
    assert text.count('| augshift | 2 |') == 3  # over seeds, minus plain, minus blurpool
    assert tool.main(runs('plain', 'augshift') + ['--out', str(out)]) == 0
    assert 'minus `blurpool`' not in out.read_text()  # no blurpool run: no such table
    assert tool.main(runs('plain', 'blurpool', 'augshift')
                     + ['--out', str(out), '--pair', 'blurpool', 'augshift']) == 0
    text = out.read_text()
    assert '`blurpool` minus `augshift`' in text and '`augshift` minus `blurpool`' not in text


@pytest.mark.slow   # spawns a process (the demo script)
def test_demo_script_knows_blurpool_and_names_it_for_an_unknown_run(tmp_path):
    """RUNS=blurpool is one of make aug-shift-demo's runs (so of make tables-aug-shift's):
    a typo is refused with the list, before any training (tools/tables/parts_aug_shift.py)."""
    data = tmp_path / 'data'
    data.mkdir()
    (data / '.posattack_synthetic.json').write_text('{"complete": true}')  # no dataset generation
    pipeline = os.path.join(REPO_ROOT, 'tools', 'tables', 'pipeline.py')
    env = dict(os.environ, POSATTACK_VENV=str(tmp_path / 'no-venv'), DATA=str(data))
    done = subprocess.run([sys.executable, pipeline, 'aug-shift-demo'], capture_output=True,
                          text=True, env=dict(env, RUNS='blurpol', WORK=str(tmp_path / 'work')))
    assert done.returncode == 2
    assert ("unknown run 'blurpol'; choose from plain shift-crops blurpool augshift "
            'augshift-strong latent-only-1' in done.stderr)
    assert not (tmp_path / 'work').exists()
    done = subprocess.run([sys.executable, pipeline, 'tables-aug-shift', '--dry-run'],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    for seed in (0, 1, 2):   # make tables-aug-shift trains blurpool for every seed
        assert f'--work-dir work_dirs/aug_shift/seed{seed}/blurpool/train' in done.stderr


def test_only_rank_test_verdicts_are_printed_and_old_tables_rerender(tmp_path):
    """Rows from before the rank tests carry the uncalibrated bootstrap test's word: the
    table prints 'verdict withdrawn' for them, the rank test's word for new rows, and
    --rerender rewrites a stored table keeping its stamp."""
    old = _row('plain/0', 74.0, 95.0, 2.0)
    old.update(targeted_minus_random_ci95=[1.0, 3.0], targeted_minus_random_verdict='holds')
    new = dict(_row('plain/1', 73.0, 95.1, 1.0), targeted_minus_random_ci95=[0.5, 1.5],
               targeted_minus_random_verdict='inconclusive', verdict_test='rank')
    for row in (old, new):
        row.update(num_channels=13, num_channels_total=128, targeted_drop=3.0,
                   random_drop=1.0, random_drop_std=0.5, periphery_minus_center=0.1)
    table = markdown_table([old, new], [8])
    assert '[+1.00, +3.00] verdict withdrawn' in table and 'holds' not in table
    assert '[+0.50, +1.50] inconclusive' in table
    assert '| 0/1 |' in over_seeds_table([old, new], [8])   # only the tested seed counts
    md = tmp_path / 'aug_shift.md'
    md.write_text('Measured 2026-12-03 on a machine by `make x`.\n\n| old |\n')
    (tmp_path / 'aug_shift.json').write_text(json.dumps([old, new]))
    assert load_tool('aug_shift_table').main(['--rerender', str(md)]) == 0
    text = md.read_text()
    assert text.startswith('Measured 2026-12-03 on a machine by `make x`. Re-rendered ')
    assert 'verdict withdrawn' in text and '| old |' not in text


def test_a_declared_subset_names_the_runs_it_leaves_out(hand_results, tmp_path):  # noqa: F811
    """RUNS="plain blurpool" of make tables-aug-shift: the table says under its stamp which
    settings it does not hold and where their last, dated measurement stays."""
    tool = load_tool('aug_shift_table')
    consistency = write_json_atomic(str(tmp_path / 'consistency.json'), CONSISTENCY)
    results = write_json_atomic(str(tmp_path / 'results.json'), hand_results)
    out = tmp_path / 'table.md'
    runs = [arg for name in ('plain/0', 'blurpool/0')
            for arg in ('--run', name, consistency, results)]
    assert tool.main(runs + ['--out', str(out), '--command', 'make x', '--not-rerun',
                             'augshift-strong', 'latent-only-1', '--earlier', 'old.md']) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith('Measured ') and lines[0].endswith('by `make x`.')
    assert lines[2] == ('Not rerun by this command, so not in this table: augshift-strong, '
                        'latent-only-1. Their last measurement stays in `old.md`, with its '
                        'date and notes.')
    assert tool.main(runs + ['--out', str(out)]) == 0
    assert 'Not rerun' not in out.read_text()
