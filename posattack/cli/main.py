"""``posattack SUBCOMMAND ...``: the console command that ``pip install`` puts on the PATH.

    posattack make-synthetic data/synthetic_cityscapes
    posattack train posattack::demo/deeplabv3_r18-tiny_synthetic-cityscapes.py
    posattack attack posattack::demo/deeplabv3_r18-tiny_synthetic-cityscapes.py CKPT
    posattack attack --help

``python -m posattack ...`` is the same. A subcommand's module is imported when it runs.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Optional

__all__ = ['COMMANDS', 'main']

# subcommand -> (module under posattack.cli, its tools/ script, what it does)
COMMANDS = {
    'make-synthetic': ('make_synthetic_cityscapes', 'the synthetic Cityscapes data set'),
    'train': ('train', "train a segmentor with MMEngine's Runner"),
    'identify': ('identify', 'rank channels by how much they encode position (flip difference)'),
    'attack': ('attack', 'the position attack: targeted vs random removal, per-region mIoU'),
    'profile': ('depth_profile', 'the attack layer by layer in depth'),
    'consistency': ('consistency', 'shift consistency (Cons.8 / Cons.16), per region'),
    'convert-authors': ('convert_authors_checkpoint',
                        "the paper authors' DeepLabv3 checkpoint as an MMEngine checkpoint"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ['usage: posattack SUBCOMMAND [ARGS ...]   (posattack SUBCOMMAND --help for its '
             'arguments)', '', 'Find, remove and measure position-encoding channels in '
             'MMSegmentation models.', '', 'subcommands:']
    lines += [f'  {name:<{width}}  {what}' for name, (_, what) in COMMANDS.items()]
    lines += ['', 'Each is also tools/<module>.py in a clone, with the same arguments.']
    return '\n'.join(lines)


def _module(name: str):
    return importlib.import_module(f'posattack.cli.{COMMANDS[name][0]}')


def run(argv: Optional[Sequence[str]] = None) -> int:
    """The exit status of ``posattack argv...`` (argv without the program name)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f'error: unknown subcommand {name!r}: choose from {", ".join(COMMANDS)}.',
              file=sys.stderr)
        return 2
    module = _module(name)
    # identify's main returns the ranking's path; its command() is the exit status
    command = getattr(module, 'command', module.main)
    program = sys.argv[0]
    sys.argv[0] = f'posattack {name}'  # argparse's prog: usage lines read as typed
    try:
        return command(rest)
    finally:
        sys.argv[0] = program


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The console entry (setup.py): run, then leave (a torchrun process group torn down)."""
    code = run(argv)
    from ..utils.distributed import exit_process
    exit_process(code)
