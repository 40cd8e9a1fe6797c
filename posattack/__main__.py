"""``python -m posattack SUBCOMMAND ...``: the ``posattack`` command (posattack/cli/main.py)."""
from __future__ import annotations

from .cli.main import main

if __name__ == '__main__':
    main()
