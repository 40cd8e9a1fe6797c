"""tools/attack.py's statistics end to end: tests in results.json, resume, pooled models.

The tiny demo model with random weights on 4 synthetic images: the numbers mean nothing,
but every statistic must agree with what the run's own metrics say, and bad input must be
refused before any image is read.
"""
from __future__ import annotations

import os
import os.path as osp

import numpy as np
import pytest
from helpers import load_cli, load_json, one_torch_thread, run_cli, tiny_cli_files  # noqa: F401
from scipy import stats as scipy_stats

from posattack.report.per_image import PerImageCounts

CLI = load_cli()
ARGS = ['--num-channels', 6, 16, '--seeds', 3, '--max-images', 4, '--no-overlays',
        '--bootstrap', 200]


@pytest.fixture(scope='module')
def files(synthetic_root, tmp_path_factory):
    return tiny_cli_files(tmp_path_factory.mktemp('attack_statistics'), synthetic_root, other=1)


@pytest.fixture(scope='module')
def run(files):
    work_dir = files.root / 'run'
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir]
                           + ARGS + ['--attack-region', 'overall', 'left', 'right'])
    assert code == 0, stderr
    return work_dir


def _tests(results, kind, **match):
    return [t for t in results['tests'] if t['kind'] == kind
            and all(t[k] == v for k, v in match.items())]


def test_tests_agree_with_the_runs_own_metrics(run):
    results = load_json(run / 'results.json')
    by_key = {s['key']: s['metrics'] for s in results['settings']}
    clean = by_key['clean']['mIoU']
    # N=6 is 5% of the 128 channels: the primary count, drawn sequentially (>= 19 draws)
    assert results['statistics']['primary'] == dict(num_channels=6, attack_region='overall')
    for n, seeds in ((6, None), (16, 3)):
        draws = _tests(results, 'targeted_vs_random_draws', num_channels=n,
                       attack_region='overall')[0]
        random_keys = [k for k in by_key if k.startswith(f'random/N={n}/')]
        assert draws['primary'] == (n == 6)
        assert len(random_keys) == (seeds or draws['num_draws']) == draws['num_draws']
        if n == 6:
            assert draws['num_draws'] >= 19 and draws['p_value_holm'] is None
        else:
            assert draws['p_value_holm'] is not None
            assert draws['sequential']['p_value_floor'] == 0.25
        random = [by_key[k]['mIoU'] for k in random_keys]
        targeted = by_key[f'targeted/overall/N={n}']['mIoU']
        # the metrics are rounded to 2 decimals, the tests are not
        assert draws['targeted_value'] == pytest.approx(clean - targeted, abs=0.011)
        assert draws['random_mean'] == pytest.approx(clean - np.mean(random), abs=0.011)
        assert draws['estimate'] == pytest.approx(draws['targeted_value']
                                                  - draws['random_mean'])
        # the rank p-value by hand: draws reaching the targeted drop (metrics' rounding aside)
        exceed = sum(clean - r >= clean - targeted for r in random)
        if not draws['sequential']['stopped_early']:
            assert draws['p_value'] == pytest.approx((exceed + 1) / (len(random) + 1))
        # 4 images are too few for an image-bootstrap interval: said, not faked
        assert draws['ci95'] is None and 'at least 5' in draws['ci95_reason']
        did = _tests(results, 'periphery_minus_center_vs_random_draws', num_channels=n,
                     attack_region='overall')[0]
        metrics = by_key[f'targeted/overall/N={n}']
        expected = (by_key['clean']['periphery.mIoU'] - metrics['periphery.mIoU']) - (
            by_key['clean']['center.mIoU'] - metrics['center.mIoU'])
        assert did['targeted_value'] == pytest.approx(expected, abs=0.03)
        assert did['placebo']['num_placebos'] == did['num_draws']
    # left and right orders are each tested on their own half against the random draws'
    halves = _tests(results, 'own_half_vs_random_draws')
    assert sorted((t['attack_region'], t['eval_region']) for t in halves if
                  t['num_channels'] == 16) == [('left', 'left-right'), ('right', 'right-left')]
    assert all(not t['primary'] for t in halves)
    report = (run / 'report.md').read_text()
    assert '### Tests' in report and "### The paper's claims" in report
    assert 'placebo false positives' in report and 'identified on 4 train images' in report
    counts = PerImageCounts.load(str(run / 'per_image.npz'))
    assert len(counts.images) == 4 and set(counts.keys) == set(by_key)


