"""Several removal settings through the head in one forward.

On the fast path (:mod:`posattack.attack.feature_split`) every setting of a batch runs the
same code after the attacked tensor, on a tensor that differs only in which channels were
removed. Instead of one head forward per setting, :class:`BatchedSettings` stacks k settings'
edited tensors along the batch dimension (setting j's copy of image i at j * B + i), runs the
head once on the k * B rows, and splits the logits back. On a GPU one large forward keeps the
device busy where k small ones leave it idle; on a CPU it saves the per-call overhead of
every module, which dominates small heads.

Labels are those of one setting at a time (``FeatureSplit.predict_from``):

* each setting's tensor is made by the same ``replace_channels`` call, in the same order (a
  noise ablation draws the same noise);
* the convolutions that read the attacked tensor answer each setting's rows from the clean
  output plus that setting's removed channels (``LinearShortcut.output_for``, the very call
  the one-at-a-time path makes), so their rows are computed alike;
* everything after them treats rows independently at inference (convolutions, BatchNorm
  with running statistics, pooling per image), so stacking changes no row's maths.

k is chosen from memory (:func:`settings_per_pass`): the head holds about
``HEAD_MEMORY_FACTOR`` copies of the attacked tensor per setting, plus the logits at the
padded input size. Usage::

    batched = BatchedSettings(split)             # split: a FeatureSplit on its fast path
    feats = split.prefix(inputs)
    labels = batched.predict_many(feats, inputs, samples,
                                  [Removal([]), Removal([3, 7]), Removal([5, 9])])
    labels[1]   # == split.predict_from(feats, inputs, samples, [3, 7])
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, NamedTuple, Optional

import torch

from ..channels.removal import replace_channels
from .feature_split import FeatureSplit, logits_to_labels

# Per setting, the head's activations in copies of the attacked tensor: DeepLabv3's ASPP holds
# the edited tensor (1), its five branches (5 x 512 of 2048 channels: 1.25), their
# concatenation (1.25) and the bottleneck (0.25); 4 rounds that up.
HEAD_MEMORY_FACTOR = 4
# Beyond a few settings per forward a CPU gains nothing more, and a GPU is already busy.
MAX_SETTINGS_PER_PASS = 8
CPU_MEMORY_SHARE = 0.25  # of the memory available when the sweep starts
CPU_MEMORY_CAP = 4 << 30
GPU_MEMORY_SHARE = 0.5  # of the free device memory


class Removal(NamedTuple):
    """One setting's removal: which channels, replaced how (see replace_channels)."""
    channels: Sequence[int]
    ablation: Any = 'zero'
    mean_values: Any = None


