"""How concentrated a layer's position signal is: top-k share and Gini of flip-difference scores.

For a layer with C channels, let ``s_c >= 0`` be channel c's flip-difference score, the
mean over images of ``|z_c(x) - z_c(flip x)|`` (z: global average pool; horizontal flip for
the horizontal scores, vertical flip for the vertical ones). Sorted in decreasing order,
``s_(1) >= s_(2) >= ... >= s_(C)``, and with ``S = sum_c s_c``:

* **top-f share**: ``share(f) = (s_(1) + ... + s_(k)) / S`` with ``k = max(1, round(f C))``,
  the same count ``--fractions f`` removes (``posattack.channels.ranking.resolve_channel_count``).
  Equal scores give ``k / C``; all of the signal in one channel gives 1.
* **Gini coefficient**: with the scores sorted in *increasing* order ``x_1 <= ... <= x_C``,
  ``G = sum_i (2i - C - 1) x_i / (C S)``. Equal scores give 0; all of the signal in one
  channel gives ``(C - 1) / C``, the largest value C channels allow.

A layer whose position signal sits in few channels has a high top-1% share and a Gini near
1; one that spreads it over all channels has shares near f and a Gini near 0. Both are
scale-free (multiplying every score by a constant changes nothing), so layers of different
widths and activation scales can be compared along the depth. A layer with ``S = 0`` (no
flip changes any pooled value) has no defined concentration: every value is None.

Usage::

    concentration([0.0, 0.0, 3.0, 1.0], fractions=(0.25, 0.5))
    # {'top_25%': 0.75, 'top_50%': 1.0, 'gini': 0.625}
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

DEFAULT_SHARE_FRACTIONS = (0.01, 0.05, 0.1)


def share_key(fraction: float) -> str:
    """'top_1%' for 0.01: the key a share is stored under in profile.json."""
    return f'top_{fraction * 100:g}%'


def _scores(scores: Sequence[float]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError('concentration needs at least one channel score, got none.')
    if not np.all(np.isfinite(values)):
        raise ValueError('channel scores hold NaN or infinite values; the identification '
                         'pass saw non-finite activations.')
    if np.any(values < 0):
        raise ValueError('concentration reads magnitudes (|z(x) - z(flip x)|); got negative '
                         'scores: pass the absolute flip differences, not the signed ones.')
    return values


def top_share(scores: Sequence[float], fraction: float) -> Optional[float]:
    """Share of the total score in the top ``max(1, round(fraction C))`` channels."""
    values = _scores(scores)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f'fraction must lie in (0, 1], got {fraction!r}.')
    total = values.sum()
    if total <= 0:
        return None
    count = max(1, int(round(fraction * values.size)))
    return float(np.sort(values)[::-1][:count].sum() / total)


def gini(scores: Sequence[float]) -> Optional[float]:
    """``sum_i (2i - C - 1) x_i / (C S)`` over the increasingly sorted scores; None if S = 0."""
    values = np.sort(_scores(scores))
    total = values.sum()
    if total <= 0:
        return None
    count = values.size
    weights = 2.0 * np.arange(1, count + 1) - count - 1
    return float((weights * values).sum() / (count * total))


def concentration(scores: Sequence[float], fractions: Sequence[float] = DEFAULT_SHARE_FRACTIONS
                  ) -> dict[str, Optional[float]]:
    """``{'top_1%': ..., 'top_5%': ..., 'top_10%': ..., 'gini': ...}`` for one score vector."""
    result: dict[str, Optional[float]] = {share_key(f): top_share(scores, f) for f in fractions}
    result['gini'] = gini(scores)
    return result