@pytest.mark.slow   # over 3 s of CPU: two more runs of the attack
def test_same_run_same_intervals_and_old_work_dirs_resume(files, run, tmp_path):
    first = load_json(run / 'results.json')
    # a work dir from before per-image statistics: its settings are evaluated again
    old = tmp_path / 'old'
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', old] + ARGS
                           + ['--attack-region', 'overall', 'left', 'right'])
    assert code == 0, stderr
    os.remove(old / 'per_image.npz')
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', old, '--resume']
                           + ARGS + ['--attack-region', 'overall', 'left', 'right'])
    assert code == 0, stderr
    again = load_json(old / 'results.json')
    assert again['tests'] == first['tests'] and again['statistics'] == first['statistics']


def test_one_random_draw_is_not_a_distribution(files, tmp_path):
    args = ['--num-channels', 16, '--seeds', 1, '--max-images', 4, '--no-overlays']
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path] + args)
    assert code == 0, stderr
    results = load_json(tmp_path / 'results.json')
    draws = _tests(results, 'targeted_vs_random_draws')
    assert draws and all(t['verdict'] == 'not computed' and t['p_value'] is None
                         for t in draws)
    report = (tmp_path / 'report.md').read_text()
    assert 'no rank test can separate a set from them' in report


@pytest.mark.slow   # over 3 s of CPU (measured 6 s): two models through the attack
def test_pooled_run_over_two_models(files, tmp_path):
    work_dir = tmp_path / 'pooled'
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, files.other, '--work-dir',
                                 work_dir] + ARGS)
    assert code == 0, stderr
    summary = load_json(work_dir / 'summary.json')
    # both file names are model.pth: the folder names tell the models apart
    names = [m['model'] for m in summary['models']]
    assert sorted(os.listdir(work_dir / 'models')) == sorted(names) and len(names) == 2
    per_model = [load_json(work_dir / 'models' / n / 'results.json') for n in names]
    pooled = next(t for t in summary['pooled_tests'] if t['kind'] == 'targeted_vs_random_draws'
                  and t['num_channels'] == 16)
    tests = [next(t for t in r['tests'] if t['kind'] == 'targeted_vs_random_draws'
                  and t['num_channels'] == 16) for r in per_model]
    gaps = [t['estimate'] for t in tests]
    assert [m['estimate'] for m in pooled['per_model']] == gaps
    assert pooled['mean'] == pytest.approx(np.mean(gaps))
    assert pooled['std'] == pytest.approx(np.std(gaps, ddof=1))
    chi2 = -2 * np.log([t['p_value'] for t in tests]).sum()
    assert pooled['p_value'] == pytest.approx(scipy_stats.chi2.sf(chi2, 4))
    assert [c['verdict'] in ('holds', 'inconclusive', 'not computed')
            for c in summary['claims']] == [True, True]
    report = (work_dir / 'report.md').read_text()
    assert "The paper's claims" in report and f'(models/{names[0]}/report.md)' in report


def test_pooled_run_refuses_a_checkpoint_of_another_class_count(files, tmp_path):
    import torch
    state = torch.load(files.checkpoint, weights_only=True)
    seg = 'decode_head.conv_seg'
    state['state_dict'][f'{seg}.weight'] = state['state_dict'][f'{seg}.weight'][:5]
    state['state_dict'][f'{seg}.bias'] = state['state_dict'][f'{seg}.bias'][:5]
    five = str(tmp_path / 'five_classes.pth')
    torch.save(state, five)
    work_dir = tmp_path / 'refused'
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, five, '--work-dir',
                                 work_dir] + ARGS)
    assert code == 2
    assert 'error: ' in stderr and 'five_classes.pth' in stderr
    assert 'decode_head.conv_seg.weight' in stderr
    assert not osp.exists(work_dir)     # refused before any model was attacked


def test_pooled_run_refuses_the_same_checkpoint_twice(files, tmp_path):
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, files.checkpoint,
                                 '--work-dir', tmp_path / 'twice'] + ARGS)
    assert code == 2 and 'the same checkpoint is given twice' in stderr


