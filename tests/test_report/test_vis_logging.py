"""Runs logged to MMEngine's vis backends (posattack.report.vis_backends / vis_logging): the
series read off a results dict built by hand, what the backends wrote read back, the
backend choice and its one-line refusals."""
from __future__ import annotations

import json
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config

from posattack.report import vis_backends
from posattack.report.vis_backends import build_run_visualizer, resolve_vis_backends
from posattack.report.vis_logging import attack_scalars, log_attack, log_profile, profile_scalars


def _setting(mode, n, miou, periphery, seed=None, attack_region='overall'):
    key = 'clean' if mode == 'clean' else (
        f'targeted/{attack_region}/N={n}' if mode == 'targeted' else f'random/N={n}/seed={seed}')
    return dict(mode=mode, num_channels=n, seed=seed, key=key,
                attack_region=None if mode != 'targeted' else attack_region,
                metrics={'mIoU': miou, 'periphery.mIoU': periphery, 'aAcc': 99.0})


RESULTS = dict(regions=['full', 'periphery'], settings=[
    _setting('clean', 0, 70.0, 60.0),
    _setting('targeted', 6, 50.0, 30.0),
    _setting('random', 6, 66.0, 58.0, seed=0),
    _setting('random', 6, 62.0, 52.0, seed=1),
    _setting('random', 6, 67.0, 55.0, seed=2),
    _setting('targeted', 13, 40.0, 20.0),
    _setting('random', 13, 60.0, 50.0, seed=0),
    _setting('targeted', 13, 45.0, 25.0, attack_region='left'),
], tests=[dict(kind='targeted_vs_random_draws', mode='targeted', num_channels=6,
               attack_region='overall', eval_region='full', estimate=15.0, p_value=0.25),
          dict(kind='targeted_vs_random_draws', mode='targeted', num_channels=13,
               attack_region='overall', eval_region='full', estimate=20.0, p_value=None)])


def test_attack_series_are_the_results_numbers():
    series = attack_scalars(RESULTS)
    assert series == {
        # clean: one flat line over the run's N
        'mIoU/clean/full': [(6, 70.0), (13, 70.0)],
        'mIoU/clean/periphery': [(6, 60.0), (13, 60.0)],
        'mIoU/targeted/full': [(6, 50.0), (13, 40.0)],
        'mIoU/targeted/periphery': [(6, 30.0), (13, 20.0)],
        'mIoU/targeted-left/full': [(13, 45.0)],
        'mIoU/targeted-left/periphery': [(13, 25.0)],
        # (66 + 62 + 67) / 3 = 65, (58 + 52 + 55) / 3 = 55
        'mIoU/random_mean/full': [(6, 65.0), (13, 60.0)],
        'mIoU/random_mean/periphery': [(6, 55.0), (13, 50.0)],
        'tests/targeted_vs_random_draws/full/estimate': [(6, 15.0), (13, 20.0)],
        'tests/targeted_vs_random_draws/full/p_value': [(6, 0.25)],
    }
    assert set(attack_scalars(RESULTS, prefix='seed0/')) == {f'seed0/{tag}' for tag in series}


PROFILE = dict(layers=[
    dict(layer='backbone.layer1', depth=0,
         concentration=dict(horizontal=dict(gini=0.2), vertical=dict(gini=0.4)),
         attack=[dict(fraction=0.05, targeted_drop=dict(estimate=4.0),
                      random_drop=dict(estimate=3.0),
                      targeted_vs_random_draws=dict(estimate=1.0))]),
    dict(layer='backbone.layer4', depth=3,
         concentration=dict(horizontal=dict(gini=0.5), vertical=dict(gini=0.1)),
         attack=[dict(fraction=0.05, targeted_drop=dict(estimate=9.0),
                      random_drop=dict(estimate=2.0),
                      targeted_vs_random_draws=dict(estimate=7.0))])])


def test_profile_series_follow_depth():
    assert profile_scalars(PROFILE) == {
        'profile/gini_horizontal': [(0, 0.2), (3, 0.5)],
        'profile/gini_vertical': [(0, 0.4), (3, 0.1)],
        'profile/targeted_drop@0.05': [(0, 4.0), (3, 9.0)],
        'profile/random_drop@0.05': [(0, 3.0), (3, 2.0)],
        'profile/gap@0.05': [(0, 1.0), (3, 7.0)],
    }


def _png(path, value):
    import cv2
    cv2.imwrite(str(path), np.full((8, 12, 3), value, np.uint8))
    return str(path)


