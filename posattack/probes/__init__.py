"""Channel-wise position probes (Islam et al., ICCV 2021, Section 3 and Table 1).

Importing this subpackage registers, in mmseg's registries: the models ``GAPNet`` and
``PermuteNet``, the dataset ``GridPatchDataset`` with its transforms ``PlacePatchInGrid`` and
``PackGridInputs``, and the metric ``ProbeAccuracy``. The frozen-backbone probe of a trained
segmentor, which turns its read-out weights into a ChannelRanking with one order per grid
cell, is an identification method: :mod:`posattack.identify.grid_probe`.
"""
from __future__ import annotations

from .accuracy import ProbeAccuracy, accuracy_summary
from .grid_data import (GridPatchDataset, PackGridInputs, PlacePatchInGrid, cell_name, cell_names,
                        crop_cityscapes_patches, load_patch_folder)
from .models import GAPNet, PermuteNet, shuffle_channels
from .padding import PADDING_MODES, padding_modes, set_padding_mode

__all__ = [
    'GAPNet', 'GridPatchDataset', 'PADDING_MODES', 'PackGridInputs',
    'PermuteNet', 'PlacePatchInGrid', 'ProbeAccuracy', 'accuracy_summary', 'cell_name',
    'cell_names', 'crop_cityscapes_patches',
    'load_patch_folder', 'padding_modes', 'set_padding_mode', 'shuffle_channels',
]
