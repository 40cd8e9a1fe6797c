"""Channel-wise position probes (Islam et al., ICCV 2021, Section 3 and Table 1).

Importing this subpackage registers, in mmseg's registries: the models ``GAPNet`` and
``PermuteNet``, the dataset ``GridPatchDataset`` with its transforms ``PlacePatchInGrid`` and
``PackGridInputs``, and the metric ``ProbeAccuracy``. The frozen-backbone probe of a trained
segmentor (:func:`frozen_grid_probe`) turns its read-out weights into a ChannelRanking with one
order per grid cell (``cell_r_c``), for a region-specific attack on any cell.

Usage::

    import posattack.probes
    result = posattack.probes.frozen_grid_probe(model, train_set, test_set)
    result.ranking.save('probe_ranking.json')     # tools/attack.py --attack-region cell_0_0
"""
from .padding import PADDING_MODES, padding_modes, set_padding_mode
from .grid_data import (GridPatchDataset, PackGridInputs, PlacePatchInGrid, cell_name, cell_names,
                        crop_cityscapes_patches, load_patch_folder)
from .models import GAPNet, PermuteNet, shuffle_channels
from .accuracy import ProbeAccuracy, accuracy_summary
from .frozen_probe import FrozenProbeResult, frozen_grid_probe, grid_probe_ranking

__all__ = [
    'FrozenProbeResult', 'GAPNet', 'GridPatchDataset', 'PADDING_MODES', 'PackGridInputs',
    'PermuteNet', 'PlacePatchInGrid', 'ProbeAccuracy', 'accuracy_summary', 'cell_name',
    'cell_names', 'crop_cityscapes_patches', 'frozen_grid_probe', 'grid_probe_ranking',
    'load_patch_folder', 'padding_modes', 'set_padding_mode', 'shuffle_channels',
]