def test_compare_ranking_in_the_report(files, run, tmp_path):
    """The same weights and images identify the same ranking: rho 1, every overlap 1."""
    work_dir = tmp_path / 'compared'
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', work_dir,
                                 '--compare-ranking', run / 'ranking.json'] + ARGS)
    assert code == 0, stderr
    comparison = load_json(work_dir / 'results.json')['ranking_comparison']
    assert set(comparison['orders']) >= {'overall', 'left', 'right', 'top', 'bottom'}
    for values in comparison['orders'].values():
        assert values['spearman'] == pytest.approx(1.0)
        assert set(values['top_k_overlap'].values()) == {1.0}
    assert comparison['names'] == {'a': 'this run', 'b': 'ranking.json'}
    assert '## Ranking comparison' in (work_dir / 'report.md').read_text()


def test_compare_ranking_of_another_width_is_refused_before_work(files, run, tmp_path):
    from posattack.channels.ranking import ChannelRanking
    other = tmp_path / 'other_width.json'
    # a valid ranking of a 64-channel tensor: the attacked one has 128
    order = np.random.default_rng(0).permutation(64).tolist()
    ChannelRanking(layer='backbone:3', num_channels=64, method='hand', num_images=None,
                   orders={'overall': order}).save(str(other))
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir',
                                 tmp_path / 'w', '--compare-ranking', other] + ARGS)
    assert code == 2 and '64' in stderr and '128' in stderr
    assert not osp.exists(tmp_path / 'w')


def test_zero_bootstrap_resamples_are_refused_before_work(files, tmp_path):
    args = ARGS[:ARGS.index('--bootstrap')] + ['--bootstrap', 0]
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path / 'w']
                           + args)
    assert code == 2 and '--bootstrap must be between 1 and 100000 resamples' in stderr
    assert not osp.exists(tmp_path / 'w')


def test_model_names_must_match_the_checkpoints(files, tmp_path):
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, files.other, '--work-dir',
                                 tmp_path / 'w', '--model-names', 'a'] + ARGS)
    assert code == 2 and '--model-names gives 1 names for 2 checkpoints' in stderr
    assert not osp.exists(tmp_path / 'w')


@pytest.mark.slow   # another run of the attack
def test_bootstrap_groups_resample_cities(files, tmp_path):
    """--bootstrap-groups city: the synthetic images are named as Cityscapes' are, one city
    per image here, so the cluster bootstrap has as many groups as images and says so."""
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path,
                                 '--bootstrap-groups', 'city'] + ARGS)
    assert code == 0, stderr
    statistics = load_json(tmp_path / 'results.json')['statistics']
    counts = PerImageCounts.load(str(tmp_path / 'per_image.npz'))
    cities = {osp.basename(image).split('_')[0] for image in counts.images}
    assert statistics['bootstrap_groups'] == len(cities)
    assert f'{len(cities)} groups of images (cluster bootstrap)' in statistics['method']
    assert 'Images are treated as independent' not in (tmp_path / 'report.md').read_text()


@pytest.mark.slow   # another run of the attack
def test_sequential_draws_go_round_by_round_up_to_the_cap(files, tmp_path):
    """--exceedances above the cap never stops early: draws at the primary N=6 come in the
    rounds 19, then 39 (the cap), each round one more pass; the other N keeps --seeds."""
    code, stderr = run_cli(CLI, [files.config, files.checkpoint, '--work-dir', tmp_path,
                                 '--num-channels', 6, 16, '--seeds', 2, '--max-images', 4,
                                 '--no-overlays', '--bootstrap', 200, '--max-draws', 39,
                                 '--exceedances', 1000])
    assert code == 0, stderr
    results = load_json(tmp_path / 'results.json')
    seeds = sorted(s['seed'] for s in results['settings']
                   if s['mode'] == 'random' and s['num_channels'] == 6)
    assert seeds == list(range(39))
    assert sum(s['mode'] == 'random' and s['num_channels'] == 16
               for s in results['settings']) == 2
    claim_1 = next(t for t in results['tests'] if t['primary']
                   and t['kind'] == 'targeted_vs_random_draws')
    assert claim_1['sequential']['draws_used'] == 39 and claim_1['sequential']['complete']
