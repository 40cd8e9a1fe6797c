"""The tools behind `make tables`: the study's pass rule, the single-model headline table and
the stamped command output, each against numbers worked out by hand here."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT, load_tool

study = load_tool('study_table')
pooled = load_tool('pooled_table')
command_table = load_tool('command_table')
PIPELINE = os.path.join(REPO_ROOT, 'tools', 'tables', 'pipeline.py')


def _model(name, gap_verdict, pc_verdict, clean=70.0):
    test = dict(estimate=1.0, ci95=[0.5, 1.5])
    return dict(model=name, checkpoint=None, clean_mIoU=clean, num_channels=13,
                attack_region='overall', gap=dict(test, verdict=gap_verdict),
                periphery_minus_center=dict(test, verdict=pc_verdict))


def _pooled_test(kind, eval_region, mean, ci, verdict):
    return dict(kind=kind, mode='targeted', num_channels=13, attack_region='overall',
                eval_region=eval_region, per_model=[], mean=mean, std=1.0, num_models=5,
                num_models_holding=0, t=1.0, df=4, p_value=0.3, ci95=ci, method='t',
                verdict=verdict)


def _summary(verdicts, cleans=(70.0, 71.0, 72.0, 73.0, 74.0)):
    return dict(format='posattack.summary/1', config='c.py', claims=[], pooled_drops=[],
                models=[_model(f'seed{i}', g, p, c)
                        for i, ((g, p), c) in enumerate(zip(verdicts, cleans))],
                pooled_tests=[
                    _pooled_test('targeted_vs_random_draws', 'full', 0.5, [-1.0, 2.0],
                                 'inconclusive'),
                    _pooled_test('periphery_minus_center_vs_random_draws', 'periphery-center',
                                 1.5, [0.2, 2.8], 'holds')])


H, INC, F = 'holds', 'inconclusive', 'does not hold'


def test_study_row_counts_models_carrying_each_claim_and_both():
    row = study.study_row('default', '0', _summary([(H, H), (H, INC), (F, H), (H, H), (H, H)]))
    # claim 1 holds in seeds 0, 1, 3, 4; claim 2 in 0, 2, 3, 4; both in 0, 3, 4
    assert (row['claim_1'], row['claim_2'], row['both']) == (4, 4, 3)
    assert row['passes'] is False  # 3 of 5 carry both: the rule asks for 4
    assert row['clean_mean'] == pytest.approx(72.0)
    assert row['clean_std'] == pytest.approx(1.5811, abs=1e-4)  # sqrt(2.5), n - 1
    assert row['gap']['mean'] == 0.5 and row['periphery_minus_center']['verdict'] == 'holds'
    passing = study.study_row('default', '1', _summary([(H, H)] * 4 + [(F, F)]))
    assert passing['passes'] is True


def test_setting_verdict_needs_two_passing_data_seeds():
    good = _summary([(H, H)] * 5)
    bad = _summary([(H, INC)] * 5)
    lines = study.study_markdown([study.study_row('a', '0', good), study.study_row('a', '1', good),
                                  study.study_row('b', '0', good), study.study_row('b', '1', bad),
                                  study.study_row('c', '0', good)])
    text = '\n'.join(lines)
    assert '**a**: passes.' in text
    assert '**b**: does not pass (fails on data seed 1). Both claims in 5 of 10 models over ' \
        'its data seeds (exact 95% CI of the share: 19% to 81%).' in text
    assert '**c**: not decided (passes on 1 data seed(s) measured, 2 needed).' in text
    assert '| a | 0 | 5 | 13 | 72.00 ± 1.58 | 5/5 | +0.50 [-1.00, +2.00], inconclusive |' \
        in text
    assert '| 5/5 [48%, 100%] | yes |' in text and '| 0/5 [0%, 52%] | no |' in text


def test_share_interval_matches_the_closed_forms_at_the_edges():
    """Clopper-Pearson at 0 and n successes has a closed form: [0, 1 - (a/2)^(1/n)] and
    [(a/2)^(1/n), 1]; at 5 models that is 52.2% and 47.8%."""
    assert study.share_interval(0, 5) == pytest.approx((0.0, 1 - 0.025 ** (1 / 5)))
    assert study.share_interval(5, 5) == pytest.approx((0.025 ** (1 / 5), 1.0))
    low, high = study.share_interval(1, 5)
    # the bounds solve P(X >= 1 | low) = 0.025 and P(X <= 1 | high) = 0.025
    assert 1 - (1 - low) ** 5 == pytest.approx(0.025)
    assert (1 - high) ** 5 + 5 * high * (1 - high) ** 4 == pytest.approx(0.025)


def test_study_tool_refuses_a_missing_summary(tmp_path, capsys):
    assert study.main(['--run', 'a', '0', str(tmp_path / 'none.json'), '--out',
                       str(tmp_path / 'out.md'), '--command', 'x']) == 2
    assert not (tmp_path / 'out.md').exists()
    assert 'none.json' in capsys.readouterr().err


def test_pooled_table_reads_one_results_json_as_one_model(tmp_path):
    """A results.json gives that model's claims, read from its own primary rank tests."""
    def test(kind, region, estimate, ci, p, verdict):
        return dict(kind=kind, mode='targeted', num_channels=6, attack_region='overall',
                    eval_region=region, primary=True, estimate=estimate, ci95=ci, p_value=p,
                    verdict=verdict, num_draws=99)
    tests = [test('targeted_vs_random_draws', 'full', 2.5, [1.0, 3.0], 0.2, 'inconclusive'),
             test('periphery_minus_center_vs_random_draws', 'periphery-center', 0.8,
                  [0.1, 1.5], 0.01, 'holds')]
    results = dict(config='c.py', num_channels_total=128, tests=tests,
                   statistics=dict(primary=dict(num_channels=6, attack_region='overall')),
                   settings=[dict(key='clean', mode='clean', num_channels=0,
                                  metrics=dict(mIoU=74.0)),
                             dict(key='t6', mode='targeted', num_channels=6,
                                  attack_region='overall', metrics=dict(mIoU=70.0))])
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(results))
    out = tmp_path / 'demo.md'
    assert pooled.main([str(path), '--name', 'seed0', '--out', str(out), '--command',
                        'make demo']) == 0
    text = out.read_text()
    assert '1 model(s) of `c.py`' in text
    assert 'full image): inconclusive.**' in text
    assert 'difference in differences): holds.**' in text
    assert ('| seed0 | 74.00 | 6 | +2.50 [+1.00, +3.00] | 0.2 (99 draws) | inconclusive | '
            '+0.80 [+0.10, +1.50] | 0.01 | holds |') in text


