"""Name the file when a test sample cannot be loaded.

A corrupt or truncated PNG in a dataset ends, deep in mmcv's loading transforms, in a
``'NoneType' object has no attribute 'shape'`` or an ``image file is truncated``
traceback that names no file: among 500 images the user cannot tell which one to replace.
:func:`name_unreadable_files` wraps a dataset's ``prepare_data`` so that such a failure is
re-raised as one line naming the image or label map that does not decode.

    dataset = name_unreadable_files(dataloader.dataset)
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

import cv2
import numpy as np

__all__ = ['UnreadableDataError', 'name_unreadable_files', 'undecodable_reason']


class UnreadableDataError(ValueError):
    """A file of the dataset is missing, empty, corrupt or truncated."""


def undecodable_reason(path: str) -> Optional[str]:
    """Why ``path`` is not a readable image (as OpenCV and Pillow see it), else None."""
    if not osp.isfile(path):
        return 'it does not exist'
    if osp.getsize(path) == 0:
        return 'it is empty'
    data = np.fromfile(path, dtype=np.uint8)
    if cv2.imdecode(data, cv2.IMREAD_UNCHANGED) is None:
        return 'OpenCV cannot decode it: corrupt or truncated'
    try:
        from PIL import Image
        with Image.open(path) as image:
            image.load()  # a truncated file fails only when its pixels are read
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError...
        return f'Pillow cannot read it ({error}): corrupt or truncated'
    return None


class _PrepareDataNamingFiles:
    """``dataset.prepare_data`` that names the unreadable file when loading fails.

    A class rather than a closure so that the dataset still pickles for worker processes.
    """

    def __init__(self, dataset, prepare_data):
        self.dataset = dataset
        self.prepare_data = prepare_data

    def __call__(self, index):
        try:
            return self.prepare_data(index)
        except Exception as error:
            info = self.dataset.get_data_info(index)
            for key in ('img_path', 'seg_map_path'):
                path = info.get(key)
                reason = undecodable_reason(path) if isinstance(path, str) else None
                if reason is not None:
                    raise UnreadableDataError(
                        f'test sample {index} cannot be loaded: {key} {path} is unreadable '
                        f'({reason}); replace the file, or remove the image from the '
                        'dataset.') from error
            raise


def name_unreadable_files(dataset):
    """Wrap ``dataset.prepare_data`` (in place, once); returns the dataset."""
    current = dataset.prepare_data
    if not isinstance(current, _PrepareDataNamingFiles):
        dataset.prepare_data = _PrepareDataNamingFiles(dataset, current)
    return dataset

