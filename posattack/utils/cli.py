"""What the command-line tools share: parsing region arguments, reporting bad input.

    parser.add_argument('--regions', nargs='+', type=parse_region_arg)
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction)
    add_run_arguments(parser)  # the four options every model-running tool takes
    try:
        run(args)
    except BAD_INPUT_ERRORS as error:
        return report_bad_input(error)
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction

__all__ = [
    'BAD_INPUT_ERRORS', 'CfgOptionsAction', 'add_run_arguments', 'default_work_dir',
    'parse_region_arg', 'report_bad_input'
]

# What bad input (files, layer names, counts, settings, a mismatched work dir) raises.
BAD_INPUT_ERRORS = (ValueError, KeyError, IndexError, FileNotFoundError, RuntimeError)


def parse_region_arg(text: str):
    """'paper' | 'halves' | 'border[=K]' | 'grid[=RxC]' | 'frame[=F]' -> a region spec."""
    name, _, value = text.partition('=')
    if name in ('paper', 'halves') and not value:
        return name
    try:
        if name == 'border':
            return dict(type='border', bands=int(value or 4))
        if name == 'grid':
            rows, _, cols = (value or '3x3').partition('x')
            return dict(type='grid', rows=int(rows), cols=int(cols or rows))
        if name == 'frame':
            value = value or '0.1'
            thickness = int(value) if value.isdigit() else float(value)
            return dict(type='frame', thickness=thickness)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f'bad region {text!r}: use paper, halves, border=K, grid=RxC or frame=F '
        '(F a fraction of the shorter side in (0, 1), or a whole number of pixels).')


class CfgOptionsAction(DictAction):
    """mmengine's DictAction, with a usage error instead of a traceback for a pair that is
    not KEY=VALUE (DictAction unpacks ``kv.split('=')`` unchecked)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for pair in values or []:
            key, equals, _ = pair.partition('=')
            if not equals or not key:
                raise argparse.ArgumentError(
                    self, f'{pair!r} is not KEY=VALUE: write e.g. '
                    '--cfg-options test_dataloader.batch_size=1')
        super().__call__(parser, namespace, values, option_string)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every tool that loads a config and a checkpoint takes, declared once so
    that they read and fail alike: --trust-checkpoint, --cfg-options (KEY=VALUE checked),
    --launcher, --dist-timeout and --local_rank (torch.distributed.launch passes it;
    torchrun does not); and the epilog that says how bad input is reported."""
    # here, not at the top: distributed imports torch, which tools that only report
    # (compare_rankings.py) should not pay for
    from posattack.utils.distributed import DEFAULT_DIST_TIMEOUT, LAUNCHERS
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load a checkpoint that needs globals outside the allowlist '
                        '(runs arbitrary code from the file: only for files you trust)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config settings, as in mmseg tools/test.py')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='distributed launcher (torchrun: pytorch)')
    parser.add_argument('--dist-timeout', type=float, default=DEFAULT_DIST_TIMEOUT,
                        help='under a launcher, seconds a process waits for the others in '
                        'any collective before every process ends, naming the rank that '
                        'stopped (default %(default)s)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.epilog = 'Errors print one line; set POSATTACK_DEBUG=1 to see the traceback.'


def default_work_dir(config: str, name: str) -> str:
    """``work_dirs/<config name>/<name>``: where a tool writes when not told (mmseg's tools
    write to ``work_dirs/<config name>``; each posattack tool has a folder of its own below it,
    e.g. ``attack``, or a file, identify's ``ranking.json``, so that an attack and a profile of
    one config never share files)."""
    return osp.join('work_dirs', osp.splitext(osp.basename(config))[0], name)


def _original_message(message: str) -> str:
    """The last line of an error re-raised from a DataLoader worker (torch wraps it in a
    'Caught ... in DataLoader worker process' header and the worker's traceback)."""
    if 'Original Traceback' not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    return last.split(': ', 1)[1] if ': ' in last else last


def report_bad_input(error: BaseException) -> int:
    """Print one line that says what is wrong (no traceback from deep inside mmengine) and
    return exit status 2; with POSATTACK_DEBUG set, re-raise instead."""
    if os.environ.get('POSATTACK_DEBUG'):
        raise error
    # str(KeyError) would add quotes
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    line = _original_message(str(message))
    if 'torch.distributed' in sys.modules:  # under a launcher: name the rank that stopped
        from .distributed import collective_failure_line, post_failure
        collective = collective_failure_line(error)
        if collective is not None:
            line = collective
        else:  # the others may wait on this process: tell them why it stops
            post_failure(line)
    print(f'error: {line}', file=sys.stderr)
    return 2
