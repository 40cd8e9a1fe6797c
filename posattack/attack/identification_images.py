"""Rank the channels on images the attack does not score (held-out identification).

A ranking chosen on the scored images is selected on the noise of those images: the
targeted set then looks worse than random partly because it was picked where it hurt (issue
22 reports it on the former demo model).
The rank tests of :mod:`posattack.report.rank_tests` are exact only when the ranking never saw
the scored images. So by default identification reads the config's *train* images through
the *test* pipeline (images only: labels are never used), capped at ``max_images``, and
refuses a split that shares an image with the test set. ``identify_on='test'`` keeps the old
same-image identification, and every verdict then says so.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence
from typing import Optional

from mmengine.logging import print_log

from ..channels.ranking import ChannelRanking
from ..data.dataloader import build_split_dataloader
from ..identify.run import identify_channels

IDENTIFY_ON_CHOICES = ('train', 'val', 'test')
SAME_IMAGES = 'test'
DEFAULT_IDENTIFY_ON = 'train'
DEFAULT_IDENTIFY_MAX_IMAGES = 500   # Cityscapes train has 2975; 500 x 3 views is ~1/2 an epoch


def dataset_image_paths(dataset) -> list[str]:
    """Absolute image paths of an mmseg dataset, in its order."""
    paths = []
    for index in range(len(dataset)):
        path = dataset.get_data_info(index).get('img_path')
        paths.append(osp.abspath(path) if path else f'<image {index}>')
    return paths


def check_disjoint(identify_paths: Sequence[str], test_paths: Sequence[str], split: str) -> None:
    """Refuse an identification split that shares images with the scored ones."""
    shared = sorted(set(identify_paths) & set(test_paths))
    if shared:
        raise ValueError(
            f'--identify-on {split} shares {len(shared)} image(s) with the test set (e.g. '
            f'{shared[0]}): the ranking would be chosen on scored images; pick a disjoint split '
            '(--identify-on train), or --identify-on test to accept a flagged same-image ranking.')


def identification_record(split: str, paths: Sequence[str]) -> dict:
    """What ranking.json and the fingerprint keep of the identification images."""
    return dict(split=split, num_images=len(paths),
                images=sorted(osp.basename(p) for p in paths))


def held_out_loader(cfg, split: str, test_dataset, batch_size: Optional[int],
                    max_images: Optional[int] = None):
    """The dataloader of the first ``max_images`` images of ``split`` (test pipeline), checked
    before any forward pass.

    The cap is applied to the dataset and the shards are not padded, so that under a
    distributed launcher the processes together read exactly these images, each once: the
    ranking, and the images ranking.json records, are then the one-process ones.

    Raises a one-line ValueError when the split is not configured, cannot be read, is empty,
    or shares an image with the test set.
    """
    if split not in IDENTIFY_ON_CHOICES or split == SAME_IMAGES:
        raise ValueError(f'held-out identification reads train or val, not {split!r}.')
    try:
        loader = build_split_dataloader(cfg, split, batch_size=batch_size,
                                        max_images=max_images, pad_shards=False)
    except (ValueError, OSError) as error:
        # e.g. a config whose train data_root is not on this machine
        raise ValueError(f'--identify-on {split}: cannot read the {split} images ({error}); '
                         f'set {split}_dataloader.dataset.data_root, pass a --ranking, or '
                         '--identify-on test (a flagged same-image ranking).') from None
    if len(loader.dataset) == 0:
        raise ValueError(f'--identify-on {split}: the split has no images (check its '
                         'data_root and img_path), so no channel can be ranked; fix the config '
                         'or pick another split.')
    check_disjoint(dataset_image_paths(loader.dataset), dataset_image_paths(test_dataset), split)
    return loader


def identify_held_out(model, loader, layer, split: str, num_scored: int,
                      model_info: dict, progress: bool = True) -> ChannelRanking:
    """The ranking from the held-out ``loader`` (:func:`held_out_loader`, already capped),
    its images recorded in the ranking's model fingerprint."""
    used = dataset_image_paths(loader.dataset)
    print_log(f'identifying position channels on {len(used)} {split} images (held out from the '
              f'{num_scored} scored images; labels unused).', 'current')
    info = dict(model_info, identification=identification_record(split, used))
    return identify_channels(model, loader, layer=layer, num_images=None,
                             progress=progress, model_info=info)


def ranking_source(opts, ranking: Optional[ChannelRanking], test_dataset) -> dict:
    """Where the ranking came from, and whether it saw the scored images (True, False, or
    None when a given ranking does not record its images)."""
    if opts.ranking:
        record = (ranking.model or {}).get('identification') if ranking is not None else None
        if not isinstance(record, dict) or 'images' not in record:
            return dict(kind='given', path=opts.ranking, on_scored_images=None,
                        note='the ranking file does not record its images: a valid test needs '
                             'it identified on images other than the scored ones')
        scored = {osp.basename(p) for p in dataset_image_paths(test_dataset)}
        overlap = len(scored & set(record['images']))
        return dict(kind='given', path=opts.ranking, split=record.get('split'),
                    num_images=record.get('num_images'), overlap=overlap,
                    on_scored_images=overlap > 0)
    if opts.identify_on == SAME_IMAGES:
        return dict(kind='identified', split=SAME_IMAGES, on_scored_images=True,
                    num_images=len(test_dataset))
    record = ((ranking.model or {}).get('identification') or {}) if ranking is not None else {}
    return dict(kind='identified', split=opts.identify_on, on_scored_images=False,
                num_images=record.get('num_images'), max_images=opts.identify_max_images)
