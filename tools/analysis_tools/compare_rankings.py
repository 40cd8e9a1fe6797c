"""Compare two channel rankings of the same tensor: Spearman's rho and top-k overlap per order.

    python tools/analysis_tools/compare_rankings.py configs/paper/authors_rankings \
        work_dirs/authors_os16/ours/ranking.json --format-a authors \
        --name-a authors --name-b posattack --out-dir work_dirs/authors_os16/comparison

Writes ranking_comparison.json and ranking_comparison.md into --out-dir and prints the table.
A ranking is a posattack JSON (tools/identify.py, tools/attack.py) or the authors' release
(a directory of their three files, or one of them) with --format-* authors.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('a', help='first ranking (file, or directory of the authors\' files)')
    parser.add_argument('b', help='second ranking')
    for side in ('a', 'b'):
        parser.add_argument(f'--format-{side}', default='auto',
                            choices=['auto', 'posattack', 'authors'],
                            help=f'format of ranking {side.upper()} (default: auto)')
        parser.add_argument(f'--name-{side}', default=side.upper(),
                            help=f'what to call ranking {side.upper()} in the table')
    parser.add_argument('--top-k', type=int, nargs='+', default=[10, 50, 100],
                        help='overlap of the first k channels (default: 10 50 100)')
    parser.add_argument('--out-dir', default=osp.join('work_dirs', 'ranking_comparison'),
                        help='where ranking_comparison.json/.md go')
    parser.epilog = 'Errors print one line; set POSATTACK_DEBUG=1 to see the traceback.'
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.top_k):
        parser.error(f'--top-k values must be at least 1, got {args.top_k}.')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from posattack.channels.ranking import ChannelRanking
    from posattack.channels.ranking_comparison import compare_rankings, comparison_markdown
    from posattack.utils.cli import BAD_INPUT_ERRORS, report_bad_input
    from posattack.utils.fileio import write_json_atomic, write_text_atomic
    try:
        a = ChannelRanking.load(args.a, format=args.format_a)
        b = ChannelRanking.load(args.b, format=args.format_b)
        result = compare_rankings(a, b, top_k=args.top_k)
    except (*BAD_INPUT_ERRORS, ImportError) as error:
        return report_bad_input(error)
    result['names'] = {'a': args.name_a, 'b': args.name_b}
    result['sources'] = {'a': osp.abspath(args.a), 'b': osp.abspath(args.b)}
    table = comparison_markdown(result, args.name_a, args.name_b)
    write_json_atomic(osp.join(args.out_dir, 'ranking_comparison.json'), result)
    write_text_atomic(osp.join(args.out_dir, 'ranking_comparison.md'), table)
    print(table, end='')
    return 0


if __name__ == '__main__':
    sys.exit(main())
