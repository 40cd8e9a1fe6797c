"""posattack: find, remove and measure position-encoding channels in MMSeg models.

Importing the package registers its modules into MMSegmentation's registries
(metrics, hooks, models, transforms) and allowlists the globals that MMEngine
checkpoints hold, so that `custom_imports = dict(imports=['posattack'])` in any MMSeg
config is enough for mmseg's own tools/test.py to use them.
"""
from .checkpoint import load_checkpoint, register_safe_globals
from .ranking import ChannelRanking
from .layers import default_layer, list_layer_names, resolve_layer
from .identify import FlipDifferenceAccumulator, identify_channels
from .removal import ChannelRemoval, select_channels
from .hooks import ChannelRemovalHook
from .regions import build_region_masks
from .metrics import RegionIoUMetric
from .shift_crops import AugShiftPair, ShiftConsistencyPairs
from .shift_consistency import ShiftConsistencyMetric, ShiftPairTTAModel
from .aug_shift import AugShiftDataPreProcessor, AugShiftEncoderDecoder
from . import probes  # noqa: F401  registers GAPNet, PermuteNet, GridPatchDataset, ProbeAccuracy
from .authors_deeplab_head import TorchvisionDeepLabHead  # the paper's own DeepLabv3 head

register_safe_globals()

__version__ = '0.1.0'
__all__ = [
    'AugShiftDataPreProcessor', 'AugShiftEncoderDecoder', 'AugShiftPair', 'ChannelRanking',
    'ChannelRemoval', 'ChannelRemovalHook', 'FlipDifferenceAccumulator', 'RegionIoUMetric',
    'ShiftConsistencyMetric', 'ShiftConsistencyPairs', 'ShiftPairTTAModel',
    'TorchvisionDeepLabHead', 'build_region_masks', 'default_layer', 'identify_channels',
    'list_layer_names', 'load_checkpoint', 'register_safe_globals', 'resolve_layer',
    'select_channels',
]
