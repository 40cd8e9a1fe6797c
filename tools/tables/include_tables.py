"""Copy generated tables into a Markdown file, verbatim, between markers.

    python tools/tables/include_tables.py README.md

Every block of the form

    <!-- include: docs/tables/demo_pooled.md -->
    ... (replaced) ...
    <!-- end include -->

gets the current content of the named file (relative to the repository root), so a table in
the README is always the one a command in the repository wrote, never one typed by hand.
"""
from __future__ import annotations

import argparse
import os.path as osp
import re
import sys

from posattack.utils.fileio import write_text_atomic

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BLOCK = re.compile(r'(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end include -->)',
                   re.S)


def include_tables(text: str, root: str = REPO_ROOT) -> str:
    """``text`` with every include block refilled from its file (a missing file fails)."""
    def refill(match):
        path = osp.join(root, match.group('path'))
        if not osp.isfile(path):
            raise FileNotFoundError(f'{match.group("path")} (named in an include block) does '
                                    'not exist: run the command that writes it first.')
        with open(path, encoding='utf-8') as f:
            body = f.read()
        return match.group(1) + body.rstrip('\n') + '\n' + match.group(4)
    return BLOCK.sub(refill, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('markdown', nargs='+', help='files whose include blocks to refill')
    args = parser.parse_args(argv)
    try:
        for path in args.markdown:
            with open(path, encoding='utf-8') as f:
                text = f.read()
            updated = include_tables(text)
            if updated != text:
                write_text_atomic(path, updated)
                print(f'{path}: tables refreshed')
    except (FileNotFoundError, OSError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