def available_memory(device: torch.device) -> int:
    """Bytes the batched head may use on ``device``: a share of what is free now."""
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_MEMORY_SHARE)
    try:
        with open('/proc/meminfo') as meminfo:
            fields = dict(line.split(':', 1) for line in meminfo)
        available = int(fields['MemAvailable'].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # not Linux: stay at the cap
        available = CPU_MEMORY_CAP / CPU_MEMORY_SHARE
    return int(min(available * CPU_MEMORY_SHARE, CPU_MEMORY_CAP))


def settings_per_pass(attacked: torch.Tensor, padded_size: Sequence[int], num_classes: int,
                      budget_bytes: Optional[int] = None,
                      cap: int = MAX_SETTINGS_PER_PASS) -> int:
    """How many settings one head forward takes: the budget over one setting's estimate
    (``HEAD_MEMORY_FACTOR`` attacked tensors and two logit maps at ``padded_size``), at
    least 1 and at most ``cap``."""
    batch = attacked.shape[0]
    logits = 2 * batch * num_classes * int(padded_size[0]) * int(padded_size[1]) * 4
    per_setting = HEAD_MEMORY_FACTOR * attacked.element_size() * attacked.numel() + logits
    budget = available_memory(attacked.device) if budget_bytes is None else budget_bytes
    return int(max(1, min(cap, budget // max(per_setting, 1))))


def _rows(tensor: torch.Tensor, copies: int) -> torch.Tensor:
    """``tensor`` (B, ...) as ``copies`` blocks of B rows; a view when B is 1 (no copy)."""
    if tensor.shape[0] == 1:
        return tensor.expand(copies, *tensor.shape[1:])
    return tensor.repeat(copies, *([1] * (tensor.dim() - 1)))


class BatchedSettings:
    """Evaluate removal settings on a :class:`FeatureSplit`'s fast path, k per head forward.

    ``max_settings`` fixes k (1: one setting at a time, exactly ``predict_from``); None
    picks it from memory with :func:`settings_per_pass` at the first batch.
    """

    def __init__(self, split: FeatureSplit, max_settings: Optional[int] = None):
        if not split.fast:
            raise ValueError(f'batched settings need the fast path, which is off for this '
                             f'model ({split.why_slow}); evaluate settings one at a time.')
        if max_settings is not None and max_settings < 1:
            raise ValueError(f'settings per head forward must be at least 1, got '
                             f'{max_settings}.')
        self.split = split
        self.max_settings = max_settings
        self.per_pass: Optional[int] = max_settings  # known after the first batch

    def _per_pass(self, attacked: torch.Tensor, samples) -> int:
        if self.per_pass is None:
            meta = samples[0].metainfo
            size = meta.get('pad_shape', meta.get('img_shape'))[:2]
            head = self.split.model.decode_head
            num_classes = getattr(head, 'out_channels', getattr(head, 'num_classes', 1))
            self.per_pass = settings_per_pass(attacked, size, num_classes)
        return self.per_pass

    def predict_many(self, feats: Sequence[torch.Tensor], inputs: torch.Tensor, samples,
                     removals: Sequence[Removal]) -> list[list[torch.Tensor]]:
        """Per removal, the label maps of the batch (as ``FeatureSplit.predict_from``)."""
        attacked = feats[self.split.layer_ref.index]
        per_pass = self._per_pass(attacked, samples)
        labels = []
        for start in range(0, len(removals), per_pass):
            group = [Removal(*removal) for removal in removals[start:start + per_pass]]
            if len(group) == 1:
                labels.append(self.split.predict_from(feats, inputs, samples, *group[0]))
            else:
                labels.extend(self._predict_group(feats, inputs, samples, group))
        return labels

    def _predict_group(self, feats, inputs, samples, group: Sequence[Removal]):
        split, index = self.split, self.split.layer_ref.index
        clean = feats[index]
        copies = len(group)
        edited = [replace_channels(clean, *removal) for removal in group]
        stacked = torch.cat(edited)
        stacked_feats = [stacked if i == index else _rows(feat, copies)
                         for i, feat in enumerate(feats)]
        metas = [sample.metainfo for sample in samples] * copies
        with split.extract_feat_from(stacked_feats), \
                self._shortcut(stacked, clean, [removal.channels for removal in group]):
            seg_logits = split.model.inference(_rows(inputs, copies), metas)
        rows = clean.shape[0]
        labels = []
        for j in range(copies):
            part = seg_logits[j * rows:(j + 1) * rows]
            if split.exact:  # mmseg's own post-processing, as predict_from does
                labels.append(split._labels(split.model.postprocess_result(part, samples)))
            else:
                labels.append(logits_to_labels(split.model, part, samples))
        return labels

    def _shortcut(self, stacked: torch.Tensor, clean: torch.Tensor,
                  channel_lists: Sequence[Sequence[int]]):
        shortcut = self.split.shortcut
        if shortcut is None:
            return nullcontext()
        return _stacked_shortcut(shortcut, stacked, clean, channel_lists)


@contextmanager
def _stacked_shortcut(shortcut, stacked: torch.Tensor, clean: torch.Tensor,
                      channel_lists: Sequence[Sequence[int]]):
    """The linear shortcut on stacked settings: each block of rows answers from the clean
    output plus its own removed channels, then the blocks are concatenated."""
    rows = clean.shape[0]
    indices = [shortcut.channel_index(channels, clean.device) for channels in channel_lists]

    def stacked_forward(conv, original):
        def forward(x):
            if x is not stacked:
                return original(x)
            return torch.cat([
                shortcut.output_for(conv, x[j * rows:(j + 1) * rows], clean, index)
                for j, index in enumerate(indices)])
        return forward

    for conv in shortcut.convs:
        conv.forward = stacked_forward(conv, conv.forward)  # shadows the method
    try:
        yield
    finally:
        for conv in shortcut.convs:
            del conv.forward
