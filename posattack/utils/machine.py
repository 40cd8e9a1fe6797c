"""One line that says what machine a measurement ran on (for stamps beside tables)."""
from __future__ import annotations

import datetime
import os
import platform


def describe_machine() -> str:
    """e.g. '2 CPU cores (x86_64, Linux), 24 GiB, torch 2.13.0+cpu, no GPU'."""
    import torch
    try:
        memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
        memory_text = f', {memory:.0f} GiB'
    except (ValueError, OSError, AttributeError):
        memory_text = ''
    gpu = (f'GPU {torch.cuda.get_device_name(0)}' if torch.cuda.is_available() else 'no GPU')
    return (f'{os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()})'
            f'{memory_text}, torch {torch.__version__}, {gpu}')


def measured_by(command: str) -> str:
    """The opening of a generated table's stamp: 'Measured <date> on <machine> by `<command>`',
    so that every table in the docs names when, where and how it was made in the same words."""
    return (f'Measured {datetime.date.today().isoformat()} on {describe_machine()} by '
            f'`{command}`')
