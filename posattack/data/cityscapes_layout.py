"""The Cityscapes folder layout a synthetic dataset is written in: cities, file stems, the
output folder (refused unless empty or an earlier generation) and the size limits."""
from __future__ import annotations

import shutil
from pathlib import Path

# Real Cityscapes city names, so the file names look exactly like the dataset's.
CITIES = {
    'train': ('aachen', 'bochum', 'bremen', 'cologne', 'darmstadt', 'zurich'),
    'val': ('frankfurt', 'lindau', 'munster'),
}


SPLIT_CODES = {'train': 0, 'val': 1}


FRAME_NUMBER = 19  # every gtFine frame of Cityscapes is the 20th of its snippet: _000019_


MARKER_FILE = '.posattack_synthetic.json'


MIN_SIZE = (32, 64)


def cityscapes_stem(city: str, index: int) -> str:
    """The Cityscapes file stem of image `index` of `city`, e.g. 'aachen_000003_000019'."""
    return f'{city}_{index:06d}_{FRAME_NUMBER:06d}'


def prepare_output_dir(out_dir: Path) -> None:
    """Refuse to write into a directory that holds anything but an earlier generation;
    clear an earlier generation so that no stale image outlives a smaller new one."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f'{out_dir} exists and is not a directory; pass a directory '
                                 'path for the synthetic dataset')
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / MARKER_FILE).is_file():
            raise FileExistsError(
                f'{out_dir} is not empty and was not written by generate_cityscapes; choose '
                'a new or empty directory so that no existing data is overwritten')
        for sub in ('leftImg8bit', 'gtFine'):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def check_arguments(num_train, num_val, size) -> tuple[int, int]:
    for name, value in (('num_train', num_train), ('num_val', num_val)):
        if int(value) != value or value < 0:
            raise ValueError(f'{name} must be a non-negative integer, got {value!r}')
    if num_train + num_val == 0:
        raise ValueError('num_train + num_val is 0: ask for at least one image')
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f'size must be (height, width), got {size!r}') from None
    if height < MIN_SIZE[0] or width < MIN_SIZE[1]:
        raise ValueError(f'size {height}x{width} is too small for a street scene; use at '
                         f'least {MIN_SIZE[0]}x{MIN_SIZE[1]} (height x width)')
    return height, width