@pytest.mark.slow   # spawns a process (the command or script it runs)
def test_command_table_keeps_the_output_and_refuses_a_failed_command(tmp_path):
    out = tmp_path / 'speed.md'
    code = 'print("fast path 0.31x")'
    assert command_table.main(['--out', str(out), '--title', 'Speed', '--',
                               sys.executable, '-c', code]) == 0
    lines = out.read_text().splitlines()
    assert lines[1] == '#### Speed'
    assert lines[3].startswith('Measured ') and f"`python -c {code}`" in lines[3]
    assert lines[5:8] == ['```', 'fast path 0.31x', '```']
    before = out.read_text()
    assert command_table.main(['--out', str(out), '--title', 'Speed', '--',
                               sys.executable, '-c', 'import sys; sys.exit(3)']) == 3
    assert out.read_text() == before  # a failed measurement leaves the last good table


@pytest.mark.slow   # spawns a process (the command or script it runs)
def test_study_refuses_an_unknown_setting_before_any_training(tmp_path):
    """A typo in a setting name costs nothing: the driver checks every name first."""
    done = subprocess.run([sys.executable, PIPELINE, 'tables-study', 'plain', 'plian'],
                          capture_output=True, text=True,
                          env=dict(os.environ, POSATTACK_VENV=str(tmp_path / 'no-venv')))
    assert done.returncode == 2
    assert "unknown setting 'plian'; choose from: flip_side_free plain plain_val300" in done.stderr
    assert '[study]' not in done.stderr  # nothing started


def _study_plan(tmp_path, *settings, **env):
    done = subprocess.run([sys.executable, PIPELINE, 'tables-study', *settings, '--dry-run'],
                          capture_output=True, text=True,
                          env=dict(os.environ, POSATTACK_VENV=str(tmp_path / 'no-venv'), **env))
    assert done.returncode == 0, done.stderr
    return [line.split(' -> ')[0].removeprefix('[study] ')
            for line in done.stderr.splitlines() if line.startswith('[study]')]


@pytest.mark.slow   # spawns a process (the command or script it runs)
def test_study_plan_is_the_study_as_measured_unless_told_otherwise(tmp_path):
    """make tables-study regenerates the rows of docs/tables/study.md measured with the rank
    tests, no more; naming a setting runs it on both data seeds."""
    assert _study_plan(tmp_path) == [
        'flip_side_free, data seed 0', 'flip_side_free, data seed 1', 'plain, data seed 0',
        'plain, data seed 1', 'wide, data seed 0', 'wide, data seed 1']
    assert _study_plan(tmp_path, 'long') == ['long, data seed 0', 'long, data seed 1']
    assert _study_plan(tmp_path, 'long', DATA_SEEDS='1') == ['long, data seed 1']
    assert _study_plan(tmp_path, DATA_SEEDS='1')[:2] == ['flip_side_free, data seed 1',
                                                         'plain, data seed 1']


@pytest.mark.slow   # spawns a process (the command or script it runs)
def test_command_table_keeps_the_output_from_a_prefix(tmp_path):
    out = tmp_path / 'metric.md'
    code = 'print("INFO init weights\\nimages: 16\\nratio 1.2%")'
    assert command_table.main(['--out', str(out), '--title', 'Metric', '--from', 'images:',
                               '--', sys.executable, '-c', code]) == 0
    assert out.read_text().splitlines()[5:9] == ['```', 'images: 16', 'ratio 1.2%', '```']
    # a prefix that never comes: refused, the file left alone
    assert command_table.main(['--out', str(out), '--title', 'Metric', '--from', 'nothing',
                               '--', sys.executable, '-c', code]) == 2
    assert 'images: 16' in out.read_text()
