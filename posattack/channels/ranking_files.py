"""Finding and reading ranking files, with errors that name the file.

A posattack ranking is one JSON file with a ``format`` tag; the authors' release is a folder
(or a list) of JSON files, one per order, named by region (``left_*.json``...).
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

from ..utils.fileio import read_json

PathLike = Union[str, os.PathLike]


def guess_format(path: Union[PathLike, Sequence[PathLike]]) -> str:
    if isinstance(path, (list, tuple)) or Path(path).is_dir():
        return 'authors'
    data = read_ranking_json(Path(path))
    return 'posattack' if isinstance(data, dict) and 'format' in data else 'authors'


def read_ranking_json(path: Path) -> Any:
    """The JSON of a ranking file (utils.fileio's reader, with the ranking's fix)."""
    return read_json(path, 'ranking file', 'pass the ranking JSON that tools/identify.py or '
                     'tools/attack.py wrote.')


def authors_files(path: Union[PathLike, Sequence[PathLike]]) -> list[Path]:
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
    else:
        root = Path(path)
        if root.is_dir():
            files = sorted(root.glob('*.json'))
            if not files:
                raise FileNotFoundError(f'No *.json ranking files in {root}.')
        else:
            files = [root]
    if not files:
        raise ValueError("No authors' ranking files given.")
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f'Ranking file not found: {file}')
    return files


_REGION_PREFIX = re.compile(r'^(left|right|top|bottom)[_\-.]', re.IGNORECASE)


def region_from_filename(name: str) -> Optional[str]:
    match = _REGION_PREFIX.match(name)
    return match.group(1).lower() if match else None
