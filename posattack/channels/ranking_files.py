"""Finding and reading ranking files, with errors that name the file.

A posattack ranking is one JSON file with a ``format`` tag; the authors' release is a folder
(or a list) of JSON files, one per order, named by region (``left_*.json``...).
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, Union

PathLike = Union[str, os.PathLike]


def _guess_format(path: Union[PathLike, Sequence[PathLike]]) -> str:
    if isinstance(path, (list, tuple)) or Path(path).is_dir():
        return 'authors'
    data = _read_json(Path(path))
    return 'posattack' if isinstance(data, dict) and 'format' in data else 'authors'


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f'Ranking file not found: {path}')
    try:
        with open(path, encoding='utf-8') as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f'{path}: not valid JSON ({error}).') from None
    except UnicodeDecodeError:  # binary junk: the codec's message would not name the file
        raise ValueError(f'{path}: not a ranking file (binary content, not UTF-8 JSON); pass '
                         'the ranking JSON that tools/identify.py or tools/attack.py '
                         'wrote.') from None


def _authors_files(path: Union[PathLike, Sequence[PathLike]]) -> list[Path]:
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


def _region_from_filename(name: str) -> Optional[str]:
    match = _REGION_PREFIX.match(name)
    return match.group(1).lower() if match else None
