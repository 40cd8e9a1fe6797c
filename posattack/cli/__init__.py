"""The ``posattack`` command: one subcommand per everyday tool (posattack/cli/main.py).

Each module here holds a tool's parser (``parse_args``) and its run (``main``); the scripts
in tools/ of a clone only call them, so ``posattack attack ...`` and
``python tools/attack.py ...`` are the same tool with the same arguments.
"""
from __future__ import annotations

