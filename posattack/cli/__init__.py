"""The ``posattack`` command: one subcommand per everyday tool (posattack/cli/main.py).

Each module here holds a tool's parser (``parse_args``) and its run (``main``); the scripts
in tools/ of a clone only call them, so ``posattack attack ...`` and
``python tools/attack.py ...`` are the same tool with the same arguments.
"""
from __future__ import annotations


def __getattr__(name: str):
    # posattack.cli was the tools' helper module up to 0.1 (now posattack.utils.cli).
    from ..deprecated_paths import moved_name
    return moved_name(__name__, name)
