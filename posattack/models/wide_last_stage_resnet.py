"""ResNetV1cWideLastStage: mmseg's ResNetV1c with only its last stage made wider.

The seed-robustness study (docs/seed_robustness.md) asks whether a wider *attacked* tensor
makes the position effect more consistent across training seeds. posattack attacks the
backbone's last stage, the tensor the decode head reads, so that is the one stage to widen:
widening every stage (a larger ``base_channels``) would change the whole network and cost
about four times the compute, where this changes one stage.

ResNet builds stage ``i`` with ``planes = base_channels * 2**i`` and gives no per-stage
width, so this subclass multiplies ``planes`` by ``last_stage_widen`` in the one call of
``make_res_layer`` that builds the last stage. Its first block reads the previous stage's
channels (``inplanes``, untouched) and, since the channel count changes, gets a 1x1
projection shortcut from ResLayer as any widening block does. Every other stage, the stem
and the initialisation are ResNetV1c's own. ``feat_dim`` (the last stage's output channels)
is corrected to the widened value, so a decode head reading ``in_index=3`` must set
``in_channels`` to ``base_channels * 2**(num_stages - 1) * expansion * last_stage_widen``
(256 for the demo's 16-base ResNet-18 widened 2x).
"""
from __future__ import annotations

from mmseg.models.backbones import ResNetV1c
from mmseg.registry import MODELS


@MODELS.register_module()
class ResNetV1cWideLastStage(ResNetV1c):
    """ResNetV1c whose last stage has ``last_stage_widen`` times its usual width.

    Args:
        last_stage_widen: integer factor for the last stage's width (1: ResNetV1c itself).
        **kwargs: ResNetV1c's arguments.
    """

    def __init__(self, last_stage_widen: int = 2, **kwargs):
        if not isinstance(last_stage_widen, int) or last_stage_widen < 1:
            raise ValueError(f'last_stage_widen={last_stage_widen!r} must be an integer >= 1; '
                             'use 1 for plain ResNetV1c, 2 to double the last stage')
        # read by make_res_layer, which ResNet.__init__ calls: set before it
        self._last_stage_widen = last_stage_widen
        self._stages_built = 0
        super().__init__(**kwargs)
        self.feat_dim *= last_stage_widen

    def make_res_layer(self, **kwargs):
        self._stages_built += 1
        if self._stages_built == len(self.stage_blocks):  # the last stage
            kwargs['planes'] *= self._last_stage_widen
        return super().make_res_layer(**kwargs)
