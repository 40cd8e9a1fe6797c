"""A kept model is reused only when the config, seed and data it records are the ones asked
for (posattack.training.kept_model, behind tools/train.py --keep-finished).

The checkpoints here are written as MMEngine's Runner writes them (``meta['cfg']`` is the
merged config's ``pretty_text``, ``meta['seed']`` and ``meta['iter']``), around the demo
config itself, so the round trip through the recorded text is the real one.
"""
from __future__ import annotations

import os.path as osp

import pytest
import torch
from helpers import REPO_ROOT
from mmengine.config import Config

from posattack.training.kept_model import KeptModelMismatch, kept_model

DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo', 'deeplabv3_r18-tiny_synthetic-cityscapes.py')
AUGSHIFT_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo',
                           'deeplabv3_r18-tiny_augshift_synthetic-cityscapes.py')


def _config(path=DEMO_CONFIG, **options):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': 'data/some_root', **options})
    return cfg


def _keep(work_dir, trained_cfg, iteration=600, seed=None):
    """A work dir as the Runner leaves it: a checkpoint and last_checkpoint naming it."""
    path = osp.join(work_dir, f'iter_{iteration}.pth')
    seed = trained_cfg.randomness.seed if seed is None else seed
    torch.save(dict(meta=dict(cfg=trained_cfg.pretty_text, seed=seed, iter=iteration, epoch=0),
                    state_dict={}), path)
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(path)
    return path


def test_an_empty_work_dir_keeps_nothing(tmp_path):
    assert kept_model(str(tmp_path), _config()) is None


def test_the_same_training_is_kept_and_finished_at_max_iters(tmp_path):
    path = _keep(str(tmp_path), _config(**{'randomness.seed': 2}))
    kept = kept_model(str(tmp_path), _config(**{'randomness.seed': 2}))
    assert kept.checkpoint == path and kept.seed == 2
    assert kept.finished  # the demo trains 600 iterations


def test_a_stopped_training_is_kept_unfinished(tmp_path):
    _keep(str(tmp_path), _config(), iteration=300)
    kept = kept_model(str(tmp_path), _config())
    assert kept.iteration == 300 and not kept.finished


def test_loader_speed_settings_do_not_count(tmp_path):
    _keep(str(tmp_path), _config(**{'train_dataloader.num_workers': 0}))
    assert kept_model(str(tmp_path), _config(**{'train_dataloader.num_workers': 4})).finished


@pytest.mark.parametrize('trained, wanted, named', [
    ({'randomness.seed': 1}, {'randomness.seed': 2}, 'randomness.seed: 1 there vs 2 now'),
    ({}, {'train_dataloader.dataset.data_root': 'data/other'},
     "train_dataloader.dataset.data_root: 'data/some_root' there vs 'data/other' now"),
    ({}, {'train_cfg.max_iters': 1200}, 'train_cfg.max_iters: 600 there vs 1200 now'),
    ({}, {'optim_wrapper.optimizer.lr': 0.5}, 'optim_wrapper.optimizer.lr: '),
])
def test_another_training_is_refused_naming_what_differs(tmp_path, trained, wanted, named):
    _keep(str(tmp_path), _config(**trained))
    with pytest.raises(KeptModelMismatch) as error:
        kept_model(str(tmp_path), _config(**wanted))
    message = str(error.value)
    assert named in message and '\n' not in message
    assert f'move {tmp_path} away to train again' in message


def test_augshift_weights_are_told_apart(tmp_path):
    # augshift and augshift-strong share a config file: only --cfg-options differ
    _keep(str(tmp_path), _config(AUGSHIFT_CONFIG))
    strong = _config(AUGSHIFT_CONFIG, **{'model.latent_weight': 100.0})
    with pytest.raises(KeptModelMismatch, match=r'model\.latent_weight: 1\.0 there vs 100\.0 now'):
        kept_model(str(tmp_path), strong)


def test_another_model_type_is_refused(tmp_path):
    _keep(str(tmp_path), _config())
    with pytest.raises(KeptModelMismatch, match="model.type: 'EncoderDecoder' there vs "
                       "'posattack.AugShiftEncoderDecoder' now"):
        kept_model(str(tmp_path), _config(AUGSHIFT_CONFIG))


def test_the_seed_the_runner_used_counts_too(tmp_path):
    # a config that asked for seed 3 but a checkpoint that says the Runner used another
    _keep(str(tmp_path), _config(**{'randomness.seed': 3}), seed=7)
    with pytest.raises(KeptModelMismatch, match='seed: 7 there vs 3 now'):
        kept_model(str(tmp_path), _config(**{'randomness.seed': 3}))


def test_a_config_without_a_seed_keeps_nothing(tmp_path):
    _keep(str(tmp_path), _config(), seed=0)
    unseeded = _config()
    unseeded.randomness = dict(seed=None)
    with pytest.raises(KeptModelMismatch, match='the config sets none'):
        kept_model(str(tmp_path), unseeded)


def test_a_checkpoint_without_a_recorded_config_is_refused(tmp_path):
    path = osp.join(tmp_path, 'iter_1.pth')
    torch.save(dict(meta=dict(iter=1), state_dict={}), path)
    (tmp_path / 'last_checkpoint').write_text(path)
    with pytest.raises(KeptModelMismatch, match='records no training config'):
        kept_model(str(tmp_path), _config())


def test_a_moved_work_dir_still_finds_its_checkpoint(tmp_path):
    # last_checkpoint holds the path the training wrote; the work dir may have moved since
    _keep(str(tmp_path), _config())
    (tmp_path / 'last_checkpoint').write_text('/elsewhere/iter_600.pth')
    assert kept_model(str(tmp_path), _config()).checkpoint == osp.join(tmp_path, 'iter_600.pth')
