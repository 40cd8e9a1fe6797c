"""Scoring a segmentation: per region, and across shifted crops.

* :mod:`.regions`: image regions by name (paper halves, center/periphery, border bands,
  grids, frames, mask images), a registry where a new region type goes
  (:func:`~.regions.register_region`);
* :mod:`.metric`: RegionIoUMetric, mmseg's IoUMetric per region (confusion matrices);
* :mod:`.shift_consistency`: do two shifted crops of one image get the same labels?
  (ShiftConsistencyMetric), and :mod:`.consistency`, that evaluation over a test set
  (tools/consistency.py).
"""
from __future__ import annotations

from .metric import RegionIoUMetric, region_confusion, summarize_confusion
from .regions import (REGIONS, RegionLayout, build_region_layout, build_region_masks,
                      known_region_types, register_region, validate_region_specs)
from .shift_consistency import ShiftConsistencyMetric, ShiftPairTTAModel

__all__ = [
    'REGIONS', 'RegionIoUMetric', 'RegionLayout', 'ShiftConsistencyMetric', 'ShiftPairTTAModel',
    'build_region_layout', 'build_region_masks', 'known_region_types', 'region_confusion',
    'register_region', 'summarize_confusion', 'validate_region_specs',
]
