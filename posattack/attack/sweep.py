"""One backbone pass per batch, many removal settings evaluated on it.

``run_sweep`` walks the dataloader once or twice:

* pass 1 runs the prefix on x (and, when identifying, on the views the identification
  method asks for, e.g. the flips), feeds the method and the channel means, and evaluates
  every setting
  whose channels are already known (clean; random under an ablation that reads no
  statistics, such as zero; targeted when a
  ranking was given);
* pass 2, only when needed, evaluates the settings that waited for the ranking or the means.

Each setting feeds its own (regions x classes x classes) confusion matrix, summed over
images and, under a distributed launcher, over processes. Per image, only what the
statistical tests resample is kept (per class intersections and areas in the test regions,
:mod:`posattack.report.per_image`); nothing else is cached across batches, so memory stays flat as
the dataset grows.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
import torch
from mmengine import dist
from mmengine.logging import print_log

from ..channels.ablations import Ablation, ChannelStatistics, get_ablation
from ..channels.forward import global_average_pool
from ..channels.modes import CLEAN, RANDOM, TARGETED
from ..channels.ranking import ChannelRanking
from ..channels.selection import select_channels
from ..data.mixed_sizes import same_size_parts
from ..evaluation.metric import region_confusion
from ..evaluation.regions import build_region_masks, validate_region_specs
from ..identify.base import build_identification_method, identification_method_class
from ..report.per_image import PerImageCounts, PerImageRecorder
from .batched_settings import BatchedSettings, Removal
from .feature_split import FeatureSplit
from .run_progress import RunProgress, shard_size
from .settings import AttackSetting


@dataclass
class OverlayRequest:
    """Which three settings an overlay panel shows, and who keeps the best images."""
    clean: AttackSetting
    targeted: AttackSetting
    random: AttackSetting
    selector: object  # posattack.report.overlay.OverlaySelector


@dataclass
class SweepState:
    """What a sweep produces; every field is already reduced across processes."""
    confusions: dict[str, np.ndarray] = field(default_factory=dict)
    ranking: Optional[ChannelRanking] = None
    # each channel's mean over the images (a (C,) tensor), or, for an ablation that also
    # reads the std (gaussian_noise), the ChannelStatistics with both
    mean_values: Union[torch.Tensor, ChannelStatistics, None] = None
    num_images: int = 0
    per_image: Optional[PerImageCounts] = None


def _batches(model, dataloader):
    """Batches exactly as mmseg's test loop sees them: through the data preprocessor (a batch
    of images of different sizes one image at a time, said once)."""
    said = []

    def warn(note):
        if not said:
            print_log(note, 'current')
            said.append(note)

    for batch in dataloader:
        for part in same_size_parts(batch, warn):
            data = model.data_preprocessor(part, False)
            yield data['inputs'], data['data_samples']


def _channels_for(setting: AttackSetting, num_total: int,
                  ranking: Optional[ChannelRanking]) -> list[int]:
    if setting.mode == CLEAN:
        return []
    if setting.mode == TARGETED:
        return select_channels(TARGETED, num_total, ranking=ranking,
                               region=setting.attack_region, num_channels=setting.num_channels)
    return select_channels(RANDOM, num_total, num_channels=setting.num_channels,
                           seed=setting.seed)


class _Pass:
    """Evaluate a fixed list of settings over the dataloader."""

    def __init__(self, split: FeatureSplit, settings: Sequence[AttackSetting],
                 channels: dict[str, list[int]], region_specs, num_classes: int,
                 ignore_index: int, ablation: Ablation, mean_values,
                 overlay: Optional[OverlayRequest], count_keys: Sequence[str],
                 recorder: Optional[PerImageRecorder] = None,
                 settings_per_pass: Optional[int] = None):
        self.split = split
        self.batched = BatchedSettings(split, settings_per_pass) if split.fast else None
        self.settings = list(settings)
        self.channels = channels
        self.region_specs = region_specs
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.ablation = ablation
        self.mean_values = mean_values if ablation.needs_statistics else None
        self.overlay = overlay
        self.count_keys = set(count_keys)
        self.recorder = recorder
        self.confusions: dict[str, np.ndarray] = {}

    def evaluate(self, feats, inputs, samples) -> None:
        labels_of = {}
        removals = []
        for setting in self.settings:
            channels = self.channels[setting.key]
            # Nothing to replace (clean): no statistics needed, and in pass 1 of an ablation
            # that reads them there are none yet.
            ablation, means = (self.ablation, self.mean_values) if channels else ('zero', None)
            removals.append(Removal(channels, ablation, means))
        if self.batched is not None:  # several settings per head forward, same labels
            predicted = self.batched.predict_many(feats, inputs, samples, removals)
        else:
            predicted = [self.split.predict_full(inputs, samples, *removal)
                         for removal in removals]
        for setting, labels in zip(self.settings, predicted):
            labels_of[setting.key] = [label.cpu().numpy() for label in labels]
            if setting.key in self.count_keys:
                self._accumulate(setting.key, labels_of[setting.key], samples)
        if self.overlay is not None:
            self._offer_overlays(labels_of, samples)

    def _accumulate(self, key: str, labels: list[np.ndarray], samples) -> None:
        for label, sample in zip(labels, samples):
            gt = sample.gt_sem_seg.data[0].cpu().numpy()
            _, masks = build_region_masks(self.region_specs, *gt.shape)
            conf = region_confusion(label, gt, masks, self.num_classes, self.ignore_index)
            if self.recorder is not None:
                self.recorder.add(key, sample.img_path, conf)
            if key in self.confusions:
                self.confusions[key] += conf
            else:
                self.confusions[key] = conf.astype(np.int64)

    def _offer_overlays(self, labels_of, samples) -> None:
        request = self.overlay
        for i, sample in enumerate(samples):
            gt = sample.gt_sem_seg.data[0].cpu().numpy()
            clean = labels_of[request.clean.key][i]
            targeted = labels_of[request.targeted.key][i]
            valid = gt != self.ignore_index
            changed = float((clean != targeted)[valid].mean()) if valid.any() else 0.0
            payload = dict(img_path=sample.img_path, gt=gt, preds={
                request.clean.label: clean,
                request.targeted.label: targeted,
                request.random.label: labels_of[request.random.key][i],
            })
            request.selector.offer(changed, sample.img_path, payload)


def _pooled_squares(tensor: torch.Tensor) -> torch.Tensor:
    """Per image and channel, the mean of the squared values over positions (float64)."""
    squares = tensor.double().square()
    return squares.flatten(2).mean(-1) if squares.ndim > 2 else squares


def _all_reduce_confusions(confusions: dict[str, np.ndarray], keys: Sequence[str],
                           shape) -> dict[str, np.ndarray]:
    """Sum confusion matrices over processes (a rank with no images contributes zeros)."""
    if not keys:
        # A pass that only collects statistics (pass 1 of a mean or gaussian_noise resume
        # whose clean setting is done) scores nothing; np.stack([]) would raise.
        return {}
    stacked = torch.from_numpy(np.stack([
        confusions.get(key, np.zeros(shape, dtype=np.int64)) for key in keys]))
    dist.all_reduce(stacked, op='sum')
    return {key: stacked[i].numpy() for i, key in enumerate(keys)}


def run_sweep(split: FeatureSplit, dataloader, settings: Sequence[AttackSetting],
              num_total: int, region_specs, num_classes: int, ignore_index: int = 255,
              ranking: Optional[ChannelRanking] = None, ablation: Union[str, Ablation] = 'zero',
              identify: bool = False, identification_method: str = 'flip_difference',
              overlay: Optional[OverlayRequest] = None,
              ranking_info: Optional[dict] = None,
              on_pass_done: Optional[Callable[[SweepState, list[AttackSetting]], None]] = None,
              progress: Union[bool, RunProgress] = True, record_per_image: bool = True,
              settings_per_pass: Optional[int] = None) -> SweepState:
    """Evaluate ``settings`` on ``dataloader``; see the module docstring for the passes.

    ``on_pass_done(state, finished_settings)`` is called after each pass, on every rank,
    with reduced confusions: the caller writes results there, so that an interrupted run
    keeps every finished pass. ``record_per_image=False`` keeps no per-image counts (then
    ``state.per_image`` stays None and no bootstrap is possible; benchmarks use it).
    ``progress``: a bar over every (setting, image) of the sweep, with a cost estimate after
    the first batch; a :class:`RunProgress` shared by several sweeps makes it one bar for all.
    ``settings_per_pass``: settings stacked into one head forward on the fast path (1: one
    at a time; None: as many as memory allows, :mod:`posattack.attack.batched_settings`).
    """
    if any(s.mode == TARGETED for s in settings) and ranking is None and not identify:
        raise ValueError('targeted settings need a ranking: pass one or identify on the fly.')
    if identify:
        identification_method_class(identification_method)  # an unknown name fails here
    state = SweepState(ranking=ranking)
    num_regions = len(validate_region_specs(region_specs))
    conf_shape = (num_regions, num_classes, num_classes)
    # one object for the whole sweep: the noise ablation then draws fresh noise per batch
    ablation = get_ablation(ablation)
    need_means = ablation.needs_statistics
    need_std = 'std' in ablation.statistics

    def ready(setting):
        if setting.mode == CLEAN:
            return True
        if need_means:
            return False
        return setting.mode == RANDOM or ranking is not None

    first = [s for s in settings if ready(s)]
    second = [s for s in settings if not ready(s)]
    # Overlays need clean, targeted and random of one N in the same pass as the targeted one.
    overlay_pass = None
    if overlay is not None:
        overlay_pass = 1 if overlay.targeted in first else 2
    rank = dist.get_rank()

    def overlay_extra(pass_settings, overlay_here):
        if not overlay_here:
            return []
        return [s for s in (overlay.clean, overlay.targeted, overlay.random)
                if s not in pass_settings]

    def run_pass(pass_settings, collect: bool, count_keys, overlay_here):
        extra = overlay_extra(pass_settings, overlay_here)
        evaluated = list(pass_settings) + extra
        channels = {s.key: _channels_for(s, num_total, state.ranking) for s in evaluated}
        recorder = PerImageRecorder(validate_region_specs(region_specs)) \
            if record_per_image else None
        runner = _Pass(split, evaluated, channels, region_specs, num_classes, ignore_index,
                       ablation, state.mean_values, overlay if overlay_here else None,
                       count_keys, recorder, settings_per_pass)
        identification = build_identification_method(identification_method, num_total) \
            if collect and identify else None
        mean_sum = torch.zeros(num_total, dtype=torch.float64)
        square_sum = torch.zeros(num_total, dtype=torch.float64)
        count = 0
        with torch.no_grad():
            for inputs, samples in _batches(split.model, dataloader):
                started = time.perf_counter()
                feats = split.prefix(inputs)
                attacked = split.attacked(feats)
                if attacked.shape[1] != num_total:
                    raise ValueError(
                        f'the attacked tensor {split.layer_ref.name!r} has '
                        f'{attacked.shape[1]} channels but the sweep was set up for '
                        f'{num_total}: the ranking or the settings belong to another model.')
                if collect:
                    mean_sum += global_average_pool(attacked).double().sum(dim=0)
                    if need_std:  # per image over positions, like the means
                        square_sum += _pooled_squares(attacked).sum(dim=0)
                    if identification is not None:
                        # the same method as tools/identify.py, so both rank alike; the
                        # images' own features are the ones computed above
                        views = identification.views(
                            inputs, [s.metainfo['img_shape'] for s in samples])
                        identification.observe(attacked, [
                            split.attacked(split.prefix(view)) for view in views])
                count += len(samples)
                shared = time.perf_counter()
                runner.evaluate(feats, inputs, samples)
                tracker.batch_done(len(samples), len(evaluated), shared - started,
                                   time.perf_counter() - shared)
        tracker.end_pass()
        totals = torch.tensor([count], dtype=torch.int64)
        dist.all_reduce(totals, op='sum')
        if int(totals) == 0:
            raise ValueError('the dataset yielded no images: check data_root and the split.')
        state.num_images = int(totals)
        if collect:
            dist.all_reduce(mean_sum, op='sum')
            state.mean_values = (mean_sum / state.num_images).float()
            if need_std:
                dist.all_reduce(square_sum, op='sum')
                mean = mean_sum / state.num_images
                variance = (square_sum / state.num_images - mean.square()).clamp(min=0)
                state.mean_values = ChannelStatistics(mean=state.mean_values,
                                                      std=variance.sqrt().float())
            if identification is not None:
                identification.all_reduce()
                state.ranking = identification.to_ranking(split.layer_ref.name,
                                                          ranking_info or {})
        keys = [s.key for s in pass_settings]
        state.confusions.update(_all_reduce_confusions(runner.confusions, keys, conf_shape))
        if recorder is not None:
            state.per_image = recorder.gather(keys).merged(state.per_image)
        if on_pass_done is not None:
            on_pass_done(state, list(pass_settings))

    collect = identify or need_means
    # One bar over both passes (and, given a RunProgress, over the caller's other sweeps)
    tracker = progress if isinstance(progress, RunProgress) else RunProgress(
        shard_size(dataloader), enabled=bool(progress) and rank == 0)
    planned = len(first) + len(second) + len(overlay_extra(first, overlay_pass == 1)) + len(
        overlay_extra(second, overlay_pass == 2) if second else [])
    tracker.plan(planned, int(bool(first or collect)) + int(bool(second)))
    if first or collect:
        run_pass(first, collect, [s.key for s in first], overlay_pass == 1)
    if second:
        run_pass(second, False, [s.key for s in second], overlay_pass == 2)
    if overlay is not None and overlay_pass is None:
        print_log('overlays skipped: the overlay settings were not evaluated.', 'current')
    return state
