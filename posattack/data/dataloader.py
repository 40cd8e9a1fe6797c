"""Dataloaders as mmseg evaluates: a config's test pipeline, no shuffling, every image once.

* :func:`build_test_dataloader`: the config's test split, sharded without padding (the
  attack, the depth profile, the consistency evaluation);
* :func:`build_split_dataloader`: any split (val, test, or train with the test pipeline) for
  identification (tools/identify.py).

Both name the image that fails to load (:mod:`.dataset_errors`, :class:`_PipelineNamingFiles`)
and say which setting to fix when the dataset is empty or missing.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from mmengine.runner import Runner

from ..utils.datasets import describe_dataset
from .dataset_errors import name_unreadable_files

__all__ = ['build_split_dataloader', 'build_test_dataloader']


class _PipelineNamingFiles:
    """Wrap a dataset pipeline so that a failure names the image it failed on.

    mmcv's LoadImageFromFile names an undecodable image, but only in an ``assert`` (gone
    under ``python -O``), and later transforms (a broken label map in LoadAnnotations, a
    failing Resize) name nothing.
    """

    def __init__(self, pipeline: Callable):
        self.pipeline = pipeline

    def __call__(self, data_info: dict) -> dict:
        path = data_info.get('img_path', '<unknown image>') if isinstance(data_info,
                                                                          dict) else '<unknown>'
        try:
            results = self.pipeline(data_info)
        except Exception as error:
            raise RuntimeError(f'Could not load or transform image {path}: '
                               f'{type(error).__name__}: {error}') from error
        if results is None:
            raise RuntimeError(
                f'The test pipeline dropped image {path} (unreadable or empty file?).')
        return results

    def __getattr__(self, name: str) -> Any:  # keep Compose's attributes (transforms, ...)
        if name == 'pipeline' or name.startswith('__'):  # unpickling in dataloader workers
            raise AttributeError(name)
        return getattr(self.pipeline, name)


def build_split_dataloader(cfg: Any, split: str = 'val', batch_size: Optional[int] = None,
                           num_workers: Optional[int] = None, max_images: Optional[int] = None,
                           pad_shards: bool = True):
    """A dataloader over ``split`` with the config's test pipeline, as mmseg evaluates.

    ``test`` / ``val`` use ``cfg.test_dataloader`` / ``cfg.val_dataloader``; ``train`` uses the
    train dataset with the test pipeline (no augmentation) and no shuffling. ``max_images``
    keeps the split's first images only; ``pad_shards=False`` shards it over processes
    without mmengine's padding (which repeats images to even out the shards), so that every
    image counts exactly once, as in a one-process run.

    Usage::

        cfg = Config.fromfile('configs/demo/deeplabv3_r18-tiny_synthetic-cityscapes.py')
        loader = build_split_dataloader(cfg, 'val', batch_size=2)
    """
    from mmengine.registry import DATASETS, init_default_scope
    from mmengine.runner import Runner

    key = {'test': 'test_dataloader', 'val': 'val_dataloader',
           'train': 'train_dataloader'}.get(split)
    if key is None:
        raise ValueError(f'Unknown split {split!r}; use one of: val, test, train.')
    if cfg.get(key) is None:
        raise ValueError(f'The config has no {key}; pick another split (val, test or train).')
    if split == 'train':
        evaluation = cfg.get('test_dataloader') or cfg.get('val_dataloader')
        if evaluation is None:
            raise ValueError('The train split needs the test pipeline, but the config has neither '
                             'test_dataloader nor val_dataloader.')
        loader_cfg = copy.deepcopy(evaluation)
        dataset_cfg = copy.deepcopy(cfg[key]['dataset'])
        dataset_cfg['pipeline'] = copy.deepcopy(evaluation['dataset']['pipeline'])
        dataset_cfg['test_mode'] = True
        loader_cfg['dataset'] = dataset_cfg
    else:
        loader_cfg = copy.deepcopy(cfg[key])
    loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False, round_up=pad_shards)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f'batch_size must be at least 1, got {batch_size}.')
        loader_cfg['batch_size'] = batch_size
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f'max_images must be at least 1, got {max_images}.')
        loader_cfg['dataset'] = dict(loader_cfg['dataset'], indices=max_images)
    if num_workers is not None:
        loader_cfg['num_workers'] = num_workers
        if num_workers == 0:
            loader_cfg['persistent_workers'] = False
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset_cfg = loader_cfg['dataset']
    empty_error = (f'The {split} dataset is empty ({{}}). Check data_root (override with '
                   f'--cfg-options {key}.dataset.data_root=...).')
    if isinstance(dataset_cfg, dict):
        try:
            # Lazily: mmengine's full_init fails on an empty file list with a bare numpy error.
            dataset = DATASETS.build(dict(dataset_cfg, lazy_init=True))
        except TypeError:  # a dataset class without lazy_init
            dataset = DATASETS.build(dataset_cfg)
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f'Cannot build the {split} dataset: {error}. Check data_root '
                f'(override with --cfg-options {key}.dataset.data_root=...).') from error
    else:
        dataset = dataset_cfg
    if hasattr(dataset, 'full_init') and not getattr(dataset, '_fully_initialized', True):
        try:
            dataset.full_init()
        except ValueError as error:
            if hasattr(dataset, 'load_data_list') and not dataset.load_data_list():
                raise ValueError(empty_error.format(describe_dataset(dataset))) from error
            raise
    if len(dataset) == 0:
        raise ValueError(empty_error.format(describe_dataset(dataset)))
    if hasattr(dataset, 'pipeline'):
        dataset.pipeline = _PipelineNamingFiles(dataset.pipeline)
    loader_cfg['dataset'] = dataset
    return Runner.build_dataloader(loader_cfg)


def _test_loader_config(cfg) -> dict:
    """The config's test_dataloader, checked where ``--cfg-options`` can break it."""
    loader = cfg.get('test_dataloader')
    if not isinstance(loader, dict) or not isinstance(loader.get('dataset'), dict):
        raise ValueError(f'the config has no test_dataloader with a dataset (got {loader!r}): '
                         'use an MMSegmentation config with a test split, and do not override '
                         'test_dataloader as a whole with --cfg-options.')
    size = loader.get('batch_size', 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f'test_dataloader.batch_size must be a whole number >= 1, got '
                         f'{size!r}: pass --batch-size N, or --cfg-options '
                         'test_dataloader.batch_size=N.')
    return loader.copy()