def test_local_backend_holds_the_scalars_and_the_images(tmp_path):
    """What MMEngine's LocalVisBackend wrote (scalars.json, vis_image/) read back."""
    cfg = Config(dict(visualizer=dict(type='SegLocalVisualizer', name='visualizer',
                                      vis_backends=[dict(type='LocalVisBackend')])))
    visualizer = build_run_visualizer(cfg, resolve_vis_backends(cfg), str(tmp_path / 'run'))
    assert type(visualizer).__name__ == 'SegLocalVisualizer'
    log_attack(visualizer, RESULTS, {'miou_vs_channels': _png(tmp_path / 'a.png', 40),
                                     'overlay_frankfurt_0': _png(tmp_path / 'b.png', 90),
                                     'missing': str(tmp_path / 'none.png')})
    log_profile(visualizer, PROFILE, {})
    visualizer.close()
    vis_data = tmp_path / 'run' / 'vis_data'
    logged = {}
    for line in (vis_data / 'scalars.json').read_text().splitlines():
        row = json.loads(line)
        step = row.pop('step')
        for tag, value in row.items():
            logged.setdefault(tag, []).append((step, value))
    assert logged['mIoU/random_mean/full'] == [(6, 65.0), (13, 60.0)]
    assert logged['mIoU/targeted/periphery'] == [(6, 30.0), (13, 20.0)]
    assert logged['profile/gap@0.05'] == [(0, 1.0), (3, 7.0)]
    assert sorted(p.name for p in (vis_data / 'vis_image').iterdir()) == [
        'miou_vs_channels_0.png', 'overlay_frankfurt_0_0.png']
    import cv2
    assert (cv2.imread(str(vis_data / 'vis_image' / 'overlay_frankfurt_0_0.png')) == 90).all()


def test_no_backends_no_visualizer(tmp_path):
    cfg = Config(dict(visualizer=dict(type='SegLocalVisualizer',
                                      vis_backends=[dict(type='LocalVisBackend')])))
    assert resolve_vis_backends(cfg, ['none']) == []
    assert build_run_visualizer(cfg, [], str(tmp_path)) is None
    assert resolve_vis_backends(Config(dict())) == []


def test_requested_backends_replace_the_configs():
    cfg = Config(dict(visualizer=dict(type='SegLocalVisualizer',
                                      vis_backends=[dict(type='LocalVisBackend')])))
    assert resolve_vis_backends(cfg) == [dict(type='LocalVisBackend')]
    assert resolve_vis_backends(cfg, ['tensorboard', 'local', 'tensorboard']) == [
        dict(type='TensorboardVisBackend'), dict(type='LocalVisBackend')]


@pytest.mark.parametrize('names,message', [
    (['tensorbord'], "unknown vis backend 'tensorbord': choose from local, tensorboard, "
                     'wandb, none.'),
    (['none', 'local'], "vis backend 'none' logs nowhere: give it alone."),
])
def test_bad_backend_names_are_one_line_errors(names, message):
    with pytest.raises(ValueError) as error:
        resolve_vis_backends(Config(dict()), names)
    assert str(error.value) == message


def test_a_backend_without_its_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(vis_backends, '_installed', lambda module: False)
    with pytest.raises(RuntimeError, match=r'^vis backend WandbVisBackend needs the wandb '
                       r'package, which is not installed: pip install wandb'):
        resolve_vis_backends(Config(dict()), ['wandb'])
    cfg = Config(dict(visualizer=dict(vis_backends=[dict(type='TensorboardVisBackend')])))
    with pytest.raises(RuntimeError, match='pip install tensorboard'):
        resolve_vis_backends(cfg)


def _write_demo_config(path, backends):
    path.write_text(f'visualizer = dict(type="SegLocalVisualizer", vis_backends={backends!r})\n')
    return str(path)


def test_a_pooled_run_logs_each_model_under_its_name(tmp_path, monkeypatch):
    """run_logged_attack's pooled branch: the per-model results.json files, read back from
    the work dir, go to the config's backends with the model's name in front."""
    from posattack.api import attack_run
    from posattack.attack.experiment import AttackOptions
    work_dir = tmp_path / 'pooled'

    def fake_pooled_run(opts, checkpoints, names):
        for name, shift in (('seed0', 0.0), ('seed1', 10.0)):
            folder = work_dir / 'models' / name
            folder.mkdir(parents=True)
            shifted = json.loads(json.dumps(RESULTS))
            for setting in shifted['settings']:
                setting['metrics']['mIoU'] += shift
            (folder / 'results.json').write_text(json.dumps(shifted))
        return dict(claims=[dict(claim='c', verdict='inconclusive')], tests=[])

    monkeypatch.setattr(attack_run, 'run_attacks', fake_pooled_run)
    config = _write_demo_config(tmp_path / 'c.py', [dict(type='LocalVisBackend')])
    opts = AttackOptions(config=config, checkpoint='seed0.pth', work_dir=str(work_dir))
    result = attack_run.run_logged_attack(opts, ['a/seed0.pth', 'b/seed1.pth'],
                                          names=['seed0', 'seed1'])
    assert result.claims == [dict(claim='c', verdict='inconclusive')]
    logged = [json.loads(line) for line in
              open(osp.join(result.vis_dir, 'scalars.json')).read().splitlines()]
    random_mean = {(tag, row['step']): row[tag] for row in logged for tag in row
                   if tag.endswith('mIoU/random_mean/full')}
    assert random_mean == {('seed0/mIoU/random_mean/full', 6): 65.0,
                           ('seed0/mIoU/random_mean/full', 13): 60.0,
                           ('seed1/mIoU/random_mean/full', 6): 75.0,
                           ('seed1/mIoU/random_mean/full', 13): 70.0}


def test_the_api_names_its_options_when_given_an_unknown_one():
    from posattack.api import attack, depth_profile
    with pytest.raises(TypeError, match=r"attack\(\) got unknown option\(s\) num_chanels; the "
                       r'options are .*num_channels'):
        attack('c.py', 'c.pth', num_chanels=[6])
    with pytest.raises(TypeError, match=r'depth_profile\(\) got unknown option\(s\) layer;'):
        depth_profile('c.py', 'c.pth', layer='backbone:3')
