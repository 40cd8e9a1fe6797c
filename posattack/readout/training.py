"""Train a read-out on cached features and predict with it, as the authors' script does.

The authors (``train_network.py``): MSE loss against the target map, SGD with learning
rate 0.1, momentum 0.9, weight decay 1e-4, batch 32, 15 epochs, the rate divided by 10 at
epoch 10. The same target map serves every image (position does not depend on content).
Here the batch order comes from a seeded generator, so a run repeats to the bit on one
machine. The features are cached (the backbone is frozen), so an epoch costs only the
read-out.

Usage::

    settings = ReadoutTraining(epochs=15, seed=0)
    losses = fit_readout(readout, [features_l1, features_l2], target, settings)
    maps = predict(readout, [test_l1, test_l2])      # (N, H, W), read-out in eval mode
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

__all__ = ['ReadoutTraining', 'fit_readout', 'predict']


@dataclass
class ReadoutTraining:
    """The optimisation of one read-out (the authors' values by default)."""
    epochs: int = 15
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_decay_epochs: Sequence[int] = field(default_factory=lambda: [10])
    seed: int = 0

    def check(self) -> None:
        if self.epochs < 1:
            raise ValueError(f'--epochs must be >= 1, got {self.epochs}.')
        if self.batch_size < 1:
            raise ValueError(f'--readout-batch-size must be >= 1, got {self.batch_size}.')
        if not self.lr > 0:
            raise ValueError(f'--lr must be > 0, got {self.lr}.')

    def to_dict(self) -> dict:
        return dict(asdict(self), lr_decay_epochs=[int(e) for e in self.lr_decay_epochs])


def fit_readout(readout: nn.Module, features: Sequence[torch.Tensor], target: torch.Tensor,
                settings: ReadoutTraining) -> list[float]:
    """Train ``readout`` in place on ``features`` (per layer, (N, C_i, h, w)) towards
    ``target`` (H, W); returns the mean loss of every epoch."""
    settings.check()
    count = len(features[0])
    if count == 0:
        raise ValueError('no training image to fit the read-out on.')
    generator = torch.Generator().manual_seed(int(settings.seed))
    torch.manual_seed(int(settings.seed))   # nothing random inside, but BN and init are seeded
    optimizer = torch.optim.SGD(readout.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    criterion = nn.MSELoss()
    target = target.float()[None, None]
    losses = []
    readout.train()
    for epoch in range(settings.epochs):
        if epoch in settings.lr_decay_epochs:
            for group in optimizer.param_groups:
                group['lr'] *= 0.1
        order = torch.randperm(count, generator=generator)
        total = 0.0
        for start in range(0, count, settings.batch_size):
            index = order[start:start + settings.batch_size]
            output = readout([f[index] for f in features])
            loss = criterion(output, target.expand_as(output))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / count)
    readout.eval()
    return losses


def predict(readout: nn.Module, features: Sequence[torch.Tensor],
            batch_size: int = 64) -> torch.Tensor:
    """The read-out's maps (N, H, W) in eval mode, without gradients."""
    readout.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(features[0]), batch_size):
            outputs.append(readout([f[start:start + batch_size] for f in features])[:, 0])
    return torch.cat(outputs) if outputs else torch.zeros((0, ) + tuple(readout.output_size))
