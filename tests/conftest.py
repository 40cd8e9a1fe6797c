"""Shared fixtures: a tiny synthetic Cityscapes dataset, the demo config pointed at it, and
the demo segmentor with random weights.

    def test_something(synthetic_root, demo_cfg, tiny_segmentor):
        assert (synthetic_root / 'leftImg8bit' / 'val').is_dir()
        logits = tiny_segmentor(torch.zeros(1, 3, 64, 128))      # (1, 19, 8, 16): stride 8
"""
from __future__ import annotations

import copy
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO_ROOT

DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'demo', 'deeplabv3_r18-tiny_synthetic-cityscapes.py')

# The tests' tensors are tiny: one thread per process beats two, and on a busy 2-core
# machine (or under the 2-process distributed tests) two threads oversubscribe badly.
torch.set_num_threads(1)

# Tiny sizes keep the whole suite fast on 2 CPU cores.
TINY_SIZE = (64, 128)  # (h, w)
TINY_NUM_TRAIN = 4
TINY_NUM_VAL = 4


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory):
    """Path of a generated Cityscapes-layout dataset: 4 train + 4 val images, 64x128, seed 0."""
    from posattack.data.synthetic import generate_cityscapes
    root = tmp_path_factory.mktemp('synthetic_cityscapes')
    generate_cityscapes(root, num_train=TINY_NUM_TRAIN, num_val=TINY_NUM_VAL, size=TINY_SIZE,
                        seed=0)
    return root


@pytest.fixture(scope='session')
def _demo_cfg_template():
    from mmengine.config import Config
    return Config.fromfile(DEMO_CONFIG)


def _set_pipeline_sizes(pipeline, height, width):
    for transform in pipeline:
        if transform['type'] in ('Resize', 'RandomResize'):
            transform['scale'] = (width, height)
        elif transform['type'] == 'RandomCrop':
            transform['crop_size'] = (height, width)


def point_dataloaders_at_tiny_data(cfg, root) -> None:
    """Every dataloader of `cfg` on the dataset at `root`: TINY_SIZE pipelines, batch size 2,
    no worker processes."""
    height, width = TINY_SIZE
    cfg.data_root = str(root)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = str(root)
        _set_pipeline_sizes(loader.dataset.pipeline, height, width)


@pytest.fixture
def demo_cfg(_demo_cfg_template, synthetic_root, tmp_path):
    """A fresh copy of the demo Config on `synthetic_root`: 64x128 pipelines, batch size 2,
    no worker processes, work_dir in this test's tmp_path."""
    cfg = copy.deepcopy(_demo_cfg_template)
    height, width = TINY_SIZE
    point_dataloaders_at_tiny_data(cfg, synthetic_root)
    cfg.crop_size = (height, width)
    cfg.image_scale = (width, height)
    for pipeline_key in ('train_pipeline', 'test_pipeline'):
        _set_pipeline_sizes(cfg[pipeline_key], height, width)
    cfg.model.data_preprocessor.size = (height, width)
    cfg.data_preprocessor.size = (height, width)
    cfg.work_dir = str(tmp_path / 'work_dir')
    return cfg


@pytest.fixture
def tiny_segmentor(demo_cfg):
    """The demo EncoderDecoder built from `demo_cfg`: random (seeded) weights, eval mode, CPU.
    The config is attached as `model.cfg`, as posattack.models.builder.load_segmentor does."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(demo_cfg.model)
    model.init_weights()
    model.cfg = demo_cfg
    return model.eval()


@pytest.fixture
def mmseg_scope():
    """mmseg as MMEngine's default scope, for tests that build modules by registered name."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')


@pytest.fixture(scope='module')
def hand_cityscapes(tmp_path_factory):
    """Two 32x64 scenes in the Cityscapes layout whose 16x16 crops have known majority classes.

    Scene 0: train ids road (0) on the left half, vegetation (8) on the right half except a
    car (13) block covering 3/4 of the crop at rows 16..32, cols 48..64. Scene 1 (city 2):
    all sky (10), with the top-left crop half ignored (255) and half sky.
    """
    root = tmp_path_factory.mktemp('hand_cityscapes')
    scenes = []
    ids = np.zeros((32, 64), np.uint8)
    ids[:, 32:] = 8
    ids[16:, 52:] = 13  # 12 of 16 columns of the last bottom crop
    scenes.append(('aachen', ids))
    ids = np.full((32, 64), 10, np.uint8)
    ids[:8, :16] = 255
    scenes.append(('bochum', ids))
    for index, (city, train_ids) in enumerate(scenes):
        stem = f'{city}_{index:06d}_000019'
        image_dir = root / 'leftImg8bit' / 'train' / city
        label_dir = root / 'gtFine' / 'train' / city
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        image = np.stack([train_ids * 10, train_ids * 5, np.full_like(train_ids, 7)], axis=-1)
        cv2.imwrite(str(image_dir / f'{stem}_leftImg8bit.png'), image[..., ::-1])  # RGB on disk
        cv2.imwrite(str(label_dir / f'{stem}_gtFine_labelTrainIds.png'), train_ids)
    return root



@pytest.fixture(scope='module')
def probe_scenes(tmp_path_factory):
    """16 train + 8 val synthetic scenes at 64x128 (seed 0): the reduced Table 1's data."""
    from posattack.data.synthetic import generate_cityscapes
    root = tmp_path_factory.mktemp('probe_scenes')
    generate_cityscapes(root, num_train=16, num_val=8, size=(64, 128), seed=0)
    return str(root)



@pytest.fixture
def hand_results():
    """The results dict built by hand in tests/helpers/hand_results.py (report tests)."""
    from helpers.hand_results import hand_results_dict
    return hand_results_dict()


def pytest_configure(config):
    # The rule (docs/tests.md): a test is slow when it spawns a process (torchrun, a lock
    # holder, a shell script) or takes more than 3 s of CPU time, setup + call + teardown, in
    # one thread (module fixtures count for the tests that share them). `make test` runs
    # them; `make test-fast` (`pytest -m "not slow"`) leaves them out.
    config.addinivalue_line('markers', 'slow: spawns a process or takes over 3 s of CPU time')
