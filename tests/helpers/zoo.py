"""MMSeg zoo architectures at test size, shared by tests/test_attack/test_zoo_attack.py and
tests/test_profile/test_profile_zoo.py: their configs, what each should give, and the
command-line options that point them at tiny synthetic data."""
from __future__ import annotations

import os.path as osp

from posattack.data.dataloader import build_test_dataloader

from . import REPO_ROOT

PAPER = osp.join(REPO_ROOT, 'configs', 'paper')
TINY_SCALE = (128, 64)  # (w, h) of the test Resize: the synthetic images' own size
NUM_IMAGES = 2

# What each architecture should give: the tensor the head reads, its channels, and whether
# some head convolution reads that tensor itself (so the linear shortcut has work to do).
ARCHITECTURES = {
    'deeplabv3_r50': dict(
        config=osp.join(PAPER, 'deeplabv3_r50-d8_cityscapes-512x1024_posattack.py'),
        layer='backbone:3', channels=2048, shortcut=True, auxiliary=True, options={}),
    # PSPNet pools before every convolution: no shortcut, the fast path still skips the
    # backbone. Its auxiliary head is dropped here (DeepLabv3 keeps its; SegFormer has none).
    'pspnet_r50': dict(
        config=osp.join(PAPER, 'pspnet_r50-d8_cityscapes-512x1024_posattack.py'),
        layer='backbone:3', channels=2048, shortcut=False, auxiliary=False,
        options={'model.auxiliary_head': None}),
    # A head reading four backbone outputs: the default is the deepest, output 3.
    'segformer_b0': dict(
        config=osp.join(PAPER, 'segformer_mit-b0_cityscapes-1024x1024_posattack.py'),
        layer='backbone:3', channels=256, shortcut=True, auxiliary=False, options={}),
    # HRNet keeps four branches to the end; the FCN head resizes and concatenates all four
    # before its first convolution, so no convolution reads the attacked branch itself.
    'fcn_hr18': dict(
        config=osp.join(PAPER, 'fcn_hr18_cityscapes-512x1024_posattack.py'),
        layer='backbone:3', channels=144, shortcut=False, auxiliary=False, options={}),
}



def tiny_data_options(root) -> dict:
    return {
        'test_dataloader.dataset.data_root': str(root),
        'test_dataloader.dataset.pipeline.1.scale': TINY_SCALE,  # 1 is Resize (checked)
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
    }


def first_batch(model, cfg, num_images=NUM_IMAGES):
    dataloader = build_test_dataloader(cfg, num_images, num_images)
    data = model.data_preprocessor(next(iter(dataloader)), False)
    return data['inputs'], data['data_samples']
