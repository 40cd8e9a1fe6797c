"""One progress bar for a whole attack run, and its cost estimate from the first batch.

The unit of work is one setting on one image: a sweep of S settings over N images is N x S
units, whatever passes it takes, and the sequential draw rounds add theirs as they come
(``plan``). One mmengine ProgressBar counts them all, with its ETA, instead of a bar per pass.

After the first batch, the run's length is projected from what that batch cost: the part
every pass pays once per image (the backbone, the identification's extra views, the channel
statistics) and the part each setting pays per image (the head). When the projection passes
``ESTIMATE_THRESHOLD_S`` it is logged before the long wait::

    about 2 h 10 min on this machine for 500 images x 45 settings; --max-images or more
    processes shorten it

It is a projection: the first batch pays one-off costs (kernel selection, memory growth),
so it errs long on short runs; draws a sequential test adds later are not in it.
"""
from __future__ import annotations

import sys
import time
from typing import Optional

from mmengine.logging import print_log
from mmengine.utils import ProgressBar

ESTIMATE_THRESHOLD_S = 180.0  # "a few minutes": shorter runs start without a word


def shard_size(dataloader) -> int:
    """Images this process evaluates (under a launcher, rank 0's progress bar counts its own
    shard: shards differ in size, so counting others' as equal to ours overshoots)."""
    try:
        return len(dataloader.sampler)
    except (AttributeError, TypeError):
        return len(dataloader.dataset)


def format_duration(seconds: float) -> str:
    """'about 2 h 10 min', 'about 12 min', 'about 40 s'."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f'about {seconds:.0f} s'
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f'about {minutes} min'
    return f'about {minutes // 60} h {minutes % 60} min'


class RunProgress:
    """The bar and the estimate of one run; ``enabled=False`` (other ranks, --no-progress)
    keeps the bookkeeping and shows nothing."""

    def __init__(self, num_images: int, enabled: bool = True,
                 threshold_s: float = ESTIMATE_THRESHOLD_S, stream=None):
        self.num_images = int(num_images)
        self.enabled = enabled
        self.threshold_s = threshold_s
        self.stream = stream if stream is not None else sys.stdout
        self.units = 0          # (setting, image) pairs planned so far
        self.settings = 0
        self.passes = 0
        self.bar: Optional[ProgressBar] = None
        self.estimate_s: Optional[float] = None   # the projection made after batch one
        self.started = time.perf_counter()

    def plan(self, num_settings: int, passes: int) -> None:
        """A sweep of ``num_settings`` settings in ``passes`` passes over the images."""
        self.settings += num_settings
        self.passes += passes
        self.units += self.num_images * num_settings
        if self.bar is not None:
            self.bar.task_num = self.units

    def batch_done(self, images: int, settings: int, shared_seconds: float,
                   settings_seconds: float) -> None:
        """One batch: ``shared_seconds`` for what every setting shares, ``settings_seconds``
        for its ``settings`` settings on its ``images`` images."""
        if self.estimate_s is None:
            self.estimate_s = self.project(images, settings, shared_seconds, settings_seconds)
            if self.enabled and self.estimate_s > self.threshold_s:
                print_log(f'{format_duration(self.estimate_s)} on this machine for '
                          f'{self.num_images} images x {self.settings} settings; '
                          '--max-images or more processes shorten it', 'current')
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = ProgressBar(self.units, file=self.stream)
        units = images * settings
        if units:
            self.bar.update(units)

    def project(self, images: int, settings: int, shared_seconds: float,
                settings_seconds: float) -> float:
        """Seconds the planned run takes at the first batch's pace."""
        per_image = shared_seconds / max(images, 1)
        per_unit = settings_seconds / max(images * settings, 1)
        return self.num_images * per_image * max(self.passes, 1) + per_unit * self.units

    def end_pass(self) -> None:
        """A pass ended (log lines may follow): finish the bar's line; it goes on counting."""
        if self.bar is not None:
            self.stream.write('\n')
            self.stream.flush()
