"""Run a segmentor in two halves around the attacked tensor.

The sweep evaluates many removal settings per batch. Everything up to the attacked tensor
is the same for all of them, so it runs once (``prefix``); only what comes after it runs per
setting (``predict_from``). For an EncoderDecoder attacked at a backbone (or neck) output
in 'whole' test mode, "what comes after" is the neck and the decode head: we run mmseg's
own ``inference`` and ``postprocess_result`` with ``extract_feat`` answering from the
cached, edited features, so predictions are exactly those of mmseg's test loop.

On top of that, convolutions that read the attacked tensor itself reuse their clean output
per batch (``LinearShortcut``): exact maths, float rounding may differ; ``exact=True``
turns it off for bit-identical logits.

Anywhere else (slide inference, a layer inside the backbone, a segmentor that does not go
through ``extract_feat``) the split falls back to one full forward per setting with a
removal hook: slower, same answer.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from typing import Optional

import torch
from mmseg.models.utils import resize

from ..channels.forward import forward_to_layer
from ..channels.layers import LayerRef, select_output
from ..channels.removal import ChannelRemoval, replace_channels
from .linear_shortcut import LinearShortcut

FAST_PATH_MODULES = ('backbone', 'neck')


class FeatureSplit:
    """A segmentor cut at ``layer_ref``: ``prefix`` once, ``predict_from`` per setting."""

    def __init__(self, model, layer_ref: LayerRef, exact: bool = False):
        self.model = model
        self.layer_ref = layer_ref
        self.fast = self._fast_path_reason() is None
        self.exact = exact
        self.shortcut = None
        if self.fast and not exact:
            self.shortcut = LinearShortcut([getattr(model, 'neck', None), model.decode_head])

    def _fast_path_reason(self) -> Optional[str]:
        model, ref = self.model, self.layer_ref
        if not (hasattr(model, 'extract_feat') and hasattr(model, 'inference')
                and hasattr(model, 'postprocess_result')):
            return 'the segmentor has no extract_feat/inference/postprocess_result'
        if ref.module_path not in FAST_PATH_MODULES or ref.index is None:
            return f'layer {ref.name!r} is not an indexed backbone or neck output'
        if ref.module_path == 'neck' and not getattr(model, 'with_neck', False):
            return 'the model has no neck'
        test_cfg = getattr(model, 'test_cfg', None) or {}
        if test_cfg.get('mode', 'whole') != 'whole':
            return f"test_cfg.mode is {test_cfg.get('mode')!r}, not 'whole'"
        return None

    @property
    def why_slow(self) -> Optional[str]:
        """Why the fast path is off (None when it is on): for the log."""
        return self._fast_path_reason()

    def prefix(self, inputs: torch.Tensor) -> Sequence[torch.Tensor]:
        """The outputs of the attacked module (a tuple; ``attacked`` picks ours).

        Off the fast path the sweep still needs the attacked tensor (channel count,
        identification, means): the model runs only as far as it, and the tuple holds it alone.
        """
        if not self.fast:
            return (forward_to_layer(self.model, self.layer_ref, inputs), )
        if self.layer_ref.module_path == 'backbone':
            return tuple(self.model.backbone(inputs))
        return tuple(self.model.extract_feat(inputs))

    def attacked(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if not self.fast:
            return feats[0]
        return select_output(feats, self.layer_ref)  # a bad index names the valid ones

    @contextmanager
    def extract_feat_from(self, feats: Sequence[torch.Tensor]):
        """While active, ``model.extract_feat`` answers ``feats`` (through the neck when the
        attacked tensor is a backbone output), whatever its input."""
        model = self.model
        needs_neck = self.layer_ref.module_path == 'backbone' and getattr(model, 'with_neck', False)

        def extract_feat(_inputs):
            return model.neck(list(feats)) if needs_neck else list(feats)

        model.extract_feat = extract_feat  # instance attribute shadows the method
        try:
            yield
        finally:
            del model.extract_feat

    def predict_from(self, feats: Sequence[torch.Tensor], inputs: torch.Tensor, data_samples,
                     channels: Sequence[int], ablation: str = 'zero',
                     mean_values: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """Predicted label maps (ori_shape, int64) with ``channels`` replaced."""
        edited = list(feats)
        index = self.layer_ref.index
        edited[index] = replace_channels(feats[index], channels, ablation, mean_values)
        metas = [sample.metainfo for sample in data_samples]
        with self.extract_feat_from(edited), self._shortcut(edited[index], feats[index],
                                                             channels):
            seg_logits = self.model.inference(inputs, metas)
        if self.exact:  # mmseg's own post-processing, logits kept on the samples
            return self._labels(self.model.postprocess_result(seg_logits, data_samples))
        return logits_to_labels(self.model, seg_logits, data_samples)

    def _shortcut(self, edited, clean, channels):
        if self.shortcut is None:
            return nullcontext()
        return self.shortcut.applied(edited, clean, channels)

    def predict_full(self, inputs: torch.Tensor, data_samples, channels: Sequence[int],
                     ablation: str = 'zero',
                     mean_values: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """The slow path: one whole forward with a removal hook."""
        with ChannelRemoval(self.model, self.layer_ref.name, channels, ablation=ablation,
                            mean_values=mean_values):
            return self._labels(self.model.predict(inputs, data_samples))

    @staticmethod
    def _labels(samples) -> list[torch.Tensor]:
        return [sample.pred_sem_seg.data[0] for sample in samples]


def logits_to_labels(model, seg_logits: torch.Tensor, data_samples) -> list[torch.Tensor]:
    """Label maps at ori_shape, as mmseg 1.2.2's ``postprocess_result`` makes them.

    The same steps (crop the padding, undo a test-time flip, resize to ori_shape unless the
    logits already have it, take the first maximum) without building PixelData per image,
    and with ``max(0).indices``,
    which picks the same index as ``argmax`` at a third of its cost on CPU: per setting,
    this step is a large share of a small model's head.
    """
    if seg_logits.shape[1] == 1:  # sigmoid heads threshold instead; keep mmseg's code
        return FeatureSplit._labels(model.postprocess_result(seg_logits, data_samples))
    _, _, height, width = seg_logits.shape
    labels = []
    for i, sample in enumerate(data_samples):
        meta = sample.metainfo
        padding = meta['img_padding_size'] if 'img_padding_size' in meta else meta.get(
            'padding_size', [0] * 4)
        left, right, top, bottom = padding
        logits = seg_logits[i:i + 1, :, top:height - bottom, left:width - right]
        if meta.get('flip', None):
            logits = logits.flip(dims=(3, ) if meta.get('flip_direction') == 'horizontal'
                                 else (2, ))
        if tuple(logits.shape[-2:]) != tuple(meta['ori_shape'][:2]):
            # At equal size bilinear resizing weighs each pixel by exactly 1 and its
            # neighbours by 0, so skipping it gives the same logits, at no cost.
            logits = resize(logits, size=meta['ori_shape'], mode='bilinear',
                            align_corners=model.align_corners, warning=False)
        labels.append(logits[0].max(dim=0).indices)
    return labels
