"""What a read-out sees: the user's images, and the generated black, white and noise inputs.

The ICLR 2020 protocol trains the read-out on natural images and scores it on held-out
natural images and on three inputs without content: an all-black image, an all-white image
and noise. A position map predicted from a black image can come from nowhere but the
network (its padding, its borders), so those inputs tell content from position.

* ``natural``: image files (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, any depth of folders),
  resized to one size with OpenCV's bilinear resize;
* ``black`` / ``white``: one image of 0 / 255 in every channel;
* ``noise``: ``num_noise`` images of i.i.d. uniform 0..255 values per pixel and channel,
  drawn from a seeded generator (the authors ship one noise JPEG; several give an interval).

Every input is a uint8-range float tensor (3, H, W) in the file's channel order (mmcv
reads BGR), ready for the segmentor's own ``data_preprocessor`` (mean, std, channel order),
so the backbone sees inputs exactly as in its training.

Usage::

    paths = list_images('data/synthetic_cityscapes/leftImg8bit/val')   # empty: one-line error
    images = load_images(paths, (128, 256))                            # (N, 3, 128, 256)
    generated_inputs('noise', (128, 256), num_noise=8, seed=0)         # (8, 3, 128, 256)
"""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Sequence

import mmcv
import numpy as np
import torch

__all__ = ['GENERATED_INPUTS', 'IMAGE_EXTENSIONS', 'INPUT_KINDS', 'NATURAL', 'check_input_kinds',
           'generated_inputs', 'list_images', 'load_images']

NATURAL = 'natural'
GENERATED_INPUTS = ('black', 'white', 'noise')
INPUT_KINDS = (NATURAL, ) + GENERATED_INPUTS
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')


def check_input_kinds(kinds: Sequence[str], option: str = '--train-inputs') -> list[str]:
    """``kinds`` as a list; empty or unknown raises naming the known kinds."""
    kinds = list(kinds)
    if not kinds:
        raise ValueError(f'{option} needs at least one of {", ".join(INPUT_KINDS)}.')
    for kind in kinds:
        if kind not in INPUT_KINDS:
            raise ValueError(f'{option}: unknown input {kind!r}; choose among '
                             f'{", ".join(INPUT_KINDS)}.')
    return kinds


def list_images(folder: str) -> list[str]:
    """Every image file under ``folder``, sorted; a missing or image-less folder raises."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder!r} does not exist; point --images (or '
                                '--test-images) at a folder of .png/.jpg images.')
    paths = sorted(osp.join(root, name) for root, _, names in os.walk(folder, followlinks=True)
                   for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise ValueError(f'image folder {folder!r} holds no image ({", ".join(IMAGE_EXTENSIONS)} '
                         'at any depth); point --images (or --test-images) at a folder of images.')
    return paths


def load_images(paths: Sequence[str], size: Sequence[int]) -> torch.Tensor:
    """The images at ``size`` (H, W): float (N, 3, H, W), 0..255, in the files' BGR order."""
    height, width = int(size[0]), int(size[1])
    out = torch.empty((len(paths), 3, height, width), dtype=torch.float32)
    for i, path in enumerate(paths):
        image = mmcv.imread(path, flag='color')
        if image is None:
            raise ValueError(f'{path} could not be read as an image; remove it from the folder.')
        if image.shape[:2] != (height, width):
            image = mmcv.imresize(image, (width, height), interpolation='bilinear')
        out[i] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
    return out


def generated_inputs(kind: str, size: Sequence[int], num_noise: int = 8,
                     seed: int = 0) -> torch.Tensor:
    """The generated inputs of ``kind`` (black, white, noise) at ``size``: (N, 3, H, W)."""
    height, width = int(size[0]), int(size[1])
    if kind == 'black':
        return torch.zeros((1, 3, height, width))
    if kind == 'white':
        return torch.full((1, 3, height, width), 255.0)
    if kind == 'noise':
        if num_noise < 1:
            raise ValueError(f'--num-noise must be >= 1 noise image, got {num_noise}.')
        generator = torch.Generator().manual_seed(int(seed))
        return torch.randint(0, 256, (num_noise, 3, height, width), generator=generator).float()
    raise ValueError(f'unknown generated input {kind!r}; choose among '
                     f'{", ".join(GENERATED_INPUTS)}.')
