"""posattack: find, remove and measure position-encoding channels in MMSeg models.

Importing the package registers its modules into MMSegmentation's registries
(metrics, hooks, models, transforms) and allowlists the globals that MMEngine
checkpoints hold, so that `custom_imports = dict(imports=['posattack'])` in any MMSeg
config is enough for mmseg's own tools/test.py to use them. Configs name the registered
types by their top-level path (``type='posattack.ChannelRemovalHook'``), which stays put
when modules move.

The house, floor by floor (a module imports only from its own floor or the ones below):

    utils/       file I/O, checkpoint loading, distributed, CLI helpers
    data/        synthetic scenes, the Cityscapes label table
    models/      building a segmentor; the paper authors' head and checkpoint
    probes/      GAPNet, PermuteNet, grid data (Islam et al., Table 1)
    channels/    layer names and capture, rankings, selection, ablations, removal, the hook
    identify/    identification methods behind one interface (flip difference, grid probe)
    training/    AugShift, shift crops
    evaluation/  regions, RegionIoUMetric, shift consistency
    report/      statistics, results, plots, overlays, report.md
    readout/     the position read-out (Islam, Jia & Bruce, ICLR 2020): SPC/MAE per layer
    attack/      settings, feature split, sweep, experiment, the dataloader builder
    profile/     the attack layer by layer in depth
    api/         the attack and the profile as calls that return results (notebooks)
    cli/         the `posattack` command's subcommands (tools/ scripts call them)
"""
from __future__ import annotations

from . import probes  # noqa: F401  registers GAPNet, PermuteNet, GridPatchDataset, ...
from .channels import (ChannelRanking, ChannelRemoval, ChannelRemovalHook, default_layer,
                       list_layer_names, resolve_layer, select_channels)
from .evaluation import (RegionIoUMetric, ShiftConsistencyMetric, ShiftPairTTAModel,
                         build_region_masks)
from .identify import FlipDifferenceAccumulator, identify_channels
from .models.antialiased_resnet import AntialiasedResNetV1c
from .models.authors_deeplab_head import TorchvisionDeepLabHead
from .models.wide_last_stage_resnet import ResNetV1cWideLastStage
from .training import (AugShiftDataPreProcessor, AugShiftEncoderDecoder, AugShiftPair,
                       ShiftConsistencyPairs)
from .utils.checkpoint import load_checkpoint, register_mmengine_loader, register_safe_globals
from .utils.config_scope import register_config_scope

register_safe_globals()
register_mmengine_loader()  # a config's load_from: refused like the CLI checkpoint
register_config_scope()  # `_base_ = ['posattack::_base_/...']` in configs read after this

__version__ = '0.2.0'
__all__ = [
    'AntialiasedResNetV1c', 'AugShiftDataPreProcessor', 'AugShiftEncoderDecoder', 'AugShiftPair',
    'ChannelRanking',
    'ChannelRemoval', 'ChannelRemovalHook', 'FlipDifferenceAccumulator', 'RegionIoUMetric',
    'ResNetV1cWideLastStage',
    'ShiftConsistencyMetric', 'ShiftConsistencyPairs', 'ShiftPairTTAModel',
    'TorchvisionDeepLabHead', 'build_region_masks', 'default_layer', 'identify_channels',
    'list_layer_names', 'load_checkpoint', 'register_safe_globals', 'resolve_layer',
    'select_channels',
]
