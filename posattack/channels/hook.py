"""An MMEngine hook that removes channels while mmseg validates or tests (or trains).

Any MMSeg config can run its evaluation with channels removed, through mmseg's own
tools/test.py, by adding ``configs/_base_/posattack/channel_removal.py`` to ``_base_`` or::

    custom_imports = dict(imports=['posattack'], allow_failed_imports=False)
    custom_hooks = [dict(type='ChannelRemovalHook', layer='backbone:3', ranking='ranking.json',
                         region='overall', num_channels=100, mode='targeted', ablation='zero')]
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmseg.registry import HOOKS

from .ablations import ablation_names, get_ablation
from .channel_statistics import channel_statistics
from .layers import default_layer, resolve_layer, unwrap_model
from .modes import EXPLICIT, RANDOM, SELECTION_MODES, TARGETED
from .ranking import ChannelRanking
from .removal import ChannelRemoval
from .selection import is_integer_at_least, select_channels, validate_selection_args

__all__ = ['ChannelRemovalHook']

PHASES = ('train', 'val', 'test')
_SHOWN_IDS = 10  # how many channel ids the log line lists


@HOOKS.register_module()
class ChannelRemovalHook(Hook):
    """Remove channels of one layer during val and test epochs (optionally train iterations).

    Selection (see :func:`posattack.channels.selection.select_channels`): ``mode='targeted'``
    takes the top ``num_channels`` (or ``fraction``) of ``ranking``'s ``region`` order;
    ``'random'`` draws as many with ``seed``; ``'explicit'`` removes ``channels=[...]``.
    ``ranking`` (a JSON path from tools/identify.py, or a ChannelRanking) is read only when
    ``mode='targeted'``, when the hook is built, so a missing file fails at once;
    ``ranking_format='authors'`` reads the paper's released files (a directory of them).
    ``layer=None`` is the tensor the decode head consumes. The hook is attached at
    ``before_{val,test}_epoch`` and removed at ``after_*_epoch`` (and per iteration in training
    when ``apply_in`` lists ``'train'``). On the first forward it checks the tensor's channel
    count against the ranking's.

    ``ablation='mean'`` writes each channel's mean activation instead of zero. The means are
    computed at every ``before_test_epoch`` / ``before_val_epoch`` from the first
    ``mean_num_images`` images of that loop's dataloader (``None``: all of them), with the
    model unmodified. That costs one extra pass up to the layer over those images (the full
    predict path when ``test_cfg.mode='slide'``), each time the loop runs; in distributed runs
    the sums are all-reduced so that every rank uses the same means. Mean ablation is not
    offered during training (the means would go stale as the weights move).
    ``ablation='gaussian_noise'`` adds noise at each channel's std, from the same pass (see
    :mod:`posattack.channels.ablations`, where new ablations are registered).

    Usage (in a config)::

        custom_imports = dict(imports=['posattack'], allow_failed_imports=False)
        custom_hooks = [dict(type='ChannelRemovalHook', ranking='ranking.json', num_channels=100)]
    """

    priority = 'NORMAL'

    def __init__(self,
                 layer: Optional[str] = None,
                 ranking: Union[str, os.PathLike, ChannelRanking, None] = None,
                 region: str = 'overall',
                 mode: str = 'targeted',
                 num_channels: Optional[int] = None,
                 fraction: Optional[float] = None,
                 channels: Optional[Sequence[int]] = None,
                 seed: int = 0,
                 ablation: str = 'zero',
                 mean_num_images: Optional[int] = 100,
                 apply_in: Union[str, Sequence[str]] = ('val', 'test'),
                 ranking_format: str = 'posattack'):
        if ablation not in ablation_names():
            raise ValueError(f'ChannelRemovalHook: unknown ablation {ablation!r}; choose one of '
                             f'{", ".join(map(repr, ablation_names()))}.')
        # mean / gaussian_noise read each channel's statistics: one pass before each epoch
        self._needs_statistics = get_ablation(ablation).needs_statistics
        if mode not in SELECTION_MODES:
            raise ValueError(f'ChannelRemovalHook: unknown mode {mode!r}; choose one of '
                             f'{", ".join(map(repr, SELECTION_MODES))}.')
        self.apply_in = self._check_phases(apply_in)
        if self._needs_statistics and 'train' in self.apply_in:
            raise ValueError(
                f"ChannelRemovalHook: ablation={ablation!r} is not supported in training "
                f"(the means go stale as the weights change); use ablation='zero' or drop "
                f"'train' from apply_in.")
        if mean_num_images is not None and not is_integer_at_least(mean_num_images, 1):
            raise ValueError(
                f'ChannelRemovalHook: mean_num_images must be a positive integer or None '
                f'(all images), got {mean_num_images!r}.')
        if layer is not None and (not isinstance(layer, str) or not layer.strip()):
            raise ValueError(
                f'ChannelRemovalHook: layer must be a name such as "backbone:3" or None '
                f'(the tensor the decode head consumes), got {layer!r}.')
        # Only a targeted removal reads the ranking: switching a config's mode to 'random' or
        # 'explicit' must not require the ranking file to exist.
        self.ranking_source = ranking if isinstance(ranking, (str, os.PathLike)) else None
        self.ranking = self._load_ranking(ranking, ranking_format) if mode == TARGETED else None
        validate_selection_args(mode, num_channels, fraction, seed, channels, self.ranking, region)

        self.layer = layer
        self.region = region
        self.mode = mode
        self.num_channels = num_channels
        self.fraction = fraction
        self.explicit_channels = list(channels) if channels is not None else None
        self.seed = seed
        self.ablation = ablation
        self.mean_num_images = mean_num_images

        # With a ranking C is known now, so the selection (and its errors) happen here.
        self.channels: Optional[list[int]] = (
            self._select(int(self.ranking.num_channels)) if self.ranking is not None else None)
        self.mean_values: Optional[torch.Tensor] = None
        self.statistics = None  # ChannelStatistics of the last pass (mean / gaussian_noise)
        self.layer_name: Optional[str] = None
        self._removal: Optional[ChannelRemoval] = None
        self._checked_num_total: Optional[int] = None

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _check_phases(apply_in: Union[str, Sequence[str]]) -> tuple[str, ...]:
        phases = (apply_in,) if isinstance(apply_in, str) else tuple(apply_in)
        unknown = [p for p in phases if p not in PHASES]
        if unknown or not phases:
            raise ValueError(f'ChannelRemovalHook: apply_in must list some of {PHASES}, got '
                             f'{apply_in!r}.')
        return phases

    @staticmethod
    def _load_ranking(ranking: Any, ranking_format: str) -> Optional[ChannelRanking]:
        if ranking is None or isinstance(ranking, ChannelRanking):
            return ranking
        if not isinstance(ranking, (str, os.PathLike)):
            raise TypeError(f'ChannelRemovalHook: ranking must be a path to a ranking JSON or a '
                            f'ChannelRanking, got {type(ranking).__name__}.')
        path = os.fspath(ranking)
        if not (os.path.isfile(path) or (ranking_format == 'authors' and os.path.isdir(path))):
            raise FileNotFoundError(
                f'ChannelRemovalHook: ranking file {path!r} not found (working directory '
                f'{os.getcwd()}). Make one with `python tools/identify.py CONFIG CHECKPOINT --out '
                f'ranking.json`, then point the hook at it, e.g. `--cfg-options '
                f'custom_hooks.0.ranking=/path/to/ranking.json`; or use mode="random".')
        return ChannelRanking.load(path, format=ranking_format)

    def _select(self, num_total: int) -> list[int]:
        return select_channels(self.mode,
                               num_total,
                               ranking=self.ranking,
                               region=self.region,
                               num_channels=self.num_channels,
                               fraction=self.fraction,
                               seed=self.seed,
                               channels=self.explicit_channels)

    # ------------------------------------------------------------------ attach / detach
    def _model(self, runner) -> torch.nn.Module:
        return unwrap_model(runner.model)  # DDP and MMEngine wrappers hide the segmentor

    def _layer_name(self, model: torch.nn.Module) -> str:
        if self.layer_name is None:
            name = resolve_layer(
                model, self.layer if self.layer is not None else default_layer(model)).name
            ranked_layer = getattr(self.ranking, 'layer', None)
            if ranked_layer and ranked_layer != name:
                print_log(
                    f'ChannelRemovalHook: the ranking was made for layer {ranked_layer!r} but the '
                    f'hook removes channels of {name!r}; set layer={ranked_layer!r} if that was '
                    f'meant.',
                    logger='current',
                    level=logging.WARNING)
            self.layer_name = name
        return self.layer_name

    def _resolve_channels(self, num_total: int) -> list[int]:
        """Called by the removal at the first forward, with the tensor's real channel count."""
        if self.ranking is not None and num_total != int(self.ranking.num_channels):
            source = self.ranking_source or 'the ranking'
            raise ValueError(
                f'ChannelRemovalHook: {source} was made for a tensor of '
                f'{self.ranking.num_channels} '
                f'channels (layer {getattr(self.ranking, "layer", "?")!r}), but layer '
                f'{self.layer_name!r} of '
                f'this model gives {num_total}. Identify the channels of this model '
                f'(tools/identify.py) or set layer= to the layer the ranking was made for.')
        if self.channels is None or self._checked_num_total != num_total:
            self.channels = self._select(num_total)
        if self._checked_num_total is None:
            shown = ', '.join(map(str, self.channels[:_SHOWN_IDS]))
            more = ', ...' if len(self.channels) > _SHOWN_IDS else ''
            detail = {TARGETED: f'region={self.region!r}', RANDOM: f'seed={self.seed}',
                      EXPLICIT: 'explicit ids'}[self.mode]
            print_log(
                f'ChannelRemovalHook: removing {len(self.channels)} of {num_total} channels of '
                f'{self.layer_name!r} ({self.mode}, {detail}, ablation={self.ablation!r}): '
                f'[{shown}{more}]',
                logger='current')
        self._checked_num_total = num_total
        return self.channels

    def _attach(self, runner, dataloader=None) -> None:
        if self._removal is not None:
            return
        model = self._model(runner)
        layer_name = self._layer_name(model)
        statistics = None
        if self._needs_statistics:
            amount = f'the first {self.mean_num_images}' if self.mean_num_images else 'all'
            print_log(
                f'ChannelRemovalHook: computing channel means of {layer_name!r} over {amount} '
                f'images of the dataloader, for {self.ablation} ablation.',
                logger='current')
            statistics = channel_statistics(model, layer_name, dataloader,
                                            num_images=self.mean_num_images)
            self.mean_values = statistics.mean
            self.statistics = statistics
        self._removal = ChannelRemoval(model,
                                       layer_name,
                                       self._resolve_channels,
                                       ablation=self.ablation,
                                       mean_values=statistics).attach()

    def _detach(self) -> None:
        if self._removal is not None:
            self._removal.detach()
            self._removal = None

    @property
    def active(self) -> bool:
        """Whether channels are being removed right now."""
        return self._removal is not None and self._removal.active

    # ------------------------------------------------------------------ runner events
    def before_run(self, runner) -> None:
        self._layer_name(self._model(runner))  # an unknown layer fails before any data is loaded

    def before_val_epoch(self, runner) -> None:
        if 'val' in self.apply_in:
            self._attach(runner, runner.val_dataloader if self._needs_statistics else None)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._detach()

    def before_test_epoch(self, runner) -> None:
        if 'test' in self.apply_in:
            self._attach(runner, runner.test_dataloader if self._needs_statistics else None)

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._detach()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        # Per iteration, so that validation inside training runs with its own setting.
        if 'train' in self.apply_in:
            self._attach(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._detach()

    def after_run(self, runner) -> None:
        self._detach()  # also if a loop ended without its after_*_epoch
