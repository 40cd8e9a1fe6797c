"""Bounds on the size of a run, checked before any compute: random draws and the memory the
per-image counts need.

Every setting keeps, per image, its intersections and predicted pixels per test region and
class (:mod:`posattack.report.per_image`), and every process gathers them: memory grows with
draws x counts x images. ``--seeds 100000`` used to grow until the machine gave out. Now
``--seeds`` has a stated maximum, and a run whose counts would not fit in half the machine's
memory is refused with the estimate and the fix.

    check_seeds(opts.seeds)                                  # before the model is loaded
    check_bootstrap(opts.bootstrap)
    check_per_image_memory(len(settings), num_images, num_classes)   # before the sweep
"""
from __future__ import annotations

import os
from typing import Optional

from ..report.per_image import TEST_REGIONS

__all__ = ['MAX_BOOTSTRAP', 'MAX_SEEDS', 'check_bootstrap', 'check_per_image_memory',
           'check_seeds']

# The empirical p-value's floor is 1 / (1 + draws): 1000 draws resolve p = 0.001, and
# Besag & Clifford's sequential p-values say far fewer decide a test (DESIGN.md).
MAX_SEEDS = 1000
# Image bootstrap resamples: the default 2000 puts a 95% interval's ends within a few
# hundredths of a point; 100,000 is far past any use, and their index array (resamples x
# images, int64) stays under a gigabyte for a thousand images. --bootstrap 10**9 failed
# after the whole sweep asking for 45 GiB.
MAX_BOOTSTRAP = 100_000
# Per setting and image: tp and pred, (regions, classes) uint32 each, plus numpy's header
# and the dict entry that holds each array while a pass gathers them.
_BYTES_PER_ARRAY_OVERHEAD = 200


def check_seeds(seeds: int) -> None:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 0 <= seeds <= MAX_SEEDS:
        raise ValueError(f'--seeds must be between 0 and {MAX_SEEDS} random draws per count, '
                         f'got {seeds!r} (19 or more give p < 0.05; each draw is a full '
                         'evaluation and keeps its per-image counts).')


def check_bootstrap(resamples: int) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, int) \
            or not 1 <= resamples <= MAX_BOOTSTRAP:
        raise ValueError(f'--bootstrap must be between 1 and {MAX_BOOTSTRAP} resamples, got '
                         f'{resamples!r} (2000, the default, is plenty for 95% intervals).')


def _physical_memory() -> Optional[int]:
    try:
        return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None


def per_image_bytes(num_settings: int, num_images: int, num_classes: int) -> int:
    """What the per-image counts of a run hold in memory, about."""
    array = len(TEST_REGIONS) * num_classes * 4 + _BYTES_PER_ARRAY_OVERHEAD
    return 2 * num_settings * num_images * array


def check_per_image_memory(num_settings: int, num_images: int, num_classes: int,
                           available: Optional[int] = None) -> None:
    """Refuse a run whose per-image counts would need more than half the memory."""
    available = available if available is not None else _physical_memory()
    need = per_image_bytes(num_settings, num_images, num_classes)
    if available and need > available // 2:
        raise ValueError(f'{num_settings} settings on {num_images} images would keep about '
                         f'{need / 2**30:.1f} GiB of per-image counts, more than half of this '
                         f"machine's {available / 2**30:.1f} GiB: use fewer --seeds or "
                         'counts (--num-channels / --fractions), or --max-images.')
