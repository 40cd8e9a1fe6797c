"""Batches whose images differ in size, split so that mmseg's preprocessor takes them.

mmseg's ``SegDataPreProcessor`` asserts, outside training, that every image of a batch has
one size ("The image size in a batch should be the same."): a test set of mixed sizes with
``batch_size > 1`` used to stop with that assertion in the middle of a sweep (mmseg's own
test loop stops the same way). Such a batch is evaluated one image at a time instead,
which gives each image exactly its batch-1 prediction, and the log says so once.

    for part in same_size_parts(batch, warn):   # batch itself when the sizes agree
        data = model.data_preprocessor(part, False)
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Optional

__all__ = ['same_size_parts']

MIXED_SIZES_NOTE = ('the test images differ in size within a batch: evaluating those '
                    'batches one image at a time (mmseg\'s preprocessor needs one size per '
                    'batch; the predictions are those of batch size 1).')


def same_size_parts(batch: dict, warn: Optional[Callable[[str], None]] = None
                    ) -> Iterator[dict]:
    """``batch``, or one batch per image when its images differ in (C, H, W)."""
    inputs = batch.get('inputs') if isinstance(batch, dict) else None
    if not isinstance(inputs, (list, tuple)) or len({tuple(x.shape) for x in inputs}) <= 1:
        yield batch
        return
    if warn is not None:
        warn(MIXED_SIZES_NOTE)
    for index in range(len(inputs)):
        yield {key: [value[index]] if isinstance(value, (list, tuple)) else value
               for key, value in batch.items()}
