"""Top-1 accuracy of a probe model, as an MMEngine metric (mmseg's METRICS).

Reads the ``{'pred_label', 'gt_label'}`` dicts that GAPNet / PermuteNet return in
``mode='predict'``; ``process`` / ``compute_metrics`` follow MMEngine's BaseMetric, so results
are collected across processes for free.

Usage (config)::

    test_evaluator = dict(type='ProbeAccuracy')
    # -> {'probe/accuracy': 97.5, 'probe/mean_class_accuracy': 97.4, 'probe/num_samples': 400}
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS

__all__ = ['ProbeAccuracy', 'accuracy_summary']


def accuracy_summary(predictions: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """Accuracy and mean per-class accuracy (%) over the classes that occur in ``labels``.

    Usage::

        accuracy_summary([0, 1, 1], [0, 1, 0])
        # {'accuracy': 66.67, 'mean_class_accuracy': 75.0, ...}
    """
    predictions, labels = np.asarray(predictions, np.int64), np.asarray(labels, np.int64)
    if predictions.shape != labels.shape or predictions.ndim != 1:
        raise ValueError(f'predictions and labels must be 1-D and of equal length, got '
                         f'{predictions.shape} and {labels.shape}.')
    if labels.size == 0:
        raise ValueError('No predictions to score: the test set is empty.')
    correct = predictions == labels
    per_class = [correct[labels == c].mean() for c in np.unique(labels)]
    return {'accuracy': float(correct.mean() * 100),
            'mean_class_accuracy': float(np.mean(per_class) * 100),
            'num_samples': int(labels.size)}


@METRICS.register_module()
class ProbeAccuracy(BaseMetric):
    """Top-1 accuracy (%) of predicted class ids against the ground truth."""

    default_prefix: Optional[str] = 'probe'

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if sample.get('gt_label') is None:
                raise ValueError('ProbeAccuracy needs ground-truth labels: the test dataset must '
                                 'yield data_samples (the class id of every input).')
            self.results.append((int(sample['pred_label']), int(sample['gt_label'])))

    def compute_metrics(self, results: list) -> dict[str, float]:
        predictions, labels = zip(*results) if results else ((), ())
        return accuracy_summary(predictions, labels)
