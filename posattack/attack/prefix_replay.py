"""Compute what comes before a layer inside the backbone once per batch, replay it per setting.

A layer inside the backbone (``backbone.layer2``) has no fast path: removing its channels
changes what the later stages see, so every setting needs a forward through them. What
comes *before* the layer does not change with the setting, though. During the clean
forward of a batch (``prefix``), :class:`PrefixReplaySplit` records every module call that
finishes before the layer's module starts, and the layer's own output. For each setting
(``predict_full``) it then runs the whole forward again, but each of those outermost calls
returns a copy of its recorded output instead of computing it, and the layer itself returns
its recorded output with the setting's channels replaced. Only the code after the layer
really runs; there, as on the fast path, the convolutions that read the edited tensor reuse
their clean output plus the removed channels' contribution (``LinearShortcut``; float
rounding may differ, ``exact=True`` turns it off) and logits become labels by
``logits_to_labels``.

Why calls, not modules: a module may run several times (a shared activation); each call
before the layer is replayed in order and later calls run for real. Why a copy: a later
in-place operation (``ReLU(inplace=True)``, ``out += identity``) must not change the record
that the next setting replays. Replay assumes the forward is deterministic in which modules
it calls and in what order, as inference code is; every record must be consumed, else the
batch is refused with an error rather than scored wrong.

Usage::

    split = PrefixReplaySplit(model, resolve_layer(model, 'backbone.layer2'))
    feats = split.prefix(inputs)                   # clean forward up to the layer, recorded
    labels = split.predict_full(inputs, samples, channels=[3, 7])   # replays, then the rest
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, Optional

import torch
from torch import nn

from ..channels.layers import replace_output, select_output
from ..channels.removal import replace_channels
from .feature_split import FeatureSplit, logits_to_labels
from .linear_shortcut import LinearShortcut


def _copy(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.clone()
    if isinstance(output, list):
        return [_copy(item) for item in output]
    if isinstance(output, tuple):
        copied = [_copy(item) for item in output]
        return type(output)(*copied) if hasattr(output, '_fields') else tuple(copied)
    if isinstance(output, dict):
        return {key: _copy(value) for key, value in output.items()}
    return output


class _Call:
    __slots__ = ('module', 'start', 'end', 'output')

    def __init__(self, module: nn.Module, start: int):
        self.module, self.start, self.end, self.output = module, start, None, None


class _CallRecorder:
    """Forward pre/post hooks on every module: when each call started, ended, what it gave."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.clock = 0
        self.calls: list[_Call] = []
        self._open: dict[int, list[_Call]] = {}
        self._handles = []

    def _pre(self, module, inputs):
        call = _Call(module, self.clock)
        self.clock += 1
        self.calls.append(call)
        self._open.setdefault(id(module), []).append(call)

    def _post(self, module, inputs, output):
        call = self._open[id(module)].pop()
        call.end = self.clock
        self.clock += 1
        call.output = output

    def __enter__(self):
        for module in self.model.modules():
            if module is self.model:
                continue
            self._handles.append(module.register_forward_pre_hook(self._pre))
            self._handles.append(module.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False


class _Replay:
    """Per module, the recorded outputs its calls return, in order, for one batch."""

    def __init__(self, inputs: torch.Tensor, queues: dict[nn.Module, list[Any]],
                 target: nn.Module, target_output: Any):
        self.inputs = inputs
        self.queues = queues
        self.target = target
        self.target_output = target_output

    @contextmanager
    def applied(self, target_output: Any):
        """Replay the record; the layer's first call returns ``target_output`` as it is."""
        pending = {module: list(outputs) for module, outputs in self.queues.items()}
        pending.setdefault(self.target, [])
        fresh = {module: False for module in pending}
        fresh[self.target] = True

        def replaying(module, original):
            def forward(*args, **kwargs):
                if module is self.target and fresh[module]:
                    fresh[module] = False
                    return target_output
                if pending[module]:
                    return _copy(pending[module].pop(0))
                return original(*args, **kwargs)
            return forward

        for module in pending:
            module.forward = replaying(module, module.forward)  # shadows the method
        try:
            yield
        finally:
            for module in pending:
                del module.forward
        left = [type(module).__name__ for module, outputs in pending.items() if outputs]
        if left or fresh[self.target]:
            names = ', '.join(left[:3]) or type(self.target).__name__
            raise RuntimeError(
                f'prefix replay: recorded calls ({names}) '
                'were not made again, so this model does not run the same modules in the same '
                'order each time; profile this layer with tools/attack.py --layer instead.')


def outermost_calls_before(calls: Sequence[_Call], target: nn.Module) -> list[_Call]:
    """The calls that end before ``target``'s first call starts and no such call contains."""
    first = next((c for c in calls if c.module is target), None)
    if first is None or first.end is None:
        return []
    chosen: list[_Call] = []
    last_end = -1
    for call in calls:  # in start order, properly nested
        if call.end is None or call.end >= first.start or call.start < last_end:
            continue
        chosen.append(call)
        last_end = call.end
    return chosen


class PrefixReplaySplit(FeatureSplit):
    """A :class:`FeatureSplit` whose slow path replays, per setting, what precedes the layer.

    On the fast path (an indexed backbone/neck output the head reads) it is FeatureSplit
    itself. Off it, per setting: the recorded calls are replayed, the layer returns its
    recorded output with the channels replaced, the convolutions that read that tensor
    answer from their clean output plus the removed channels' contribution
    (:class:`posattack.attack.linear_shortcut.LinearShortcut`, unless ``exact``), and the logits
    become labels as on the fast path (:func:`posattack.attack.feature_split.logits_to_labels`).
    ``predict_full`` on inputs other than those of the last ``prefix`` (e.g. flipped images
    during identification) runs the plain slow path.
    """

    def __init__(self, model, layer_ref, exact: bool = False):
        super().__init__(model, layer_ref, exact=exact)
        self._replay: Optional[_Replay] = None
        self._after_shortcut: Optional[LinearShortcut] = None

    def prefix(self, inputs: torch.Tensor):
        if self.fast:
            return super().prefix(inputs)
        self._replay = None
        # The record must outlive the stop: the layer's hook stops the forward right after
        # the layer, so ancestors never end and are rightly left out.
        with _CallRecorder(self.model) as recorder:
            feats = super().prefix(inputs)
        target = self.layer_ref.module
        first = next((c for c in recorder.calls if c.module is target), None)
        if first is None or first.output is None:
            return feats
        chosen = outermost_calls_before(recorder.calls, target)
        queues: dict[nn.Module, list[Any]] = {}
        for call in chosen:
            queues.setdefault(call.module, []).append(call.output)
        self._replay = _Replay(inputs, queues, target, first.output)
        if self._after_shortcut is None and not self.exact:
            self._after_shortcut = LinearShortcut(self._convs_after(chosen))
        return feats

    def _convs_after(self, replayed: Sequence[_Call]) -> list[nn.Module]:
        """Convolutions that still run per setting: neither replayed nor inside the layer
        (the shortcut and the replay both patch ``forward``; one owner per module)."""
        skipped = set()
        for module in [call.module for call in replayed] + [self.layer_ref.module]:
            skipped.update(id(m) for m in module.modules())
        return [m for m in self.model.modules() if isinstance(m, nn.Conv2d)
                and id(m) not in skipped]

    def predict_full(self, inputs, data_samples, channels, ablation='zero', mean_values=None):
        replay = self._replay
        if self.fast or replay is None or replay.inputs is not inputs:
            return super().predict_full(inputs, data_samples, channels, ablation, mean_values)
        clean = select_output(replay.target_output, self.layer_ref)
        # a fresh tensor even when nothing is removed: later in-place ops must not reach
        # the record the next setting replays
        edited = replace_channels(clean, channels, ablation, mean_values) if channels \
            else clean.clone()
        output = replace_output(replay.target_output, self.layer_ref, edited)
        shortcut = self._after_shortcut.applied(edited, clean, channels) \
            if self._after_shortcut is not None else nullcontext()
        metas = [sample.metainfo for sample in data_samples]
        with replay.applied(output), shortcut:
            seg_logits = self.model.inference(inputs, metas)
        if self.exact:
            return self._labels(self.model.postprocess_result(seg_logits, data_samples))
        return logits_to_labels(self.model, seg_logits, data_samples)