def _check_packed(dataset) -> None:
    """The test pipeline must end in PackSegInputs: without it the model's data
    preprocessor fails on the first batch with a bare KeyError 'inputs'."""
    sample = dataset[0]
    if not isinstance(sample, dict) or 'inputs' not in sample or 'data_samples' not in sample:
        keys = sorted(sample) if isinstance(sample, dict) else type(sample).__name__
        raise ValueError(f'the test pipeline gives {keys} per image, not inputs and '
                         'data_samples: test_dataloader.dataset.pipeline must load the image '
                         "and end with dict(type='PackSegInputs'), as mmseg's configs do.")


def build_test_dataloader(cfg, batch_size: Optional[int], max_images: Optional[int]):
    """mmseg's test dataloader, sharded without padding so every image counts once."""
    loader_cfg = _test_loader_config(cfg)
    loader_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False, round_up=False)
    if batch_size is not None:
        if batch_size < 1:  # else the DataLoader's complaint is blamed on data_root below
            raise ValueError(f'--batch-size must be >= 1, got {batch_size}.')
        loader_cfg['batch_size'] = batch_size
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f'--max-images must be >= 1, got {max_images}.')
        loader_cfg['dataset'] = dict(loader_cfg['dataset'], indices=max_images)
    root = cfg.test_dataloader.dataset.get('data_root')
    fix = ('point test_dataloader.dataset.data_root at a Cityscapes-layout folder, e.g. one '
           'made by tools/dataset_converters/make_synthetic_cityscapes.py (--cfg-options '
           'test_dataloader.dataset.data_root=DIR).')
    try:
        dataloader = Runner.build_dataloader(loader_cfg)
    except (FileNotFoundError, ValueError) as error:
        # A missing folder raises FileNotFoundError deep in mmengine, an empty one a numpy
        # "need at least one array to concatenate": neither says which setting to fix.
        raise ValueError(f'the test dataset could not be read from data_root={root!r} '
                         f'({error}): {fix}') from error
    if len(dataloader.dataset) == 0:
        raise ValueError(f'the test dataset is empty (data_root={root!r}): {fix}')
    name_unreadable_files(dataloader.dataset)  # a corrupt PNG fails naming the file
    _check_packed(dataloader.dataset)
    return dataloader
