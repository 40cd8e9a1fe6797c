"""Every profiled layer's flip-difference identification in one pass over the test images.

:func:`identify_layers` runs x and its flips once per batch and captures every layer from the
same forward; :func:`identification_entry` is what identification.json keeps of a layer.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import torch
from mmengine import dist
from mmengine.utils import ProgressBar

from ..channels.layers import capture, resolve_layer, unwrap_model
from ..identify.flip_difference import FlipDifferenceAccumulator
from .concentration import DEFAULT_SHARE_FRACTIONS, concentration


def identify_layers(model, dataloader, layers: Sequence[str], channels: dict[str, int],
                    progress: bool = True) -> dict[str, FlipDifferenceAccumulator]:
    """Flip-difference sums for every layer in one pass: x, hflip, vflip run once per batch.

    The batch is cut where the model needs it: only ``extract_feat`` when every layer is in
    the backbone or neck, the whole forward otherwise. ``channels`` gives each layer's
    channel count: a process whose shard is empty still joins the sums with zeros.
    """
    model = unwrap_model(model)
    refs = [resolve_layer(model, layer) for layer in layers]
    in_features = all(ref.module_path.split('.')[0] in ('backbone', 'neck') for ref in refs)
    run = model.extract_feat if in_features else (lambda x: model(x, None, mode='tensor'))
    accumulators = {ref.name: FlipDifferenceAccumulator(int(channels[ref.name])) for ref in refs}
    rank = dist.get_rank()
    try:
        total = len(dataloader.sampler)
    except (AttributeError, TypeError):
        total = len(dataloader.dataset)
    bar = ProgressBar(total) if progress and rank == 0 and total else None
    with torch.no_grad():
        for batch in dataloader:
            data = model.data_preprocessor(batch, False)
            inputs, samples = data['inputs'], data['data_samples']
            count = inputs.shape[0]
            # every layer's method asks for the same views (the flips): ask the first
            views = next(iter(accumulators.values())).views(
                inputs, [s.metainfo['img_shape'] for s in samples])
            with ExitStack() as stack:
                caps = [stack.enter_context(capture(model, ref)) for ref in refs]
                run(torch.cat([inputs] + views))
            for ref, cap in zip(refs, caps):
                if cap.output is None:
                    raise RuntimeError(f'layer {ref.name!r} did not run during inference; '
                                       'profile layers on the inference path.')
                parts = cap.output.split(count)
                accumulators[ref.name].observe(parts[0], list(parts[1:]))
            if bar is not None:
                bar.update(count)
    if bar is not None:
        bar.file.write('\n')
    for layer in layers:
        accumulators[layer].all_reduce()
        if accumulators[layer].count == 0:
            raise ValueError('the test dataloader yielded no images: nothing to profile; '
                             'check data_root and --max-images.')
    return accumulators


def identification_entry(layer: str, acc: FlipDifferenceAccumulator) -> dict:
    horizontal = (acc.sums['abs_horizontal'] / acc.count).tolist()
    vertical = (acc.sums['abs_vertical'] / acc.vertical_count).tolist()
    return dict(layer=layer, num_channels=acc.num_channels, num_images=acc.count,
                abs_horizontal=horizontal, abs_vertical=vertical,
                concentration=dict(horizontal=concentration(horizontal, DEFAULT_SHARE_FRACTIONS),
                                   vertical=concentration(vertical, DEFAULT_SHARE_FRACTIONS)))
